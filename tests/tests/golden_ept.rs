//! Golden (bit-exact) tests for Intel EPT, `npt::x86_64::Ept4`.
//!
//! Every expected raw value below is derived by hand from the Intel SDM
//! Vol. 3C (§29.3.2 EPT entry formats, §29.3.3.1 misconfigurations, §29.3.7
//! memory typing, §25.6.11 EPTP, INVEPT reference page), and the derivation
//! is written next to it. Bit names used in the derivations:
//!   R = bit 0, W = bit 1, X = bit 2, memory type = bits 5:3 (UC 0, WC 1,
//!   WT 4, WP 5, WB 6; 2, 3, 7 reserved), IPAT = bit 6, PS = bit 7 (1 in a
//!   PDPTE/PDE that maps a page), address = bits 51:12.
//!
//! Table frames come from the simulated physical memory of `npt_tests`:
//! base 0x8000_0000, first-fit, so the PML4 is at 0x8000_0000 and the n-th
//! table allocated afterwards at 0x8000_0000 + n * 0x1000.

use npt::flush::{Arg, Event, Instr, Issued, Scope};
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::x86_64::{Ept4, Ept4Params, EptEntry, EptMemoryType};
use npt::{
    Error, GenericPTE, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, Leaf, MappingFlags as MF,
    Translation,
};
// `map` and `map_pages` check that mapping needs no invalidation: EPT does
// not cache not-present entries (SDM §29.4.2).
use npt_tests::{
    all_combinations, entry, fresh, fresh_with, leaves, live_frames, map, map_pages, raw_leaf,
    reset, run, snapshot, Table, DEFAULT_BASE, DEFAULT_FRAMES, RW,
};

/// The PML4 (root) of a fresh table: the first frame of the arena.
const ROOT: usize = 0x8000_0000;
/// EPTP of a table rooted at ROOT with A/D disabled: memory type WB = 6
/// (bits 2:0 = 0b110), page-walk length 4 - 1 = 3 in bits 5:3 (0x18), A/D
/// bit 6 = 0, PML4 address 0x8000_0000 in bits 51:12 -> 0x8000_001e.
const EPTP_ROOT: u64 = 0x8000_001e;

/// INVEPT type 1 (single-context) with the EPTP in the descriptor.
fn invept_single(eptp: u64) -> Event {
    Event::Instr(Issued {
        instr: Instr::InveptSingleContext,
        args: [Arg::Value(eptp), Arg::Zero],
    })
}

/// The hand model of SDM §29.3.3.1 and §29.3.2 npt follows: an entry needs
/// R (no access = not present; W without R = misconfiguration; X alone
/// needs the execute-only capability, off in a default table), and
/// DEVICE/UNCACHED name two different memory types.
fn legal(f: MF) -> bool {
    f.contains(MF::READ) && !f.contains(MF::DEVICE | MF::UNCACHED)
}

// -- leaves and table descriptors ----------------------------------------

#[test]
fn leaf_1g_pdpte_and_pml4e() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    // R(bit0)=1, W(bit1)=1 -> 0x3; memtype WB=6 in bits 5:3 -> 0x30;
    // IPAT bit 6 -> 0x40; PS bit 7 -> 0x80; PA 0x1_0000_0000 in bits 51:12.
    let pdpte = 0x1_0000_00f3;
    assert_eq!(
        leaves(&t),
        vec![Leaf {
            gpa: Gpa::from(0x4000_0000),
            hpa: Hpa::from(0x1_0000_0000),
            size: SIZE_1G,
            level: 1,
            raw: pdpte,
            flags: RW,
        }]
    );
    // GPA 0x4000_0000: PML4 index (47:39) = 0, PDPT index (38:30) = 1. The
    // PDPT is the first frame after the root: 0x8000_1000. PML4E: R|W|X =
    // 0x7 (table entries grant all, bits 7:3 reserved = 0), address
    // 0x8000_1000 -> 0x8000_1007.
    assert_eq!(entry(ROOT, 0), 0x8000_1007);
    assert_eq!(entry(0x8000_1000, 1), pdpte);
    assert_eq!(t.frames_used(), 2);
}

/// Bits 20:12 of a PDE that maps a 2-MByte page (29:12 of a 1-GByte
/// PDPTE) are reserved and must be 0 (SDM Vol. 3C §29.3.2, Tables 29-4 and
/// 29-2); Bochs does not check bit 12, so npt's refusal is proven here: a
/// host address with bit 12 set is refused for a 2 MiB and a 1 GiB leaf and
/// changes nothing, and no huge leaf npt writes has any of those bits.
#[test]
fn huge_leaves_never_carry_low_address_bits() {
    let mut t = fresh::<Ept4>();
    let before = snapshot(&t);
    for (size, h) in [(SIZE_2M, 0x1_4020_1000usize), (SIZE_1G, 0x1_0000_1000)] {
        let err = t.map(Gpa::from(0x4000_0000), Hpa::from(h), size, RW).err();
        assert_eq!(
            err,
            Some(Error::MisalignedHpa {
                hpa: Hpa::from(h),
                align: size
            })
        );
        assert_eq!(snapshot(&t), before);
    }
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    map(&mut t, 0x8020_0000, 0x1_4020_0000, SIZE_2M, RW);
    for l in leaves(&t) {
        let reserved = (l.size as u64 - 1) & !0xfff;
        assert_eq!(l.raw & reserved, 0, "{l:x?}");
    }
}

