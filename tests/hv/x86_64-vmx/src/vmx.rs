//! VMX operation: entering it, one VMCS for a 64-bit guest under EPT, and
//! running the guest to its next VM exit. Field encodings, MSR numbers and
//! control bits come from the `x86` crate.

use crate::scenarios::Routine;
use crate::x86::{cpuid, gaddr, rdmsr, wrmsr, Page, EFER_LMA, EFER_LME, IDT, MSR_EFER};
use core::arch::asm;
use core::fmt;
use x86::bits64::vmx as insn;
use x86::msr;
use x86::vmx::vmcs::control::{EntryControls, ExitControls, PrimaryControls, SecondaryControls};
use x86::vmx::vmcs::{control, guest, host, ro};

static VMXON: Page = Page::new();
static VMCS: Page = Page::new();
static TSS: Page = Page::new();

extern "C" {
    fn vmx_run(regs: *mut [u64; 4], launched: u64) -> u64;
    static mut gdt: [u64; 6];
    static g_copy: u8;
    static g_load: u8;
    static g_store: u8;
    static g_jump: u8;
}

/// Selectors in `x86_longmode.s`'s GDT.
const SEL_CODE: u16 = 0x08;
const SEL_DATA: u16 = 0x10;
const SEL_TSS: u16 = 0x20;

/// IA32_VMX_EPT_VPID_CAP bits (SDM Vol. 3D §A.10).
pub mod cap {
    pub const EXECUTE_ONLY: u64 = 1 << 0;
    pub const WALK_4: u64 = 1 << 6;
    pub const WALK_5: u64 = 1 << 7;
    pub const WB: u64 = 1 << 14;
    pub const PAGE_2M: u64 = 1 << 16;
    pub const PAGE_1G: u64 = 1 << 17;
    pub const INVEPT: u64 = 1 << 20;
    pub const AD: u64 = 1 << 21;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVEPT_ALL: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
}

/// What the CPU reports.
pub struct Caps {
    pub revision: u32,
    /// IA32_VMX_BASIC bit 55: the TRUE control MSRs exist.
    pub true_ctls: bool,
    pub ept_vpid: u64,
    pub ept_1g: bool,
    pub invept_single: bool,
    pub execute_only: bool,
    pub ad: bool,
    pub vpid: bool,
    pub phys_bits: u32,
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VMCS revision {:#x}, TRUE controls={}, IA32_VMX_EPT_VPID_CAP={:#x} (execute-only={}, 4-level={}, 5-level={}, WB={}, 2M={}, 1G={}, INVEPT single={}, all={}, A/D={}), VPID={}, phys-bits={}",
            self.revision,
            self.true_ctls,
            self.ept_vpid,
            self.execute_only,
            self.ept_vpid & cap::WALK_4 != 0,
            self.ept_vpid & cap::WALK_5 != 0,
            self.ept_vpid & cap::WB != 0,
            self.ept_vpid & cap::PAGE_2M != 0,
            self.ept_1g,
            self.invept_single,
            self.ept_vpid & cap::INVEPT_ALL != 0,
            self.ad,
            self.vpid,
            self.phys_bits
        )
    }
}

/// IA32_FEATURE_CONTROL: lock (bit 0), VMX outside SMX (bit 2).
const FC_LOCK: u64 = 1 << 0;
const FC_VMX: u64 = 1 << 2;
const CR4_VMXE: u64 = 1 << 13;

