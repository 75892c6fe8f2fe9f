//! Behaviour of the table engine (`npt::NestedTable`), mostly through
//! Intel EPT (`Ept4`) and Arm stage 2 (`Stage2Ipa39`): argument checks,
//! huge-page choice, refusals that change nothing, table freeing,
//! allocator failures, invalidation batches, and a randomized comparison
//! against a simple page-by-page model.

use npt::aarch64::Stage2Ipa39;
use npt::flush::{Event, Instr, Scope};
use npt::riscv::Sv39x4;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::x86_64::Ept4;
use npt::{Error, Format, MappingFlags as MF, TlbFlush, Translation};
use npt_tests::{
    fresh, fresh_with, gpa, hpa, leaves, live_frames, record, reset, set_budget, Table,
    DEFAULT_BASE, DEFAULT_FRAMES, R, RW, RWX, RX,
};

/// Pages a Stage2Ipa39 batch lists before it goes context-wide.
const MAX_PAGES: usize = Stage2Ipa39::FLUSH.page_limit;

/// (gpa, hpa, size) of every leaf.
fn shape<F: Format>(t: &Table<F>) -> Vec<(usize, usize, usize)> {
    leaves(t)
        .iter()
        .map(|l| (l.gpa.as_usize(), l.hpa.as_usize(), l.size))
        .collect()
}

/// Maps and drops the (unneeded) invalidation batch.
fn map_ok<F: Format>(t: &mut Table<F>, g: usize, h: usize, size: usize, flags: MF, huge: bool) {
    t.map_region(gpa(g), hpa(h), size, flags, huge)
        .unwrap()
        .ignore();
}

fn err<F: Format>(r: Result<TlbFlush<F>, Error>) -> Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

// -- basics ----------------------------------------------------------------

