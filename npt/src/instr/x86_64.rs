//! INVEPT (Intel SDM Vol. 3C, VMX instruction reference, "INVEPT —
//! Invalidate Translations Derived from EPT").

use crate::error::FlushError;
use crate::flush::{Arg, ContextRegister, Instr, Issued};
use x86::vmx::VmFail;

/// IA32_VMX_EPT_VPID_CAP bit 25: single-context INVEPT supported
/// (SDM Vol. 3D, Appendix A.10 "VPID and EPT Capabilities").
const CAP_INVEPT_SINGLE: u64 = 1 << 25;
/// IA32_VMX_EPT_VPID_CAP bit 26: all-context INVEPT supported.
const CAP_INVEPT_ALL: u64 = 1 << 26;

/// Runs INVEPT of `ty` (1 single-context, 2 all-context) with a 128-bit
/// descriptor holding `eptp` in bits 63:0 and zero in bits 127:64.
fn invept(ty: u64, eptp: u64) -> x86::vmx::Result<()> {
    let desc: [u64; 2] = [eptp, 0];
    let rflags: u64;
    // SAFETY: INVEPT reads the 16-byte descriptor and changes no memory; it
    // is valid in VMX root operation, which the caller of a flush is in.
    unsafe {
        core::arch::asm!(
            "invept {ty}, [{desc}]",
            "pushfq",
            "pop {rflags}",
            ty = in(reg) ty,
            desc = in(reg) desc.as_ptr(),
            rflags = lateout(reg) rflags,
        );
    }
    // VMfailInvalid sets CF (bit 0); VMfailValid sets ZF (bit 6).
    if rflags & 1 != 0 {
        Err(VmFail::VmFailInvalid)
    } else if rflags & (1 << 6) != 0 {
        Err(VmFail::VmFailValid)
    } else {
        Ok(())
    }
}

fn capabilities() -> u64 {
    // SAFETY: reading a VMX capability MSR has no side effects; it exists on
    // every CPU that supports EPT.
    unsafe { x86::msr::rdmsr(x86::msr::IA32_VMX_EPT_VPID_CAP) }
}

pub fn execute(op: Issued) -> Result<(), FlushError> {
    let cap = capabilities();
    match (op.instr, op.args[0]) {
        (Instr::InveptSingleContext, Arg::Value(eptp)) if cap & CAP_INVEPT_SINGLE != 0 => {
            invept(1, eptp).map_err(FlushError::VmFail)
        }
        // All-context invalidates a superset of single-context.
        (Instr::InveptSingleContext | Instr::InveptAllContext, _) if cap & CAP_INVEPT_ALL != 0 => {
            invept(2, 0).map_err(FlushError::VmFail)
        }
        (Instr::InveptSingleContext | Instr::InveptAllContext, _) => {
            Err(FlushError::Unsupported(op.instr))
        }
        // VMCB requests: the hypervisor runs the batch through
        // `SvmTlbControl` and writes the result into its VMCB.
        (Instr::SvmFlushAsid | Instr::SvmFlushAll, _) => Err(FlushError::NeedsVmcb(op.instr)),
        (other, _) => Err(FlushError::ForeignInstruction(other)),
    }
}

pub fn read_context(_: ContextRegister) -> Option<u64> {
    None
}

pub unsafe fn write_context(_: ContextRegister, _: u64) {}
