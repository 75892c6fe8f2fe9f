//! A bare-metal test hypervisor for QEMU `q35` (x86_64 with AMD SVM and
//! nested paging) that builds its guest's nested page table (`Npt4`) with
//! npt and checks, as named verdicts, that the hardware (QEMU's model of
//! it) translates and faults as npt intends, and that npt's flush recipes
//! become the VMCB.TLB_CONTROL value SVM expects.
//!
//! Run: `qemu-system-x86_64 -M q35 -nodefaults -accel tcg -cpu max -m 128M
//! -display none -serial stdio -no-reboot -nic none -device
//! isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel <elf>`. QEMU's PVH loader
//! enters the ELF (Xen PVH note) in 32-bit protected mode; `boot.s` builds
//! an identity map of 0..4 GiB and switches to long mode, then this code
//! enables SVM (EFER.SVME, VM_HSAVE_PA) with EFER.NXE (nested NX needs it at
//! VMRUN). Exit status (isa-debug-exit, `(value << 1) | 1`): 33 when every
//! verdict passed, 3 when one failed, 5 on a panic, 7 on a host exception,
//! 9 when the CPU lacks what the tests need.
//!
//! The guest runs in 64-bit mode at CPL 0 with its own page tables (1 GiB
//! pages, guest virtual = guest physical, in guest memory the nested table
//! maps), so it reaches GPAs above 4 GiB and with bit 39 set. Each run
//! enters one of the small routines in `guest.s` with rdi, rsi, rdx, rcx
//! set and ends in VMMCALL, a nested page fault (#NPF), or another
//! intercept (HLT, shutdown, any exception).
//!
//! What QEMU cannot show: it flushes its nested TLB on every VMRUN and
//! #VMEXIT, whatever ASID and TLB_CONTROL say, so a missing invalidation
//! goes unnoticed; the run without one is printed as `INFO
//! remap_stale_control`, not judged. Memory types (PAT, PCD, PWT) are not
//! emulated either.

#![no_std]
#![no_main]

#[path = "../../common/frames.rs"]
mod frames;
#[path = "../../common/report.rs"]
#[macro_use]
mod report;

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use frames::Frames;
use npt::flush::{flush_all, ContextRegister, FlushExecutor, Instr, Issued, Scope};
use npt::instr::SvmTlbControl;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::x86_64::{Npt4, Npt4Params};
use npt::FlushError;
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF, NestedTable};
use report::{fill, pattern, rd, wr, Report};

global_asm!(include_str!("boot.s"), options(att_syntax, raw));
global_asm!(include_str!("guest.s"), options(att_syntax, raw));

// ---------------------------------------------------------------- platform

/// The 16550 at COM1.
const COM1: u16 = 0x3f8;
/// `-device isa-debug-exit,iobase=0xf4`: QEMU exits with `(value << 1) | 1`.
const DEBUG_EXIT: u16 = 0xf4;
/// The value that ends the run with status 33: every verdict passed.
const EXIT_PASS: u8 = 0x10;

fn outb(port: u16, v: u8) {
    // SAFETY: port I/O to the UART and the debug-exit device only.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: reading the UART's line status register.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes one byte to COM1 (LSR bit 5: THR empty).
pub fn putc(c: u8) {
    while inb(COM1 + 5) & 0x20 == 0 {}
    outb(COM1, c);
}

/// Ends the QEMU run: `EXIT_PASS`, or an error code (status `code * 2 + 1`).
fn exit(code: u8) -> ! {
    outb(DEBUG_EXIT, code);
    // QEMU acts on the write asynchronously (a shutdown request), so this
    // CPU runs on for a moment: wait some 2^33 TSC ticks (seconds) before
    // concluding that there is no debug-exit device.
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < 1 << 33 {
        core::hint::spin_loop();
    }
    println!("PANIC: still running after writing {code:#x} to port {DEBUG_EXIT:#x} (QEMU needs -device isa-debug-exit,iobase=0xf4,iosize=0x04)");
    loop {
        // SAFETY: stops this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the time-stamp counter (CR4.TSD is clear at CPL 0 anyway).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR the caller has checked exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the hypervisor owns EFER and VM_HSAVE_PA.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags))
    };
}

/// CPUID leaf `leaf`, subleaf 0: [eax, ebx, ecx, edx].
fn cpuid(leaf: u32) -> [u32; 4] {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, 0) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

const MSR_EFER: u32 = 0xc000_0080;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const EFER_SVME: u64 = 1 << 12;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    exit(2)
}

/// An exception taken by the host itself (boot.s's stubs): a hypervisor bug.
#[no_mangle]
extern "C" fn host_exception(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    println!("PANIC: host exception vector={vector} error={error:#x} rip={rip:#x} cr2={cr2:#x}");
    exit(3)
}

/// A 4 KiB page of host memory the hardware reads (IDT, VMCB, host save area).
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u64; 512]>);

// SAFETY: one CPU, interrupts off: nothing touches these concurrently.
unsafe impl Sync for Page {}

impl Page {
    const fn new() -> Self {
        Page(UnsafeCell::new([0; 512]))
    }

    fn pa(&self) -> u64 {
        self.0.get() as u64
    }
}