fn cr0() -> u64 {
    let v;
    // SAFETY: reading a control register at CPL 0.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn cr3() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

fn cr4() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// `v` with the bits FIXED0 says must be 1 set and those FIXED1 says must
/// be 0 cleared (SDM Vol. 3D §A.7, §A.8).
fn fixed(v: u64, fixed0: u32, fixed1: u32) -> u64 {
    (v | rdmsr(fixed0)) & rdmsr(fixed1)
}

/// Enters VMX operation (SDM Vol. 3C §24.7 "Enabling and Entering VMX
/// Operation") and reports the capabilities.
pub fn enable() -> Result<Caps, &'static str> {
    if cpuid(1)[2] & (1 << 5) == 0 {
        return Err("CPUID.1:ECX.VMX is clear");
    }
    let fc = rdmsr(msr::IA32_FEATURE_CONTROL);
    if fc & FC_LOCK == 0 {
        wrmsr(msr::IA32_FEATURE_CONTROL, fc | FC_LOCK | FC_VMX);
    } else if fc & FC_VMX == 0 {
        return Err("IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled");
    }
    let basic = rdmsr(msr::IA32_VMX_BASIC);
    let true_ctls = basic & (1 << 55) != 0;
    let procbased = rdmsr(msr::IA32_VMX_PROCBASED_CTLS);
    let secondary = if procbased >> 32 & u64::from(PrimaryControls::SECONDARY_CONTROLS.bits()) != 0
    {
        rdmsr(msr::IA32_VMX_PROCBASED_CTLS2)
    } else {
        0
    };
    if secondary >> 32 & u64::from(SecondaryControls::ENABLE_EPT.bits()) == 0 {
        return Err("the CPU cannot enable EPT (IA32_VMX_PROCBASED_CTLS2)");
    }
    let ept_vpid = rdmsr(msr::IA32_VMX_EPT_VPID_CAP);
    let caps = Caps {
        revision: basic as u32 & 0x7fff_ffff,
        true_ctls,
        ept_vpid,
        ept_1g: ept_vpid & cap::PAGE_1G != 0,
        invept_single: ept_vpid & (cap::INVEPT | cap::INVEPT_SINGLE)
            == cap::INVEPT | cap::INVEPT_SINGLE,
        execute_only: ept_vpid & cap::EXECUTE_ONLY != 0,
        ad: ept_vpid & cap::AD != 0,
        vpid: secondary >> 32 & u64::from(SecondaryControls::ENABLE_VPID.bits()) != 0
            && ept_vpid & cap::INVVPID != 0,
        phys_bits: crate::x86::cpuid_ext(0x8000_0008)[0] & 0xff,
    };
    if ept_vpid & (cap::WALK_4 | cap::WB) != cap::WALK_4 | cap::WB {
        return Err("the CPU lacks a 4-level EPT walk or write-back EPT structures");
    }
    let cr0 = fixed(cr0(), msr::IA32_VMX_CR0_FIXED0, msr::IA32_VMX_CR0_FIXED1);
    let cr4 = fixed(
        cr4() | CR4_VMXE,
        msr::IA32_VMX_CR4_FIXED0,
        msr::IA32_VMX_CR4_FIXED1,
    );
    // SAFETY: CR0 and CR4 only gain the bits VMX operation needs (NE, VMXE).
    unsafe {
        asm!("mov cr0, {}", in(reg) cr0, options(nostack, preserves_flags));
        asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags));
    }
    crate::report::wr(VMXON.pa() as usize, caps.revision.into());
    // SAFETY: the VMXON region is a 4 KiB-aligned page holding the revision.
    unsafe { insn::vmxon(VMXON.pa()) }.map_err(|_| "VMXON failed")?;
    Ok(caps)
}

/// The VMCS's EPTP field.
pub fn eptp() -> u64 {
    vmread(control::EPTP_FULL)
}

fn vmread(field: u32) -> u64 {
    // SAFETY: a current VMCS exists once `Vmx::new` has run; before, VMREAD
    // fails and reads as 0.
    unsafe { insn::vmread(field) }.unwrap_or(0)
}

fn vmwrite(field: u32, v: u64) -> Result<(), Field> {
    // SAFETY: writing a field of the current VMCS, which only this CPU uses.
    unsafe { insn::vmwrite(field, v) }.map_err(|_| Field(field, vmread(ro::VM_INSTRUCTION_ERROR)))
}

/// A VMWRITE that failed: the field, and the VM-instruction error.
pub struct Field(u32, u64);

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VMWRITE of field {:#x} failed (VM-instruction error {})",
            self.0, self.1
        )
    }
}