#[test]
fn leaf_2m_pde_and_table_pdpte() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x8020_0000, 0x1_4020_0000, SIZE_2M, RW);
    // R|W = 0x3, WB 6<<3 = 0x30, IPAT 0x40, PS 0x80 -> 0xf3; PA 0x1_4020_0000.
    let pde = 0x1_4020_00f3;
    assert_eq!(
        leaves(&t),
        vec![Leaf {
            gpa: Gpa::from(0x8020_0000),
            hpa: Hpa::from(0x1_4020_0000),
            size: SIZE_2M,
            level: 2,
            raw: pde,
            flags: RW,
        }]
    );
    // GPA 0x8020_0000: PML4 idx 0, PDPT idx 2, PD idx (29:21) 1. PDPT at
    // 0x8000_1000, PD at 0x8000_2000; table entries: address | R|W|X (0x7).
    assert_eq!(entry(ROOT, 0), 0x8000_1007);
    assert_eq!(entry(0x8000_1000, 2), 0x8000_2007);
    assert_eq!(entry(0x8000_2000, 1), pde);
    assert_eq!(t.frames_used(), 3);
}

#[test]
fn leaf_4k_pte_and_table_pde() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0xc000_3000, 0x1_8000_5000, SIZE_4K, RW);
    // R|W = 0x3, WB 6<<3 = 0x30, IPAT 0x40 -> 0x73 (no PS: bit 7 is ignored
    // in a PTE and npt leaves it 0); PA 0x1_8000_5000.
    let pte = 0x1_8000_5073;
    assert_eq!(
        leaves(&t),
        vec![Leaf {
            gpa: Gpa::from(0xc000_3000),
            hpa: Hpa::from(0x1_8000_5000),
            size: SIZE_4K,
            level: 3,
            raw: pte,
            flags: RW,
        }]
    );
    // GPA 0xc000_3000: PML4 idx 0, PDPT idx 3, PD idx 0, PT idx 3. PDPT at
    // 0x8000_1000, PD at 0x8000_2000, PT at 0x8000_3000.
    assert_eq!(entry(ROOT, 0), 0x8000_1007);
    assert_eq!(entry(0x8000_1000, 3), 0x8000_2007);
    assert_eq!(entry(0x8000_2000, 0), 0x8000_3007);
    assert_eq!(entry(0x8000_3000, 3), pte);
    assert_eq!(t.frames_used(), 4);
}

#[test]
fn all_three_leaf_sizes_share_tables() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    map(&mut t, 0x8020_0000, 0x1_4020_0000, SIZE_2M, RW);
    map(&mut t, 0xc000_3000, 0x1_8000_5000, SIZE_4K, RW);
    // Frames in allocation order: PDPT 0x8000_1000 (by the 1G map), PD for
    // PDPT[2] 0x8000_2000, PD for PDPT[3] 0x8000_3000, PT 0x8000_4000.
    assert_eq!(entry(ROOT, 0), 0x8000_1007);
    assert_eq!(entry(0x8000_1000, 1), 0x1_0000_00f3); // 1G: see leaf_1g_pdpte
    assert_eq!(entry(0x8000_1000, 2), 0x8000_2007);
    assert_eq!(entry(0x8000_1000, 3), 0x8000_3007);
    assert_eq!(entry(0x8000_2000, 1), 0x1_4020_00f3); // 2M: see leaf_2m_pde
    assert_eq!(entry(0x8000_3000, 0), 0x8000_4007);
    assert_eq!(entry(0x8000_4000, 3), 0x1_8000_5073); // 4K: see leaf_4k_pte
    let raws: Vec<(usize, u64)> = leaves(&t).iter().map(|l| (l.level, l.raw)).collect();
    assert_eq!(
        raws,
        vec![(1, 0x1_0000_00f3), (2, 0x1_4020_00f3), (3, 0x1_8000_5073)]
    );
}

// -- memory types ---------------------------------------------------------

