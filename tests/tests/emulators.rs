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

use npt_tests::runner::{build_hv, ci, parse_verdicts, passed, run_with_timeout, Run};
use std::process::{Command, ExitStatus};
use std::time::Duration;

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
    /// Verdicts expected under one machine only (what its CPU model has:
    /// the 16 KiB stage-2 granule under `-cpu max`, not on a Cortex-A57),
    /// one list per machine, or none.
    per_machine: &'static [&'static [&'static str]],
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
        "dirty_log_lazy",
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
        "ipa42_bit41",
        "ipa44_bit43",
        "frames_freed",
    ],
    // Cortex-A57 has the 64 KiB granule, not the 16 KiB one, and a 44-bit
    // PA; -cpu max both granules and a 52-bit PA.
    per_machine: &[
        &["granule_64k"],
        &[
            "granule_16k",
            "granule_64k",
            "granule_16k_ipa48",
            "granule_64k_ipa48",
            // FEAT_HAFDBS and FEAT_VHE (max only).
            "hw_dirty_log",
            "hw_young",
            "vhe_tge_control",
            "vhe_remap_flush",
        ],
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
        // Sv48x4 and Sv57x4 need the hart to implement Sv48 and Sv57
        // (QEMU's rv64 does by default; said explicitly).
        "rv64,h=true,svpbmt=true,sv48=true,sv57=true",
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
        "dirty_log_lazy",
        "huge_1g",
        "remap_flush",
        "flush_all",
        "remap_context",
        "protect_flush",
        "map_after_fault",
        "sv39x4_bit39",
        "sv39x4_bit40",
        "device_pbmt",
        "hw_dirty_log",
        "hw_young",
        "frames_freed",
        "sv48x4_bit49",
        "sv48x4_terapage",
        "sv57x4_bit58",
        "sv57x4_petapage",
    ],
    per_machine: &[],
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
        "dirty_log_lazy",
        "huge_1g",
        "remap_flush",
        "flush_needs_vmcb",
        "flush_all",
        "remap_context",
        "protect_flush",
        "map_after_fault",
        "gpa_bit39",
        "hw_dirty_log",
        "hw_young",
        "frames_freed",
    ],
    per_machine: &[],
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

    let elf = build_hv(hv.dir, hv.target);
    let mut problems = Vec::new();
    for (i, machine) in hv.machines.iter().enumerate() {
        let mut expected = hv.expected.to_vec();
        expected.extend(hv.per_machine.get(i).copied().unwrap_or_default());
        let mut qemu = Command::new(hv.qemu);
        qemu.args(*machine).arg("-kernel").arg(&elf);
        let Run {
            status,
            output,
            took,
        } = run_with_timeout(qemu, b"", QEMU_TIMEOUT);
        let config = machine.join(" ");
        println!(
            "---- {} {config} -kernel {} ({took:.2?})",
            hv.qemu,
            elf.display()
        );
        print!("{output}");
        problems.extend(
            check(hv, &expected, version, status, &output)
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
    expected: &[&str],
    version: (u32, u32),
    status: Option<ExitStatus>,
    output: &str,
) -> Vec<String> {
    let verdicts = parse_verdicts(output);
    let mut problems = verdicts.problems;
    for name in verdicts.results.keys() {
        if !expected.contains(name) {
            problems.push(format!(
                "unexpected verdict {name} (add it to the runner's list)"
            ));
        }
    }
    let mut tolerated = 0;
    for name in expected {
        match verdicts.results.get(name) {
            Some(result) if passed(result) => {}
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
    if !verdicts.done {
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
