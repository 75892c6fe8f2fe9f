//! npt's entries and formats inside page_table_multiarch's `PageTable64`:
//! the same mappings must produce the same raw descriptors as npt's own
//! engine, for every format whose geometry `PageTable64` can walk.

use npt::format::Format;
use npt::{
    aarch64, x86_64, GenericPTE, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF,
};
use npt_tests::{Frames, Table, RW};
use page_table_multiarch::{PageSize, PageTable64, PagingError, PagingMetaData};

fn same_leaves<M, E>()
where
    M: Format + PagingMetaData<VirtAddr = Gpa>,
    E: GenericPTE,
{
    let cases = [
        (
            0x4000_0000usize,
            0x1_0000_0000usize,
            PageSize::Size1G,
            RW | MF::EXECUTE,
        ),
        (0x8020_0000, 0x2_0020_0000, PageSize::Size2M, RW),
        (0x9000_0000, 0x0900_0000, PageSize::Size4K, RW | MF::DEVICE),
        (
            0x9000_1000,
            0x3000_1000,
            PageSize::Size4K,
            MF::READ | MF::EXECUTE,
        ),
    ];
    let mut theirs = PageTable64::<M, E, Frames>::try_new().unwrap();
    let mut ours = Table::<M>::try_new().unwrap();
    for (gpa, hpa, size, flags) in cases {
        theirs
            .cursor()
            .map(Gpa::from(gpa), Hpa::from(hpa), size, flags)
            .unwrap();
        ours.map(Gpa::from(gpa), Hpa::from(hpa), size as usize, flags)
            .unwrap()
            .ignore();
        let (pa, got_flags, got_size) = theirs.query(Gpa::from(gpa + 0x123)).unwrap();
        let t = ours.query(Gpa::from(gpa + 0x123)).unwrap();
        assert_eq!(pa, t.hpa, "{}: {gpa:#x}", M::NAME);
        assert_eq!(got_flags, t.flags, "{}: {gpa:#x}", M::NAME);
        assert_eq!(got_size as usize, t.size, "{}: {gpa:#x}", M::NAME);
    }
    // Same raw leaves: walk ours, then look each up through PageTable64's
    // entry type by rebuilding it with GenericPTE.
    ours.for_each_leaf(|l| {
        let rebuilt = E::new_page(l.hpa, l.flags, l.size > 0x1000);
        assert_eq!(
            rebuilt.bits() as u64,
            l.raw,
            "{}: leaf at {:?}",
            M::NAME,
            l.gpa
        );
    });
}

#[test]
fn ept4_in_page_table64() {
    same_leaves::<x86_64::Ept4, x86_64::EptEntry>();
}

#[test]
fn stage2_ipa39_in_page_table64() {
    same_leaves::<aarch64::Stage2Ipa39, aarch64::Stage2Descriptor>();
}

#[test]
fn stage2_ipa48_in_page_table64() {
    same_leaves::<aarch64::Stage2Ipa48, aarch64::Stage2Descriptor>();
}

#[test]
fn guest_physical_addresses_are_not_sign_extended() {
    // PageTable64's default accepts sign-extended (canonical) addresses;
    // a GPA has no sign: 0xffff_8000_0000_0000 is out of range.
    assert!(!<x86_64::Ept4 as PagingMetaData>::vaddr_is_valid(
        0xffff_8000_0000_0000
    ));
    assert!(<x86_64::Ept4 as PagingMetaData>::vaddr_is_valid(
        (1 << 48) - 1
    ));
    assert!(!<x86_64::Ept4 as PagingMetaData>::vaddr_is_valid(1 << 48));
    assert!(!<aarch64::Stage2Ipa39 as PagingMetaData>::vaddr_is_valid(
        1 << 39
    ));
}

/// The same code, written against `PageTable64`'s methods, run on
/// `page_table_multiarch::PageTable64` and on `npt::compat::PageTable64`:
/// switching is the type (and its import). Both must see the same
/// translations.
macro_rules! hypervisor_code {
    ($table:ty) => {{
        let mut pt = <$table>::try_new().unwrap();
        let rw = MF::READ | MF::WRITE;
        {
            let mut c = pt.cursor();
            c.map(Gpa::from(0x1000), Hpa::from(0x8000), PageSize::Size4K, rw)
                .unwrap();
            c.map_region(
                Gpa::from(0x4000_0000),
                |g| Hpa::from(g.as_usize() + 0x1_0000_0000),
                0x40_0000,
                rw,
                true,
            )
            .unwrap();
            // Scattered frames for alloc-backed memory.
            c.map_region(
                Gpa::from(0x5000_0000),
                |g| Hpa::from(0x2_0000_0000 + (g.as_usize() - 0x5000_0000) * 2),
                0x4000,
                rw,
                false,
            )
            .unwrap();
            c.protect(Gpa::from(0x1000), MF::READ).unwrap();
            c.remap(Gpa::from(0x1000), Hpa::from(0x9000), rw).unwrap();
            c.unmap(Gpa::from(0x5000_1000)).unwrap();
            assert_eq!(
                c.map(Gpa::from(0x1000), Hpa::from(0x8000), PageSize::Size4K, rw),
                Err(PagingError::AlreadyMapped)
            );
        }
        let probes = [
            0x1234,
            0x4000_0000,
            0x403f_f000,
            0x5000_0000,
            0x5000_2000,
            0x5000_1000,
        ];
        probes.map(|g| pt.query(Gpa::from(g)).ok())
    }};
}

#[test]
fn code_written_for_page_table64_runs_on_npt_by_changing_the_type() {
    npt_tests::reset(npt_tests::DEFAULT_BASE, npt_tests::DEFAULT_FRAMES);
    let theirs = hypervisor_code!(PageTable64<x86_64::Ept4, x86_64::EptEntry, Frames>);
    let ours = hypervisor_code!(npt::compat::PageTable64<x86_64::Ept4, Frames>);
    assert_eq!(theirs, ours);
    assert_eq!(ours[0], Some((Hpa::from(0x9234), RW, PageSize::Size4K)));
    assert_eq!(ours[1].map(|q| q.2), Some(PageSize::Size2M));
    assert_eq!(ours[4].map(|q| q.0), Some(Hpa::from(0x2_0000_4000)));
    assert_eq!(ours[5], None);
}
