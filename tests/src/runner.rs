//! What the emulator runners share (`tests/tests/emulators.rs` for QEMU,
//! `bochs.rs`, `uboot.rs`): building a bare-metal test hypervisor, running
//! an emulator with a timeout, and checking the verdict lines a hypervisor
//! prints:
//!
//! ```text
//! VERDICT <name> PASS|FAIL detail=<text>
//! DONE pass=<n> fail=<m>
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Whether the `CI` environment variable is set (then a missing emulator is
/// a failure, not a skip).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The npt workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds the test hypervisor in `tests/hv/<dir>` (its own cargo workspace,
/// binary `npt-hv-<dir>`) for `target` into `target/hv`, and returns the
/// ELF's path.
pub fn build_hv(dir: &str, target: &str) -> PathBuf {
    let root = workspace_root();
    let crate_dir = root.join("tests/hv").join(dir);
    let target_dir = root.join("target/hv");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(&crate_dir)
        .args(["build", "--release", "--locked", "--target", target])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not reach the bare-metal one
        // (the linker script comes from the crate's build.rs).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "building {} failed ({}):\n{}",
        crate_dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let elf = target_dir
        .join(target)
        .join("release")
        .join(format!("npt-hv-{dir}"));
    assert!(elf.is_file(), "{} was not built", elf.display());
    elf
}

/// One emulator run.
pub struct Run {
    /// Its exit status; `None` if it timed out and was killed.
    pub status: Option<ExitStatus>,
    /// Its stdout, then its stderr (if any) after a `[stderr]` line, with
    /// carriage returns removed.
    pub output: String,
    /// How long it ran.
    pub took: Duration,
}

/// Runs `cmd`, writing `stdin` to it (then closing it), and kills it after
/// `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Run {
    let start = Instant::now();
    let name = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // A writer thread: the child may read its input slowly (a guest's
    // UART), and a full pipe must not block the timeout loop.
    let in_writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out_reader = reader(child.stdout.take().expect("piped stdout"));
    let err_reader = reader(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the emulator") {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = in_writer.join();
    let mut output = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if !err.trim().is_empty() {
        output.push_str("\n[stderr]\n");
        output.push_str(&err);
    }
    Run {
        status,
        output: output.replace('\r', ""),
        took: start.elapsed(),
    }
}

fn reader(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = from.read_to_end(&mut buf);
        buf
    })
}

/// The verdicts in a hypervisor's output.
#[derive(Debug, Default)]
pub struct Verdicts<'a> {
    /// Each verdict's result text (`PASS detail=...`), by name.
    pub results: BTreeMap<&'a str, &'a str>,
    /// Whether the `DONE` line was seen.
    pub done: bool,
    /// Verdicts reported twice, `PANIC` lines.
    pub problems: Vec<String>,
}

/// Parses the `VERDICT`, `DONE` and `PANIC` lines of `output`.
pub fn parse_verdicts(output: &str) -> Verdicts<'_> {
    let mut v = Verdicts::default();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("VERDICT ") {
            let (name, result) = rest.split_once(' ').unwrap_or((rest, ""));
            if v.results.insert(name, result).is_some() {
                v.problems.push(format!("verdict {name} reported twice"));
            }
        } else if line.starts_with("DONE ") {
            v.done = true;
        } else if line.starts_with("PANIC") {
            v.problems.push(format!("the hypervisor panicked: {line}"));
        }
    }
    v
}

/// Whether a verdict's result text is a pass.
pub fn passed(result: &str) -> bool {
    result.split(' ').next() == Some("PASS")
}

/// Everything wrong with the verdicts in `output` against the `expected`
/// list: a verdict missing, failed, reported twice or not expected, a
/// panic, no `DONE` line. The exit status is the caller's to judge.
pub fn check_verdicts(output: &str, expected: &[&str]) -> Vec<String> {
    let v = parse_verdicts(output);
    let mut problems = v.problems;
    for name in v.results.keys() {
        if !expected.contains(name) {
            problems.push(format!(
                "unexpected verdict {name} (add it to the runner's list)"
            ));
        }
    }
    for name in expected {
        match v.results.get(name) {
            Some(result) if passed(result) => {}
            Some(result) => problems.push(format!("verdict {name}: {result}")),
            None => problems.push(format!("verdict {name} missing")),
        }
    }
    if !v.done {
        problems.push("no DONE line (the hypervisor stopped early)".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_checked() {
        let out = "VERDICT a PASS detail=x\nVERDICT b FAIL detail=y\nVERDICT c PASS\nDONE pass=2 fail=1\n";
        let problems = check_verdicts(out, &["a", "b", "d"]);
        assert_eq!(
            problems,
            [
                "unexpected verdict c (add it to the runner's list)",
                "verdict b: FAIL detail=y",
                "verdict d missing",
            ]
        );
        assert!(check_verdicts("VERDICT a PASS\nDONE pass=1 fail=0", &["a"]).is_empty());
        assert_eq!(
            check_verdicts("VERDICT a PASS\nVERDICT a PASS\n", &["a"]),
            [
                "verdict a reported twice",
                "no DONE line (the hypervisor stopped early)"
            ]
        );
    }
}
