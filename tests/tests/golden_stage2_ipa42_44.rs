//! Golden values for Arm stage 2 with the 4 KiB granule at a 42-bit and a
//! 44-bit IPA, `npt::aarch64::{Stage2Ipa42, Stage2Ipa44}`, derived by hand
//! from the Arm ARM (DDI 0487):
//!
//! - D8.2, the initial stage-2 lookup and concatenated tables (and the
//!   pseudocode `AArch64.S2InconsistentSL`): with the 4KB granule the
//!   levels below the initial one resolve 9 bits each above the 12-bit
//!   offset, and the initial level resolves 1 to 9 + 4 bits (up to 16
//!   concatenated tables). A 42-bit IPA starting at level 1 resolves
//!   IA[41:30] = 12 bits there: 4096 entries of 8 bytes, 8 concatenated
//!   4 KiB tables, 32 KiB, aligned to 32 KiB (VTTBR_EL2.BADDR is aligned to
//!   the size of the concatenated tables). A 44-bit IPA at level 1 would
//!   need 14 bits = 32 tables (more than 16), so it starts at level 0,
//!   which resolves IA[43:39] = 5 bits: 32 entries of one 4 KiB table.
//! - VTCR_EL2: T0SZ = 64 - IPA bits (bits 5:0), SL0 (bits 7:6) with TG0 =
//!   4KB: 0b01 level 1, 0b10 level 0; IRGN0 = 01 0x100, ORGN0 = 01 0x400,
//!   SH0 = 11 0x3000, TG0 = 00, PS (bits 18:16) 0b011 42 bits, 0b100 44
//!   bits, 0b101 48 bits; bit 31 RES1. So the fixed part is 0x8000_3500
//!   plus PS << 16.
//! - `AArch64.S2InvalidSL`: 4KB granule with SL0 = 0b10 (level-0 start) is
//!   invalid when PAMax() < 44.
//! - D8.3 descriptors: a Normal Write-Back Inner Shareable RW page is
//!   0b11 | MemAttr 0b1111 << 2 | S2AP 0b11 << 6 | SH 0b11 << 8 | AF << 10
//!   = 0x7ff, with XN = 0b10 (bit 54) for a non-executable one; a block has
//!   bits 1:0 = 0b01 (0x7fd); a table descriptor is its address | 0b11.
//! - C5.5 TLBI IPAS2E1IS: Xt[35:0] = IPA[47:12].
//!
//! The simulated memory starts at 0x8000_0000 (first fit).

use npt::aarch64::{Stage2Ipa42, Stage2Ipa44, Stage2Ipa48, Stage2Params};
use npt::flush::{Arg, ContextRegister, Event, Instr, Issued};
use npt::size::{SIZE_1G, SIZE_4K};
use npt::{Error, Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa};
use npt_tests::{
    entry, fresh, fresh_with, leaves, live_frames, map, read_phys, record, reset, Table,
    DEFAULT_BASE, DEFAULT_FRAMES, RW,
};

const ROOT: usize = 0x8000_0000;
/// A non-executable RW Normal page at HPA 0x1_8000_5000:
/// 0x7ff | bit 54 | 0x1_8000_5000.
const PAGE_RW: u64 = 0x0040_0001_8000_57ff;
/// A 1 GiB RW block at HPA 0x1_0000_0000: 0x7fd | bit 54 | OA.
const BLOCK_1G_RW: u64 = 0x0040_0001_0000_07fd;

fn params(vmid: u64, pa_bits: u64) -> Stage2Params {
    Stage2Params {
        vmid,
        pa_bits,
        hafdbs: 0,
    }
}

fn rule<F: Format>(r: Result<Table<F>, Error>) -> &'static str {
    match r {
        Err(Error::Requirement { rule, .. }) => rule,
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("accepted"),
    }
}

// -- geometry -----------------------------------------------------------------

