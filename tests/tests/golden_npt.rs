//! Golden (bit-exact) tests for AMD nested paging, `npt::x86_64::Npt4`.
//!
//! Expected values are derived by hand from the AMD64 APM Vol. 2:
//! §5.4 long-mode entry fields: P bit 0 (0x1), R/W bit 1 (0x2), U/S bit 2
//! (0x4), PWT bit 3 (0x8), PCD bit 4 (0x10), PS bit 7 (0x80) in a PDPE/PDE,
//! address bits 51:12, NX bit 63 (0x8000_0000_0000_0000); §15.25.5: U/S = 1
//! at every level of a nested walk; §7.8: PAT index PCD|PWT = 3 (UC) and
//! PCD = 2 (UC-) in the power-on PAT; §15.25.4: nCR3 = PML4 address in
//! bits 51:12; §15.16: VMCB TLB_CONTROL 3 = flush this guest's ASID, 1 =
//! flush everything.
//!
//! Table frames come from the simulated physical memory (`npt_tests`):
//! root at 0x8000_0000, then first-fit 4 KiB frames.

use npt::flush::{Arg, Instr, Issued, Scope};
use npt::instr::SvmTlbControl;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::x86_64::{Npt4, Npt4Params, NptEntry};
use npt::{Error, GenericPTE, MappingFlags as MF};
use npt_tests::{
    all_combinations, entry, fresh, fresh_with, gpa, hpa, leaves, map, raw_leaf, record, reset,
    snapshot, Table, DEFAULT_BASE, DEFAULT_FRAMES, R, RW, RWX, RX,
};

const ROOT: usize = DEFAULT_BASE;
const NX: u64 = 1 << 63;

/// x86 paging can express a combination iff it is readable and names at
/// most one of DEVICE and UNCACHED.
fn legal(f: MF) -> bool {
    f.contains(MF::READ) && !f.contains(MF::DEVICE | MF::UNCACHED)
}

/// The attribute bits of a leaf for `f`, by hand: P|U/S always (0x5),
/// R/W for WRITE, NX unless EXECUTE, PCD|PWT for DEVICE, PCD for UNCACHED.
fn attrs(f: MF) -> u64 {
    let mut v = 0x5;
    if f.contains(MF::WRITE) {
        v |= 0x2;
    }
    if !f.contains(MF::EXECUTE) {
        v |= NX;
    }
    if f.contains(MF::DEVICE) {
        v |= 0x18;
    }
    if f.contains(MF::UNCACHED) {
        v |= 0x10;
    }
    v
}

#[test]
fn leaves_at_every_level_and_table_descriptors() {
    let mut t = fresh::<Npt4>();
    // 1G page at PDPE index 1: P|RW|US|PS = 0x87, address 0x1_0000_0000.
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RWX);
    assert_eq!(raw_leaf(&t, 0x4000_0000), 0x1_0000_0087);
    // The PML4E (index 0) points at the PDP table, the first frame after
    // the root: 0x8000_1000 | P|RW|US (0x7).
    assert_eq!(entry(ROOT, 0), 0x8000_1007);
    // 2M page at 0x8020_0000 (PDPE 2, PDE 1): 0x87 | NX (no EXECUTE).
    map(&mut t, 0x8020_0000, 0x1_4020_0000, SIZE_2M, RW);
    assert_eq!(raw_leaf(&t, 0x8020_0000), NX | 0x1_4020_0087);
    // PDPE 2 -> the PD at 0x8000_2000.
    assert_eq!(entry(0x8000_1000, 2), 0x8000_2007);
    // 4K page at 0x8040_3000 (PDE 2, PTE 3): P|US = 0x5 | NX, read-only.
    map(&mut t, 0x8040_3000, 0x1_8000_5000, SIZE_4K, R);
    assert_eq!(raw_leaf(&t, 0x8040_3000), NX | 0x1_8000_5005);
    // PDE 2 -> the PT at 0x8000_3000; the PTE itself at index 3.
    assert_eq!(entry(0x8000_2000, 2), 0x8000_3007);
    assert_eq!(entry(0x8000_3000, 3), NX | 0x1_8000_5005);
    assert_eq!(leaves(&t).len(), 3);
}

