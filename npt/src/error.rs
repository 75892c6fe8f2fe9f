//! The error type of every table operation.

use crate::addr::{GuestPhysAddr, HostPhysAddr};
use core::fmt;
use page_table_entry::MappingFlags;

/// Why a table operation was refused. A refused operation changes no
/// mapping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Error {
    /// A guest-physical address is not aligned to the page size it is used
    /// with.
    MisalignedGpa {
        /// The address.
        gpa: GuestPhysAddr,
        /// The alignment it needed.
        align: usize,
    },
    /// A host-physical address is not aligned to the page size it is used
    /// with.
    MisalignedHpa {
        /// The address.
        hpa: HostPhysAddr,
        /// The alignment it needed.
        align: usize,
    },
    /// A size is zero or not a multiple of the format's granule.
    BadSize {
        /// The size.
        size: usize,
        /// The granule it must be a multiple of.
        granule: usize,
    },
    /// The format has no leaf of this page size.
    UnsupportedPageSize {
        /// The size asked for.
        size: usize,
    },
    /// A guest-physical address (or the end of a range) lies beyond the
    /// format's input width. It is never truncated into range.
    GpaOutOfRange {
        /// The first offending address.
        gpa: GuestPhysAddr,
        /// The format's input width in bits.
        input_bits: u32,
    },
    /// A host-physical address (or the end of a range) lies beyond the
    /// format's output width.
    HpaOutOfRange {
        /// The first offending address.
        hpa: HostPhysAddr,
        /// The format's output width in bits.
        output_bits: u32,
    },
    /// Part of the range is already mapped.
    AlreadyMapped {
        /// The first mapped guest-physical address found.
        gpa: GuestPhysAddr,
    },
    /// Part of the range is not mapped.
    NotMapped {
        /// The first unmapped guest-physical address found.
        gpa: GuestPhysAddr,
    },
    /// The operation would cover only part of a huge page (block) that
    /// cannot be split (single-leaf `unmap`; a level below that holds no
    /// leaves).
    SplitsHugePage {
        /// The base of the huge page.
        gpa: GuestPhysAddr,
        /// Its size.
        size: usize,
    },
    /// The change may only be made by break-before-make on this format (Arm
    /// stage 2: memory type or shareability of a live leaf): unmap, flush
    /// the invalidation, then map with the new flags.
    BreakBeforeMake {
        /// The base of the leaf.
        gpa: GuestPhysAddr,
        /// Its size.
        size: usize,
    },
    /// A huge page could not be split: the break-before-make invalidation
    /// between making it invalid and installing the table failed (on a
    /// foreign host, say: run the operation's `_in` form with an executor).
    /// The block was restored; nothing changed.
    SplitInvalidation {
        /// The base of the leaf.
        gpa: GuestPhysAddr,
        /// Its size.
        size: usize,
    },
    /// `map_region_with`'s `get_paddr` gave another answer for this address
    /// when the pages were written than when they were checked. The pages
    /// written before it stay mapped; the batch for them was run on the
    /// host when the map returned.
    UnstablePaddr {
        /// The first address that got another answer.
        gpa: GuestPhysAddr,
    },
    /// The format's spec names no `dirty_log_bit`: it cannot log.
    NoDirtyLogBit,
    /// The format's CPU sets no accessed/dirty bits, or not in tables made
    /// with these params (EPT without `ad`).
    NoHardwareDirty,
    /// `Format::register` was asked for an index past `Format::REGISTERS`.
    NoSuchRegister {
        /// The index asked for.
        index: usize,
    },
    /// A dirty bitmap too small for the range.
    BitmapTooSmall {
        /// The pages of the range (bits the bitmap needs).
        pages: usize,
    },
    /// The format cannot encode this combination of flags.
    IllegalFlags {
        /// The flags asked for.
        flags: MappingFlags,
        /// Why, in the manual's terms.
        reason: &'static str,
    },
    /// The frame allocator returned no frame (or a frame the format cannot
    /// address).
    NoMemory,
    /// A root-register parameter (a VMID, say) does not fit its field.
    ParamOutOfRange {
        /// The parameter's name in the spec.
        param: &'static str,
        /// The value given.
        value: u64,
        /// Its width in bits.
        width: u32,
    },
    /// Parameters or a root address the format's spec refuses (a `require`
    /// rule: an IPA wider than the physical address size, a misaligned
    /// root ...).
    Requirement {
        /// The rule's name in the spec.
        rule: &'static str,
        /// Why, in the manual's terms.
        reason: &'static str,
    },
    /// A root-register field cannot hold its value.
    RegisterField {
        /// The register.
        register: &'static str,
        /// The field.
        field: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MisalignedGpa { gpa, align } => write!(
                f,
                "guest-physical address {gpa:?} is not aligned to {align:#x}"
            ),
            Error::MisalignedHpa { hpa, align } => write!(
                f,
                "host-physical address {hpa:?} is not aligned to {align:#x}"
            ),
            Error::BadSize { size, granule } => write!(
                f,
                "size {size:#x} is not a non-zero multiple of {granule:#x}"
            ),
            Error::UnsupportedPageSize { size } => {
                write!(f, "the format has no {size:#x}-byte leaf")
            }
            Error::GpaOutOfRange { gpa, input_bits } => write!(
                f,
                "guest-physical address {gpa:?} is beyond the {input_bits}-bit input range"
            ),
            Error::HpaOutOfRange { hpa, output_bits } => write!(
                f,
                "host-physical address {hpa:?} is beyond the {output_bits}-bit output range"
            ),
            Error::AlreadyMapped { gpa } => write!(f, "{gpa:?} is already mapped"),
            Error::NotMapped { gpa } => write!(f, "{gpa:?} is not mapped"),
            Error::SplitsHugePage { gpa, size } => write!(
                f,
                "the operation covers only part of the {size:#x}-byte huge page at {gpa:?}"
            ),
            Error::BreakBeforeMake { gpa, size } => write!(f, "changing the {size:#x}-byte leaf at {gpa:?} needs break-before-make: unmap, flush, map"),
            Error::SplitInvalidation { gpa, size } => write!(
                f,
                "splitting the {size:#x}-byte huge page at {gpa:?} needs an invalidation between break and make, which failed; nothing changed"
            ),
            Error::UnstablePaddr { gpa } => write!(
                f,
                "get_paddr gave another host address for {gpa:?} when writing than when checking"
            ),
            Error::Requirement { rule, reason } => write!(f, "refused by the format's rule `{rule}`: {reason}"),
            Error::NoDirtyLogBit => write!(f, "the format names no dirty_log_bit and cannot log"),
            Error::NoSuchRegister { index } => {
                write!(f, "the format declares no register number {index}")
            }
            Error::NoHardwareDirty => write!(
                f,
                "the CPU sets no accessed/dirty bits in this table (the format has none, or its params do not enable them)"
            ),
            Error::BitmapTooSmall { pages } => {
                write!(f, "the dirty bitmap holds fewer than {pages} bits")
            }
            Error::IllegalFlags { flags, reason } => {
                write!(f, "flags {flags:?} cannot be mapped: {reason}")
            }
            Error::NoMemory => write!(f, "the frame allocator is exhausted"),
            Error::ParamOutOfRange {
                param,
                value,
                width,
            } => write!(f, "{param} = {value:#x} does not fit in {width} bits"),
            Error::RegisterField { register, field } => {
                write!(f, "{register}.{field} cannot hold its value")
            }
        }
    }
}