#[test]
fn layouts() {
    let levels = |g: &npt::format::Geometry| -> Vec<_> {
        g.levels
            .iter()
            .map(|l| (l.number, l.shift, l.index_bits, l.leaf))
            .collect()
    };
    let g = &Stage2Ipa42::LAYOUT.geometry;
    assert_eq!((g.input_bits, g.root_tables, g.root_align), (42, 8, 0x8000));
    assert_eq!(
        levels(g),
        [(1, 30, 12, true), (2, 21, 9, true), (3, 12, 9, true)]
    );
    let g = &Stage2Ipa44::LAYOUT.geometry;
    assert_eq!((g.input_bits, g.root_tables, g.root_align), (44, 1, 0x1000));
    // Level 0 holds no blocks with the 4KB granule and a 48-bit OA.
    assert_eq!(
        levels(g),
        [
            (0, 39, 5, false),
            (1, 30, 9, true),
            (2, 21, 9, true),
            (3, 12, 9, true)
        ]
    );
}

// -- registers ------------------------------------------------------------------

#[test]
fn vtcr_el2_golden() {
    let root = Hpa::from(ROOT);
    // Ipa42: T0SZ = 22 = 0x16, SL0 = 0b01 = 0x40; PS 48 bits = 0x5_0000:
    // 0x8000_3500 | 0x5_0000 | 0x40 | 0x16 = 0x8005_3556.
    assert_eq!(Stage2Ipa42::vtcr_el2(root, &params(1, 48)), Ok(0x8005_3556));
    // On a 42-bit host: PS = 0b011 = 0x3_0000 -> 0x8003_3556.
    assert_eq!(Stage2Ipa42::vtcr_el2(root, &params(1, 42)), Ok(0x8003_3556));
    // Ipa44: T0SZ = 20 = 0x14, SL0 = 0b10 = 0x80: 0x8005_3594 on a 48-bit
    // host, PS = 0b100 = 0x4_0000 -> 0x8004_3594 on a 44-bit one.
    assert_eq!(Stage2Ipa44::vtcr_el2(root, &params(1, 48)), Ok(0x8005_3594));
    assert_eq!(Stage2Ipa44::vtcr_el2(root, &params(1, 44)), Ok(0x8004_3594));
    // pa_bits 52 (FEAT_LPA reported) is clamped to PS = 48 bits.
    assert_eq!(Stage2Ipa44::vtcr_el2(root, &params(1, 52)), Ok(0x8005_3594));
}

#[test]
fn vttbr_el2_and_the_32k_root() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let t = Table::<Stage2Ipa42>::try_new_with(params(7, 48)).unwrap();
    // 4096 entries * 8 bytes = 32 KiB: 8 frames.
    assert_eq!(t.frames_used(), 8);
    assert_eq!(t.root_paddr(), Hpa::from(ROOT));
    // VMID 7 << 48 | BADDR 0x8000_0000.
    assert_eq!(t.root_register(), 0x0007_0000_8000_0000);
    // BADDR must be aligned to the 32 KiB root: 0x8000_4000 (16 KiB
    // aligned) is refused, 0x8000_8000 accepted.
    let p = params(1, 48);
    assert!(matches!(
        Stage2Ipa42::vttbr_el2(Hpa::from(0x8000_4000), &p),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
    assert_eq!(
        Stage2Ipa42::vttbr_el2(Hpa::from(0x8000_8000), &p),
        Ok(0x0001_0000_8000_8000)
    );
    // Ipa44's root is one 4 KiB table.
    assert_eq!(
        Stage2Ipa44::vttbr_el2(Hpa::from(0x8000_1000), &p),
        Ok(0x0001_0000_8000_1000)
    );
}

#[test]
fn host_pa_size_requirements() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    // A 42-bit IPA needs a 42-bit PA at least.
    assert_eq!(
        rule(Table::<Stage2Ipa42>::try_new_with(params(1, 40))),
        "ipa_within_pa"
    );
    assert!(Table::<Stage2Ipa42>::try_new_with(params(1, 42)).is_ok());
    // A level-0 start (SL0 = 0b10) is invalid below PAMax 44
    // (AArch64.S2InvalidSL), reported before the IPA size.
    for pa_bits in [40, 42] {
        assert_eq!(
            rule(Table::<Stage2Ipa44>::try_new_with(params(1, pa_bits))),
            "start_level_pa"
        );
        assert_eq!(
            rule(Table::<Stage2Ipa48>::try_new_with(params(1, pa_bits))),
            "start_level_pa"
        );
        assert!(matches!(
            Stage2Ipa44::vtcr_el2(Hpa::from(ROOT), &params(1, pa_bits)),
            Err(Error::Requirement {
                rule: "start_level_pa",
                ..
            })
        ));
    }
    for pa_bits in [44, 48, 52] {
        assert!(Table::<Stage2Ipa44>::try_new_with(params(1, pa_bits)).is_ok());
    }
    assert_eq!(live_frames(), 0);
}

