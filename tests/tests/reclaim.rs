//! Frames are never kept, leaked or freed early: full reclamation after
//! large unmaps, nothing allocated by a refused map, allocator failure at
//! every allocation point, batches that belong to one table, failed flushes
//! that hand the batch back. Regression tests for defects found on the
//! first engine (each noted where it applies).

use npt::aarch64::{Stage2Ipa39, Stage2Params};
use npt::flush::{Recorder, Scope};
use npt::riscv::Sv39x4;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::x86_64::Ept4;
use npt::{Error, Format, MappingFlags as MF};
use npt_tests::{fresh, gpa, hpa, leaves, live_frames, reset, set_budget, Table, R, RW};

const GIB_AT_4K_TABLES: usize = 1 + 512; // one PD (under a PDPT) and 512 PTs

fn map_gib_4k<F: Format>(t: &mut Table<F>) {
    t.map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_1G, RW, false)
        .unwrap()
        .ignore();
}

/// Was: 499 of 515 frames stayed allocated (a batch freed at most 16).
fn full_reclamation<F: Format>(root_frames: usize, above: usize) {
    let mut t = fresh::<F>();
    map_gib_4k(&mut t);
    assert_eq!(live_frames(), root_frames + above + GIB_AT_4K_TABLES);
    let tf = t.unmap_region(gpa(SIZE_1G), SIZE_1G).unwrap();
    assert_eq!(tf.scope(), Scope::Context);
    assert_eq!(tf.tables_to_free(), above + GIB_AT_4K_TABLES);
    // Unlinked, but not freed before the invalidation.
    assert_eq!(t.frames_used(), root_frames);
    assert_eq!(live_frames(), root_frames + above + GIB_AT_4K_TABLES);
    tf.flush_with(&mut Recorder::default()).unwrap();
    assert_eq!(live_frames(), root_frames, "only the root is left");
    // And a huge page now fits where the tables were (was: AlreadyMapped).
    t.map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_1G, RW, true)
        .unwrap()
        .ignore();
    assert_eq!(leaves(&t).len(), 1);
}

#[test]
fn unmapping_a_gib_frees_every_table_ept() {
    full_reclamation::<Ept4>(1, 1);
}

#[test]
fn unmapping_a_gib_frees_every_table_stage2() {
    full_reclamation::<Stage2Ipa39>(1, 0);
}

#[test]
fn unmapping_a_gib_frees_every_table_sv39x4() {
    full_reclamation::<Sv39x4>(4, 0);
}

#[test]
fn unmapping_in_2m_pieces_frees_everything_too() {
    let mut t = fresh::<Ept4>();
    map_gib_4k(&mut t);
    for k in 0..512 {
        t.unmap_region(gpa(SIZE_1G + k * SIZE_2M), SIZE_2M)
            .unwrap()
            .ignore();
    }
    assert_eq!((t.frames_used(), live_frames()), (1, 1));
}

/// Was: frames in use went from 4 to 517 after an `AlreadyMapped` refusal.
#[test]
fn a_refused_map_allocates_nothing() {
    let mut t = fresh::<Ept4>();
    t.map(gpa(SIZE_1G + SIZE_1G - SIZE_4K), hpa(0), SIZE_4K, R)
        .unwrap()
        .ignore();
    let before = live_frames();
    let e = t
        .map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_1G, RW, false)
        .unwrap_err();
    assert_eq!(
        e,
        Error::AlreadyMapped {
            gpa: gpa(2 * SIZE_1G - SIZE_4K)
        }
    );
    assert_eq!(live_frames(), before);
    assert_eq!(t.frames_used(), before);
}

