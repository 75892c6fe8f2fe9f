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
#[path = "../../common/scenarios.rs"]
mod scenarios;
#[path = "../../common/scenarios_hw_dirty.rs"]
mod scenarios_hw_dirty;
#[path = "../../common/scenarios_rv_x86.rs"]
mod scenarios_rv_x86;
#[path = "../../common/x86.rs"]
mod x86;

use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use npt::flush::{flush_all, ContextRegister, FlushExecutor, Instr, Issued, Scope};
use npt::instr::SvmTlbControl;
use npt::x86_64::{Npt4, Npt4Params};
use npt::{FlushError, Format, TlbFlush};
use report::{pattern, rd, wr, Report};
use scenarios::{fill_common, fill_frames, map_common, ok};
use scenarios::{Access, Applied, Class, Fault, Hv, Kind, Routine, Table};
use x86::{
    code_hpa, gaddr, Page, EFER_LMA, EFER_LME, EFER_NXE, G_GPT, G_NEW, H_39, H_NEW, L, MSR_EFER,
};
use x86::{
    cpuid_ext, inb, load_idt, map_x86, outb, rdmsr, rdtsc, write_guest_tables, write_insn, wrmsr,
};

global_asm!(
    include_str!("../../common/x86_longmode.s"),
    options(att_syntax, raw)
);
global_asm!(include_str!("boot.s"), options(att_syntax, raw));
global_asm!(
    ".macro guest_exit\n vmmcall\n.endm",
    include_str!("../../common/x86_guest.s"),
    options(att_syntax, raw)
);

// ---------------------------------------------------------------- platform

/// The 16550 at COM1.
const COM1: u16 = 0x3f8;
/// `-device isa-debug-exit,iobase=0xf4`: QEMU exits with `(value << 1) | 1`.
const DEBUG_EXIT: u16 = 0xf4;
/// The value that ends the run with status 33: every verdict passed.
const EXIT_PASS: u8 = 0x10;

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

const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
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

static VMCB: Page = Page::new();
static HSAVE: Page = Page::new();

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

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// `VMMCALL` (0F 01 D9).
const VMMCALL: u32 = 0x00d9_010f;

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

/// A batch as this hypervisor applied it.
enum SvmFlush {
    /// Run through SvmTlbControl for a CPU with and without FlushByAsid
    /// (`want` says what each should ask for: 0 nothing, 3 this ASID, 1
    /// everything); this CPU's value went into VMCB.TLB_CONTROL, and the
    /// next VMRUN must see `word` at VMCB offset 0x58.
    Vmcb {
        result: Result<(), FlushError>,
        with: u8,
        without: u8,
        want: (u8, u8),
        word: u64,
        used: u64,
    },
    /// `TlbFlush::flush()` on the host's executor: no TLB_CONTROL.
    Host {
        result: Result<(), FlushError>,
        used: u64,
    },
}

impl Applied for SvmFlush {
    fn observe(&mut self) {
        let (SvmFlush::Vmcb { used, .. } | SvmFlush::Host { used, .. }) = self;
        *used = LAST_ASID_WORD.load(Ordering::Relaxed);
    }

    fn ok(&self) -> bool {
        matches!(*self, SvmFlush::Vmcb { result: Ok(()), with, without, want, word, used }
            if (with, without) == want && used == word)
    }
}

impl fmt::Display for SvmFlush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvmFlush::Vmcb { result, with, without, want, word, used } => write!(
                f,
                "flush_with={result:?}: SvmTlbControl tlb_control={with} with FlushByAsid (want {}), {without} without (want {}); VMRUN with VMCB[0x58]={used:#x} (want {word:#x})",
                want.0, want.1
            ),
            SvmFlush::Host { result, used } => write!(
                f,
                "TlbFlush::flush() on the host's executor -> {result:?}, so no TLB_CONTROL: VMRUN with VMCB[0x58]={used:#x}"
            ),
        }
    }
}

/// The hypervisor under AMD SVM, for the shared scenarios.
struct Svm {
    /// CPUID Fn8000_000A EDX bit 6.
    flush_by_asid: bool,
}

