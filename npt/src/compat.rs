//! `page_table_multiarch::PageTable64`'s API over npt's engine, so code
//! written against `PageTable64` (axaddrspace, the seed module's users)
//! switches by changing a type and an import:
//!
//! ```
//! use npt::compat::PageTable64; // was: use page_table_multiarch::PageTable64;
//! use npt::{x86_64::Ept4, GuestPhysAddr, MappingFlags, PageSize, PhysAddr};
//! # use npt::doc_support::Frames;
//! // was: PageTable64::<Ept4, npt::x86_64::EptEntry, Frames>::try_new()
//! let mut pt = PageTable64::<Ept4, Frames>::try_new().unwrap();
//! let rw = MappingFlags::READ | MappingFlags::WRITE;
//! pt.cursor()
//!     .map(GuestPhysAddr::from(0x1000), PhysAddr::from(0x8000), PageSize::Size4K, rw)
//!     .unwrap();
//! let (pa, _, size) = pt.query(GuestPhysAddr::from(0x1234)).unwrap();
//! assert_eq!((pa, size), (PhysAddr::from(0x8234), PageSize::Size4K));
//! ```
//!
//! As with `PageTable64`, a cursor collects the invalidations of what it
//! changes and runs them on this host when it is dropped (through
//! [`TlbFlush`]'s drop). Where the two differ, npt is stricter: a
//! misaligned target is refused (`NotAligned`) rather than aligned down, a
//! range with holes is refused (`NotMapped`) rather than skipped, and a
//! refused operation changes nothing.

use crate::error::Error;
use crate::flush::TlbFlush;
use crate::format::Format;
use crate::table::NestedTable;
use crate::GuestPhysAddr;
use memory_addr::PhysAddr;
use page_table_entry::MappingFlags;
use page_table_multiarch::{PageSize, PagingError, PagingHandler, PagingResult};

/// An npt table with `PageTable64`'s methods.
pub struct PageTable64<F: Format, H: PagingHandler> {
    inner: NestedTable<F, H>,
}

/// What `PageTable64::cursor` gives: mutations whose invalidations run when
/// it drops.
pub struct Cursor<'a, F: Format, H: PagingHandler> {
    table: &'a mut NestedTable<F, H>,
    pending: Option<TlbFlush<F>>,
}

fn paging_error(e: Error) -> PagingError {
    match e {
        Error::NoMemory => PagingError::NoMemory,
        Error::AlreadyMapped { .. } => PagingError::AlreadyMapped,
        Error::NotMapped { .. } => PagingError::NotMapped,
        Error::SplitsHugePage { .. } => PagingError::MappedToHugePage,
        _ => PagingError::NotAligned,
    }
}

fn page_size(size: usize) -> PageSize {
    match size {
        0x4000_0000 => PageSize::Size1G,
        0x20_0000 => PageSize::Size2M,
        0x10_0000 => PageSize::Size1M,
        _ => PageSize::Size4K,
    }
}

impl<F: Format, H: PagingHandler> PageTable64<F, H> {
    /// `PageSize` names 4 KiB, 2 MiB, 1 GiB (and 1 MiB) pages only: a
    /// format with another leaf size (a 16 KiB granule, a 512 GiB
    /// terapage) cannot be described through this API, and using it with
    /// one fails to compile here rather than misreport its pages.
    // Indexing below `levels.len()` at compile time (`get` is not const).
    #[allow(clippy::indexing_slicing)]
    const SIZES_FIT: () = {
        let levels = F::LAYOUT.geometry.levels;
        let mut i = 0;
        while i < levels.len() {
            let l = &levels[i];
            let size = 1usize << l.shift;
            assert!(
                !l.leaf || size == 0x1000 || size == 0x10_0000 || size == 0x20_0000 || size == 0x4000_0000,
                "npt::compat::PageTable64: the format has a leaf size page_table_multiarch::PageSize cannot name; use npt::NestedTable"
            );
            i += 1;
        }
    };

    /// A table with an empty root and default parameters.
    pub fn try_new() -> PagingResult<Self> {
        #[allow(clippy::let_unit_value)]
        let () = Self::SIZES_FIT;
        NestedTable::try_new()
            .map(|inner| PageTable64 { inner })
            .map_err(paging_error)
    }

