//! Golden values for RISC-V Sv39x4 (G-stage), every one derived by hand
//! from the RISC-V privileged spec:
//!
//! - Sv39 PTE: V bit 0, R 1, W 2, X 3, U 4, G 5, A 6, D 7, RSW 9:8,
//!   PPN in bits 53:10 holding PA bits 55:12, PBMT 62:61 (Svpbmt: 0 PMA,
//!   1 NC, 2 IO), N bit 63. R = W = X = 0 with V = 1 points to the next
//!   table; non-leaf PTEs have D, A, U reserved (0).
//! - Hypervisor extension: Sv39x4 root index GPA[40:30] (2048 entries,
//!   16 KiB root, 16 KiB aligned); G-stage leaves must have U = 1.
//! - hgatp: MODE 63:60 = 8 (Sv39x4), VMID 57:44, PPN 43:0 = root >> 12.
//! - HFENCE.GVMA: rs1 = GPA >> 2 (or x0 for all), rs2 = VMID.
//!
//! npt also presets A and D on every leaf (the spec file's choice, since
//! hardware may fault instead of setting them): so every leaf's low byte
//! is `D|A|U|V` = 0x80 + 0x40 + 0x10 + 0x01 = 0xD1, plus R (0x02), W
//! (0x04), X (0x08).
//!
//! A PTE's PPN field for a 4K-aligned PA is `(pa >> 12) << 10`, i.e.
//! `pa >> 2`.

use npt::flush::{Arg, Instr, Issued, Recorder, Scope};
use npt::riscv::{Pbmt, Sv39x4, Sv39x4Flags, Sv39x4Params, Sv39x4Pte};
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::{Error, GenericPTE, MappingFlags as MF, TlbFlush};
use npt_tests::{
    entry, fresh, fresh_with, gpa, hpa, leaves, live_frames, read_phys, record, reset, Frames,
    Table, DEFAULT_BASE, DEFAULT_FRAMES, R, RW, RWX, RX,
};

const X: MF = MF::EXECUTE;

/// The root: the first 4 frames of simulated memory (0x8000_0000 is
/// 16 KiB aligned), 0x8000_0000..0x8000_4000.
const ROOT: usize = 0x8000_0000;

/// A fresh arena and an empty table with `vmid`.
fn fresh_vmid(vmid: u64) -> Table<Sv39x4> {
    fresh_with::<Sv39x4>(Sv39x4Params { vmid, adue: 0 })
}

/// The instructions of flushing `tf` into a default recorder.
fn recorded(tf: TlbFlush<Sv39x4>) -> Vec<Issued> {
    let rec = record(tf, 0);
    // RISC-V recipes name no context register: nothing but instructions.
    assert_eq!(rec.events.len(), rec.instrs().len());
    rec.instrs()
}

fn hfence(rs1: Arg, vmid: u64) -> Issued {
    Issued {
        instr: Instr::HfenceGvma,
        args: [rs1, Arg::Value(vmid)],
    }
}

// -- root --------------------------------------------------------------

#[test]
fn root_is_four_zeroed_frames_at_base() {
    let t = fresh::<Sv39x4>();
    // First fit, 4 frames, 16 KiB aligned: 0x8000_0000 itself.
    assert_eq!(t.root_paddr(), hpa(0x8000_0000));
    assert_eq!(t.frames_used(), 4);
    assert_eq!(live_frames(), 4);
    // All 2048 entries (16 KiB / 8) are zero although the allocator
    // dirties every frame it hands out.
    for idx in 0..2048 {
        assert_eq!(entry(ROOT, idx), 0, "root entry {idx}");
    }
    assert!(leaves(&t).is_empty());
}

#[test]
fn root_skips_to_next_16k_boundary_and_tables_fill_the_hole() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    use npt::PagingHandler;
    // Occupy frame 0x8000_0000: the next 16 KiB-aligned run of 4 free
    // frames is 0x8000_4000..0x8000_8000.
    let taken = Frames::alloc_frames(1, SIZE_4K).unwrap();
    assert_eq!(taken.as_usize(), 0x8000_0000);
    let mut t = Table::<Sv39x4>::try_new().unwrap();
    assert_eq!(t.root_paddr(), hpa(0x8000_4000));
    // hgatp = MODE 8 << 60 | VMID 0 | PPN 0x8000_4000 >> 12 = 0x80004.
    assert_eq!(t.root_register(), 0x8000_0000_0008_0004);
    // A 2M leaf at GPA 0 needs one L1 table: first fit is the hole at
    // 0x8000_1000 (4 KiB alignment suffices).
    t.map(gpa(0), hpa(0x20_0000), SIZE_2M, RW).unwrap().ignore();
    // Root entry 0 = PPN 0x80001 << 10 | V = 0x2000_0400 | 1.
    assert_eq!(read_phys(0x8000_4000), 0x2000_0401);
    // L1 entry 0 = (0x20_0000 >> 2 = 0x8_0000) | 0xD7 (RW leaf).
    assert_eq!(read_phys(0x8000_1000), 0x8_00D7);
    drop(t);
    assert_eq!(live_frames(), 1);
}

