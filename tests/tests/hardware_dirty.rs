//! Dirty logging and access tracking by the CPU's own accessed and dirty
//! bits (the spec's `hardware_dirty`: EPT with `ad`, SDM Vol. 3C §29.3.5;
//! AMD NPT, APM Vol. 2 §15.25.5; RISC-V with Svadu's menvcfg.ADUE, the
//! `adue` param). The tests play the CPU: a guest write through a writable
//! leaf sets its A and D bits, a read sets A (EPT: bits 8 and 9; NPT: bits
//! 5 and 6; RISC-V: bits 6 and 7), as the manuals say the walker does. npt
//! then test-and-clears them; checked against the truth of which pages
//! were written or used, including a random property test. (RISC-V leaves
//! are written with A and D set, so a Svade hart never faults on them:
//! the tests clear them once before they count.) Arm with FEAT_HAFDBS
//! (the `hafdbs` param, VTCR_EL2.HA/HD; Arm ARM D8.5) keeps the dirty
//! state in the write permission: npt makes a logged leaf writable-clean
//! (DBM, bit 51, set; S2AP[1], bit 7, clear) and the CPU's first write
//! sets S2AP[1]; a use sets AF (bit 10).

use npt::aarch64::{Stage2Ipa39, Stage2Params};
use npt::flush::{Recorder, Scope};
use npt::riscv::{Sv39x4, Sv39x4Params};
use npt::size::{SIZE_2M, SIZE_4K};
use npt::x86_64::{Ept4, Ept4Params, Npt4};
use npt::{Error, Format};
use npt_tests::model::{Rng, Source};
use npt_tests::{fresh, fresh_with, gpa, hpa, leaf_slot, leaves, read_phys, snapshot, write_phys};
use npt_tests::{Table, R, RW};
use std::collections::BTreeSet;

/// EPT with EPTP bit 6, the only way its CPU sets A/D.
fn ept_ad() -> Table<Ept4> {
    fresh_with::<Ept4>(Ept4Params {
        ad: 1,
        execute_only: 0,
        pa_bits: 52,
    })
}

/// Sv39x4 on a hart whose M-mode set menvcfg.ADUE.
fn sv39x4_adue() -> Table<Sv39x4> {
    fresh_with::<Sv39x4>(Sv39x4Params { vmid: 1, adue: 1 })
}

/// Stage2Ipa39 with FEAT_HAFDBS on.
fn stage2_hafdbs() -> Table<Stage2Ipa39> {
    fresh_with::<Stage2Ipa39>(Stage2Params {
        vmid: 1,
        pa_bits: 48,
        hafdbs: 1,
    })
}

/// Arm's DBM (bit 51): a logged, writable-clean leaf.
const DBM: u64 = 1 << 51;

/// (accessed, dirty) bits, from the manuals (not from npt's layout); on
/// Arm "dirty" is S2AP[1], the write permission the CPU grants.
fn ad_bits<F: Format>() -> (u64, u64) {
    match F::NAME {
        "Stage2Ipa39" => (1 << 10, 1 << 7),
        "Ept4" => (1 << 8, 1 << 9),
        "Npt4" => (1 << 5, 1 << 6),
        "Sv39x4" => (1 << 6, 1 << 7),
        other => panic!("{other} has no hardware A/D"),
    }
}

/// The CPU's access to `g`: A always, D on a write. A write through a
/// leaf without write permission would fault instead: the caller checks.
fn cpu_access<F: Format>(t: &Table<F>, g: usize, write: bool) {
    let (a, d) = ad_bits::<F>();
    let slot = leaf_slot(t, g);
    let set = if write { a | d } else { a };
    write_phys(slot, read_phys(slot) | set);
}

fn bits_to_pages(bitmap: &[u64], start: usize, size: usize) -> BTreeSet<usize> {
    (0..size / SIZE_4K)
        .filter(|i| bitmap[i / 64] >> (i % 64) & 1 == 1)
        .map(|i| start + i * SIZE_4K)
        .collect()
}

/// Harvests `start..start + size`; returns the pages and how many pages
/// the batch invalidates.
fn harvest<F: Format>(t: &mut Table<F>, start: usize, size: usize) -> (BTreeSet<usize>, usize) {
    let mut bitmap = vec![0u64; (size / SIZE_4K).div_ceil(64)];
    let tf = t
        .harvest_hardware_dirty(gpa(start), size, &mut bitmap)
        .unwrap();
    let n = tf.page_count();
    tf.flush_with(&mut Recorder::default()).unwrap();
    (bits_to_pages(&bitmap, start, size), n)
}

