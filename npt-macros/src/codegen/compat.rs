//! `GenericPTE` for the entry and, where `PageTable64` can walk the
//! geometry, `PagingMetaData` for the format.

use crate::model::Format;
use proc_macro2::TokenStream;
use quote::quote;

/// `PageTable64` (page_table_multiarch 0.6) walks 3 or 4 levels of 9 index
/// bits over 4 KiB tables, from a single 4 KiB root, with leaves of 4 KiB,
/// 2 MiB and 1 GiB. Concatenated or wider roots (Sv39x4, 40-bit stage 2)
/// are outside that.
pub fn page_table64_can_walk(f: &Format) -> bool {
    let g = &f.geometry;
    g.granule.value == 4096
        && g.root_tables.value == 1
        && (g.levels.len() == 3 || g.levels.len() == 4)
        && g.levels.iter().all(|l| l.index.width() == 9)
        && g.input_bits.value == 12 + 9 * g.levels.len() as u64
}

pub fn generic_pte(f: &Format) -> TokenStream {
    let name = &f.name;
    let entry = &f.entry;
    quote! {
        impl ::npt::__private::GenericPTE for #entry {
            fn new_page(paddr: ::npt::HostPhysAddr, flags: ::npt::__private::MappingFlags, is_huge: bool) -> Self {
                Self(::npt::pte::new_page::<#name>(paddr, flags, is_huge))
            }
            fn new_table(paddr: ::npt::HostPhysAddr) -> Self {
                Self(::npt::pte::new_table::<#name>(paddr))
            }
            fn paddr(&self) -> ::npt::HostPhysAddr {
                ::npt::pte::paddr::<#name>(self.0)
            }
            fn flags(&self) -> ::npt::__private::MappingFlags {
                ::npt::pte::flags::<#name>(self.0)
            }
            fn set_paddr(&mut self, paddr: ::npt::HostPhysAddr) {
                self.0 = ::npt::pte::set_paddr::<#name>(self.0, paddr);
            }
            fn set_flags(&mut self, flags: ::npt::__private::MappingFlags, is_huge: bool) {
                self.0 = ::npt::pte::set_flags::<#name>(self.0, flags, is_huge);
            }
            fn bits(self) -> usize {
                self.0 as usize
            }
            fn is_unused(&self) -> bool {
                self.0 == 0
            }
            fn is_present(&self) -> bool {
                ::npt::pte::is_present::<#name>(self.0)
            }
            fn is_huge(&self) -> bool {
                ::npt::pte::is_huge::<#name>(self.0)
            }
            fn clear(&mut self) {
                self.0 = 0;
            }
        }
    }
}

pub fn paging_metadata(f: &Format) -> TokenStream {
    let name = &f.name;
    if !page_table64_can_walk(f) {
        return TokenStream::new();
    }
    let levels = f.geometry.levels.len();
    let pa_bits = f.geometry.output_bits.value as usize;
    let va_bits = f.geometry.input_bits.value as usize;
    quote! {
        /// For `page_table_multiarch::PageTable64`. Guest-physical addresses
        /// are not sign-extended: valid ones are below 2^input_bits.
        /// `flush_tlb` has no table context (EPTP, VMID), so it runs the
        /// format's "everything" recipe, and does nothing on another host
        /// architecture.
        impl ::npt::__private::PagingMetaData for #name {
            const LEVELS: usize = #levels;
            const PA_MAX_BITS: usize = #pa_bits;
            const VA_MAX_BITS: usize = #va_bits;
            type VirtAddr = ::npt::GuestPhysAddr;

            fn vaddr_is_valid(vaddr: usize) -> bool {
                (vaddr as u128) < (1u128 << #va_bits)
            }

            fn flush_tlb(_vaddr: ::core::option::Option<::npt::GuestPhysAddr>) {
                let _ = ::npt::flush::flush_all::<Self>(&mut ::npt::instr::Host);
            }
        }
    }
}