// -- leaves at each size -----------------------------------------------

#[test]
fn leaf_1g_raw() {
    let mut t = fresh::<Sv39x4>();
    // GPA 0x4000_0000 -> HPA 0x1_0000_0000, RW.
    t.map(gpa(0x4000_0000), hpa(0x1_0000_0000), SIZE_1G, RW)
        .unwrap()
        .ignore();
    // PPN field: 0x1_0000_0000 >> 2 = 0x4000_0000; attrs RW leaf = 0xD7.
    let raw = 0x4000_00D7;
    let l = leaves(&t);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].gpa, gpa(0x4000_0000));
    assert_eq!(l[0].hpa, hpa(0x1_0000_0000));
    assert_eq!(l[0].size, SIZE_1G);
    assert_eq!(l[0].level, 0);
    assert_eq!(l[0].raw, raw);
    // Root index GPA[40:30] = 1: entry at 0x8000_0008; no table needed.
    assert_eq!(entry(ROOT, 1), raw);
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn leaf_2m_raw_and_table_descriptor() {
    let mut t = fresh::<Sv39x4>();
    // GPA 0x20_0000 -> HPA 0x1_2340_0000 (2M aligned), RWX.
    t.map(gpa(0x20_0000), hpa(0x1_2340_0000), SIZE_2M, RWX)
        .unwrap()
        .ignore();
    // PPN field: 0x1_2340_0000 >> 2 = 0x48D0_0000; RWX leaf = 0xDF.
    let raw = 0x48D0_00DF;
    let l = leaves(&t);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].gpa, l[0].size, l[0].level),
        (gpa(0x20_0000), SIZE_2M, 1)
    );
    assert_eq!(l[0].raw, raw);
    // Root index 0 -> L1 table, first fit after the root: 0x8000_4000.
    // Table PTE: PPN 0x80004 << 10 = 0x2000_1000, only V = 1.
    assert_eq!(entry(ROOT, 0), 0x2000_1001);
    // L1 index GPA[29:21] = 1: at 0x8000_4000 + 8.
    assert_eq!(read_phys(0x8000_4008), raw);
    assert_eq!(t.frames_used(), 5);
}

#[test]
fn leaf_4k_raw_and_table_chain() {
    let mut t = fresh::<Sv39x4>();
    // GPA 0x1_2345_6000 -> HPA 0xABCD_E000, R.
    t.map(gpa(0x1_2345_6000), hpa(0xABCD_E000), SIZE_4K, R)
        .unwrap()
        .ignore();
    // PPN field: 0xABCD_E000 >> 2 = 0x2AF3_7800; R leaf = 0xD3.
    let raw = 0x2AF3_78D3;
    let l = leaves(&t);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].gpa, l[0].hpa, l[0].size, l[0].level),
        (gpa(0x1_2345_6000), hpa(0xABCD_E000), SIZE_4K, 2)
    );
    assert_eq!(l[0].raw, raw);
    // Indices: GPA[40:30] = 4, GPA[29:21] = 0x2345_6000 >> 21 = 0x11A,
    // GPA[20:12] = 0x123456 & 0x1FF = 0x56.
    // L1 at 0x8000_4000, L0 at 0x8000_5000 (first fit, in walk order).
    // Root[4] at 0x8000_0020 = 0x80004 << 10 | V.
    assert_eq!(read_phys(0x8000_0020), 0x2000_1001);
    // L1[0x11A] at 0x8000_4000 + 0x8D0 = 0x80005 << 10 | V.
    assert_eq!(read_phys(0x8000_48D0), 0x2000_1401);
    // L0[0x56] at 0x8000_5000 + 0x2B0.
    assert_eq!(read_phys(0x8000_52B0), raw);
    assert_eq!(t.frames_used(), 6);
    assert_eq!(live_frames(), 6);
}

