//! The formats, each compiled from its spec under `specs/`.

/// x86_64: Intel EPT and AMD nested paging.
pub mod x86_64 {
    include!("../../specs/x86_64_ept4.rs");
    include!("../../specs/x86_64_npt4.rs");
}

/// AArch64: stage-2 translation with the 4 KiB granule.
pub mod aarch64 {
    include!("../../specs/aarch64_stage2.rs");
}

/// RISC-V: G-stage translation.
pub mod riscv {
    include!("../../specs/riscv_sv39x4.rs");
}
