//! A bare-metal test hypervisor for QEMU `virt` (AArch64, EL2) that runs
//! Debian's unmodified U-Boot (`qemu_arm64`) at EL1 under stage-2 tables
//! npt builds: guest RAM at GPA 0x4000_0000 backed by another host-physical
//! range, the device windows U-Boot uses mapped DEVICE and not executable,
//! fw_cfg left out (its DMA would bypass stage 2).
//!
//! The runner (`tests/tests/uboot.rs`) loads U-Boot and a patched device
//! tree at the host address backing guest RAM and plants the configuration
//! (`common/uboot.rs`). U-Boot's `poweroff` is a PSCI SYSTEM_OFF SMC, which
//! HCR_EL2.TSC traps: the hypervisor then checks its table and the marker
//! U-Boot wrote, prints its verdicts and ends the run through semihosting
//! (exit status 0 when every verdict passed).

#![no_std]
#![no_main]

#[path = "../../common/aarch64.rs"]
#[macro_use]
mod platform;
#[path = "../../common/frames.rs"]
mod frames;
#[path = "../../common/report.rs"]
#[macro_use]
#[allow(dead_code)] // the pattern helpers are for the scenario hypervisors
mod report;
#[path = "../../common/uboot.rs"]
mod uboot;

use core::arch::{asm, global_asm};
use npt::aarch64::{Stage2Ipa39, Stage2Ipa40, Stage2Params};
use npt::Format;
use report::Report;
use uboot::{Config, Table, Window};

// _start (stack, BSS, CPTR_EL2) from the plain hypervisor; its vectors are
// replaced by uv_vectors before the guest runs.
global_asm!(include_str!("../../aarch64/src/boot.s"), options(raw));
global_asm!(include_str!("switch.s"), options(raw));

/// Host RAM with `-m 512M`.
const HOST_RAM: (usize, usize) = (0x4000_0000, 0x6000_0000);
/// Where the runner plants the configuration (the top of host RAM).
const CONFIG_HPA: usize = 0x5fff_f000;
/// Guest RAM and U-Boot's load address in it (CONFIG_TEXT_BASE).
const RAM_GPA: u64 = 0x4000_0000;
const UBOOT_GPA: u64 = 0x4020_0000;

/// QEMU virt's device windows (`highmem=off`), each at its own address:
/// flash (two 64 MiB banks), the PL011, the virtio-mmio transports, and
/// PCIe MMIO, PIO and ECAM (0x1000_0000..0x4000_0000). Not mapped: the GIC
/// (U-Boot does not use it), RTC, GPIO, and fw_cfg at 0x0902_0000.
const LOW_WINDOWS: [Window; 4] = [
    (0x0000_0000, 0x0000_0000, 0x0800_0000),
    (0x0900_0000, 0x0900_0000, 0x1000),
    (0x0a00_0000, 0x0a00_0000, 0x4000),
    (0x1000_0000, 0x1000_0000, 0x3000_0000),
];
/// With `highmem=on` (the Stage2Ipa40 run) also the high PCIe windows, both
/// in the second concatenated root (2^39..2^40): the high ECAM (host
/// 0x40_1000_0000) moved to GPA 0xc0_1000_0000, and the first half of the
/// high MMIO window at its own address (the runner patches the device
/// tree's `pcie` node to match).
const WIDE_WINDOWS: [Window; 6] = [
    LOW_WINDOWS[0],
    LOW_WINDOWS[1],
    LOW_WINDOWS[2],
    LOW_WINDOWS[3],
    (0xc0_1000_0000, 0x40_1000_0000, 0x1000_0000),
    (0x80_0000_0000, 0x80_0000_0000, 1 << 38),
];

use platform::exit;
pub use platform::putc;

/// The guest's registers (`switch.s`).
#[repr(C, align(16))]
struct Ctx {
    x: [u64; 31],
    pc: u64,
    spsr: u64,
    _pad: u64,
    q: [u128; 32],
}

extern "C" {
    fn uv_enter(ctx: *mut Ctx);
    static uv_vectors: u8;
    static __stack_top: u8;
}

// PSCI 1.0 function IDs (SMC32 and SMC64 calling conventions).
const PSCI_VERSION: u64 = 0x8400_0000;
const PSCI_FEATURES: u64 = 0x8400_000a;
const SYSTEM_OFF: u64 = 0x8400_0008;
const SYSTEM_RESET: u64 = 0x8400_0009;
const NOT_SUPPORTED: u64 = -1i64 as u64;

#[no_mangle]
extern "C" fn hv_main() -> ! {
    msr!("vbar_el2", (&raw const uv_vectors) as u64);
    println!(
        "npt U-Boot hypervisor, aarch64, EL{}",
        (mrs!("CurrentEL") >> 2) & 3
    );
    let mut rep = Report::default();
    let own = (0x4010_0000, (&raw const __stack_top) as usize);
    let c = match uboot::config(CONFIG_HPA, HOST_RAM, own) {
        Ok(c) => c,
        Err(e) => fail(&mut rep, "config", format_args!("{e}")),
    };
    let pa_bits = match mrs!("id_aa64mmfr0_el1") & 0xf {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    };
    if c.wide() {
        guest::<Stage2Ipa40>(&mut rep, &c, pa_bits, 2, &WIDE_WINDOWS)
    } else {
        guest::<Stage2Ipa39>(&mut rep, &c, pa_bits, 1, &LOW_WINDOWS)
    }
}

/// Reports a failure that ends the run.
fn fail(rep: &mut Report, name: &str, detail: core::fmt::Arguments) -> ! {
    rep.verdict(name, false, detail);
    rep.done();
    exit(1)
}