static IDT: Page = Page::new();
static VMCB: Page = Page::new();
static HSAVE: Page = Page::new();

extern "C" {
    static exc_stubs: [u64; 32];
}

/// Interrupt gates for vectors 0..31 (64-bit code selector 0x08).
fn load_idt() {
    // SAFETY: boot.s's table of 32 stub addresses, never written.
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

// -------------------------------------------------------------------- VMCB

/// Byte offsets in the VMCB (AMD APM Vol. 2, Appendix B "VMCB Layout":
/// control area Table B-1, state save area Table B-2 at 0x400).
mod vmcb {
    /// Exception intercepts (bit n: vector n) in bits 31:0; the first
    /// miscellaneous intercept word (0x00c) in bits 63:32, where HLT is
    /// bit 24 and SHUTDOWN bit 31.
    pub const INTERCEPT_EXC_MISC1: usize = 0x008;
    /// The second miscellaneous intercept word: VMRUN is bit 0, VMMCALL bit 1.
    pub const INTERCEPT_MISC2: usize = 0x010;
    /// Guest ASID in bits 31:0, TLB_CONTROL in bits 39:32.
    pub const ASID_TLB_CONTROL: usize = 0x058;
    pub const EXITCODE: usize = 0x070;
    pub const EXITINFO1: usize = 0x078;
    pub const EXITINFO2: usize = 0x080;
    /// NP_ENABLE is bit 0.
    pub const NP_CONTROL: usize = 0x090;
    pub const N_CR3: usize = 0x0b0;
    pub const CLEAN_BITS: usize = 0x0c0;
    // State save area.
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    /// CPL is the byte at 0x4cb: in the word at 0x4c8, bits 31:24.
    pub const CPL_WORD: usize = 0x4c8;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const G_PAT: usize = 0x668;
}

fn vmcb_rd(off: usize) -> u64 {
    rd(VMCB.pa() as usize + off)
}

fn vmcb_wr(off: usize, v: u64) {
    wr(VMCB.pa() as usize + off, v)
}

/// A segment in the state save area: selector, attributes (descriptor bits
/// 47:40 and 55:52), limit, base.
fn vmcb_seg(off: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
    vmcb_wr(
        off,
        selector as u64 | (attrib as u64) << 16 | (limit as u64) << 32,
    );
    vmcb_wr(off + 8, base);
}

/// Sets VMCB.TLB_CONTROL (bits 39:32 of the word at 0x58) for the next VMRUN.
fn set_tlb_control(v: u8) {
    let w = vmcb_rd(vmcb::ASID_TLB_CONTROL);
    vmcb_wr(
        vmcb::ASID_TLB_CONTROL,
        (w & !(0xff << 32)) | (v as u64) << 32,
    );
}

const EXIT_HLT: u64 = 0x78;
const EXIT_SHUTDOWN: u64 = 0x7f;
const EXIT_VMMCALL: u64 = 0x81;
const EXIT_NPF: u64 = 0x400;
const EXIT_INVALID: u64 = u64::MAX;

/// #NPF EXITINFO1 (AMD APM Vol. 2 §15.25.6): the page-fault error code bits,
/// plus whether the fault hit the final guest-physical address or a guest
/// page-table access.
const NPF_P: u64 = 1 << 0;
const NPF_W: u64 = 1 << 1;
const NPF_ID: u64 = 1 << 4;
const NPF_FINAL: u64 = 1 << 32;
const NPF_GPT: u64 = 1 << 33;

/// The guest's ASID.
const ASID: u64 = 1;

/// Guest CS: type 0xb, S, P, L (64-bit), G. Data: type 3, S, P, D/B, G.
const CS_ATTRIB: u16 = 0xa9b;
const DATA_ATTRIB: u16 = 0xc93;

fn init_vmcb(ncr3: u64, guest_cr3: u64) {
    // Every exception, HLT and shutdown (a guest bug ends the run instead
    // of the machine); VMRUN (required) and VMMCALL (the guest's "done").
    vmcb_wr(
        vmcb::INTERCEPT_EXC_MISC1,
        0xffff_ffff | (1 << 24 | 1 << 31) << 32,
    );
    vmcb_wr(vmcb::INTERCEPT_MISC2, 1 << 0 | 1 << 1);
    vmcb_wr(vmcb::ASID_TLB_CONTROL, ASID);
    vmcb_wr(vmcb::NP_CONTROL, 1);
    vmcb_wr(vmcb::N_CR3, ncr3);
    vmcb_wr(vmcb::CLEAN_BITS, 0);
    vmcb_seg(vmcb::CS, 0x08, CS_ATTRIB, 0xffff_ffff, 0);
    for seg in [vmcb::ES, vmcb::SS, vmcb::DS] {
        vmcb_seg(seg, 0x10, DATA_ATTRIB, 0xffff_ffff, 0);
    }
    vmcb_wr(vmcb::CPL_WORD, 0);
    vmcb_wr(vmcb::EFER, EFER_LME | EFER_LMA | EFER_SVME);
    vmcb_wr(vmcb::CR0, 1 << 31 | 1 << 4 | 1); // PG, ET, PE
    vmcb_wr(vmcb::CR3, guest_cr3);
    vmcb_wr(vmcb::CR4, 1 << 5); // PAE
    vmcb_wr(vmcb::DR7, 0x400);
    vmcb_wr(vmcb::DR6, 0xffff_0ff0);
    vmcb_wr(vmcb::RFLAGS, 2);
    vmcb_wr(vmcb::G_PAT, 0x0007_0406_0007_0406); // the power-on PAT
}

// ------------------------------------------------------------ world switch

extern "C" {
    fn svm_run(vmcb_pa: u64, regs: *mut [u64; 4]);
    static guest_start: u8;
    static g_copy: u8;
    static g_load: u8;
    static g_store: u8;
    static g_jump: u8;
}

/// Why the guest stopped.
#[derive(Clone, Copy, PartialEq)]
enum Exit {
    /// VMMCALL at `rip`; the guest's rdi, rsi, rdx, rcx.
    Vmmcall { rip: u64, x: [u64; 4] },
    /// Nested page fault: EXITINFO1 (error code), EXITINFO2 (the GPA).
    Npf { info1: u64, gpa: u64 },
    /// Anything else.
    Other {
        code: u64,
        info1: u64,
        info2: u64,
        rip: u64,
    },
}

impl core::fmt::Debug for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Exit::Vmmcall { rip, x } => write!(f, "Vmmcall {{ rip: {rip:#x}, rdi/rsi/rdx/rcx: {x:x?} }}"),
            Exit::Npf { info1, gpa } => write!(f, "Npf {{ exitinfo1: {info1:#x}, exitinfo2: {gpa:#x} }}"),
            Exit::Other { code, info1, info2, rip } => write!(
                f,
                "Other {{ exitcode: {code:#x}, exitinfo1: {info1:#x}, exitinfo2: {info2:#x}, rip: {rip:#x} }}"
            ),
        }
    }
}

