//! Golden values for RISC-V Sv48x4 and Sv57x4 (G-stage), every one derived
//! by hand from the RISC-V privileged spec (Volume II, Hypervisor
//! extension, "Guest Physical Address Translation"; Supervisor-level ISA,
//! "Sv48" and "Sv57"):
//!
//! - Sv48x4: GPA 50 bits, four levels, VPN[3] = GPA[49:39] (11 bits: the
//!   root is 2048 entries, 16 KiB, 16 KiB aligned), VPN[2] = GPA[38:30],
//!   VPN[1] = GPA[29:21], VPN[0] = GPA[20:12]; a leaf at level 3 is a
//!   512 GiB terapage.
//! - Sv57x4: GPA 59 bits, five levels, VPN[4] = GPA[58:48] (11 bits, the
//!   same 16 KiB root), VPN[3] = GPA[47:39], then as Sv48x4; a leaf at
//!   level 4 is a 256 TiB petapage.
//! - The PTE format is Sv39's: V bit 0, R 1, W 2, X 3, U 4, G 5, A 6, D 7,
//!   PPN in bits 53:10 holding PA bits 55:12 (so the field for a 4K-aligned
//!   PA is `(pa >> 12) << 10 = pa >> 2`); a pointer PTE is V alone.
//!   npt's leaves carry D|A|U|V = 0xD1 plus R 0x02, W 0x04, X 0x08 (see
//!   `golden_sv39x4.rs`): R = 0xD3, RW = 0xD7, RWX = 0xDF.
//! - A superpage's PPN must be aligned to its size (a misaligned superpage
//!   is a page fault), so npt refuses misaligned host addresses.
//! - hgatp: MODE 63:60 = 9 for Sv48x4, 10 for Sv57x4; VMID 57:44; PPN 43:0
//!   = root >> 12.
//! - HFENCE.GVMA: rs1 = GPA >> 2, rs2 = VMID.
//!
//! The simulated memory starts at 0x8000_0000: the root takes the first
//! four frames, tables follow first fit (0x8000_4000, 0x8000_5000, ...).

use npt::flush::{Arg, Instr, Issued};
use npt::riscv::{Sv39x4Params, Sv48x4, Sv57x4};
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::{Error, Format};
use npt_tests::{
    entry, fresh, fresh_with, gpa, hpa, leaves, live_frames, read_phys, record, reset, Table,
    DEFAULT_BASE, DEFAULT_FRAMES, R, RW, RWX,
};

const ROOT: usize = 0x8000_0000;
const SIZE_512G: usize = 1 << 39;
const SIZE_256T: usize = 1 << 48;

fn hfence(rs1: Arg, vmid: u64) -> Issued {
    Issued {
        instr: Instr::HfenceGvma,
        args: [rs1, Arg::Value(vmid)],
    }
}

// -- Sv48x4: geometry as the runtime sees it ------------------------------

#[test]
fn sv48x4_layout() {
    let g = &Sv48x4::LAYOUT.geometry;
    assert_eq!(g.input_bits, 50);
    assert_eq!(g.output_bits, 56);
    // (number, lowest index bit, bits, leaf) from the manual's VPN split.
    let levels: Vec<_> = g
        .levels
        .iter()
        .map(|l| (l.number, l.shift, l.index_bits, l.leaf, l.span()))
        .collect();
    assert_eq!(
        levels,
        [
            (3, 39, 11, true, SIZE_512G),
            (2, 30, 9, true, SIZE_1G),
            (1, 21, 9, true, SIZE_2M),
            (0, 12, 9, true, SIZE_4K)
        ]
    );
    assert_eq!((g.root_tables, g.root_align), (4, 0x4000));
}

// -- Sv48x4: hgatp ----------------------------------------------------------