/// A 2 MiB RW huge page at 2 MiB, 16 RW pages at 4 MiB, one RO page after.
fn layout<F: Format>(t: &mut Table<F>) {
    t.map_region(gpa(SIZE_2M), hpa(0x4000_0000), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    t.map_region(gpa(2 * SIZE_2M), hpa(0x5000_0000), 16 * SIZE_4K, RW, false)
        .unwrap()
        .ignore();
    t.map(
        gpa(2 * SIZE_2M + 16 * SIZE_4K),
        hpa(0x6000_0000),
        SIZE_4K,
        R,
    )
    .unwrap()
    .ignore();
}

fn two_rounds<F: Format>(mut t: Table<F>) {
    assert!(t.hardware_dirty());
    let (_, d) = ad_bits::<F>();
    layout(&mut t);
    let (start, size) = (SIZE_2M, 2 * SIZE_2M);
    // The walker already set D on some pages before logging starts.
    cpu_access(&t, SIZE_2M + 0x3000, true);
    cpu_access(&t, 2 * SIZE_2M + 0x1000, true);
    let tf = t
        .start_hardware_dirty_log_in(gpa(start), size, &mut Recorder::default())
        .unwrap();
    // The huge page was split (x86: in place, its old leaf invalidated)
    // and the two dirty leaves cleared: something to invalidate.
    assert_ne!(tf.scope(), Scope::Nothing);
    tf.flush_with(&mut Recorder::default()).unwrap();
    assert_eq!(leaves(&t).len(), 512 + 16 + 1);
    assert!(
        leaves(&t)
            .iter()
            .all(|l| l.raw & d == 0 || !l.flags.contains(npt::MappingFlags::WRITE)),
        "{}",
        F::NAME
    );
    if F::NAME == "Stage2Ipa39" {
        // Writable-clean: DBM set and write permission gone, but for the
        // read-only page, which is left alone.
        let ro = 2 * SIZE_2M + 16 * SIZE_4K;
        assert!(leaves(&t)
            .iter()
            .all(|l| (l.raw & DBM != 0) == (l.gpa != gpa(ro)) && l.raw & d == 0));
    }

    for pages in [[1usize, 5, 0x100, 0x203], [2, 5, 0x1ff, 0x20f]] {
        let mut truth = BTreeSet::new();
        for &pg in &pages {
            let g = start + pg * SIZE_4K;
            cpu_access(&t, g + 0x40, true);
            truth.insert(g);
        }
        // Reads set only A: not dirty.
        cpu_access(&t, start + 7 * SIZE_4K, false);
        let (got, invalidated) = harvest(&mut t, start, size);
        assert_eq!(got, truth, "{}", F::NAME);
        // One invalidation per page whose D was cleared, none for clean ones.
        assert_eq!(invalidated, pages.len(), "{}", F::NAME);
        // Cleared: a second harvest finds nothing and invalidates nothing.
        let (again, n) = harvest(&mut t, start, size);
        assert!(again.is_empty() && n == 0, "{}: {again:x?}", F::NAME);
    }
    // A read-only page is never reported (its D cannot come from a write).
    let ro = 2 * SIZE_2M + 16 * SIZE_4K;
    write_phys(leaf_slot(&t, ro), read_phys(leaf_slot(&t, ro)) | d);
    assert!(harvest(&mut t, start, size).0.is_empty());
    // Write protection is not involved: no logging faults.
    assert!(matches!(
        t.handle_write_fault(gpa(start + 0x5000)),
        Ok(npt::WriteFault::NotLogged)
    ));
}

#[test]
fn two_rounds_ept4() {
    two_rounds(ept_ad());
}

#[test]
fn two_rounds_npt4() {
    two_rounds(fresh::<Npt4>());
}

#[test]
fn two_rounds_sv39x4() {
    two_rounds(sv39x4_adue());
}

#[test]
fn two_rounds_stage2_hafdbs() {
    two_rounds(stage2_hafdbs());
}

/// Stopping gives logged leaves back what logging took: on Arm the write
/// permission (DBM cleared), with a dirty bit nothing (an empty batch).
fn stop<F: Format>(mut t: Table<F>) {
    layout(&mut t);
    let (start, size) = (SIZE_2M, 2 * SIZE_2M);
    t.start_hardware_dirty_log_in(gpa(start), size, &mut Recorder::default())
        .unwrap()
        .ignore();
    let tf = t.stop_hardware_dirty_log(gpa(start), size).unwrap();
    let ro = 2 * SIZE_2M + 16 * SIZE_4K;
    if F::LAYOUT.hw_clean != 0 {
        // 528 pages relaxed: over Arm's page limit (512), one context-wide
        // invalidation.
        assert_eq!(tf.scope(), Scope::Context);
        assert!(leaves(&t).iter().all(|l| l.raw & DBM == 0
            && l.flags.contains(npt::MappingFlags::WRITE) == (l.gpa != gpa(ro))));
    } else {
        assert_eq!(tf.scope(), Scope::Nothing);
    }
    tf.flush_with(&mut Recorder::default()).unwrap();
}

#[test]
fn stop_gives_back_write_permission() {
    stop(stage2_hafdbs());
    stop(ept_ad());
}

/// A huge leaf only partly inside the range is reported for its part and
/// keeps its dirty bit, so a later harvest of the rest still sees it.
fn partial_huge<F: Format>(mut t: Table<F>) {
    let (_, d) = ad_bits::<F>();
    t.map_region(gpa(SIZE_2M), hpa(0x4000_0000), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    cpu_access(&t, SIZE_2M + 0x10_0000, true);
    let (got, n) = harvest(&mut t, SIZE_2M, 2 * SIZE_4K);
    assert_eq!(got, BTreeSet::from([SIZE_2M, SIZE_2M + SIZE_4K]));
    assert_eq!(n, 0);
    assert_ne!(read_phys(leaf_slot(&t, SIZE_2M)) & d, 0);
    let (got, n) = harvest(&mut t, SIZE_2M, SIZE_2M);
    assert_eq!(got.len(), 512);
    assert_eq!(n, 1);
    assert_eq!(read_phys(leaf_slot(&t, SIZE_2M)) & d, 0);
}

#[test]
fn partial_huge_pages_are_kept() {
    partial_huge(ept_ad());
    partial_huge(fresh::<Npt4>());
    partial_huge(sv39x4_adue());
}

/// `test_and_clear_young`: pages used (read or written, RO pages too)
/// since the last call, whole huge leaves reported page by page.
fn young<F: Format>(mut t: Table<F>) {
    let (a, _) = ad_bits::<F>();
    layout(&mut t);
    let (start, size) = (SIZE_2M, 2 * SIZE_2M);
    let ro = 2 * SIZE_2M + 16 * SIZE_4K;
    // Start from nothing young (RISC-V leaves are written with A set).
    let mut bitmap = vec![0u64; (size / SIZE_4K).div_ceil(64)];
    t.test_and_clear_young(gpa(start), size, &mut bitmap)
        .unwrap()
        .ignore();
    cpu_access(&t, 2 * SIZE_2M + 3 * SIZE_4K, false);
    cpu_access(&t, ro, false);
    cpu_access(&t, SIZE_2M + 0x1234, true);
    let mut bitmap = vec![0u64; (size / SIZE_4K).div_ceil(64)];
    let tf = t
        .test_and_clear_young(gpa(start), size, &mut bitmap)
        .unwrap();
    assert_eq!(tf.page_count(), 3);
    tf.flush_with(&mut Recorder::default()).unwrap();
    let got = bits_to_pages(&bitmap, start, size);
    let mut want: BTreeSet<usize> = (0..512).map(|i| SIZE_2M + i * SIZE_4K).collect();
    want.insert(2 * SIZE_2M + 3 * SIZE_4K);
    want.insert(ro);
    assert_eq!(got, want, "{}", F::NAME);
    assert!(leaves(&t).iter().all(|l| l.raw & a == 0));
    let tf = t
        .test_and_clear_young(gpa(start), size, &mut bitmap)
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert!(bitmap.iter().all(|w| *w == 0));
}

#[test]
fn young_pages() {
    young(ept_ad());
    young(fresh::<Npt4>());
    young(sv39x4_adue());
    young(stage2_hafdbs());
}

/// Where the CPU sets no A/D bits (EPT without `ad`, Arm stage 2 and
/// RISC-V here), every call is refused and changes nothing.
fn refused<F: Format>(mut t: Table<F>) {
    layout(&mut t);
    assert!(!t.hardware_dirty());
    let before = snapshot(&t);
    let mut bitmap = [0u64; 16];
    let size = 2 * SIZE_2M;
    assert_eq!(
        t.start_hardware_dirty_log_in(gpa(SIZE_2M), size, &mut Recorder::default())
            .err(),
        Some(Error::NoHardwareDirty)
    );
    assert_eq!(
        t.harvest_hardware_dirty(gpa(SIZE_2M), size, &mut bitmap)
            .err(),
        Some(Error::NoHardwareDirty)
    );
    assert_eq!(
        t.test_and_clear_young(gpa(SIZE_2M), size, &mut bitmap)
            .err(),
        Some(Error::NoHardwareDirty)
    );
    assert_eq!(snapshot(&t), before, "{}", F::NAME);
}

#[test]
fn refused_without_hardware_bits() {
    refused(fresh::<Ept4>());
    // Without FEAT_HAFDBS (the default `hafdbs: 0`).
    refused(fresh::<Stage2Ipa39>());
    refused(fresh::<Sv39x4>());
}

#[test]
fn bad_input() {
    let mut t = ept_ad();
    layout(&mut t);
    let mut small = [0u64; 1];
    assert_eq!(
        t.harvest_hardware_dirty(gpa(SIZE_2M), SIZE_2M, &mut small)
            .err(),
        Some(Error::BitmapTooSmall { pages: 512 })
    );
    assert!(matches!(
        t.test_and_clear_young(gpa(SIZE_2M + 1), SIZE_4K, &mut small),
        Err(Error::MisalignedGpa { .. })
    ));
    assert!(matches!(
        t.harvest_hardware_dirty(gpa(1 << 48), SIZE_4K, &mut small),
        Err(Error::GpaOutOfRange { .. })
    ));
}

/// Random CPU writes and reads and harvests of random sub-ranges over huge
/// and small, RW and RO pages never lose or invent a dirty page (oracle:
/// the set of pages written since each was last harvested).
fn random_rounds<F: Format>(mut t: Table<F>, seed: u64) {
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
    // Logging on the first huge page and the small pages; the second
    // huge page stays whole (its D covers all of it).
    t.start_hardware_dirty_log_in(gpa(base), SIZE_2M, &mut Recorder::default())
        .unwrap()
        .ignore();
    t.start_hardware_dirty_log_in(gpa(base + 3 * SIZE_2M), SIZE_2M, &mut Recorder::default())
        .unwrap()
        .ignore();
    let huge = base + SIZE_2M..base + 2 * SIZE_2M;
    let ro = base + 2 * SIZE_2M..base + 3 * SIZE_2M;
    // Nothing dirty to begin with (RISC-V leaves are written with D set).
    harvest(&mut t, base, size);
    let mut rng = Rng(seed);
    let mut truth = BTreeSet::new();
    for _ in 0..400 {
        if rng.below(8) == 0 {
            let first = rng.below(size / SIZE_4K);
            let n = 1 + rng.below(size / SIZE_4K - first);
            let (s, len) = (base + first * SIZE_4K, n * SIZE_4K);
            let (got, _) = harvest(&mut t, s, len);
            let want: BTreeSet<usize> = truth.range(s..s + len).copied().collect();
            assert_eq!(got, want, "{} seed {seed}", F::NAME);
            // A harvest that covers the whole huge page clears it; one that
            // cuts it leaves its pages dirty (reported again later).
            let covers_huge = s <= huge.start && s + len >= huge.end;
            truth.retain(|p| !(s..s + len).contains(p) || (huge.contains(p) && !covers_huge));
        } else {
            let g = base + rng.below(size / SIZE_4K) * SIZE_4K;
            let write = rng.below(2) == 0 && !ro.contains(&g);
            cpu_access(&t, g, write);
            // Arm logs only the leaves npt made writable-clean: the huge
            // page outside the logged ranges is not tracked.
            if write && !(F::LAYOUT.hw_clean != 0 && huge.contains(&g)) {
                if huge.contains(&g) {
                    // One D bit for the whole 2 MiB leaf.
                    truth.extend(huge.clone().step_by(SIZE_4K));
                } else {
                    truth.insert(g);
                }
            }
        }
    }
    assert_eq!(harvest(&mut t, base, size).0, truth);
}

#[test]
fn random_rounds_hardware() {
    for seed in 1..8 {
        random_rounds(ept_ad(), seed);
        random_rounds(fresh::<Npt4>(), seed);
        random_rounds(sv39x4_adue(), seed);
        random_rounds(stage2_hafdbs(), seed);
    }
}