#[test]
fn memory_types_of_pages_and_blocks() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x1000, 0x1_0000_0000, SIZE_4K, RW);
    map(&mut t, 0x2000, 0x1_0000_0000, SIZE_4K, RW | MF::DEVICE);
    map(&mut t, 0x3000, 0x1_0000_0000, SIZE_4K, RW | MF::UNCACHED);
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_2M, RW | MF::DEVICE);
    map(
        &mut t,
        0x8000_0000,
        0x1_0000_0000,
        SIZE_1G,
        RW | MF::UNCACHED,
    );
    // RAM: WB (6<<3 = 0x30) + IPAT (0x40), R|W 0x3 -> 0x73.
    assert_eq!(raw_leaf(&t, 0x1000), 0x1_0000_0073);
    // DEVICE: UC (0 in bits 5:3), IPAT clear, R|W -> 0x03.
    assert_eq!(raw_leaf(&t, 0x2000), 0x1_0000_0003);
    // UNCACHED: WC (1<<3 = 0x08), IPAT clear, R|W -> 0x0b.
    assert_eq!(raw_leaf(&t, 0x3000), 0x1_0000_000b);
    // 2M DEVICE: UC, PS 0x80, R|W -> 0x83.
    assert_eq!(raw_leaf(&t, 0x4000_0000), 0x1_0000_0083);
    // 1G UNCACHED: WC 0x08, PS 0x80, R|W -> 0x8b.
    assert_eq!(raw_leaf(&t, 0x8000_0000), 0x1_0000_008b);

    let get = |gpa: usize| t.query(Gpa::from(gpa)).unwrap().flags;
    assert_eq!(get(0x1000), RW);
    assert_eq!(get(0x2000), RW | MF::DEVICE);
    assert_eq!(get(0x3000), RW | MF::UNCACHED);
    assert_eq!(get(0x4000_0000), RW | MF::DEVICE);
    assert_eq!(get(0x8000_0000), RW | MF::UNCACHED);
}

#[test]
fn memtype_accessor_decodes_every_encoding() {
    // Bits 5:3 = n -> raw n << 3 (SDM §29.3.7: 0 UC, 1 WC, 4 WT, 5 WP,
    // 6 WB; 2, 3 and 7 are reserved and cause an EPT misconfiguration).
    let expect = [
        (0, Some(EptMemoryType::UC)),
        (1, Some(EptMemoryType::WC)),
        (2, None),
        (3, None),
        (4, Some(EptMemoryType::WT)),
        (5, Some(EptMemoryType::WP)),
        (6, Some(EptMemoryType::WB)),
        (7, None),
    ];
    for (n, want) in expect {
        let e = EptEntry::from(0x1234_5000 | 0x7 | (n << 3));
        assert_eq!(e.memtype(), want, "memtype {n}");
        assert_eq!(e.memtype_bits(), n);
        assert_eq!(e.output_address(), Hpa::from(0x1234_5000));
    }
    // The leaves npt writes: RAM 0x73 -> WB, DEVICE 0x03 -> UC, UNCACHED
    // 0x0b -> WC.
    assert_eq!(EptEntry::from(0x73).memtype(), Some(EptMemoryType::WB));
    assert_eq!(EptEntry::from(0x03).memtype(), Some(EptMemoryType::UC));
    assert_eq!(EptEntry::from(0x0b).memtype(), Some(EptMemoryType::WC));
    // set_memtype writes bits 5:3 only: 0x73 with WT (4<<3 = 0x20) -> 0x63.
    let mut e = EptEntry::from(0x73);
    e.set_memtype(EptMemoryType::WT);
    assert_eq!(e.raw(), 0x63);
}

// -- permissions ----------------------------------------------------------

#[test]
fn every_legal_permission_combination_by_hand() {
    let (r, w, x) = (MF::READ, MF::WRITE, MF::EXECUTE);
    let (dev, unc) = (MF::DEVICE, MF::UNCACHED);
    // 4K PTE low 12 bits: R=0x1, W=0x2, X=0x4 | memory type.
    let table: [(MF, u64); 12] = [
        // RAM: WB 0x30 | IPAT 0x40 = 0x70.
        (r, 0x71),
        (r | w, 0x73),
        (r | x, 0x75),
        (r | w | x, 0x77),
        // DEVICE: UC = 0, no IPAT.
        (r | dev, 0x01),
        (r | w | dev, 0x03),
        (r | x | dev, 0x05),
        (r | w | x | dev, 0x07),
        // UNCACHED: WC = 1 << 3 = 0x08, no IPAT.
        (r | unc, 0x09),
        (r | w | unc, 0x0b),
        (r | x | unc, 0x0d),
        (r | w | x | unc, 0x0f),
    ];
    let mut t = fresh::<Ept4>();
    for (i, (flags, low)) in table.iter().enumerate() {
        let gpa = (i + 1) * SIZE_4K;
        map(&mut t, gpa, 0xabcd_e000, SIZE_4K, *flags);
        assert_eq!(raw_leaf(&t, gpa), 0xabcd_e000 | low, "{flags:?}");
    }
    // protect rewrites the same bits: every row, in turn, on one page.
    for (flags, low) in table {
        t.protect(Gpa::from(SIZE_4K), flags).unwrap().ignore();
        assert_eq!(raw_leaf(&t, SIZE_4K), 0xabcd_e000 | low, "{flags:?}");
    }
}