// -- Stage2Ipa42 -------------------------------------------------------------------

#[test]
fn ipa42_leaves_and_bit_41() {
    let mut t = fresh::<Stage2Ipa42>();
    // The root is 8 frames, 0x8000_0000..0x8000_8000; tables follow.
    // A 1 GiB block at GPA 0x4000_0000: level-1 index IA[41:30] = 1.
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    assert_eq!(entry(ROOT, 1), BLOCK_1G_RW);
    // GPA 2^41 | 0x3000: IA[41:30] = 0x800, in the fifth concatenated
    // table, at ROOT + 0x800 * 8 = 0x8000_4000 -> L2 at 0x8000_8000;
    // L2[0] -> L3 at 0x8000_9000; L3[3].
    let g = (1usize << 41) | 0x3000;
    map(&mut t, g, 0x1_8000_5000, SIZE_4K, RW);
    assert_eq!(read_phys(0x8000_4000), 0x8000_8003);
    assert_eq!(read_phys(0x8000_8000), 0x8000_9003);
    assert_eq!(read_phys(0x8000_9018), PAGE_RW);
    assert_eq!(t.frames_used(), 10);
    // The same GPA without bit 41 is a hole.
    assert!(matches!(
        t.query(Gpa::from(0x3000)),
        Err(Error::NotMapped { .. })
    ));
    let l = leaves(&t);
    assert_eq!(
        l.iter().map(|l| (l.gpa, l.level)).collect::<Vec<_>>(),
        [(Gpa::from(0x4000_0000), 0), (Gpa::from(g), 2)]
    );
}

#[test]
fn ipa42_top_and_beyond() {
    let mut t = fresh::<Stage2Ipa42>();
    // 2^42 - 4K = 0x3ff_ffff_f000: level-1 index 4095, the last entry of
    // the eighth table (ROOT + 0x7ff8) -> L2 0x8000_8000, L2[511] -> L3
    // 0x8000_9000, L3[511].
    let top = (1usize << 42) - SIZE_4K;
    assert_eq!(top, 0x3ff_ffff_f000);
    map(&mut t, top, 0x1_8000_5000, SIZE_4K, RW);
    assert_eq!(read_phys(0x8000_7ff8), 0x8000_8003);
    assert_eq!(read_phys(0x8000_8ff8), 0x8000_9003);
    assert_eq!(read_phys(0x8000_9ff8), PAGE_RW);
    for g in [1usize << 42, (1 << 42) | 0x3000] {
        assert_eq!(
            t.map(Gpa::from(g), Hpa::from(0x5000), SIZE_4K, RW).err(),
            Some(Error::GpaOutOfRange {
                gpa: Gpa::from(g),
                input_bits: 42
            })
        );
    }
    assert_eq!(t.frames_used(), 10);
}

// -- Stage2Ipa44 -------------------------------------------------------------------