fn basics<F: Format>() {
    let mut t = fresh::<F>();
    t.map(gpa(0x1000), hpa(0x5000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    let q = t.query(gpa(0x1234)).unwrap();
    assert_eq!(
        q,
        Translation {
            hpa: hpa(0x5234),
            flags: RW,
            size: SIZE_4K
        }
    );
    assert_eq!(
        t.query(gpa(0x2000)),
        Err(Error::NotMapped { gpa: gpa(0x2000) })
    );
    assert_eq!(t.query(gpa(0)), Err(Error::NotMapped { gpa: gpa(0) }));

    t.protect(gpa(0x1000), R).unwrap().ignore();
    assert_eq!(t.query(gpa(0x1000)).unwrap().flags, R);
    assert_eq!(t.query(gpa(0x1000)).unwrap().hpa, hpa(0x5000));

    let (tr, tf) = t.unmap(gpa(0x1000)).unwrap();
    tf.ignore();
    assert_eq!((tr.hpa, tr.flags, tr.size), (hpa(0x5000), R, SIZE_4K));
    assert_eq!(
        t.query(gpa(0x1000)),
        Err(Error::NotMapped { gpa: gpa(0x1000) })
    );
    assert_eq!(
        t.unmap(gpa(0x1000)).err(),
        Some(Error::NotMapped { gpa: gpa(0x1000) })
    );
    assert!(leaves(&t).is_empty());
}

#[test]
fn basics_ept4() {
    basics::<Ept4>();
}

#[test]
fn basics_stage2() {
    basics::<Stage2Ipa39>();
}

#[test]
fn basics_sv39x4() {
    basics::<Sv39x4>();
}

// -- huge-page choice --------------------------------------------------------

#[test]
fn map_region_uses_huge_pages_only_where_both_addresses_align() {
    let mut t = fresh::<Ept4>();
    // 4K + 2M + 4K: only the middle is 2M-aligned on both sides.
    map_ok(
        &mut t,
        0x1F_F000,
        0x1_001F_F000,
        SIZE_2M + 2 * SIZE_4K,
        RW,
        true,
    );
    assert_eq!(
        shape(&t),
        [
            (0x1F_F000, 0x1_001F_F000, SIZE_4K),
            (0x20_0000, 0x1_0020_0000, SIZE_2M),
            (0x4_00000, 0x1_0040_0000, SIZE_4K),
        ]
    );
}

#[test]
fn gpa_2m_aligned_but_hpa_4k_aligned_gives_4k_leaves() {
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0x20_0000, 0x1000_1000, SIZE_2M, RW, true);
    let s = shape(&t);
    assert_eq!(s.len(), 512);
    for (i, l) in s.iter().enumerate() {
        assert_eq!(
            *l,
            (0x20_0000 + i * SIZE_4K, 0x1000_1000 + i * SIZE_4K, SIZE_4K)
        );
    }
}

#[test]
fn allow_huge_false_gives_only_4k_leaves() {
    let mut t = fresh::<Stage2Ipa39>();
    map_ok(&mut t, 0x4000_0000, 0x4000_0000, 2 * SIZE_2M, RW, false);
    let l = leaves(&t);
    assert_eq!(l.len(), 1024);
    assert!(l.iter().all(|l| l.size == SIZE_4K));
}

#[test]
fn gigapage_and_query_inside_huge_pages() {
    let mut t = fresh::<Ept4>();
    map_ok(
        &mut t,
        0x4000_0000,
        0x8000_0000,
        SIZE_1G + SIZE_2M,
        RWX,
        true,
    );
    assert_eq!(
        shape(&t),
        [
            (0x4000_0000, 0x8000_0000, SIZE_1G),
            (0x8000_0000, 0xC000_0000, SIZE_2M),
        ]
    );
    let q = t.query(gpa(0x4123_4567)).unwrap();
    assert_eq!((q.hpa, q.size, q.flags), (hpa(0x8123_4567), SIZE_1G, RWX));
    let q = t.query(gpa(0x801F_FFFF)).unwrap();
    assert_eq!((q.hpa, q.size), (hpa(0xC01F_FFFF), SIZE_2M));
    assert_eq!(
        t.query(gpa(0x8020_0000)),
        Err(Error::NotMapped {
            gpa: gpa(0x8020_0000)
        })
    );
}

// -- argument checks ---------------------------------------------------------

#[test]
fn map_of_a_non_leaf_size_is_unsupported() {
    let mut t = fresh::<Ept4>();
    for size in [0, 0x800, 0x2000, 0x3000, 0x4_00000, 1 << 39] {
        assert_eq!(
            err(t.map(gpa(0), hpa(0), size, RW)),
            Error::UnsupportedPageSize { size },
            "{size:#x}"
        );
    }
    drop(t);
    let mut t = fresh::<Stage2Ipa39>();
    // Stage2Ipa39 starts at level 1: no 512G level at all.
    assert_eq!(
        err(t.map(gpa(0), hpa(0), 1 << 39, RW)),
        Error::UnsupportedPageSize { size: 1 << 39 }
    );
    assert!(leaves(&t).is_empty());
}

#[test]
fn misaligned_addresses_refused() {
    let mut t = fresh::<Ept4>();
    let mis_gpa = |g, align| Error::MisalignedGpa { gpa: gpa(g), align };
    let mis_hpa = |h, align| Error::MisalignedHpa { hpa: hpa(h), align };
    assert_eq!(
        err(t.map(gpa(0x1800), hpa(0), SIZE_4K, RW)),
        mis_gpa(0x1800, SIZE_4K)
    );
    assert_eq!(
        err(t.map(gpa(0x1000), hpa(0), SIZE_2M, RW)),
        mis_gpa(0x1000, SIZE_2M)
    );
    assert_eq!(
        err(t.map(gpa(0x20_0000), hpa(0x1000), SIZE_2M, RW)),
        mis_hpa(0x1000, SIZE_2M)
    );
    assert_eq!(
        err(t.map(gpa(0x4000_0000), hpa(0x20_0000), SIZE_1G, RW)),
        mis_hpa(0x20_0000, SIZE_1G)
    );
    assert_eq!(
        err(t.map_region(gpa(0x1001), hpa(0), SIZE_4K, RW, true)),
        mis_gpa(0x1001, SIZE_4K)
    );
    assert_eq!(
        err(t.map_region(gpa(0x1000), hpa(0x10), SIZE_4K, RW, true)),
        mis_hpa(0x10, SIZE_4K)
    );
    map_ok(&mut t, 0, 0, 0x4000, RW, true);
    let before = leaves(&t);
    assert_eq!(
        err(t.unmap_region(gpa(0x800), SIZE_4K)),
        mis_gpa(0x800, SIZE_4K)
    );
    assert_eq!(
        err(t.protect_region(gpa(0x10), SIZE_4K, R)),
        mis_gpa(0x10, SIZE_4K)
    );
    assert_eq!(leaves(&t), before);
}

#[test]
fn bad_sizes_refused() {
    let mut t = fresh::<Ept4>();
    let bad = |size| Error::BadSize {
        size,
        granule: SIZE_4K,
    };
    for size in [0, 0x10, 0x1800, SIZE_2M + 1] {
        assert_eq!(err(t.map_region(gpa(0), hpa(0), size, RW, true)), bad(size));
    }
    map_ok(&mut t, 0, 0, 0x4000, RW, true);
    let before = leaves(&t);
    assert_eq!(err(t.unmap_region(gpa(0), 0)), bad(0));
    assert_eq!(err(t.unmap_region(gpa(0), 0x1800)), bad(0x1800));
    assert_eq!(err(t.protect_region(gpa(0), 0, R)), bad(0));
    assert_eq!(err(t.protect_region(gpa(0), 0x10, R)), bad(0x10));
    assert_eq!(leaves(&t), before);
}

#[test]
fn addresses_beyond_the_widths_refused() {
    let mut t = fresh::<Stage2Ipa39>();
    // 39-bit input, 48-bit output.
    assert_eq!(
        err(t.map(gpa(1 << 39), hpa(0), SIZE_4K, RW)),
        Error::GpaOutOfRange {
            gpa: gpa(1 << 39),
            input_bits: 39
        }
    );
    assert_eq!(
        err(t.map(gpa(0), hpa(1 << 48), SIZE_4K, RW)),
        Error::HpaOutOfRange {
            hpa: hpa(1 << 48),
            output_bits: 48
        }
    );
    assert_eq!(
        err(t.map_region(gpa(0), hpa((1 << 48) - SIZE_4K), 2 * SIZE_4K, RW, true)),
        Error::HpaOutOfRange {
            hpa: hpa(1 << 48),
            output_bits: 48
        }
    );
    assert!(leaves(&t).is_empty());
}

// -- refusals change nothing ---------------------------------------------------

#[test]
fn overlapping_map_refused_without_change() {
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0x20_0000, 0x9000_0000, SIZE_4K, RW, true);
    map_ok(&mut t, 0x4000_0000, 0x4000_0000, SIZE_2M, R, true);
    let before = leaves(&t);
    // 0x10_0000..0x20_1000 overlaps only at its last page, in another PD
    // entry than its start.
    let e = err(t.map_region(gpa(0x10_0000), hpa(0x1_0000_0000), 0x10_1000, RWX, true));
    assert_eq!(
        e,
        Error::AlreadyMapped {
            gpa: gpa(0x20_0000)
        }
    );
    assert_eq!(leaves(&t), before);
    assert_eq!(
        t.query(gpa(0x10_0000)),
        Err(Error::NotMapped {
            gpa: gpa(0x10_0000)
        })
    );
    // A page inside a 2M leaf.
    let e = err(t.map(gpa(0x4000_1000), hpa(0), SIZE_4K, RW));
    assert_eq!(
        e,
        Error::AlreadyMapped {
            gpa: gpa(0x4000_1000)
        }
    );
    // A 2M leaf over a table holding one page.
    let e = err(t.map(gpa(0x20_0000), hpa(0x20_0000), SIZE_2M, RW));
    assert_eq!(
        e,
        Error::AlreadyMapped {
            gpa: gpa(0x20_0000)
        }
    );
    // A 1G leaf over a table holding a 2M leaf.
    let e = err(t.map(gpa(0x4000_0000), hpa(0), SIZE_1G, RW));
    assert_eq!(
        e,
        Error::AlreadyMapped {
            gpa: gpa(0x4000_0000)
        }
    );
    assert_eq!(leaves(&t), before);
    // Tables a refused map allocated are still accounted for.
    assert_eq!(live_frames(), t.frames_used());
}