#[test]
fn illegal_combinations_are_refused_without_change() {
    let (r, w, x) = (MF::READ, MF::WRITE, MF::EXECUTE);
    let (dev, unc) = (MF::DEVICE, MF::UNCACHED);
    let cases: [(MF, &str); 9] = [
        // SDM §29.3.3.1: write without read is a misconfiguration.
        (w, "write access without read"),
        (w | x, "write access without read"),
        (w | dev, "write access without read"),
        // SDM §29.3.2: bits 2:0 clear = not present.
        (MF::empty(), "not present"),
        (dev, "not present"),
        // Execute-only needs IA32_VMX_EPT_VPID_CAP bit 0.
        (x, "execute-only"),
        (x | unc, "execute-only"),
        // Two memory types at once.
        (r | dev | unc, "DEVICE and UNCACHED"),
        (r | w | x | dev | unc, "DEVICE and UNCACHED"),
    ];
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x1000, 0x5000, SIZE_4K, RW);
    let before = snapshot(&t);
    for (flags, why) in cases {
        for f in [flags, flags | MF::USER] {
            let err = t.map(Gpa::from(0x20_0000), Hpa::from(0x6000), SIZE_4K, f);
            match err.err() {
                Some(Error::IllegalFlags { flags: got, reason }) => {
                    assert_eq!(got, f);
                    assert!(reason.contains(why), "{f:?}: {reason}");
                }
                other => panic!("{f:?}: {other:?}"),
            }
            let err = t.protect(Gpa::from(0x1000), f).err();
            assert!(
                matches!(err, Some(Error::IllegalFlags { .. })),
                "{f:?}: {err:?}"
            );
            assert_eq!(snapshot(&t), before, "{f:?} changed the table");
        }
    }
    // The RW page is untouched: 0x5000 | R|W 0x3 | WB 0x30 | IPAT 0x40.
    assert_eq!(raw_leaf(&t, 0x1000), 0x5073);
}

/// Execute-only leaves on a CPU that reports them (IA32_VMX_EPT_VPID_CAP
/// bit 0, SDM Vol. 3C §29.3.3.1: without it, bits 2:0 = 100b is a
/// misconfiguration). A table made with `execute_only: 1` encodes
/// EXECUTE alone as X (bit 2) with the RAM memory type, by hand:
/// 0x6000 | X 0x4 | WB (6 << 3) 0x30 | IPAT 0x40 = 0x6074; with UNCACHED,
/// WC (1 << 3) 0x8 and no IPAT: 0x7000 | 0x4 | 0x8 = 0x700c. Write without
/// read stays refused (it is a misconfiguration whatever the CPU), and so
/// does the same map on a default table.
#[test]
fn execute_only_needs_the_param() {
    let x = MF::EXECUTE;
    let mut t = fresh_with::<Ept4>(Ept4Params {
        ad: 0,
        execute_only: 1,
        pa_bits: 52,
    });
    map(&mut t, 0x1000, 0x6000, SIZE_4K, x);
    map(&mut t, 0x2000, 0x7000, SIZE_4K, x | MF::UNCACHED);
    assert_eq!(raw_leaf(&t, 0x1000), 0x6074);
    assert_eq!(raw_leaf(&t, 0x2000), 0x700c);
    assert_eq!(t.query(Gpa::from(0x1000)).unwrap().flags, x);
    let before = snapshot(&t);
    for f in [MF::WRITE | x, MF::empty()] {
        let err = t.map(Gpa::from(0x3000), Hpa::from(0x8000), SIZE_4K, f);
        assert!(
            matches!(err, Err(Error::IllegalFlags { .. })),
            "{f:?}: {err:?}"
        );
    }
    // protect to execute-only, then back to read-execute.
    t.protect(Gpa::from(0x2000), MF::READ | x).unwrap().ignore();
    assert_eq!(raw_leaf(&t, 0x2000), 0x7075);
    t.protect(Gpa::from(0x2000), x | MF::UNCACHED)
        .unwrap()
        .ignore();
    assert_eq!(snapshot(&t), before);
    drop(t);

    let mut plain = fresh::<Ept4>();
    let err = plain.map(Gpa::from(0x1000), Hpa::from(0x6000), SIZE_4K, x);
    assert!(
        matches!(err, Err(Error::IllegalFlags { reason, .. }) if reason.contains("execute_only: 1")),
        "{err:?}"
    );
    let r = Table::<Ept4>::try_new_with(Ept4Params {
        ad: 0,
        execute_only: 2,
        pa_bits: 52,
    });
    assert!(matches!(
        r,
        Err(Error::ParamOutOfRange {
            param: "execute_only",
            ..
        })
    ));
}