#[test]
fn ipa44_chain_from_level_0_and_bit_43() {
    let mut t = fresh::<Stage2Ipa44>();
    // GPA 2^43 | 0x3000: level-0 index IA[43:39] = 16 at ROOT + 0x80 ->
    // L1 0x8000_1000; L1[0] -> L2 0x8000_2000; L2[0] -> L3 0x8000_3000;
    // L3[3].
    let g = (1usize << 43) | 0x3000;
    map(&mut t, g, 0x1_8000_5000, SIZE_4K, RW);
    assert_eq!(entry(ROOT, 16), 0x8000_1003);
    assert_eq!(read_phys(0x8000_1000), 0x8000_2003);
    assert_eq!(read_phys(0x8000_2000), 0x8000_3003);
    assert_eq!(read_phys(0x8000_3018), PAGE_RW);
    assert_eq!(t.frames_used(), 4);
    // A 1 GiB block below level 0: GPA 0x4000_0000 -> L0[0] -> L1 0x8000_4000,
    // L1[1].
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    assert_eq!(entry(ROOT, 0), 0x8000_4003);
    assert_eq!(read_phys(0x8000_4008), BLOCK_1G_RW);
    // Level 0 has no blocks: 512 GiB is no page size here.
    assert_eq!(
        t.map(Gpa::from(0), Hpa::from(0), 1 << 39, RW).err(),
        Some(Error::UnsupportedPageSize { size: 1 << 39 })
    );
    assert!(matches!(
        t.query(Gpa::from(0x3000)),
        Err(Error::NotMapped { .. })
    ));
}

#[test]
fn ipa44_top_and_beyond() {
    let mut t = fresh::<Stage2Ipa44>();
    // 2^44 - 4K: level-0 index 31 (ROOT + 0xf8), then 511 at each level.
    let top = (1usize << 44) - SIZE_4K;
    assert_eq!(top, 0xfff_ffff_f000);
    map(&mut t, top, 0x1_8000_5000, SIZE_4K, RW);
    assert_eq!(entry(ROOT, 31), 0x8000_1003);
    assert_eq!(read_phys(0x8000_1ff8), 0x8000_2003);
    assert_eq!(read_phys(0x8000_2ff8), 0x8000_3003);
    assert_eq!(read_phys(0x8000_3ff8), PAGE_RW);
    // 2^44 would be level-0 index 32, past the 32 entries the walk uses:
    // refused, and nothing written there.
    for g in [1usize << 44, (1 << 44) | 0x3000] {
        assert_eq!(
            t.map(Gpa::from(g), Hpa::from(0x5000), SIZE_4K, RW).err(),
            Some(Error::GpaOutOfRange {
                gpa: Gpa::from(g),
                input_bits: 44
            })
        );
    }
    assert_eq!(entry(ROOT, 32), 0);
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn ipa44_tlbi_carries_ipa_bit_43() {
    let vttbr = 0x0007_0000_8000_0000; // VMID 7 | root
    let other = 0x0009_0000_9000_0000;
    let mut t = fresh_with::<Stage2Ipa44>(params(7, 48));
    assert_eq!(t.root_register(), vttbr);
    let g = (1usize << 43) | 0x3000;
    map(&mut t, g, 0x1_8000_5000, SIZE_4K, RW);
    map(&mut t, g + SIZE_4K, 0x1_8000_6000, SIZE_4K, RW);
    let (_, tf) = t.unmap(Gpa::from(g)).unwrap();
    // Xt = IPA >> 12 = 2^31 | 3 = 0x8000_0003 (IPA bit 43 is Xt bit 31).
    let i = |instr| {
        Event::Instr(Issued {
            instr,
            args: [Arg::Zero, Arg::Zero],
        })
    };
    assert_eq!(
        record(tf, other).events,
        [
            Event::Switch(ContextRegister::VttbrEl2, vttbr),
            i(Instr::DsbIshst),
            Event::Instr(Issued {
                instr: Instr::TlbiIpas2e1is,
                args: [Arg::Value(0x8000_0003), Arg::Zero],
            }),
            i(Instr::DsbIsh),
            i(Instr::TlbiVmalle1is),
            i(Instr::DsbIsh),
            i(Instr::Isb),
            Event::Restore(ContextRegister::VttbrEl2, other),
        ]
    );
}
