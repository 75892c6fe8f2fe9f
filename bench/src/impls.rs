//! The implementations under test, behind one trait so that each work row
//! is written once.
//!
//! Every implementation maps guest-physical to host-physical addresses with
//! 4 KiB pages (no huge pages), read-write, and protects to read-only. A
//! failed operation aborts the bench: it must never time broken code.

use crate::fail;
use crate::handlers::{frame_ptr, Frames, FRAME};
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes};
use aarch64_paging::paging::{Constraints, MemoryRegion, PageTable, Stage2, Translation};
use core::marker::PhantomData;
use core::ptr::NonNull;
use npt::{Format, GuestPhysAddr, HostPhysAddr, MappingFlags, NestedTable, PhysAddr, VirtAddr};
use page_table_entry::x86_64::X64PTE;
use page_table_multiarch::x86_64::X64PagingMetaData;
use page_table_multiarch::{PageSize, PageTable64};

/// The first guest-physical address the bench maps (1 GiB-aligned).
pub const GPA_BASE: usize = 0x4000_0000;
/// The host-physical address `GPA_BASE` maps to.
pub const HPA_BASE: usize = 0x1_0000_0000;

/// What a lookup found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The translated address, page offset included.
    pub hpa: usize,
    /// Whether the mapping allows writes.
    pub writable: bool,
}

impl core::fmt::Debug for Found {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let access = if self.writable { "RW" } else { "R" };
        write!(f, "{:#x} {access}", self.hpa)
    }
}

/// A nested page table as the bench drives it.
pub trait Table {
    /// Where its frames come from.
    type Frames: Frames;
    /// Its name in error messages.
    const NAME: &'static str;

    /// An empty table (only the root allocated).
    fn create() -> Self;
    /// Maps `size` bytes at `gpa` to `hpa` with 4 KiB pages, read-write,
    /// in one call.
    fn map_region(&mut self, gpa: usize, hpa: usize, size: usize);
    /// Maps one 4 KiB page, read-write.
    fn map_page(&mut self, gpa: usize, hpa: usize);
    /// Looks `gpa` up.
    fn query(&self, gpa: usize) -> Option<Found>;
    /// Makes `size` mapped bytes at `gpa` read-only.
    fn protect_read_only(&mut self, gpa: usize, size: usize);
    /// Unmaps `size` mapped bytes at `gpa`.
    fn unmap_region(&mut self, gpa: usize, size: usize);
}

fn rw() -> MappingFlags {
    MappingFlags::READ | MappingFlags::WRITE
}

/// Aborts with the implementation, the operation and the error.
fn op_failed(imp: &str, op: &str, e: impl core::fmt::Debug) -> ! {
    fail(&format!("{imp}: {op} failed: {e:?}"))
}

// ---------------------------------------------------------------------------
// npt

/// `npt::NestedTable` of format `F`. Batches are dropped with
/// [`npt::TlbFlush::ignore`]: the table is never loaded.
pub struct Npt<F: Format, H: Frames>(NestedTable<F, H>);

impl<F: Format, H: Frames> Npt<F, H> {
    /// The table itself, for the invalidation pass.
    pub fn inner(&mut self) -> &mut NestedTable<F, H> {
        &mut self.0
    }
}

impl<F: Format, H: Frames> Table for Npt<F, H> {
    type Frames = H;
    const NAME: &'static str = F::NAME;

    fn create() -> Self {
        Npt(NestedTable::try_new().unwrap_or_else(|e| op_failed(Self::NAME, "try_new", e)))
    }

    fn map_region(&mut self, gpa: usize, hpa: usize, size: usize) {
        let gpa = GuestPhysAddr::from(gpa);
        match self
            .0
            .map_region(gpa, HostPhysAddr::from(hpa), size, rw(), false)
        {
            Ok(batch) => batch.ignore(),
            Err(e) => op_failed(Self::NAME, "map_region", e),
        }
    }

    fn map_page(&mut self, gpa: usize, hpa: usize) {
        let gpa = GuestPhysAddr::from(gpa);
        match self.0.map(gpa, HostPhysAddr::from(hpa), FRAME, rw()) {
            Ok(batch) => batch.ignore(),
            Err(e) => op_failed(Self::NAME, "map", e),
        }
    }

    fn query(&self, gpa: usize) -> Option<Found> {
        let t = self.0.query(GuestPhysAddr::from(gpa)).ok()?;
        Some(Found {
            hpa: t.hpa.as_usize(),
            writable: t.flags.contains(MappingFlags::WRITE),
        })
    }

    fn protect_read_only(&mut self, gpa: usize, size: usize) {
        let gpa = GuestPhysAddr::from(gpa);
        match self.0.protect_region(gpa, size, MappingFlags::READ) {
            Ok(batch) => batch.ignore(),
            Err(e) => op_failed(Self::NAME, "protect_region", e),
        }
    }

