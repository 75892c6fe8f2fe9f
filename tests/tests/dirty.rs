//! Dirty logging by write protection on every format: start, write faults,
//! harvest (get and clear), stop; checked against the truth of which pages
//! a simulated guest wrote, and property-tested over random rounds.

use npt::aarch64::Stage2Ipa39;
use npt::flush::{Recorder, Scope};
use npt::riscv::Sv39x4;
use npt::size::{SIZE_2M, SIZE_4K};
use npt::x86_64::{Ept4, Npt4};
use npt::{Error, Format, HugePages, MappingFlags as MF, WriteFault};
use npt_tests::model::{Rng, Source};
use npt_tests::{fresh, gpa, hpa, leaves, live_frames, set_budget, snapshot, Table, R, RW};
use std::collections::BTreeSet;

/// A guest write to `g`: through a writable entry it just happens (the
/// page is dirty in truth); otherwise the hypervisor's fault handler runs.
/// Returns whether the write went through.
fn guest_write<F: Format>(t: &mut Table<F>, g: usize, truth: &mut BTreeSet<usize>) -> bool {
    let q = t.query(gpa(g)).unwrap();
    if q.flags.contains(MF::WRITE) {
        truth.insert(g & !(SIZE_4K - 1));
        return true;
    }
    // The executor records the break-before-make of a split on Arm.
    match t
        .handle_write_fault_in(gpa(g), &mut Recorder::default())
        .unwrap()
    {
        WriteFault::Logged(tf) => {
            tf.flush_with(&mut Recorder::default()).unwrap();
            assert!(t.query(gpa(g)).unwrap().flags.contains(MF::WRITE));
            truth.insert(g & !(SIZE_4K - 1));
            true
        }
        WriteFault::NotLogged => false,
    }
}

fn harvest<F: Format>(t: &mut Table<F>, start: usize, size: usize) -> BTreeSet<usize> {
    let mut bitmap = vec![0u64; (size / SIZE_4K).div_ceil(64)];
    let tf = t.harvest_dirty(gpa(start), size, &mut bitmap).unwrap();
    tf.flush_with(&mut Recorder::default()).unwrap();
    (0..size / SIZE_4K)
        .filter(|i| bitmap[i / 64] >> (i % 64) & 1 == 1)
        .map(|i| start + i * SIZE_4K)
        .collect()
}

/// RAM at 2 MiB: a 2 MiB huge page, then 16 RW pages and one RO page.
fn two_rounds<F: Format>() {
    let mut t = fresh::<F>();
    let base = SIZE_2M;
    t.map_region(gpa(base), hpa(0x4000_0000), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    t.map_region(
        gpa(base + SIZE_2M),
        hpa(0x5000_0000),
        16 * SIZE_4K,
        RW,
        false,
    )
    .unwrap()
    .ignore();
    let ro = base + SIZE_2M + 16 * SIZE_4K;
    t.map(gpa(ro), hpa(0x6000_0000), SIZE_4K, R)
        .unwrap()
        .ignore();
    let size = SIZE_2M + 17 * SIZE_4K;
    let frames = live_frames();

    let tf = t
        .start_dirty_log_in(gpa(base), size, &mut Recorder::default())
        .unwrap();
    assert_ne!(tf.scope(), Scope::Nothing, "{}", F::NAME);
    tf.ignore();
    // The huge page was split (one table); every page is read-only now.
    assert_eq!(live_frames(), frames + 1, "{}", F::NAME);
    assert!(leaves(&t)
        .iter()
        .all(|l| l.size == SIZE_4K && !l.flags.contains(MF::WRITE)));
    // Translations did not move.
    assert_eq!(
        t.query(gpa(base + 0x12_3456)).unwrap().hpa,
        hpa(0x4012_3456)
    );

    let mut truth = BTreeSet::new();
    for round in 0..2 {
        let writes = [
            base + round * SIZE_4K,
            base + 0x10_0008,
            base + SIZE_2M + (3 + round) * SIZE_4K,
        ];
        for w in writes {
            assert!(guest_write(&mut t, w, &mut truth), "{}: {w:#x}", F::NAME);
            // A second write to a dirty page takes no fault.
            assert!(guest_write(&mut t, w + 8, &mut truth));
        }
        // The page the caller mapped read-only stays so: a real fault.
        assert!(!guest_write(&mut t, ro, &mut truth), "{}", F::NAME);
        assert!(!t.query(gpa(ro)).unwrap().flags.contains(MF::WRITE));
        let got = harvest(&mut t, base, size);
        assert_eq!(got, truth, "{}: round {round}", F::NAME);
        truth.clear();
        // Re-armed: nothing dirty until written again.
        assert!(harvest(&mut t, base, size).is_empty());
    }
    t.stop_dirty_log(gpa(base), size).unwrap().ignore();
    assert!(leaves(&t)
        .iter()
        .all(|l| l.flags.contains(MF::WRITE) == (l.gpa != gpa(ro))));
    // Unmarked: a fault now is not logging's.
    t.protect(gpa(base), R).unwrap().ignore();
    assert!(matches!(
        t.handle_write_fault(gpa(base)).unwrap(),
        WriteFault::NotLogged
    ));
    // And collapse rebuilds the 2 MiB page once the first page is RW again.
    t.protect(gpa(base), RW).unwrap().ignore();
    t.collapse_region_in(gpa(base), SIZE_2M, &mut Recorder::default())
        .unwrap()
        .ignore();
    assert_eq!(t.query(gpa(base)).unwrap().size, SIZE_2M, "{}", F::NAME);
}

#[test]
fn two_rounds_ept4() {
    two_rounds::<Ept4>();
}

#[test]
fn two_rounds_npt4() {
    two_rounds::<Npt4>();
}

#[test]
fn two_rounds_stage2() {
    two_rounds::<Stage2Ipa39>();
}

#[test]
fn two_rounds_sv39x4() {
    two_rounds::<Sv39x4>();
}

#[test]
fn protecting_a_logged_page_read_only_ends_its_logging() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(0), hpa(0), 4 * SIZE_4K, RW, false)
        .unwrap()
        .ignore();
    t.start_dirty_log_in(gpa(0), 4 * SIZE_4K, &mut Recorder::default())
        .unwrap()
        .ignore();
    t.protect(gpa(SIZE_4K), R).unwrap().ignore();
    // Never made writable by a fault again.
    assert!(matches!(
        t.handle_write_fault(gpa(SIZE_4K)).unwrap(),
        WriteFault::NotLogged
    ));
    assert!(!t.query(gpa(SIZE_4K)).unwrap().flags.contains(MF::WRITE));
}