#[test]
fn unmap_region_over_a_hole_refused_without_change() {
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0, 0x10_0000, 0x3000, RW, true);
    map_ok(&mut t, 0x4000, 0x10_4000, 0x2000, RW, true);
    let before = leaves(&t);
    let frames = t.frames_used();
    assert_eq!(
        err(t.unmap_region(gpa(0), 0x6000)),
        Error::NotMapped { gpa: gpa(0x3000) }
    );
    assert_eq!(
        err(t.protect_region(gpa(0), 0x6000, R)),
        Error::NotMapped { gpa: gpa(0x3000) }
    );
    // A hole of a whole PD entry.
    assert_eq!(
        err(t.unmap_region(gpa(0x4000), SIZE_2M)),
        Error::NotMapped { gpa: gpa(0x6000) }
    );
    assert_eq!(leaves(&t), before);
    assert_eq!(t.frames_used(), frames);
}

// -- frames ------------------------------------------------------------------

#[test]
fn unmap_of_whole_tables_frees_them() {
    let mut t = fresh::<Ept4>();
    assert_eq!((t.frames_used(), live_frames()), (1, 1));
    // PDPT, PD, PT.
    map_ok(&mut t, 0x4000_0000, 0x4000_0000, SIZE_2M, RW, false);
    assert_eq!((t.frames_used(), live_frames()), (4, 4));
    // Covers part of the PT: it stays.
    t.unmap_region(gpa(0x4000_0000), SIZE_4K).unwrap().ignore();
    assert_eq!((t.frames_used(), live_frames()), (4, 4));
    map_ok(&mut t, 0x4000_0000, 0x4000_0000, SIZE_4K, RW, false);
    // Empties the PT, and so the PD and PDPT above it: all three unlinked
    // at once, freed when the batch is done with.
    let tf = t.unmap_region(gpa(0x4000_0000), SIZE_2M).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert_eq!(tf.tables_to_free(), 3);
    assert_eq!((t.frames_used(), live_frames()), (1, 4));
    tf.ignore();
    assert_eq!(live_frames(), 1);
    // 512 2M leaves in one PD (HPA 2M but not 1G aligned).
    map_ok(&mut t, 0x4000_0000, 0x1_0020_0000, SIZE_1G, RW, true);
    assert_eq!(leaves(&t).len(), 512);
    assert_eq!((t.frames_used(), live_frames()), (3, 3));
    let tf = t.unmap_region(gpa(0x4000_0000), SIZE_1G).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    tf.ignore();
    // PD and PDPT freed: the root is left.
    assert_eq!((t.frames_used(), live_frames()), (1, 1));
    assert!(leaves(&t).is_empty());
}