#[test]
fn next_tables_land_first_fit() {
    let mut t = fresh::<Sv39x4>();
    // Uses L1 0x8000_4000 and L0 0x8000_5000 (root index 0).
    t.map(gpa(0), hpa(0x1000), SIZE_4K, RW).unwrap().ignore();
    // Root index 1: L1 at 0x8000_6000, L0 at 0x8000_7000.
    t.map(gpa(0x4000_0000), hpa(0x5000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    // Same L1 (index 1), new L0 at 0x8000_8000.
    t.map(gpa(0x4020_0000), hpa(0x6000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    // Root[1]: 0x80006 << 10 = 0x2000_1800, | V.
    assert_eq!(entry(ROOT, 1), 0x2000_1801);
    // L1(0x8000_6000)[0]: 0x80007 << 10 = 0x2000_1C00, | V.
    assert_eq!(read_phys(0x8000_6000), 0x2000_1C01);
    // L1(0x8000_6000)[1]: 0x80008 << 10 = 0x2000_2000, | V.
    assert_eq!(read_phys(0x8000_6008), 0x2000_2001);
    // L0(0x8000_7000)[0]: 0x5000 >> 2 = 0x1400, | 0xD7.
    assert_eq!(read_phys(0x8000_7000), 0x14D7);
    // L0(0x8000_8000)[0]: 0x6000 >> 2 = 0x1800, | 0xD7.
    assert_eq!(read_phys(0x8000_8000), 0x18D7);
    assert_eq!(t.frames_used(), 4 + 5);
}

// -- permissions ---------------------------------------------------------

/// HPA 0x1234_5000: PPN field 0x1234_5000 >> 2 = 0x048D_1400.
const PERM_HPA: usize = 0x1234_5000;

#[test]
fn every_legal_permission_combination() {
    let cases: [(MF, u64); 10] = [
        // R: D|A|U|R|V = 0xD3.
        (R, 0x048D_14D3),
        // RW: + W (0x04) = 0xD7.
        (RW, 0x048D_14D7),
        // X: D|A|U|X|V = 0xD9 (execute-only is legal on RISC-V).
        (X, 0x048D_14D9),
        // RX: 0xDB.
        (RX, 0x048D_14DB),
        // RWX: 0xDF.
        (RWX, 0x048D_14DF),
        // DEVICE -> PBMT IO = 2 << 61 = 1 << 62.
        (R | MF::DEVICE, 0x4000_0000_048D_14D3),
        (RW | MF::DEVICE, 0x4000_0000_048D_14D7),
        // UNCACHED -> PBMT NC = 1 << 61.
        (RW | MF::UNCACHED, 0x2000_0000_048D_14D7),
        (RX | MF::DEVICE, 0x4000_0000_048D_14DB),
        (RWX | MF::UNCACHED, 0x2000_0000_048D_14DF),
    ];
    let mut t = fresh::<Sv39x4>();
    for (i, (flags, _)) in cases.iter().enumerate() {
        t.map(gpa(i * SIZE_4K), hpa(PERM_HPA), SIZE_4K, *flags)
            .unwrap()
            .ignore();
    }
    let l = leaves(&t);
    assert_eq!(l.len(), cases.len());
    for (i, (flags, raw)) in cases.iter().enumerate() {
        assert_eq!(l[i].gpa, gpa(i * SIZE_4K));
        assert_eq!(l[i].raw, *raw, "{flags:?}");
        assert_eq!(l[i].flags, *flags, "{flags:?}");
        // L0 table at 0x8000_5000, entry i.
        assert_eq!(read_phys(0x8000_5000 + i * 8), *raw);
    }
}

#[test]
fn pbmt_accessor_agrees() {
    let mut t = fresh::<Sv39x4>();
    t.map(gpa(0), hpa(PERM_HPA), SIZE_4K, R | MF::DEVICE)
        .unwrap()
        .ignore();
    t.map(gpa(0x1000), hpa(PERM_HPA), SIZE_4K, RW | MF::UNCACHED)
        .unwrap()
        .ignore();
    t.map(gpa(0x2000), hpa(PERM_HPA), SIZE_4K, RW)
        .unwrap()
        .ignore();
    let l = leaves(&t);
    let pbmt: Vec<_> = l
        .iter()
        .map(|l| Sv39x4Pte::from_raw(l.raw).pbmt())
        .collect();
    assert_eq!(pbmt, [Some(Pbmt::IO), Some(Pbmt::NC), Some(Pbmt::PMA)]);
    // Svpbmt encodings: PMA 0, NC 1, IO 2.
    assert_eq!(
        (Pbmt::PMA.bits(), Pbmt::NC.bits(), Pbmt::IO.bits()),
        (0, 1, 2)
    );
    let e = Sv39x4Pte::from_raw(l[2].raw);
    let must = Sv39x4Flags::V | Sv39x4Flags::R | Sv39x4Flags::W | Sv39x4Flags::U;
    assert!(e
        .flag_bits()
        .contains(must | Sv39x4Flags::A | Sv39x4Flags::D));
    assert!(!e.flag_bits().intersects(Sv39x4Flags::G | Sv39x4Flags::N));
    assert_eq!(e.output_address(), hpa(PERM_HPA));
}

const ILLEGAL: [MF; 7] = [
    // W = 1 with R = 0 is reserved.
    MF::WRITE,
    MF::WRITE.union(MF::EXECUTE),
    // No access: V = 1, R = W = X = 0 would be a table pointer.
    MF::empty(),
    MF::DEVICE,
    MF::UNCACHED,
    MF::USER,
    // Two memory types at once.
    RW.union(MF::DEVICE).union(MF::UNCACHED),
];

fn assert_illegal(r: Result<TlbFlush<Sv39x4>, Error>, flags: MF) {
    match r {
        Err(Error::IllegalFlags { flags: f, .. }) => assert_eq!(f, flags),
        Err(e) => panic!("{flags:?}: expected IllegalFlags, got {e:?}"),
        Ok(_) => panic!("{flags:?}: expected IllegalFlags, got Ok"),
    }
}

#[test]
fn illegal_flags_refused_without_change() {
    let mut t = fresh::<Sv39x4>();
    t.map(gpa(0), hpa(PERM_HPA), SIZE_4K, RW).unwrap().ignore();
    let before = leaves(&t);
    let frames = live_frames();
    for flags in ILLEGAL {
        assert_illegal(t.map(gpa(0x1000), hpa(0x1000), SIZE_4K, flags), flags);
        // A GPA needing new tables: none may be allocated either.
        assert_illegal(
            t.map_region(gpa(0x4000_0000), hpa(0), SIZE_2M, flags, true),
            flags,
        );
        assert_illegal(t.protect_region(gpa(0), SIZE_4K, flags), flags);
        assert_illegal(t.protect(gpa(0), flags), flags);
        assert_eq!(leaves(&t), before, "{flags:?}");
        assert_eq!(live_frames(), frames, "{flags:?}");
    }
    // The existing leaf is untouched: 0x048D_1400 | 0xD7.
    assert_eq!(read_phys(0x8000_5000), 0x048D_14D7);
}

#[test]
fn user_flag_is_ignored() {
    let mut t = fresh::<Sv39x4>();
    t.map(gpa(0), hpa(PERM_HPA), SIZE_4K, RW | MF::USER)
        .unwrap()
        .ignore();
    t.map(gpa(0x1000), hpa(PERM_HPA), SIZE_4K, RW)
        .unwrap()
        .ignore();
    let l = leaves(&t);
    // Both 0x048D_1400 | 0xD7: U = 1 regardless (G-stage leaves).
    assert_eq!(l[0].raw, 0x048D_14D7);
    assert_eq!(l[1].raw, 0x048D_14D7);
    assert_eq!(l[0].flags, RW);
}

#[test]
fn flags_round_trip_via_query_and_protect() {
    let legal = [
        R,
        RW,
        X,
        RX,
        RWX,
        R | MF::DEVICE,
        RW | MF::UNCACHED,
        RWX | MF::DEVICE,
    ];
    let mut t = fresh::<Sv39x4>();
    for (i, flags) in legal.iter().enumerate() {
        let g = i * SIZE_2M;
        t.map(gpa(g), hpa(0x4000_0000), SIZE_2M, *flags)
            .unwrap()
            .ignore();
        let q = t.query(gpa(g + 0x1234)).unwrap();
        assert_eq!(q.flags, *flags);
        assert_eq!(q.hpa, hpa(0x4000_1234));
        assert_eq!(q.size, SIZE_2M);
    }
    // protect rewrites only the permission and PBMT bits.
    t.protect(gpa(0), RWX | MF::UNCACHED).unwrap().ignore();
    assert_eq!(t.query(gpa(0)).unwrap().flags, RWX | MF::UNCACHED);
    // 0x4000_0000 >> 2 = 0x1000_0000; RWX = 0xDF; NC = 1 << 61; at L1[0]
    // in the table at 0x8000_4000.
    assert_eq!(read_phys(0x8000_4000), 0x2000_0000_1000_00DF);
    t.protect(gpa(0), R).unwrap().ignore();
    assert_eq!(read_phys(0x8000_4000), 0x1000_00D3);
}

#[test]
fn generic_pte_round_trip() {
    let p = Sv39x4Pte::new_page(hpa(PERM_HPA), RW, false);
    // 0x1234_5000 >> 2 = 0x048D_1400; RW leaf 0xD7.
    assert_eq!(p.raw(), 0x048D_14D7);
    assert_eq!(GenericPTE::paddr(&p), hpa(PERM_HPA));
    assert_eq!(GenericPTE::flags(&p), RW);
    assert!(p.is_present());
    // Sv39 leaves look the same at every level, but a superpage's PPN bits
    // below its size must be zero (a misaligned superpage faults): a huge
    // leaf needs at least 2 MiB alignment, else it fails closed (raw 0).
    assert_eq!(Sv39x4Pte::new_page(hpa(PERM_HPA), RW, true).raw(), 0);
    // 0x4020_0000 >> 2 = 0x1008_0000; RW leaf 0xD7.
    assert_eq!(
        Sv39x4Pte::new_page(hpa(0x4020_0000), RW, true).raw(),
        0x1008_00D7
    );
    // DEVICE: | 1 << 62.
    let d = Sv39x4Pte::new_page(hpa(PERM_HPA), R | MF::DEVICE, false);
    assert_eq!(d.raw(), 0x4000_0000_048D_14D3);
    assert_eq!(GenericPTE::flags(&d), R | MF::DEVICE);
    // Tables: 0x8000_5000 -> 0x80005 << 10 | V; no permissions.
    let tb = Sv39x4Pte::new_table(hpa(0x8000_5000));
    assert_eq!(tb.raw(), 0x2000_1401);
    assert_eq!(GenericPTE::flags(&tb), MF::empty());
    assert_eq!(GenericPTE::paddr(&tb), hpa(0x8000_5000));
    // set_flags keeps the address; set_paddr keeps the flags.
    let mut q = p;
    q.set_flags(RX | MF::UNCACHED, false);
    // 0x048D_1400 | RX 0xDB | NC 1 << 61.
    assert_eq!(q.raw(), 0x2000_0000_048D_14DB);
    q.set_paddr(hpa(0xABCD_E000));
    // 0xABCD_E000 >> 2 = 0x2AF3_7800.
    assert_eq!(q.raw(), 0x2000_0000_2AF3_78DB);
    // Fails closed: illegal flags or an address beyond 56 bits build a
    // non-present entry.
    for flags in ILLEGAL {
        let e = Sv39x4Pte::new_page(hpa(PERM_HPA), flags, false);
        assert_eq!(e.raw(), 0, "{flags:?}");
    }
    assert_eq!(Sv39x4Pte::new_page(hpa(1 << 56), RW, false).raw(), 0);
    // Highest encodable: PA 2^56 - 4K -> PPN field bits 53:10 all ones.
    let top = Sv39x4Pte::new_page(hpa((1 << 56) - SIZE_4K), RW, false);
    assert_eq!(top.raw(), 0x003F_FFFF_FFFF_FCD7);
    assert_eq!(GenericPTE::paddr(&top), hpa((1 << 56) - SIZE_4K));
    assert!(!Sv39x4Pte::from_raw(0).is_present());
    assert_eq!(GenericPTE::flags(&Sv39x4Pte::from_raw(0)), MF::empty());
}

// -- hgatp ---------------------------------------------------------------

#[test]
fn hgatp_golden() {
    let p = |vmid| Sv39x4Params { vmid, adue: 0 };
    // MODE 8 << 60 = 0x8000_0000_0000_0000; PPN 0x8000_0000 >> 12 = 0x80000.
    assert_eq!(
        Sv39x4::hgatp(hpa(0x8000_0000), &p(0)),
        Ok(0x8000_0000_0008_0000)
    );
    // VMID 0x2A5 << 44 = 0x002A_5000_0000_0000.
    assert_eq!(
        Sv39x4::hgatp(hpa(0x8000_0000), &p(0x2A5)),
        Ok(0x802A_5000_0008_0000)
    );
    // VMID 0x3FFF << 44 = 0x03FF_F000_0000_0000 (bits 59:58 stay 0).
    assert_eq!(
        Sv39x4::hgatp(hpa(0x8000_0000), &p(0x3FFF)),
        Ok(0x83FF_F000_0008_0000)
    );
    // Root 2^56 - 16K: PPN 0xFFF_FFFF_FFFC (44 bits).
    assert_eq!(
        Sv39x4::hgatp(hpa((1 << 56) - 0x4000), &p(0)),
        Ok(0x8000_0FFF_FFFF_FFFC)
    );
    // Root 2^56: PPN 2^44 does not fit 43:0.
    assert!(matches!(
        Sv39x4::hgatp(hpa(1 << 56), &p(0)),
        Err(Error::RegisterField {
            register: "hgatp",
            field: "ppn"
        })
    ));
}

#[test]
fn root_register_is_hgatp() {
    let t = fresh_vmid(0x2A5);
    assert_eq!(
        t.params(),
        &Sv39x4Params {
            vmid: 0x2A5,
            adue: 0
        }
    );
    // As in hgatp_golden: 8 << 60 | 0x2A5 << 44 | 0x80000.
    assert_eq!(t.root_register(), 0x802A_5000_0008_0000);
    drop(t);
    let t = fresh_vmid(0x3FFF);
    assert_eq!(t.root_register(), 0x83FF_F000_0008_0000);
}

#[test]
fn vmid_beyond_14_bits_refused() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let r = Table::<Sv39x4>::try_new_with(Sv39x4Params {
        vmid: 1 << 14,
        adue: 0,
    });
    assert_eq!(
        r.err(),
        Some(Error::ParamOutOfRange {
            param: "vmid",
            value: 0x4000,
            width: 14
        })
    );
    // The root was given back.
    assert_eq!(live_frames(), 0);
}

// -- flush recordings ------------------------------------------------------

const VMID: u64 = 0x2A5;

#[test]
fn map_installing_tables_issues_context_fence() {
    let mut t = fresh_vmid(VMID);
    // Two tables are installed (L1, L0): the whole-VMID fence
    // HFENCE.GVMA x0, vmid covers the new leaf too.
    let tf = t.map(gpa(0x20_3000), hpa(0x9000), SIZE_4K, RW).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert_eq!(recorded(tf), [hfence(Arg::Zero, VMID)]);
}

#[test]
fn map_issues_fence_per_new_leaf() {
    let mut t = fresh_vmid(VMID);
    t.map(gpa(0x20_3000), hpa(0x9000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    // Same L0 table: no table installed, invalid -> valid still fenced.
    let tf = t.map(gpa(0x20_4000), hpa(0xA000), SIZE_4K, RW).unwrap();
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(tf.pages().collect::<Vec<_>>(), [0x20_4000]);
    // rs1 = 0x20_4000 >> 2 = 0x8_1000.
    assert_eq!(recorded(tf), [hfence(Arg::Value(0x8_1000), VMID)]);
    // Three pages 0x20_5000..0x20_8000: 0x8_1400, 0x8_1800, 0x8_1C00.
    let tf = t
        .map_region(gpa(0x20_5000), hpa(0xB000), 0x3000, RW, true)
        .unwrap();
    assert_eq!(
        recorded(tf),
        [
            hfence(Arg::Value(0x8_1400), VMID),
            hfence(Arg::Value(0x8_1800), VMID),
            hfence(Arg::Value(0x8_1C00), VMID),
        ]
    );
    // A 1G leaf in the root: no table; 0x4000_0000 >> 2 = 0x1000_0000.
    let tf = t
        .map(gpa(0x4000_0000), hpa(0x4000_0000), SIZE_1G, RW)
        .unwrap();
    assert_eq!(recorded(tf), [hfence(Arg::Value(0x1000_0000), VMID)]);
}

#[test]
fn unmap_and_protect_issue_per_page_fences() {
    let mut t = fresh_vmid(VMID);
    t.map_region(gpa(0x20_0000), hpa(0x20_0000), 0x4000, RW, true)
        .unwrap()
        .ignore();
    let (tr, tf) = t.unmap(gpa(0x20_1000)).unwrap();
    assert_eq!(tr.hpa, hpa(0x20_1000));
    // 0x20_1000 >> 2 = 0x8_0400.
    assert_eq!(recorded(tf), [hfence(Arg::Value(0x8_0400), VMID)]);
    let tf = t.unmap_region(gpa(0x20_2000), 0x2000).unwrap();
    // 0x20_2000 >> 2 = 0x8_0800, 0x20_3000 >> 2 = 0x8_0C00.
    assert_eq!(
        recorded(tf),
        [
            hfence(Arg::Value(0x8_0800), VMID),
            hfence(Arg::Value(0x8_0C00), VMID),
        ]
    );
    // 0x20_0000 >> 2 = 0x8_0000.
    let tf = t.protect(gpa(0x20_0000), R).unwrap();
    assert_eq!(recorded(tf), [hfence(Arg::Value(0x8_0000), VMID)]);
}

#[test]
fn unmap_of_a_whole_table_frees_it_and_fences_the_context() {
    let mut t = fresh_vmid(VMID);
    t.map_region(gpa(0x20_0000), hpa(0x20_0000), SIZE_2M, RW, false)
        .unwrap()
        .ignore();
    assert_eq!(t.frames_used(), 6);
    // The range covers the whole L0 table, and the L1 table above it then
    // holds nothing either: both are unlinked, a non-leaf change that only
    // HFENCE.GVMA with rs1 = x0 covers.
    let tf = t.unmap_region(gpa(0x20_0000), SIZE_2M).unwrap();
    assert_eq!(tf.tables_to_free(), 2);
    assert_eq!(recorded(tf), [hfence(Arg::Zero, VMID)]);
    assert_eq!(t.frames_used(), 4);
    assert_eq!(npt_tests::live_frames(), 4);
}

// Regression: a map refused after it had installed tables lost the context
// fence those non-leaf PTEs need (HFENCE.GVMA with rs1 = gpa invalidates
// leaf entries only, so a hart that cached the invalid L1 entry, allowed
// without Svvptc, could keep faulting). Now a map plans before it writes:
// a refused map installs nothing and owes nothing.
#[test]
fn map_after_refused_map_fences_the_tables_it_installed() {
    let mut t = fresh_vmid(VMID);
    // Root[1] -> L1 at 0x8000_4000; L1[1] -> L0 at 0x8000_5000.
    let tf = t.map(gpa(0x4020_0000), hpa(0x9000), SIZE_4K, RW).unwrap();
    assert_eq!(recorded(tf), [hfence(Arg::Zero, VMID)]);
    let frames = live_frames();
    // Would install L1[0] -> a new L0, but meets the page at 0x4020_0000
    // while planning, before anything is written or allocated: no table
    // is installed, so no fence is owed.
    let r = t.map_region(
        gpa(0x4000_0000),
        hpa(0x10_0000),
        SIZE_2M + SIZE_4K,
        RW,
        false,
    );
    assert_eq!(
        r.err(),
        Some(Error::AlreadyMapped {
            gpa: gpa(0x4020_0000)
        })
    );
    assert_eq!(read_phys(0x8000_4000), 0, "L1[0] still invalid");
    assert_eq!(live_frames(), frames);
    // The next map installs L1[0] -> L0 at 0x8000_6000 and fences the
    // whole VMID for it (rs1 = x0: the non-leaf entry changed).
    let tf = t
        .map(gpa(0x4000_0000), hpa(0x10_0000), SIZE_4K, RW)
        .unwrap();
    assert_eq!(recorded(tf), [hfence(Arg::Zero, VMID)]);
    // L1[0] = 0x80006 << 10 | V.
    assert_eq!(read_phys(0x8000_4000), 0x2000_1801);
}

#[test]
fn flush_all_is_hfence_gvma_x0_x0() {
    let mut rec = Recorder::default();
    npt::flush::flush_all::<Sv39x4>(&mut rec).unwrap();
    assert_eq!(
        rec.instrs(),
        [Issued {
            instr: Instr::HfenceGvma,
            args: [Arg::Zero, Arg::Zero]
        }]
    );
}

// -- the 41-bit input range -----------------------------------------------

#[test]
fn highest_gpa_maps_and_queries() {
    let mut t = fresh::<Sv39x4>();
    // 2^41 - 4K = 0x1FF_FFFF_F000: indices 0x7FF, 0x1FF, 0x1FF.
    let top = (1usize << 41) - SIZE_4K;
    assert_eq!(top, 0x1FF_FFFF_F000);
    t.map(gpa(top), hpa(0x5000), SIZE_4K, RW).unwrap().ignore();
    let q = t.query(gpa(0x1FF_FFFF_FFFF)).unwrap();
    assert_eq!((q.hpa, q.size, q.flags), (hpa(0x5FFF), SIZE_4K, RW));
    // Root[0x7FF] at 0x8000_0000 + 0x3FF8 -> L1 0x8000_4000.
    assert_eq!(read_phys(0x8000_3FF8), 0x2000_1001);
    // L1[0x1FF] at 0x8000_4FF8 -> L0 0x8000_5000.
    assert_eq!(read_phys(0x8000_4FF8), 0x2000_1401);
    // L0[0x1FF]: 0x5000 >> 2 = 0x1400 | 0xD7.
    assert_eq!(read_phys(0x8000_5FF8), 0x14D7);
    let l = leaves(&t);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].gpa, gpa(top));
    // The top gigapage too: root index 0x7FF.
    drop(t);
    let mut t = fresh::<Sv39x4>();
    t.map(gpa(0x1FF_C000_0000), hpa(0), SIZE_1G, R)
        .unwrap()
        .ignore();
    // Root[0x7FF]: PPN 0, R leaf 0xD3.
    assert_eq!(read_phys(0x8000_3FF8), 0xD3);
}

#[test]
fn gpa_2_pow_41_refused() {
    let mut t = fresh::<Sv39x4>();
    let limit = 1usize << 41;
    let out = Some(Error::GpaOutOfRange {
        gpa: gpa(limit),
        input_bits: 41,
    });
    assert_eq!(t.map(gpa(limit), hpa(0), SIZE_4K, RW).err(), out);
    assert_eq!(
        t.map_region(gpa(limit - SIZE_4K), hpa(0), 2 * SIZE_4K, RW, true)
            .err(),
        out
    );
    assert_eq!(t.query(gpa(limit)).err(), out);
    assert_eq!(t.unmap_region(gpa(limit), SIZE_4K).err(), out);
    // Not truncated into GPA 0 either.
    assert!(leaves(&t).is_empty());
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn gpa_bits_39_and_40_select_upper_root_entries() {
    let mut t = fresh::<Sv39x4>();
    let base = 0x1000;
    let bit39 = base | (1 << 39);
    let bit40 = base | (1 << 40);
    t.map(gpa(base), hpa(0x1_0000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    t.map(gpa(bit39), hpa(0x2_0000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    t.map(gpa(bit40), hpa(0x3_0000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    // GPA[40:30]: bit 39 -> index 1 << 9 = 512, bit 40 -> 1 << 10 = 1024.
    // Tables in order: L1 0x8000_4000, L0 0x8000_5000 (index 0); L1
    // 0x8000_6000, L0 0x8000_7000 (512); L1 0x8000_8000, L0 0x8000_9000
    // (1024).
    assert_eq!(entry(ROOT, 0), 0x2000_1001);
    // 512 * 8 = 0x1000: 0x80006 << 10 | V.
    assert_eq!(read_phys(0x8000_1000), 0x2000_1801);
    // 1024 * 8 = 0x2000: 0x80008 << 10 | V.
    assert_eq!(read_phys(0x8000_2000), 0x2000_2001);
    // L0 entry 1 of each: 0x1_0000 >> 2 = 0x4000, 0x8000, 0xC000 | 0xD7.
    assert_eq!(read_phys(0x8000_5008), 0x40D7);
    assert_eq!(read_phys(0x8000_7008), 0x80D7);
    assert_eq!(read_phys(0x8000_9008), 0xC0D7);
    let q = |g| t.query(gpa(g)).unwrap().hpa;
    assert_eq!(
        [q(base), q(bit39), q(bit40)],
        [hpa(0x1_0000), hpa(0x2_0000), hpa(0x3_0000)]
    );
    let l: Vec<_> = leaves(&t).iter().map(|l| l.gpa).collect();
    assert_eq!(l, [gpa(base), gpa(bit39), gpa(bit40)]);
}

/// The 16 KiB root must be 16 KiB aligned: a 4 KiB-aligned address is
/// refused, not encoded with its low PPN bits (regression).
#[test]
fn hgatp_refuses_a_root_not_16k_aligned() {
    assert!(matches!(
        Sv39x4::hgatp(hpa(0x8010_1000), &Sv39x4Params { vmid: 1, adue: 0 }),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
}
