//! Golden values for the 5-level x86 formats, derived by hand: `Ept5` (SDM
//! Vol. 3C §29.3.2, page-walk length 5; §25.6.11 EPTP) and `Npt5` (AMD APM
//! Vol. 2 §5.3.2 5-level paging, §15.25.5 nested walk). No emulator here
//! has 5-level EPT (Bochs has none; QEMU's TCG has no VMX) or runs the AMD
//! test hypervisor with CR4.LA57, so these are checked by hand only.
//!
//! Simulated memory: the root is the arena's first frame (0x8000_0000),
//! each table allocated afterwards is the next frame.

use npt::size::{SIZE_1G, SIZE_4K};
use npt::x86_64::{Ept5, Npt5};
use npt::{Error, Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa};
use npt_tests::{entry, fresh, leaves, map, raw_leaf, snapshot, RW, RWX};

const ROOT: usize = 0x8000_0000;
/// GPA bit 56, the top bit of a 57-bit space, plus page 1: PML5 index
/// (56:48) 0x100, PML4 / PDPT / PD index 0, PT index 1.
const HIGH: usize = 1 << 56 | 0x1000;

#[test]
fn ept5_eptp_and_walk() {
    let mut t = fresh::<Ept5>();
    // EPTP: root | memory type WB 6 | (walk length 5 - 1) << 3 = 0x20:
    // 0x8000_0026.
    assert_eq!(t.root_register(), 0x8000_0026);
    map(&mut t, HIGH, 0x1_2345_6000, SIZE_4K, RW);
    // PML5E 0x100 at ROOT + 0x800 -> the PML4 at the next frame, R|W|X 0x7;
    // then PDPT, PD, PT one frame each.
    assert_eq!(entry(ROOT, 0x100), 0x8000_1007);
    assert_eq!(entry(ROOT + 0x1000, 0), 0x8000_2007);
    assert_eq!(entry(ROOT + 0x2000, 0), 0x8000_3007);
    assert_eq!(entry(ROOT + 0x3000, 0), 0x8000_4007);
    // Leaf: 0x1_2345_6000 | R|W 0x3 | WB 6 << 3 | IPAT 0x40 = ..._6073.
    assert_eq!(entry(ROOT + 0x4000, 1), 0x1_2345_6073);
    assert_eq!(raw_leaf(&t, HIGH), 0x1_2345_6073);
    // GPA 2^57 is outside the 57-bit space: refused, nothing changes.
    let before = snapshot(&t);
    let err = t
        .map(Gpa::from(1 << 57), Hpa::from(0x5000), SIZE_4K, RW)
        .err();
    assert_eq!(
        err,
        Some(Error::GpaOutOfRange {
            gpa: Gpa::from(1 << 57),
            input_bits: 57
        })
    );
    assert_eq!(snapshot(&t), before);
    assert_eq!(Ept5::LAYOUT.geometry.levels.len(), 5);
}

#[test]
fn npt5_ncr3_and_walk() {
    let mut t = fresh::<Npt5>();
    // nCR3: the root's address.
    assert_eq!(t.root_register(), ROOT as u64);
    // A 1 GiB page at GPA 2^56 + 1 GiB: PDPE index 1, P|RW|US|PS 0x87.
    map(&mut t, 1 << 56 | 1 << 30, 0x1_0000_0000, SIZE_1G, RWX);
    // PML5E 0x100 -> PML4 (next frame) P|RW|US 0x7; PML4E 0 -> PDP.
    assert_eq!(entry(ROOT, 0x100), 0x8000_1007);
    assert_eq!(entry(ROOT + 0x1000, 0), 0x8000_2007);
    assert_eq!(entry(ROOT + 0x2000, 1), 0x1_0000_0087);
    assert_eq!(leaves(&t).len(), 1);
    let err = t
        .map(Gpa::from(1 << 57), Hpa::from(0x5000), SIZE_4K, RW)
        .err();
    assert!(matches!(
        err,
        Some(Error::GpaOutOfRange { input_bits: 57, .. })
    ));
}