#[test]
fn every_flag_combination_by_hand() {
    let mut t = fresh::<Npt4>();
    for (i, f) in all_combinations().enumerate() {
        let g = 0x10_0000 + i * SIZE_4K;
        let res = t.map(gpa(g), hpa(0x2_0000_0000), SIZE_4K, f);
        if legal(f) {
            res.unwrap().ignore();
            assert_eq!(raw_leaf(&t, g), 0x2_0000_0000 | attrs(f), "{f:?}");
            // Read back without USER (always set in nested tables).
            assert_eq!(t.query(gpa(g)).unwrap().flags, f - MF::USER, "{f:?}");
        } else {
            assert!(matches!(res, Err(Error::IllegalFlags { .. })), "{f:?}");
        }
    }
}

#[test]
fn unreadable_and_mixed_memory_types_are_refused_without_change() {
    let mut t = fresh::<Npt4>();
    map(&mut t, 0x1000, 0x5000, SIZE_4K, RW);
    let before = leaves(&t);
    for f in [
        MF::WRITE,
        MF::EXECUTE,
        MF::empty(),
        RW | MF::DEVICE | MF::UNCACHED,
    ] {
        let err = t.map(gpa(0x2000), hpa(0x6000), SIZE_4K, f).unwrap_err();
        assert!(matches!(err, Error::IllegalFlags { .. }), "{f:?}");
        let err = t.protect(gpa(0x1000), f).unwrap_err();
        assert!(matches!(err, Error::IllegalFlags { .. }), "{f:?}");
    }
    assert_eq!(leaves(&t), before);
}

#[test]
fn generic_pte_values() {
    // Table: 0x8000_5000 | P|RW|US.
    assert_eq!(NptEntry::new_table(hpa(0x8000_5000)).raw(), 0x8000_5007);
    // 4K RX page: P|US = 0x5, no NX.
    let p = NptEntry::new_page(hpa(0x1234_5000), RX, false);
    assert_eq!(p.raw(), 0x1234_5005);
    assert!(!p.is_huge());
    assert_eq!(p.flags(), RX);
    // 2M RWX page: 0x87.
    let b = NptEntry::new_page(hpa(0x4020_0000), RWX, true);
    assert_eq!(b.raw(), 0x4020_0087);
    assert!(b.is_huge());
    // A 2M page at a 4K-aligned address, or write-only: non-present.
    assert_eq!(NptEntry::new_page(hpa(0x4020_1000), RWX, true).raw(), 0);
    assert_eq!(
        NptEntry::new_page(hpa(0x4020_0000), MF::WRITE, false).raw(),
        0
    );
}

#[test]
fn ncr3_is_the_root_address() {
    let t = fresh_with::<Npt4>(Npt4Params {
        asid: 9,
        pa_bits: 52,
    });
    // PML4 at 0x8000_0000 in bits 51:12; PWT/PCD (bits 3, 4) 0.
    assert_eq!(t.root_register(), 0x8000_0000);
    assert_eq!(
        Npt4::ncr3(
            hpa(0x1_2345_6000),
            &Npt4Params {
                asid: 9,
                pa_bits: 52
            }
        )
        .unwrap(),
        0x1_2345_6000
    );
}

