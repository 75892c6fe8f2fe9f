//! `npt-bench`: npt's table engine against the tables it is measured by,
//! doing the same work in one process.
//!
//! Implementations (columns):
//! - npt `NestedTable<Ept4, H>` and `NestedTable<Stage2Ipa48, H>`;
//! - page_table_multiarch's x86_64 `PageTable64` (the table npt replaces);
//! - aarch64-paging's stage-2 `Mapping` (root level 0: 48-bit IPA);
//! - a lower bound: the same table frames allocated and zeroed from the
//!   same handler and the same entries written with volatile stores, found
//!   by indexing instead of a walk.
//!
//! Work (rows), 1 GiB from GPA 0x4000_0000 to HPA 0x1_0000_0000 at 4 KiB:
//! one `map_region` on an empty table; one single-page `map` per page;
//! 1,000,000 lookups at fixed-seed pseudo-random addresses; `protect_region`
//! read-write to read-only; `unmap_region`. Each row runs with two frame
//! handlers: `Pool` (frames faulted in at startup, a free-list pop per
//! table) and `Global` (one `std::alloc` call per table: page faults
//! included). A scaling table gives the ns per page of `map_region` from
//! 16 MiB to 4 GiB, and an untimed pass lists the invalidations each npt
//! operation asks for.
//!
//! Shared machines are noisy, so the bench reports ratios: every round runs
//! each row on every implementation in turn (the starting implementation
//! rotates by round), and a ratio column gives the range of the per-round
//! ratios. Times are per operation, median and minimum over rounds. An
//! untimed warm-up sample per row and implementation picks how many times a
//! sample repeats the operation (`reps`, the same for every implementation
//! of the row) so that the fastest one's sample lasts about 2 ms. Table
//! creation, the mapping a row starts from, the checks and the drop are
//! outside the timed region. After every timed operation the bench checks
//! the result (lookups, or the query checksum, and that the drop gave every
//! frame back) and aborts on a wrong answer, so it never reports the speed
//! of broken code. Nothing asserts on time.
//!
//! Run it with
//!
//! ```text
//! cargo run --release -p npt-bench              # 5 rounds, about 10 s
//! cargo run --release -p npt-bench -- --quick   # 1 round, 16 MiB: under a second
//! cargo run --release -p npt-bench -- --rounds 9 --only query,scaling
//! ```
//!
//! `--only` takes a comma-separated list of `map_region`, `map`, `query`,
//! `protect`, `unmap`, `scaling`, `dirty` (harvesting dirty pages, against a
//! plain walk) and `invalidations`.

mod dirty;
mod flushes;
mod handlers;
mod impls;
mod report;
mod work;

use handlers::{Frames, Global, Pool, FRAME};
use report::Times;
use std::process::exit;
use std::time::Duration;
use work::{human_size, Imp, Inputs, Work};

/// Aborts the bench with `msg`.
pub fn fail(msg: &str) -> ! {
    eprintln!("npt-bench: {msg}");
    exit(1)
}

/// What to run.
struct Config {
    rounds: usize,
    region: usize,
    queries: usize,
    scaling: Vec<usize>,
    only: Option<Vec<String>>,
    quick: bool,
    /// The most repetitions one sample may take.
    max_reps: u32,
}

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

const USAGE: &str = "usage: npt-bench [--quick] [--rounds N] [--only ROW[,ROW...]]
rows: map_region, map, query, protect, unmap, scaling, invalidations, dirty";

impl Config {
    fn from_args() -> Config {
        let mut cfg = Config {
            rounds: 5,
            region: GIB,
            queries: 1_000_000,
            scaling: vec![16 * MIB, 64 * MIB, 256 * MIB, GIB, 4 * GIB],
            only: None,
            quick: false,
            max_reps: 64,
        };
        let mut rounds = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => cfg.quick = true,
                "--rounds" => {
                    let n = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0);
                    rounds = Some(n.unwrap_or_else(|| fail("--rounds takes a positive number")));
                }
                "--only" => {
                    let list = args
                        .next()
                        .unwrap_or_else(|| fail("--only takes row names"));
                    cfg.only = Some(list.split(',').map(str::to_string).collect());
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    exit(0);
                }
                other => fail(&format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if cfg.quick {
            cfg.rounds = 1;
            cfg.region = 16 * MIB;
            cfg.queries = 10_000;
            cfg.scaling = vec![MIB, 4 * MIB, 16 * MIB];
            cfg.max_reps = 8;
        }
        if let Some(n) = rounds {
            cfg.rounds = n;
        }
        if let Some(only) = &cfg.only {
            let known = ["scaling", "invalidations", "dirty"];
            for name in only {
                if !known.contains(&name.as_str()) && !Work::ALL.iter().any(|w| w.key() == name) {
                    fail(&format!("unknown row {name:?}\n{USAGE}"));
                }
            }
        }
        cfg
    }

    fn wants(&self, row: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|r| r == row))
    }
}

/// The CPU model and core count.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores available")
}

/// The 4-level tables a range needs, with margin for a second table alive
/// and for the tables `PageTable64` keeps after an unmap.
fn pool_frames(cfg: &Config) -> usize {
    let largest = cfg.scaling.iter().copied().chain([cfg.region]).max();
    let largest = largest.unwrap_or(cfg.region);
    2 * (largest / (2 * MIB) + largest / GIB + 4) + 1024
}

fn run_one(handler: &str, imp: Imp, work: Work, inputs: &Inputs, reps: u32) -> work::Sample {
    match handler {
        Pool::NAME => work::run::<Pool>(imp, work, inputs, reps),
        _ => work::run::<Global>(imp, work, inputs, reps),
    }
}