impl Svm {
    /// Runs a batch through both collectors and puts this CPU's value into
    /// VMCB.TLB_CONTROL for the next VMRUN.
    fn collect(
        &self,
        batch: impl FnOnce(&mut BothCollectors) -> Result<(), FlushError>,
        want: (u8, u8),
    ) -> SvmFlush {
        let mut both = BothCollectors {
            with: SvmTlbControl::new(true),
            without: SvmTlbControl::new(false),
        };
        let result = batch(&mut both);
        let (ctl, this) = if self.flush_by_asid {
            (both.with, want.0)
        } else {
            (both.without, want.1)
        };
        set_tlb_control(ctl.tlb_control);
        SvmFlush::Vmcb {
            result,
            with: both.with.tlb_control,
            without: both.without.tlb_control,
            want,
            word: (this as u64) << 32 | ASID,
            used: 0,
        }
    }
}

impl Hv for Svm {
    type Exit = Exit;
    type Flush = SvmFlush;
    /// QEMU flushes its nested TLB on every VMRUN and #VMEXIT.
    const STALE_SHOWS: bool = false;
    const HOLE_STORE: bool = true;

    fn run(&mut self, routine: Routine, x: [u64; 4]) -> Exit {
        let entry = match routine {
            Routine::Copy => &raw const g_copy,
            Routine::Load => &raw const g_load,
            Routine::Store => &raw const g_store,
            Routine::Call => &raw const g_jump,
        };
        run(entry, x)
    }

    /// VMMCALL is done; a #NPF on the final guest-physical address (not a
    /// guest page-table access) is a fault at EXITINFO2: an instruction
    /// fetch where EXITINFO1.ID, else a write where W (never both), a
    /// permission fault where P, else a not-present one.
    fn classify(e: &Exit) -> Class {
        match *e {
            Exit::Vmmcall { rip, x } => Class::Done {
                imm: None,
                pc: Some(rip),
                x,
            },
            Exit::Npf { info1, gpa }
                if info1 & (NPF_FINAL | NPF_GPT) == NPF_FINAL
                    && info1 & (NPF_W | NPF_ID) != NPF_W | NPF_ID =>
            {
                let access = if info1 & NPF_ID != 0 {
                    Access::Fetch
                } else if info1 & NPF_W != 0 {
                    Access::Write
                } else {
                    Access::Read
                };
                let kind = if info1 & NPF_P != 0 {
                    Kind::Permission
                } else {
                    Kind::Translation
                };
                Class::Fault {
                    gpa,
                    access,
                    kind: Some(kind),
                    level: None,
                }
            }
            Exit::Npf { .. } | Exit::Other { .. } => Class::Other,
        }
    }

    fn fmt_fault(want: &Fault, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#NPF exitinfo1 P={} W={} ID={} final=1 GPT=0, exitinfo2={:#x}",
            u8::from(want.kind == Kind::Permission),
            u8::from(want.access == Access::Write),
            u8::from(want.access == Access::Fetch),
            want.gpa
        )
    }

    fn plant_exit(pa: usize, _: u16) {
        write_insn(pa, VMMCALL);
    }

    fn fmt_planted(gpa: u64, _: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VMMCALL at {gpa:#x}")
    }

    /// A page or context batch asks for TLB_CONTROL 3 (flush this ASID)
    /// with FlushByAsid and 1 without; an empty one for nothing.
    fn flush<F: Format>(&mut self, tf: TlbFlush<F>, want: Scope) -> SvmFlush {
        let want = match want {
            Scope::Nothing => (0, 0),
            Scope::Pages | Scope::Context => (3, 1),
        };
        self.collect(|both| tf.flush_with(both).map_err(|u| u.error), want)
    }

    /// flush_all asks for TLB_CONTROL 1 either way.
    fn flush_all<F: Format>(&mut self) -> SvmFlush {
        self.collect(|both| flush_all::<F>(both), (1, 1))
    }

    /// The host's executor refuses the batch: its SVM instruction needs the
    /// VMCB (`flush_needs_vmcb`).
    fn skip_flush<F: Format>(&mut self, rep: &mut Report, tf: TlbFlush<F>) -> SvmFlush {
        let result = tf.flush().map_err(|u| u.error);
        rep.verdict(
            "flush_needs_vmcb",
            matches!(result, Err(FlushError::NeedsVmcb(Instr::SvmFlushAsid))),
            format_args!("TlbFlush::flush() on the host's executor -> {result:?} (want Err(NeedsVmcb(SvmFlushAsid)))"),
        );
        SvmFlush::Host { result, used: 0 }
    }
}