/// The guest-physical address of the guest code page.
const G_CODE: u64 = 0xc000_0000;

fn code_hpa() -> usize {
    (&raw const guest_start) as usize
}

/// The guest-physical (and guest-virtual) address of a routine in `guest.s`.
fn gaddr(sym: *const u8) -> u64 {
    G_CODE + (sym as usize - code_hpa()) as u64
}

/// The ASID/TLB_CONTROL word the last VMRUN saw.
static LAST_ASID_WORD: AtomicU64 = AtomicU64::new(0);

/// Runs the guest at `entry` with rdi, rsi, rdx, rcx = `x` until its next
/// #VMEXIT. TLB_CONTROL applies to this one VMRUN and is reset after it.
fn run(entry: *const u8, x: [u64; 4]) -> Exit {
    let mut regs = x;
    vmcb_wr(vmcb::RIP, gaddr(entry));
    vmcb_wr(vmcb::RSP, 0);
    vmcb_wr(vmcb::RAX, 0);
    vmcb_wr(vmcb::RFLAGS, 2);
    LAST_ASID_WORD.store(vmcb_rd(vmcb::ASID_TLB_CONTROL), Ordering::Relaxed);
    // SAFETY: the VMCB describes a guest whose code, page tables and memory
    // the nested table maps; every exit comes back here.
    unsafe { svm_run(VMCB.pa(), &mut regs) };
    set_tlb_control(0);
    let code = vmcb_rd(vmcb::EXITCODE);
    let info1 = vmcb_rd(vmcb::EXITINFO1);
    let info2 = vmcb_rd(vmcb::EXITINFO2);
    let rip = vmcb_rd(vmcb::RIP);
    match code {
        EXIT_VMMCALL => Exit::Vmmcall { rip, x: regs },
        EXIT_NPF => Exit::Npf { info1, gpa: info2 },
        _ => Exit::Other {
            code,
            info1,
            info2,
            rip,
        },
    }
}

/// The TLB_CONTROL value the last VMRUN ran with.
fn last_tlb_control() -> u8 {
    (LAST_ASID_WORD.load(Ordering::Relaxed) >> 32) as u8
}

fn guest_load(gpa: u64) -> Result<u64, Exit> {
    match run(&raw const g_load, [gpa, 0, 0, 0]) {
        Exit::Vmmcall { x, .. } => Ok(x[1]),
        e => Err(e),
    }
}

fn guest_store(gpa: u64, v: u64) -> Exit {
    run(&raw const g_store, [gpa, v, 0, 0])
}

fn is_vmmcall(e: &Exit) -> bool {
    matches!(e, Exit::Vmmcall { .. })
}

/// A #NPF at exactly `gpa`, on the final address (not a guest page-table
/// access), whose EXITINFO1 has every bit of `set` and none of `clear`.
fn is_npf(e: &Exit, gpa: u64, set: u64, clear: u64) -> bool {
    matches!(*e, Exit::Npf { info1, gpa: g } if g == gpa
        && info1 & (set | NPF_FINAL) == set | NPF_FINAL
        && info1 & (clear | NPF_GPT) == 0)
}

/// A not-present #NPF on a guest load of `gpa`.
fn is_hole_load(r: &Result<u64, Exit>, gpa: u64) -> bool {
    matches!(r, Err(e) if is_npf(e, gpa, 0, NPF_P | NPF_W | NPF_ID))
}

// ------------------------------------------------------------------ layout

