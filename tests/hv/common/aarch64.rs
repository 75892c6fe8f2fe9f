//! What the two AArch64 hypervisors share (`aarch64/`, `uboot-aarch64/`),
//! both at EL2 on QEMU virt: the PL011 console, the semihosting exit, the
//! system-register macros, and the handlers of a panic and of an exception
//! the hypervisor does not expect. Include it with `#[macro_use]` and
//! re-export `putc` at the crate root for `report.rs`.

use core::arch::asm;

const UART: usize = 0x0900_0000;

/// Writes one byte to the PL011.
pub fn putc(c: u8) {
    // SAFETY: the PL011 of QEMU virt; FR (0x18) bit 5 is TXFF.
    unsafe {
        while ((UART + 0x18) as *const u32).read_volatile() & (1 << 5) != 0 {}
        (UART as *mut u32).write_volatile(c as u32);
    }
}

/// Ends the QEMU run with `code` (semihosting SYS_EXIT, ADP_Stopped_ApplicationExit).
pub fn exit(code: u64) -> ! {
    let block: [u64; 2] = [0x20026, code];
    // SAFETY: semihosting call; QEMU runs with -semihosting.
    unsafe { asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") block.as_ptr(), options(nostack)) };
    loop {
        // SAFETY: waiting forever has no effect.
        unsafe { asm!("wfe") };
    }
}

macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading a system register at EL2.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the hypervisor owns EL2's and the guest's registers.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nostack)) };
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::println!("PANIC: {info}");
    exit(2)
}

/// An exception taken to EL2 that the hypervisor does not expect (from EL2
/// itself: a hypervisor bug; or an asynchronous one from the guest).
#[no_mangle]
extern "C" fn hv_unexpected(vector: u64, esr: u64, elr: u64, far: u64) -> ! {
    crate::println!("PANIC: EL2 exception vector={vector} esr={esr:#x} elr={elr:#x} far={far:#x}");
    exit(3)
}