#[test]
fn a_failed_invalidation_leaks_rather_than_frees() {
    struct Failing;
    impl npt::flush::FlushExecutor for Failing {
        fn execute(&mut self, op: npt::flush::Issued) -> Result<(), npt::FlushError> {
            Err(npt::FlushError::ForeignInstruction(op.instr))
        }
        fn switch_context(
            &mut self,
            _: npt::flush::ContextRegister,
            _: u64,
        ) -> Result<Option<u64>, npt::FlushError> {
            Ok(None)
        }
        fn restore_context(
            &mut self,
            _: npt::flush::ContextRegister,
            _: u64,
        ) -> Result<(), npt::FlushError> {
            Ok(())
        }
    }
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0x4000_0000, 0x4000_0000, SIZE_4K, RW, false);
    let tf = t.unmap_region(gpa(0x4000_0000), SIZE_4K).unwrap();
    assert!(tf.flush_with(&mut Failing).is_err());
    // The PT, PD and PDPT may still be cached: not handed out again.
    assert_eq!((t.frames_used(), live_frames()), (1, 4));
}

#[test]
fn unmap_of_a_mixed_gigabyte_frees_every_table_below() {
    let mut t = fresh::<Stage2Ipa39>();
    // 512 4K leaves (one L3 table) and 511 2M leaves under one L2 table.
    map_ok(&mut t, 0x4000_0000, 0x1_0000_0000, SIZE_2M, RW, false);
    map_ok(
        &mut t,
        0x4020_0000,
        0x1_0020_0000,
        SIZE_1G - SIZE_2M,
        RW,
        true,
    );
    assert_eq!(leaves(&t).len(), 512 + 511);
    assert_eq!((t.frames_used(), live_frames()), (3, 3));
    t.unmap_region(gpa(0x4000_0000), SIZE_1G).unwrap().ignore();
    assert_eq!((t.frames_used(), live_frames()), (1, 1));
    assert!(leaves(&t).is_empty());
}

