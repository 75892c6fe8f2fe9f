//! Barriers and TLB maintenance (Arm ARM C6.2: DSB, ISB, TLBI; D8.16
//! "TLB maintenance").

use crate::error::FlushError;
use crate::flush::{Arg, ContextRegister, Instr, Issued};
use core::arch::asm;

pub fn execute(op: Issued) -> Result<(), FlushError> {
    let xt = match op.args[0] {
        Arg::Value(v) => v,
        Arg::Zero => 0,
    };
    // SAFETY: barriers and TLB invalidations change no memory; they are
    // valid at EL2, where the caller of a stage-2 flush runs.
    unsafe {
        match op.instr {
            Instr::DsbIshst => asm!("dsb ishst", options(nostack, preserves_flags)),
            Instr::DsbIsh => asm!("dsb ish", options(nostack, preserves_flags)),
            Instr::Isb => asm!("isb", options(nostack, preserves_flags)),
            Instr::TlbiIpas2e1is => {
                asm!("tlbi ipas2e1is, {}", in(reg) xt, options(nostack, preserves_flags))
            }
            Instr::TlbiVmalle1is => asm!("tlbi vmalle1is", options(nostack, preserves_flags)),
            Instr::TlbiVmalls12e1is => asm!("tlbi vmalls12e1is", options(nostack, preserves_flags)),
            Instr::TlbiAlle1is => asm!("tlbi alle1is", options(nostack, preserves_flags)),
            other => return Err(FlushError::ForeignInstruction(other)),
        }
    }
    Ok(())
}

pub fn read_context(reg: ContextRegister) -> Option<u64> {
    match reg {
        ContextRegister::VttbrEl2 => {
            let v: u64;
            // SAFETY: reading VTTBR_EL2 at EL2 has no side effects.
            unsafe {
                asm!("mrs {}, vttbr_el2", out(reg) v, options(nomem, nostack, preserves_flags))
            };
            Some(v)
        }
        ContextRegister::HcrEl2Tge => {
            let v: u64;
            // SAFETY: reading HCR_EL2 at EL2 has no side effects.
            unsafe {
                asm!("mrs {}, hcr_el2", out(reg) v, options(nomem, nostack, preserves_flags))
            };
            Some((v >> HCR_TGE_BIT) & 1)
        }
    }
}

/// HCR_EL2.TGE (Arm ARM D19.2, HCR_EL2).
const HCR_TGE_BIT: u32 = 27;

/// # Safety
/// Must run at EL2 with `value` a valid VTTBR_EL2 value.
pub unsafe fn write_context(reg: ContextRegister, value: u64) {
    match reg {
        ContextRegister::VttbrEl2 => {
            // The ISB makes the new VMID current for the TLBIs that follow.
            asm!("msr vttbr_el2, {}", "isb", in(reg) value, options(nostack, preserves_flags));
        }
        ContextRegister::HcrEl2Tge => {
            // Read-modify-write of the one bit; the ISB makes it take effect
            // for the TLB maintenance that follows.
            let mut hcr: u64;
            asm!("mrs {}, hcr_el2", out(reg) hcr, options(nomem, nostack, preserves_flags));
            hcr = (hcr & !(1 << HCR_TGE_BIT)) | ((value & 1) << HCR_TGE_BIT);
            asm!("msr hcr_el2, {}", "isb", in(reg) hcr, options(nostack, preserves_flags));
        }
    }
}