/// Every allocation point of a large map, failed in turn: the map errs,
/// the table is as before, nothing leaks, and a huge-page map of the same
/// range then succeeds (no empty table blocks it).
#[test]
fn allocation_failure_at_every_point() {
    for n in 0..GIB_AT_4K_TABLES + 1 {
        let mut t = fresh::<Ept4>();
        let before = live_frames();
        set_budget(Some(n));
        let e = t
            .map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_1G, RW, false)
            .unwrap_err();
        set_budget(None);
        assert_eq!(e, Error::NoMemory, "failing allocation {n}");
        assert_eq!(live_frames(), before, "failing allocation {n}");
        assert!(leaves(&t).is_empty());
        t.map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_1G, RW, true)
            .unwrap()
            .ignore();
        assert_eq!(leaves(&t).len(), 1, "failing allocation {n}");
    }
}

/// Every public entry point refuses bad input with its documented error
/// and changes nothing.
#[test]
fn bad_input_on_every_entry_point_changes_nothing() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    let before = (leaves(&t), live_frames());
    let top = 1usize << 48;
    let rx = npt::flush::Recorder::default;
    let unknown = MF::from_bits_retain(1 << 40);
    let cases: Vec<(&str, Result<(), Error>)> = vec![
        (
            "map misaligned gpa",
            t.map(gpa(0x1001), hpa(0), SIZE_4K, RW).map(drop),
        ),
        (
            "map misaligned hpa",
            t.map(gpa(0), hpa(0x1001), SIZE_4K, RW).map(drop),
        ),
        (
            "map 2M unaligned",
            t.map(gpa(SIZE_4K), hpa(0), SIZE_2M, RW).map(drop),
        ),
        (
            "map no such size",
            t.map(gpa(0), hpa(0), 0x3000, RW).map(drop),
        ),
        (
            "map past input",
            t.map(gpa(top), hpa(0), SIZE_4K, RW).map(drop),
        ),
        (
            "map usize::MAX",
            t.map(gpa(usize::MAX & !0xfff), hpa(0), SIZE_4K, RW)
                .map(drop),
        ),
        (
            "map past output",
            t.map(gpa(0), hpa(1 << 52), SIZE_4K, RW).map(drop),
        ),
        (
            "map unknown flags",
            t.map(gpa(0), hpa(0), SIZE_4K, unknown).map(drop),
        ),
        (
            "map overlap",
            t.map(gpa(SIZE_1G), hpa(0), SIZE_4K, RW).map(drop),
        ),
        (
            "region zero size",
            t.map_region(gpa(0), hpa(0), 0, RW, true).map(drop),
        ),
        (
            "region odd size",
            t.map_region(gpa(0), hpa(0), 0x1800, RW, true).map(drop),
        ),
        (
            "region wraps",
            t.map_region(gpa(top - SIZE_4K), hpa(0), 2 * SIZE_4K, RW, true)
                .map(drop),
        ),
        (
            "region hpa wraps",
            t.map_region(gpa(0), hpa(usize::MAX & !0xfff), 2 * SIZE_4K, RW, true)
                .map(drop),
        ),
        (
            "scattered bad hpa",
            t.map_region_with(gpa(0), SIZE_4K, RW, false, |_| hpa(1 << 60))
                .map(drop),
        ),
        (
            "scattered misaligned",
            t.map_region_with(gpa(0), SIZE_4K, RW, false, |_| hpa(0x10))
                .map(drop),
        ),
        ("unmap hole", t.unmap_region(gpa(0), SIZE_4K).map(drop)),
        (
            "unmap past input",
            t.unmap_region(gpa(top - SIZE_4K), 2 * SIZE_4K).map(drop),
        ),
        ("unmap odd", t.unmap(gpa(SIZE_1G + 1)).map(drop)),
        (
            "protect hole",
            t.protect_region(gpa(SIZE_1G), SIZE_2M + SIZE_4K, R)
                .map(drop),
        ),
        (
            "protect illegal",
            t.protect_region(gpa(SIZE_1G), SIZE_4K, MF::WRITE).map(drop),
        ),
        (
            "remap misaligned hpa",
            t.remap(gpa(SIZE_1G), hpa(0x1000), RW).map(drop),
        ),
        ("remap not mapped", t.remap(gpa(0), hpa(0), RW).map(drop)),
        (
            "collapse odd",
            t.collapse_region_in(gpa(1), SIZE_4K, &mut rx()).map(drop),
        ),
        ("query past input", t.query(gpa(usize::MAX)).map(drop)),
    ];
    for (what, r) in &cases {
        assert!(r.is_err(), "{what}: accepted");
    }
    assert_eq!((leaves(&t), live_frames()), before);
    // Each with the error its documentation gives.
    let e = |i: usize| cases[i].1.unwrap_err();
    assert!(matches!(e(0), Error::MisalignedGpa { .. }));
    assert!(matches!(e(1), Error::MisalignedHpa { .. }));
    assert!(matches!(e(3), Error::UnsupportedPageSize { size: 0x3000 }));
    assert!(matches!(e(4), Error::GpaOutOfRange { .. }));
    assert!(matches!(e(6), Error::HpaOutOfRange { .. }));
    assert!(matches!(e(7), Error::IllegalFlags { .. }));
    assert!(matches!(e(8), Error::AlreadyMapped { .. }));
    assert!(matches!(e(9), Error::BadSize { .. }));
    assert!(matches!(e(11), Error::GpaOutOfRange { .. }));
    assert!(matches!(e(12), Error::HpaOutOfRange { .. }));
    assert!(matches!(e(13), Error::HpaOutOfRange { .. }));
    assert!(matches!(e(14), Error::MisalignedHpa { .. }));
    assert!(matches!(e(15), Error::NotMapped { .. }));
    assert!(matches!(e(18), Error::NotMapped { .. }));
    assert!(matches!(e(19), Error::IllegalFlags { .. }));
    assert!(matches!(e(20), Error::MisalignedHpa { .. }));
    assert!(matches!(e(23), Error::GpaOutOfRange { .. }));
}