#[test]
fn flushes_are_tlb_control_requests_for_the_guests_asid() {
    let mut t = fresh_with::<Npt4>(Npt4Params {
        asid: 9,
        pa_bits: 52,
    });
    map(&mut t, 0x1000, 0x5000, SIZE_4K, RW);
    map(&mut t, 0x2000, 0x6000, SIZE_4K, RW);
    let tf = t.protect(gpa(0x1000), R).unwrap();
    assert_eq!(tf.scope(), Scope::Pages);
    // One request for ASID 9, however many pages.
    let rec = record(tf, 0);
    assert_eq!(
        rec.instrs(),
        [Issued {
            instr: Instr::SvmFlushAsid,
            args: [Arg::Value(9), Arg::Zero]
        }]
    );
    // Through the VMCB collector: TLB_CONTROL 3 with FlushByAsid, else 1.
    let tf = t.unmap(gpa(0x1000)).unwrap().1;
    let mut ctl = SvmTlbControl::new(true);
    tf.flush_with(&mut ctl).unwrap();
    assert_eq!(ctl.tlb_control, 3);
    let tf = t.unmap(gpa(0x2000)).unwrap().1;
    let mut ctl = SvmTlbControl::new(false);
    tf.flush_with(&mut ctl).unwrap();
    assert_eq!(ctl.tlb_control, 1);
    // The host itself cannot carry out a VMCB request.
    map(&mut t, 0x3000, 0x7000, SIZE_4K, RW);
    let tf = t.unmap(gpa(0x3000)).unwrap().1;
    assert!(tf.flush().is_err());
}

#[test]
fn geometry_limits() {
    let mut t = fresh::<Npt4>();
    let top = (1usize << 48) - SIZE_4K;
    map(&mut t, top, 0x5000, SIZE_4K, RW);
    assert_eq!(t.query(gpa(top + 0x123)).unwrap().hpa, hpa(0x5123));
    let beyond = (1usize << 48) | 0x7000;
    assert_eq!(
        t.map(gpa(beyond), hpa(0x7000), SIZE_4K, RW).unwrap_err(),
        Error::GpaOutOfRange {
            gpa: gpa(beyond),
            input_bits: 48
        }
    );
    assert!(t.query(gpa(0x7000)).is_err());
    assert_eq!(
        t.map(gpa(0x8000), hpa(1 << 52), SIZE_4K, RW).unwrap_err(),
        Error::HpaOutOfRange {
            hpa: hpa(1 << 52),
            output_bits: 52
        }
    );
}

/// A misaligned root is refused, not encoded (regression).
#[test]
fn ncr3_refuses_a_misaligned_root() {
    assert!(matches!(
        Npt4::ncr3(
            hpa(0x12_3800),
            &Npt4Params {
                asid: 1,
                pa_bits: 52
            }
        ),
        Err(npt::Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
}

/// PhysAddrSize (`pa_bits`, CPUID Fn8000_0008 EAX[7:0]): bits
/// 51:PhysAddrSize of a long-mode entry are reserved (APM Vol. 2 §5.3.1),
/// so on a 40-bit CPU the last page below 2^40 maps (0xff_ffff_f000 |
/// P 0x1 | R/W 0x2 | U/S 0x4 = 0xff_ffff_f007) and 2^40 is refused,
/// changing nothing; an nCR3 at 2^40 is refused; 31 and 53 are refused.
#[test]
fn pa_bits_limits_host_addresses() {
    let p = |pa_bits| Npt4Params { asid: 1, pa_bits };
    let mut t = fresh_with::<Npt4>(p(40));
    t.map(gpa(0x1000), hpa(0xff_ffff_f000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    let before = snapshot(&t);
    let err = t.map(gpa(0x2000), hpa(1 << 40), SIZE_4K, RW).err();
    assert_eq!(
        err,
        Some(Error::HpaOutOfRange {
            hpa: hpa(1 << 40),
            output_bits: 40
        })
    );
    assert_eq!(snapshot(&t), before);
    assert!(matches!(
        Npt4::ncr3(hpa(1 << 40), &p(40)),
        Err(Error::Requirement {
            rule: "root_below_pa_bits",
            ..
        })
    ));
    drop(t);
    for bad in [31, 53] {
        reset(DEFAULT_BASE, DEFAULT_FRAMES);
        let r = Table::<Npt4>::try_new_with(p(bad));
        assert!(
            matches!(
                r,
                Err(Error::Requirement {
                    rule: "pa_bits_range",
                    ..
                })
            ),
            "{bad}: {r:?}"
        );
    }
}