#[test]
fn user_is_ignored() {
    let mut t = fresh::<Ept4>();
    for (i, f) in all_combinations().filter(|f| legal(*f)).enumerate() {
        let (a, b) = ((2 * i + 1) * SIZE_4K, (2 * i + 2) * SIZE_4K);
        map(&mut t, a, 0x7000, SIZE_4K, f - MF::USER);
        map(&mut t, b, 0x7000, SIZE_4K, f | MF::USER);
        assert_eq!(raw_leaf(&t, a), raw_leaf(&t, b), "{f:?}");
    }
    // One fixed golden value: R|W|USER -> same as R|W -> 0x73.
    map(&mut t, 0x4000_0000, 0x7000, SIZE_4K, RW | MF::USER);
    assert_eq!(raw_leaf(&t, 0x4000_0000), 0x7073);
}

#[test]
fn every_flag_combination_round_trips_through_query() {
    let mut t = fresh::<Ept4>();
    let mut legal_count = 0;
    for (i, f) in all_combinations().enumerate() {
        let gpa = (i + 1) * SIZE_4K;
        let r = t.map(Gpa::from(gpa), Hpa::from(0x9000), SIZE_4K, f);
        if legal(f) {
            r.unwrap().ignore();
            legal_count += 1;
            let q = t.query(Gpa::from(gpa + 0x123)).unwrap();
            assert_eq!(
                q,
                Translation {
                    hpa: Hpa::from(0x9123),
                    flags: f - MF::USER,
                    size: SIZE_4K
                },
                "{f:?}"
            );
        } else {
            assert!(matches!(r.err(), Some(Error::IllegalFlags { .. })), "{f:?}");
            assert_eq!(
                t.query(Gpa::from(gpa)).err(),
                Some(Error::NotMapped {
                    gpa: Gpa::from(gpa)
                })
            );
        }
    }
    // R set (8 combos of W, X, USER) times {none, DEVICE, UNCACHED} = 24.
    assert_eq!(legal_count, 24);
}

// -- GenericPTE -----------------------------------------------------------

#[test]
fn generic_pte_golden_values() {
    // 1G/2M leaf (is_huge): R|W 0x3, WB 0x30, IPAT 0x40, PS 0x80.
    let e = EptEntry::new_page(Hpa::from(0x1_0000_0000), RW, true);
    assert_eq!(e.raw(), 0x1_0000_00f3);
    assert!(e.is_huge() && e.is_present());
    // 4K leaf, R|W|X|UNCACHED: 0x7 | WC 0x08 -> 0x0f, no PS.
    let e = EptEntry::new_page(Hpa::from(0x1234_5000), MF::all() - MF::DEVICE, false);
    assert_eq!(e.raw(), 0x1234_500f);
    assert!(!e.is_huge() && e.is_present());
    // Table: R|W|X 0x7 and the address.
    let e = EptEntry::new_table(Hpa::from(0x8000_1000));
    assert_eq!(e.raw(), 0x8000_1007);
    assert_eq!(e.paddr(), Hpa::from(0x8000_1000));
    // The highest encodable address: bits 51:12 all set.
    let e = EptEntry::new_page(Hpa::from(0x000f_ffff_ffff_f000), RW, false);
    assert_eq!(e.raw(), 0x000f_ffff_ffff_f073);
    // Unencodable addresses fail closed: beyond 2^52, or not 4K-aligned.
    assert_eq!(EptEntry::new_page(Hpa::from(1 << 52), RW, false).raw(), 0);
    assert_eq!(
        EptEntry::new_page(Hpa::from(0x1234_5800), RW, false).raw(),
        0
    );
}

#[test]
fn generic_pte_round_trips_every_combination() {
    for f in all_combinations() {
        for huge in [false, true] {
            let e = EptEntry::new_page(Hpa::from(0x1_4020_0000), f, huge);
            if legal(f) {
                assert!(e.is_present(), "{f:?}");
                assert_eq!(e.flags(), f - MF::USER, "{f:?}");
                assert_eq!(e.paddr(), Hpa::from(0x1_4020_0000));
                assert_eq!(e.is_huge(), huge);
                // PS (bit 7) exactly when huge.
                assert_eq!(e.raw() & 0x80 != 0, huge);
            } else {
                // Illegal flags give a non-present entry, raw 0.
                assert_eq!(e.raw(), 0, "{f:?}");
                assert_eq!(e.bits(), 0);
                assert!(!e.is_present() && e.is_unused());
                assert_eq!(e.flags(), MF::empty());
            }
        }
    }
}