// -------------------------------------------------------------------- main

#[no_mangle]
extern "C" fn hv_main() -> ! {
    load_idt();
    let ext1 = cpuid_ext(0x8000_0001);
    let svm_leaf = cpuid_ext(0x8000_000a);
    let phys_bits = cpuid_ext(0x8000_0008)[0] & 0xff;
    let svm = ext1[2] & (1 << 2) != 0;
    let nx = ext1[3] & (1 << 20) != 0;
    let gbpages = ext1[3] & (1 << 26) != 0;
    let np = svm_leaf[3] & 1 != 0;
    let nasid = svm_leaf[1];
    let hv = &mut Svm {
        flush_by_asid: svm_leaf[3] & (1 << 6) != 0,
    };
    println!(
        "npt test hypervisor, x86_64 (AMD SVM); SVM={svm} rev={} NASID={nasid} NP={np} FlushByAsid={} NX={nx} 1G-pages={gbpages} phys-bits={phys_bits}",
        svm_leaf[0] & 0xff,
        hv.flush_by_asid
    );
    if !(svm && np && nx && gbpages) || (nasid as u64) <= ASID {
        println!("PANIC: the CPU lacks SVM, nested paging, NX, 1 GiB pages or ASID {ASID} (QEMU needs -cpu max)");
        exit(4);
    }
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE | EFER_SVME);
    wrmsr(MSR_VM_HSAVE_PA, HSAVE.pa());

    let mut rep = Report::default();
    let mut t = ok(
        Table::<Npt4>::try_new_with(Npt4Params {
            asid: ASID,
            // CPUID Fn8000_0008 EAX[7:0]: npt refuses host addresses above it.
            pa_bits: phys_bits.into(),
        }),
        "an Npt4 table",
    );
    let ncr3 = t.root_register();
    println!(
        "Npt4: nCR3={ncr3:#x} (root at {:#x}), ASID={ASID}",
        t.root_paddr().as_usize()
    );
    write_guest_tables();

    // The table is not live yet: nothing to invalidate.
    map_common(&mut t, &L, code_hpa());
    map_x86(&mut t);
    fill_common(&L);
    fill_frames(&[H_NEW, H_39]);

    init_vmcb(ncr3, G_GPT);
    let first = hv.load(L.g_ram + 0x10);
    println!(
        "first VMRUN: guest load of gpa {:#x} -> {first:x?} (want Ok({:#x}))",
        L.g_ram + 0x10,
        pattern(L.h_ram, 2)
    );
    if let Err(Exit::Other { code, .. }) = first {
        if code == EXIT_INVALID || code == EXIT_SHUTDOWN || code == EXIT_HLT {
            println!("PANIC: the guest does not run (exit code {code:#x})");
            exit(4);
        }
    }

    scenarios::run_all(&mut rep, hv, &mut t, &L);
    // x86 caches no not-present entries: npt asks for no flush.
    scenarios_rv_x86::map_after_fault(&mut rep, hv, &mut t, (G_NEW, H_NEW), Scope::Nothing);
    // PML4 index 1.
    scenarios_rv_x86::gpa_bit39(&mut rep, hv, "gpa_bit39", &L, H_39);
    // The nested walk sets A and D (APM §15.25.5): logging without faults.
    scenarios_hw_dirty::hw_dirty_log(&mut rep, hv, &mut t, L.g_2m, L.h_2m);

    drop(t);
    scenarios::frames_freed(&mut rep, "the table");
    rep.done();
    exit(if rep.fail == 0 { EXIT_PASS } else { 1 })
}
