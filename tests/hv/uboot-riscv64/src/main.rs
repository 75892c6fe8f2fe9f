//! A bare-metal test hypervisor for QEMU `virt` (RV64 with the hypervisor
//! extension) that runs Debian's unmodified U-Boot (`qemu-riscv64_smode`)
//! in VS-mode under an Sv39x4 G-stage table npt builds: guest RAM at GPA
//! 0x8000_0000 backed by another host-physical range, the device windows
//! U-Boot uses mapped DEVICE (Svpbmt IO) and not executable; fw_cfg (its
//! DMA would bypass the G-stage) and the test device (the guest's own
//! poweroff would end QEMU before the hypervisor could check) left out.
//!
//! M-mode setup as in `riscv64/`, then HS-mode. The hypervisor is the
//! guest's SBI: the Base extension and System Reset; every other call is
//! answered "not supported". U-Boot's `poweroff` is an SBI system reset
//! (shutdown): the hypervisor then checks its table and the marker U-Boot
//! wrote, prints its verdicts and ends the run through the test device
//! (exit status 0 when every verdict passed).

#![no_std]
#![no_main]

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

const UART: usize = 0x1000_0000;
const TEST_DEVICE: usize = 0x10_0000;
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

/// Writes one byte to the 16550 (LSR bit 5: THR empty).
pub fn putc(c: u8) {
    // SAFETY: the 16550 of QEMU virt.
    unsafe {
        while ((UART + 5) as *const u8).read_volatile() & 0x20 == 0 {}
        (UART as *mut u8).write_volatile(c);
    }
}

/// Ends the QEMU run with `code` (the sifive_test device: 0x5555 passes,
/// `code << 16 | 0x3333` fails with that exit status).
fn exit(code: u32) -> ! {
    let v = if code == 0 {
        0x5555
    } else {
        (code << 16) | 0x3333
    };
    // SAFETY: the test device of QEMU virt.
    unsafe { (TEST_DEVICE as *mut u32).write_volatile(v) };
    loop {
        // SAFETY: waiting forever has no effect.
        unsafe { asm!("wfi") };
    }
}

macro_rules! csrr {
    ($csr:literal) => {{
        let v: u64;
        // SAFETY: reading a CSR of the current or a lower mode.
        unsafe { asm!(concat!("csrr {}, ", $csr), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! csrw {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the hypervisor owns its own and the guest's CSRs.
        unsafe { asm!(concat!("csrw ", $csr, ", {}"), in(reg) v, options(nostack)) };
    }};
}

macro_rules! csrs {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: as for csrw.
        unsafe { asm!(concat!("csrs ", $csr, ", {}"), in(reg) v, options(nostack)) };
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    exit(2)
}

#[no_mangle]
extern "C" fn m_unexpected(cause: u64, epc: u64, tval: u64) -> ! {
    println!("PANIC: M-mode trap mcause={cause:#x} mepc={epc:#x} mtval={tval:#x}");
    exit(3)
}

#[no_mangle]
extern "C" fn hs_unexpected(cause: u64, epc: u64, tval: u64) -> ! {
    println!("PANIC: HS-mode trap scause={cause:#x} sepc={epc:#x} stval={tval:#x}");
    exit(3)
}

extern "C" {
    fn m_trap();
    fn hs_entry();
    fn uv_enter(ctx: *mut Ctx);
    fn uv_trap();
    static __stack_top: u8;
}

/// M-mode: what a firmware does before starting a hypervisor in HS-mode.
#[no_mangle]
extern "C" fn m_main() -> ! {
    csrw!("mtvec", m_trap as *const () as u64);
    // One NAPOT PMP entry over all of memory, R W X, for S and U.
    csrw!("pmpaddr0", u64::MAX >> 10);
    csrw!("pmpcfg0", 0x1f);
    // The guest's exceptions go to HS-mode: misaligned/access faults (0-7),
    // illegal instruction, breakpoint, ECALL from U and VS (8, 10), page
    // faults (12, 13, 15), guest-page faults (20, 21, 23), virtual
    // instruction (22).
    let deleg: u64 = 0xff | 1 << 8 | 1 << 10 | 1 << 12 | 1 << 13 | 1 << 15 | 0xf << 20;
    csrw!("medeleg", deleg);
    csrw!("mideleg", 0);
    // menvcfg.PBMTE (bit 62): Svpbmt for the G-stage (npt maps DEVICE with
    // PBMT = IO).
    csrs!("0x30a", 1 << 62);
    // mcounteren: cycle, time, instret readable below M-mode.
    csrw!("mcounteren", 7);
    // mret to HS-mode (MPP = S, MPV = 0) with FS = Initial.
    let mstatus = csrr!("mstatus");
    let mstatus = (mstatus & !(3 << 11) & !(1 << 39) & !(3 << 13)) | 1 << 11 | 1 << 13;
    csrw!("mstatus", mstatus);
    csrw!("mepc", hs_entry as *const () as u64);
    // SAFETY: mepc and mstatus are set up for HS-mode.
    unsafe { asm!("mret", options(noreturn)) }
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
    let mut t = match Table::<Sv39x4>::try_new_with(Sv39x4Params { vmid: 1 }) {
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