fn drop_frees<F: Format>() {
    let mut t = fresh::<F>();
    map_ok(&mut t, 0, 0x10_0000, 0x5000, RW, true);
    map_ok(&mut t, 0x4000_0000, 0x4000_0000, SIZE_1G, RW, true);
    map_ok(&mut t, 0x8000_0000, 0x20_0000, SIZE_2M + SIZE_4K, R, true);
    map_ok(&mut t, 0x1_0000_0000 + 0x1000, 0x1000, 0x3000, RX, true);
    assert!(live_frames() > 1);
    assert_eq!(live_frames(), t.frames_used());
    drop(t);
    assert_eq!(live_frames(), 0);
}

#[test]
fn drop_frees_every_frame() {
    drop_frees::<Ept4>();
    drop_frees::<Stage2Ipa39>();
    drop_frees::<Sv39x4>();
}

#[test]
fn allocator_exhaustion_maps_nothing_then_retry_succeeds() {
    let mut t = fresh::<Ept4>();
    // 0x3FFF_F000..0x4000_1000 needs PDPT, PD, PT (first page) and PD, PT
    // (second page): the 5th allocation fails.
    set_budget(Some(4));
    let e = err(t.map_region(gpa(0x3FFF_F000), hpa(0x10_0000), 2 * SIZE_4K, RW, true));
    assert_eq!(e, Error::NoMemory);
    assert!(leaves(&t).is_empty());
    assert_eq!(live_frames(), t.frames_used());
    set_budget(None);
    map_ok(&mut t, 0x3FFF_F000, 0x10_0000, 2 * SIZE_4K, RW, true);
    assert_eq!(
        shape(&t),
        [
            (0x3FFF_F000, 0x10_0000, SIZE_4K),
            (0x4000_0000, 0x10_1000, SIZE_4K)
        ]
    );
    assert_eq!((t.frames_used(), live_frames()), (6, 6));
    drop(t);
    assert_eq!(live_frames(), 0);
}

#[test]
fn no_frame_for_the_root() {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    set_budget(Some(0));
    assert_eq!(Table::<Ept4>::try_new().err(), Some(Error::NoMemory));
    set_budget(None);
    // Sv39x4 needs 4 contiguous 16K-aligned frames: 3 are not enough.
    reset(DEFAULT_BASE, 3);
    assert_eq!(Table::<Sv39x4>::try_new().err(), Some(Error::NoMemory));
    assert_eq!(live_frames(), 0);
}

#[test]
fn frames_beyond_the_output_width_are_refused() {
    // Stage2Ipa39 outputs 48 bits.
    reset(1 << 48, 64);
    assert_eq!(Table::<Stage2Ipa39>::try_new().err(), Some(Error::NoMemory));
    assert_eq!(live_frames(), 0);
    // Ept4 outputs 52 bits.
    reset(1 << 52, 64);
    assert_eq!(Table::<Ept4>::try_new().err(), Some(Error::NoMemory));
    assert_eq!(live_frames(), 0);
    // The root fits just below 2^48; the next table would not.
    reset((1 << 48) - SIZE_4K, 2);
    let mut t = Table::<Stage2Ipa39>::try_new().unwrap();
    assert_eq!(t.root_paddr(), hpa((1 << 48) - SIZE_4K));
    assert_eq!(err(t.map(gpa(0), hpa(0), SIZE_4K, RW)), Error::NoMemory);
    assert!(leaves(&t).is_empty());
    assert_eq!(live_frames(), 1);
    // A 1G leaf needs no table.
    t.map(gpa(0), hpa(0), SIZE_1G, RW).unwrap().ignore();
    assert_eq!(leaves(&t).len(), 1);
}

// -- empty tables --------------------------------------------------------------

#[test]
fn existing_tables_are_descended_not_replaced_by_blocks() {
    // Replacing a table entry with a block would need break-before-make on
    // Arm; npt maps smaller leaves into the existing table instead.
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0x20_0000, 0x5000, SIZE_4K, RW, true);
    t.unmap_region(gpa(0x20_0000), SIZE_4K).unwrap().ignore();
    // The PT emptied and was freed with the tables above it.
    assert_eq!((t.frames_used(), live_frames()), (1, 1));
    let tf = t
        .map_region(gpa(0x20_0000), hpa(0x4000_0000), SIZE_2M, RW, true)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    tf.ignore();
    assert_eq!(shape(&t), [(0x20_0000, 0x4000_0000, SIZE_2M)]);
    // A table that still holds a leaf: the rest of its 2M is 4K leaves.
    t.unmap_region(gpa(0x20_0000), SIZE_2M).unwrap().ignore();
    map_ok(&mut t, 0x20_0000, 0x5000, SIZE_4K, RW, true);
    map_ok(&mut t, 0x20_1000, 0x4000_1000, SIZE_2M - SIZE_4K, RW, true);
    assert_eq!(leaves(&t).len(), 512);
    assert!(leaves(&t).iter().all(|l| l.size == SIZE_4K));
}

