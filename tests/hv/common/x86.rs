//! What the two x86_64 hypervisors share (AMD SVM under QEMU, Intel VMX
//! under Bochs): port I/O, MSRs, CPUID, the host's IDT, the guest's
//! layout and its own page tables, and the writing of a 3-byte exit
//! instruction. Both run in long mode on `x86_longmode.s`'s identity map
//! of 0..4 GiB, and their guests run `x86_guest.s`.

use crate::report::{fill, rd, wr};
use crate::scenarios::{ok, Layout, Table, RW};
use core::arch::asm;
use core::cell::UnsafeCell;
use npt::size::SIZE_4K;
use npt::Format;
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa};

pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O to the console and the emulator's exit devices only.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

#[allow(dead_code)] // the AMD hypervisor's UART; Bochs's port 0xE9 needs no status
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: reading a UART's line status register.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

#[allow(dead_code)] // the AMD hypervisor's exit timeout
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the time-stamp counter (CR4.TSD is clear at CPL 0 anyway).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR the caller has checked exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the hypervisor owns the MSRs it writes (EFER, VM_HSAVE_PA,
    // IA32_FEATURE_CONTROL).
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// CPUID leaf `leaf`, subleaf 0: [eax, ebx, ecx, edx].
pub fn cpuid(leaf: u32) -> [u32; 4] {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, 0) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The largest extended CPUID leaf, and leaf `leaf` if it is no larger.
pub fn cpuid_ext(leaf: u32) -> [u32; 4] {
    if cpuid(0x8000_0000)[0] >= leaf {
        cpuid(leaf)
    } else {
        [0; 4]
    }
}

pub const MSR_EFER: u32 = 0xc000_0080;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
#[allow(dead_code)] // nested NX on AMD needs it; EPT's X bit does not
pub const EFER_NXE: u64 = 1 << 11;

/// A 4 KiB page of host memory the hardware reads (IDT, VMCB, VMCS, TSS).
#[repr(C, align(4096))]
pub struct Page(UnsafeCell<[u64; 512]>);

// SAFETY: one CPU, interrupts off: nothing touches these concurrently.
unsafe impl Sync for Page {}

impl Page {
    pub const fn new() -> Self {
        Page(UnsafeCell::new([0; 512]))
    }

    pub fn pa(&self) -> u64 {
        self.0.get() as u64
    }
}

pub static IDT: Page = Page::new();

extern "C" {
    static exc_stubs: [u64; 32];
    static guest_start: u8;
}

/// Interrupt gates for vectors 0..31 (64-bit code selector 0x08) to the
/// stubs in `x86_longmode.s`, which call the hypervisor's
/// `host_exception`.
pub fn load_idt() {
    // SAFETY: x86_longmode.s's table of 32 stub addresses, never written.
    let stubs = unsafe { &exc_stubs };
    for (v, &h) in stubs.iter().enumerate() {
        let lo = (h & 0xffff) | 0x08 << 16 | 0x8e00 << 32 | ((h >> 16) & 0xffff) << 48;
        wr(IDT.pa() as usize + 16 * v, lo);
        wr(IDT.pa() as usize + 16 * v + 8, h >> 32);
    }
    #[repr(C, packed)]
    struct DescPtr {
        limit: u16,
        base: u64,
    }
    let ptr = DescPtr {
        limit: 32 * 16 - 1,
        base: IDT.pa(),
    };
    // SAFETY: the IDT above stays in place for the whole run.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) };
}

/// Writes a 3-byte instruction at `pa` (x86 fetches see stores at once).
pub fn write_insn(pa: usize, insn: u32) {
    let w = rd(pa) & !0xff_ffff | insn as u64;
    wr(pa, w);
}

// ------------------------------------------------------------------ layout

/// The shared layout: guest code at GPA 0xc000_0000; host memory the tests
/// own from 0x0400_0000 (128 MiB of RAM; each image sits below 2 MiB and
/// is far smaller); the hole with no PDPT entry (PML4[1] is present) at
/// bit 39 + ...; the 1 GiB page maps host memory from 0 (1 GiB aligned).
pub const L: Layout = Layout::new(
    0xc000_0000,
    0x0400_0000,
    crate::scenarios_rv_x86::BIT39 | 0x1230,
    0,
    0x04c0_0000,
);
/// The guest's page tables: 3 pages.
pub const H_GPT: usize = 0x0300_0000;
pub const G_GPT: u64 = 0xc008_0000;
/// Mapped by `map_after_fault`.
pub const G_NEW: u64 = 0xc015_0000;
pub const H_NEW: usize = 0x0401_5000;
/// The frame at GPA `BIT39 | L.g_ram`.
pub const H_39: usize = 0x0402_0000;

pub fn code_hpa() -> usize {
    (&raw const guest_start) as usize
}

/// The guest-physical (and guest-virtual) address of a routine in
/// `x86_guest.s`.
pub fn gaddr(sym: *const u8) -> u64 {
    L.g_code + (sym as usize - code_hpa()) as u64
}

/// Writes the guest's own page tables at `H_GPT`: PML4 -> two PDPTs of
/// 1 GiB pages mapping GPA 0..512 GiB and 512 GiB..1 TiB (bit 39) to
/// themselves. The guest's CR3 is `G_GPT`.
pub fn write_guest_tables() {
    let bit39 = crate::scenarios_rv_x86::BIT39;
    fill(H_GPT, 512, |_| 0);
    wr(H_GPT, (G_GPT + 0x1000) | 3);
    wr(H_GPT + 8, (G_GPT + 0x2000) | 3);
    fill(H_GPT + 0x1000, 512, |i| (i as u64) << 30 | 0x83);
    fill(H_GPT + 0x2000, 512, |i| bit39 | (i as u64) << 30 | 0x83);
}

/// Maps what the x86 scenarios use beyond the shared ones (the guest's
/// page tables, the bit-39 page) into a table no hardware walks yet.
pub fn map_x86<F: Format>(t: &mut Table<F>) {
    let bit39 = crate::scenarios_rv_x86::BIT39;
    ok(
        t.map_region(
            Gpa::from(G_GPT as usize),
            Hpa::from(H_GPT),
            3 * SIZE_4K,
            RW,
            true,
        ),
        "guest page tables",
    )
    .ignore();
    ok(
        t.map(
            Gpa::from((bit39 | L.g_ram) as usize),
            Hpa::from(H_39),
            SIZE_4K,
            RW,
        ),
        "bit-39 page",
    )
    .ignore();
}
