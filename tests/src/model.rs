//! The model the engine is checked against: a map from each 4 KiB guest
//! page to its host page and flags, which pages dirty logging write-protects
//! and which it has seen written, random (or fuzzer-chosen) sequences of
//! operations, and the outcome each must have. After every step the
//! table's leaves must equal the model (a logged, clean page reads without
//! WRITE) and the table must hold exactly the frames its leaves need.

use crate::{fresh, gpa, hpa, leaves, live_frames, Table, R, RW, RWX, RX};
use npt::flush::Recorder;
use npt::size::{SIZE_2M, SIZE_4K};
use npt::{Error, Format, HugePages, Leaf, MappingFlags as MF, WriteFault};
use std::collections::BTreeMap;

/// A combination no format maps (two memory types at once).
pub const BOTH_MEMTYPES_ILLEGAL: MF = RW.union(MF::DEVICE).union(MF::UNCACHED);

/// Flags each format can map, for the model test and the fuzzer.
pub const EPT_LEGAL: [MF; 6] = [R, RW, RX, RWX, R.union(MF::DEVICE), RW.union(MF::UNCACHED)];
/// Stage 2 also encodes write-only and no-access leaves.
pub const STAGE2_LEGAL: [MF; 8] = [
    R,
    RW,
    RX,
    RWX,
    MF::WRITE,
    MF::empty(),
    R.union(MF::DEVICE),
    RW.union(MF::UNCACHED),
];
/// Sv39x4 also encodes execute-only leaves.
pub const SV39X4_LEGAL: [MF; 7] = [
    R,
    RW,
    MF::EXECUTE,
    RX,
    RWX,
    R.union(MF::DEVICE),
    RW.union(MF::UNCACHED),
];

/// Where the choices of an operation sequence come from.
pub trait Source {
    /// A number below `n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize;
    /// Whether the source has run dry (a fuzzer's input).
    fn exhausted(&self) -> bool {
        false
    }
}

/// xorshift64: deterministic, so a failure replays.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

impl Source for Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A fuzzer's input, two bytes a choice; zeros once it is used up.
pub struct Bytes<'a>(pub &'a [u8]);

impl Source for Bytes<'_> {
    fn below(&mut self, n: usize) -> usize {
        let (v, rest) = match self.0 {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
            _ => (0, &[][..]),
        };
        self.0 = rest;
        v % n
    }
    fn exhausted(&self) -> bool {
        self.0.len() < 2
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Map {
        gpa: usize,
        hpa: usize,
        size: usize,
        flags: MF,
        huge: bool,
    },
    Unmap {
        gpa: usize,
        size: usize,
    },
    Protect {
        gpa: usize,
        size: usize,
        flags: MF,
    },
    /// `map_region_with`: page `k` of the range to `hpa + stride * k` (a
    /// stride of 4K is contiguous, so huge pages can appear).
    MapScattered {
        gpa: usize,
        hpa: usize,
        stride: usize,
        size: usize,
        flags: MF,
        huge: bool,
    },
    /// `collapse_region_in`: no translation changes.
    Collapse {
        gpa: usize,
        size: usize,
    },
    /// `query` of one address.
    Query {
        gpa: usize,
    },
    /// `start_dirty_log_with`, huge pages split now or on their first fault.
    StartLog {
        gpa: usize,
        size: usize,
        lazy: bool,
    },
    /// A guest write at `gpa`: through a writable entry nothing happens;
    /// otherwise the hypervisor calls `handle_write_fault_in`.
    GuestWrite {
        gpa: usize,
    },
    /// `harvest_dirty`: the dirty pages of the range, re-armed.
    Harvest {
        gpa: usize,
        size: usize,
    },
    /// `stop_dirty_log`.
    StopLog {
        gpa: usize,
        size: usize,
    },
}

/// 4K page -> (hpa, flags).
pub type Model = BTreeMap<usize, (usize, MF)>;

/// 4K page -> dirty, for the pages dirty logging write-protects (clean:
/// the table reads them without WRITE) or has seen written (dirty).
pub type Log = BTreeMap<usize, bool>;

