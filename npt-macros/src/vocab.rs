//! The instruction wrappers and context registers the `npt` runtime can
//! execute, by the names specs use in their flush recipes. Adding an
//! instruction means adding its wrapper to `npt/src/instr/` and a line here.

/// (spec name, operand count, runtime `npt::flush::Instr` variant).
pub const INSTRUCTIONS: &[(&str, usize, &str)] = &[
    // Arm ARM C6.2 (DSB, ISB) and C5.5 (TLBI), A64 base instructions.
    ("dsb_ishst", 0, "DsbIshst"),
    ("dsb_ish", 0, "DsbIsh"),
    ("isb", 0, "Isb"),
    ("tlbi_ipas2e1is", 1, "TlbiIpas2e1is"),
    ("tlbi_vmalle1is", 0, "TlbiVmalle1is"),
    ("tlbi_vmalls12e1is", 0, "TlbiVmalls12e1is"),
    ("tlbi_alle1is", 0, "TlbiAlle1is"),
    // Intel SDM Vol. 3C, INVEPT (VMX instruction reference).
    ("invept_single_context", 1, "InveptSingleContext"),
    ("invept_all_context", 0, "InveptAllContext"),
    // RISC-V privileged spec, hypervisor extension, HFENCE.GVMA.
    ("hfence_gvma", 2, "HfenceGvma"),
];

/// (spec register name, runtime `npt::flush::ContextRegister` variant):
/// registers a recipe can require to hold this table's value while it runs.
pub const CONTEXT_REGISTERS: &[(&str, &str)] = &[("VTTBR_EL2", "VttbrEl2")];

pub fn instruction(name: &str) -> Option<(usize, &'static str)> {
    INSTRUCTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, c, v)| (*c, *v))
}

pub fn context_register(name: &str) -> Option<&'static str> {
    CONTEXT_REGISTERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}