// Regression (found by this test, fixed in npt/src/pte.rs): `GenericPTE::new_page(pa, flags, true)` once checked `pa` only against the
// 4 KiB granule, so a huge (PS = 1) entry can carry address bits below the
// huge-page size. In a PDE that maps a 2-MByte page bits 20:12 are reserved
// (must be 0), and in a PDPTE that maps a 1-GByte page bits 29:12 are (SDM
// Vol. 3C §29.3.2, Tables "Format of an EPT PDE that Maps a 2-MByte Page" /
// "... PDPTE that Maps a 1-GByte Page"); a present entry with a reserved bit
// set is an EPT misconfiguration (§29.3.3.1). npt/src/pte.rs promises a
// non-present entry (raw 0) for an unencodable address; it built
// 0x1_4000_10f3 instead. `PageTable64::remap` reaches this through
// `set_paddr` + `set_flags` (it does not align the address).
#[test]
fn generic_pte_huge_page_with_unaligned_address_fails_closed() {
    // 0x1_4000_1000 is 4K-aligned but not 2M-aligned: no huge leaf can
    // encode it, so the entry must be non-present.
    let e = EptEntry::new_page(Hpa::from(0x1_4000_1000), RW, true);
    assert_eq!(
        e.raw(),
        0,
        "huge EPT leaf with reserved bits 20:12 set: {e:?}"
    );
    let mut e = EptEntry::new_page(Hpa::from(0x1_4000_0000), RW, true);
    e.set_paddr(Hpa::from(0x1_4000_1000));
    assert_eq!(e.raw(), 0, "set_paddr on a huge EPT leaf: {e:?}");
}

// -- root register --------------------------------------------------------

#[test]
fn eptp_golden_values() {
    let root = Hpa::from(ROOT);
    assert_eq!(
        Ept4::eptp(
            root,
            &Ept4Params {
                ad: 0,
                execute_only: 0,
                pa_bits: 52
            }
        ),
        Ok(EPTP_ROOT)
    );
    // A/D enable is bit 6: 0x8000_001e | 0x40.
    assert_eq!(
        Ept4::eptp(
            root,
            &Ept4Params {
                ad: 1,
                execute_only: 0,
                pa_bits: 52
            }
        ),
        Ok(0x8000_005e)
    );
    // PML4 at the top of the 52-bit space: bits 51:12 all set | 0x1e.
    assert_eq!(
        Ept4::eptp(
            Hpa::from(0x000f_ffff_ffff_f000),
            &Ept4Params {
                ad: 0,
                execute_only: 0,
                pa_bits: 52
            }
        ),
        Ok(0x000f_ffff_ffff_f01e)
    );
    // 2^52 is beyond any MAXPHYADDR (EPTP bits 63:N are reserved).
    assert!(matches!(
        Ept4::eptp(
            Hpa::from(1 << 52),
            &Ept4Params {
                ad: 0,
                execute_only: 0,
                pa_bits: 52
            }
        ),
        Err(Error::Requirement {
            rule: "root_below_pa_bits",
            ..
        })
    ));
}

#[test]
fn root_register_is_the_eptp() {
    let t = fresh::<Ept4>();
    assert_eq!(t.root_register(), EPTP_ROOT);
    drop(t);
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let t = Table::<Ept4>::try_new_with(Ept4Params {
        ad: 1,
        execute_only: 0,
        pa_bits: 52,
    })
    .unwrap();
    assert_eq!(t.root_paddr(), Hpa::from(ROOT));
    assert_eq!(t.root_register(), 0x8000_005e);
    assert_eq!(
        t.params(),
        &Ept4Params {
            ad: 1,
            execute_only: 0,
            pa_bits: 52
        }
    );
}

#[test]
fn ad_param_out_of_range_is_refused() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let r = Table::<Ept4>::try_new_with(Ept4Params {
        ad: 2,
        execute_only: 0,
        pa_bits: 52,
    });
    assert_eq!(
        r.err(),
        Some(Error::ParamOutOfRange {
            param: "ad",
            value: 2,
            width: 1
        })
    );
    // The root frame was given back.
    assert_eq!(live_frames(), 0);
}

// -- invalidation ---------------------------------------------------------

#[test]
fn flush_map_issues_nothing() {
    let mut t = fresh::<Ept4>();
    let tf = t
        .map_region(
            Gpa::from(0),
            Hpa::from(0x1_0000_0000),
            SIZE_1G + SIZE_2M + SIZE_4K,
            RW,
            true,
        )
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert_eq!(run(tf), vec![]);
}

#[test]
fn flush_unmap_issues_one_invept_single_context() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0xc000_3000, 0x1_8000_5000, SIZE_4K, RW);
    // A second page keeps the PT from becoming empty (an emptied table is
    // unlinked and freed, which invalidates the whole context instead).
    map(&mut t, 0xc000_4000, 0x1_8000_6000, SIZE_4K, RW);
    let (tr, tf) = t.unmap(Gpa::from(0xc000_3000)).unwrap();
    assert_eq!(
        tr,
        Translation {
            hpa: Hpa::from(0x1_8000_5000),
            flags: RW,
            size: SIZE_4K
        }
    );
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(tf.pages().collect::<Vec<_>>(), &[0xc000_3000]);
    assert_eq!(run(tf), vec![invept_single(EPTP_ROOT)]);
    // The PTE is zero again; the tables stay.
    assert_eq!(entry(0x8000_3000, 3), 0);
    assert_eq!(leaves(&t).len(), 1);
}

