//! The work rows, each written once over [`Table`], and their checks.
//!
//! A measurement builds its table and whatever mapping the row starts from
//! outside the timed region, times the one operation, then checks the result
//! (a few lookups, or the query checksum) and that dropping the table gave
//! every frame back. Any wrong answer aborts the bench.

use crate::fail;
use crate::handlers::{Frames, FRAME};
use crate::impls::{Floor, Found, Npt, Pt64, Table, A64, GPA_BASE, HPA_BASE};
use npt::{aarch64::Stage2Ipa48, x86_64::Ept4};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The implementations, in report column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imp {
    /// npt, Intel EPT.
    NptEpt4,
    /// npt, Arm stage 2 with a 48-bit IPA.
    NptS2,
    /// page_table_multiarch's x86_64 table.
    Pt64,
    /// aarch64-paging's stage 2.
    A64,
    /// Allocation and entry writes only.
    Floor,
}

impl Imp {
    /// All of them, in column order.
    pub const ALL: [Imp; 5] = [Imp::NptEpt4, Imp::NptS2, Imp::Pt64, Imp::A64, Imp::Floor];

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            Imp::NptEpt4 => "npt Ept4",
            Imp::NptS2 => "npt Stage2Ipa48",
            Imp::Pt64 => "PageTable64",
            Imp::A64 => "aarch64-paging",
            Imp::Floor => "lower bound",
        }
    }

    /// The position in [`Imp::ALL`].
    pub fn index(self) -> usize {
        Imp::ALL.iter().position(|&i| i == self).unwrap_or(0)
    }
}

/// A work row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// One `map_region` call at 4 KiB on an empty table.
    MapRegion,
    /// One single-page `map` call per page on an empty table.
    MapPages,
    /// Random lookups over the mapped region.
    Query,
    /// Read-write to read-only over the mapped region.
    Protect,
    /// Unmapping the mapped region.
    Unmap,
}

impl Work {
    /// All of them, in report order.
    pub const ALL: [Work; 5] = [
        Work::MapRegion,
        Work::MapPages,
        Work::Query,
        Work::Protect,
        Work::Unmap,
    ];

    /// The name `--only` takes.
    pub fn key(self) -> &'static str {
        match self {
            Work::MapRegion => "map_region",
            Work::MapPages => "map",
            Work::Query => "query",
            Work::Protect => "protect",
            Work::Unmap => "unmap",
        }
    }

    /// The row heading.
    pub fn label(self, inputs: &Inputs) -> String {
        let size = human_size(inputs.region);
        let pages = inputs.region / FRAME;
        match self {
            Work::MapRegion => format!("map_region {size} @4K"),
            Work::MapPages => format!("{} x map 4K", thousands(pages)),
            Work::Query => format!("{} x query", thousands(inputs.addrs.len())),
            Work::Protect => format!("protect_region {size} RW->R"),
            Work::Unmap => format!("unmap_region {size}"),
        }
    }

    fn premapped(self) -> bool {
        matches!(self, Work::Query | Work::Protect | Work::Unmap)
    }
}

/// What a run of the rows works on.
pub struct Inputs {
    /// The bytes mapped from `GPA_BASE`.
    pub region: usize,
    /// The addresses the query row looks up, in order.
    pub addrs: Vec<usize>,
    /// The sum of their translations.
    pub expected: usize,
}

impl Inputs {
    /// `queries` random addresses in `region` bytes from `GPA_BASE`.
    pub fn new(region: usize, queries: usize) -> Self {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let addrs: Vec<usize> = (0..queries)
            .map(|_| GPA_BASE + rng.next() % region)
            .collect();
        let expected = addrs
            .iter()
            .fold(0usize, |s, &a| s.wrapping_add(expected_hpa(a)));
        Inputs {
            region,
            addrs,
            expected,
        }
    }
}

/// A fixed-seed xorshift64 generator: the same sequence for everyone.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    pub fn next(&mut self) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x as usize
    }
}

fn expected_hpa(gpa: usize) -> usize {
    gpa - GPA_BASE + HPA_BASE
}

/// One measurement: `reps` times the same operation, each on a table of
/// its own.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// The time of one operation (the timed parts summed, over `reps`).
    pub time: Duration,
    /// Frames the table held right after it (root included).
    pub frames: usize,
}

