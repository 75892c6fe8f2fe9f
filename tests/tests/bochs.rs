//! Intel EPT on an independent implementation: builds the VMX test
//! hypervisor (`tests/hv/x86_64-vmx`, a `no_std` binary using npt's
//! public API), turns it into a boot disk, runs it in Bochs (whose CPU
//! models implement VMX with EPT; QEMU's TCG has none) and checks the
//! verdict lines it writes to port 0xE9.
//!
//! Without Bochs the test prints `SKIPPED: ...` and passes, unless the
//! `CI` environment variable is set (then it fails). Debian packages:
//! `bochs bochs-term bochsbios vgabios`.
//!
//! Run it with its output: `cargo test -p npt-tests --test bochs -- --nocapture`.

use npt_tests::runner::{build_hv, check_verdicts, ci, run_with_timeout, workspace_root};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A run takes about a second; Bochs is killed after this.
const BOCHS_TIMEOUT: Duration = Duration::from_secs(60);

const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const VGA_BIOS: &str = "/usr/share/vgabios/vgabios.bin";

/// Where the BIOS loads the boot sector, and the image's link address.
const LOAD_ADDR: u64 = 0x7c00;
/// The disk's geometry: 2 cylinders of 16 heads of 63 sectors (1008 KiB).
const CYLINDERS: u64 = 2;
const HEADS: u64 = 16;
const SECTORS: u64 = 63;

const EXPECTED: &[&str] = &[
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
    "gpa_bit39",
    "ept_qualification",
    "gpa_below_4g",
    "ept_misconfig",
    "ept_ad",
    "hw_dirty_log",
    "hw_young",
    "execute_only",
    "vpid_remap_flush",
    "frames_freed",
];

#[test]
fn x86_64_vmx_ept4_under_bochs() {
    let bochs = match Command::new("bochs").arg("--help").output() {
        Ok(_) => "bochs",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                !ci(),
                "bochs is not installed, and CI is set: the Bochs test must run in CI \
                 (apt-get install bochs bochs-term bochsbios vgabios)"
            );
            println!("SKIPPED: bochs not installed");
            return;
        }
        Err(e) => panic!("cannot run bochs: {e}"),
    };
    for file in [BIOS, VGA_BIOS] {
        assert!(
            Path::new(file).is_file() || !ci(),
            "{file} is missing (packages bochsbios, vgabios)"
        );
        if !Path::new(file).is_file() {
            println!("SKIPPED: {file} missing");
            return;
        }
    }
    let elf = build_hv("x86_64-vmx", "x86_64-unknown-none");
    let dir = workspace_root().join("target/hv/bochs");
    std::fs::create_dir_all(&dir).expect("creating target/hv/bochs");
    let disk = dir.join("disk.img");
    let image = boot_image(&std::fs::read(&elf).expect("reading the hypervisor ELF"));
    std::fs::write(&disk, &image).expect("writing the disk image");
    let rc = dir.join("bochsrc");
    std::fs::write(&rc, bochsrc(&disk, &dir.join("bochs.log"))).expect("writing bochsrc");
    let commands = dir.join("commands");
    // The debugger is compiled into Debian's Bochs: `c` continues.
    std::fs::write(&commands, "c\n").expect("writing the debugger commands");

    let mut cmd = Command::new(bochs);
    cmd.arg("-q")
        .arg("-f")
        .arg(&rc)
        .arg("-rc")
        .arg(&commands)
        .current_dir(&dir);
    let run = run_with_timeout(cmd, b"", BOCHS_TIMEOUT);
    println!(
        "---- bochs -q -f {} -rc {} ({:.2?}, status {:?})",
        rc.display(),
        commands.display(),
        run.took,
        run.status
    );
    let output = console(&run.output);
    print!("{output}");
    let mut problems = check_verdicts(&output, EXPECTED);
    if run.status.is_none() {
        problems.insert(
            0,
            format!("timed out after {BOCHS_TIMEOUT:?} and was killed"),
        );
    }
    assert!(
        problems.is_empty(),
        "x86_64-vmx test hypervisor under Bochs (log: {}):\n  {}",
        dir.join("bochs.log").display(),
        problems.join("\n  ")
    );
}

/// Bochs's configuration: a Haswell (VMX with EPT, 1 GiB EPT pages and
/// EPT A/D; Sandy and Ivy Bridge models lack both), 128 MiB, the disk, port
/// 0xE9 to stdout, no display to speak of, and no real-time clock sync.
fn bochsrc(disk: &Path, log: &Path) -> String {
    format!(
        "megs: 128
cpu: model=corei7_haswell_4770, count=1, ips=100000000, reset_on_triple_fault=0
romimage: file={BIOS}
vgaromimage: file={VGA_BIOS}
ata0-master: type=disk, path={}, mode=flat, cylinders={CYLINDERS}, heads={HEADS}, spt={SECTORS}
boot: disk
port_e9_hack: enabled=1
display_library: term
clock: sync=none
log: {}
",
        disk.display(),
        log.display()
    )
}

/// The lines the hypervisor wrote to port 0xE9, out of everything Bochs
/// printed (its term display draws on the same stdout with escape
/// sequences): from the first line that starts with "npt test hypervisor"
/// or "PANIC", each line cut at its first escape character.
fn console(all: &str) -> String {
    let mut out = String::new();
    for line in all.lines() {
        let line = line.split('\x1b').next().unwrap_or("");
        let start = ["npt test hypervisor", "VERDICT", "DONE", "PANIC", "INFO"]
            .iter()
            .filter_map(|p| line.find(p))
            .min();
        if let Some(i) = start {
            out.push_str(&line[i..]);
            out.push('\n');
        } else if !out.is_empty() && !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The boot disk: the ELF's loadable bytes from LOAD_ADDR on (the boot
/// sector first), padded to the disk's size. Segments below LOAD_ADDR
/// must be the ELF headers lld maps with the first segment; bytes that
/// exist only in memory (.bss) are not on the disk.
fn boot_image(elf: &[u8]) -> Vec<u8> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not a 64-bit ELF");
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    let size = (CYLINDERS * HEADS * SECTORS * 512) as usize;
    let mut disk = vec![0u8; size];
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let (ty, offset, paddr, filesz) = (
            u32_at(ph),
            u64_at(ph + 8),
            u64_at(ph + 0x18),
            u64_at(ph + 0x20),
        );
        if ty != 1 || filesz == 0 {
            continue; // not PT_LOAD, or nothing on disk
        }
        if paddr < LOAD_ADDR {
            assert!(
                offset == 0 && paddr + filesz <= LOAD_ADDR,
                "a loadable segment at {paddr:#x} lies below the boot sector"
            );
            continue; // the ELF headers
        }
        let at = (paddr - LOAD_ADDR) as usize;
        let bytes = &elf[offset as usize..(offset + filesz) as usize];
        assert!(at + bytes.len() <= size, "the image does not fit the disk");
        disk[at..at + bytes.len()].copy_from_slice(bytes);
    }
    assert_eq!(&disk[510..512], [0x55, 0xaa], "no boot signature at 0x7dfe");
    disk
}