#[test]
fn flush_unmap_of_a_block_issues_one_invept() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_1G, RW);
    let (_, tf) = t.unmap(Gpa::from(0x4000_0000)).unwrap();
    assert_eq!(run(tf), vec![invept_single(EPTP_ROOT)]);
    assert_eq!(entry(0x8000_1000, 1), 0);
}

#[test]
fn flush_protect_issues_one_invept_single_context() {
    let mut t = fresh::<Ept4>();
    map(&mut t, 0x20_0000, 0x1_4020_0000, SIZE_2M, RW);
    let tf = t.protect(Gpa::from(0x20_0000), MF::READ).unwrap();
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(run(tf), vec![invept_single(EPTP_ROOT)]);
    // R 0x1 | WB 0x30 | IPAT 0x40 | PS 0x80 -> 0xf1.
    assert_eq!(raw_leaf(&t, 0x20_0000), 0x1_4020_00f1);
    // Protecting to the same flags changes nothing: nothing to invalidate.
    let tf = t.protect(Gpa::from(0x20_0000), MF::READ).unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert_eq!(run(tf), vec![]);
}

#[test]
fn flush_large_unmap_and_table_free_use_the_context_recipe() {
    // The spec's page_limit (INVEPT has no per-page form: it bounds the list).
    const MAX_PAGES: usize = 512;
    assert_eq!(<Ept4 as npt::Format>::FLUSH.page_limit, MAX_PAGES);
    let mut t = fresh::<Ept4>();
    let n = MAX_PAGES + 1;
    map_pages(&mut t, 0, n);
    let tf = t.unmap_region(Gpa::from(0), n * SIZE_4K).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert_eq!(run(tf), vec![invept_single(EPTP_ROOT)]);

    // Exactly MAX_PAGES leaves still go page by page; INVEPT has no
    // per-address form, so it is still one single-context INVEPT. (One
    // more page keeps the PT from becoming empty and being freed.)
    map_pages(&mut t, 0, MAX_PAGES + 1);
    let tf = t.unmap_region(Gpa::from(0), MAX_PAGES * SIZE_4K).unwrap();
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(tf.page_count(), MAX_PAGES);
    assert_eq!(run(tf), vec![invept_single(EPTP_ROOT)]);

    t.unmap_region(Gpa::from(MAX_PAGES * SIZE_4K), SIZE_4K)
        .unwrap()
        .ignore();

    // Unmapping a whole PT unlinks it (and the PD and PDPT it empties):
    // context scope; the frames go back only after the invalidation.
    map_pages(&mut t, 0, 512);
    let frames = live_frames();
    let tf = t.unmap_region(Gpa::from(0), SIZE_2M).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert_eq!(tf.tables_to_free(), 3);
    assert_eq!(live_frames(), frames);
    // The PML4E pointing at the PDPT is zero.
    assert_eq!(entry(ROOT, 0), 0);
    assert_eq!(run(tf), vec![invept_single(EPTP_ROOT)]);
    assert_eq!(live_frames(), frames - 3);
}

// -- geometry -------------------------------------------------------------

/// The highest 4K page below 2^48.
const TOP: usize = (1 << 48) - SIZE_4K;

#[test]
fn highest_gpa_maps_and_queries() {
    let mut t = fresh::<Ept4>();
    map(&mut t, TOP, 0x5000, SIZE_4K, RW);
    // Index 511 at every level: PML4E at ROOT + 511*8 -> PDPT 0x8000_1000,
    // PDPTE 511 -> PD 0x8000_2000, PDE 511 -> PT 0x8000_3000, PTE 511.
    assert_eq!(entry(ROOT, 511), 0x8000_1007);
    assert_eq!(entry(0x8000_1000, 511), 0x8000_2007);
    assert_eq!(entry(0x8000_2000, 511), 0x8000_3007);
    // 0x5000 | R|W 0x3 | WB 0x30 | IPAT 0x40.
    assert_eq!(entry(0x8000_3000, 511), 0x5073);
    assert_eq!(
        t.query(Gpa::from((1 << 48) - 1)),
        Ok(Translation {
            hpa: Hpa::from(0x5fff),
            flags: RW,
            size: SIZE_4K
        })
    );
}