/// The stage-2 registers of a format.
trait Stage2: Format<Params = Stage2Params> + Sized {
    fn vtcr(t: &Table<Self>) -> Result<u64, npt::Error>;
}

impl Stage2 for Stage2Ipa39 {
    fn vtcr(t: &Table<Self>) -> Result<u64, npt::Error> {
        Stage2Ipa39::vtcr_el2(t.root_paddr(), t.params())
    }
}

impl Stage2 for Stage2Ipa40 {
    fn vtcr(t: &Table<Self>) -> Result<u64, npt::Error> {
        Stage2Ipa40::vtcr_el2(t.root_paddr(), t.params())
    }
}

/// Builds the table, runs U-Boot until it powers off, then checks.
fn guest<F: Stage2>(
    rep: &mut Report,
    c: &Config,
    pa_bits: u64,
    vmid: u64,
    windows: &[Window],
) -> ! {
    let mut t = match Table::<F>::try_new_with(Stage2Params { vmid, pa_bits, hafdbs: 0 }) {
        Ok(t) => t,
        Err(e) => fail(rep, "stage2_map", format_args!("{} table: {e}", F::NAME)),
    };
    let mapped =
        uboot::map_ram(&mut t, RAM_GPA, c).and_then(|()| uboot::map_devices(&mut t, windows));
    let vtcr = F::vtcr(&t);
    let (vtcr, ()) = match (vtcr, mapped) {
        (Ok(v), Ok(())) => (v, ()),
        (v, m) => fail(
            rep,
            "stage2_map",
            format_args!("VTCR_EL2 {v:x?}, maps {m:?}"),
        ),
    };
    let vttbr = t.root_register();
    println!(
        "{}: VTTBR_EL2={vttbr:#x} VTCR_EL2={vtcr:#x}; guest RAM gpa {RAM_GPA:#x} -> hpa {:#x}, {} MiB, huge={}; frames used {}",
        F::NAME,
        c.ram_hpa,
        uboot::RAM_SIZE >> 20,
        c.huge(),
        frames::Frames::live()
    );
    uboot::plant(c);

    msr!("vtcr_el2", vtcr);
    msr!("vttbr_el2", vttbr);
    // SAFETY: stage-2 TLB maintenance at EL2 for the new VMID.
    unsafe { asm!("tlbi vmalls12e1", "dsb sy", "isb", options(nostack)) };
    msr!("vpidr_el2", mrs!("midr_el1"));
    msr!("vmpidr_el2", mrs!("mpidr_el1"));
    msr!("cnthctl_el2", 3); // EL1PCTEN, EL1PCEN: the guest's timer
    msr!("cntvoff_el2", 0);
    msr!("sctlr_el1", 0x30d0_0800); // MMU and caches off, as at reset
                                    // VM (stage 2), SWIO, TSC (trap SMC: PSCI), RW (EL1 is AArch64).
    msr!("hcr_el2", 1 | 1 << 1 | 1 << 19 | 1 << 31);

    let mut ctx = Ctx {
        x: [0; 31],
        pc: UBOOT_GPA,
        spsr: 0x3c5, // EL1h, D A I F masked
        _pad: 0,
        q: [0; 32],
    };
    ctx.x[0] = RAM_GPA; // the device tree (U-Boot also finds it there by itself)
    let (mut smcs, mut hvcs) = (0u32, 0u32);
    loop {
        // SAFETY: VTTBR_EL2 holds a table mapping the guest's RAM and
        // devices; every guest exit comes back through uv_vectors.
        unsafe { uv_enter(&mut ctx) };
        let esr = mrs!("esr_el2");
        let ec = esr >> 26;
        match ec {
            // SMC (the trapped instruction's address is in ELR_EL2) or HVC.
            0x17 | 0x16 => {
                if ec == 0x17 {
                    ctx.pc += 4;
                    smcs += 1;
                } else {
                    hvcs += 1;
                }
                let func = ctx.x[0] & 0xffff_ffff & !(1 << 30); // SMC64 -> SMC32 ID
                match func {
                    PSCI_VERSION => ctx.x[0] = 0x1_0000, // 1.0
                    PSCI_FEATURES => ctx.x[0] = NOT_SUPPORTED,
                    SYSTEM_OFF => {
                        let how = if ec == 0x17 { "SMC" } else { "HVC" };
                        rep.verdict(
                            "uboot_poweroff",
                            true,
                            format_args!(
                                "PSCI SYSTEM_OFF by {how} at gpa {:#x}; {smcs} SMC and {hvcs} HVC exits, no stage-2 fault",
                                ctx.pc - 4
                            ),
                        );
                        uboot::finish(rep, &t, RAM_GPA, c, windows);
                        rep.done();
                        exit(if rep.fail == 0 { 0 } else { 1 })
                    }
                    SYSTEM_RESET => fail(
                        rep,
                        "uboot_poweroff",
                        format_args!("PSCI SYSTEM_RESET at gpa {:#x}", ctx.pc - 4),
                    ),
                    _ => ctx.x[0] = NOT_SUPPORTED,
                }
            }
            0x24 | 0x20 => {
                let gpa =
                    ((mrs!("hpfar_el2") & 0x0000_ffff_ffff_fff0) << 8) | (mrs!("far_el2") & 0xfff);
                fail(
                    rep,
                    "uboot_poweroff",
                    format_args!(
                        "stage-2 {} abort at gpa {gpa:#x}, esr={esr:#x}, pc={:#x}",
                        if ec == 0x24 { "data" } else { "instruction" },
                        ctx.pc
                    ),
                )
            }
            _ => fail(
                rep,
                "uboot_poweroff",
                format_args!("unexpected exit esr={esr:#x} pc={:#x}", ctx.pc),
            ),
        }
    }
}