#[test]
fn allocation_failure_during_a_split_changes_nothing() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(SIZE_1G), hpa(4 * SIZE_1G), SIZE_1G, RW, true)
        .unwrap()
        .ignore();
    let before = (leaves(&t), live_frames());
    // Splitting down to one 4 KiB page takes two tables; give one.
    set_budget(Some(1));
    let e = t.unmap_region(gpa(SIZE_1G + SIZE_4K), SIZE_4K).unwrap_err();
    set_budget(None);
    assert_eq!(e, Error::NoMemory);
    assert_eq!((leaves(&t), live_frames()), before);
}

/// Was: a batch of table A (VMID 1) merged into one of table B (VMID 2)
/// ran B's recipe only, then freed A's tables.
#[test]
fn batches_of_two_tables_do_not_merge() {
    reset(npt_tests::DEFAULT_BASE, npt_tests::DEFAULT_FRAMES);
    let p = |vmid| Stage2Params {
        vmid,
        ..Default::default()
    };
    let mut a = Table::<Stage2Ipa39>::try_new_with(p(1)).unwrap();
    let mut b = Table::<Stage2Ipa39>::try_new_with(p(2)).unwrap();
    for t in [&mut a, &mut b] {
        t.map(gpa(0), hpa(0), SIZE_4K, RW).unwrap().ignore();
    }
    let ta = a.unmap_region(gpa(0), SIZE_4K).unwrap();
    let mut tb = b.unmap_region(gpa(0), SIZE_4K).unwrap();
    assert_eq!(ta.tables_to_free(), 2);
    let back = tb.merge(ta).unwrap_err();
    assert_eq!(back.tables_to_free(), 2, "A's tables stay with A's batch");
    assert_eq!(back.context()[0], a.root_register());
    // Each runs its own VMID's recipe.
    let ra = npt_tests::record(back, 0);
    assert!(ra.events.contains(&npt::flush::Event::Switch(
        npt::flush::ContextRegister::VttbrEl2,
        a.root_register()
    )));
    let rb = npt_tests::record(tb, 0);
    assert!(!rb.events.contains(&npt::flush::Event::Switch(
        npt::flush::ContextRegister::VttbrEl2,
        a.root_register()
    )));
}