// -- invalidation batches ----------------------------------------------------

#[test]
fn batches_scope_pages_and_merge() {
    let mut t = fresh::<Stage2Ipa39>();
    // Arm caches no invalid entries: mapping needs no invalidation.
    let size = 0x1_0000 + (MAX_PAGES + 1) * SIZE_4K;
    let tf = t
        .map_region(gpa(0), hpa(0x10_0000), size, RW, false)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert!(tf.page_count() == 0);
    let rec = record(tf, 0);
    assert!(rec.events.is_empty());

    let mut a = t.unmap_region(gpa(0), SIZE_4K).unwrap();
    assert_eq!(
        (a.scope(), a.pages().collect::<Vec<_>>()),
        (Scope::Pages, vec![0])
    );
    let b = t.unmap_region(gpa(0x1000), 0x2000).unwrap();
    assert_eq!(b.pages().collect::<Vec<_>>(), [0x1000, 0x2000]);
    a.merge(b).unwrap();
    assert_eq!(a.pages().collect::<Vec<_>>(), [0, 0x1000, 0x2000]);
    let nothing = t.map(gpa(0), hpa(0), SIZE_4K, R).unwrap();
    a.merge(nothing).unwrap();
    assert_eq!(
        (a.scope(), a.pages().collect::<Vec<_>>()),
        (Scope::Pages, vec![0, 0x1000, 0x2000])
    );
    let mut n = t.map(gpa(0x1000), hpa(0), SIZE_4K, R).unwrap();
    let p = t.protect(gpa(0), RW).unwrap();
    n.merge(p).unwrap();
    assert_eq!(
        (n.scope(), n.pages().collect::<Vec<_>>()),
        (Scope::Pages, vec![0])
    );
    n.ignore();

    // Merging a context batch makes the whole batch context-wide.
    let ctx = t
        .unmap_region(gpa(0x1_0000), (MAX_PAGES + 1) * SIZE_4K)
        .unwrap();
    assert_eq!(ctx.scope(), Scope::Context);
    assert!(ctx.page_count() == 0);
    a.merge(ctx).unwrap();
    assert_eq!(a.scope(), Scope::Context);
    assert!(a.page_count() == 0);
    a.ignore();
}

#[test]
fn more_than_max_pages_escalates_to_context() {
    let mut t = fresh::<Stage2Ipa39>();
    map_ok(
        &mut t,
        0,
        0x10_0000,
        (3 * MAX_PAGES + 2) * SIZE_4K,
        RW,
        false,
    );
    let tf = t.unmap_region(gpa(0), MAX_PAGES * SIZE_4K).unwrap();
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(tf.page_count(), MAX_PAGES);
    let rec = record(tf, 0);
    let per_page = rec
        .instrs()
        .iter()
        .filter(|i| i.instr == Instr::TlbiIpas2e1is)
        .count();
    assert_eq!(per_page, MAX_PAGES);

    let base = MAX_PAGES * SIZE_4K;
    let tf = t
        .unmap_region(gpa(base), (MAX_PAGES + 1) * SIZE_4K)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    let rec = record(tf, 0);
    assert!(rec.instrs().iter().all(|i| i.instr != Instr::TlbiIpas2e1is));
    assert!(rec
        .instrs()
        .iter()
        .any(|i| i.instr == Instr::TlbiVmalls12e1is));
    // The VMID's register is made current around the TLBIs, then restored.
    assert!(matches!(rec.events.first(), Some(Event::Switch(_, v)) if *v == t.root_register()));
    assert!(matches!(rec.events.last(), Some(Event::Restore(_, 0))));

    // Merging single pages escalates the same way.
    let start = 2 * base + SIZE_4K;
    let mut all = t.protect(gpa(start), R).unwrap();
    for i in 1..=MAX_PAGES {
        let one = t.protect(gpa(start + i * SIZE_4K), R).unwrap();
        all.merge(one).unwrap();
        let want = if i < MAX_PAGES {
            Scope::Pages
        } else {
            Scope::Context
        };
        assert_eq!(all.scope(), want, "after {} pages", i + 1);
    }
    all.ignore();
}