/// `want` adjusted to a control capability MSR (SDM Vol. 3D §A.3..A.5):
/// bits 31:0 are the controls that must be 1, bits 63:32 those that may be.
/// Err if a wanted control cannot be set.
fn adjust(msr_true: u32, msr_plain: u32, true_ctls: bool, want: u32) -> Result<u32, &'static str> {
    let v = rdmsr(if true_ctls { msr_true } else { msr_plain });
    let ctl = (want | v as u32) & (v >> 32) as u32;
    if ctl & want == want {
        Ok(ctl)
    } else {
        Err("a control the tests need is not allowed by its capability MSR")
    }
}

/// Why the guest stopped.
#[derive(Clone, Copy, PartialEq)]
pub enum Exit {
    /// VMCALL at `rip` (exit reason 18); the guest's rdi, rsi, rdx, rcx.
    Vmcall { rip: u64, x: [u64; 4] },
    /// EPT violation (exit reason 48): the exit qualification and the
    /// guest-physical address field.
    EptViolation { qual: u64, gpa: u64, rip: u64 },
    /// EPT misconfiguration (exit reason 49).
    EptMisconfig { gpa: u64, rip: u64 },
    /// Any other exit.
    Other {
        reason: u64,
        qual: u64,
        intr_info: u64,
        rip: u64,
    },
    /// VMLAUNCH/VMRESUME failed: 1 VMfailInvalid, 2 VMfailValid with the
    /// VM-instruction error.
    Failed { code: u64, error: u64 },
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Vmcall { rip, x } => write!(f, "Vmcall {{ rip: {rip:#x}, rdi/rsi/rdx/rcx: {x:x?} }}"),
            Exit::EptViolation { qual, gpa, rip } => write!(
                f,
                "EptViolation {{ qualification: {qual:#x}, gpa: {gpa:#x}, rip: {rip:#x} }}"
            ),
            Exit::EptMisconfig { gpa, rip } => write!(f, "EptMisconfig {{ gpa: {gpa:#x}, rip: {rip:#x} }}"),
            Exit::Other { reason, qual, intr_info, rip } => write!(
                f,
                "Other {{ reason: {reason:#x}, qualification: {qual:#x}, interruption info: {intr_info:#x}, rip: {rip:#x} }}"
            ),
            Exit::Failed { code, error } => write!(f, "Failed {{ code: {code}, VM-instruction error: {error} }}"),
        }
    }
}

const EXIT_VMCALL: u64 = 18;
const EXIT_EPT_VIOLATION: u64 = 48;
const EXIT_EPT_MISCONFIG: u64 = 49;

/// The hypervisor: one VMCS for one guest.
pub struct Vmx {
    launched: bool,
    /// The secondary controls in use (ENABLE_VPID toggled by `set_vpid`).
    secondary: u32,
}

/// Guest segment access rights (SDM Vol. 3C §25.4.1, Table 25-2): type in
/// bits 3:0, S bit 4, DPL 6:5, P bit 7, L bit 13, D/B bit 14, G bit 15,
/// unusable bit 16.
const AR_CODE64: u64 = 0xb | 1 << 4 | 1 << 7 | 1 << 13 | 1 << 15;
const AR_DATA: u64 = 0x3 | 1 << 4 | 1 << 7 | 1 << 14 | 1 << 15;
/// A busy 64-bit TSS (type 11), present.
const AR_TSS_BUSY: u64 = 0xb | 1 << 7;
const AR_UNUSABLE: u64 = 1 << 16;