/// Host memory the tests own (q35 with -m 128M: RAM up to 0x800_0000; this
/// image sits at 1 MiB and is far smaller).
const H_GPT: usize = 0x0300_0000; // the guest's page tables: 3 pages
const H_RAM: usize = 0x0400_0000; // 16 pages of guest RAM
const RAM_SIZE: usize = 0x1_0000;
const H_RO: usize = 0x0401_0000;
const H_NX: usize = 0x0401_1000;
const H_A: usize = 0x0401_2000;
const H_B: usize = 0x0401_3000;
const H_C: usize = 0x0401_4000;
const H_NEW: usize = 0x0401_5000;
const H_39: usize = 0x0402_0000;
const H_2M: usize = 0x0460_0000;
const H_CTX_4K: usize = 0x0480_0000;
const H_CTX_2M: usize = 0x04a0_0000;
/// The 1 GiB page maps host memory from 0 (1 GiB aligned).
const H_1G: usize = 0;
const H_1G_PROBE: usize = 0x04c0_0000;

/// Guest-physical addresses: none equals its host-physical address.
const G_GPT: u64 = 0xc008_0000;
const G_RAM: u64 = 0xc010_0000;
const G_HOLE: u64 = G_RAM + RAM_SIZE as u64 + 0x28; // same leaf table, no entry
const G_HOLE_UPPER: u64 = BIT39 | 0x1230; // no PDPT entry (PML4[1] is present)
const G_RO: u64 = 0xc012_0000;
const G_NX: u64 = 0xc013_0000;
const G_REMAP: u64 = 0xc014_0000;
const G_NEW: u64 = 0xc015_0000;
const G_2M: u64 = 0xc040_0000;
const G_CTX: u64 = 0xc060_0000;
const G_1G: u64 = 0x1_0000_0000;
const BIT39: u64 = 1 << 39;

const RWX: MF = MF::READ.union(MF::WRITE).union(MF::EXECUTE);
const RW: MF = MF::READ.union(MF::WRITE);
const RX: MF = MF::READ.union(MF::EXECUTE);

/// `VMMCALL` (0F 01 D9).
const VMMCALL: u32 = 0x00d9_010f;

/// Writes a 3-byte instruction at `pa` (x86 fetches see stores at once).
fn write_insn(pa: usize, insn: u32) {
    let w = rd(pa) & !0xff_ffff | insn as u64;
    wr(pa, w);
}

fn ok<T>(r: Result<T, npt::Error>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("npt refused {what}: {e}"),
    }
}

type Table = NestedTable<Npt4, Frames>;

/// What the CPU offers, from CPUID.
struct Cpu {
    flush_by_asid: bool,
}

impl Cpu {
    /// The TLB_CONTROL value a per-ASID flush should become.
    fn asid_flush(&self) -> u8 {
        if self.flush_by_asid {
            3
        } else {
            1
        }
    }
}

// -------------------------------------------------------------------- main