/// What an operation gave, beyond success.
#[derive(Debug, PartialEq)]
enum Outcome {
    Done,
    /// A guest write went through without a fault.
    NoFault,
    /// A guest write faulted and the handler said so.
    Fault(bool),
    /// The pages a harvest reported.
    Harvested(Vec<usize>),
}

/// The flags the table shows for a page: without WRITE while logging
/// keeps it clean.
fn visible(flags: MF, log: &Log, page: usize) -> MF {
    if log.get(&page) == Some(&false) {
        flags - MF::WRITE
    } else {
        flags
    }
}

const WINDOW: usize = 64 << 20;
const PAGES: usize = WINDOW / SIZE_4K;

fn clip(gpa: usize, size: usize) -> usize {
    size.min(WINDOW - gpa)
}

/// A range to unmap or protect: usually a run of existing leaves (which
/// may have holes between them), sometimes anything.
fn pick_range(rng: &mut impl Source, leaves: &[Leaf]) -> (usize, usize) {
    if !leaves.is_empty() && rng.below(3) != 0 {
        let i = rng.below(leaves.len());
        let j = (i + rng.below(4)).min(leaves.len() - 1);
        let start = leaves[i].gpa.as_usize();
        let end = leaves[j].gpa.as_usize() + leaves[j].size;
        (start, end - start)
    } else {
        let gpa = rng.below(PAGES) * SIZE_4K;
        (gpa, clip(gpa, (1 + rng.below(64)) * SIZE_4K))
    }
}

fn pick_flags(rng: &mut impl Source, legal: &[MF], illegal: MF) -> MF {
    if rng.below(20) == 0 {
        illegal
    } else {
        legal[rng.below(legal.len())]
    }
}

fn gen_op(rng: &mut impl Source, leaves: &[Leaf], legal: &[MF], illegal: MF) -> Op {
    let r = rng.below(100);
    if r >= 80 {
        // Dirty logging: 20 in 100.
        return match r {
            80..=84 => {
                let (gpa, size) = pick_range(rng, leaves);
                Op::StartLog {
                    gpa,
                    size,
                    lazy: rng.below(2) == 0,
                }
            }
            85..=95 => {
                // Mostly where a write faults: a leaf that reads without
                // WRITE (logged and clean, or mapped read-only).
                let ro: Vec<&Leaf> = leaves
                    .iter()
                    .filter(|l| !l.flags.contains(MF::WRITE))
                    .collect();
                let gpa = if !ro.is_empty() && rng.below(3) != 0 {
                    let l = ro[rng.below(ro.len())];
                    l.gpa.as_usize() + rng.below(l.size / 8) * 8
                } else if !leaves.is_empty() && rng.below(2) != 0 {
                    let l = &leaves[rng.below(leaves.len())];
                    l.gpa.as_usize() + rng.below(l.size / 8) * 8
                } else {
                    rng.below(WINDOW / 8) * 8
                };
                Op::GuestWrite { gpa }
            }
            96..=98 => {
                let (gpa, size) = pick_range(rng, leaves);
                Op::Harvest { gpa, size }
            }
            _ => {
                let (gpa, size) = pick_range(rng, leaves);
                Op::StopLog { gpa, size }
            }
        };
    }
    let r = r * 100 / 80;
    if r < 45 {
        let flags = pick_flags(rng, legal, illegal);
        if rng.below(10) < 3 {
            // 2M-aligned on both sides: huge leaves appear.
            let gpa = rng.below(WINDOW / SIZE_2M) * SIZE_2M;
            let size = clip(gpa, (1 + rng.below(2)) * SIZE_2M);
            let hpa = 0x1_0000_0000 + rng.below(64) * SIZE_2M;
            let huge = rng.below(4) != 0;
            Op::Map {
                gpa,
                hpa,
                size,
                flags,
                huge,
            }
        } else {
            let max = if rng.below(4) == 0 { 1024 } else { 16 };
            let gpa = rng.below(PAGES) * SIZE_4K;
            let size = clip(gpa, (1 + rng.below(max)) * SIZE_4K);
            let hpa = 0x2_0000_0000 + rng.below(1 << 16) * SIZE_4K;
            Op::Map {
                gpa,
                hpa,
                size,
                flags,
                huge: rng.below(2) == 0,
            }
        }
    } else if r < 52 {
        let flags = pick_flags(rng, legal, illegal);
        let gpa = rng.below(PAGES) * SIZE_4K;
        let size = clip(gpa, (1 + rng.below(600)) * SIZE_4K);
        let stride = [SIZE_4K, 2 * SIZE_4K, 3 * SIZE_4K][rng.below(3)];
        Op::MapScattered {
            gpa,
            hpa: 0x3_0000_0000 + rng.below(1 << 10) * SIZE_2M,
            stride,
            size,
            flags,
            // A huge page stands for contiguous frames: only with stride 4K.
            huge: stride == SIZE_4K && rng.below(2) == 0,
        }
    } else if r < 56 {
        let (gpa, size) = pick_range(rng, leaves);
        Op::Collapse { gpa, size }
    } else if r < 62 {
        Op::Query {
            gpa: rng.below(WINDOW),
        }
    } else if r < 82 {
        let (gpa, size) = pick_range(rng, leaves);
        Op::Unmap { gpa, size }
    } else {
        let (gpa, size) = pick_range(rng, leaves);
        let flags = pick_flags(rng, legal, illegal);
        Op::Protect { gpa, size, flags }
    }
}