    /// The root table's physical address.
    pub fn root_paddr(&self) -> PhysAddr {
        self.inner.root_paddr()
    }

    /// The target, flags and page size of the mapping holding `vaddr`.
    pub fn query(&self, vaddr: GuestPhysAddr) -> PagingResult<(PhysAddr, MappingFlags, PageSize)> {
        let t = self.inner.query(vaddr).map_err(paging_error)?;
        Ok((t.hpa, t.flags, page_size(t.size)))
    }

    /// A cursor to change the table.
    pub fn cursor(&mut self) -> Cursor<'_, F, H> {
        Cursor {
            table: &mut self.inner,
            pending: None,
        }
    }

    /// The npt table underneath.
    pub fn inner(&mut self) -> &mut NestedTable<F, H> {
        &mut self.inner
    }
}

impl<F: Format, H: PagingHandler> Cursor<'_, F, H> {
    fn keep(&mut self, r: Result<TlbFlush<F>, Error>) -> PagingResult {
        let tf = r.map_err(paging_error)?;
        match self.pending.as_mut() {
            None => self.pending = Some(tf),
            // Batches of one table always merge.
            Some(p) => {
                if let Err(tf) = p.merge(tf) {
                    drop(tf);
                }
            }
        }
        Ok(())
    }

    /// Maps one page.
    pub fn map(
        &mut self,
        vaddr: GuestPhysAddr,
        target: PhysAddr,
        page_size: PageSize,
        flags: MappingFlags,
    ) -> PagingResult {
        let r = self.table.map_page(vaddr, target, page_size, flags);
        self.keep(r)
    }

    /// Maps `size` bytes at `vaddr`, each page to `get_paddr(page)`.
    pub fn map_region(
        &mut self,
        vaddr: GuestPhysAddr,
        get_paddr: impl Fn(GuestPhysAddr) -> PhysAddr,
        size: usize,
        flags: MappingFlags,
        allow_huge: bool,
    ) -> PagingResult {
        let r = self
            .table
            .map_region_with(vaddr, size, flags, allow_huge, get_paddr);
        self.keep(r)
    }

    /// Unmaps the leaf starting at `vaddr`.
    pub fn unmap(
        &mut self,
        vaddr: GuestPhysAddr,
    ) -> PagingResult<(PhysAddr, MappingFlags, PageSize)> {
        let (t, tf) = self.table.unmap(vaddr).map_err(paging_error)?;
        self.keep(Ok(tf))?;
        Ok((t.hpa, t.flags, page_size(t.size)))
    }

    /// Unmaps `size` bytes at `vaddr`, splitting huge pages at the ends.
    pub fn unmap_region(&mut self, vaddr: GuestPhysAddr, size: usize) -> PagingResult {
        let r = self.table.unmap_region(vaddr, size);
        self.keep(r)
    }

    /// Changes the flags of the leaf holding `vaddr`; returns its size.
    pub fn protect(&mut self, vaddr: GuestPhysAddr, flags: MappingFlags) -> PagingResult<PageSize> {
        let size = self.table.query(vaddr).map_err(paging_error)?.size;
        let r = self.table.protect(vaddr, flags);
        self.keep(r)?;
        Ok(page_size(size))
    }

    /// Changes the flags of `size` bytes at `vaddr`.
    pub fn protect_region(
        &mut self,
        vaddr: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> PagingResult {
        let r = self.table.protect_region(vaddr, size, flags);
        self.keep(r)
    }

    /// Points the leaf starting at `vaddr` at `paddr` with `flags`.
    pub fn remap(
        &mut self,
        vaddr: GuestPhysAddr,
        paddr: PhysAddr,
        flags: MappingFlags,
    ) -> PagingResult<PageSize> {
        let (size, tf) = self
            .table
            .remap(vaddr, paddr, flags)
            .map_err(paging_error)?;
        self.keep(Ok(tf))?;
        Ok(page_size(size))
    }

    /// Hands over the invalidations collected so far instead of running
    /// them at drop (to run them through a recorder or another executor).
    pub fn take_flush(&mut self) -> Option<TlbFlush<F>> {
        self.pending.take()
    }
}