// -- randomized model test -----------------------------------------------------

#[test]
fn random_ops_match_model_ept4() {
    use npt_tests::model::{model_test, BOTH_MEMTYPES_ILLEGAL, EPT_LEGAL};
    model_test::<Ept4>(0x9E37_79B9_7F4A_7C15, &EPT_LEGAL, BOTH_MEMTYPES_ILLEGAL);
}

#[test]
fn random_ops_match_model_stage2() {
    use npt_tests::model::{model_test, BOTH_MEMTYPES_ILLEGAL, STAGE2_LEGAL};
    model_test::<Stage2Ipa39>(0xD1B5_4A32_D192_ED03, &STAGE2_LEGAL, BOTH_MEMTYPES_ILLEGAL);
}

#[test]
fn random_ops_match_model_sv39x4() {
    use npt_tests::model::{model_test, BOTH_MEMTYPES_ILLEGAL, SV39X4_LEGAL};
    model_test::<Sv39x4>(0x2545_F491_4F6C_DD1D, &SV39X4_LEGAL, BOTH_MEMTYPES_ILLEGAL);
}

#[test]
fn invalidate_context_asks_for_the_context_recipe() {
    let mut t = fresh_with::<Stage2Ipa39>(npt::aarch64::Stage2Params {
        vmid: 5,
        ..Default::default()
    });
    let tf = t.invalidate_context();
    assert_eq!(tf.scope(), Scope::Context);
    let instrs: Vec<npt::flush::Instr> = record(tf, t.root_register())
        .instrs()
        .iter()
        .map(|i| i.instr)
        .collect();
    use npt::flush::Instr::*;
    assert_eq!(instrs, [DsbIshst, TlbiVmalls12e1is, DsbIsh, Isb]);
}

#[test]
fn a_huge_page_where_a_table_is_is_already_mapped() {
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0x20_1000, 0x5000, SIZE_4K, RW, false);
    let before = leaves(&t);
    // The 2M slot at 0x20_0000 holds a page table (with a leaf at
    // 0x20_1000, not at 0x20_0000 itself).
    assert_eq!(
        err(t.map(gpa(0x20_0000), hpa(0x4000_0000), SIZE_2M, RW)),
        Error::AlreadyMapped {
            gpa: gpa(0x20_0000)
        }
    );
    assert_eq!(leaves(&t), before);
}

#[test]
fn ept_and_sv39x4_change_memory_types_in_place() {
    // Neither manual asks for break-before-make: the invalidation suffices.
    let mut t = fresh::<Ept4>();
    map_ok(&mut t, 0x1000, 0x5000, SIZE_4K, RW, false);
    t.protect(gpa(0x1000), RW | MF::DEVICE).unwrap().ignore();
    assert_eq!(t.query(gpa(0x1000)).unwrap().flags, RW | MF::DEVICE);
    drop(t);
    let mut t = fresh::<Sv39x4>();
    t.map(gpa(0x1000), hpa(0x5000), SIZE_4K, RW)
        .unwrap()
        .ignore();
    t.protect(gpa(0x1000), RW | MF::UNCACHED).unwrap().ignore();
    assert_eq!(t.query(gpa(0x1000)).unwrap().flags, RW | MF::UNCACHED);
}

/// The compile-time flags table reads every entry as the decode rules do.
fn flags_table_agrees<F: Format>() {
    let table = npt::format::FlagsTable::build(&F::LAYOUT);
    assert!(table.usable, "{}", F::NAME);
    let mut x = 0x0123_4567_89ab_cdefu64;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        assert_eq!(
            table.get(x),
            F::LAYOUT.flags(x).bits(),
            "{}: {x:#x}",
            F::NAME
        );
    }
}

#[test]
fn flags_table_agrees_with_the_decode_rules() {
    flags_table_agrees::<Ept4>();
    flags_table_agrees::<npt::x86_64::Npt4>();
    flags_table_agrees::<Stage2Ipa39>();
    flags_table_agrees::<npt::aarch64::Stage2Ipa48>();
    flags_table_agrees::<Sv39x4>();
}