fn illegal_flags(flags: MF) -> Error {
    Error::IllegalFlags { flags, reason: "" }
}

/// The first offence an unmap or protect of `gpa..gpa + size` meets in
/// address order: an unmapped page, or (a protect to `bbm_flags` on a
/// format needing break-before-make for memory-type changes) a leaf whose
/// memory type would change. Huge pages straddling an end are split.
fn predict_rewrite(
    model: &Model,
    leaves: &BTreeMap<usize, Leaf>,
    gpa: usize,
    size: usize,
    bbm_flags: Option<MF>,
) -> Result<(), Error> {
    let end = gpa + size;
    for p in (gpa..end).step_by(SIZE_4K) {
        if !model.contains_key(&p) {
            return Err(Error::NotMapped { gpa: p.into() });
        }
        let (_, l) = leaves.range(..=p).next_back().expect("a leaf maps p");
        let (base, lsize) = (l.gpa.as_usize(), l.size);
        assert!(base + lsize > p, "the leaf walk disagrees with the model");
        let memtype = MF::DEVICE | MF::UNCACHED;
        if let Some(new) = bbm_flags {
            if model[&p].1 & memtype != new & memtype {
                return Err(Error::BreakBeforeMake {
                    gpa: base.into(),
                    size: lsize,
                });
            }
        }
    }
    Ok(())
}

fn predict(
    op: &Op,
    model: &Model,
    log: &Log,
    leaves: &BTreeMap<usize, Leaf>,
    illegal: MF,
    bbm: bool,
) -> Result<Outcome, Error> {
    match *op {
        Op::StartLog { .. } | Op::StopLog { .. } => return Ok(Outcome::Done),
        Op::GuestWrite { gpa } => {
            let page = gpa & !(SIZE_4K - 1);
            return match model.get(&page) {
                None => Err(Error::NotMapped { gpa: gpa.into() }),
                Some((_, f)) if visible(*f, log, page).contains(MF::WRITE) => Ok(Outcome::NoFault),
                Some(_) => Ok(Outcome::Fault(log.get(&page) == Some(&false))),
            };
        }
        Op::Harvest { gpa, size } => {
            return Ok(Outcome::Harvested(
                log.range(gpa..gpa + size)
                    .filter(|(_, d)| **d)
                    .map(|(p, _)| *p)
                    .collect(),
            ))
        }
        _ => {}
    }
    predict_plain(op, model, leaves, illegal, bbm).map(|()| Outcome::Done)
}

