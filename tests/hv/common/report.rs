//! Console output and verdict lines. Each architecture provides
//! `crate::putc` (a polled UART).
//!
//! The host-side runner (tests/tests/emulators.rs) reads lines of the form
//! `VERDICT <name> PASS|FAIL detail=<text>` and the final `DONE` line.

use core::fmt::{self, Write};

/// The serial console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(crate::putc);
        Ok(())
    }
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let _ = write!($crate::report::Console, $($arg)*);
    }};
}

/// Prints a line to the console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{ $crate::print!($($arg)*); $crate::print!("\n"); }};
}

/// Counts verdicts.
#[derive(Default)]
pub struct Report {
    pub pass: u32,
    pub fail: u32,
}

impl Report {
    /// Prints one verdict line.
    pub fn verdict(&mut self, name: &str, ok: bool, detail: fmt::Arguments) {
        if ok {
            self.pass += 1;
        } else {
            self.fail += 1;
        }
        let word = if ok { "PASS" } else { "FAIL" };
        crate::println!("VERDICT {name} {word} detail={detail}");
    }

    /// Prints the summary line.
    pub fn done(&self) {
        crate::println!("DONE pass={} fail={}", self.pass, self.fail);
    }
}

/// Volatile access to host-physical memory (the MMU is off: identity, and
/// aligned 64-bit accesses only; on x86_64, an identity map).
pub fn rd(pa: usize) -> u64 {
    // SAFETY: callers pass aligned addresses in host RAM the tests own.
    unsafe { (pa as *const u64).read_volatile() }
}

/// See [`rd`].
pub fn wr(pa: usize, v: u64) {
    // SAFETY: as in `rd`.
    unsafe { (pa as *mut u64).write_volatile(v) }
}

/// Fills `words` 64-bit words at `pa` with `f(index)`.
pub fn fill(pa: usize, words: usize, f: impl Fn(usize) -> u64) {
    (0..words).for_each(|i| wr(pa + 8 * i, f(i)));
}

/// A recognisable value for word `i` of frame `pa`.
pub fn pattern(pa: usize, i: usize) -> u64 {
    0x5A00_0000_0000_0000 ^ ((pa as u64) << 8) ^ i as u64
}
