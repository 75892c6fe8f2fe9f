//! npt on an independent implementation: builds the bare-metal test
//! hypervisors under `tests/hv/<arch>/` (each its own cargo workspace, a
//! `no_std` binary using npt's public API), runs each in QEMU with a
//! timeout, and checks the verdict lines it prints on its serial port:
//!
//! ```text
//! VERDICT <name> PASS|FAIL detail=<text>
//! DONE pass=<n> fail=<m>
//! ```
//!
//! Every expected verdict must be present and PASS, no other verdict may
//! appear, and QEMU's exit status must agree (0 for a pass on AArch64 and
//! RISC-V; on x86_64, whose `isa-debug-exit` device can only produce odd
//! statuses, 33). Without the QEMU binary the
//! test prints `SKIPPED: ...` and passes, unless the `CI` environment
//! variable is set (then it fails).
//!
//! Run one with its output: `cargo test -p npt-tests --test emulators -- --nocapture aarch64`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one QEMU run may take (each takes well under a second).
const QEMU_TIMEOUT: Duration = Duration::from_secs(30);

/// A verdict an older QEMU gets wrong; tolerated there with a warning.
struct QemuBug {
    verdict: &'static str,
    /// The first QEMU version known to be right.
    fixed_in: (u32, u32),
    why: &'static str,
}

struct Hypervisor {
    /// Directory under tests/hv/, also the suffix of the crate name.
    dir: &'static str,
    target: &'static str,
    qemu: &'static str,
    /// Machine configurations to run it under (QEMU arguments before `-kernel`).
    machines: &'static [&'static [&'static str]],
    expected: &'static [&'static str],
    qemu_bugs: &'static [QemuBug],
    /// QEMU's exit status when every verdict passed, and when one failed.
    pass_status: i32,
    fail_status: i32,
}

const AARCH64: Hypervisor = Hypervisor {
    dir: "aarch64",
    target: "aarch64-unknown-none",
    qemu: "qemu-system-aarch64",
    machines: &[
        &[
            "-M",
            "virt,virtualization=on",
            "-cpu",
            "cortex-a57",
            "-m",
            "128M",
            "-nographic",
            "-nic",
            "none",
            "-semihosting",
        ],
        &[
            "-M",
            "virt,virtualization=on",
            "-cpu",
            "max",
            "-m",
            "128M",
            "-nographic",
            "-nic",
            "none",
            "-semihosting",
        ],
    ],
    expected: &[
        "ram_rw",
        "hole_fault",
        "ro_write",
        "nx_fetch",
        "huge_2m",
        "split_2m",
        "collapse_2m",
        "dirty_log",
        "huge_1g",
        "remap_flush",
        "remap_stale_control",
        "flush_all",
        "remap_ipas2_only_control",
        "remap_context",
        "protect_flush",
        "ipa40_bit39",
        "ipa40_hole_fault",
        "flush_other_vmid",
        "frames_freed",
    ],
    qemu_bugs: &[],
    pass_status: 0,
    fail_status: 1,
};

const RISCV64: Hypervisor = Hypervisor {
    dir: "riscv64",
    target: "riscv64gc-unknown-none-elf",
    qemu: "qemu-system-riscv64",
    machines: &[&[
        "-M",
        "virt",
        "-cpu",
        "rv64,h=true,svpbmt=true",
        "-m",
        "128M",
        "-bios",
        "none",
        "-nographic",
        "-nic",
        "none",
    ]],
    expected: &[
        "ram_rw",
        "hole_fault",
        "ro_write",
        "nx_fetch",
        "huge_2m",
        "split_2m",
        "collapse_2m",
        "dirty_log",
        "huge_1g",
        "remap_flush",
        "flush_all",
        "remap_context",
        "protect_flush",
        "map_after_fault",
        "sv39x4_bit39",
        "sv39x4_bit40",
        "device_pbmt",
        "frames_freed",
    ],
    qemu_bugs: &[QemuBug {
        verdict: "sv39x4_bit40",
        // "target/riscv: Fix Guest Physical Address Translation" (April 2023):
        // before it, G-stage GPAs were checked as sign-extended from bit 40.
        fixed_in: (8, 1),
        why: "QEMU before 8.1 faults mapped GPAs in 2^40..2^41 (G-stage address checked as sign-extended)",
    }],
    pass_status: 0,
    fail_status: 1,
};