fn predict_plain(
    op: &Op,
    model: &Model,
    leaves: &BTreeMap<usize, Leaf>,
    illegal: MF,
    bbm: bool,
) -> Result<(), Error> {
    match *op {
        Op::Map {
            gpa, size, flags, ..
        }
        | Op::MapScattered {
            gpa, size, flags, ..
        } => {
            if flags == illegal {
                return Err(illegal_flags(flags));
            }
            match model.range(gpa..gpa + size).next() {
                Some((p, _)) => Err(Error::AlreadyMapped { gpa: (*p).into() }),
                None => Ok(()),
            }
        }
        Op::Collapse { .. } => Ok(()),
        Op::Query { gpa } => match model.get(&(gpa & !(SIZE_4K - 1))) {
            Some(_) => Ok(()),
            None => Err(Error::NotMapped { gpa: gpa.into() }),
        },
        Op::Unmap { gpa, size } => predict_rewrite(model, leaves, gpa, size, None),
        Op::Protect { gpa, size, flags } => {
            if flags == illegal {
                return Err(illegal_flags(flags));
            }
            predict_rewrite(model, leaves, gpa, size, bbm.then_some(flags))
        }
        Op::StartLog { .. } | Op::GuestWrite { .. } | Op::Harvest { .. } | Op::StopLog { .. } => {
            Ok(())
        }
    }
}

/// Runs `op`, with the reason of `IllegalFlags` blanked for comparison.
fn apply<F: Format>(t: &mut Table<F>, model: &Model, log: &Log, op: &Op) -> Result<Outcome, Error> {
    let r = match *op {
        Op::StartLog { gpa: g, size, lazy } => {
            let huge = if lazy {
                HugePages::SplitOnFault
            } else {
                HugePages::SplitNow
            };
            t.start_dirty_log_with(gpa(g), size, huge, &mut Recorder::default())
        }
        Op::GuestWrite { gpa: g } => {
            if t.query(gpa(g)).is_ok_and(|q| q.flags.contains(MF::WRITE)) {
                return Ok(Outcome::NoFault);
            }
            return match t.handle_write_fault_in(gpa(g), &mut Recorder::default())? {
                WriteFault::Logged(tf) => {
                    // A recorder never fails.
                    let flushed = tf.flush_with(&mut Recorder::default()).is_ok();
                    assert!(flushed, "the recorder refused a batch");
                    Ok(Outcome::Fault(true))
                }
                WriteFault::NotLogged => Ok(Outcome::Fault(false)),
            };
        }
        Op::Harvest { gpa: g, size } => {
            let mut bitmap = vec![0u64; (size / SIZE_4K).div_ceil(64)];
            let tf = t.harvest_dirty(gpa(g), size, &mut bitmap)?;
            tf.ignore();
            return Ok(Outcome::Harvested(
                (0..size / SIZE_4K)
                    .filter(|i| bitmap[i / 64] >> (i % 64) & 1 == 1)
                    .map(|i| g + i * SIZE_4K)
                    .collect(),
            ));
        }
        Op::StopLog { gpa: g, size } => t.stop_dirty_log(gpa(g), size),
        Op::MapScattered {
            gpa: g,
            hpa: h,
            stride,
            size,
            flags,
            huge,
        } => t.map_region_with(gpa(g), size, flags, huge, |a| {
            hpa(h + (a.as_usize() - g) / SIZE_4K * stride)
        }),
        Op::Collapse { gpa: g, size } => {
            t.collapse_region_in(gpa(g), size, &mut Recorder::default())
        }
        Op::Query { gpa: g } => {
            return t.query(gpa(g)).map(|q| {
                let page = g & !(SIZE_4K - 1);
                let (h, f) = model[&page];
                assert_eq!(
                    (q.hpa.as_usize(), q.flags),
                    (h + g - page, visible(f, log, page)),
                    "query {g:#x}"
                );
                Outcome::Done
            });
        }
        Op::Map {
            gpa: g,
            hpa: h,
            size,
            flags,
            huge,
        } => t.map_region(gpa(g), hpa(h), size, flags, huge),
        // A recorder runs the break-before-make invalidations of splits.
        Op::Unmap { gpa: g, size } => t.unmap_region_in(gpa(g), size, &mut Recorder::default()),
        Op::Protect {
            gpa: g,
            size,
            flags,
        } => t.protect_region_in(gpa(g), size, flags, &mut Recorder::default()),
    };
    match r {
        Ok(tf) => {
            tf.ignore();
            Ok(Outcome::Done)
        }
        Err(Error::IllegalFlags { flags, .. }) => Err(illegal_flags(flags)),
        Err(e) => Err(e),
    }
}