#[test]
fn bad_input() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(0), hpa(0), 128 * SIZE_4K, RW, false)
        .unwrap()
        .ignore();
    let mut small = [0u64; 1];
    assert_eq!(
        t.harvest_dirty(gpa(0), 128 * SIZE_4K, &mut small).err(),
        Some(Error::BitmapTooSmall { pages: 128 })
    );
    assert_eq!(
        t.handle_write_fault(gpa(SIZE_2M)).err(),
        Some(Error::NotMapped { gpa: gpa(SIZE_2M) })
    );
    assert!(matches!(
        t.handle_write_fault(gpa(usize::MAX)).err(),
        Some(Error::GpaOutOfRange { .. })
    ));
}

/// Random writes and harvests over a mix of huge and small, RW and RO
/// pages never lose or invent a dirty page.
fn random_rounds<F: Format>(seed: u64, huge: HugePages) {
    let mut t = fresh::<F>();
    let base = 0x40_0000;
    let size = 4 * SIZE_2M;
    t.map_region(gpa(base), hpa(0x8000_0000), 2 * SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    t.map_region(gpa(base + 2 * SIZE_2M), hpa(0x9000_0000), SIZE_2M, R, true)
        .unwrap()
        .ignore();
    t.map_region(
        gpa(base + 3 * SIZE_2M),
        hpa(0xa000_0000),
        SIZE_2M,
        RW,
        false,
    )
    .unwrap()
    .ignore();
    t.start_dirty_log_with(gpa(base), size, huge, &mut Recorder::default())
        .unwrap()
        .ignore();
    let mut rng = Rng(seed);
    let mut truth = BTreeSet::new();
    for _ in 0..400 {
        if rng.below(10) == 0 {
            // Harvest a random sub-range; the truth outside it stays.
            let first = rng.below(size / SIZE_4K);
            let n = 1 + rng.below(size / SIZE_4K - first);
            let (s, len) = (base + first * SIZE_4K, n * SIZE_4K);
            let got = harvest(&mut t, s, len);
            let want: BTreeSet<usize> = truth.range(s..s + len).copied().collect();
            assert_eq!(got, want, "{}", F::NAME);
            truth.retain(|p| !(s..s + len).contains(p));
        } else {
            let g = base + rng.below(size / 8) * 8;
            let ro = (base + 2 * SIZE_2M..base + 3 * SIZE_2M).contains(&g);
            assert_eq!(
                guest_write(&mut t, g, &mut truth),
                !ro,
                "{}: {g:#x}",
                F::NAME
            );
        }
    }
    assert_eq!(harvest(&mut t, base, size), truth);
}

#[test]
fn random_rounds_every_format() {
    for seed in 1..6 {
        for huge in [HugePages::SplitNow, HugePages::SplitOnFault] {
            random_rounds::<Ept4>(seed, huge);
            random_rounds::<Npt4>(seed, huge);
            random_rounds::<Stage2Ipa39>(seed, huge);
            random_rounds::<Sv39x4>(seed, huge);
        }
    }
}

/// Splitting on the first write fault (`HugePages::SplitOnFault`): the
/// 2 MiB page stays one leaf, write-protected, when logging starts; the
/// first write in it splits it (Arm: break-before-make on the handler's
/// executor, which sees the TLBI of the old block), only the faulting page
/// becomes writable, and the harvest finds exactly what was written. A
/// huge page never written stays huge; one only partly inside the range
/// is split at the start. A split the allocator cannot serve is refused
/// with `NoMemory` and changes nothing.
fn split_on_fault<F: Format>() {
    let mut t = fresh::<F>();
    let base = SIZE_2M;
    // Three 2 MiB pages: the first two logged whole, the third cut by the
    // range's end.
    t.map_region(gpa(base), hpa(0x4000_0000), 3 * SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    let size = 2 * SIZE_2M + 0x1000;
    let frames = live_frames();
    let tf = t
        .start_dirty_log_with(
            gpa(base),
            size,
            HugePages::SplitOnFault,
            &mut Recorder::default(),
        )
        .unwrap();
    tf.ignore();
    // Only the cut one was split (one table).
    assert_eq!(live_frames(), frames + 1, "{}", F::NAME);
    let huge: Vec<_> = leaves(&t)
        .into_iter()
        .filter(|l| l.size == SIZE_2M)
        .collect();
    assert_eq!(huge.len(), 2, "{}", F::NAME);
    assert!(huge.iter().all(|l| !l.flags.contains(MF::WRITE)));

    // No memory for the split: refused, nothing changed.
    let before = snapshot(&t);
    set_budget(Some(0));
    let r = t.handle_write_fault_in(gpa(base + 0x5008), &mut Recorder::default());
    set_budget(None);
    assert_eq!(r.err(), Some(Error::NoMemory), "{}", F::NAME);
    assert_eq!(snapshot(&t), before, "{}", F::NAME);

    let mut truth = BTreeSet::new();
    let mut rec = Recorder::default();
    match t
        .handle_write_fault_in(gpa(base + 0x5008), &mut rec)
        .unwrap()
    {
        WriteFault::Logged(tf) => tf.flush_with(&mut Recorder::default()).unwrap(),
        WriteFault::NotLogged => panic!("{}: not a logging fault", F::NAME),
    }
    truth.insert(base + 0x5000);
    // Break-before-make runs its invalidation during the split; x86 and
    // RISC-V replace the leaf in place and leave it to the batch.
    assert_eq!(
        !rec.events.is_empty(),
        F::FLUSH.split_break_before_make,
        "{}",
        F::NAME
    );
    assert_eq!(live_frames(), frames + 2, "{}", F::NAME);
    let first: Vec<_> = leaves(&t)
        .into_iter()
        .filter(|l| (base..base + SIZE_2M).contains(&l.gpa.as_usize()))
        .collect();
    assert_eq!(first.len(), 512);
    assert!(first
        .iter()
        .all(|l| l.flags.contains(MF::WRITE) == (l.gpa == gpa(base + 0x5000))));
    assert_eq!(
        t.query(gpa(base + 0x12_3456)).unwrap().hpa,
        hpa(0x4012_3456)
    );
    // More writes: in the split page, and in the cut (already split) one.
    for g in [base + 0x1f_f000, base + 2 * SIZE_2M] {
        assert!(guest_write(&mut t, g, &mut truth), "{}: {g:#x}", F::NAME);
    }
    assert_eq!(harvest(&mut t, base, size), truth, "{}", F::NAME);
    // The second 2 MiB page was never written: still one leaf.
    assert_eq!(
        t.query(gpa(base + SIZE_2M)).unwrap().size,
        SIZE_2M,
        "{}",
        F::NAME
    );
    assert!(harvest(&mut t, base, size).is_empty());
    // Stop makes everything writable again, the huge page included.
    t.stop_dirty_log(gpa(base), size).unwrap().ignore();
    assert!(
        leaves(&t).iter().all(|l| l.flags.contains(MF::WRITE)),
        "{}",
        F::NAME
    );
}

#[test]
fn split_on_fault_every_format() {
    split_on_fault::<Ept4>();
    split_on_fault::<Npt4>();
    split_on_fault::<Stage2Ipa39>();
    split_on_fault::<Sv39x4>();
}

/// The fault handler's batch: empty on EPT, whose violation already
/// dropped the faulting translation (SDM Vol. 3C §29.4.3.1, the spec's
/// `fault_invalidates`); the faulting page elsewhere (Arm may cache the
/// entry that faulted, RISC-V and AMD are not promised otherwise).
fn handler_batch<F: Format>(want_pages: usize) {
    let mut t = fresh::<F>();
    t.map_region(gpa(0x20_0000), hpa(0x4000_0000), 16 * SIZE_4K, RW, false)
        .unwrap()
        .ignore();
    t.start_dirty_log_in(gpa(0x20_0000), 16 * SIZE_4K, &mut Recorder::default())
        .unwrap()
        .ignore();
    match t.handle_write_fault(gpa(0x20_3008)).unwrap() {
        WriteFault::Logged(tf) => {
            assert_eq!(tf.page_count(), want_pages, "{}", F::NAME);
            tf.flush_with(&mut Recorder::default()).unwrap();
        }
        WriteFault::NotLogged => panic!("{}", F::NAME),
    }
    assert!(t.query(gpa(0x20_3000)).unwrap().flags.contains(MF::WRITE));
}

#[test]
fn fault_handler_invalidates_only_where_needed() {
    handler_batch::<Ept4>(0);
    handler_batch::<Npt4>(1);
    handler_batch::<Stage2Ipa39>(1);
    handler_batch::<Sv39x4>(1);
}