    fn unmap_region(&mut self, gpa: usize, size: usize) {
        match self.0.unmap_region(GuestPhysAddr::from(gpa), size) {
            Ok(batch) => batch.ignore(),
            Err(e) => op_failed(Self::NAME, "unmap_region", e),
        }
    }
}

// ---------------------------------------------------------------------------
// page_table_multiarch

/// `page_table_multiarch`'s x86_64 `PageTable64` (the table npt replaces;
/// its `VirtAddr` stands for the guest-physical address). Each call opens
/// its own cursor, as each npt call returns its own batch; on a hosted
/// target the cursor's drop flushes nothing.
pub struct Pt64<H: Frames>(PageTable64<X64PagingMetaData, X64PTE, H>);

impl<H: Frames> Table for Pt64<H> {
    type Frames = H;
    const NAME: &'static str = "PageTable64";

    fn create() -> Self {
        Pt64(PageTable64::try_new().unwrap_or_else(|e| op_failed(Self::NAME, "try_new", e)))
    }

    fn map_region(&mut self, gpa: usize, hpa: usize, size: usize) {
        let target = |va: VirtAddr| PhysAddr::from(va.as_usize() - gpa + hpa);
        let r = self
            .0
            .cursor()
            .map_region(VirtAddr::from(gpa), target, size, rw(), false);
        r.unwrap_or_else(|e| op_failed(Self::NAME, "map_region", e));
    }

    fn map_page(&mut self, gpa: usize, hpa: usize) {
        let r = self.0.cursor().map(
            VirtAddr::from(gpa),
            PhysAddr::from(hpa),
            PageSize::Size4K,
            rw(),
        );
        r.unwrap_or_else(|e| op_failed(Self::NAME, "map", e));
    }

    fn query(&self, gpa: usize) -> Option<Found> {
        let (pa, flags, _) = self.0.query(VirtAddr::from(gpa)).ok()?;
        Some(Found {
            hpa: pa.as_usize(),
            writable: flags.contains(MappingFlags::WRITE),
        })
    }

    fn protect_read_only(&mut self, gpa: usize, size: usize) {
        let r = self
            .0
            .cursor()
            .protect_region(VirtAddr::from(gpa), size, MappingFlags::READ);
        r.unwrap_or_else(|e| op_failed(Self::NAME, "protect_region", e));
    }

    fn unmap_region(&mut self, gpa: usize, size: usize) {
        let r = self.0.cursor().unmap_region(VirtAddr::from(gpa), size);
        r.unwrap_or_else(|e| op_failed(Self::NAME, "unmap_region", e));
    }
}

// ---------------------------------------------------------------------------
// aarch64-paging

/// Hands `aarch64-paging` zeroed tables from the frame handler `H`.
pub struct Xlat<H>(PhantomData<H>);

impl<H: Frames> Translation<Stage2Attributes> for Xlat<H> {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let pa = H::alloc_frames(1, FRAME)
            .unwrap_or_else(|| fail("aarch64-paging: the frame handler is out of frames"));
        let table = self.physical_to_virtual(PhysicalAddress(pa.as_usize()));
        // SAFETY: a whole frame, just allocated and not yet shared.
        unsafe { table.cast::<u8>().write_bytes(0, FRAME) };
        (table, PhysicalAddress(pa.as_usize()))
    }

    unsafe fn deallocate_table(&mut self, table: NonNull<PageTable<Stage2Attributes>>) {
        // The handlers map physical to virtual by identity.
        H::dealloc_frames(PhysAddr::from(table.as_ptr() as usize), 1);
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        let va = H::phys_to_virt(PhysAddr::from(pa.0)).as_mut_ptr();
        NonNull::new(va.cast()).unwrap_or_else(|| fail("aarch64-paging: a table at address 0"))
    }
}

/// `aarch64-paging`'s non-secure stage-2 regime, root at level 0 (4 levels,
/// 48-bit IPA: the geometry of `Stage2Ipa48`). Lookups go through
/// `walk_range` over one page, protection through `modify_range`, unmapping
/// through `map_range` with flags lacking `VALID` (which frees the subtables
/// of whole blocks it clears). The table is never marked active, so no TLB
/// maintenance runs (none would on x86_64 anyway).
pub struct A64<H: Frames>(aarch64_paging::Mapping<Xlat<H>, Stage2>);