/// The model after `op` succeeded. `leaves` are the table's leaves
/// before it (a harvest re-arms only granule-sized writable leaves).
fn update(model: &mut Model, log: &mut Log, leaves: &BTreeMap<usize, Leaf>, op: &Op) {
    let small = |p: usize| {
        leaves
            .range(..=p)
            .next_back()
            .is_some_and(|(_, l)| l.size == SIZE_4K && l.gpa.as_usize() == p)
    };
    match *op {
        Op::StartLog { gpa, size, .. } => {
            // Every writable page of the range is write-protected and
            // clean (huge ones split, now or on their first fault).
            for (p, (_, f)) in model.range(gpa..gpa + size) {
                if visible(*f, log, *p).contains(MF::WRITE) {
                    log.insert(*p, false);
                }
            }
            return;
        }
        Op::GuestWrite { gpa } => {
            let page = gpa & !(SIZE_4K - 1);
            if log.get(&page) == Some(&false) {
                log.insert(page, true);
            }
            return;
        }
        Op::Harvest { gpa, size } => {
            // Reported pages are clean again, and every writable 4 KiB
            // leaf of the range is write-protected and logged from now on.
            for (p, (_, f)) in model.range(gpa..gpa + size) {
                if visible(*f, log, *p).contains(MF::WRITE) && small(*p) {
                    log.insert(*p, false);
                }
            }
            return;
        }
        Op::StopLog { gpa, size } => {
            let pages: Vec<usize> = log.range(gpa..gpa + size).map(|(p, _)| *p).collect();
            for p in pages {
                log.remove(&p);
            }
            return;
        }
        _ => {}
    }
    match *op {
        Op::Map {
            gpa,
            hpa,
            size,
            flags,
            ..
        } => {
            for off in (0..size).step_by(SIZE_4K) {
                model.insert(gpa + off, (hpa + off, flags));
            }
        }
        Op::MapScattered {
            gpa,
            hpa,
            stride,
            size,
            flags,
            ..
        } => {
            for k in 0..size / SIZE_4K {
                model.insert(gpa + k * SIZE_4K, (hpa + k * stride, flags));
            }
        }
        Op::Collapse { .. } | Op::Query { .. } => {}
        Op::Unmap { gpa, size } => {
            for off in (0..size).step_by(SIZE_4K) {
                model.remove(&(gpa + off));
                log.remove(&(gpa + off));
            }
        }
        // `protect` ends logging for what it rewrites.
        Op::Protect { gpa, size, flags } => {
            for off in (0..size).step_by(SIZE_4K) {
                model.get_mut(&(gpa + off)).unwrap().1 = flags;
                log.remove(&(gpa + off));
            }
        }
        Op::StartLog { .. } | Op::GuestWrite { .. } | Op::Harvest { .. } | Op::StopLog { .. } => {}
    }
}

/// The frames the leaves need: the root and each table on a leaf's path,
/// so an empty table left linked is one too many.
fn needed_frames<F: Format>(leaves: &[Leaf]) -> usize {
    let g = &F::LAYOUT.geometry;
    let mut tables = std::collections::BTreeSet::new();
    for l in leaves {
        // The table at depth d (d >= 1) holding this address is named by
        // the address bits above the span of one entry of depth d - 1.
        for d in 1..=l.level {
            tables.insert((d, l.gpa.as_usize() >> g.levels[d - 1].shift));
        }
    }
    g.root_tables * (g.granule() / SIZE_4K) + tables.len() * (g.granule() / SIZE_4K)
}

/// The leaves expanded to 4K pages, in address order.
fn expand(leaves: &[Leaf]) -> Vec<(usize, usize, MF)> {
    let mut v = Vec::new();
    for l in leaves {
        for off in (0..l.size).step_by(SIZE_4K) {
            v.push((l.gpa.as_usize() + off, l.hpa.as_usize() + off, l.flags));
        }
    }
    v
}

#[derive(Debug, Default)]
pub struct Stats {
    pub maps: usize,
    pub unmaps: usize,
    pub protects: usize,
    pub refused: usize,
    pub collapses: usize,
    pub queries: usize,
    pub max_huge: usize,
    /// Dirty-logging operations that succeeded, and logging faults.
    pub logs: usize,
    pub logging_faults: usize,
}

