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

/// `pa` if a descriptor can hold it: below the output width and aligned to
/// the granule, or for a block (`huge`) to the smallest block size (a block's
/// output-address bits below its size are reserved: EPT misconfiguration,
/// Arm RES0). `GenericPTE` does not say which level a block is at, so a
/// 1 GiB block is only checked for the smallest block alignment.
fn encodable<F: Format>(pa: PhysAddr, huge: bool) -> Option<u64> {
    let g = &F::LAYOUT.geometry;
    let last = g.levels.len().saturating_sub(1);
    let align = if huge {
        let smallest_block = g
            .levels
            .iter()
            .take(last)
            .filter(|l| l.leaf)
            .map(|l| l.span())
            .min();
        smallest_block?
    } else {
        g.granule()
    };
    let pa = pa.as_usize() as u64;
    let aligned = pa % align as u64 == 0;
    ((pa as u128) < g.output_limit() && aligned).then_some(pa)
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
    match (encodable::<F>(paddr, is_huge), lay.attrs(flags)) {
        (Some(pa), Ok(attrs)) => lay.leaf(level, pa, attrs),
        _ => 0,
    }
}

/// `GenericPTE::new_table`, or a non-present entry for an unencodable
/// address.
pub fn new_table<F: Format>(paddr: PhysAddr) -> u64 {
    encodable::<F>(paddr, false).map_or(0, |pa| F::LAYOUT.table(pa))
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

/// `GenericPTE::set_paddr`: keeps every other bit; an address the entry
/// cannot hold (for a block: one not aligned to a block) makes the entry
/// non-present.
pub fn set_paddr<F: Format>(raw: u64, paddr: PhysAddr) -> u64 {
    let a = &F::LAYOUT.address;
    let lay = &F::LAYOUT;
    // Where blocks and pages look alike (RISC-V), the level is unknown and
    // only granule alignment can be checked.
    let tellable = lay.block.is_some_and(|b| b.is != lay.page.is);
    let huge = tellable && lay.is_block(raw);
    encodable::<F>(paddr, huge).map_or(0, |pa| (raw & !a.mask()) | a.encode(pa))
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