#[no_mangle]
extern "C" fn hv_main() -> ! {
    load_idt();
    let max_ext = cpuid(0x8000_0000)[0];
    let ext1 = if max_ext >= 0x8000_0001 {
        cpuid(0x8000_0001)
    } else {
        [0; 4]
    };
    let svm_leaf = if max_ext >= 0x8000_000a {
        cpuid(0x8000_000a)
    } else {
        [0; 4]
    };
    let phys_bits = if max_ext >= 0x8000_0008 {
        cpuid(0x8000_0008)[0] & 0xff
    } else {
        0
    };
    let svm = ext1[2] & (1 << 2) != 0;
    let nx = ext1[3] & (1 << 20) != 0;
    let gbpages = ext1[3] & (1 << 26) != 0;
    let np = svm_leaf[3] & 1 != 0;
    let nasid = svm_leaf[1];
    let cpu = Cpu {
        flush_by_asid: svm_leaf[3] & (1 << 6) != 0,
    };
    println!(
        "npt test hypervisor, x86_64 (AMD SVM); SVM={svm} rev={} NASID={nasid} NP={np} FlushByAsid={} NX={nx} 1G-pages={gbpages} phys-bits={phys_bits}",
        svm_leaf[0] & 0xff,
        cpu.flush_by_asid
    );
    if !(svm && np && nx && gbpages) || (nasid as u64) <= ASID {
        println!("PANIC: the CPU lacks SVM, nested paging, NX, 1 GiB pages or ASID {ASID} (QEMU needs -cpu max)");
        exit(4);
    }
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE | EFER_SVME);
    wrmsr(MSR_VM_HSAVE_PA, HSAVE.pa());

    let mut rep = Report::default();
    let mut t = ok(
        Table::try_new_with(Npt4Params { asid: ASID }),
        "an Npt4 table",
    );
    let ncr3 = t.root_register();
    println!(
        "Npt4: nCR3={ncr3:#x} (root at {:#x}), ASID={ASID}",
        t.root_paddr().as_usize()
    );
    // The guest's own page tables: PML4 -> two PDPTs of 1 GiB pages mapping
    // GPA 0..512 GiB and 512 GiB..1 TiB (bit 39) to themselves.
    fill(H_GPT, 512, |_| 0);
    wr(H_GPT, (G_GPT + 0x1000) | 3);
    wr(H_GPT + 8, (G_GPT + 0x2000) | 3);
    fill(H_GPT + 0x1000, 512, |i| (i as u64) << 30 | 0x83);
    fill(H_GPT + 0x2000, 512, |i| BIT39 | (i as u64) << 30 | 0x83);

    // The table is not live yet: nothing to invalidate.
    let code = code_hpa();
    ok(
        t.map(Gpa::from(G_CODE as usize), Hpa::from(code), SIZE_4K, RX),
        "code",
    )
    .ignore();
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
        t.map_region(
            Gpa::from(G_RAM as usize),
            Hpa::from(H_RAM),
            RAM_SIZE,
            RWX,
            true,
        ),
        "RAM",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_RO as usize), Hpa::from(H_RO), SIZE_4K, MF::READ),
        "RO page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_NX as usize), Hpa::from(H_NX), SIZE_4K, RW),
        "NX page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_REMAP as usize), Hpa::from(H_A), SIZE_4K, RW),
        "remap page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_2M as usize), Hpa::from(H_2M), SIZE_2M, RW),
        "2M page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_1G as usize), Hpa::from(H_1G), SIZE_1G, RW),
        "1G page",
    )
    .ignore();
    ok(
        t.map_region(
            Gpa::from(G_CTX as usize),
            Hpa::from(H_CTX_4K),
            SIZE_2M,
            RW,
            false,
        ),
        "2M of 4K pages",
    )
    .ignore();
    ok(
        t.map(
            Gpa::from((BIT39 | G_RAM) as usize),
            Hpa::from(H_39),
            SIZE_4K,
            RW,
        ),
        "bit-39 page",
    )
    .ignore();

    for pa in [
        H_RO,
        H_NX,
        H_A,
        H_B,
        H_C,
        H_NEW,
        H_39,
        H_CTX_4K + 0x5000,
        H_CTX_2M + 0x5000,
    ] {
        fill(pa, 512, |i| pattern(pa, i));
    }
    fill(H_RAM, RAM_SIZE / 8, |i| pattern(H_RAM, i));

    init_vmcb(ncr3, G_GPT);
    let first = guest_load(G_RAM + 0x10);
    println!(
        "first VMRUN: guest load of gpa {:#x} -> {first:x?} (want Ok({:#x}))",
        G_RAM + 0x10,
        pattern(H_RAM, 2)
    );
    if let Err(Exit::Other { code, .. }) = first {
        if code == EXIT_INVALID || code == EXIT_SHUTDOWN || code == EXIT_HLT {
            println!("PANIC: the guest does not run (exit code {code:#x})");
            exit(4);
        }
    }

    ram_rw(&mut rep);
    hole_fault(&mut rep);
    ro_write(&mut rep);
    nx_fetch(&mut rep);
    huge_2m(&mut rep, &t);
    huge_1g(&mut rep, &t);
    remap(&mut rep, &mut t, &cpu);
    remap_context(&mut rep, &mut t, &cpu);
    protect_flush(&mut rep, &mut t, &cpu);
    map_after_fault(&mut rep, &mut t);
    gpa_bit39(&mut rep);

    drop(t);
    let live = Frames::live();
    rep.verdict(
        "frames_freed",
        live == 0,
        format_args!("frames still allocated after dropping the table: {live}"),
    );
    rep.done();
    exit(if rep.fail == 0 { EXIT_PASS } else { 1 })
}

/// 1. The guest copies 16 words across a page boundary of its RAM, XORed
///    with a key, to another place across another page boundary; the host
///    checks the bytes at the host-physical addresses (and the words
///    around them).
fn ram_rw(rep: &mut Report) {
    let (src_off, dst_off, n, key) = (0x0fc0usize, 0x7fc0usize, 16usize, 0x00ff_00ff_1234_5678u64);
    let sentinel_before = rd(H_RAM + dst_off - 8);
    let sentinel_after = rd(H_RAM + dst_off + 8 * n);
    let e = run(
        &raw const g_copy,
        [
            G_RAM + src_off as u64,
            G_RAM + dst_off as u64,
            n as u64,
            key,
        ],
    );
    let mut bad = None;
    for i in 0..n {
        let want = pattern(H_RAM, src_off / 8 + i) ^ key;
        let got = rd(H_RAM + dst_off + 8 * i);
        if got != want && bad.is_none() {
            bad = Some((i, got, want));
        }
    }
    let sentinels =
        rd(H_RAM + dst_off - 8) == sentinel_before && rd(H_RAM + dst_off + 8 * n) == sentinel_after;
    rep.verdict(
        "ram_rw",
        is_vmmcall(&e) && bad.is_none() && sentinels,
        format_args!(
            "exit={e:x?} gpa {:#x}->{:#x} hpa {:#x}->{:#x} words={n} first_mismatch={bad:x?} sentinels_intact={sentinels}",
            G_RAM + src_off as u64,
            G_RAM + dst_off as u64,
            H_RAM + src_off,
            H_RAM + dst_off
        ),
    );
}

