//! A bare-metal test hypervisor for QEMU `virt` (RV64 with the hypervisor
//! extension) that runs Debian's unmodified U-Boot (`qemu-riscv64_smode`)
//! in VS-mode under an Sv39x4 G-stage table npt builds: guest RAM at GPA
//! 0x8000_0000 backed by another host-physical range, the device windows
//! U-Boot uses mapped DEVICE (Svpbmt IO) and not executable; fw_cfg (its
//! DMA would bypass the G-stage) and the test device (the guest's own
//! poweroff would end QEMU before the hypervisor could check) left out.
//!
//! M-mode setup as in `riscv64/` (`common/riscv64.rs`), then HS-mode. The hypervisor is the
//! guest's SBI: the Base extension and System Reset; every other call is
//! answered "not supported". U-Boot's `poweroff` is an SBI system reset
//! (shutdown): the hypervisor then checks its table and the marker U-Boot
//! wrote, prints its verdicts and ends the run through the test device
//! (exit status 0 when every verdict passed).

#![no_std]
#![no_main]

#[path = "../../common/riscv64.rs"]
#[macro_use]
#[allow(dead_code)] // MISA and MENVCFG are for the scenario hypervisor
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
use npt::riscv::{Sv39x4, Sv39x4Params};
use report::Report;
use uboot::{Table, Window};

// _start, M-mode's trap stub and hs_entry from the plain hypervisor; its
// HS trap vector is replaced by uv_trap before the guest runs.
global_asm!(include_str!("../../riscv64/src/boot.s"), options(raw));
global_asm!(include_str!("switch.s"), options(raw));

/// Host RAM with `-m 512M`.
const HOST_RAM: (usize, usize) = (0x8000_0000, 0xa000_0000);
/// Where the runner plants the configuration (the top of host RAM).
const CONFIG_HPA: usize = 0x9fff_f000;
/// Guest RAM, U-Boot's load address in it (CONFIG_TEXT_BASE; this U-Boot
/// is not position independent) and the device tree's.
const RAM_GPA: u64 = 0x8000_0000;
const UBOOT_GPA: u64 = 0x8020_0000;
const DTB_GPA: u64 = 0x8000_0000;

/// QEMU virt's device windows U-Boot uses, each at its own address: the
/// 16550, the virtio-mmio transports, PCIe PIO, flash (two 32 MiB banks),
/// ECAM, and the low and high PCIe MMIO windows. Not mapped: the test
/// device, the RTC, CLINT and PLIC (S-mode U-Boot uses SBI and no
/// interrupts), fw_cfg.
const WINDOWS: [Window; 7] = [
    (0x1000_0000, 0x1000_0000, 0x1000),
    (0x1000_1000, 0x1000_1000, 0x8000),
    (0x0300_0000, 0x0300_0000, 0x1_0000),
    (0x2000_0000, 0x2000_0000, 0x0400_0000),
    (0x3000_0000, 0x3000_0000, 0x1000_0000),
    (0x4000_0000, 0x4000_0000, 0x4000_0000),
    (0x4_0000_0000, 0x4_0000_0000, 0x4_0000_0000),
];

use platform::exit;
pub use platform::putc;

extern "C" {
    fn uv_enter(ctx: *mut Ctx);
    fn uv_trap();
    static __stack_top: u8;
}

/// The guest's registers (`switch.s`).
#[repr(C)]
struct Ctx {
    x: [u64; 32],
    pc: u64,
    f: [u64; 32],
    fcsr: u64,
}

// SBI (v2.0): extension IDs, and the errors used.
const EXT_BASE: u64 = 0x10;
const EXT_SRST: u64 = 0x5352_5354;
const SBI_ERR_NOT_SUPPORTED: u64 = -2i64 as u64;
/// An implementation ID no SBI implementation has registered.
const IMPL_ID: u64 = 0x006e_7074;

