//! HFENCE.GVMA (RISC-V privileged spec, hypervisor extension, "Hypervisor
//! Memory-Management Fence Instructions").

use crate::error::FlushError;
use crate::flush::{Arg, ContextRegister, Instr, Issued};
use core::arch::asm;

pub fn execute(op: Issued) -> Result<(), FlushError> {
    if op.instr != Instr::HfenceGvma {
        return Err(FlushError::ForeignInstruction(op.instr));
    }
    // HFENCE.GVMA is R-type: funct7 0110001, rs2, rs1, funct3 000, rd 0,
    // opcode SYSTEM (1110011). Encoded with `.insn` so no `h` target feature
    // is needed to assemble it. x0 means "all" for either operand.
    // SAFETY: the fence changes no memory; it is valid in HS-mode.
    unsafe {
        match (op.args[0], op.args[1]) {
            (Arg::Zero, Arg::Zero) => asm!(".insn r 0x73, 0, 0x31, x0, x0, x0", options(nostack)),
            (Arg::Value(a), Arg::Zero) => {
                asm!(".insn r 0x73, 0, 0x31, x0, {0}, x0", in(reg) a, options(nostack))
            }
            (Arg::Zero, Arg::Value(v)) => {
                asm!(".insn r 0x73, 0, 0x31, x0, x0, {0}", in(reg) v, options(nostack))
            }
            (Arg::Value(a), Arg::Value(v)) => {
                asm!(".insn r 0x73, 0, 0x31, x0, {0}, {1}", in(reg) a, in(reg) v, options(nostack))
            }
        }
    }
    Ok(())
}

pub fn read_context(_: ContextRegister) -> Option<u64> {
    None
}

pub unsafe fn write_context(_: ContextRegister, _: u64) {}