/// 2. Accesses to holes (no PTE in a present page table; no PDPT entry
///    under a present PML4 entry) exit with #NPF, EXITINFO1 not-present
///    (plus write for the store) and EXITINFO2 = the GPA.
fn hole_fault(rep: &mut Report) {
    let leaf = guest_load(G_HOLE);
    let upper = guest_load(G_HOLE_UPPER);
    let store = guest_store(G_HOLE + 8, 1);
    rep.verdict(
        "hole_fault",
        is_hole_load(&leaf, G_HOLE)
            && is_hole_load(&upper, G_HOLE_UPPER)
            && is_npf(&store, G_HOLE + 8, NPF_W, NPF_P | NPF_ID),
        format_args!(
            "load gpa={G_HOLE:#x} -> {leaf:x?}; load gpa={G_HOLE_UPPER:#x} -> {upper:x?}; store gpa={:#x} -> {store:x?} (want #NPF, exitinfo2 = the gpa, exitinfo1 P=0, W on the store, bit 32 final)",
            G_HOLE + 8
        ),
    );
}

/// 3a. The read-only page reads, and a write to it exits with #NPF
///     (present + write) that leaves the host frame unchanged.
fn ro_write(rep: &mut Report) {
    let probe = G_RO + 0x100;
    let before = rd(H_RO + 0x100);
    let read = guest_load(probe);
    let w = guest_store(probe, 0xdead_beef_dead_beef);
    let after = rd(H_RO + 0x100);
    rep.verdict(
        "ro_write",
        read == Ok(before) && is_npf(&w, probe, NPF_P | NPF_W, NPF_ID) && after == before,
        format_args!(
            "read={read:x?} (want Ok({before:#x})); write -> {w:x?} (want #NPF exitinfo1 P|W|final, exitinfo2={probe:#x}); frame unchanged={}",
            after == before
        ),
    );
}

/// 3b. Fetching from the no-execute page exits with #NPF (present +
///     instruction fetch); the same VMMCALL placed in executable RAM runs
///     (the control), and the page's data still reads.
fn nx_fetch(rep: &mut Report) {
    write_insn(H_NX, VMMCALL);
    write_insn(H_RAM + 0xe000, VMMCALL);
    let control = run(&raw const g_jump, [G_RAM + 0xe000, 0, 0, 0]);
    let fetch = run(&raw const g_jump, [G_NX, 0, 0, 0]);
    let data = guest_load(G_NX + 8);
    rep.verdict(
        "nx_fetch",
        matches!(control, Exit::Vmmcall { rip, .. } if rip == G_RAM + 0xe000)
            && is_npf(&fetch, G_NX, NPF_P | NPF_ID, NPF_W)
            && data == Ok(rd(H_NX + 8)),
        format_args!(
            "exec from RAM -> {control:x?} (want VMMCALL at {:#x}); exec gpa={G_NX:#x} -> {fetch:x?} (want #NPF exitinfo1 P|ID|final); data read={data:x?}",
            G_RAM + 0xe000
        ),
    );
}

/// 4a. A 2 MiB nested leaf: the guest copies from its middle to its last bytes.
fn huge_2m(rep: &mut Report, t: &Table) {
    let q = t.query(Gpa::from(G_2M as usize + 0x1f_f000));
    let (src, dst, n) = (0x10_0000usize, SIZE_2M - 64, 8usize);
    fill(H_2M + src, n, |i| pattern(H_2M + src, i));
    fill(H_2M + dst, n, |_| 0);
    let e = run(
        &raw const g_copy,
        [G_2M + src as u64, G_2M + dst as u64, n as u64, 0],
    );
    let copied = (0..n).all(|i| rd(H_2M + dst + 8 * i) == pattern(H_2M + src, i));
    let leaf = q.map(|q| q.size) == Ok(SIZE_2M);
    rep.verdict(
        "huge_2m",
        leaf && is_vmmcall(&e) && copied,
        format_args!(
            "leaf={q:x?}; gpa {:#x}->{:#x} hpa {:#x}->{:#x} exit={e:x?} copied={copied}",
            G_2M + src as u64,
            G_2M + dst as u64,
            H_2M + src,
            H_2M + dst
        ),
    );
}

/// 4b. A 1 GiB nested leaf (GPA 4 GiB -> host memory from 0).
fn huge_1g(rep: &mut Report, t: &Table) {
    let off = (H_1G_PROBE - H_1G) as u64;
    let q = t.query(Gpa::from((G_1G + off) as usize));
    wr(H_1G_PROBE, 0x1611_1611_1611_1611);
    let read = guest_load(G_1G + off);
    let w = guest_store(G_1G + off + 0x100, 0x1633_1633_1633_1633);
    let written = rd(H_1G_PROBE + 0x100);
    let leaf = q.map(|q| (q.size, q.hpa.as_usize())) == Ok((SIZE_1G, H_1G_PROBE));
    rep.verdict(
        "huge_1g",
        leaf && read == Ok(0x1611_1611_1611_1611) && is_vmmcall(&w) && written == 0x1633_1633_1633_1633,
        format_args!(
            "leaf={q:x?}; read gpa {:#x} (hpa {H_1G_PROBE:#x}) = {read:x?}; wrote gpa {:#x}, hpa {:#x} holds {written:#x}",
            G_1G + off,
            G_1G + off + 0x100,
            H_1G_PROBE + 0x100
        ),
    );
}

