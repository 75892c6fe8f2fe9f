//! The model the engine is checked against: a map from each 4 KiB guest
//! page to its host page and flags, random (or fuzzer-chosen) sequences of
//! operations, and the outcome each must have. After every step the
//! table's leaves must equal the model and the table must hold exactly the
//! frames its leaves need.

use crate::{fresh, gpa, hpa, leaves, live_frames, Table, R, RW, RWX, RX};
use npt::flush::Recorder;
use npt::size::{SIZE_2M, SIZE_4K};
use npt::{Error, Format, Leaf, MappingFlags as MF};
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
}

/// 4K page -> (hpa, flags).
pub type Model = BTreeMap<usize, (usize, MF)>;

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
    }
}

/// Runs `op`, with the reason of `IllegalFlags` blanked for comparison.
fn apply<F: Format>(t: &mut Table<F>, model: &Model, op: &Op) -> Result<(), Error> {
    let r = match *op {
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
                    (h + g - page, f),
                    "query {g:#x}"
                );
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
            Ok(())
        }
        Err(Error::IllegalFlags { flags, .. }) => Err(illegal_flags(flags)),
        Err(e) => Err(e),
    }
}

fn update(model: &mut Model, op: &Op) {
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
            }
        }
        Op::Protect { gpa, size, flags } => {
            for off in (0..size).step_by(SIZE_4K) {
                model.get_mut(&(gpa + off)).unwrap().1 = flags;
            }
        }
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
    println!("{}: {} operations: {total:?}", F::NAME, runs * 300);
}

/// Runs up to `steps` operations drawn from `rng` on a fresh table,
/// checking the table against the model after each one; panics on the
/// first disagreement.
pub fn run_ops<F: Format>(rng: &mut impl Source, steps: usize, legal: &[MF], illegal: MF) -> Stats {
    let mut t = fresh::<F>();
    let mut model = Model::new();
    let mut stats = Stats::default();
    for step in 0..steps {
        if rng.exhausted() {
            break;
        }
        let list = leaves(&t);
        let by_gpa: BTreeMap<usize, Leaf> = list.iter().map(|l| (l.gpa.as_usize(), *l)).collect();
        let op = gen_op(rng, &list, legal, illegal);
        let want = predict(&op, &model, &by_gpa, illegal, F::LAYOUT.bbm_mask != 0);
        let got = apply(&mut t, &model, &op);
        assert_eq!(got, want, "{}: step {step}: {op:x?}", F::NAME);
        match (got, op) {
            (Err(_), _) => stats.refused += 1,
            (Ok(()), Op::Map { .. }) => stats.maps += 1,
            (Ok(()), Op::Unmap { .. }) => stats.unmaps += 1,
            (Ok(()), Op::Protect { .. }) => stats.protects += 1,
            (Ok(()), Op::MapScattered { .. }) => stats.maps += 1,
            (Ok(()), Op::Collapse { .. }) => stats.collapses += 1,
            (Ok(()), Op::Query { .. }) => stats.queries += 1,
        }
        if got.is_ok() {
            update(&mut model, &op);
        }
        let list = leaves(&t);
        let expected: Vec<_> = model.iter().map(|(g, (h, f))| (*g, *h, *f)).collect();
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
