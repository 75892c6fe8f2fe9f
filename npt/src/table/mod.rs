//! The table engine: one implementation for every format, specialised per
//! format and per level at compile time (see [`level`]), so each walk is
//! the masks and shifts of its format.
//!
//! Region operations descend once per table, not once per page. `map`
//! plans (checks the tables that exist and counts those it needs),
//! reserves every frame at once, then fills; `unmap` and `protect` check,
//! split the huge pages the range covers partly, then rewrite. A refused
//! operation, including one refused for lack of memory, changes no
//! mapping and keeps no frame. Every table an operation empties is
//! unlinked and handed to the batch, freed after its invalidation.

mod collapse;
mod dirty;
mod edit;
mod level;
mod map;
mod walk;

use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::error::Error;
use crate::flush::{Context, FlushExecutor, TlbFlush};
use crate::format::{Decoded, Format};
use crate::frames::{FrameList, FrameOps};
use core::cell::Cell;
use core::marker::PhantomData;
pub use dirty::{HugePages, WriteFault};
use level::{At, D0, MAX_LEVELS};
use map::{Job, Linear, Scattered};
use page_table_entry::MappingFlags;
use page_table_multiarch::PagingHandler;

/// A nested page table of format `F`, whose frames come from `H`.
pub struct NestedTable<F: Format, H: PagingHandler> {
    root: u64,
    params: F::Params,
    ctx: Context,
    /// The output width for this table (the format's, or the host's
    /// physical address size where the spec lets a param narrow it).
    output_bits: u32,
    /// Tables linked below the root.
    tables: usize,
    _marker: PhantomData<(F, fn() -> H)>,
}

/// One leaf, as [`NestedTable::for_each_leaf`] reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Leaf {
    /// The first guest-physical address it maps.
    pub gpa: GuestPhysAddr,
    /// The host-physical address it maps to.
    pub hpa: HostPhysAddr,
    /// Its size in bytes.
    pub size: usize,
    /// Its level, root = 0.
    pub level: usize,
    /// The raw descriptor.
    pub raw: u64,
    /// The flags read back from it.
    pub flags: MappingFlags,
}

