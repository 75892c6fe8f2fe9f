//! Golden (bit-exact) tests for Arm stage 2, `npt::aarch64::{Stage2Ipa39,
//! Stage2Ipa40, Stage2Ipa48}` (4 KiB granule, 48-bit output, FWB off).
//!
//! Every expected raw value is derived by hand from the Arm ARM (DDI 0487):
//! D8.3 descriptor formats, D8.4 S2AP/XN, D8.6 stage-2 MemAttr with
//! FEAT_S2FWB disabled, D8.16/C5.5 TLB maintenance, and the VTTBR_EL2 and
//! VTCR_EL2 register descriptions. The derivation is next to each value.
//! Bits used in the derivations:
//!   bit 0 valid; bit 1 = 1 table (levels 0-2) / page (level 3), 0 block;
//!   MemAttr[3:0] = bits 5:2 (0b1111 Normal WB = 0x3c, 0b0001 Device-nGnRE
//!   = 0x04, 0b0101 Normal NC = 0x14); S2AP[0] = bit 6 (read, 0x40),
//!   S2AP[1] = bit 7 (write, 0x80); SH[1:0] = bits 9:8 (0b11 Inner
//!   Shareable = 0x300); AF = bit 10 (0x400); OA = bits 47:12;
//!   XN[1:0] = bits 54:53, 0b10 (bit 54 = 0x0040_0000_0000_0000) never
//!   executable, 0b00 executable.
//! So a Normal WB Inner Shareable page with S2AP = RW is
//!   0x3 | 0x3c | 0xc0 | 0x300 | 0x400 = 0x7ff, a block 0x7fd.
//!
//! Table frames come from the simulated physical memory of `npt_tests`:
//! base 0x8000_0000, first-fit; a 4 KiB root is at 0x8000_0000 and the
//! 8 KiB (two concatenated tables) root of Stage2Ipa40 at 0x8000_0000 too.

use npt::aarch64::{
    MemAttr, S2Ap, Shareability, Stage2Descriptor, Stage2Ipa39, Stage2Ipa40, Stage2Ipa48,
    Stage2Params, Stage2Xn,
};
use npt::flush::{Arg, ContextRegister, Event, Instr, Issued, Recorder, Scope};
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::{
    Error, Format, GenericPTE, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, Leaf, MappingFlags as MF,
    TlbFlush, Translation,
};
// `map` and `map_pages` check that mapping needs no invalidation: making an
// invalid entry valid needs no TLBI (D8.16).
use npt_tests::{
    all_combinations, entry, fresh, fresh_with, leaves, live_frames, map, map_pages, raw_leaf,
    read_phys, record, reset, snapshot, Table, DEFAULT_BASE, DEFAULT_FRAMES, RW,
};

type RegFn = fn(Hpa, &Stage2Params) -> Result<u64, Error>;

/// The root of a fresh table: the first frame of the arena.
const ROOT: usize = 0x8000_0000;
/// XN[1:0] = 0b10: bit 54.
const XN: u64 = 1 << 54;

// Leaves used throughout, all with READ|WRITE on Normal WB memory.
/// 1G block at L1: 0x7fd (bits 1:0 = 0b01) | XN | OA 0x1_0000_0000.
const BLOCK_1G_RW: u64 = 0x0040_0001_0000_07fd;
/// 2M block at L2: 0x7fd | XN | OA 0x1_4020_0000.
const BLOCK_2M_RW: u64 = 0x0040_0001_4020_07fd;
/// 4K page at L3: 0x7ff (bits 1:0 = 0b11) | XN | OA 0x1_8000_5000.
const PAGE_4K_RW: u64 = 0x0040_0001_8000_57ff;

/// A fresh arena and an empty table with `vmid` whose root is at `ROOT`.
fn fresh_vmid<F: Format<Params = Stage2Params>>(vmid: u64) -> Table<F> {
    fresh_with::<F>(Stage2Params {
        vmid,
        ..Default::default()
    })
}

/// The hand model: Arm stage 2 can encode every READ/WRITE/EXECUTE
/// combination (S2AP 00/01/10/11, XN 00/10); npt refuses two memory types
/// at once and executable Device memory.
fn legal(f: MF) -> bool {
    !f.contains(MF::DEVICE | MF::UNCACHED) && !f.contains(MF::DEVICE | MF::EXECUTE)
}

/// Runs `check` for each of the three formats.
macro_rules! for_each_format {
    ($check:ident) => {
        $check::<Stage2Ipa39>();
        $check::<Stage2Ipa40>();
        $check::<Stage2Ipa48>();
    };
}

// -- leaves and table descriptors ----------------------------------------

/// Maps a 1G block at GPA 0x4000_0000, a 2M block at 0x8020_0000 and a 4K
/// page at 0xc000_3000, all RW, in this order, and checks the leaves.
/// `level1` is the walk index (root = 0) of the manual's level 1.
fn three_leaves<F: Format<Params = Stage2Params>>(level1: usize) -> Table<F> {
    let mut t = fresh::<F>();
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    map(&mut t, 0x8020_0000, 0x1_4020_0000, SIZE_2M, RW);
    map(&mut t, 0xc000_3000, 0x1_8000_5000, SIZE_4K, RW);
    let leaf = |gpa: usize, hpa: usize, size, level, raw| Leaf {
        gpa: Gpa::from(gpa),
        hpa: Hpa::from(hpa),
        size,
        level,
        raw,
        flags: RW,
    };
    assert_eq!(
        leaves(&t),
        vec![
            leaf(0x4000_0000, 0x1_0000_0000, SIZE_1G, level1, BLOCK_1G_RW),
            leaf(0x8020_0000, 0x1_4020_0000, SIZE_2M, level1 + 1, BLOCK_2M_RW),
            leaf(0xc000_3000, 0x1_8000_5000, SIZE_4K, level1 + 2, PAGE_4K_RW),
        ]
    );
    t
}