const S2_RW: Stage2Attributes = Stage2Attributes::VALID
    .union(Stage2Attributes::ACCESS_FLAG)
    .union(Stage2Attributes::S2AP_ACCESS_RW)
    .union(Stage2Attributes::MEMATTR_NORMAL_INNER_WB)
    .union(Stage2Attributes::MEMATTR_NORMAL_OUTER_WB)
    .union(Stage2Attributes::SH_INNER);

impl<H: Frames> A64<H> {
    fn map(&mut self, gpa: usize, hpa: usize, size: usize, op: &str) {
        let region = MemoryRegion::new(gpa, gpa + size);
        let r = self.0.map_range(
            &region,
            PhysicalAddress(hpa),
            S2_RW,
            Constraints::NO_BLOCK_MAPPINGS,
        );
        r.unwrap_or_else(|e| op_failed(Self::NAME, op, e));
    }
}

impl<H: Frames> Table for A64<H> {
    type Frames = H;
    const NAME: &'static str = "aarch64-paging";

    fn create() -> Self {
        A64(aarch64_paging::Mapping::new(Xlat(PhantomData), 0, Stage2))
    }

    fn map_region(&mut self, gpa: usize, hpa: usize, size: usize) {
        self.map(gpa, hpa, size, "map_range");
    }

    fn map_page(&mut self, gpa: usize, hpa: usize) {
        self.map(gpa, hpa, FRAME, "map_range (one page)");
    }

    fn query(&self, gpa: usize) -> Option<Found> {
        let mut found = None;
        let region = MemoryRegion::new(gpa, gpa + 1);
        self.0
            .walk_range(&region, &mut |_, desc, level| {
                if desc.is_valid() {
                    let size = FRAME << (9 * (3 - level));
                    found = Some(Found {
                        hpa: desc.output_address().0 + (gpa & (size - 1)),
                        writable: desc.flags().contains(Stage2Attributes::S2AP_ACCESS_WO),
                    });
                }
                Ok(())
            })
            .ok()?;
        found
    }

    fn protect_read_only(&mut self, gpa: usize, size: usize) {
        let region = MemoryRegion::new(gpa, gpa + size);
        let r = self.0.modify_range(&region, &|_, desc| {
            if desc.flags().contains(Stage2Attributes::VALID) {
                desc.modify_flags(Stage2Attributes::empty(), Stage2Attributes::S2AP_ACCESS_WO)
            } else {
                Ok(())
            }
        });
        r.unwrap_or_else(|e| op_failed(Self::NAME, "modify_range", e));
    }

    fn unmap_region(&mut self, gpa: usize, size: usize) {
        let region = MemoryRegion::new(gpa, gpa + size);
        let r = self.0.map_range(
            &region,
            PhysicalAddress(0),
            Stage2Attributes::empty(),
            Constraints::empty(),
        );
        r.unwrap_or_else(|e| op_failed(Self::NAME, "map_range (invalid)", e));
    }
}

// ---------------------------------------------------------------------------
// The lower bound

/// Not a page table: the memory traffic every 4-level, 512-entry table must
/// cause, with no walk. It allocates and zeroes the same tables (root,
/// PDPT, one PD per GiB, one PT per 2 MiB) from the same handler and writes
/// the same entries (leaves and the links to new tables) with volatile
/// stores, but finds each entry by array indexing. A lookup is one volatile
/// load. It covers only the bench's range: 512 GiB from [`GPA_BASE`].
pub struct Floor<H: Frames> {
    root: usize,
    pdpt: usize,
    /// By GiB from `GPA_BASE`; 0 = none.
    pds: Vec<usize>,
    /// By 2 MiB from `GPA_BASE`; 0 = none.
    pts: Vec<usize>,
    _frames: PhantomData<H>,
}

const PRESENT_RW: u64 = 0b11;
const LINK: u64 = 0b111;
const WRITE_BIT: u64 = 0b10;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

fn write_entry(table: usize, index: usize, value: u64) {
    // SAFETY: `table` is a live frame of 512 entries and `index < 512`.
    unsafe {
        frame_ptr(table)
            .cast::<u64>()
            .add(index & 511)
            .write_volatile(value)
    };
}

fn read_entry(table: usize, index: usize) -> u64 {
    // SAFETY: as for `write_entry`.
    unsafe {
        frame_ptr(table)
            .cast::<u64>()
            .add(index & 511)
            .read_volatile()
    }
}

impl<H: Frames> Floor<H> {
    fn alloc_table() -> usize {
        let pa = H::alloc_frames(1, FRAME)
            .unwrap_or_else(|| fail("lower bound: the frame handler is out of frames"))
            .as_usize();
        // SAFETY: a whole frame, just allocated.
        unsafe { frame_ptr(pa).write_bytes(0, FRAME) };
        pa
    }

    /// The index of the 4 KiB page `gpa` from `GPA_BASE`.
    fn page(gpa: usize) -> usize {
        (gpa - GPA_BASE) / FRAME
    }