/// Remaps `gpa` (a 4 KiB page) to `hpa`; returns the merged invalidations.
fn remap_page(t: &mut Table, gpa: u64, hpa: usize) -> npt::TlbFlush<Npt4> {
    let (_, mut tf) = ok(t.unmap(Gpa::from(gpa as usize)), "unmap");
    tf.merge(ok(
        t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, RW),
        "map",
    ));
    tf
}

/// Runs one batch through two collectors, for a CPU with and without
/// FlushByAsid, so both of SvmTlbControl's answers are checked even though
/// only one can go into this CPU's VMCB.
struct BothCollectors {
    with: SvmTlbControl,
    without: SvmTlbControl,
}

impl FlushExecutor for BothCollectors {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        self.with.execute(op)?;
        self.without.execute(op)
    }

    fn switch_context(
        &mut self,
        reg: ContextRegister,
        value: u64,
    ) -> Result<Option<u64>, FlushError> {
        self.with.switch_context(reg, value)
    }

    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError> {
        self.with.restore_context(reg, old)
    }
}

/// 5. Remapping a page the guest has used: npt's batch, run through
///    SvmTlbControl, asks for TLB_CONTROL 3 (flush this ASID; 1 without
///    FlushByAsid), which goes into the VMCB for the next VMRUN, after which
///    the guest sees the new frame. Then: the host's executor refuses the
///    VMCB request; the run without an invalidation is reported (INFO), not
///    judged (QEMU flushes at every VMRUN); flush_all asks for TLB_CONTROL 1.
fn remap(rep: &mut Report, t: &mut Table, cpu: &Cpu) {
    let (a, b, c) = (pattern(H_A, 0), pattern(H_B, 0), pattern(H_C, 0));
    let want = cpu.asid_flush();

    let warm = guest_load(G_REMAP);
    let tf = remap_page(t, G_REMAP, H_B);
    let scope = tf.scope();
    let pages = tf.pages().len();
    let mut both = BothCollectors {
        with: SvmTlbControl::new(true),
        without: SvmTlbControl::new(false),
    };
    let flushed = tf.flush_with(&mut both);
    let ctl = if cpu.flush_by_asid {
        both.with
    } else {
        both.without
    };
    set_tlb_control(ctl.tlb_control);
    let after = guest_load(G_REMAP);
    let word = LAST_ASID_WORD.load(Ordering::Relaxed);
    rep.verdict(
        "remap_flush",
        warm == Ok(a)
            && scope == Scope::Pages
            && flushed.is_ok()
            && both.with.tlb_control == 3
            && both.without.tlb_control == 1
            && word == (want as u64) << 32 | ASID
            && after == Ok(b),
        format_args!(
            "before={warm:x?} (frame A {a:#x}); remap to B, batch scope={scope:?} pages={pages}, flush_with={flushed:?}: SvmTlbControl tlb_control={} with FlushByAsid (want 3), {} without (want 1); this CPU: VMCB[0x58]={word:#x} (want {:#x}); after={after:x?} (want frame B {b:#x})",
            both.with.tlb_control,
            both.without.tlb_control,
            (want as u64) << 32 | ASID
        ),
    );

    let warm = guest_load(G_REMAP);
    let tf = remap_page(t, G_REMAP, H_C);
    let host = tf.flush();
    let seen = guest_load(G_REMAP);
    rep.verdict(
        "flush_needs_vmcb",
        matches!(host, Err(FlushError::NeedsVmcb(Instr::SvmFlushAsid))),
        format_args!("TlbFlush::flush() on the host's executor -> {host:?} (want Err(NeedsVmcb(SvmFlushAsid)))"),
    );
    let what = if seen == Ok(b) {
        "stale (old frame B)"
    } else if seen == Ok(c) {
        "fresh (new frame C)"
    } else {
        "neither"
    };
    println!(
        "INFO remap_stale_control observed={what} detail=before={warm:x?}; remap to C, no TLB_CONTROL (VMCB[0x58]={:#x}); after={seen:x?}",
        LAST_ASID_WORD.load(Ordering::Relaxed)
    );

    let mut ctl = SvmTlbControl::new(cpu.flush_by_asid);
    let all = flush_all::<Npt4>(&mut ctl);
    set_tlb_control(ctl.tlb_control);
    let fresh = guest_load(G_REMAP);
    let used = last_tlb_control();
    rep.verdict(
        "flush_all",
        all.is_ok() && ctl.tlb_control == 1 && used == 1 && fresh == Ok(c),
        format_args!(
            "flush_all(SvmTlbControl)={all:?} tlb_control={} (want 1), VMRUN with TLB_CONTROL={used}; after={fresh:x?} (want frame C {c:#x})",
            ctl.tlb_control
        ),
    );
}