/// Was: more than 16 unlinked tables in a merged batch leaked the rest.
#[test]
fn merged_batches_free_all_their_tables() {
    let mut t = fresh::<Ept4>();
    map_gib_4k(&mut t);
    let mut all = t.unmap_region(gpa(SIZE_1G), SIZE_2M).unwrap();
    for k in 1..40 {
        let one = t.unmap_region(gpa(SIZE_1G + k * SIZE_2M), SIZE_2M).unwrap();
        all.merge(one).unwrap();
    }
    assert_eq!(all.tables_to_free(), 40);
    all.flush_with(&mut Recorder::default()).unwrap();
    assert_eq!(live_frames(), t.frames_used());
}

/// Was: a failed flush leaked the batch's unlinked tables.
#[test]
fn a_failed_flush_hands_the_batch_back_for_a_retry() {
    let mut t = fresh::<Stage2Ipa39>();
    map_gib_4k(&mut t);
    let tf = t.unmap_region(gpa(SIZE_1G), SIZE_1G).unwrap();
    // This x86 test host cannot run Arm TLBIs.
    let failed = tf.flush().unwrap_err();
    assert_eq!(failed.batch.tables_to_free(), 513);
    assert_eq!(live_frames(), 1 + 513, "nothing freed by the failed flush");
    failed.batch.flush_with(&mut Recorder::default()).unwrap();
    assert_eq!(live_frames(), 1);
}

/// Was: bits 0x40, 0x80, 0x1000 and 1 << 63 mapped as plain READ.
#[test]
fn unknown_mapping_flags_are_refused() {
    let mut t = fresh::<Ept4>();
    for bit in [0x40usize, 0x80, 0x1000, 1 << 63] {
        let flags = MF::from_bits_retain(MF::READ.bits() | bit);
        let e = t.map(gpa(0), hpa(0), SIZE_4K, flags).unwrap_err();
        assert!(matches!(e, Error::IllegalFlags { .. }), "{bit:#x}: {e:?}");
    }
    assert!(leaves(&t).is_empty());
    assert_eq!(live_frames(), 1);
}

/// A hypervisor with vCPUs on several CPUs: its executor runs the recipe
/// here, then must see every other CPU run it before the batch frees its
/// tables (`FlushExecutor::complete`).
#[test]
fn tables_are_freed_only_after_every_cpu_confirmed() {
    use npt::flush::{ContextRegister, FlushExecutor, Issued};
    use npt::FlushError;
    struct Smp {
        local: Vec<Issued>,
        remote_acks: Option<usize>,
        frames_at_complete: usize,
    }
    impl FlushExecutor for Smp {
        fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
            self.local.push(op);
            Ok(())
        }
        fn switch_context(
            &mut self,
            _: ContextRegister,
            _: u64,
        ) -> Result<Option<u64>, FlushError> {
            Ok(None)
        }
        fn restore_context(&mut self, _: ContextRegister, _: u64) -> Result<(), FlushError> {
            Ok(())
        }
        fn complete(&mut self) -> Result<(), FlushError> {
            // "IPI" the other CPU with the same instructions, wait for it.
            self.frames_at_complete = live_frames();
            match self.remote_acks {
                Some(_) => Ok(()),
                None => Err(FlushError::Unsupported(self.local[0].instr)),
            }
        }
    }
    let mut t = fresh::<Ept4>();
    t.map(gpa(0), hpa(0), SIZE_4K, RW).unwrap().ignore();
    let before = live_frames();
    let tf = t.unmap_region(gpa(0), SIZE_4K).unwrap();
    // A CPU that does not answer: nothing freed, the batch comes back.
    let mut smp = Smp {
        local: Vec::new(),
        remote_acks: None,
        frames_at_complete: 0,
    };
    let failed = tf.flush_with(&mut smp).unwrap_err();
    assert_eq!(live_frames(), before);
    // Retried once every CPU answers: freed after `complete`, not before.
    smp.remote_acks = Some(1);
    failed.batch.flush_with(&mut smp).unwrap();
    assert_eq!(smp.frames_at_complete, before, "still held during complete");
    assert_eq!(live_frames(), before - 3);
}