impl core::error::Error for Error {}

/// Why a TLB invalidation could not be carried out.
#[derive(Debug)]
pub enum FlushError {
    /// The recipe names an instruction of another architecture than the one
    /// this code runs on (use a recorder, or flush on the format's own host).
    ForeignInstruction(crate::flush::Instr),
    /// The CPU reports that it does not support this instruction (for
    /// INVEPT: neither single- nor all-context in IA32_VMX_EPT_VPID_CAP).
    Unsupported(crate::flush::Instr),
    /// The step is a request for the next VMRUN (AMD VMCB.TLB_CONTROL),
    /// which only the hypervisor can carry out: run the batch through
    /// [`crate::instr::SvmTlbControl`] instead.
    NeedsVmcb(crate::flush::Instr),
    /// The recipe needs a context register this architecture does not have.
    ForeignRegister(crate::flush::ContextRegister),
    /// INVEPT failed (Intel SDM Vol. 3C, "Conventions" of the VMX
    /// instruction reference: VMfailInvalid or VMfailValid).
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    VmFail(x86::vmx::VmFail),
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::ForeignInstruction(i) => write!(f, "{i:?} cannot run on this architecture"),
            FlushError::NeedsVmcb(i) => write!(
                f,
                "{i:?} is a VMCB request: run the batch through SvmTlbControl"
            ),
            FlushError::Unsupported(i) => write!(f, "this CPU does not support {i:?}"),
            FlushError::ForeignRegister(r) => {
                write!(f, "{r:?} does not exist on this architecture")
            }
            #[cfg(all(target_arch = "x86_64", target_os = "none"))]
            FlushError::VmFail(e) => write!(f, "INVEPT failed: {e:?}"),
        }
    }
}

impl PartialEq for FlushError {
    fn eq(&self, other: &Self) -> bool {
        use FlushError::*;
        match (self, other) {
            (ForeignInstruction(a), ForeignInstruction(b)) => a == b,
            (Unsupported(a), Unsupported(b)) => a == b,
            (NeedsVmcb(a), NeedsVmcb(b)) => a == b,
            (ForeignRegister(a), ForeignRegister(b)) => a == b,
            #[cfg(all(target_arch = "x86_64", target_os = "none"))]
            (VmFail(a), VmFail(b)) => matches!(
                (a, b),
                (x86::vmx::VmFail::VmFailValid, x86::vmx::VmFail::VmFailValid)
                    | (
                        x86::vmx::VmFail::VmFailInvalid,
                        x86::vmx::VmFail::VmFailInvalid
                    )
            ),
            _ => false,
        }
    }
}

impl Eq for FlushError {}

impl core::error::Error for FlushError {}
