//! A real guest: Debian's unmodified U-Boot (package `u-boot-qemu`) boots
//! to its prompt under nested tables npt builds, in the test hypervisors
//! `tests/hv/uboot-aarch64` (EL2, stage 2) and `tests/hv/uboot-riscv64`
//! (HS-mode, Sv39x4 G-stage).
//!
//! For each run the runner dumps QEMU's device tree for the machine
//! (`-machine dumpdtb=`), patches it (guest RAM size in `/memory`, fw_cfg
//! and the devices the hypervisor hides removed) into `target/uboot/`, and
//! has QEMU load it, U-Boot and the run's configuration at the host address
//! backing guest RAM (`-device loader`). It then talks to U-Boot over the
//! serial console (QEMU's stdin/stdout): stops autoboot, runs `version`,
//! `md.l` of words the hypervisor planted, `mw.l` of a marker, `pci` (the
//! Stage2Ipa40 run), and `poweroff`, which the hypervisor intercepts (PSCI
//! SYSTEM_OFF, SBI system reset) to check its table and the marker at the
//! host address and print its verdicts.
//!
//! Without QEMU or the U-Boot images the tests print `SKIPPED: ...` and
//! pass, unless `CI` is set. `NPT_UBOOT_SHOW=1` echoes the console as it
//! runs: `NPT_UBOOT_SHOW=1 cargo test -p npt-tests --test uboot -- --nocapture --test-threads 1`.

use npt_tests::runner::{build_hv, check_verdicts, ci, workspace_root};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long one QEMU run may take (each takes a few seconds).
const TIMEOUT: Duration = Duration::from_secs(30);

// Shared with tests/hv/common/uboot.rs.
const MAGIC: u64 = 0x6e70_745f_7562_6f6f;
const HUGE: u64 = 1;
const WIDE: u64 = 2;
const RAM_SIZE: u64 = 64 << 20;
const PLANT_OFF: u64 = 0x10_0000;
const MARK_OFF: u64 = 0x80_0000;
const PLANT0: u32 = 0x6e70_7421;

const EXPECTED: &[&str] = &[
    "uboot_poweroff",
    "ram_leaves",
    "device_leaves",
    "ram_marker",
];

struct Arch {
    /// Directory under tests/hv/.
    dir: &'static str,
    target: &'static str,
    qemu: &'static str,
    /// QEMU's arguments for the machine (the device tree is dumped with them).
    machine: &'static [&'static str],
    uboot: &'static str,
    ram_gpa: u64,
    /// U-Boot's offset in guest RAM (CONFIG_TEXT_BASE - RAM base).
    uboot_off: u64,
    /// The device tree's offset in guest RAM.
    dtb_off: u64,
    config_hpa: u64,
    /// Device-tree nodes (by name) the guest must not see.
    hide: &'static [&'static str],
}

/// The WIDE run on AArch64: the high ECAM (host 0x40_1000_0000, inside the
/// first 2^39 bytes) is moved to this GPA in the second concatenated root,
/// and the high PCIe MMIO window (0x80_0000_0000, 512 GiB) cut to half so
/// the two do not overlap.
const HIGH_ECAM: (u64, u64) = (0x40_1000_0000, 0x1000_0000);
const HIGH_ECAM_GPA: u64 = 0xc0_1000_0000;
const HIGH_MMIO: (u64, u64) = (0x80_0000_0000, 0x80_0000_0000);

const AARCH64: Arch = Arch {
    dir: "uboot-aarch64",
    target: "aarch64-unknown-none",
    qemu: "qemu-system-aarch64",
    machine: &["-cpu", "cortex-a57", "-m", "512M"],
    uboot: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
    ram_gpa: 0x4000_0000,
    uboot_off: 0x20_0000,
    dtb_off: 0,
    config_hpa: 0x5fff_f000,
    hide: &["fw-cfg@9020000"],
};

const RISCV64: Arch = Arch {
    dir: "uboot-riscv64",
    target: "riscv64gc-unknown-none-elf",
    qemu: "qemu-system-riscv64",
    machine: &[
        "-M",
        "virt",
        "-cpu",
        "rv64,h=true,svpbmt=true",
        "-m",
        "512M",
        "-bios",
        "none",
    ],
    uboot: "/usr/lib/u-boot/qemu-riscv64_smode/u-boot.bin",
    ram_gpa: 0x8000_0000,
    uboot_off: 0x20_0000,
    dtb_off: 0,
    config_hpa: 0x9fff_f000,
    // The test device (and the syscon poweroff/reboot nodes that use it):
    // U-Boot then powers off through SBI system reset.
    hide: &["fw-cfg@10100000", "test@100000", "poweroff", "reboot"],
};

