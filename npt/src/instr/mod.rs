//! The instruction wrappers flush recipes name, executed on the running
//! host. Each architecture's wrappers live in their own module and are
//! compiled only for that architecture's bare-metal targets (`target_os =
//! "none"`, where a hypervisor runs privileged); elsewhere, including
//! hosted test processes, they report [`FlushError::ForeignInstruction`].

use crate::error::FlushError;
use crate::flush::{ContextRegister, FlushExecutor, Issued};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod aarch64;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
mod riscv64;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod x86_64;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
use aarch64 as native;
#[cfg(all(target_arch = "riscv64", target_os = "none"))]
use riscv64 as native;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
use x86_64 as native;

/// Executes recipe instructions on this CPU.
///
/// The instructions are privileged: run flushes only where the format's
/// hypervisor runs (VMX root operation, EL2, HS-mode).
#[derive(Clone, Copy, Debug, Default)]
pub struct Host;

#[cfg(not(all(
    any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64"
    ),
    target_os = "none"
)))]
mod native {
    use super::*;
    pub fn execute(op: Issued) -> Result<(), FlushError> {
        Err(FlushError::ForeignInstruction(op.instr))
    }
    pub fn read_context(_: ContextRegister) -> Option<u64> {
        None
    }
    pub unsafe fn write_context(_: ContextRegister, _: u64) {}
}

impl FlushExecutor for Host {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        native::execute(op)
    }

    fn switch_context(
        &mut self,
        reg: ContextRegister,
        value: u64,
    ) -> Result<Option<u64>, FlushError> {
        let Some(old) = native::read_context(reg) else {
            return Err(FlushError::ForeignRegister(reg));
        };
        if old == value {
            return Ok(None);
        }
        // SAFETY: the recipe's context register is written with this
        // table's root-register value for the duration of the recipe and
        // restored right after; the caller runs at the privilege level the
        // format's recipes require.
        unsafe { native::write_context(reg, value) };
        Ok(Some(old))
    }

    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError> {
        // SAFETY: puts back the value read by `switch_context`.
        unsafe { native::write_context(reg, old) };
        Ok(())
    }
}

/// Collects what AMD SVM flush recipes ask of the next VMRUN: the
/// VMCB.TLB_CONTROL value (AMD APM Vol. 2 §15.16). Run a batch through it,
/// then write [`tlb_control`](Self::tlb_control) into the guest's VMCB
/// before VMRUN (and reset it afterwards).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvmTlbControl {
    /// 0: nothing requested; 3: flush this guest's ASID; 1: flush all.
    pub tlb_control: u8,
    /// Whether the CPU supports flush-by-ASID (CPUID Fn8000_000A EDX bit 6,
    /// FlushByAsid); without it a per-ASID request becomes flush-all.
    pub flush_by_asid: bool,
}

impl SvmTlbControl {
    /// A collector for a CPU with or without FlushByAsid.
    pub const fn new(flush_by_asid: bool) -> Self {
        SvmTlbControl {
            tlb_control: 0,
            flush_by_asid,
        }
    }
}

impl FlushExecutor for SvmTlbControl {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        let want = match op.instr {
            crate::flush::Instr::SvmFlushAsid if self.flush_by_asid => 3,
            crate::flush::Instr::SvmFlushAsid | crate::flush::Instr::SvmFlushAll => 1,
            other => return Err(FlushError::ForeignInstruction(other)),
        };
        // Flush-all (1) covers flush-by-ASID (3).
        self.tlb_control = match (self.tlb_control, want) {
            (1, _) | (_, 1) => 1,
            _ => want,
        };
        Ok(())
    }

    fn switch_context(&mut self, reg: ContextRegister, _: u64) -> Result<Option<u64>, FlushError> {
        Err(FlushError::ForeignRegister(reg))
    }

    fn restore_context(&mut self, reg: ContextRegister, _: u64) -> Result<(), FlushError> {
        Err(FlushError::ForeignRegister(reg))
    }
}