/// Sequences of 300 operations on a fresh table each; `NPT_MODEL_RUNS`
/// sequences per format (CI runs many in release mode).
pub fn model_test<F: Format>(seed: u64, legal: &[MF], illegal: MF) {
    let runs: u64 = std::env::var("NPT_MODEL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut total = Stats::default();
    for run in 0..runs {
        let mut rng = Rng(seed ^ run.wrapping_mul(0x9E37_79B9));
        let s = run_ops::<F>(&mut rng, 300, legal, illegal);
        total.maps += s.maps;
        total.unmaps += s.unmaps;
        total.protects += s.protects;
        total.refused += s.refused;
        total.collapses += s.collapses;
        total.queries += s.queries;
        total.max_huge = total.max_huge.max(s.max_huge);
        total.logs += s.logs;
        total.logging_faults += s.logging_faults;
    }
    // The runs exercised every operation, both ways, and huge pages.
    let n = runs as usize;
    assert!(total.maps >= 20 * n, "{total:?}");
    assert!(total.unmaps >= 10 * n, "{total:?}");
    assert!(total.protects >= 5 * n, "{total:?}");
    assert!(total.refused >= 20 * n, "{total:?}");
    assert!(n < 10 || total.collapses >= 1, "{total:?}");
    assert!(n < 10 || total.queries >= 1, "{total:?}");
    assert!(total.max_huge >= 1, "{total:?}");
    assert!(n < 10 || total.logging_faults >= 1, "{total:?}");
    println!("{}: {} operations: {total:?}", F::NAME, runs * 300);
}

/// Runs up to `steps` operations drawn from `rng` on a fresh table,
/// checking the table against the model after each one; panics on the
/// first disagreement.
pub fn run_ops<F: Format>(rng: &mut impl Source, steps: usize, legal: &[MF], illegal: MF) -> Stats {
    let mut t = fresh::<F>();
    let mut model = Model::new();
    let mut log = Log::new();
    let mut stats = Stats::default();
    for step in 0..steps {
        if rng.exhausted() {
            break;
        }
        let list = leaves(&t);
        let by_gpa: BTreeMap<usize, Leaf> = list.iter().map(|l| (l.gpa.as_usize(), *l)).collect();
        let op = gen_op(rng, &list, legal, illegal);
        let want = predict(&op, &model, &log, &by_gpa, illegal, F::LAYOUT.bbm_mask != 0);
        let got = apply(&mut t, &model, &log, &op);
        assert_eq!(got, want, "{}: step {step}: {op:x?}", F::NAME);
        let ok = got.is_ok();
        match (got, op) {
            (Err(_), _) => stats.refused += 1,
            (Ok(Outcome::Fault(true)), _) => stats.logging_faults += 1,
            (Ok(_), Op::Map { .. } | Op::MapScattered { .. }) => stats.maps += 1,
            (Ok(_), Op::Unmap { .. }) => stats.unmaps += 1,
            (Ok(_), Op::Protect { .. }) => stats.protects += 1,
            (Ok(_), Op::Collapse { .. }) => stats.collapses += 1,
            (Ok(_), Op::Query { .. }) => stats.queries += 1,
            (Ok(_), _) => stats.logs += 1,
        }
        if ok {
            update(&mut model, &mut log, &by_gpa, &op);
        }
        let list = leaves(&t);
        let expected: Vec<_> = model
            .iter()
            .map(|(g, (h, f))| (*g, *h, visible(*f, &log, *g)))
            .collect();
        assert!(
            expand(&list) == expected,
            "{}: step {step}: leaves differ from the model after {op:x?}",
            F::NAME
        );
        let huge = list.iter().filter(|l| l.size > SIZE_4K).count();
        stats.max_huge = stats.max_huge.max(huge);
        assert_eq!(live_frames(), t.frames_used(), "step {step}");
        assert_eq!(
            t.frames_used(),
            needed_frames::<F>(&list),
            "step {step}: a table too many"
        );
    }
    drop(t);
    assert_eq!(live_frames(), 0);
    stats
}