#[test]
fn sv48x4_hgatp_golden() {
    let p = |vmid| Sv39x4Params { vmid, adue: 0 };
    // MODE 9 << 60 = 0x9000_0000_0000_0000; PPN 0x8000_0000 >> 12 = 0x80000.
    assert_eq!(
        Sv48x4::hgatp(hpa(0x8000_0000), &p(0)),
        Ok(0x9000_0000_0008_0000)
    );
    // VMID 0x2A5 << 44 = 0x002A_5000_0000_0000.
    assert_eq!(
        Sv48x4::hgatp(hpa(0x8000_0000), &p(0x2A5)),
        Ok(0x902A_5000_0008_0000)
    );
    // A 4 KiB-aligned root that is not 16 KiB aligned: refused, not encoded.
    assert!(matches!(
        Sv48x4::hgatp(hpa(0x8010_1000), &p(1)),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
    let t = fresh_with::<Sv48x4>(p(0x2A5));
    assert_eq!(t.root_paddr(), hpa(ROOT));
    assert_eq!(t.frames_used(), 4);
    assert_eq!(t.root_register(), 0x902A_5000_0008_0000);
}

// -- Sv48x4: a leaf at every level ------------------------------------------

#[test]
fn sv48x4_terapage_in_the_root() {
    let mut t = fresh::<Sv48x4>();
    // GPA 2^39 (VPN[3] = 1) -> HPA 2^40 (512 GiB aligned), RW.
    t.map(gpa(1 << 39), hpa(1 << 40), SIZE_512G, RW)
        .unwrap()
        .ignore();
    // PPN field: 2^40 >> 2 = 2^38 = 0x40_0000_0000; RW leaf 0xD7.
    let raw = 0x40_0000_00D7;
    let l = leaves(&t);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (l[0].gpa, l[0].hpa, l[0].size, l[0].level, l[0].raw),
        (gpa(1 << 39), hpa(1 << 40), SIZE_512G, 0, raw)
    );
    // Root entry 1 at 0x8000_0008; no table below.
    assert_eq!(entry(ROOT, 1), raw);
    assert_eq!(t.frames_used(), 4);
    // Within the terapage: GPA 2^39 + 0x12_3456_789A -> HPA 2^40 + the same.
    let q = t.query(gpa((1 << 39) + 0x12_3456_789A)).unwrap();
    assert_eq!(
        (q.hpa, q.size, q.flags),
        (hpa((1 << 40) + 0x12_3456_789A), SIZE_512G, RW)
    );
}

#[test]
fn sv48x4_terapage_needs_512g_alignment() {
    let mut t = fresh::<Sv48x4>();
    // HPA 2^39 + 1 GiB is only 1 GiB aligned.
    assert_eq!(
        t.map(gpa(1 << 39), hpa((1 << 39) + SIZE_1G), SIZE_512G, RW)
            .err(),
        Some(Error::MisalignedHpa {
            hpa: hpa((1 << 39) + SIZE_1G),
            align: SIZE_512G
        })
    );
    // A map_region of 512 GiB + 1 GiB at that HPA takes gigapages, not a
    // terapage: 513 root-level-2 leaves under one level-2 table ... only
    // the first one checked here: GPA 2^39 -> HPA 2^39 + 1 GiB, 1 GiB.
    t.map_region(
        gpa(1 << 39),
        hpa((1 << 39) + SIZE_1G),
        2 * SIZE_1G,
        RW,
        true,
    )
    .unwrap()
    .ignore();
    let l = leaves(&t);
    assert_eq!(l.len(), 2);
    assert_eq!((l[0].size, l[1].size), (SIZE_1G, SIZE_1G));
    // Root[1] -> L2 at 0x8000_4000 (0x80004 << 10 | V = 0x2000_1001).
    assert_eq!(entry(ROOT, 1), 0x2000_1001);
    // L2[0]: (2^39 + 2^30) >> 2 = 0x20_0000_0000 + 0x1000_0000 | 0xD7.
    assert_eq!(read_phys(0x8000_4000), 0x20_1000_00D7);
    // L2[1]: (2^39 + 2^31) >> 2 = 0x20_2000_0000 | 0xD7.
    assert_eq!(read_phys(0x8000_4008), 0x20_2000_00D7);
}

#[test]
fn sv48x4_gigapage_below_the_root() {
    let mut t = fresh::<Sv48x4>();
    // GPA 0x4000_0000: VPN[3] = 0, VPN[2] = 1. HPA 0x1_0000_0000, RWX.
    t.map(gpa(0x4000_0000), hpa(0x1_0000_0000), SIZE_1G, RWX)
        .unwrap()
        .ignore();
    // Root[0] -> level-2 table at 0x8000_4000: 0x80004 << 10 | V.
    assert_eq!(entry(ROOT, 0), 0x2000_1001);
    // L2[1] at 0x8000_4008: 0x1_0000_0000 >> 2 = 0x4000_0000 | 0xDF.
    assert_eq!(read_phys(0x8000_4008), 0x4000_00DF);
    let l = leaves(&t);
    assert_eq!((l[0].size, l[0].level), (SIZE_1G, 1));
    assert_eq!(t.frames_used(), 5);
}

#[test]
fn sv48x4_page_chain_with_gpa_bit_49() {
    let mut t = fresh::<Sv48x4>();
    // VPN[3] = 0x403 (bit 49 of the GPA is VPN[3] bit 10), VPN[2] = 5,
    // VPN[1] = 7, VPN[0] = 9:
    // 0x403 << 39 = 0x2_0180_0000_0000, 5 << 30 = 0x1_4000_0000,
    // 7 << 21 = 0xE0_0000, 9 << 12 = 0x9000: GPA 0x2_0181_40E0_9000.
    let g = 0x2_0181_40E0_9000;
    t.map(gpa(g), hpa(0xABCD_E000), SIZE_4K, R)
        .unwrap()
        .ignore();
    // Root[0x403] at 0x8000_0000 + 0x403 * 8 = 0x8000_2018 -> L2 0x8000_4000.
    assert_eq!(read_phys(0x8000_2018), 0x2000_1001);
    // L2[5] at 0x8000_4028 -> L1 0x8000_5000 (0x80005 << 10 = 0x2000_1400).
    assert_eq!(read_phys(0x8000_4028), 0x2000_1401);
    // L1[7] at 0x8000_5038 -> L0 0x8000_6000 (0x80006 << 10 = 0x2000_1800).
    assert_eq!(read_phys(0x8000_5038), 0x2000_1801);
    // L0[9] at 0x8000_6048: 0xABCD_E000 >> 2 = 0x2AF3_7800 | 0xD3.
    assert_eq!(read_phys(0x8000_6048), 0x2AF3_78D3);
    assert_eq!(t.frames_used(), 7);
    let l = leaves(&t);
    assert_eq!((l[0].gpa, l[0].size, l[0].level), (gpa(g), SIZE_4K, 3));
    // GPA bit 49 is not dropped: the same GPA without it is a hole.
    assert!(matches!(
        t.query(gpa(g & !(1 << 49))),
        Err(Error::NotMapped { .. })
    ));
}

#[test]
fn sv48x4_megapage() {
    let mut t = fresh::<Sv48x4>();
    // GPA 0x20_0000: VPN[3] = 0, VPN[2] = 0, VPN[1] = 1. HPA 0x1_2340_0000.
    t.map(gpa(0x20_0000), hpa(0x1_2340_0000), SIZE_2M, RW)
        .unwrap()
        .ignore();
    // Root[0] -> L2 0x8000_4000; L2[0] -> L1 0x8000_5000.
    assert_eq!(entry(ROOT, 0), 0x2000_1001);
    assert_eq!(read_phys(0x8000_4000), 0x2000_1401);
    // L1[1] at 0x8000_5008: 0x1_2340_0000 >> 2 = 0x48D0_0000 | 0xD7.
    assert_eq!(read_phys(0x8000_5008), 0x48D0_00D7);
    assert_eq!(leaves(&t)[0].level, 2);
}

// -- Sv48x4: the 50-bit range -------------------------------------------------

#[test]
fn sv48x4_bit_49_and_the_limit() {
    let mut t = fresh::<Sv48x4>();
    let lo = 0x1000;
    let hi = lo | (1 << 49);
    t.map(gpa(lo), hpa(0x1_0000), SIZE_4K, RW).unwrap().ignore();
    t.map(gpa(hi), hpa(0x2_0000), SIZE_4K, RW).unwrap().ignore();
    // Root indices 0 and 0x400 (bit 49 = VPN[3] bit 10): 0x8000_0000 and
    // 0x8000_2000; the first chain takes 0x8000_4000..6000, the second
    // 0x8000_7000..9000.
    assert_eq!(entry(ROOT, 0), 0x2000_1001);
    assert_eq!(read_phys(0x8000_2000), 0x2000_1C01);
    // Last L0 of each, entry 1: 0x1_0000 >> 2 = 0x4000, 0x2_0000 >> 2 = 0x8000.
    assert_eq!(read_phys(0x8000_6008), 0x40D7);
    assert_eq!(read_phys(0x8000_9008), 0x80D7);
    assert_eq!(t.query(gpa(hi)).unwrap().hpa, hpa(0x2_0000));
    // The top page, 2^50 - 4K: indices 0x7FF, 0x1FF, 0x1FF, 0x1FF.
    let top = (1usize << 50) - SIZE_4K;
    assert_eq!(top, 0x3_FFFF_FFFF_F000);
    t.map(gpa(top), hpa(0x5000), SIZE_4K, RW).unwrap().ignore();
    // Root[0x7FF] at 0x8000_3FF8 -> the next L2, 0x8000_A000.
    assert_eq!(read_phys(0x8000_3FF8), 0x2000_2801);
    assert_eq!(t.query(gpa(top + 0xFFF)).unwrap().hpa, hpa(0x5FFF));
    // 2^50 and 2^50 | 0x1000 are refused, not wrapped to 0 / 0x1000.
    let frames = t.frames_used();
    for g in [1usize << 50, (1 << 50) | lo] {
        let out = Some(Error::GpaOutOfRange {
            gpa: gpa(g),
            input_bits: 50,
        });
        assert_eq!(t.map(gpa(g), hpa(0x3_0000), SIZE_4K, RW).err(), out);
        assert_eq!(t.query(gpa(g)).err(), out);
    }
    assert_eq!(
        t.map_region(gpa(top), hpa(0), 2 * SIZE_4K, RW, true).err(),
        Some(Error::GpaOutOfRange {
            gpa: gpa(1 << 50),
            input_bits: 50
        })
    );
    assert_eq!(t.frames_used(), frames);
    assert_eq!(t.query(gpa(lo)).unwrap().hpa, hpa(0x1_0000));
}

#[test]
fn sv48x4_fence_carries_the_whole_gpa() {
    let vmid = 0x2A5;
    let mut t = fresh_with::<Sv48x4>(Sv39x4Params { vmid, adue: 0 });
    let hi = (1usize << 49) | 0x1000;
    t.map_region(gpa(hi), hpa(0x1_0000), 2 * SIZE_4K, RW, true)
        .unwrap()
        .ignore();
    let (_, tf) = t.unmap(gpa(hi)).unwrap();
    // rs1 = (2^49 | 0x1000) >> 2 = 2^47 | 0x400 = 0x8000_0000_0400.
    assert_eq!(
        record(tf, 0).instrs(),
        [hfence(Arg::Value(0x8000_0000_0400), vmid)]
    );
}

// -- Sv57x4 ------------------------------------------------------------------

#[test]
fn sv57x4_layout_and_hgatp() {
    let g = &Sv57x4::LAYOUT.geometry;
    assert_eq!(g.input_bits, 59);
    let levels: Vec<_> = g
        .levels
        .iter()
        .map(|l| (l.number, l.shift, l.index_bits, l.leaf, l.span()))
        .collect();
    assert_eq!(
        levels,
        [
            (4, 48, 11, true, SIZE_256T),
            (3, 39, 9, true, SIZE_512G),
            (2, 30, 9, true, SIZE_1G),
            (1, 21, 9, true, SIZE_2M),
            (0, 12, 9, true, SIZE_4K)
        ]
    );
    assert_eq!((g.root_tables, g.root_align), (4, 0x4000));
    let p = |vmid| Sv39x4Params { vmid, adue: 0 };
    // MODE 10 << 60 = 0xA000_0000_0000_0000; PPN 0x80000.
    assert_eq!(
        Sv57x4::hgatp(hpa(0x8000_0000), &p(0)),
        Ok(0xA000_0000_0008_0000)
    );
    // VMID 0x3FFF << 44 = 0x03FF_F000_0000_0000.
    assert_eq!(
        Sv57x4::hgatp(hpa(0x8000_0000), &p(0x3FFF)),
        Ok(0xA3FF_F000_0008_0000)
    );
    assert!(matches!(
        Sv57x4::hgatp(hpa(0x8000_2000), &p(0)),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
    let t = fresh_with::<Sv57x4>(p(1));
    // 10 << 60 | 1 << 44 | 0x80000.
    assert_eq!(t.root_register(), 0xA000_1000_0008_0000);
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn sv57x4_petapage_in_the_root() {
    let mut t = fresh::<Sv57x4>();
    // GPA 2^48 (VPN[4] = 1) -> HPA 2^48 (256 TiB aligned), RW.
    t.map(gpa(1 << 48), hpa(1 << 48), SIZE_256T, RW)
        .unwrap()
        .ignore();
    // PPN field: 2^48 >> 2 = 2^46 = 0x4000_0000_0000; | 0xD7.
    let raw = 0x4000_0000_00D7;
    assert_eq!(entry(ROOT, 1), raw);
    let l = leaves(&t);
    assert_eq!(
        (l[0].gpa, l[0].hpa, l[0].size, l[0].level, l[0].raw),
        (gpa(1 << 48), hpa(1 << 48), SIZE_256T, 0, raw)
    );
    assert_eq!(t.frames_used(), 4);
    // HPA 2^47 is only 128 TiB aligned.
    assert_eq!(
        t.map(gpa(2 << 48), hpa(1 << 47), SIZE_256T, RW).err(),
        Some(Error::MisalignedHpa {
            hpa: hpa(1 << 47),
            align: SIZE_256T
        })
    );
}

#[test]
fn sv57x4_terapage_below_the_root() {
    let mut t = fresh::<Sv57x4>();
    // GPA 2^39: VPN[4] = 0, VPN[3] = 1. HPA 0 (aligned to anything).
    t.map(gpa(1 << 39), hpa(0), SIZE_512G, R).unwrap().ignore();
    // Root[0] -> L3 at 0x8000_4000; L3[1] at 0x8000_4008: PPN 0 | 0xD3.
    assert_eq!(entry(ROOT, 0), 0x2000_1001);
    assert_eq!(read_phys(0x8000_4008), 0xD3);
    assert_eq!(leaves(&t)[0].level, 1);
}

#[test]
fn sv57x4_page_chain_with_gpa_bit_58() {
    let mut t = fresh::<Sv57x4>();
    // VPN[4] = 0x401 (GPA bit 58 is VPN[4] bit 10), VPN[3] = 2, VPN[2] = 3,
    // VPN[1] = 4, VPN[0] = 5: 0x401 << 48 = 0x401_0000_0000_0000,
    // 2 << 39 = 0x100_0000_0000, 3 << 30 = 0xC000_0000, 4 << 21 = 0x80_0000,
    // 5 << 12 = 0x5000: GPA 0x401_0100_C080_5000.
    let g = 0x401_0100_C080_5000;
    t.map(gpa(g), hpa(0x1234_5000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    // Root[0x401] at 0x8000_2008 -> L3 0x8000_4000.
    assert_eq!(read_phys(0x8000_2008), 0x2000_1001);
    // L3[2] at 0x8000_4010 -> L2 0x8000_5000.
    assert_eq!(read_phys(0x8000_4010), 0x2000_1401);
    // L2[3] at 0x8000_5018 -> L1 0x8000_6000.
    assert_eq!(read_phys(0x8000_5018), 0x2000_1801);
    // L1[4] at 0x8000_6020 -> L0 0x8000_7000 (0x80007 << 10 = 0x2000_1C00).
    assert_eq!(read_phys(0x8000_6020), 0x2000_1C01);
    // L0[5] at 0x8000_7028: 0x1234_5000 >> 2 = 0x048D_1400 | 0xD7.
    assert_eq!(read_phys(0x8000_7028), 0x048D_14D7);
    assert_eq!(t.frames_used(), 8);
    assert_eq!(leaves(&t)[0].level, 4);
    assert!(matches!(
        t.query(gpa(g & !(1 << 58))),
        Err(Error::NotMapped { .. })
    ));
}

#[test]
fn sv57x4_the_59_bit_limit() {
    let mut t = fresh::<Sv57x4>();
    let top = (1usize << 59) - SIZE_4K;
    assert_eq!(top, 0x7FF_FFFF_FFFF_F000);
    t.map(gpa(top), hpa(0x7000), SIZE_4K, RW).unwrap().ignore();
    // Root[0x7FF] at 0x8000_3FF8 -> L3 0x8000_4000.
    assert_eq!(read_phys(0x8000_3FF8), 0x2000_1001);
    // L0 (the fourth table, 0x8000_7000) [0x1FF]: 0x7000 >> 2 = 0x1C00 | 0xD7.
    assert_eq!(read_phys(0x8000_7FF8), 0x1CD7);
    for g in [1usize << 59, (1 << 59) | 0x7000, 1 << 63] {
        assert_eq!(
            t.map(gpa(g), hpa(0x8000), SIZE_4K, RW).err(),
            Some(Error::GpaOutOfRange {
                gpa: gpa(g),
                input_bits: 59
            })
        );
    }
    assert_eq!(t.frames_used(), 8);
    let (_, tf) = t.unmap(gpa(top)).unwrap();
    // The whole chain empties: tables unlinked, so HFENCE.GVMA x0, VMID 0.
    assert_eq!(record(tf, 0).instrs(), [hfence(Arg::Zero, 0)]);
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn drop_frees_every_frame() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let mut t = Table::<Sv57x4>::try_new().unwrap();
    t.map(gpa(0x401_0100_C080_5000), hpa(0x1000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    t.map(gpa(1 << 48), hpa(0), SIZE_256T, RW).unwrap().ignore();
    assert_eq!(live_frames(), 8);
    drop(t);
    assert_eq!(live_frames(), 0);
}
