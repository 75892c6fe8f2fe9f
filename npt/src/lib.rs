//! Nested page tables (guest-physical → host-physical) for hypervisors:
//! Intel EPT, Arm stage 2 and RISC-V G-stage, each generated from a
//! declarative spec under `specs/` that cites the manual it encodes.
//!
//! - [`NestedTable`] is the table engine, generic over a [`Format`] and a
//!   [`PagingHandler`] (the frame allocator).
//! - [`NestedPageTable`] is the host architecture's default format.
//! - Every format is usable by name on every host ([`x86_64::Ept4`],
//!   [`aarch64::Stage2Ipa39`], [`riscv::Sv39x4`] ...), so all of them can be
//!   tested anywhere; only executing invalidations needs the real host.
//! - Mutations return a [`TlbFlush`] batch to run on the host
//!   ([`TlbFlush::flush`]) or through a [`flush::Recorder`].
//!
//! ```
//! use npt::{x86_64::Ept4, GuestPhysAddr, HostPhysAddr, MappingFlags, NestedTable};
//! # use npt::doc_support::Frames;
//! let mut table = NestedTable::<Ept4, Frames>::try_new().unwrap();
//! let rw = MappingFlags::READ | MappingFlags::WRITE;
//! let batch = table
//!     .map_region(GuestPhysAddr::from(0x4000_0000), HostPhysAddr::from(0x8000_0000), 0x40_0000, rw, true)
//!     .unwrap();
//! batch.ignore(); // the table is not loaded yet
//! let t = table.query(GuestPhysAddr::from(0x4020_1234)).unwrap();
//! assert_eq!(t.hpa, HostPhysAddr::from(0x8020_1234));
//! assert_eq!(t.size, 0x20_0000);
//! ```

#![no_std]
#![warn(missing_docs)]
// No panics on caller-controlled values: the runtime never unwraps.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "alloc")]
extern crate alloc;
extern crate self as npt;

mod addr;
pub mod compat;
mod error;
pub mod flush;
pub mod format;
pub mod formats;
mod frames;
pub mod instr;
pub mod pte;
mod table;

#[doc(hidden)]
#[cfg(feature = "alloc")]
pub mod doc_support;

pub use addr::{GuestPhysAddr, HostPhysAddr};
pub use error::{Error, FlushError};
pub use flush::{TlbFlush, Unflushed};
pub use format::Format;
pub use formats::{aarch64, riscv, x86_64};
/// The address types `PagingHandler` uses, so a hypervisor implementing it
/// needs no direct, version-matched `memory_addr` dependency.
pub use memory_addr::{PhysAddr, VirtAddr};
pub use page_table_entry::{GenericPTE, MappingFlags};
pub use page_table_multiarch::{PageSize, PagingHandler, PagingMetaData};
pub use table::{HugePages, Leaf, NestedTable, Translation, WriteFault};

/// The host architecture's nested page table, as the module npt replaces
/// named it: EPT on x86_64, stage 2 on AArch64 (3 levels and a 39-bit IPA,
/// or 4 levels and a 48-bit IPA with the `4-level-ept` feature), Sv39x4 on
/// RISC-V.
#[cfg(target_arch = "x86_64")]
pub type NestedPageTable<H> = NestedTable<x86_64::Ept4, H>;
/// The host architecture's nested page table.
#[cfg(all(target_arch = "aarch64", not(feature = "4-level-ept")))]
pub type NestedPageTable<H> = NestedTable<aarch64::Stage2Ipa39, H>;
/// The host architecture's nested page table.
#[cfg(all(target_arch = "aarch64", feature = "4-level-ept"))]
pub type NestedPageTable<H> = NestedTable<aarch64::Stage2Ipa48, H>;
/// The host architecture's nested page table.
#[cfg(target_arch = "riscv64")]
pub type NestedPageTable<H> = NestedTable<riscv::Sv39x4, H>;

/// What generated code refers to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::flush::STUB_FLUSH;
    pub use crate::format::STUB_LAYOUT;
    pub use bitflags;
    pub use page_table_entry::{GenericPTE, MappingFlags};
    pub use page_table_multiarch::PagingMetaData;
}

/// The sizes of leaves, for `map`.
pub mod size {
    /// 4 KiB.
    pub const SIZE_4K: usize = 0x1000;
    /// 2 MiB.
    pub const SIZE_2M: usize = 0x20_0000;
    /// 1 GiB.
    pub const SIZE_1G: usize = 0x4000_0000;
}

/// The README's example, compiled as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
