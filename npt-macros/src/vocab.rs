//! The instruction wrappers and context registers the `npt` runtime can
//! execute, by the names specs use in their flush recipes. Adding an
//! instruction means adding its wrapper to `npt/src/instr/` and a line here.

use crate::model::Arch;

/// One instruction wrapper.
pub struct Instruction {
    /// The name specs use.
    pub name: &'static str,
    /// How many operands it takes.
    pub operands: usize,
    /// The `npt::flush::Instr` variant.
    pub variant: &'static str,
    /// The architecture that has it.
    pub arch: Arch,
}

const fn instr(
    name: &'static str,
    operands: usize,
    variant: &'static str,
    arch: Arch,
) -> Instruction {
    Instruction {
        name,
        operands,
        variant,
        arch,
    }
}

pub const INSTRUCTIONS: &[Instruction] = &[
    // Arm ARM C6.2 (DSB, ISB) and C5.5 (TLBI), A64 base instructions.
    instr("dsb_ishst", 0, "DsbIshst", Arch::Aarch64),
    instr("dsb_ish", 0, "DsbIsh", Arch::Aarch64),
    instr("isb", 0, "Isb", Arch::Aarch64),
    instr("tlbi_ipas2e1is", 1, "TlbiIpas2e1is", Arch::Aarch64),
    instr("tlbi_vmalle1is", 0, "TlbiVmalle1is", Arch::Aarch64),
    instr("tlbi_vmalls12e1is", 0, "TlbiVmalls12e1is", Arch::Aarch64),
    instr("tlbi_alle1is", 0, "TlbiAlle1is", Arch::Aarch64),
    // Intel SDM Vol. 3C, INVEPT (VMX instruction reference).
    instr(
        "invept_single_context",
        1,
        "InveptSingleContext",
        Arch::X86_64,
    ),
    instr("invept_all_context", 0, "InveptAllContext", Arch::X86_64),
    // AMD APM Vol. 2 §15.16, VMCB TLB_CONTROL: requests for the next VMRUN,
    // carried out by the hypervisor's executor (npt::instr::SvmTlbControl).
    instr("svm_tlb_flush_asid", 1, "SvmFlushAsid", Arch::X86_64),
    instr("svm_tlb_flush_all", 0, "SvmFlushAll", Arch::X86_64),
    // RISC-V privileged spec, hypervisor extension, HFENCE.GVMA.
    instr("hfence_gvma", 2, "HfenceGvma", Arch::Riscv64),
];

/// (spec register name, runtime `npt::flush::ContextRegister` variant,
/// architecture): registers a recipe can require to hold this table's value
/// while it runs.
pub const CONTEXT_REGISTERS: &[(&str, &str, Arch)] = &[("VTTBR_EL2", "VttbrEl2", Arch::Aarch64)];

/// Register bits a recipe may name in `clear` (the runtime's
/// `ContextRegister` variant that switches each).
pub const CLEARABLE_BITS: &[(&str, &str, Arch)] = &[("HCR_EL2_TGE", "HcrEl2Tge", Arch::Aarch64)];

pub fn clearable_bit(name: &str) -> Option<(&'static str, Arch)> {
    CLEARABLE_BITS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, a)| (*v, *a))
}

pub fn instruction(name: &str) -> Option<&'static Instruction> {
    INSTRUCTIONS.iter().find(|i| i.name == name)
}

pub fn context_register(name: &str) -> Option<(&'static str, Arch)> {
    CONTEXT_REGISTERS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, a)| (*v, *a))
}