/// What [`NestedTable::query`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Translation {
    /// The host-physical address the queried address translates to.
    pub hpa: HostPhysAddr,
    /// The flags of the leaf.
    pub flags: MappingFlags,
    /// The size of the leaf.
    pub size: usize,
}

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// What the engine requires of a layout, checked when a table of the
    /// format is first made (a compile-time error otherwise).
    const SUPPORTED: () = {
        let lay = &F::LAYOUT;
        let g = &lay.geometry;
        assert!(
            g.levels.len() <= MAX_LEVELS,
            "npt's engine walks at most six levels"
        );
        assert!(
            lay.present.reads_invalid_below(g.granule_shift),
            "a granule-aligned address must read as an invalid entry (tables awaiting their \
             invalidation are linked through their first word)"
        );
        assert!(
            lay.address.pa_shift + lay.address.width >= g.output_bits
                && lay.address.pa_shift <= g.granule_shift,
            "the address field must hold every output-address bit down to the granule"
        );
    };

    /// A table with an empty root and default parameters (VMID 0).
    ///
    /// # Panics
    /// If the frame allocator cannot provide the root. Use
    /// [`try_new`](Self::try_new) to get an error instead.
    // No `Default`: creating a table allocates, and may fail.
    #[allow(clippy::new_without_default)]
    // The one documented panic, kept for the seed module's API; callers
    // that must not panic use `try_new`.
    #[allow(clippy::panic)]
    pub fn new() -> Self {
        match Self::try_new() {
            Ok(t) => t,
            Err(e) => panic!("cannot create a {} table: {e}", F::NAME),
        }
    }

    /// A table with an empty root and default parameters.
    pub fn try_new() -> Result<Self, Error> {
        Self::try_new_with(F::Params::default())
    }

    /// A table with an empty root and the given root-register parameters
    /// (VMID ...), which are checked against their fields' widths.
    pub fn try_new_with(params: F::Params) -> Result<Self, Error> {
        #[allow(clippy::let_unit_value)]
        let () = Self::SUPPORTED;
        let g = &F::LAYOUT.geometry;
        // Refuse bad parameters before allocating anything; the rules on
        // the root's address run once it exists.
        F::check_params(&params)?;
        let output_bits = F::output_bits(&params);
        let root = Self::alloc(g.root_tables, g.root_align, output_bits)?;
        match F::context(root, &params) {
            Ok(ctx) => Ok(NestedTable {
                root,
                params,
                ctx,
                output_bits,
                tables: 0,
                _marker: PhantomData,
            }),
            Err(e) => {
                H::dealloc_frames(
                    HostPhysAddr::from(root as usize),
                    Self::frames(g.root_tables),
                );
                Err(e)
            }
        }
    }

    /// 4 KiB frames in `tables` granule-sized tables.
    const fn frames(tables: usize) -> usize {
        (tables << F::LAYOUT.geometry.granule_shift) / memory_addr::PAGE_SIZE_4K
    }

    /// How the frame lists reach and free this handler's frames.
    #[inline(always)]
    fn ops() -> FrameOps {
        FrameOps {
            dealloc: H::dealloc_frames,
            to_virt: H::phys_to_virt,
            frames_per_table: Self::frames(1),
        }
    }

    /// Allocates `tables` zeroed granule-sized tables, refusing frames the
    /// format cannot point at (misaligned or beyond the output width).
    fn alloc(tables: usize, align: usize, output_bits: u32) -> Result<u64, Error> {
        let frames = Self::frames(tables);
        let pa = H::alloc_frames(frames, align).ok_or(Error::NoMemory)?;
        let bytes = tables << F::LAYOUT.geometry.granule_shift;
        let end = pa.as_usize() as u128 + bytes as u128;
        if pa.as_usize() % align != 0 || end > 1u128 << output_bits {
            H::dealloc_frames(pa, frames);
            return Err(Error::NoMemory);
        }
        // SAFETY: the handler maps every frame it hands out at
        // `phys_to_virt`, and the frames are ours until deallocated.
        unsafe { core::ptr::write_bytes(H::phys_to_virt(pa).as_mut_ptr(), 0, bytes) };
        Ok(pa.as_usize() as u64)
    }

    /// Allocates `n` tables onto a list, or none at all; they come off it
    /// in allocation order.
    fn reserve(&self, n: usize) -> Result<FrameList, Error> {
        let ops = Self::ops();
        let mut list = FrameList::new();
        for _ in 0..n {
            match Self::alloc(1, F::LAYOUT.geometry.granule(), self.output_bits) {
                Ok(pa) => list.push_back(&ops, pa),
                Err(e) => {
                    list.free_all(&ops);
                    return Err(e);
                }
            }
        }
        Ok(list)
    }

    #[inline(always)]
    fn entries(pa: u64) -> *mut u64 {
        H::phys_to_virt(HostPhysAddr::from(pa as usize)).as_mut_ptr() as *mut u64
    }

    #[inline(always)]
    fn read(p: *mut u64, idx: usize) -> u64 {
        // SAFETY: `p` is a table of this tree and `idx` comes from its
        // level's index, so it is within the table.
        unsafe { p.add(idx).read_volatile() }
    }

    #[inline(always)]
    fn write(p: *mut u64, idx: usize, raw: u64) {
        // SAFETY: as in `read`; a volatile aligned 64-bit store is seen
        // whole by the hardware walker.
        unsafe { p.add(idx).write_volatile(raw) }
    }

    /// Atomically ANDs entry `idx` of `p` with `mask` (the CPU may be
    /// setting its accessed or dirty bit at the same moment); returns the
    /// old value.
    #[inline(always)]
    fn fetch_and(p: *mut u64, idx: usize, mask: u64) -> u64 {
        // SAFETY: as in `read`; entries are 8-byte aligned and only ever
        // accessed whole, by this table and the CPU's walker.
        let entry = unsafe { core::sync::atomic::AtomicU64::from_ptr(p.add(idx)) };
        entry.fetch_and(mask, core::sync::atomic::Ordering::SeqCst)
    }

    /// Atomically replaces entry `idx` of `p` by `f(old)` (a
    /// compare-and-swap loop: the CPU may set bits of it meanwhile);
    /// returns the old value.
    #[inline(always)]
    fn update(p: *mut u64, idx: usize, f: impl Fn(u64) -> u64) -> u64 {
        use core::sync::atomic::Ordering::SeqCst;
        // SAFETY: as in `fetch_and`.
        let entry = unsafe { core::sync::atomic::AtomicU64::from_ptr(p.add(idx)) };
        let mut old = entry.load(SeqCst);
        loop {
            match entry.compare_exchange_weak(old, f(old), SeqCst, SeqCst) {
                Ok(v) => return v,
                Err(v) => old = v,
            }
        }
    }

    /// The root table's host-physical address.
    pub fn root_paddr(&self) -> HostPhysAddr {
        HostPhysAddr::from(self.root as usize)
    }

    /// The root-register value (EPTP, VTTBR_EL2, hgatp) for this table.
    pub fn root_register(&self) -> u64 {
        self.ctx[0]
    }

    /// Every register the format's spec declares (`F::REGISTERS`) with its
    /// value for this table: generic hypervisor code loads them by name
    /// (EPTP; VTTBR_EL2 and VTCR_EL2; hgatp; nCR3) without a function per
    /// format.
    pub fn registers(&self) -> impl Iterator<Item = (&'static str, Result<u64, Error>)> + '_ {
        let root = self.root_paddr();
        F::REGISTERS
            .iter()
            .enumerate()
            .map(move |(i, name)| (*name, F::register(i, root, &self.params)))
    }

    /// A batch that invalidates everything cached for this table's context
    /// (EPTP, VMID, ASID): before reusing the VMID for another table, or
    /// before dropping a table hardware has walked (drop frees every frame).
    pub fn invalidate_context(&mut self) -> TlbFlush<F> {
        let mut tf = self.batch();
        tf.add_context();
        tf
    }

    /// The output (host-physical) address width this table accepts.
    pub fn output_bits(&self) -> u32 {
        self.output_bits
    }

    /// The root-register parameters this table was made with.
    pub fn params(&self) -> &F::Params {
        &self.params
    }

    /// The number of frames (4 KiB) this table holds, root included
    /// (tables unlinked and waiting in a batch are the batch's).
    pub fn frames_used(&self) -> usize {
        Self::frames(F::LAYOUT.geometry.root_tables) + self.tables * Self::frames(1)
    }

    /// An empty invalidation batch for this table.
    fn batch(&self) -> TlbFlush<F> {
        TlbFlush::new(self.ctx, Self::ops())
    }

    // -- checks --------------------------------------------------------

    fn check_size(size: usize) -> Result<(), Error> {
        let granule = F::LAYOUT.geometry.granule();
        if size == 0 || size % granule != 0 {
            return Err(Error::BadSize { size, granule });
        }
        Ok(())
    }

    fn check_gpa(gpa: usize, size: usize, align: usize) -> Result<(), Error> {
        let g = &F::LAYOUT.geometry;
        // `align` is a page size: a power of two.
        if gpa & (align - 1) != 0 {
            return Err(Error::MisalignedGpa {
                gpa: gpa.into(),
                align,
            });
        }
        if gpa as u128 >= g.input_limit() {
            return Err(Error::GpaOutOfRange {
                gpa: gpa.into(),
                input_bits: g.input_bits,
            });
        }
        if gpa as u128 + size as u128 > g.input_limit() {
            let first = g.input_limit() as usize;
            return Err(Error::GpaOutOfRange {
                gpa: first.into(),
                input_bits: g.input_bits,
            });
        }
        Ok(())
    }

    fn check_hpa(&self, hpa: usize, size: usize, align: usize) -> Result<(), Error> {
        let limit = 1u128 << self.output_bits;
        let output_bits = self.output_bits;
        if hpa & (align - 1) != 0 {
            return Err(Error::MisalignedHpa {
                hpa: hpa.into(),
                align,
            });
        }
        if hpa as u128 >= limit {
            return Err(Error::HpaOutOfRange {
                hpa: hpa.into(),
                output_bits,
            });
        }
        if hpa as u128 + size as u128 > limit {
            return Err(Error::HpaOutOfRange {
                hpa: (limit as usize).into(),
                output_bits,
            });
        }
        Ok(())
    }

    /// `check_gpa` and `check_hpa` for one leaf (the same errors): `size`
    /// is a leaf size, a power of two no wider than the input or output,
    /// so an address aligned to it and below the limit has room for it.
    /// Kept apart from the general checks: single-page `map` is a hot path
    /// and the general end checks cost it a fifth of its time.
    #[inline(always)]
    fn check_leaf(&self, gpa: usize, hpa: usize, size: usize) -> Result<(), Error> {
        let g = &F::LAYOUT.geometry;
        if gpa & (size - 1) != 0 {
            return Err(Error::MisalignedGpa {
                gpa: gpa.into(),
                align: size,
            });
        }
        if gpa as u128 >= g.input_limit() {
            return Err(Error::GpaOutOfRange {
                gpa: gpa.into(),
                input_bits: g.input_bits,
            });
        }
        if hpa & (size - 1) != 0 {
            return Err(Error::MisalignedHpa {
                hpa: hpa.into(),
                align: size,
            });
        }
        if hpa as u128 >= 1u128 << self.output_bits {
            return Err(Error::HpaOutOfRange {
                hpa: hpa.into(),
                output_bits: self.output_bits,
            });
        }
        Ok(())
    }

    /// A checked range: `gpa..gpa + size`, granule-aligned, within the input.
    fn range(gpa: GuestPhysAddr, size: usize) -> Result<(usize, usize), Error> {
        let start = gpa.as_usize();
        Self::check_size(size)?;
        Self::check_gpa(start, size, F::LAYOUT.geometry.granule())?;
        Ok((start, start + size))
    }

    // -- map -----------------------------------------------------------

    /// [`map`](Self::map) with the size as `page_table_multiarch` names it.
    pub fn map_page(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: page_table_multiarch::PageSize,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        self.map(gpa, hpa, size.into(), flags)
    }

    /// Maps one page of `size` bytes (a leaf size of the format) at `gpa`
    /// to `hpa`. A huge page is refused with `AlreadyMapped` where a table
    /// holds the slot.
    #[inline]
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        let level = Self::leaf_depth::<D0>(size).ok_or(Error::UnsupportedPageSize { size })?;
        let (g, h) = (gpa.as_usize(), hpa.as_usize());
        self.check_leaf(g, h, size)?;
        let attrs = self.attrs(flags)?;
        self.map_one::<D0>(self.root, g, h as u64, attrs, level)
    }

    /// The attribute bits for `flags` in this table: the spec's conditional
    /// refusals are lifted where this table's params allow them.
    #[inline(always)]
    fn attrs(&self, flags: MappingFlags) -> Result<u64, Error> {
        F::LAYOUT.attrs_allowing(flags, |rule| F::allows(&self.params, rule))
    }

    /// The depth whose leaves are `size` bytes.
    #[inline(always)]
    fn leaf_depth<D: level::Depth>(size: usize) -> Option<usize> {
        if At::<F, D>::LEAF && size == At::<F, D>::SPAN {
            Some(D::N)
        } else if At::<F, D>::LAST {
            None
        } else {
            Self::leaf_depth::<D::Next>(size)
        }
    }

    /// Maps `size` bytes at `gpa` to `hpa`, using the largest leaves that
    /// alignment allows when `allow_huge` is set.
    pub fn map_region(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: usize,
        flags: MappingFlags,
        allow_huge: bool,
    ) -> Result<TlbFlush<F>, Error> {
        let (start, end) = Self::range(gpa, size)?;
        let hpa = hpa.as_usize();
        self.check_hpa(hpa, size, F::LAYOUT.geometry.granule())?;
        let target = Linear { gpa: start, hpa };
        self.map_job(start, end, target, flags, allow_huge, None)
    }

    /// Maps `size` bytes at `gpa`, each page to the frame `get_paddr` gives
    /// for it (guest memory backed by scattered frames), as
    /// `PageTable64::map_region` does. With `allow_huge`, a huge page is
    /// used where `get_paddr` of its first page is aligned to its size, and
    /// then stands for the whole huge page (which must be contiguous).
    ///
    /// `get_paddr` is called more than once for an address (to check, then
    /// to write) and must give the same answer each time; if it does not,
    /// the map stops with [`Error::UnstablePaddr`] and the pages mapped by
    /// then stay mapped.
    pub fn map_region_with(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
        allow_huge: bool,
        get_paddr: impl Fn(GuestPhysAddr) -> HostPhysAddr,
    ) -> Result<TlbFlush<F>, Error> {
        let (start, end) = Self::range(gpa, size)?;
        self.map_job(start, end, Scattered(get_paddr), flags, allow_huge, None)
    }

    fn map_job<T: map::Target>(
        &mut self,
        start: usize,
        end: usize,
        target: T,
        flags: MappingFlags,
        huge: bool,
        only: Option<usize>,
    ) -> Result<TlbFlush<F>, Error> {
        let job = Job {
            target,
            attrs: self.attrs(flags)?,
            huge,
            only,
            output_bits: self.output_bits,
            unstable: Cell::new(None),
        };
        let need = Self::plan::<D0, T>(self.root, start, end, &job)?;
        let mut reserve = self.reserve(need)?;
        let mut tf = self.batch();
        self.fill::<D0, T>(self.root, start, end, &job, &mut reserve, &mut tf, false);
        // Left over only if a scattered target changed its answers.
        reserve.free_all(&Self::ops());
        match job.unstable.get() {
            None => Ok(tf),
            Some(gpa) => {
                // The pages mapped so far may be cached: the batch's
                // invalidation runs when it drops.
                tf.add_context();
                drop(tf);
                Err(Error::UnstablePaddr { gpa: gpa.into() })
            }
        }
    }

    // -- unmap, protect, remap -----------------------------------------

    /// Unmaps the one leaf that starts at `gpa`; returns what it mapped.
    /// An address inside a huge page is refused with `SplitsHugePage` (use
    /// [`unmap_region`](Self::unmap_region), which splits it).
    pub fn unmap(&mut self, gpa: GuestPhysAddr) -> Result<(Translation, TlbFlush<F>), Error> {
        Self::check_gpa(gpa.as_usize(), 0, F::LAYOUT.geometry.granule())?;
        let t = self.query(gpa)?;
        if gpa.as_usize() % t.size != 0 {
            let base = gpa.as_usize() - gpa.as_usize() % t.size;
            return Err(Error::SplitsHugePage {
                gpa: base.into(),
                size: t.size,
            });
        }
        let tf = self.unmap_region(gpa, t.size)?;
        Ok((t, tf))
    }

    /// Unmaps `size` bytes at `gpa`. Every page in the range must be
    /// mapped. A huge page the range covers partly is split first (see
    /// [`unmap_region_in`](Self::unmap_region_in)). Tables left empty are
    /// freed after the batch's invalidation.
    pub fn unmap_region(&mut self, gpa: GuestPhysAddr, size: usize) -> Result<TlbFlush<F>, Error> {
        self.unmap_region_in(gpa, size, &mut crate::instr::Host)
    }

    /// [`unmap_region`](Self::unmap_region), with the executor that runs
    /// the invalidations a split needs before it can go on: where the
    /// format splits a huge page by break-before-make (Arm), the block is
    /// made invalid, invalidated through `exec`, then replaced by a table.
    /// Elsewhere the block is replaced in place and invalidated with the
    /// returned batch.
    pub fn unmap_region_in(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        let (start, end) = Self::range(gpa, size)?;
        let need = Self::check_mapped::<D0>(self.root, start, end, None)?;
        let mut tf = self.split_ends(start, end, None, need, exec)?;
        self.unmap_rec::<D0>(self.root, start, end, &mut tf);
        Ok(tf)
    }

    /// Splits the huge pages straddling `start` or `end`.
    fn split_ends(
        &mut self,
        start: usize,
        end: usize,
        attrs: Option<u64>,
        need: usize,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        let mut tf = self.batch();
        if need == 0 {
            return Ok(tf);
        }
        let mut reserve = self.reserve(need)?;
        let mut result = self.split_at::<D0>(self.root, start, attrs, &mut reserve, &mut tf, exec);
        if result.is_ok() && (end as u128) < F::LAYOUT.geometry.input_limit() {
            result = self.split_at::<D0>(self.root, end, attrs, &mut reserve, &mut tf, exec);
        }
        reserve.free_all(&Self::ops());
        // A split maps what the block mapped: one that went through before
        // a failure changes no translation, and its batch still runs.
        result.map(|()| tf)
    }

    /// Changes the flags of the one leaf that holds `gpa`.
    pub fn protect(
        &mut self,
        gpa: GuestPhysAddr,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        Self::check_gpa(gpa.as_usize(), 0, F::LAYOUT.geometry.granule())?;
        let t = self.query(gpa)?;
        if gpa.as_usize() % t.size != 0 {
            return Err(Error::MisalignedGpa { gpa, align: t.size });
        }
        self.protect_region(gpa, t.size, flags)
    }

    /// Changes the flags of every page in `size` bytes at `gpa`; every page
    /// must be mapped. A huge page the range covers partly is split first
    /// (see [`unmap_region_in`](Self::unmap_region_in)) unless the new flags
    /// leave it unchanged. Where the format needs break-before-make for a
    /// change (Arm: memory type, shareability), it is refused with
    /// `Error::BreakBeforeMake`: unmap, flush, then map again.
    pub fn protect_region(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        self.protect_region_in(gpa, size, flags, &mut crate::instr::Host)
    }

    /// [`protect_region`](Self::protect_region) with the executor a
    /// break-before-make split needs (see
    /// [`unmap_region_in`](Self::unmap_region_in)).
    pub fn protect_region_in(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        let (start, end) = Self::range(gpa, size)?;
        let attrs = self.attrs(flags)?;
        let need = Self::check_mapped::<D0>(self.root, start, end, Some(attrs))?;
        let mut tf = self.split_ends(start, end, Some(attrs), need, exec)?;
        Self::protect_rec::<D0>(self.root, start, end, attrs, &mut tf);
        Ok(tf)
    }

    /// Points the leaf that starts at `gpa` at `hpa` with `flags`, keeping
    /// its size; returns the size. On formats that change a live leaf's
    /// output only by break-before-make this is unmap, invalidate and map;
    /// run it with [`remap_in`](Self::remap_in) there.
    pub fn remap(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        flags: MappingFlags,
    ) -> Result<(usize, TlbFlush<F>), Error> {
        self.remap_in(gpa, hpa, flags, &mut crate::instr::Host)
    }

    /// [`remap`](Self::remap) with the executor break-before-make needs.
    pub fn remap_in(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        flags: MappingFlags,
        exec: &mut impl FlushExecutor,
    ) -> Result<(usize, TlbFlush<F>), Error> {
        Self::check_gpa(gpa.as_usize(), 0, F::LAYOUT.geometry.granule())?;
        let t = self.query(gpa)?;
        let size = t.size;
        if gpa.as_usize() % size != 0 {
            return Err(Error::MisalignedGpa { gpa, align: size });
        }
        self.check_hpa(hpa.as_usize(), size, size)?;
        let attrs = self.attrs(flags)?;
        let mut tf = self.batch();
        let hpa = hpa.as_usize() as u64;
        Self::rewrite_leaf::<D0>(self.root, gpa.as_usize(), hpa, attrs, &mut tf, exec)?;
        Ok((size, tf))
    }

    /// Rewrites the leaf holding `gpa` (queried, aligned) to map `hpa`.
    fn rewrite_leaf<D: level::Depth>(
        table: u64,
        gpa: usize,
        hpa: u64,
        attrs: u64,
        tf: &mut TlbFlush<F>,
        exec: &mut impl FlushExecutor,
    ) -> Result<(), Error> {
        let p = Self::entries(table);
        let idx = At::<F, D>::index(gpa);
        let raw = Self::read(p, idx);
        match At::<F, D>::decode(raw) {
            Decoded::Leaf(_) => {
                let new = Self::leaf::<D>(hpa, attrs);
                if F::FLUSH.split_break_before_make && new != raw {
                    let ctx = *tf.context();
                    Self::break_before_make::<D>(p, idx, raw, new, gpa, || {
                        crate::flush::run_page(&F::FLUSH.page, &ctx, gpa, exec)
                    })?;
                } else if new != raw {
                    Self::write(p, idx, new);
                    tf.add_page(gpa);
                }
                Ok(())
            }
            Decoded::Table(next) if !At::<F, D>::LAST => {
                Self::rewrite_leaf::<D::Next>(next, gpa, hpa, attrs, tf, exec)
            }
            _ => Err(Error::NotMapped { gpa: gpa.into() }),
        }
    }
}

/// Frees every table frame. Hardware must no longer walk the table, and its
/// context must have been invalidated ([`NestedTable::invalidate_context`]),
/// or walk caches could still point at the freed frames.
impl<F: Format, H: PagingHandler> Drop for NestedTable<F, H> {
    fn drop(&mut self) {
        Self::free_below::<D0>(self.root);
        H::dealloc_frames(
            HostPhysAddr::from(self.root as usize),
            Self::frames(F::LAYOUT.geometry.root_tables),
        );
    }
}

impl<F: Format, H: PagingHandler> core::fmt::Debug for NestedTable<F, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NestedTable")
            .field("format", &F::NAME)
            .field("root", &self.root_paddr())
            .field(
                "root_register",
                &format_args!("{:#x}", self.root_register()),
            )
            .field("params", &self.params)
            .finish()
    }
}