struct Variant {
    name: &'static str,
    /// Extra `-M` arguments.
    machine: &'static str,
    ram_hpa: u64,
    flags: u64,
}

#[test]
fn aarch64_uboot_under_stage2() {
    run(
        &AARCH64,
        &[
            Variant {
                name: "Stage2Ipa39, 2 MiB blocks",
                machine: "virt,virtualization=on,highmem=off",
                ram_hpa: 0x4800_0000,
                flags: HUGE,
            },
            Variant {
                name: "Stage2Ipa39, 4 KiB pages (host address not 2 MiB aligned)",
                machine: "virt,virtualization=on,highmem=off",
                ram_hpa: 0x4c00_3000,
                flags: 0,
            },
            Variant {
                name: "Stage2Ipa40, high PCIe windows",
                machine: "virt,virtualization=on,highmem=on",
                ram_hpa: 0x5200_0000,
                flags: HUGE | WIDE,
            },
        ],
    );
}

#[test]
fn riscv64_uboot_under_sv39x4() {
    run(
        &RISCV64,
        &[
            Variant {
                name: "Sv39x4, 2 MiB pages",
                machine: "",
                ram_hpa: 0x8800_0000,
                flags: HUGE,
            },
            Variant {
                name: "Sv39x4, 4 KiB pages (host address not 2 MiB aligned)",
                machine: "",
                ram_hpa: 0x8c00_5000,
                flags: 0,
            },
        ],
    );
}

fn run(arch: &Arch, variants: &[Variant]) {
    let missing = match Command::new(arch.qemu).arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(format!("{} not installed", arch.qemu))
        }
        Err(e) => panic!("cannot run {} --version: {e}", arch.qemu),
        Ok(_) if !Path::new(arch.uboot).is_file() => {
            Some(format!("{} missing (package u-boot-qemu)", arch.uboot))
        }
        Ok(_) => None,
    };
    if let Some(why) = missing {
        assert!(
            !ci(),
            "{why}, and CI is set: the U-Boot tests must run in CI"
        );
        println!("SKIPPED: {why}");
        return;
    }
    let elf = build_hv(arch.dir, arch.target);
    let out_dir = workspace_root().join("target/uboot");
    std::fs::create_dir_all(&out_dir).expect("creating target/uboot");
    let mut problems = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let tag = format!("{}-{i}", arch.dir);
        let found = run_variant(arch, v, &elf, &out_dir, &tag);
        problems.extend(found.into_iter().map(|p| format!("[{}] {p}", v.name)));
    }
    assert!(
        problems.is_empty(),
        "U-Boot under {}:\n  {}",
        arch.dir,
        problems.join("\n  ")
    );
}

/// No default devices (none with DMA behind virtio-mmio or PCIe), the
/// serial console on stdin/stdout.
const CONSOLE: [&str; 7] = [
    "-nodefaults",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
];

/// The machine's arguments for a variant.
fn machine_args(arch: &Arch, v: &Variant) -> Vec<String> {
    let mut args = Vec::new();
    if !v.machine.is_empty() {
        args.extend(["-M".to_string(), v.machine.to_string()]);
    }
    args.extend(arch.machine.iter().chain(&CONSOLE).map(|s| s.to_string()));
    args
}

