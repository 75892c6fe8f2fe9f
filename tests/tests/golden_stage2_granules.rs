//! Golden values for Arm stage 2 with the 16 KiB and 64 KiB granules,
//! derived by hand from the Arm ARM (DDI 0487 K.a): D8.2 (levels, index
//! bits, concatenated initial tables), D8.3 (descriptor formats: OA[47:14]
//! with 16KB, OA[47:16] with 64KB), D23.2 (VTCR_EL2.TG0 = 0b10 for 16KB,
//! 0b01 for 64KB; SL0 = 0b01 starts at level 2 with either). Both formats
//! are variants of `specs/aarch64_stage2.rs`, not copies.
//!
//! Descriptor attribute bits (as in `golden_stage2.rs`): a read-write
//! normal page is VALID|TABLE 0x3 | MemAttr WB 0b1111 << 2 = 0x3c | S2AP RW
//! 0b11 << 6 = 0xc0 | SH Inner 0b11 << 8 = 0x300 | AF 0x400 = 0x7ff, plus
//! XN = 0b10 << 53 (bit 54) when not executable; a block has TABLE clear:
//! 0x7fd. A table descriptor is the next table's address | 0x3.
//!
//! Simulated memory: the root is at the arena's base, 0x8000_0000.

use npt::aarch64::{Stage2Descriptor16K, Stage2Ipa40G16, Stage2Ipa42G64, Stage2Params};
use npt::flush::{Arg, Instr};
use npt::{Error, Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa};
use npt_tests::{entry, fresh_with, raw_leaf, record, snapshot, RW, RWX};

const ROOT: usize = 0x8000_0000;
const XN: u64 = 1 << 54;

fn params() -> Stage2Params {
    Stage2Params {
        vmid: 1,
        pa_bits: 48,
        hafdbs: 0,
    }
}