#[no_mangle]
extern "C" fn hv_main() -> ! {
    csrw!("stvec", uv_trap as *const () as u64);
    csrw!("sscratch", 0);
    println!("npt U-Boot hypervisor, riscv64, HS-mode");
    let mut rep = Report::default();
    let own = (HOST_RAM.0, (&raw const __stack_top) as usize);
    let c = match uboot::config(CONFIG_HPA, HOST_RAM, own) {
        Ok(c) if !c.wide() => c,
        Ok(c) => fail(
            &mut rep,
            "config",
            format_args!("{c:x?}: no wider format on RISC-V"),
        ),
        Err(e) => fail(&mut rep, "config", format_args!("{e}")),
    };
    let mut t = match Table::<Sv39x4>::try_new_with(Sv39x4Params { vmid: 1, adue: 0 }) {
        Ok(t) => t,
        Err(e) => fail(&mut rep, "stage2_map", format_args!("Sv39x4 table: {e}")),
    };
    if let Err(e) =
        uboot::map_ram(&mut t, RAM_GPA, &c).and_then(|()| uboot::map_devices(&mut t, &WINDOWS))
    {
        fail(&mut rep, "stage2_map", format_args!("{e}"));
    }
    let hgatp = t.root_register();
    println!(
        "Sv39x4: hgatp={hgatp:#x}; guest RAM gpa {RAM_GPA:#x} -> hpa {:#x}, {} MiB, huge={}; frames used {}",
        c.ram_hpa,
        uboot::RAM_SIZE >> 20,
        c.huge(),
        frames::Frames::live()
    );
    uboot::plant(&c);

    csrw!("0x680", hgatp);
    // SAFETY: G-stage TLB maintenance for the new table.
    unsafe { asm!("hfence.gvma", options(nostack)) };
    csrw!("0x602", 0); // hedeleg: every guest trap to HS-mode
    csrw!("0x603", 0); // hideleg
    csrw!("0x606", 7); // hcounteren: cycle, time, instret
    csrw!("0x280", 0); // vsatp: Bare
    csrw!("0x200", 1 << 13); // vsstatus: FS = Initial
    csrs!("0x600", 1 << 7); // hstatus.SPV: sret enters V = 1
    csrs!("sstatus", 1 << 8); // sstatus.SPP: ... at VS (S) level

    let mut ctx = Ctx {
        x: [0; 32],
        pc: UBOOT_GPA,
        f: [0; 32],
        fcsr: 0,
    };
    ctx.x[10] = 0; // a0: hart ID
    ctx.x[11] = DTB_GPA; // a1: the device tree
    let mut calls = 0u32;
    loop {
        // SAFETY: hgatp holds a table mapping the guest's RAM and devices;
        // every guest trap comes back through uv_trap.
        unsafe { uv_enter(&mut ctx) };
        let cause = csrr!("scause");
        if cause != 10 {
            let (stval, htval, htinst) = (csrr!("stval"), csrr!("0x643"), csrr!("0x64a"));
            let what = match cause {
                20 | 21 | 23 => "guest-page fault",
                22 => "virtual instruction",
                _ => "trap",
            };
            fail(
                &mut rep,
                "uboot_poweroff",
                format_args!(
                    "{what}: scause={cause} sepc={:#x} stval={stval:#x} htval={htval:#x} (gpa {:#x}) htinst={htinst:#x}",
                    ctx.pc,
                    htval << 2
                ),
            );
        }
        // ECALL from VS-mode: an SBI call (a7 extension, a6 function).
        calls += 1;
        ctx.pc += 4;
        let (ext, func, arg0) = (ctx.x[17], ctx.x[16], ctx.x[10]);
        let (err, value) = match (ext, func) {
            (EXT_BASE, 0) => (0, 2 << 24), // spec version 2.0
            (EXT_BASE, 1) => (0, IMPL_ID),
            (EXT_BASE, 2) => (0, 1),
            (EXT_BASE, 3) => (0, u64::from(arg0 == EXT_BASE || arg0 == EXT_SRST)),
            (EXT_BASE, 4..=6) => (0, 0), // mvendorid, marchid, mimpid
            (EXT_SRST, 0) if arg0 == 0 => {
                rep.verdict(
                    "uboot_poweroff",
                    true,
                    format_args!(
                        "SBI system reset (shutdown, reason {}) at gpa {:#x}; {calls} SBI calls, no guest-page fault",
                        ctx.x[11],
                        ctx.pc - 4
                    ),
                );
                uboot::finish(&mut rep, &t, RAM_GPA, &c, &WINDOWS);
                rep.done();
                exit(if rep.fail == 0 { 0 } else { 1 })
            }
            (EXT_SRST, 0) => fail(
                &mut rep,
                "uboot_poweroff",
                format_args!("SBI system reset type {arg0} (not a shutdown)"),
            ),
            _ => (SBI_ERR_NOT_SUPPORTED, 0),
        };
        ctx.x[10] = err;
        ctx.x[11] = value;
    }
}

/// Reports a failure that ends the run.
fn fail(rep: &mut Report, name: &str, detail: core::fmt::Arguments) -> ! {
    rep.verdict(name, false, detail);
    rep.done();
    exit(1)
}