fn run_variant(arch: &Arch, v: &Variant, elf: &Path, out_dir: &Path, tag: &str) -> Vec<String> {
    // QEMU's device tree for this machine, patched for the guest.
    let raw = out_dir.join(format!("{tag}.qemu.dtb"));
    let st = Command::new(arch.qemu)
        .args(machine_args(arch, v))
        .arg("-machine")
        .arg(format!("dumpdtb={}", raw.display()))
        .output()
        .expect("running QEMU to dump its device tree");
    assert!(st.status.success(), "dumpdtb failed: {st:?}");
    let mut dtb = std::fs::read(&raw).expect("reading the dumped device tree");
    if let Err(e) = patch_dtb(&mut dtb, arch, v.flags & WIDE != 0) {
        return vec![format!("patching the device tree: {e}")];
    }
    let dtb_path = out_dir.join(format!("{tag}.dtb"));
    std::fs::write(&dtb_path, &dtb).expect("writing the device tree");

    let marker = marker();
    let loader = |what: String| ["-device".to_string(), format!("loader,{what}")];
    let mut args = machine_args(arch, v);
    args.push("-kernel".into());
    args.push(elf.display().to_string());
    if arch.dir.contains("aarch64") {
        args.push("-semihosting".into());
    }
    args.extend(loader(format!(
        "file={},addr={:#x},force-raw=on",
        dtb_path.display(),
        v.ram_hpa + arch.dtb_off
    )));
    args.extend(loader(format!(
        "file={},addr={:#x},force-raw=on",
        arch.uboot,
        v.ram_hpa + arch.uboot_off
    )));
    for (i, word) in [MAGIC, v.ram_hpa, v.flags, marker as u64]
        .iter()
        .enumerate()
    {
        args.extend(loader(format!(
            "addr={:#x},data={word:#x},data-len=8",
            arch.config_hpa + 8 * i as u64
        )));
    }

    let plant = arch.ram_gpa + PLANT_OFF;
    let mark = arch.ram_gpa + MARK_OFF;
    let mut commands = vec![
        "version".to_string(),
        format!("md.l {plant:x} 4"),
        format!("mw.l {mark:x} {marker:x}"),
        format!("md.l {mark:x} 1"),
    ];
    if v.flags & WIDE != 0 {
        commands.push("pci".into());
    }
    commands.push("poweroff".into());

    let mut cmd = Command::new(arch.qemu);
    cmd.args(&args);
    println!("---- {} {}", arch.qemu, args.join(" "));
    let s = converse(cmd, &commands);
    println!("---- {} ({:.2?})", v.name, s.took);
    if !show() {
        print!("{}", s.output);
    }

    let mut problems = check_verdicts(&s.output, EXPECTED);
    match s.status {
        None => problems.insert(0, format!("timed out after {TIMEOUT:?} and was killed")),
        Some(st) if st.code() != Some(0) && problems.is_empty() => {
            problems.push(format!("QEMU exit status {st} disagrees with the verdicts"))
        }
        Some(_) => {}
    }
    if let Some(e) = &s.stalled {
        problems.push(e.clone());
    }
    let out = &s.output;
    let hpa = v.ram_hpa;
    let mut want = vec![
        // The banner (U-Boot's first line) and the prompt after it.
        ("the banner", "\nU-Boot 20".to_string()),
        ("the prompt", "\n=> ".to_string()),
        // `version` prints the banner again.
        ("`version`", "=> version\nU-Boot 20".to_string()),
        (
            "the planted words",
            format!(
                "{plant:08x}: {PLANT0:08x} {:08x} {:08x} {:08x}",
                hpa & 0xffff_ffff,
                hpa >> 32,
                !marker
            ),
        ),
        ("the marker read back", format!("{mark:08x}: {marker:08x}")),
    ];
    if v.flags & WIDE != 0 {
        // The PCIe host bridge (Red Hat 1b36:0008), read through the high
        // ECAM.
        want.push(("`pci`", "00.00.00   0x1b36     0x0008".to_string()));
    }
    for (what, text) in want {
        if !out.contains(&text) {
            problems.push(format!("{what} missing: no {text:?} in the console output"));
        }
    }
    problems
}