#[test]
fn ipa40_16k_registers() {
    let root = Hpa::from(ROOT);
    // VTCR_EL2: T0SZ 64 - 40 = 24 (0x18) | SL0 0b01 << 6 (0x40) | IRGN0 1
    // << 8 | ORGN0 1 << 10 | SH0 3 << 12 | TG0 0b10 << 14 (0x8000) | PS 5
    // (48 bits) << 16 | RES1 bit 31 = 0x8005_b558.
    assert_eq!(Stage2Ipa40G16::vtcr_el2(root, &params()), Ok(0x8005_b558));
    // VTTBR_EL2: BADDR (the 256 KiB root, 256 KiB aligned) | VMID 1 << 48.
    assert_eq!(
        Stage2Ipa40G16::vttbr_el2(root, &params()),
        Ok(0x0001_0000_8000_0000)
    );
    // A root aligned to 16 KiB but not to the 256 KiB of 16 tables.
    assert!(matches!(
        Stage2Ipa40G16::vttbr_el2(Hpa::from(ROOT + 0x4000), &params()),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
    assert_eq!(Stage2Ipa40G16::LAYOUT.geometry.granule(), 0x4000);
}

#[test]
fn ipa40_16k_descriptors() {
    let mut t = fresh_with::<Stage2Ipa40G16>(params());
    assert_eq!(t.root_paddr(), Hpa::from(ROOT));
    // 16 KiB page at GPA 0x4000: level-2 index 0, level-3 index 1. The
    // level-3 table is the first 16 KiB after the 256 KiB root.
    t.map(Gpa::from(0x4000), Hpa::from(0x1_2340_4000), 0x4000, RW)
        .unwrap()
        .ignore();
    assert_eq!(entry(ROOT, 0), 0x8004_0003);
    assert_eq!(entry(0x8004_0000, 1), 0x1_2340_4000 | 0x7ff | XN);
    // A 32 MiB block at GPA 0x200_0000 (level-2 index 1).
    t.map(
        Gpa::from(0x200_0000),
        Hpa::from(0x1_4000_0000),
        0x200_0000,
        RWX,
    )
    .unwrap()
    .ignore();
    assert_eq!(entry(ROOT, 1), 0x1_4000_0000 | 0x7fd);
    // GPA bit 39: level-2 index (IA[39:25]) 0x4000, in the ninth
    // concatenated table (ROOT + 0x4000 * 8 = ROOT + 0x2_0000).
    let high = 1usize << 39 | 0x200_0000;
    t.map(Gpa::from(high), Hpa::from(0x1_6000_0000), 0x200_0000, RW)
        .unwrap()
        .ignore();
    assert_eq!(entry(ROOT, 0x4001), 0x1_6000_0000 | 0x7fd | XN);
    assert_eq!(raw_leaf(&t, high), 0x1_6000_0000 | 0x7fd | XN);
    // The entry type decodes the 16 KiB-granule output address.
    let e = Stage2Descriptor16K::from_raw(0x1_2340_4000 | 0x7ff | XN);
    assert_eq!(e.output_address(), Hpa::from(0x1_2340_4000));

    // Refused, nothing changed: a 4 KiB page (not a leaf size here), GPA
    // 2^40, an unaligned host address.
    let before = snapshot(&t);
    assert!(t
        .map(Gpa::from(0x8000), Hpa::from(0x5000), 0x1000, RW)
        .is_err());
    assert!(matches!(
        t.map(Gpa::from(1 << 40), Hpa::from(0x8000), 0x4000, RW),
        Err(Error::GpaOutOfRange { input_bits: 40, .. })
    ));
    assert!(matches!(
        t.map(Gpa::from(0x8000), Hpa::from(0x1_0000_1000), 0x4000, RW),
        Err(Error::MisalignedHpa { .. })
    ));
    assert_eq!(snapshot(&t), before);

    // Unmapping the page empties its level-3 table, which is unlinked:
    // TLBI IPAS2E1IS with IPA[47:12] of the page (0x4) and of the table's
    // first IPA (0x0).
    let (_, tf) = t.unmap(Gpa::from(0x4000)).unwrap();
    let rec = record(tf, 0);
    let mut tlbi: Vec<_> = rec
        .instrs()
        .into_iter()
        .filter(|i| i.instr == Instr::TlbiIpas2e1is)
        .map(|i| i.args[0])
        .collect();
    tlbi.sort_by_key(|a| format!("{a:?}"));
    assert_eq!(tlbi, [Arg::Value(0x0), Arg::Value(0x4)]);
}

#[test]
fn ipa42_64k_registers_and_descriptors() {
    let root = Hpa::from(ROOT);
    // VTCR_EL2: T0SZ 22 (0x16) | SL0 0b01 << 6 | IRGN0 | ORGN0 | SH0 3 <<
    // 12 | TG0 0b01 << 14 (0x4000) | PS 5 << 16 | RES1 = 0x8005_7556.
    assert_eq!(Stage2Ipa42G64::vtcr_el2(root, &params()), Ok(0x8005_7556));
    let mut t = fresh_with::<Stage2Ipa42G64>(params());
    // 64 KiB page at GPA 0x1_0000: level-2 index 0, level-3 index 1; the
    // level-3 table is the 64 KiB after the 64 KiB root.
    t.map(Gpa::from(0x1_0000), Hpa::from(0x1_2345_0000), 0x1_0000, RW)
        .unwrap()
        .ignore();
    assert_eq!(entry(ROOT, 0), 0x8001_0003);
    assert_eq!(entry(0x8001_0000, 1), 0x1_2345_0000 | 0x7ff | XN);
    // A 512 MiB block at GPA bit 41 | 512 MiB: level-2 index (IA[41:29])
    // 0x1001.
    let high = 1usize << 41 | 0x2000_0000;
    t.map(Gpa::from(high), Hpa::from(0x1_2000_0000), 0x2000_0000, RWX)
        .unwrap()
        .ignore();
    assert_eq!(entry(ROOT, 0x1001), 0x1_2000_0000 | 0x7fd);
    assert!(matches!(
        t.map(Gpa::from(1 << 42), Hpa::from(0x1_0000), 0x1_0000, RW),
        Err(Error::GpaOutOfRange { input_bits: 42, .. })
    ));
    // A 64 KiB IPA range after a 64 KiB page: IPA[47:12] of the page.
    let (_, tf) = t.unmap(Gpa::from(0x1_0000)).unwrap();
    let rec = record(tf, 0);
    assert!(rec
        .instrs()
        .iter()
        .any(|i| i.instr == Instr::TlbiIpas2e1is && i.args[0] == Arg::Value(0x10)));
}

/// The 48-bit IPA with the bigger granules. Stage2Ipa48G16: level-1 start
/// over two concatenated tables (IA[47:36]), VTCR_EL2 T0SZ 16 (0x10) | SL0
/// 0b10 (level 1 with 16KB) << 6 = 0x80 | IRGN0, ORGN0, SH0 = 0x3500 |
/// TG0 0b10 << 14 = 0x8000 | PS 5 << 16 | RES1 = 0x8005_b590.
/// Stage2Ipa48G64: level-1 start (IA[47:42], 64 entries), T0SZ 16 | SL0
/// 0b10 << 6 | 0x3500 | TG0 0b01 << 14 = 0x4000 | PS 5 << 16 | RES1 =
/// 0x8005_7590. Both need a 48-bit PA: with 44 the table is refused.
#[test]
fn ipa48_16k_and_64k() {
    use npt::aarch64::{Stage2Ipa48G16, Stage2Ipa48G64};
    let root = Hpa::from(ROOT);
    assert_eq!(Stage2Ipa48G16::vtcr_el2(root, &params()), Ok(0x8005_b590));
    assert_eq!(Stage2Ipa48G64::vtcr_el2(root, &params()), Ok(0x8005_7590));

    // 16 KiB: GPA 2^47 | 0x4000 has level-1 index 0x800, in the second
    // concatenated table (ROOT + 0x4000); the level-2 table is the first
    // 16 KiB after the 32 KiB root, the level-3 one the next.
    let mut t = fresh_with::<Stage2Ipa48G16>(params());
    let g = 1usize << 47 | 0x4000;
    t.map(Gpa::from(g), Hpa::from(0x1_2340_4000), 0x4000, RW)
        .unwrap()
        .ignore();
    assert_eq!(entry(ROOT, 0x800), 0x8000_8003);
    assert_eq!(entry(0x8000_8000, 0), 0x8000_c003);
    assert_eq!(entry(0x8000_c000, 1), 0x1_2340_4000 | 0x7ff | XN);
    drop(t);

    // 64 KiB: GPA 2^47 | 0x1_0000 has level-1 index 0x20 (ROOT + 0x100).
    let mut t = fresh_with::<Stage2Ipa48G64>(params());
    let g = 1usize << 47 | 0x1_0000;
    t.map(Gpa::from(g), Hpa::from(0x1_2345_0000), 0x1_0000, RW)
        .unwrap()
        .ignore();
    assert_eq!(entry(ROOT, 0x20), 0x8001_0003);
    assert_eq!(entry(0x8001_0000, 0), 0x8002_0003);
    assert_eq!(entry(0x8002_0000, 1), 0x1_2345_0000 | 0x7ff | XN);
    drop(t);

    let narrow = Stage2Params {
        vmid: 1,
        pa_bits: 44,
        hafdbs: 0,
    };
    npt_tests::reset(npt_tests::DEFAULT_BASE, npt_tests::DEFAULT_FRAMES);
    assert!(matches!(
        npt_tests::Table::<Stage2Ipa48G16>::try_new_with(narrow),
        Err(Error::Requirement {
            rule: "ipa_within_pa",
            ..
        })
    ));
    assert!(matches!(
        Stage2Ipa48G64::vtcr_el2(root, &narrow),
        Err(Error::Requirement {
            rule: "ipa_within_pa",
            ..
        })
    ));
}

/// AArch64.S2InvalidSL with the bigger granules: a level-1 start (SL0 =
/// 0b10) needs PAMax of at least 42 bits with 16KB and 44 with 64KB, so
/// those hosts refuse the 48-bit-IPA tables by that rule (before the IPA
/// is found wider than the PA).
#[test]
fn level1_start_needs_the_pa_size() {
    use npt::aarch64::{Stage2Ipa48G16, Stage2Ipa48G64};
    let p = |pa_bits| Stage2Params {
        vmid: 1,
        pa_bits,
        hafdbs: 0,
    };
    let root = Hpa::from(ROOT);
    let rule = |r: Result<u64, Error>| match r {
        Err(Error::Requirement { rule, .. }) => rule,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rule(Stage2Ipa48G16::vtcr_el2(root, &p(40))),
        "start_level_pa"
    );
    assert_eq!(
        rule(Stage2Ipa48G16::vtcr_el2(root, &p(42))),
        "ipa_within_pa"
    );
    assert_eq!(
        rule(Stage2Ipa48G64::vtcr_el2(root, &p(42))),
        "start_level_pa"
    );
    assert_eq!(
        rule(Stage2Ipa48G64::vtcr_el2(root, &p(44))),
        "ipa_within_pa"
    );
}
