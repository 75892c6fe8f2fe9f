//! `page_table_entry::GenericPTE` support for generated entry types, so a
//! format can also back `page_table_multiarch::PageTable64`.
//!
//! `GenericPTE` constructors cannot fail. Where npt's own API returns an
//! error (illegal flags, an address beyond the output width), these build a
//! non-present entry instead: the mapping fails closed, it is never
//! silently given other permissions or another address.

use crate::format::Format;
use memory_addr::PhysAddr;
use page_table_entry::MappingFlags;

fn encodable<F: Format>(pa: PhysAddr) -> Option<u64> {
    let lay = &F::LAYOUT;
    let pa = pa.as_usize() as u64;
    let aligned = pa % lay.geometry.granule() as u64 == 0;
    ((pa as u128) < lay.geometry.output_limit() && aligned).then_some(pa)
}

/// `GenericPTE::new_page`: a page (`is_huge` false) or block leaf, or a
/// non-present entry if `flags` are illegal or `paddr` is unencodable.
pub fn new_page<F: Format>(paddr: PhysAddr, flags: MappingFlags, is_huge: bool) -> u64 {
    let lay = &F::LAYOUT;
    let level = if is_huge {
        0
    } else {
        lay.geometry.levels.len() - 1
    };
    match (encodable::<F>(paddr), lay.attrs(flags)) {
        (Some(pa), Ok(attrs)) if !is_huge || lay.block.is_some() => lay.leaf(level, pa, attrs),
        _ => 0,
    }
}

/// `GenericPTE::new_table`, or a non-present entry for an unencodable
/// address.
pub fn new_table<F: Format>(paddr: PhysAddr) -> u64 {
    encodable::<F>(paddr).map_or(0, |pa| F::LAYOUT.table(pa))
}

/// `GenericPTE::paddr`.
pub fn paddr<F: Format>(raw: u64) -> PhysAddr {
    PhysAddr::from(F::LAYOUT.address.decode(raw) as usize)
}

/// `GenericPTE::flags`: empty for a non-present entry.
pub fn flags<F: Format>(raw: u64) -> MappingFlags {
    if F::LAYOUT.present.holds(raw) {
        F::LAYOUT.flags(raw)
    } else {
        MappingFlags::empty()
    }
}

/// `GenericPTE::set_paddr`: keeps every other bit; an unencodable address
/// makes the entry non-present.
pub fn set_paddr<F: Format>(raw: u64, paddr: PhysAddr) -> u64 {
    let a = &F::LAYOUT.address;
    encodable::<F>(paddr).map_or(0, |pa| (raw & !a.mask()) | a.encode(pa))
}

/// `GenericPTE::set_flags`: rebuilds the leaf at the same address, or makes
/// it non-present if `flags` are illegal.
pub fn set_flags<F: Format>(raw: u64, flags: MappingFlags, is_huge: bool) -> u64 {
    let pa = F::LAYOUT.address.decode(raw);
    new_page::<F>(PhysAddr::from(pa as usize), flags, is_huge)
}

/// `GenericPTE::is_present`.
pub fn is_present<F: Format>(raw: u64) -> bool {
    F::LAYOUT.present.holds(raw)
}

/// `GenericPTE::is_huge`: a present block descriptor (asked above the last
/// level only).
pub fn is_huge<F: Format>(raw: u64) -> bool {
    F::LAYOUT.is_block(raw)
}