    /// The leaf table of page `page`, allocated and linked if new.
    #[inline]
    fn pt(&mut self, page: usize) -> usize {
        match self.pts.get(page >> 9) {
            Some(&pt) if pt != 0 => pt,
            _ => self.new_pt(page >> 9),
        }
    }

    #[cold]
    fn new_pt(&mut self, t: usize) -> usize {
        let g = t >> 9;
        if self.pds.get(g).is_none_or(|&pd| pd == 0) {
            if self.pdpt == 0 {
                self.pdpt = Self::alloc_table();
                write_entry(self.root, GPA_BASE >> 39, self.pdpt as u64 | LINK);
            }
            if self.pds.len() <= g {
                self.pds.resize(g + 1, 0);
            }
            self.pds[g] = Self::alloc_table();
            write_entry(self.pdpt, (GPA_BASE >> 30) + g, self.pds[g] as u64 | LINK);
        }
        if self.pts.len() <= t {
            self.pts.resize(t + 1, 0);
        }
        let pt = Self::alloc_table();
        self.pts[t] = pt;
        write_entry(self.pds[g], t, pt as u64 | LINK);
        pt
    }

    /// Runs `f` on every leaf table the pages `first..end` fall in, with the
    /// page range inside it.
    #[inline]
    fn for_tables(&mut self, first: usize, end: usize, mut f: impl FnMut(usize, usize, usize)) {
        let mut page = first;
        while page < end {
            let stop = ((page | 511) + 1).min(end);
            let pt = self.pt(page);
            f(pt, page, stop);
            page = stop;
        }
    }

    fn free_all(&mut self) {
        for (t, pt) in self.pts.iter_mut().enumerate() {
            if *pt != 0 {
                write_entry(self.pds[t >> 9], t, 0);
                H::dealloc_frames(PhysAddr::from(*pt), 1);
                *pt = 0;
            }
        }
        for (g, pd) in self.pds.iter_mut().enumerate() {
            if *pd != 0 {
                write_entry(self.pdpt, (GPA_BASE >> 30) + g, 0);
                H::dealloc_frames(PhysAddr::from(*pd), 1);
                *pd = 0;
            }
        }
        if self.pdpt != 0 {
            write_entry(self.root, GPA_BASE >> 39, 0);
            H::dealloc_frames(PhysAddr::from(self.pdpt), 1);
            self.pdpt = 0;
        }
    }
}

impl<H: Frames> Table for Floor<H> {
    type Frames = H;
    const NAME: &'static str = "lower bound";

    fn create() -> Self {
        Floor {
            root: Self::alloc_table(),
            pdpt: 0,
            pds: Vec::with_capacity(512),
            pts: Vec::with_capacity(4096),
            _frames: PhantomData,
        }
    }

    fn map_region(&mut self, gpa: usize, hpa: usize, size: usize) {
        let first = Self::page(gpa);
        self.for_tables(first, first + size / FRAME, |pt, from, to| {
            for page in from..to {
                let out = hpa + (page - first) * FRAME;
                write_entry(pt, page, out as u64 | PRESENT_RW);
            }
        });
    }

    fn map_page(&mut self, gpa: usize, hpa: usize) {
        let page = Self::page(gpa);
        let pt = self.pt(page);
        write_entry(pt, page, hpa as u64 | PRESENT_RW);
    }

    fn query(&self, gpa: usize) -> Option<Found> {
        let page = gpa.checked_sub(GPA_BASE)? / FRAME;
        let pt = *self.pts.get(page >> 9)?;
        if pt == 0 {
            return None;
        }
        let e = read_entry(pt, page);
        (e & 1 != 0).then_some(Found {
            hpa: (e & ADDR_MASK) as usize + (gpa % FRAME),
            writable: e & WRITE_BIT != 0,
        })
    }

    fn protect_read_only(&mut self, gpa: usize, size: usize) {
        let first = Self::page(gpa);
        self.for_tables(first, first + size / FRAME, |pt, from, to| {
            for page in from..to {
                write_entry(pt, page, read_entry(pt, page) & !WRITE_BIT);
            }
        });
    }

    fn unmap_region(&mut self, gpa: usize, size: usize) {
        let first = Self::page(gpa);
        self.for_tables(first, first + size / FRAME, |pt, from, to| {
            for page in from..to {
                write_entry(pt, page, 0);
            }
        });
        // The bench unmaps all it mapped: every table but the root goes.
        self.free_all();
    }
}

impl<H: Frames> Drop for Floor<H> {
    fn drop(&mut self) {
        self.free_all();
        H::dealloc_frames(PhysAddr::from(self.root), 1);
    }
}