#[test]
fn ipa39_leaves_and_table_descriptors() {
    let t = three_leaves::<Stage2Ipa39>(0);
    // Root = level 1 (IA[38:30]). 1G block: L1[1].
    assert_eq!(entry(ROOT, 1), BLOCK_1G_RW);
    // 2M at 0x8020_0000: L1[2] -> L2 table, first free frame 0x8000_1000;
    // table descriptor = address | valid | table = 0x8000_1003. L2[1].
    assert_eq!(entry(ROOT, 2), 0x8000_1003);
    assert_eq!(entry(0x8000_1000, 1), BLOCK_2M_RW);
    // 4K at 0xc000_3000: L1[3] -> L2 0x8000_2000, L2[0] -> L3 0x8000_3000,
    // L3[3].
    assert_eq!(entry(ROOT, 3), 0x8000_2003);
    assert_eq!(entry(0x8000_2000, 0), 0x8000_3003);
    assert_eq!(entry(0x8000_3000, 3), PAGE_4K_RW);
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn ipa40_leaves_and_table_descriptors() {
    let t = three_leaves::<Stage2Ipa40>(0);
    // Root = two concatenated level-1 tables (IA[39:30]) in 0x8000_0000 ..
    // 0x8000_1fff, so the first table frame is 0x8000_2000.
    assert_eq!(entry(ROOT, 1), BLOCK_1G_RW);
    assert_eq!(entry(ROOT, 2), 0x8000_2003);
    assert_eq!(entry(0x8000_2000, 1), BLOCK_2M_RW);
    assert_eq!(entry(ROOT, 3), 0x8000_3003);
    assert_eq!(entry(0x8000_3000, 0), 0x8000_4003);
    assert_eq!(entry(0x8000_4000, 3), PAGE_4K_RW);
    assert_eq!(t.frames_used(), 5);
}

#[test]
fn ipa48_leaves_and_table_descriptors() {
    let t = three_leaves::<Stage2Ipa48>(1);
    // Root = level 0 (IA[47:39]); all three GPAs are below 512G: L0[0] ->
    // L1 table 0x8000_1000.
    assert_eq!(entry(ROOT, 0), 0x8000_1003);
    assert_eq!(entry(0x8000_1000, 1), BLOCK_1G_RW);
    assert_eq!(entry(0x8000_1000, 2), 0x8000_2003);
    assert_eq!(entry(0x8000_2000, 1), BLOCK_2M_RW);
    assert_eq!(entry(0x8000_1000, 3), 0x8000_3003);
    assert_eq!(entry(0x8000_3000, 0), 0x8000_4003);
    assert_eq!(entry(0x8000_4000, 3), PAGE_4K_RW);
    assert_eq!(t.frames_used(), 5);
}

#[test]
fn ipa48_has_no_level0_blocks() {
    // With the 4KB granule and a 48-bit OA, level 0 holds only table
    // descriptors (D8.3): there is no 512G leaf.
    let mut t = fresh::<Stage2Ipa48>();
    let r = t.map(Gpa::from(0), Hpa::from(0), 1 << 39, RW);
    assert_eq!(r.err(), Some(Error::UnsupportedPageSize { size: 1 << 39 }));
    // map_region over 512G aligned still builds a table at L0.
    let tf = t
        .map_region(Gpa::from(0), Hpa::from(0), 1 << 39, RW, true)
        .unwrap();
    tf.ignore();
    assert_eq!(entry(ROOT, 0), 0x8000_1003);
    // ... filled with 512 1G blocks: L1[511] maps OA 511G.
    // 511 << 30 = 0x7f_c000_0000 | 0x7fd | XN.
    assert_eq!(entry(0x8000_1000, 511), 0x0040_007f_c000_07fd);
}

// -- memory types ---------------------------------------------------------

fn check_memory_types<F: Format<Params = Stage2Params>>() {
    let mut t = fresh::<F>();
    let hpa = 0x1_0000_0000;
    map(&mut t, 0x1000, hpa, SIZE_4K, RW);
    map(&mut t, 0x2000, hpa, SIZE_4K, RW | MF::DEVICE);
    map(&mut t, 0x3000, hpa, SIZE_4K, RW | MF::UNCACHED);
    map(
        &mut t,
        0x4000,
        hpa,
        SIZE_4K,
        RW | MF::EXECUTE | MF::UNCACHED,
    );
    map(&mut t, 0x4000_0000, hpa, SIZE_2M, RW | MF::DEVICE);
    map(&mut t, 0x8000_0000, hpa, SIZE_1G, RW | MF::EXECUTE);
    // Normal WB 0x3c, IS 0x300, S2AP RW 0xc0, AF 0x400, page 0x3 -> 0x7ff; XN.
    assert_eq!(raw_leaf(&t, 0x1000), 0x0040_0001_0000_07ff);
    // Device-nGnRE 0b0001 -> 0x04: 0x3 | 0x04 | 0xc0 | 0x300 | 0x400 = 0x7c7; XN.
    assert_eq!(raw_leaf(&t, 0x2000), 0x0040_0001_0000_07c7);
    // Normal NC 0b0101 -> 0x14: 0x3 | 0x14 | 0xc0 | 0x300 | 0x400 = 0x7d7; XN.
    assert_eq!(raw_leaf(&t, 0x3000), 0x0040_0001_0000_07d7);
    // Normal NC, executable: XN = 0b00.
    assert_eq!(raw_leaf(&t, 0x4000), 0x0000_0001_0000_07d7);
    // 2M Device block: bits 1:0 = 0b01 -> 0x7c5; XN.
    assert_eq!(raw_leaf(&t, 0x4000_0000), 0x0040_0001_0000_07c5);
    // 1G Normal WB executable block: 0x7fd, XN = 0b00.
    assert_eq!(raw_leaf(&t, 0x8000_0000), 0x0000_0001_0000_07fd);

    let flags = |gpa: usize| t.query(Gpa::from(gpa)).unwrap().flags;
    assert_eq!(flags(0x1000), RW);
    assert_eq!(flags(0x2000), RW | MF::DEVICE);
    assert_eq!(flags(0x3000), RW | MF::UNCACHED);
    assert_eq!(flags(0x4000), RW | MF::EXECUTE | MF::UNCACHED);
    assert_eq!(flags(0x4000_0000), RW | MF::DEVICE);
    assert_eq!(flags(0x8000_0000), RW | MF::EXECUTE);

    let d = |gpa: usize| Stage2Descriptor::from(raw_leaf(&t, gpa));
    for gpa in [0x1000, 0x8000_0000] {
        assert_eq!(d(gpa).memattr(), Some(MemAttr::NormalWriteBack));
    }
    for gpa in [0x2000, 0x4000_0000] {
        assert_eq!(d(gpa).memattr(), Some(MemAttr::DeviceNGnRE));
    }
    for gpa in [0x3000, 0x4000] {
        assert_eq!(d(gpa).memattr(), Some(MemAttr::NormalNonCacheable));
    }
    for gpa in [0x1000, 0x2000, 0x3000, 0x4000, 0x4000_0000, 0x8000_0000] {
        assert_eq!(d(gpa).sh(), Some(Shareability::InnerShareable));
        assert_eq!(d(gpa).s2ap(), Some(S2Ap::ReadWrite));
        assert_eq!(d(gpa).output_address(), Hpa::from(hpa));
    }
    assert_eq!(d(0x1000).xn(), Some(Stage2Xn::ExecuteNever));
    assert_eq!(d(0x4000).xn(), Some(Stage2Xn::Executable));
}

#[test]
fn memory_types_of_pages_and_blocks() {
    for_each_format!(check_memory_types);
}

#[test]
fn field_accessors_decode_every_encoding() {
    // MemAttr[3:0] in bits 5:2 (D8.6, FWB disabled): 0b00xx Device
    // (nGnRnE, nGnRE, nGRE, GRE); otherwise outer = [3:2], inner = [1:0]
    // with 01 NC, 10 WT, 11 WB; inner 00 with a Normal outer is reserved.
    let memattr = [
        (0b0000, Some(MemAttr::DeviceNGnRnE)),
        (0b0001, Some(MemAttr::DeviceNGnRE)),
        (0b0010, Some(MemAttr::DeviceNGRE)),
        (0b0011, Some(MemAttr::DeviceGRE)),
        (0b0100, None),
        (0b0101, Some(MemAttr::NormalNonCacheable)),
        (0b1000, None),
        (0b1010, Some(MemAttr::NormalWriteThrough)),
        (0b1100, None),
        (0b1111, Some(MemAttr::NormalWriteBack)),
    ];
    for (v, want) in memattr {
        // 0x7c3: valid|page, S2AP RW, SH IS, AF, MemAttr bits 5:2 clear.
        let d = Stage2Descriptor::from(0x7c3 | (v << 2));
        assert_eq!(d.memattr(), want, "MemAttr {v:#06b}");
        assert_eq!(d.memattr_bits(), v);
    }
    // S2AP in bits 7:6 (D8.4): 00 none, 01 read (bit 6), 10 write (bit 7), 11 both.
    let s2ap = [
        (0x00, S2Ap::NoAccess),
        (0x40, S2Ap::ReadOnly),
        (0x80, S2Ap::WriteOnly),
        (0xc0, S2Ap::ReadWrite),
    ];
    for (raw, want) in s2ap {
        assert_eq!(Stage2Descriptor::from(0x703 | raw).s2ap(), Some(want));
    }
    // SH in bits 9:8: 00 NS, 01 reserved, 10 OS, 11 IS.
    let sh = [
        (0x000, Some(Shareability::NonShareable)),
        (0x100, None),
        (0x200, Some(Shareability::OuterShareable)),
        (0x300, Some(Shareability::InnerShareable)),
    ];
    for (raw, want) in sh {
        assert_eq!(
            Stage2Descriptor::from(0x403 | raw).sh(),
            want,
            "SH {raw:#x}"
        );
    }
    // XN[1:0] in bits 54:53 (D8.4, FEAT_XNX): 00 executable at EL1 and
    // EL0, 01 not at EL1, 10 at neither, 11 not at EL0.
    let xn = [
        (0b00u64, Stage2Xn::Executable),
        (0b01, Stage2Xn::ExecuteNeverEl1),
        (0b10, Stage2Xn::ExecuteNever),
        (0b11, Stage2Xn::ExecuteNeverEl0),
    ];
    for (v, want) in xn {
        let d = Stage2Descriptor::from(0x7ff | (v << 53));
        assert_eq!(d.xn(), Some(want));
    }
    // The setters write their bits only: 0x7ff with MemAttr Device-nGnRnE
    // (bits 5:2 = 0) -> 0x7c3.
    let mut d = Stage2Descriptor::from(0x7ff);
    d.set_memattr(MemAttr::DeviceNGnRnE);
    assert_eq!(d.raw(), 0x7c3);
}

// -- permissions ----------------------------------------------------------

/// (flags, 4K page at OA 0xabcd_e000), by hand: 0x703 (valid|page, SH IS,
/// AF) | MemAttr | S2AP | XN.
fn permission_table() -> [(MF, u64); 20] {
    let (r, w, x) = (MF::READ, MF::WRITE, MF::EXECUTE);
    let (dev, unc) = (MF::DEVICE, MF::UNCACHED);
    let none = MF::empty();
    [
        // Normal WB (0x3c): 0x73f | S2AP.
        (none, XN | 0xabcd_e73f),
        (r, XN | 0xabcd_e77f),
        (w, XN | 0xabcd_e7bf),
        (r | w, XN | 0xabcd_e7ff),
        (x, 0xabcd_e73f),
        (r | x, 0xabcd_e77f),
        (w | x, 0xabcd_e7bf),
        (r | w | x, 0xabcd_e7ff),
        // Device-nGnRE (0x04): 0x707 | S2AP, always XN.
        (dev, XN | 0xabcd_e707),
        (r | dev, XN | 0xabcd_e747),
        (w | dev, XN | 0xabcd_e787),
        (r | w | dev, XN | 0xabcd_e7c7),
        // Normal NC (0x14): 0x717 | S2AP.
        (unc, XN | 0xabcd_e717),
        (r | unc, XN | 0xabcd_e757),
        (w | unc, XN | 0xabcd_e797),
        (r | w | unc, XN | 0xabcd_e7d7),
        (x | unc, 0xabcd_e717),
        (r | x | unc, 0xabcd_e757),
        (w | x | unc, 0xabcd_e797),
        (r | w | x | unc, 0xabcd_e7d7),
    ]
}

fn check_permissions<F: Format<Params = Stage2Params>>() {
    let mut t = fresh::<F>();
    let table = permission_table();
    for (i, (flags, raw)) in table.iter().enumerate() {
        let gpa = (i + 1) * SIZE_4K;
        map(&mut t, gpa, 0xabcd_e000, SIZE_4K, *flags);
        assert_eq!(raw_leaf(&t, gpa), *raw, "{flags:?}");
    }
    // protect rewrites the same bits: every row, in turn, on one page. A
    // change of memory type needs break-before-make (D8.16.1), so across
    // memory types the page is unmapped and mapped again instead.
    let memtype = MF::DEVICE | MF::UNCACHED;
    let mut current = table[0].0;
    for (flags, raw) in table {
        if flags & memtype == current & memtype {
            t.protect(Gpa::from(SIZE_4K), flags).unwrap().ignore();
        } else {
            let err = t.protect(Gpa::from(SIZE_4K), flags).unwrap_err();
            assert!(matches!(err, Error::BreakBeforeMake { .. }), "{flags:?}");
            t.unmap(Gpa::from(SIZE_4K)).unwrap().1.ignore();
            map(&mut t, SIZE_4K, 0xabcd_e000, SIZE_4K, flags);
        }
        current = flags;
        assert_eq!(raw_leaf(&t, SIZE_4K), raw, "{flags:?}");
    }
}

#[test]
fn every_legal_permission_combination_by_hand() {
    for_each_format!(check_permissions);
}

#[test]
fn no_access_write_only_and_execute_only_are_legal() {
    let mut t = fresh::<Stage2Ipa39>();
    map(&mut t, 0x1000, 0x5000, SIZE_4K, MF::empty());
    map(&mut t, 0x2000, 0x5000, SIZE_4K, MF::WRITE);
    map(&mut t, 0x3000, 0x5000, SIZE_4K, MF::EXECUTE);
    // No access: S2AP = 00 (bits 7:6 clear), XN = 0b10 (bit 54).
    let d = Stage2Descriptor::from(raw_leaf(&t, 0x1000));
    assert_eq!(d.raw(), XN | 0x573f);
    assert_eq!(
        (d.s2ap(), d.xn()),
        (Some(S2Ap::NoAccess), Some(Stage2Xn::ExecuteNever))
    );
    // Write-only: S2AP[1] = bit 7 only (0x80), XN.
    let d = Stage2Descriptor::from(raw_leaf(&t, 0x2000));
    assert_eq!(d.raw(), XN | 0x57bf);
    assert_eq!(
        (d.s2ap(), d.xn()),
        (Some(S2Ap::WriteOnly), Some(Stage2Xn::ExecuteNever))
    );
    // Execute-only: S2AP = 00, XN = 0b00 (bits 54:53 clear).
    let d = Stage2Descriptor::from(raw_leaf(&t, 0x3000));
    assert_eq!(d.raw(), 0x573f);
    assert_eq!(
        (d.s2ap(), d.xn()),
        (Some(S2Ap::NoAccess), Some(Stage2Xn::Executable))
    );
    // They read back as exactly those flags; a no-access leaf is still a
    // (valid) translation.
    let flags = |gpa: usize| t.query(Gpa::from(gpa)).unwrap().flags;
    assert_eq!(flags(0x1000), MF::empty());
    assert_eq!(flags(0x2000), MF::WRITE);
    assert_eq!(flags(0x3000), MF::EXECUTE);
}

fn check_illegal<F: Format<Params = Stage2Params>>() {
    let (r, w, x) = (MF::READ, MF::WRITE, MF::EXECUTE);
    let (dev, unc) = (MF::DEVICE, MF::UNCACHED);
    let cases: [(MF, &str); 8] = [
        (dev | unc, "DEVICE and UNCACHED"),
        (r | dev | unc, "DEVICE and UNCACHED"),
        (r | w | dev | unc, "DEVICE and UNCACHED"),
        (r | w | x | dev | unc, "DEVICE and UNCACHED"),
        (x | dev, "execute-never"),
        (r | x | dev, "execute-never"),
        (w | x | dev, "execute-never"),
        (r | w | x | dev, "execute-never"),
    ];
    let mut t = fresh::<F>();
    map(&mut t, 0x1000, 0x5000, SIZE_4K, RW);
    let before = snapshot(&t);
    for (flags, why) in cases {
        for f in [flags, flags | MF::USER] {
            let r = t.map(Gpa::from(0x20_0000), Hpa::from(0x6000), SIZE_4K, f);
            match r.err() {
                Some(Error::IllegalFlags { flags: got, reason }) => {
                    assert_eq!(got, f);
                    assert!(reason.contains(why), "{f:?}: {reason}");
                }
                other => panic!("{f:?}: {other:?}"),
            }
            let r = t.protect(Gpa::from(0x1000), f).err();
            assert!(
                matches!(r, Some(Error::IllegalFlags { .. })),
                "{f:?}: {r:?}"
            );
            assert_eq!(snapshot(&t), before, "{f:?} changed the table");
        }
    }
    // The RW page is untouched: 0x5000 | 0x7ff | XN.
    assert_eq!(raw_leaf(&t, 0x1000), XN | 0x57ff);
}

#[test]
fn illegal_combinations_are_refused_without_change() {
    for_each_format!(check_illegal);
}

#[test]
fn user_is_ignored() {
    let mut t = fresh::<Stage2Ipa39>();
    for (i, f) in all_combinations().filter(|f| legal(*f)).enumerate() {
        let (a, b) = ((2 * i + 1) * SIZE_4K, (2 * i + 2) * SIZE_4K);
        map(&mut t, a, 0x7000, SIZE_4K, f - MF::USER);
        map(&mut t, b, 0x7000, SIZE_4K, f | MF::USER);
        assert_eq!(raw_leaf(&t, a), raw_leaf(&t, b), "{f:?}");
    }
    // R|W|USER is R|W: 0x7000 | 0x7ff | XN.
    map(&mut t, 0x4000_0000, 0x7000, SIZE_4K, RW | MF::USER);
    assert_eq!(raw_leaf(&t, 0x4000_0000), XN | 0x77ff);
}

fn check_round_trip<F: Format<Params = Stage2Params>>() {
    let mut t = fresh::<F>();
    let mut legal_count = 0;
    for (i, f) in all_combinations().enumerate() {
        let gpa = (i + 1) * SIZE_4K;
        let r = t.map(Gpa::from(gpa), Hpa::from(0x9000), SIZE_4K, f);
        if legal(f) {
            r.unwrap().ignore();
            legal_count += 1;
            assert_eq!(
                t.query(Gpa::from(gpa + 0x123)),
                Ok(Translation {
                    hpa: Hpa::from(0x9123),
                    flags: f - MF::USER,
                    size: SIZE_4K
                }),
                "{f:?}"
            );
        } else {
            assert!(matches!(r.err(), Some(Error::IllegalFlags { .. })), "{f:?}");
        }
    }
    // 32 combinations without USER: 8 with DEVICE|UNCACHED and 4 more with
    // DEVICE|EXECUTE are illegal -> 20 legal, twice (with/without USER).
    assert_eq!(legal_count, 40);
}

#[test]
fn every_flag_combination_round_trips_through_query() {
    for_each_format!(check_round_trip);
}

// -- GenericPTE -----------------------------------------------------------

#[test]
fn generic_pte_golden_values() {
    // Block (is_huge): bits 1:0 = 0b01, 0x7fd | XN | OA.
    let e = Stage2Descriptor::new_page(Hpa::from(0x1_0000_0000), RW, true);
    assert_eq!(e.raw(), BLOCK_1G_RW);
    assert!(e.is_huge() && e.is_present());
    // Page, R|W|X|UNCACHED: 0x703 | NC 0x14 | RW 0xc0, XN = 0.
    let e = Stage2Descriptor::new_page(Hpa::from(0x1234_5000), MF::all() - MF::DEVICE, false);
    assert_eq!(e.raw(), 0x1234_57d7);
    assert!(!e.is_huge() && e.is_present());
    // Table: address | 0b11, no attributes.
    let e = Stage2Descriptor::new_table(Hpa::from(0x8000_1000));
    assert_eq!(e.raw(), 0x8000_1003);
    assert_eq!(e.paddr(), Hpa::from(0x8000_1000));
    assert!(!e.is_huge());
    // The highest OA: bits 47:12 all set.
    let e = Stage2Descriptor::new_page(Hpa::from(0xffff_ffff_f000), RW, false);
    assert_eq!(e.raw(), XN | 0xffff_ffff_f7ff);
    // Unencodable addresses fail closed.
    let e = Stage2Descriptor::new_page(Hpa::from(1 << 48), RW, false);
    assert_eq!(e.raw(), 0);
    let e = Stage2Descriptor::new_page(Hpa::from(0x1234_5800), RW, false);
    assert_eq!(e.raw(), 0);
}

#[test]
fn generic_pte_round_trips_every_combination() {
    for f in all_combinations() {
        for huge in [false, true] {
            let e = Stage2Descriptor::new_page(Hpa::from(0x1_4020_0000), f, huge);
            if legal(f) {
                assert!(e.is_present(), "{f:?}");
                assert_eq!(e.flags(), f - MF::USER, "{f:?}");
                assert_eq!(e.paddr(), Hpa::from(0x1_4020_0000));
                assert_eq!(e.is_huge(), huge);
                // bits 1:0: 0b01 block, 0b11 page; AF always set.
                assert_eq!(e.raw() & 0x403, if huge { 0x401 } else { 0x403 });
            } else {
                assert_eq!(e.raw(), 0, "{f:?}");
                assert_eq!(e.bits(), 0);
                assert!(!e.is_present() && e.is_unused());
                assert_eq!(e.flags(), MF::empty());
            }
        }
    }
}

// Regression (found by this test, fixed in npt/src/pte.rs): `GenericPTE::new_page(pa, flags, true)` once checked `pa` only against the
// 4 KiB granule, so a block descriptor can carry OA bits below the block
// size. With the 4KB granule, a level-2 block's OA is bits 47:21 and
// bits 20:12 are RES0 (a level-1 block: OA 47:30, bits 29:12 RES0), Arm ARM
// D8.3 (block descriptor formats); software must write RES0 as 0.
// npt/src/pte.rs promises a non-present entry for an unencodable address;
// it built 0x0040_0001_4000_17fd instead. `PageTable64::remap` reaches this
// through `set_paddr` + `set_flags` (it does not align the address).
#[test]
fn generic_pte_block_with_unaligned_address_fails_closed() {
    let e = Stage2Descriptor::new_page(Hpa::from(0x1_4000_1000), RW, true);
    assert_eq!(e.raw(), 0, "block with RES0 OA bits set: {e:?}");
    let mut e = Stage2Descriptor::new_page(Hpa::from(0x1_4000_0000), RW, true);
    e.set_paddr(Hpa::from(0x1_4000_1000));
    assert_eq!(e.raw(), 0, "set_paddr on a block: {e:?}");
}

// -- root registers -------------------------------------------------------

fn check_vttbr<F: Format<Params = Stage2Params>>(vttbr: RegFn) {
    let root = Hpa::from(ROOT);
    // BADDR = bits 47:1 hold the root address (bit 0 CnP = 0); VMID[7:0]
    // in bits 55:48.
    assert_eq!(
        vttbr(
            root,
            &Stage2Params {
                vmid: 0,
                ..Default::default()
            }
        ),
        Ok(0x8000_0000)
    );
    assert_eq!(
        vttbr(
            root,
            &Stage2Params {
                vmid: 0x5a,
                ..Default::default()
            }
        ),
        Ok(0x005a_0000_8000_0000)
    );
    assert_eq!(
        vttbr(
            Hpa::from(0xffff_ffff_e000),
            &Stage2Params {
                vmid: 0xff,
                ..Default::default()
            }
        ),
        Ok(0x00ff_ffff_ffff_e000)
    );
    // A VMID of 9 bits does not fit VMID[7:0]; a root at 2^48 not BADDR.
    assert_eq!(
        vttbr(
            root,
            &Stage2Params {
                vmid: 256,
                ..Default::default()
            }
        ),
        Err(Error::RegisterField {
            register: "VTTBR_EL2",
            field: "vmid"
        })
    );
    assert_eq!(
        vttbr(
            Hpa::from(1 << 48),
            &Stage2Params {
                vmid: 0,
                ..Default::default()
            }
        ),
        Err(Error::RegisterField {
            register: "VTTBR_EL2",
            field: "baddr"
        })
    );
    // The table's root register is this VTTBR_EL2.
    let t = fresh_vmid::<F>(0xff);
    assert_eq!(t.root_register(), 0x00ff_0000_8000_0000);
    assert_eq!(
        t.params(),
        &Stage2Params {
            vmid: 0xff,
            ..Default::default()
        }
    );
    drop(t);
    // VMID 256 is refused, and the root frame(s) are given back.
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let r = Table::<F>::try_new_with(Stage2Params {
        vmid: 256,
        ..Default::default()
    });
    assert_eq!(
        r.err(),
        Some(Error::ParamOutOfRange {
            param: "vmid",
            value: 256,
            width: 8
        })
    );
    assert_eq!(live_frames(), 0);
}

#[test]
fn vttbr_el2_golden_values() {
    check_vttbr::<Stage2Ipa39>(Stage2Ipa39::vttbr_el2);
    check_vttbr::<Stage2Ipa40>(Stage2Ipa40::vttbr_el2);
    check_vttbr::<Stage2Ipa48>(Stage2Ipa48::vttbr_el2);
}

#[test]
fn host_pa_size_limits_output_addresses() {
    // A 40-bit host: HPAs from 2^40 are refused, never truncated.
    let mut t = fresh_with::<Stage2Ipa39>(Stage2Params {
        vmid: 1,
        pa_bits: 40,
        hafdbs: 0,
    });
    assert_eq!(t.output_bits(), 40);
    let err = t
        .map(Gpa::from(0x1000), Hpa::from(1 << 40), SIZE_4K, RW)
        .unwrap_err();
    assert_eq!(
        err,
        Error::HpaOutOfRange {
            hpa: Hpa::from(1 << 40),
            output_bits: 40
        }
    );
    let top = (1usize << 40) - SIZE_4K;
    map(&mut t, 0x1000, top, SIZE_4K, RW);
    // Not a PARange size, or below a page: refused before any frame is
    // allocated.
    for pa_bits in [49, 46, 12, 0] {
        let frames = live_frames();
        let r = Table::<Stage2Ipa39>::try_new_with(Stage2Params {
            vmid: 1,
            pa_bits,
            hafdbs: 0,
        });
        assert!(
            matches!(
                r,
                Err(Error::ParamOutOfRange {
                    param: "pa_bits",
                    ..
                }) | Err(Error::Requirement {
                    rule: "pa_range",
                    ..
                })
            ),
            "{pa_bits}: {r:?}"
        );
        assert_eq!(live_frames(), frames);
    }
    // The default is the format's 48 bits.
    assert_eq!(Stage2Params::default().pa_bits, 48);
}

#[test]
fn vtcr_el2_golden_values() {
    let (root, p) = (
        Hpa::from(ROOT),
        Stage2Params {
            vmid: 3,
            ..Default::default()
        },
    );
    // Common fields: IRGN0 = 01 (bits 9:8) 0x100, ORGN0 = 01 (bits 11:10)
    // 0x400, SH0 = 11 (bits 13:12) 0x3000, TG0 = 00 (4KB, bits 15:14),
    // PS = 0b101 (48 bits, bits 18:16) 0x5_0000, bit 31 RES1 0x8000_0000
    // -> 0x8005_3500.
    // 39-bit IPA: T0SZ = 64 - 39 = 25 = 0x19, SL0 = 0b01 (start level 1)
    // 0x40 -> 0x8005_3559.
    assert_eq!(Stage2Ipa39::vtcr_el2(root, &p), Ok(0x8005_3559));
    // FEAT_HAFDBS on: HA (bit 21) 0x20_0000 | HD (bit 22) 0x40_0000 ->
    // 0x8065_3559.
    let ad = Stage2Params { hafdbs: 1, ..p };
    assert_eq!(Stage2Ipa39::vtcr_el2(root, &ad), Ok(0x8065_3559));
    // A host with a 40-bit PA (ID_AA64MMFR0_EL1.PARange = 0b0010): PS =
    // 0b010 0x2_0000 -> 0x8002_3559, the value the prototype ran on QEMU.
    let p40 = Stage2Params {
        vmid: 3,
        pa_bits: 40,
        hafdbs: 0,
    };
    assert_eq!(Stage2Ipa39::vtcr_el2(root, &p40), Ok(0x8002_3559));
    // 44 bits: PS = 0b100 0x4_0000 -> 0x8004_3559 (Cortex-A57).
    let p44 = Stage2Params {
        vmid: 3,
        pa_bits: 44,
        hafdbs: 0,
    };
    assert_eq!(Stage2Ipa39::vtcr_el2(root, &p44), Ok(0x8004_3559));
    // 41 is no PARange value: no PS encoding, an error rather than a guess.
    let p41 = Stage2Params {
        vmid: 3,
        pa_bits: 41,
        hafdbs: 0,
    };
    assert!(Stage2Ipa39::vtcr_el2(root, &p41).is_err());
    // 40-bit IPA: T0SZ = 24 = 0x18, SL0 = 0b01 -> 0x8005_3558.
    assert_eq!(Stage2Ipa40::vtcr_el2(root, &p), Ok(0x8005_3558));
    // 48-bit IPA: T0SZ = 16 = 0x10, SL0 = 0b10 (start level 0) 0x80
    // -> 0x8005_3590.
    assert_eq!(Stage2Ipa48::vtcr_el2(root, &p), Ok(0x8005_3590));
}

// -- invalidation ---------------------------------------------------------

/// VTTBR_EL2 of a table at ROOT with VMID 7: 7 << 48 | 0x8000_0000.
const VTTBR_VMID7: u64 = 0x0007_0000_8000_0000;
/// What the recorder pretends VTTBR_EL2 holds (another guest's).
const OTHER_VTTBR: u64 = 0x0009_0000_9000_0000;

fn instr(i: Instr) -> Event {
    Event::Instr(Issued {
        instr: i,
        args: [Arg::Zero, Arg::Zero],
    })
}

fn tlbi_ipa(xt: u64) -> Event {
    Event::Instr(Issued {
        instr: Instr::TlbiIpas2e1is,
        args: [Arg::Value(xt), Arg::Zero],
    })
}

/// D8.16 / C5.5: make the VMID current, DSB ISHST, TLBI IPAS2E1IS (Xt =
/// IPA[47:12] in bits 35:0) per page, DSB ISH, TLBI VMALLE1IS (combined
/// stage 1+2 entries), DSB ISH, ISB, restore.
fn page_recipe(xts: &[u64]) -> Vec<Event> {
    let mut v = vec![
        Event::Switch(ContextRegister::VttbrEl2, VTTBR_VMID7),
        instr(Instr::DsbIshst),
    ];
    v.extend(xts.iter().map(|x| tlbi_ipa(*x)));
    v.extend([
        instr(Instr::DsbIsh),
        instr(Instr::TlbiVmalle1is),
        instr(Instr::DsbIsh),
        instr(Instr::Isb),
        Event::Restore(ContextRegister::VttbrEl2, OTHER_VTTBR),
    ]);
    v
}

/// The context recipe: DSB ISHST, TLBI VMALLS12E1IS, DSB ISH, ISB.
fn context_recipe() -> Vec<Event> {
    vec![
        Event::Switch(ContextRegister::VttbrEl2, VTTBR_VMID7),
        instr(Instr::DsbIshst),
        instr(Instr::TlbiVmalls12e1is),
        instr(Instr::DsbIsh),
        instr(Instr::Isb),
        Event::Restore(ContextRegister::VttbrEl2, OTHER_VTTBR),
    ]
}

/// The events of flushing `tf` while VTTBR_EL2 holds `OTHER_VTTBR`.
fn run<F: Format>(tf: TlbFlush<F>) -> Vec<Event> {
    record(tf, OTHER_VTTBR).events
}

fn check_flush_page<F: Format<Params = Stage2Params>>() {
    let mut t = fresh_vmid::<F>(7);
    assert_eq!(t.root_register(), VTTBR_VMID7);
    // Mapping into invalid entries needs nothing.
    let tf = t
        .map(
            Gpa::from(0xc000_3000),
            Hpa::from(0x1_8000_5000),
            SIZE_4K,
            RW,
        )
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert_eq!(run(tf), vec![]);
    map(&mut t, 0x4020_0000, 0x1_4020_0000, SIZE_2M, RW);
    // Neighbours that keep the tables from becoming empty (an emptied
    // table is unlinked and also invalidated; see flush_of_freed_tables).
    map(&mut t, 0xc000_4000, 0x1_8000_6000, SIZE_4K, RW);
    map(&mut t, 0x4040_0000, 0x1_4040_0000, SIZE_2M, RW);

    // unmap one page: Xt = 0xc000_3000 >> 12 = 0xc0003.
    let (tr, tf) = t.unmap(Gpa::from(0xc000_3000)).unwrap();
    assert_eq!(tr.hpa, Hpa::from(0x1_8000_5000));
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(run(tf), page_recipe(&[0xc0003]));

    // protect a 2M block: one TLBI at its base, 0x4020_0000 >> 12 = 0x40200.
    let tf = t.protect(Gpa::from(0x4020_0000), MF::READ).unwrap();
    assert_eq!(run(tf), page_recipe(&[0x40200]));

    // When VTTBR_EL2 already holds this table's value: no switch/restore.
    let (_, tf) = t.unmap(Gpa::from(0x4020_0000)).unwrap();
    let events = record(tf, VTTBR_VMID7).events;
    let mut want = page_recipe(&[0x40200]);
    want.remove(0);
    want.pop();
    assert_eq!(events, want);
}

#[test]
fn flush_page_sequences() {
    for_each_format!(check_flush_page);
}

#[test]
fn flush_of_freed_tables() {
    // The top page of the 48-bit IPA space: IPA[47:12] = 0xf_ffff_ffff,
    // all 36 bits of Xt[35:0]. It is the only mapping, so unmapping it
    // empties its level-3, level-2 and level-1 tables; each is unlinked and
    // invalidated by the base IPA of the range it translated (TLBI
    // IPAS2E1IS acts on every level of the walk, D8.16):
    //   level 3 table: 2 MiB range at 0xffff_ffe0_0000 -> Xt 0xf_ffff_fe00
    //   level 2 table: 1 GiB range at 0xffff_c000_0000 -> Xt 0xf_fffc_0000
    //   level 1 table: 512 GiB range at 0xff80_0000_0000 -> Xt 0xf_f800_0000
    let mut t = fresh_vmid::<Stage2Ipa48>(7);
    map(&mut t, 0xffff_ffff_f000, 0x5000, SIZE_4K, RW);
    let frames = live_frames();
    let (_, tf) = t.unmap(Gpa::from(0xffff_ffff_f000)).unwrap();
    assert_eq!(tf.tables_to_free(), 3);
    assert_eq!(
        run(tf),
        page_recipe(&[0xf_ffff_ffff, 0xf_ffff_fe00, 0xf_fffc_0000, 0xf_f800_0000])
    );
    // Given back only after the invalidation ran.
    assert_eq!(live_frames(), frames - 3);
    // The root entry for IPA[47:39] = 511 is invalid again.
    assert_eq!(read_phys(ROOT + 511 * 8), 0);
}

fn check_flush_escalation<F: Format<Params = Stage2Params>>() {
    // The spec's page_limit: 512 TLBIs by IPA, then one by VMID.
    const MAX_PAGES: usize = 512;
    assert_eq!(F::FLUSH.page_limit, MAX_PAGES);
    let mut t = fresh_vmid::<F>(7);
    // MAX_PAGES leaves: one TLBI IPAS2E1IS each, Xt = IPA >> 12 = 0x200 ..
    // 0x3ff for IPAs 0x20_0000 .. 0x3f_f000. They fill one level-3 table,
    // which is unlinked whole and invalidated by the IPAs it mapped (TLBI
    // IPAS2E1IS removes entries of every level for the IPA). One more page
    // keeps the level-2 table from becoming empty, which would add its
    // own IPA and escalate.
    map_pages(&mut t, 0x20_0000, MAX_PAGES + 1);
    let tf = t
        .unmap_region(Gpa::from(0x20_0000), MAX_PAGES * SIZE_4K)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(tf.tables_to_free(), 1);
    let xts: Vec<u64> = (0..MAX_PAGES as u64).map(|i| 0x200 + i).collect();
    assert_eq!(run(tf), page_recipe(&xts));
    t.unmap_region(Gpa::from(0x20_0000 + MAX_PAGES * SIZE_4K), SIZE_4K)
        .unwrap()
        .ignore();

    // One more leaf than MAX_PAGES: the context recipe.
    map_pages(&mut t, 0x10_0000, MAX_PAGES + 1);
    let tf = t
        .unmap_region(Gpa::from(0x10_0000), (MAX_PAGES + 1) * SIZE_4K)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert_eq!(run(tf), context_recipe());

    // Unmapping every page of a level-3 table unlinks it (and the tables
    // above it that become empty): context, and the frames are given back
    // only after the invalidation has run.
    map_pages(&mut t, 0, 512);
    let frames = live_frames();
    let tf = t.unmap_region(Gpa::from(0), SIZE_2M).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert!(tf.tables_to_free() >= 1);
    assert_eq!(live_frames(), frames, "freed before the invalidation");
    assert_eq!(run(tf), context_recipe());
    assert!(live_frames() < frames);
    assert_eq!(live_frames(), t.frames_used());

    // A block can then be mapped there; making an invalid entry valid
    // needs no invalidation on Arm.
    let tf = t
        .map(Gpa::from(0x20_0000), Hpa::from(0x20_0000), SIZE_2M, RW)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert!(run(tf).is_empty());
}

#[test]
fn flush_escalates_to_context() {
    for_each_format!(check_flush_escalation);
}

// -- geometry -------------------------------------------------------------

/// Maps the top 4K page of the input range and checks the walk to it:
/// `path` lists (physical address of an entry, expected value).
fn check_top<F: Format<Params = Stage2Params>>(input_bits: u32, path: &[(usize, u64)]) {
    let mut t = fresh::<F>();
    let top = (1usize << input_bits) - SIZE_4K;
    map(&mut t, top, 0x5000, SIZE_4K, RW);
    for (pa, want) in path {
        assert_eq!(read_phys(*pa), *want, "entry at {pa:#x}");
    }
    assert_eq!(
        t.query(Gpa::from((1 << input_bits) - 1)),
        Ok(Translation {
            hpa: Hpa::from(0x5fff),
            flags: RW,
            size: SIZE_4K
        })
    );

    // One past the top, and 2^input_bits | 0x7000, are refused, never
    // truncated into slot 0x7000.
    let before = snapshot(&t);
    for gpa in [1usize << input_bits, (1 << input_bits) | 0x7000] {
        let err = Some(Error::GpaOutOfRange {
            gpa: Gpa::from(gpa),
            input_bits,
        });
        let r = t.map(Gpa::from(gpa), Hpa::from(0x6000), SIZE_4K, RW);
        assert_eq!(r.err(), err);
        assert_eq!(t.query(Gpa::from(gpa)).err(), err);
    }
    let r = t.map_region(Gpa::from(top), Hpa::from(0x6000), 0x2000, RW, false);
    assert_eq!(
        r.err(),
        Some(Error::GpaOutOfRange {
            gpa: Gpa::from(1 << input_bits),
            input_bits
        })
    );
    assert_eq!(snapshot(&t), before);
    assert_eq!(
        t.query(Gpa::from(0x7000)).err(),
        Some(Error::NotMapped {
            gpa: Gpa::from(0x7000)
        })
    );
}

/// The top page maps to OA 0x5000 RW: 0x5000 | 0x7ff | XN.
const TOP_PAGE: u64 = XN | 0x57ff;

#[test]
fn ipa39_highest_gpa_and_beyond() {
    // 0x7f_ffff_f000: L1[511] (ROOT + 0xff8) -> L2 0x8000_1000, L2[511] ->
    // L3 0x8000_2000, L3[511].
    check_top::<Stage2Ipa39>(
        39,
        &[
            (ROOT + 0xff8, 0x8000_1003),
            (0x8000_1ff8, 0x8000_2003),
            (0x8000_2ff8, TOP_PAGE),
        ],
    );
}

#[test]
fn ipa40_highest_gpa_and_beyond() {
    // 0xff_ffff_f000: L1 index (IA[39:30]) 1023 = second root table's
    // entry 511 (ROOT + 0x1ff8) -> L2 0x8000_2000 (first frame after the
    // 8K root), L2[511] -> L3 0x8000_3000, L3[511].
    check_top::<Stage2Ipa40>(
        40,
        &[
            (ROOT + 0x1ff8, 0x8000_2003),
            (0x8000_2ff8, 0x8000_3003),
            (0x8000_3ff8, TOP_PAGE),
        ],
    );
}

#[test]
fn ipa48_highest_gpa_and_beyond() {
    // 0xffff_ffff_f000: index 511 at L0, L1, L2 and L3.
    check_top::<Stage2Ipa48>(
        48,
        &[
            (ROOT + 0xff8, 0x8000_1003),
            (0x8000_1ff8, 0x8000_2003),
            (0x8000_2ff8, 0x8000_3003),
            (0x8000_3ff8, TOP_PAGE),
        ],
    );
}

fn check_hpa_range<F: Format<Params = Stage2Params>>() {
    let mut t = fresh::<F>();
    let before = snapshot(&t);
    let r = t.map(Gpa::from(0x1000), Hpa::from(1 << 48), SIZE_4K, RW);
    let err = Some(Error::HpaOutOfRange {
        hpa: Hpa::from(1 << 48),
        output_bits: 48,
    });
    assert_eq!(r.err(), err);
    let top = (1 << 48) - SIZE_4K;
    let r = t.map_region(Gpa::from(0x1000), Hpa::from(top), 0x2000, RW, false);
    assert_eq!(r.err(), err);
    assert_eq!(snapshot(&t), before);
    // The last frame below 2^48: OA bits 47:12 all set | 0x7ff | XN.
    map(&mut t, 0x1000, top, SIZE_4K, RW);
    assert_eq!(raw_leaf(&t, 0x1000), 0x0040_ffff_ffff_f7ff);
}

#[test]
fn hpa_beyond_output_range_is_refused() {
    for_each_format!(check_hpa_range);
}

#[test]
fn ipa40_concatenated_root() {
    // An arena starting at 0x8000_1000: the first 8K-aligned pair of free
    // frames is 0x8000_2000..0x8000_3fff, so that is the root, and the
    // first table then takes the free frame below it, 0x8000_1000.
    reset(0x8000_1000, DEFAULT_FRAMES);
    let mut t = Table::<Stage2Ipa40>::try_new_with(Stage2Params {
        vmid: 3,
        ..Default::default()
    })
    .unwrap();
    let root = t.root_paddr().as_usize();
    assert_eq!(root, 0x8000_2000);
    assert_eq!(root % 0x2000, 0);
    assert_eq!(t.frames_used(), 2);
    // VTTBR_EL2: VMID 3 << 48 | BADDR 0x8000_2000.
    assert_eq!(t.root_register(), 0x0003_0000_8000_2000);

    // 1G blocks at IA 0x4000_0000 (L1 index 1) and IA 0x80_4000_0000
    // (bit 39 set: index 512 + 1 = 513, in the second table at root +
    // 0x1000 + 8).
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    map(&mut t, 0x80_4000_0000, 0x2_0000_0000, SIZE_1G, RW);
    assert_eq!(entry(root, 1), 0x0040_0001_0000_07fd);
    assert_eq!(entry(root, 513), 0x0040_0002_0000_07fd);
    assert_eq!(read_phys(root + 0x1008), 0x0040_0002_0000_07fd);
    let hpa = |gpa: usize| t.query(Gpa::from(gpa)).map(|q| q.hpa);
    assert_eq!(hpa(0x4000_0000), Ok(Hpa::from(0x1_0000_0000)));
    assert_eq!(hpa(0x80_4000_0000), Ok(Hpa::from(0x2_0000_0000)));

    // A 4K page at IA 0x80_0000_3000: root[512] (root + 0x1000) -> L2 at
    // 0x8000_1000; L2[0] -> L3 at 0x8000_4000; L3[3].
    map(&mut t, 0x80_0000_3000, 0x6000, SIZE_4K, RW);
    assert_eq!(entry(root, 512), 0x8000_1003);
    assert_eq!(entry(0x8000_1000, 0), 0x8000_4003);
    assert_eq!(entry(0x8000_4000, 3), XN | 0x67ff);
    // ... distinct from the same IA without bit 39, which stays unmapped.
    assert_eq!(entry(root, 0), 0);
    assert_eq!(
        t.query(Gpa::from(0x3000)).err(),
        Some(Error::NotMapped {
            gpa: Gpa::from(0x3000)
        })
    );
    drop(t);
    assert_eq!(live_frames(), 0);
}

#[test]
fn memory_type_changes_need_break_before_make() {
    // D8.16.1: a live leaf's memory type or shareability changes only
    // through an invalid entry and a TLBI; npt refuses it in place.
    let mut t = fresh::<Stage2Ipa39>();
    map(&mut t, 0x1000, 0x5000, SIZE_4K, RW);
    let before = snapshot(&t);
    assert_eq!(
        t.protect(Gpa::from(0x1000), RW | MF::DEVICE).unwrap_err(),
        Error::BreakBeforeMake {
            gpa: Gpa::from(0x1000),
            size: SIZE_4K
        }
    );
    assert_eq!(
        t.protect(Gpa::from(0x1000), RW | MF::UNCACHED).unwrap_err(),
        Error::BreakBeforeMake {
            gpa: Gpa::from(0x1000),
            size: SIZE_4K
        }
    );
    assert_eq!(snapshot(&t), before);
    // Permissions alone change in place: S2AP RW -> RO, bit 7 cleared.
    t.protect(Gpa::from(0x1000), MF::READ).unwrap().ignore();
    assert_eq!(raw_leaf(&t, 0x1000) & 0xc0, 0x40);
    // The sanctioned way: unmap, flush, map with the new type.
    t.unmap(Gpa::from(0x1000)).unwrap().1.ignore();
    map(&mut t, 0x1000, 0x5000, SIZE_4K, RW | MF::DEVICE);
    // MemAttr 0b0001 (Device-nGnRE) in bits 5:2.
    assert_eq!(raw_leaf(&t, 0x1000) & 0x3c, 0x04);
}

/// On a VHE host (HCR_EL2.E2H = 1) the hypervisor runs with TGE = 1, and
/// then TLBI VMALLE1IS and VMALLS12E1IS would act on the EL2&0 regime, not
/// the guest's EL1&0 (Arm ARM D8.16; the TLBI VMALLE1IS description). Both
/// recipes clear TGE after making the VMID current and set it back before
/// restoring VTTBR_EL2, as Linux KVM's `__tlb_switch_to_guest` does. On a
/// non-VHE host TGE already reads 0: nothing is switched (the golden
/// recipes above).
#[test]
fn vhe_hosts_clear_tge_around_the_tlbis() {
    let mut t = fresh_vmid::<Stage2Ipa39>(7);
    map_pages(&mut t, 0x20_0000, 2);
    for (tf, body) in [
        (
            t.unmap_region(Gpa::from(0x20_0000), SIZE_4K).unwrap(),
            page_recipe(&[0x200]),
        ),
        (t.invalidate_context(), context_recipe()),
    ] {
        let mut rec = Recorder {
            current_value: OTHER_VTTBR,
            tge: true,
            ..Recorder::default()
        };
        tf.flush_with(&mut rec).unwrap();
        // Switch VTTBR, clear TGE, the recipe, set TGE, restore VTTBR.
        let mut want = body.clone();
        want.insert(1, Event::Switch(ContextRegister::HcrEl2Tge, 0));
        let last = want.len() - 1;
        want.insert(last, Event::Restore(ContextRegister::HcrEl2Tge, 1));
        assert_eq!(rec.events, want);
    }
}

/// Root parameters as hardware reports them (regressions: 52 was refused,
/// 46 accepted until `vtcr_el2`, an IPA wider than the PA size and an
/// invalid SL0 accepted, misaligned roots encoded).
#[test]
fn root_parameters_match_hardware() {
    // `-cpu max` reports PARange 52: accepted, clamped to the 48 output
    // bits of 4 KiB-granule descriptors; VTCR_EL2.PS says 48 (0b101).
    let t = fresh_with::<Stage2Ipa39>(Stage2Params {
        vmid: 1,
        pa_bits: 52,
        hafdbs: 0,
    });
    assert_eq!(t.output_bits(), 48);
    let vtcr = Stage2Ipa39::vtcr_el2(t.root_paddr(), t.params()).unwrap();
    assert_eq!((vtcr >> 16) & 7, 0b101);
    drop(t);
    let rule = |r: Result<Table<Stage2Ipa40>, Error>| match r {
        Err(Error::Requirement { rule, .. }) => rule,
        other => panic!("{other:?}"),
    };
    // A 40-bit IPA on a 36-bit host.
    npt_tests::reset(npt_tests::DEFAULT_BASE, npt_tests::DEFAULT_FRAMES);
    let r = Table::<Stage2Ipa40>::try_new_with(Stage2Params {
        vmid: 1,
        pa_bits: 36,
        hafdbs: 0,
    });
    assert_eq!(rule(r), "ipa_within_pa");
    // Stage2Ipa48 (level-0 start, SL0 = 2) on a 44-bit host: the IPA is
    // wider than the PA (which also rules out AArch64.S2InvalidSL's
    // level-0 start with PS < 44).
    let r = Table::<Stage2Ipa48>::try_new_with(Stage2Params {
        vmid: 1,
        pa_bits: 44,
        hafdbs: 0,
    });
    assert!(matches!(
        r,
        Err(Error::Requirement {
            rule: "ipa_within_pa",
            ..
        })
    ));
    assert!(Table::<Stage2Ipa48>::try_new_with(Stage2Params {
        vmid: 1,
        pa_bits: 48,
        hafdbs: 0
    })
    .is_ok());
    // VTTBR_EL2 for the 8 KiB concatenated root at a 4 KiB-aligned address.
    let p = Stage2Params {
        vmid: 1,
        pa_bits: 48,
        hafdbs: 0,
    };
    assert!(matches!(
        Stage2Ipa40::vttbr_el2(Hpa::from(0x8_1000), &p),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
    assert!(Stage2Ipa40::vttbr_el2(Hpa::from(0x8_2000), &p).is_ok());
}
