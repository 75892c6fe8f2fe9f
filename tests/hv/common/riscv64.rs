//! What the two RISC-V hypervisors share (`riscv64/`, `uboot-riscv64/`),
//! both on QEMU virt with `-bios none`: the 16550 console, the test
//! device's exit, the CSR macros, the handlers of a panic and of an
//! unexpected trap, and the M-mode setup `riscv64/src/boot.s` calls before
//! it enters HS-mode. Include it with `#[macro_use]` and re-export `putc` at
//! the crate root for `report.rs`.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

pub const UART: usize = 0x1000_0000;
const TEST_DEVICE: usize = 0x10_0000;

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
pub fn exit(code: u32) -> ! {
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
        unsafe { core::arch::asm!(concat!("csrr {}, ", $csr), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! csrw {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the hypervisor owns its own and the guest's CSRs.
        unsafe { core::arch::asm!(concat!("csrw ", $csr, ", {}"), in(reg) v, options(nostack)) };
    }};
}

macro_rules! csrs {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: as for csrw.
        unsafe { core::arch::asm!(concat!("csrs ", $csr, ", {}"), in(reg) v, options(nostack)) };
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::println!("PANIC: {info}");
    exit(2)
}

#[no_mangle]
extern "C" fn m_unexpected(cause: u64, epc: u64, tval: u64) -> ! {
    crate::println!("PANIC: M-mode trap mcause={cause:#x} mepc={epc:#x} mtval={tval:#x}");
    exit(3)
}

#[no_mangle]
extern "C" fn hs_unexpected(cause: u64, epc: u64, tval: u64) -> ! {
    crate::println!("PANIC: HS-mode trap scause={cause:#x} sepc={epc:#x} stval={tval:#x}");
    exit(3)
}

/// misa and menvcfg as M-mode left them, for HS-mode to report.
pub static MISA: AtomicU64 = AtomicU64::new(0);
pub static MENVCFG: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn m_trap();
    fn hs_entry();
}

/// M-mode: everything a firmware would do before starting a hypervisor in
/// HS-mode.
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
    // menvcfg.PBMTE (bit 62): Svpbmt for S-mode and the G-stage (npt maps
    // DEVICE with PBMT = IO).
    csrs!("0x30a", 1 << 62);
    // menvcfg.ADUE (bit 61, Svadu): the hart sets A and D in G-stage (and
    // HS) leaves itself; read back to see whether it took.
    csrs!("0x30a", 1 << 61);
    // mcounteren: cycle, time and instret readable below M-mode (a guest
    // also needs hcounteren).
    csrw!("mcounteren", 7);
    MENVCFG.store(csrr!("0x30a"), Ordering::Relaxed);
    MISA.store(csrr!("misa"), Ordering::Relaxed);
    // mret to HS-mode (MPP = S, MPV = 0) with FS = Initial (the Rust code
    // may use FP registers).
    let mstatus = csrr!("mstatus");
    let mstatus = (mstatus & !(3 << 11) & !(1 << 39) & !(3 << 13)) | 1 << 11 | 1 << 13;
    csrw!("mstatus", mstatus);
    csrw!("mepc", hs_entry as *const () as u64);
    // SAFETY: mepc and mstatus are set up for HS-mode.
    unsafe { asm!("mret", options(noreturn)) }
}