/// Times `work` on `imp` with frames from `H`, `reps` times.
pub fn run<H: Frames>(imp: Imp, work: Work, inputs: &Inputs, reps: u32) -> Sample {
    let mut total = Duration::ZERO;
    let mut frames = 0;
    for _ in 0..reps.max(1) {
        let (time, f) = match imp {
            Imp::NptEpt4 => measure::<Npt<Ept4, H>>(work, inputs),
            Imp::NptS2 => measure::<Npt<Stage2Ipa48, H>>(work, inputs),
            Imp::Pt64 => measure::<Pt64<H>>(work, inputs),
            Imp::A64 => measure::<A64<H>>(work, inputs),
            Imp::Floor => measure::<Floor<H>>(work, inputs),
        };
        total += time;
        frames = f;
    }
    Sample {
        time: total / reps.max(1),
        frames,
    }
}

/// One operation on a fresh table: its time and the frames held after it.
fn measure<T: Table>(work: Work, inputs: &Inputs) -> (Duration, usize) {
    let size = inputs.region;
    let before = T::Frames::live();
    let mut table = T::create();
    if work.premapped() {
        table.map_region(GPA_BASE, HPA_BASE, size);
        check(&table, size, Some(true), "map_region");
    }
    let mut sum = 0;
    let start = Instant::now();
    match work {
        Work::MapRegion => table.map_region(GPA_BASE, HPA_BASE, size),
        Work::MapPages => {
            for k in 0..size / FRAME {
                table.map_page(GPA_BASE + k * FRAME, HPA_BASE + k * FRAME);
            }
        }
        Work::Query => sum = query_all(&table, &inputs.addrs),
        Work::Protect => table.protect_read_only(GPA_BASE, size),
        Work::Unmap => table.unmap_region(GPA_BASE, size),
    }
    black_box(&mut table);
    let time = start.elapsed();
    let frames = T::Frames::live() - before;
    match work {
        Work::MapRegion | Work::MapPages => check(&table, size, Some(true), work.key()),
        Work::Query => {
            if sum != inputs.expected {
                fail(&format!(
                    "{}: the query checksum is {sum:#x}, expected {:#x}",
                    T::NAME,
                    inputs.expected
                ));
            }
        }
        Work::Protect => check(&table, size, Some(false), work.key()),
        Work::Unmap => check(&table, size, None, work.key()),
    }
    drop(table);
    let after = T::Frames::live();
    if after != before {
        fail(&format!(
            "{}: dropping the table after {} left {} frames allocated",
            T::NAME,
            work.key(),
            after as isize - before as isize
        ));
    }
    (time, frames)
}

#[inline(never)]
fn query_all<T: Table>(table: &T, addrs: &[usize]) -> usize {
    let mut sum = 0usize;
    for &gpa in addrs {
        let hpa = match table.query(black_box(gpa)) {
            Some(f) => f.hpa,
            None => usize::MAX / 3,
        };
        sum = sum.wrapping_add(hpa);
    }
    black_box(sum)
}

/// Looks up the first and last byte of the region and 62 random addresses
/// in it: each must be mapped with `writable` (or unmapped for `None`).
fn check<T: Table>(table: &T, size: usize, writable: Option<bool>, after: &str) {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut probes = vec![GPA_BASE, GPA_BASE + size - 1];
    probes.extend((0..62).map(|_| GPA_BASE + rng.next() % size));
    for gpa in probes {
        let want = writable.map(|writable| Found {
            hpa: expected_hpa(gpa),
            writable,
        });
        let got = table.query(gpa);
        if got != want {
            fail(&format!(
                "{}: after {after}, query({gpa:#x}) gave {got:?}, expected {want:?}",
                T::NAME
            ));
        }
    }
}

/// Formats a size in bytes as KiB, MiB or GiB.
pub fn human_size(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} B")
}

/// Formats a count with thousands separators.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{Global, Pool};

    /// Every implementation gets every row right on a small region (a
    /// wrong answer exits the test process with the bench's message).
    #[test]
    fn every_implementation_passes_every_row() {
        Pool::init(256);
        let inputs = Inputs::new(6 << 20, 1000);
        for work in Work::ALL {
            for imp in Imp::ALL {
                let pool = run::<Pool>(imp, work, &inputs, 2);
                let global = run::<Global>(imp, work, &inputs, 1);
                assert_eq!(pool.frames, global.frames, "{imp:?} {work:?}");
            }
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(262_144), "262,144");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(human_size(16 << 20), "16 MiB");
        assert_eq!(human_size(4 << 30), "4 GiB");
        assert_eq!(human_size(3 << 19), "1536 KiB");
    }
}