const X86_64: Hypervisor = Hypervisor {
    dir: "x86_64",
    target: "x86_64-unknown-none",
    qemu: "qemu-system-x86_64",
    machines: &[&[
        "-M",
        "q35",
        "-nodefaults",
        "-accel",
        "tcg",
        "-cpu",
        "max",
        "-m",
        "128M",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-nic",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]],
    expected: &[
        "ram_rw",
        "hole_fault",
        "ro_write",
        "nx_fetch",
        "huge_2m",
        "split_2m",
        "collapse_2m",
        "dirty_log",
        "huge_1g",
        "remap_flush",
        "flush_needs_vmcb",
        "flush_all",
        "remap_context",
        "protect_flush",
        "map_after_fault",
        "gpa_bit39",
        "frames_freed",
    ],
    qemu_bugs: &[],
    // isa-debug-exit: status (value << 1) | 1; the hypervisor writes 0x10
    // for a pass and 1 for a failed verdict.
    pass_status: 33,
    fail_status: 3,
};

#[test]
fn aarch64_stage2_under_qemu() {
    run(&AARCH64);
}

#[test]
fn riscv64_sv39x4_under_qemu() {
    run(&RISCV64);
}

#[test]
fn x86_64_svm_npt4_under_qemu() {
    run(&X86_64);
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `QEMU emulator version 10.0.2 (...)` -> (10, 0).
fn qemu_version(qemu: &str) -> Option<Result<(u32, u32), String>> {
    let out = match Command::new(qemu).arg("--version").output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("cannot run {qemu} --version: {e}"))),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let parsed = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .and_then(|v| {
            let mut it = v.split('.').map(|n| n.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        });
    Some(parsed.ok_or_else(|| format!("cannot parse the version in {text:?}")))
}

fn build(hv: &Hypervisor) -> PathBuf {
    let root = workspace_root();
    let crate_dir = root.join("tests/hv").join(hv.dir);
    let target_dir = root.join("target/hv");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(&crate_dir)
        .args(["build", "--release", "--locked", "--target", hv.target])
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
        .join(hv.target)
        .join("release")
        .join(format!("npt-hv-{}", hv.dir));
    assert!(elf.is_file(), "{} was not built", elf.display());
    elf
}

/// Runs QEMU, killing it after QEMU_TIMEOUT. Returns its exit status (None
/// on timeout) and everything it printed.
fn run_qemu(qemu: &str, args: &[&str], elf: &Path) -> (Option<ExitStatus>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(args)
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {qemu}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for QEMU") {
            break Some(status);
        }
        if start.elapsed() > QEMU_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    if !err.trim().is_empty() {
        text.push_str("\n[qemu stderr]\n");
        text.push_str(&err);
    }
    (status, text.replace('\r', ""), start.elapsed())
}

fn run(hv: &Hypervisor) {
    let version = match qemu_version(hv.qemu) {
        None if ci() => panic!(
            "{} is not installed, and CI is set: the emulator tests must run in CI \
             (install qemu-system-arm / qemu-system-misc / qemu-system-x86)",
            hv.qemu
        ),
        None => {
            println!("SKIPPED: {} not installed", hv.qemu);
            return;
        }
        Some(Err(e)) => panic!("{e}"),
        Some(Ok(v)) => v,
    };
    println!("{} version {}.{}", hv.qemu, version.0, version.1);

    let elf = build(hv);
    let mut problems = Vec::new();
    for machine in hv.machines {
        let (status, output, took) = run_qemu(hv.qemu, machine, &elf);
        let config = machine.join(" ");
        println!(
            "---- {} {config} -kernel {} ({took:.2?})",
            hv.qemu,
            elf.display()
        );
        print!("{output}");
        problems.extend(
            check(hv, version, status, &output)
                .into_iter()
                .map(|p| format!("[{config}] {p}")),
        );
    }
    assert!(
        problems.is_empty(),
        "{} test hypervisor under {}:\n  {}",
        hv.dir,
        hv.qemu,
        problems.join("\n  ")
    );
}

/// Everything wrong with one run.
fn check(
    hv: &Hypervisor,
    version: (u32, u32),
    status: Option<ExitStatus>,
    output: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut verdicts: BTreeMap<&str, &str> = BTreeMap::new();
    let mut done = false;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("VERDICT ") {
            let (name, result) = rest.split_once(' ').unwrap_or((rest, ""));
            if verdicts.insert(name, result).is_some() {
                problems.push(format!("verdict {name} reported twice"));
            }
            if !hv.expected.contains(&name) {
                problems.push(format!(
                    "unexpected verdict {name} (add it to the runner's list)"
                ));
            }
        } else if line.starts_with("DONE ") {
            done = true;
        } else if line.starts_with("PANIC") {
            problems.push(format!("the hypervisor panicked: {line}"));
        }
    }
    let mut tolerated = 0;
    for name in hv.expected {
        match verdicts.get(name) {
            Some(result) if result.split(' ').next() == Some("PASS") => {}
            Some(result) => {
                let bug = hv
                    .qemu_bugs
                    .iter()
                    .find(|b| b.verdict == *name && version < b.fixed_in);
                match bug {
                    Some(b) => {
                        tolerated += 1;
                        println!(
                            "WARNING: verdict {name} {result} tolerated on QEMU {}.{}: {}",
                            version.0, version.1, b.why
                        );
                    }
                    None => problems.push(format!("verdict {name}: {result}")),
                }
            }
            None => problems.push(format!("verdict {name} missing")),
        }
    }
    if !done {
        problems.push("no DONE line (the hypervisor stopped early)".into());
    }
    match status {
        None => problems.insert(
            0,
            format!("timed out after {QEMU_TIMEOUT:?} and was killed"),
        ),
        Some(s) => {
            let verdicts_ok = problems.is_empty() && tolerated == 0;
            let passed = s.code() == Some(hv.pass_status);
            if passed != verdicts_ok && !(tolerated > 0 && s.code() == Some(hv.fail_status)) {
                problems.push(format!("QEMU exit status {s} disagrees with the verdicts"));
            }
        }
    }
    problems
}