impl Vmx {
    /// Loads TR, makes a fresh VMCS current and fills it for a 64-bit
    /// guest at CPL 0 whose CR3 is `guest_cr3`, under `eptp`.
    pub fn new(caps: &Caps, eptp: u64, guest_cr3: u64) -> Result<Vmx, Field> {
        load_tr();
        crate::report::wr(VMCS.pa() as usize, caps.revision.into());
        // SAFETY: the VMCS region is a 4 KiB-aligned page holding the revision.
        let loaded = unsafe { insn::vmclear(VMCS.pa()).and_then(|()| insn::vmptrld(VMCS.pa())) };
        if loaded.is_err() {
            return Err(Field(0, u64::MAX));
        }
        let t = caps.true_ctls;
        let bad = |_| Field(0, u64::MAX - 1);
        let pin = adjust(
            msr::IA32_VMX_TRUE_PINBASED_CTLS,
            msr::IA32_VMX_PINBASED_CTLS,
            t,
            0,
        )
        .map_err(bad)?;
        // HLT and every I/O instruction exit; the secondary controls enable EPT.
        let primary = adjust(
            msr::IA32_VMX_TRUE_PROCBASED_CTLS,
            msr::IA32_VMX_PROCBASED_CTLS,
            t,
            (PrimaryControls::HLT_EXITING
                | PrimaryControls::UNCOND_IO_EXITING
                | PrimaryControls::SECONDARY_CONTROLS)
                .bits(),
        )
        .map_err(bad)?;
        let secondary = adjust(
            msr::IA32_VMX_PROCBASED_CTLS2,
            msr::IA32_VMX_PROCBASED_CTLS2,
            t,
            SecondaryControls::ENABLE_EPT.bits(),
        )
        .map_err(bad)?;
        let exit = adjust(
            msr::IA32_VMX_TRUE_EXIT_CTLS,
            msr::IA32_VMX_EXIT_CTLS,
            t,
            (ExitControls::HOST_ADDRESS_SPACE_SIZE | ExitControls::LOAD_IA32_EFER).bits(),
        )
        .map_err(bad)?;
        let entry = adjust(
            msr::IA32_VMX_TRUE_ENTRY_CTLS,
            msr::IA32_VMX_ENTRY_CTLS,
            t,
            (EntryControls::IA32E_MODE_GUEST | EntryControls::LOAD_IA32_EFER).bits(),
        )
        .map_err(bad)?;
        vmwrite(control::PINBASED_EXEC_CONTROLS, pin.into())?;
        vmwrite(control::PRIMARY_PROCBASED_EXEC_CONTROLS, primary.into())?;
        vmwrite(control::SECONDARY_PROCBASED_EXEC_CONTROLS, secondary.into())?;
        vmwrite(control::VMEXIT_CONTROLS, exit.into())?;
        vmwrite(control::VMENTRY_CONTROLS, entry.into())?;
        // Every exception exits (a guest bug ends the run, not the machine).
        vmwrite(control::EXCEPTION_BITMAP, 0xffff_ffff)?;
        vmwrite(control::PAGE_FAULT_ERR_CODE_MASK, 0)?;
        vmwrite(control::PAGE_FAULT_ERR_CODE_MATCH, 0)?;
        vmwrite(control::CR3_TARGET_COUNT, 0)?;
        vmwrite(control::EPTP_FULL, eptp)?;

        // Host state (SDM Vol. 3C §25.5): this CPU as it is now.
        vmwrite(host::CR0, cr0())?;
        vmwrite(host::CR3, cr3())?;
        vmwrite(host::CR4, cr4())?;
        vmwrite(host::CS_SELECTOR, SEL_CODE.into())?;
        for f in [
            host::SS_SELECTOR,
            host::DS_SELECTOR,
            host::ES_SELECTOR,
            host::FS_SELECTOR,
            host::GS_SELECTOR,
        ] {
            vmwrite(f, SEL_DATA.into())?;
        }
        vmwrite(host::TR_SELECTOR, SEL_TSS.into())?;
        vmwrite(host::FS_BASE, 0)?;
        vmwrite(host::GS_BASE, 0)?;
        vmwrite(host::TR_BASE, TSS.pa())?;
        vmwrite(host::GDTR_BASE, (&raw const gdt) as u64)?;
        vmwrite(host::IDTR_BASE, IDT.pa())?;
        vmwrite(host::IA32_SYSENTER_CS, 0)?;
        vmwrite(host::IA32_SYSENTER_ESP, 0)?;
        vmwrite(host::IA32_SYSENTER_EIP, 0)?;
        vmwrite(host::IA32_EFER_FULL, rdmsr(MSR_EFER))?;

        // Guest state (SDM Vol. 3C §25.4, checked as in §27.3.1): 64-bit
        // mode, CPL 0, paging with the guest's own tables.
        let cr0 = fixed(
            1 << 31 | 1 << 5 | 1 << 4 | 1,
            msr::IA32_VMX_CR0_FIXED0,
            msr::IA32_VMX_CR0_FIXED1,
        );
        let cr4 = fixed(1 << 5, msr::IA32_VMX_CR4_FIXED0, msr::IA32_VMX_CR4_FIXED1);
        vmwrite(guest::CR0, cr0)?;
        vmwrite(guest::CR3, guest_cr3)?;
        vmwrite(guest::CR4, cr4)?;
        vmwrite(guest::IA32_EFER_FULL, EFER_LME | EFER_LMA)?;
        vmwrite(guest::DR7, 0x400)?;
        vmwrite(guest::RFLAGS, 2)?;
        vmwrite(guest::IA32_DEBUGCTL_FULL, 0)?;
        vmwrite(guest::IA32_SYSENTER_CS, 0)?;
        vmwrite(guest::IA32_SYSENTER_ESP, 0)?;
        vmwrite(guest::IA32_SYSENTER_EIP, 0)?;
        segment(
            guest::CS_SELECTOR,
            guest::CS_BASE,
            guest::CS_LIMIT,
            guest::CS_ACCESS_RIGHTS,
            SEL_CODE,
            AR_CODE64,
        )?;
        for (sel, base, limit, ar) in [
            (
                guest::SS_SELECTOR,
                guest::SS_BASE,
                guest::SS_LIMIT,
                guest::SS_ACCESS_RIGHTS,
            ),
            (
                guest::DS_SELECTOR,
                guest::DS_BASE,
                guest::DS_LIMIT,
                guest::DS_ACCESS_RIGHTS,
            ),
            (
                guest::ES_SELECTOR,
                guest::ES_BASE,
                guest::ES_LIMIT,
                guest::ES_ACCESS_RIGHTS,
            ),
            (
                guest::FS_SELECTOR,
                guest::FS_BASE,
                guest::FS_LIMIT,
                guest::FS_ACCESS_RIGHTS,
            ),
            (
                guest::GS_SELECTOR,
                guest::GS_BASE,
                guest::GS_LIMIT,
                guest::GS_ACCESS_RIGHTS,
            ),
        ] {
            segment(sel, base, limit, ar, SEL_DATA, AR_DATA)?;
        }
        // VM entry needs a busy TSS in TR and an unusable (or valid) LDTR
        // (§27.3.1.2), even though this guest never uses either.
        vmwrite(guest::TR_SELECTOR, SEL_TSS.into())?;
        vmwrite(guest::TR_BASE, 0)?;
        vmwrite(guest::TR_LIMIT, 0x67)?;
        vmwrite(guest::TR_ACCESS_RIGHTS, AR_TSS_BUSY)?;
        vmwrite(guest::LDTR_SELECTOR, 0)?;
        vmwrite(guest::LDTR_BASE, 0)?;
        vmwrite(guest::LDTR_LIMIT, 0)?;
        vmwrite(guest::LDTR_ACCESS_RIGHTS, AR_UNUSABLE)?;
        vmwrite(guest::GDTR_BASE, 0)?;
        vmwrite(guest::GDTR_LIMIT, 0xffff)?;
        vmwrite(guest::IDTR_BASE, 0)?;
        vmwrite(guest::IDTR_LIMIT, 0xffff)?;
        vmwrite(guest::LINK_PTR_FULL, u64::MAX)?;
        vmwrite(guest::ACTIVITY_STATE, 0)?;
        vmwrite(guest::INTERRUPTIBILITY_STATE, 0)?;
        vmwrite(guest::PENDING_DBG_EXCEPTIONS, 0)?;
        Ok(Vmx {
            launched: false,
            secondary,
        })
    }