/// How long the fastest implementation's sample should last at least.
const SAMPLE_TARGET: Duration = Duration::from_millis(2);

/// Runs one untimed warm-up sample per implementation (which also faults
/// in what the first round would otherwise pay for) and returns the
/// repetitions per sample that bring the fastest one to `SAMPLE_TARGET`.
/// Every implementation then gets the same count, so ratios stay fair.
fn calibrate(max_reps: u32, mut once: impl FnMut(Imp) -> Duration) -> u32 {
    let fastest = Imp::ALL.into_iter().map(&mut once).min();
    let fastest = fastest
        .unwrap_or(SAMPLE_TARGET)
        .max(Duration::from_nanos(1));
    let reps = SAMPLE_TARGET.as_nanos().div_ceil(fastest.as_nanos());
    reps.clamp(1, u128::from(max_reps)) as u32
}

/// The implementations in the order round `round` runs them.
fn rotated(round: usize) -> impl Iterator<Item = Imp> {
    let n = Imp::ALL.len();
    (0..n).map(move |k| Imp::ALL[(k + round) % n])
}

fn main() {
    let cfg = Config::from_args();
    let started = std::time::Instant::now();
    Pool::init(pool_frames(&cfg));

    println!("# npt-bench{}\n", if cfg.quick { " (quick)" } else { "" });
    println!("- machine: {}", machine());
    println!(
        "- {} round(s); region {} from GPA 0x4000_0000 at 4 KiB pages; {} queries",
        cfg.rounds,
        human_size(cfg.region),
        work::thousands(cfg.queries)
    );
    println!(
        "- aarch64-paging 0.12: non-secure `Stage2` regime, root level 0 (4 levels, 48-bit IPA); \
         built for this host with its TLB maintenance compiled out, table never activated"
    );
    println!("- ratios are per round, min..max over rounds; below 1 means the first is faster\n");

    let works: Vec<Work> = Work::ALL
        .into_iter()
        .filter(|w| cfg.wants(w.key()))
        .collect();
    let handlers = [Pool::NAME, Global::NAME];
    let inputs = Inputs::new(cfg.region, cfg.queries);
    let mut times = vec![vec![Times::default(); works.len()]; handlers.len()];
    let mut frames: Vec<[Vec<usize>; 5]> = vec![Default::default(); works.len()];
    eprintln!("warm-up ...");
    let reps: Vec<Vec<u32>> = handlers
        .iter()
        .map(|handler| {
            works
                .iter()
                .map(|&work| {
                    calibrate(cfg.max_reps, |imp| {
                        run_one(handler, imp, work, &inputs, 1).time
                    })
                })
                .collect()
        })
        .collect();
    for round in 0..cfg.rounds {
        eprintln!("round {}/{} ...", round + 1, cfg.rounds);
        for (h, handler) in handlers.iter().enumerate() {
            for (w, &work) in works.iter().enumerate() {
                for imp in rotated(round) {
                    let sample = run_one(handler, imp, work, &inputs, reps[h][w]);
                    times[h][w].push(imp, sample.time);
                    if h == 0 {
                        frames[w][imp.index()].push(sample.frames);
                    }
                }
            }
        }
    }
    if !works.is_empty() {
        for (h, handler) in handlers.iter().enumerate() {
            let rows: Vec<(String, u32, Times)> = works
                .iter()
                .zip(&reps[h])
                .zip(&times[h])
                .map(|((w, &r), t)| (w.label(&inputs), r, t.clone()))
                .collect();
            report::times_table(handler, cfg.rounds, &rows);
        }
        let rows: Vec<(String, [Vec<usize>; 5])> = works
            .iter()
            .zip(frames)
            .map(|(w, f)| (w.label(&inputs), f))
            .collect();
        report::frames_table(&rows);
    }

    if cfg.wants("scaling") {
        let sizes: Vec<(usize, String, Inputs)> = cfg
            .scaling
            .iter()
            .map(|&s| (s / FRAME, human_size(s), Inputs::new(s, 0)))
            .collect();
        let mut times = vec![Times::default(); sizes.len()];
        eprintln!("scaling, warm-up ...");
        let reps: Vec<u32> = sizes
            .iter()
            .map(|(_, _, inputs)| {
                calibrate(cfg.max_reps, |imp| {
                    work::run::<Pool>(imp, Work::MapRegion, inputs, 1).time
                })
            })
            .collect();
        for round in 0..cfg.rounds {
            eprintln!("scaling, round {}/{} ...", round + 1, cfg.rounds);
            for (s, (_, _, inputs)) in sizes.iter().enumerate() {
                for imp in rotated(round) {
                    let sample = work::run::<Pool>(imp, Work::MapRegion, inputs, reps[s]);
                    times[s].push(imp, sample.time);
                }
            }
        }
        let rows: Vec<(usize, String, u32, Times)> = sizes
            .into_iter()
            .zip(reps)
            .zip(times)
            .map(|(((pages, label, _), r), t)| (pages, label, r, t))
            .collect();
        report::scaling_table(&rows);
    }

    if cfg.wants("dirty") {
        dirty::row(cfg.region, cfg.rounds);
    }

    if cfg.wants("invalidations") {
        use npt::{aarch64::Stage2Ipa48, x86_64::Ept4};
        report::flush_table("Ept4", &flushes::tally::<Ept4>(cfg.region));
        report::flush_table("Stage2Ipa48", &flushes::tally::<Stage2Ipa48>(cfg.region));
    }

    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
}