#[test]
fn gpa_beyond_input_range_is_refused_not_aliased() {
    let mut t = fresh::<Ept4>();
    let before = snapshot(&t);
    for gpa in [1usize << 48, (1 << 48) | 0x7000] {
        let r = t.map(Gpa::from(gpa), Hpa::from(0x5000), SIZE_4K, RW);
        assert_eq!(
            r.err(),
            Some(Error::GpaOutOfRange {
                gpa: Gpa::from(gpa),
                input_bits: 48
            })
        );
        assert_eq!(
            t.query(Gpa::from(gpa)).err(),
            Some(Error::GpaOutOfRange {
                gpa: Gpa::from(gpa),
                input_bits: 48
            })
        );
    }
    // A range running past the top is refused at 2^48.
    let r = t.map_region(Gpa::from(TOP), Hpa::from(0x5000), 0x2000, RW, false);
    assert_eq!(
        r.err(),
        Some(Error::GpaOutOfRange {
            gpa: Gpa::from(1 << 48),
            input_bits: 48
        })
    );
    // Nothing was written, in particular not at 0x7000 (2^48 | 0x7000
    // truncated to 48 bits).
    assert_eq!(snapshot(&t), before);
    assert_eq!(
        t.query(Gpa::from(0x7000)).err(),
        Some(Error::NotMapped {
            gpa: Gpa::from(0x7000)
        })
    );
}

#[test]
fn hpa_beyond_output_range_is_refused() {
    let mut t = fresh::<Ept4>();
    let before = snapshot(&t);
    let r = t.map(Gpa::from(0x1000), Hpa::from(1 << 52), SIZE_4K, RW);
    assert_eq!(
        r.err(),
        Some(Error::HpaOutOfRange {
            hpa: Hpa::from(1 << 52),
            output_bits: 52
        })
    );
    let r = t.map_region(
        Gpa::from(0x1000),
        Hpa::from((1 << 52) - SIZE_4K),
        0x2000,
        RW,
        false,
    );
    assert_eq!(
        r.err(),
        Some(Error::HpaOutOfRange {
            hpa: Hpa::from(1 << 52),
            output_bits: 52
        })
    );
    assert_eq!(snapshot(&t), before);
    // The last frame below 2^52 maps: bits 51:12 all set | 0x73.
    map(&mut t, 0x1000, (1 << 52) - SIZE_4K, SIZE_4K, RW);
    assert_eq!(raw_leaf(&t, 0x1000), 0x000f_ffff_ffff_f073);
}

/// A misaligned root is refused, not encoded with its low bits dropped
/// into the EPTP's memory-type and walk-length fields (regression).
#[test]
fn eptp_refuses_a_misaligned_root() {
    assert!(matches!(
        Ept4::eptp(
            Hpa::from(0x12_3800),
            &Ept4Params {
                ad: 0,
                execute_only: 0,
                pa_bits: 52
            }
        ),
        Err(Error::Requirement {
            rule: "root_aligned",
            ..
        })
    ));
}

/// MAXPHYADDR (`pa_bits`, CPUID.80000008H:EAX[7:0]): bits 51:MAXPHYADDR of
/// an EPT entry are reserved (SDM Vol. 3C §29.3.2), so on a 40-bit CPU the
/// last page below 2^40 maps (0xff_ffff_f000 | R|W 0x3 | WB 0x30 | IPAT
/// 0x40 = 0xff_ffff_f073) and 2^40 is refused, changing nothing; an EPTP
/// root at 2^40 is refused; a MAXPHYADDR outside 36..=52 is refused.
#[test]
fn pa_bits_limits_host_addresses() {
    let p = |pa_bits| Ept4Params {
        ad: 0,
        execute_only: 0,
        pa_bits,
    };
    let mut t = fresh_with::<Ept4>(p(40));
    map(&mut t, 0x1000, 0xff_ffff_f000, SIZE_4K, RW);
    assert_eq!(raw_leaf(&t, 0x1000), 0xff_ffff_f073);
    let before = snapshot(&t);
    let err = t
        .map(Gpa::from(0x2000), Hpa::from(1 << 40), SIZE_4K, RW)
        .err();
    assert_eq!(
        err,
        Some(Error::HpaOutOfRange {
            hpa: Hpa::from(1 << 40),
            output_bits: 40
        })
    );
    assert_eq!(snapshot(&t), before);
    assert!(matches!(
        Ept4::eptp(Hpa::from(1 << 40), &p(40)),
        Err(Error::Requirement {
            rule: "root_below_pa_bits",
            ..
        })
    ));
    assert_eq!(
        Ept4::eptp(Hpa::from(0xff_ffff_f000), &p(40)),
        Ok(0xff_ffff_f01e)
    );
    drop(t);
    // 0 is no output width at all (the output-limit check refuses it).
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    assert!(matches!(
        Table::<Ept4>::try_new_with(p(0)),
        Err(Error::ParamOutOfRange {
            param: "pa_bits",
            value: 0,
            ..
        })
    ));
    for bad in [35, 53] {
        reset(DEFAULT_BASE, DEFAULT_FRAMES);
        let r = Table::<Ept4>::try_new_with(p(bad));
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
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    assert!(Table::<Ept4>::try_new_with(p(36)).is_ok());
    assert_eq!(Ept4Params::default().pa_bits, 52);
}