    /// Points the VMCS at another EPT (the next VM entry uses it).
    pub fn set_eptp(&mut self, eptp: u64) -> Result<(), Field> {
        vmwrite(control::EPTP_FULL, eptp)
    }

    /// Turns VPID on with this VPID (non-zero), or off (0).
    pub fn set_vpid(&mut self, vpid: u16) -> Result<(), Field> {
        let bit = SecondaryControls::ENABLE_VPID.bits();
        self.secondary = if vpid != 0 {
            self.secondary | bit
        } else {
            self.secondary & !bit
        };
        vmwrite(control::VPID, vpid.into())?;
        vmwrite(
            control::SECONDARY_PROCBASED_EXEC_CONTROLS,
            self.secondary.into(),
        )
    }

    /// Runs `routine` with rdi, rsi, rdx, rcx = `x` until the next VM exit.
    pub fn run_routine(&mut self, routine: Routine, x: [u64; 4]) -> Exit {
        let entry = match routine {
            Routine::Copy => &raw const g_copy,
            Routine::Load => &raw const g_load,
            Routine::Store => &raw const g_store,
            Routine::Call => &raw const g_jump,
        };
        let mut regs = x;
        let set = vmwrite(guest::RIP, gaddr(entry))
            .and_then(|()| vmwrite(guest::RSP, 0))
            .and_then(|()| vmwrite(guest::RFLAGS, 2));
        if let Err(Field(_, error)) = set {
            return Exit::Failed { code: 3, error };
        }
        // SAFETY: the VMCS describes a guest whose code, page tables and
        // memory the EPT maps; every VM exit comes back to vmx_run's caller.
        let code = unsafe { vmx_run(&mut regs, self.launched.into()) };
        if code != 0 {
            return Exit::Failed {
                code,
                error: if code == 2 {
                    vmread(ro::VM_INSTRUCTION_ERROR)
                } else {
                    0
                },
            };
        }
        let reason = vmread(ro::EXIT_REASON);
        // A VM-entry failure (bit 31) leaves the VMCS not launched.
        self.launched = reason & (1 << 31) == 0;
        let qual = vmread(ro::EXIT_QUALIFICATION);
        let gpa = vmread(ro::GUEST_PHYSICAL_ADDR_FULL);
        let rip = vmread(guest::RIP);
        match reason {
            EXIT_VMCALL => Exit::Vmcall { rip, x: regs },
            EXIT_EPT_VIOLATION => Exit::EptViolation { qual, gpa, rip },
            EXIT_EPT_MISCONFIG => Exit::EptMisconfig { gpa, rip },
            _ => Exit::Other {
                reason,
                qual,
                intr_info: vmread(ro::VMEXIT_INTERRUPTION_INFO),
                rip,
            },
        }
    }
}

fn segment(
    sel: u32,
    base: u32,
    limit: u32,
    ar: u32,
    selector: u16,
    rights: u64,
) -> Result<(), Field> {
    vmwrite(sel, selector.into())?;
    vmwrite(base, 0)?;
    vmwrite(limit, 0xffff_ffff)?;
    vmwrite(ar, rights)
}

/// Writes the TSS descriptor (GDT slot 0x20, 16 bytes: a 64-bit available
/// TSS, limit 0x67) and loads TR: VM exits need a non-zero host TR
/// selector (SDM Vol. 3C §27.2.3).
fn load_tr() {
    let base = TSS.pa();
    let low = 0x67 | (base & 0xff_ffff) << 16 | 0x89 << 40 | (base >> 24 & 0xff) << 56;
    // SAFETY: slots 4 and 5 of the GDT are reserved for this TSS; nothing
    // else reads them until LTR.
    unsafe {
        let g = &raw mut gdt;
        (*g)[4] = low;
        (*g)[5] = base >> 32;
        asm!("ltr {0:x}", in(reg) SEL_TSS, options(nostack, preserves_flags));
    }
}