fn show() -> bool {
    std::env::var("NPT_UBOOT_SHOW").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A marker that differs between runs.
fn marker() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let m = (t ^ (t >> 29) ^ std::process::id() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (m >> 32) as u32 | 0x1000_0000
}

struct Session {
    status: Option<std::process::ExitStatus>,
    output: String,
    took: Duration,
    /// Why the conversation stopped early, if it did.
    stalled: Option<String>,
}

/// Runs `cmd`, answering U-Boot's console: a key at the autoboot countdown,
/// then each command after a prompt. Kills QEMU after TIMEOUT.
fn converse(mut cmd: Command, commands: &[String]) -> Session {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start QEMU: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });

    // What to wait for, and what to send then.
    let mut script: Vec<(String, String)> = vec![("autoboot".into(), " ".into())];
    script.extend(
        commands
            .iter()
            .map(|c| ("\n=> ".to_string(), format!("{c}\n"))),
    );
    let mut step = 0;
    let mut seen = 0; // output before this index is consumed by the script
    let mut out = Vec::<u8>::new();
    let mut status = None;
    let mut stalled = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(chunk) => {
                if show() {
                    let _ = std::io::stdout().write_all(&chunk);
                    let _ = std::io::stdout().flush();
                }
                out.extend(chunk.iter().filter(|b| **b != b'\r'));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                status = child.wait().ok();
                break;
            }
        }
        while let Some((wait, send)) = script.get(step) {
            let Some(at) = find(&out[seen..], wait.as_bytes()) else {
                break;
            };
            seen += at + wait.len();
            if input
                .write_all(send.as_bytes())
                .and_then(|()| input.flush())
                .is_err()
            {
                stalled = Some(format!("QEMU's stdin closed before {send:?}"));
            }
            step += 1;
        }
        if let Ok(Some(st)) = child.try_wait() {
            status = Some(st);
            break;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
    }
    drop(input);
    let _ = reader.join();
    while let Ok(chunk) = rx.try_recv() {
        out.extend(chunk.iter().filter(|b| **b != b'\r'));
    }
    if step < script.len() && stalled.is_none() {
        stalled = Some(format!(
            "the console stopped before {:?} was sent (waiting for {:?})",
            script[step].1, script[step].0
        ));
    }
    let mut output = String::from_utf8_lossy(&out).into_owned();
    let err = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if !err.trim().is_empty() {
        output.push_str("\n[stderr]\n");
        output.push_str(&err);
    }
    Session {
        status,
        output,
        took: start.elapsed(),
        stalled,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ------------------------------------------------------------- device tree

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

fn be32(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes(s.try_into().unwrap()))
        .ok_or_else(|| format!("device tree truncated at {at:#x}"))
}

/// One node in the structure block: its name and where its tokens start
/// and end (after its FDT_END_NODE).
struct Node {
    name: String,
    depth: usize,
    start: usize,
    end: usize,
    /// Properties: name, value offset, value length.
    props: Vec<(String, usize, usize)>,
}

/// Every node of a flattened device tree (v17), in order.
fn nodes(dtb: &[u8]) -> Result<Vec<Node>, String> {
    if be32(dtb, 0)? != FDT_MAGIC {
        return Err("not a flattened device tree".into());
    }
    let off_struct = be32(dtb, 8)? as usize;
    let off_strings = be32(dtb, 12)? as usize;
    let cstr = |at: usize| -> Result<String, String> {
        let s = dtb.get(at..).ok_or("string offset out of range")?;
        let n = s
            .iter()
            .position(|b| *b == 0)
            .ok_or("unterminated string")?;
        Ok(String::from_utf8_lossy(&s[..n]).into_owned())
    };
    let mut all = Vec::new();
    let mut open: Vec<Node> = Vec::new();
    let mut at = off_struct;
    loop {
        let token = be32(dtb, at)?;
        let here = at;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(at)?;
                at += (name.len() + 1).next_multiple_of(4);
                open.push(Node {
                    name,
                    depth: open.len(),
                    start: here,
                    end: 0,
                    props: Vec::new(),
                });
            }
            FDT_END_NODE => {
                let mut n = open.pop().ok_or("unbalanced FDT_END_NODE")?;
                n.end = at;
                all.push(n);
            }
            FDT_PROP => {
                let len = be32(dtb, at)? as usize;
                let name = cstr(off_strings + be32(dtb, at + 4)? as usize)?;
                let n = open.last_mut().ok_or("property outside a node")?;
                n.props.push((name, at + 8, len));
                at += 8 + len.next_multiple_of(4);
            }
            FDT_NOP => {}
            FDT_END if open.is_empty() => break,
            t => return Err(format!("token {t:#x} at {here:#x}")),
        }
    }
    all.sort_by_key(|n| n.start);
    Ok(all)
}

/// In place (no size changes): `/memory`'s `reg` becomes guest RAM (its
/// base must already be the guest's), and the nodes to hide become NOPs.
fn patch_dtb(dtb: &mut [u8], arch: &Arch, wide: bool) -> Result<(), String> {
    let list = nodes(dtb)?;
    if wide {
        move_high_ecam(dtb, &list)?;
    }
    let mem_name = format!("memory@{:x}", arch.ram_gpa);
    let mem = list
        .iter()
        .find(|n| n.depth == 1 && n.name == mem_name)
        .ok_or_else(|| format!("no /{mem_name} node"))?;
    let &(_, reg, len) = mem
        .props
        .iter()
        .find(|p| p.0 == "reg")
        .ok_or("no reg in /memory")?;
    if len != 16 || dtb[reg..reg + 8] != arch.ram_gpa.to_be_bytes() {
        return Err(format!(
            "/memory reg is not <{:#x} size> (2 cells each)",
            arch.ram_gpa
        ));
    }
    dtb[reg + 8..reg + 16].copy_from_slice(&RAM_SIZE.to_be_bytes());
    for name in arch.hide {
        let n = list
            .iter()
            .find(|n| n.name == *name)
            .ok_or_else(|| format!("no node {name} to hide"))?;
        for w in (n.start..n.end).step_by(4) {
            dtb[w..w + 4].copy_from_slice(&FDT_NOP.to_be_bytes());
        }
    }
    // Check the result parses and the nodes are gone.
    let after = nodes(dtb)?;
    match arch
        .hide
        .iter()
        .find(|h| after.iter().any(|n| n.name == **h))
    {
        Some(h) => Err(format!("{h} still present")),
        None => Ok(()),
    }
}