/// 5b. Context scope: 2 MiB of 4 KiB pages the guest has used are unmapped
///     (their table freed once the batch has run) and replaced by a 2 MiB
///     leaf elsewhere; the batch asks for the ASID flush.
fn remap_context(rep: &mut Report, t: &mut Table, cpu: &Cpu) {
    let probe = G_CTX + 0x5000;
    let warm = guest_load(probe);
    let mut tf = ok(
        t.unmap_region(Gpa::from(G_CTX as usize), SIZE_2M),
        "unmap 2M",
    );
    tf.merge(ok(
        t.map(Gpa::from(G_CTX as usize), Hpa::from(H_CTX_2M), SIZE_2M, RW),
        "map 2M",
    ));
    let scope = tf.scope();
    let frees = tf.tables_to_free();
    let mut ctl = SvmTlbControl::new(cpu.flush_by_asid);
    let flushed = tf.flush_with(&mut ctl);
    set_tlb_control(ctl.tlb_control);
    let after = guest_load(probe);
    let used = last_tlb_control();
    let (old, new) = (pattern(H_CTX_4K + 0x5000, 0), pattern(H_CTX_2M + 0x5000, 0));
    let want = cpu.asid_flush();
    rep.verdict(
        "remap_context",
        warm == Ok(old)
            && scope == Scope::Context
            && flushed.is_ok()
            && ctl.tlb_control == want
            && used == want
            && after == Ok(new),
        format_args!(
            "before={warm:x?} (want {old:#x}); 512 pages -> one 2M page, scope={scope:?} tables_to_free={frees}, flush_with={flushed:?} tlb_control={} (want {want}); after={after:x?} (want {new:#x})",
            ctl.tlb_control
        ),
    );
}

/// 5c. Write-protecting a page the guest has written: with npt's
///     TLB_CONTROL the next write exits with #NPF (present + write).
fn protect_flush(rep: &mut Report, t: &mut Table, cpu: &Cpu) {
    let probe = G_RAM + 0xf008;
    let warm = guest_store(probe, 0x7777_0000_0000_0001);
    let tf = ok(
        t.protect(Gpa::from((probe & !0xfff) as usize), MF::READ),
        "protect",
    );
    let scope = tf.scope();
    let mut ctl = SvmTlbControl::new(cpu.flush_by_asid);
    let flushed = tf.flush_with(&mut ctl);
    set_tlb_control(ctl.tlb_control);
    let w = guest_store(probe, 0x7777_0000_0000_0002);
    let held = rd(H_RAM + 0xf008);
    let want = cpu.asid_flush();
    rep.verdict(
        "protect_flush",
        is_vmmcall(&warm)
            && flushed.is_ok()
            && ctl.tlb_control == want
            && is_npf(&w, probe, NPF_P | NPF_W, NPF_ID)
            && held == 0x7777_0000_0000_0001,
        format_args!(
            "write before={warm:x?}; protect READ, scope={scope:?}, flush_with={flushed:?} tlb_control={} (want {want}); write after -> {w:x?} (want #NPF P|W); hpa holds {held:#x}",
            ctl.tlb_control
        ),
    );
}

/// 5d. Mapping a GPA the guest has just faulted on: x86 caches no
///     not-present entries, so npt asks for no flush (TLB_CONTROL stays 0)
///     and the guest reaches the page.
fn map_after_fault(rep: &mut Report, t: &mut Table) {
    let probe = G_NEW + 0x10;
    let before = guest_load(probe);
    let tf = ok(
        t.map(Gpa::from(G_NEW as usize), Hpa::from(H_NEW), SIZE_4K, RW),
        "map",
    );
    let scope = tf.scope();
    let mut ctl = SvmTlbControl::new(true);
    let flushed = tf.flush_with(&mut ctl);
    set_tlb_control(ctl.tlb_control);
    let after = guest_load(probe);
    rep.verdict(
        "map_after_fault",
        is_hole_load(&before, probe)
            && scope == Scope::Nothing
            && flushed.is_ok()
            && ctl.tlb_control == 0
            && after == Ok(pattern(H_NEW, 2)),
        format_args!(
            "before={before:x?} (want #NPF not present); map, scope={scope:?}, flush_with={flushed:?} tlb_control={}; after={after:x?} (want {:#x})",
            ctl.tlb_control,
            pattern(H_NEW, 2)
        ),
    );
}

/// 6. A GPA with bit 39 set (PML4 index 1) reaches its own frame, not the
///    one mapped at the same GPA without bit 39; a hole there faults with
///    the full GPA.
fn gpa_bit39(rep: &mut Report) {
    let hi = BIT39 | G_RAM;
    let r_lo = guest_load(G_RAM + 0x40);
    let r_hi = guest_load(hi + 0x40);
    let w = guest_store(hi + 0x48, 0x3939_3939_3939_3939);
    let written = rd(H_39 + 0x48);
    let hole = guest_load(BIT39 | 0xc020_0040);
    rep.verdict(
        "gpa_bit39",
        r_lo == Ok(pattern(H_RAM, 8))
            && r_hi == Ok(pattern(H_39, 8))
            && is_vmmcall(&w)
            && written == 0x3939_3939_3939_3939
            && is_hole_load(&hole, BIT39 | 0xc020_0040),
        format_args!(
            "gpa {:#x} -> {r_lo:x?} (hpa {H_RAM:#x}); gpa {:#x} -> {r_hi:x?} (hpa {H_39:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; hole gpa {:#x} -> {hole:x?}",
            G_RAM + 0x40,
            hi + 0x40,
            hi + 0x48,
            BIT39 | 0xc020_0040
        ),
    );
}
