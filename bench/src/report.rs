//! Statistics over rounds and the Markdown the bench prints.

use crate::flushes::Tally;
use crate::work::{thousands, Imp};
use std::time::Duration;

/// The ratio columns: numerator, denominator, heading.
pub const RATIOS: [(Imp, Imp, &str); 4] = [
    (Imp::NptEpt4, Imp::Pt64, "npt/PageTable64"),
    (Imp::NptEpt4, Imp::Floor, "npt/lower bound"),
    (Imp::A64, Imp::Pt64, "aarch64-paging/PageTable64"),
    (Imp::NptS2, Imp::A64, "npt Stage2Ipa48/aarch64-paging"),
];

/// One row's times, by implementation ([`Imp::index`]), one per round.
#[derive(Clone, Debug, Default)]
pub struct Times(pub [Vec<Duration>; 5]);

impl Times {
    /// Adds the time of `imp` in the current round.
    pub fn push(&mut self, imp: Imp, t: Duration) {
        self.0[imp.index()].push(t);
    }

    fn of(&self, imp: Imp) -> &[Duration] {
        &self.0[imp.index()]
    }

    /// The per-round ratios `num/den`, min..max.
    pub fn ratio(&self, num: Imp, den: Imp) -> String {
        let ratios: Vec<f64> = self
            .of(num)
            .iter()
            .zip(self.of(den))
            .map(|(n, d)| n.as_secs_f64() / d.as_secs_f64())
            .collect();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        match ratios.len() {
            0 => "-".into(),
            1 => format!("{min:.2}"),
            _ => format!("{min:.2}..{max:.2}"),
        }
    }
}

/// The minimum and median of some times.
pub fn min_median(times: &[Duration]) -> Option<(Duration, Duration)> {
    let mut sorted = times.to_vec();
    sorted.sort();
    let min = *sorted.first()?;
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    };
    Some((min, median))
}

/// A duration with three significant digits and a unit.
pub fn fmt_duration(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let decimals = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.decimals$} {unit}")
}

fn print_row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

fn print_header(cells: &[String]) {
    print_row(cells);
    let rule: Vec<String> = cells.iter().map(|_| "---".to_string()).collect();
    print_row(&rule);
}

/// The times table of one handler: median (min) per implementation, then
/// the ratio ranges.
pub fn times_table(handler: &str, rounds: usize, rows: &[(String, u32, Times)]) {
    println!(
        "### Frame handler `{handler}`: time per operation, median (min) over {rounds} round(s)\n"
    );
    let mut head = vec!["work".to_string(), "reps".to_string()];
    head.extend(Imp::ALL.iter().map(|i| i.label().to_string()));
    head.extend(RATIOS.iter().map(|r| r.2.to_string()));
    print_header(&head);
    for (label, reps, times) in rows {
        let mut cells = vec![label.clone(), reps.to_string()];
        for imp in Imp::ALL {
            cells.push(match min_median(times.of(imp)) {
                Some((min, median)) => {
                    format!("{} ({})", fmt_duration(median), fmt_duration(min))
                }
                None => "-".into(),
            });
        }
        cells.extend(RATIOS.iter().map(|&(n, d, _)| times.ratio(n, d)));
        print_row(&cells);
    }
    println!();
}

/// Frames held after each row, by implementation (every round agrees or the
/// cell shows the range).
pub fn frames_table(rows: &[(String, [Vec<usize>; 5])]) {
    println!("### Frames held after the operation (4 KiB, root included)\n");
    let mut head = vec!["after".to_string()];
    head.extend(Imp::ALL.iter().map(|i| i.label().to_string()));
    print_header(&head);
    for (label, frames) in rows {
        let mut cells = vec![label.clone()];
        for f in frames {
            let min = f.iter().min();
            let max = f.iter().max();
            cells.push(match (min, max) {
                (Some(a), Some(b)) if a == b => thousands(*a),
                (Some(a), Some(b)) => format!("{}..{}", thousands(*a), thousands(*b)),
                _ => "-".into(),
            });
        }
        print_row(&cells);
    }
    println!();
}

/// ns per mapped page by region size.
pub fn scaling_table(rows: &[(usize, String, u32, Times)]) {
    println!("### Scaling: map_region at 4 KiB with `Pool`, ns per page, median (min)\n");
    let mut head = vec!["size".to_string(), "reps".to_string()];
    head.extend(Imp::ALL.iter().map(|i| i.label().to_string()));
    head.push("npt/PageTable64".into());
    print_header(&head);
    for (pages, label, reps, times) in rows {
        let mut cells = vec![label.clone(), reps.to_string()];
        for imp in Imp::ALL {
            let per_page = |d: Duration| d.as_secs_f64() * 1e9 / *pages as f64;
            cells.push(match min_median(times.of(imp)) {
                Some((min, median)) => {
                    format!("{:.2} ({:.2})", per_page(median), per_page(min))
                }
                None => "-".into(),
            });
        }
        cells.push(times.ratio(Imp::NptEpt4, Imp::Pt64));
        print_row(&cells);
    }
    println!();
}

/// The invalidations npt asked for.
pub fn flush_table(format: &str, rows: &[Tally]) {
    println!("### npt {format}: invalidations per operation (untimed)\n");
    let head = [
        "operation",
        "batches",
        "scope",
        "per-page invalidations",
        "tables_to_free",
        "recorded instructions",
    ];
    print_header(&head.map(String::from));
    for t in rows {
        print_row(&[
            t.op.clone(),
            thousands(t.batches),
            t.scope_text(),
            thousands(t.pages),
            thousands(t.tables_to_free),
            thousands(t.instrs),
        ]);
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let ms = Duration::from_millis;
        assert_eq!(min_median(&[ms(3), ms(1), ms(2)]), Some((ms(1), ms(2))));
        assert_eq!(
            min_median(&[ms(4), ms(1)]),
            Some((ms(1), Duration::from_micros(2500)))
        );
        assert_eq!(min_median(&[]), None);
        let mut t = Times::default();
        t.push(Imp::NptEpt4, ms(1));
        t.push(Imp::Pt64, ms(4));
        t.push(Imp::NptEpt4, ms(3));
        t.push(Imp::Pt64, ms(2));
        assert_eq!(t.ratio(Imp::NptEpt4, Imp::Pt64), "0.25..1.50");
        assert_eq!(t.ratio(Imp::A64, Imp::Pt64), "-");
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_nanos(208)), "208 ns");
        assert_eq!(fmt_duration(Duration::from_nanos(7_610)), "7.61 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1_340)), "1.34 ms");
        assert_eq!(fmt_duration(Duration::from_millis(49_600)), "49.6 s");
    }
}