/// The WIDE run's `pcie` node: `reg` (the ECAM) at HIGH_ECAM_GPA, and the
/// 64-bit MMIO range of `ranges` (child 3 cells, parent 2, size 2) halved.
fn move_high_ecam(dtb: &mut [u8], list: &[Node]) -> Result<(), String> {
    let pcie = list
        .iter()
        .find(|n| n.depth == 1 && n.name.starts_with("pcie@"))
        .ok_or("no /pcie node")?;
    let prop = |name: &str| {
        pcie.props
            .iter()
            .find(|p| p.0 == name)
            .map(|p| (p.1, p.2))
            .ok_or_else(|| format!("no {name} in /pcie"))
    };
    let u64_at = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let (reg, len) = prop("reg")?;
    if len != 16 || (u64_at(dtb, reg), u64_at(dtb, reg + 8)) != HIGH_ECAM {
        return Err(format!(
            "/pcie reg is not the high ECAM {HIGH_ECAM:x?} (QEMU needs highmem=on)"
        ));
    }
    dtb[reg..reg + 8].copy_from_slice(&HIGH_ECAM_GPA.to_be_bytes());
    let (ranges, len) = prop("ranges")?;
    let entry = (0..len / 28)
        .map(|i| ranges + 28 * i)
        .find(|&e| (u64_at(dtb, e + 12), u64_at(dtb, e + 20)) == HIGH_MMIO)
        .ok_or_else(|| format!("no high MMIO range {HIGH_MMIO:x?} in /pcie ranges"))?;
    dtb[entry + 20..entry + 28].copy_from_slice(&(HIGH_MMIO.1 / 2).to_be_bytes());
    Ok(())
}

#[test]
fn dtb_patch_on_a_handmade_tree() {
    // / { memory@40000000 { reg = <0 0x40000000 0 0x20000000>; }; fw-cfg@9020000 { x; }; };
    let mut s: Vec<u8> = Vec::new();
    let w = |s: &mut Vec<u8>, v: u32| s.extend(v.to_be_bytes());
    w(&mut s, FDT_BEGIN_NODE);
    w(&mut s, 0);
    w(&mut s, FDT_BEGIN_NODE);
    s.extend(b"memory@40000000\0");
    w(&mut s, FDT_PROP);
    w(&mut s, 16);
    w(&mut s, 0);
    s.extend([0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0]);
    w(&mut s, FDT_END_NODE);
    w(&mut s, FDT_BEGIN_NODE);
    s.extend(b"fw-cfg@9020000\0\0");
    w(&mut s, FDT_PROP);
    w(&mut s, 0);
    w(&mut s, 4);
    w(&mut s, FDT_END_NODE);
    w(&mut s, FDT_END_NODE);
    w(&mut s, FDT_END);
    let strings = b"reg\0x\0";
    let mut dtb = Vec::new();
    for v in [
        FDT_MAGIC,
        0,
        40,
        40 + s.len() as u32,
        0,
        17,
        16,
        0,
        6,
        s.len() as u32,
    ] {
        w(&mut dtb, v);
    }
    dtb.extend(&s);
    dtb.extend(strings);
    let total = dtb.len() as u32;
    dtb[4..8].copy_from_slice(&total.to_be_bytes());
    patch_dtb(&mut dtb, &AARCH64, false).unwrap();
    let list = nodes(&dtb).unwrap();
    assert_eq!(list.len(), 2, "root and memory remain");
    let (_, reg, _) = list[1].props[0];
    assert_eq!(dtb[reg + 8..reg + 16], RAM_SIZE.to_be_bytes());
    assert!(
        patch_dtb(&mut dtb, &AARCH64, false).is_err(),
        "fw-cfg is gone now"
    );
}
