//! The table engine: one implementation for every format, driven by the
//! format's [`Layout`](crate::format::Layout).
//!
//! Region operations descend once per table, not once per page: a
//! recursive walk handles every entry of a table in one visit. Each
//! operation first validates (and, for `map`, allocates the tables it
//! needs) without touching a mapping, then writes; so a refused operation,
//! including one refused for lack of memory, changes no mapping. Tables
//! allocated by a `map` that then fails stay empty until reused or dropped.

use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::error::Error;
use crate::flush::{Context, TlbFlush};
use crate::format::{Decoded, Format, Layout};
use core::marker::PhantomData;
use page_table_entry::MappingFlags;
use page_table_multiarch::PagingHandler;

/// A nested page table of format `F`, whose frames come from `H`.
pub struct NestedTable<F: Format, H: PagingHandler> {
    root: u64,
    params: F::Params,
    ctx: Context,
    /// A refused `map` installed tables whose invalidation it could not
    /// hand out (RISC-V may cache the invalid entries they replaced): the
    /// next batch invalidates the context.
    pending_context: bool,
    /// The output width for this table (the format's, or the host's
    /// physical address size where the spec lets a param narrow it).
    output_bits: u32,
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

#[derive(Clone, Copy)]
struct Job {
    start: usize,
    hpa: usize,
    attrs: u64,
    /// Leaves only at this level (single-page `map`).
    level: Option<usize>,
    allow_huge: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Check every entry and allocate missing tables; write no leaf.
    Prepare,
    /// Write the leaves (cannot fail).
    Write,
}

const fn layout<F: Format>() -> &'static Layout {
    &F::LAYOUT
}

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// A table with an empty root and default parameters (VMID 0).
    ///
    /// # Panics
    /// If the frame allocator cannot provide the root. Use
    /// [`try_new`](Self::try_new) to get an error instead.
    // No `Default`: creating a table allocates, and may fail.
    #[allow(clippy::new_without_default)]
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
        let g = &layout::<F>().geometry;
        // Refuse bad parameters before allocating anything.
        F::context(0, &params)?;
        let output_bits = F::output_bits(&params);
        let root = Self::alloc(g.root_tables, g.root_align, output_bits)?;
        match F::context(root, &params) {
            Ok(ctx) => Ok(NestedTable {
                root,
                params,
                ctx,
                pending_context: false,
                output_bits,
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

    fn frames(tables: usize) -> usize {
        (tables << layout::<F>().geometry.granule_shift) / memory_addr::PAGE_SIZE_4K
    }

    /// Allocates `tables` zeroed granule-sized tables, refusing frames the
    /// format cannot point at (misaligned or beyond the output width).
    fn alloc(tables: usize, align: usize, output_bits: u32) -> Result<u64, Error> {
        let g = &layout::<F>().geometry;
        let frames = Self::frames(tables);
        let pa = H::alloc_frames(frames, align).ok_or(Error::NoMemory)?;
        let bytes = tables << g.granule_shift;
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

    fn entries(pa: u64) -> *mut u64 {
        H::phys_to_virt(HostPhysAddr::from(pa as usize)).as_mut_ptr() as *mut u64
    }

    fn read(table: u64, idx: usize) -> u64 {
        // SAFETY: `table` is a table of this tree and `idx` comes from its
        // level's index, so it is within the table.
        unsafe { Self::entries(table).add(idx).read_volatile() }
    }

    fn write(table: u64, idx: usize, raw: u64) {
        // SAFETY: as in `read`; a volatile aligned 64-bit store is seen
        // whole by the hardware walker.
        unsafe { Self::entries(table).add(idx).write_volatile(raw) }
    }

    /// The root table's host-physical address.
    pub fn root_paddr(&self) -> HostPhysAddr {
        HostPhysAddr::from(self.root as usize)
    }

    /// The root-register value (EPTP, VTTBR_EL2, hgatp) for this table.
    pub fn root_register(&self) -> u64 {
        self.ctx[0]
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

    /// An empty invalidation batch for this table.
    fn batch(&mut self) -> TlbFlush<F> {
        let mut tf = TlbFlush::new(self.ctx, H::dealloc_frames, Self::frames(1));
        if core::mem::take(&mut self.pending_context) {
            tf.add_context();
        }
        tf
    }

    // -- checks --------------------------------------------------------

    fn check_size(size: usize) -> Result<(), Error> {
        let granule = layout::<F>().geometry.granule();
        if size == 0 || size % granule != 0 {
            return Err(Error::BadSize { size, granule });
        }
        Ok(())
    }

    fn check_gpa(gpa: usize, size: usize, align: usize) -> Result<(), Error> {
        let g = &layout::<F>().geometry;
        if gpa % align != 0 {
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
        if hpa % align != 0 {
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

    // -- map -----------------------------------------------------------

    /// Maps one page of `size` bytes (a leaf size of the format) at `gpa` to
    /// `hpa`. A huge page is refused with `AlreadyMapped` where a table
    /// holds the slot (npt does not replace tables by blocks, which would
    /// need break-before-make).
    pub fn map(
        &mut self,
        gpa: GuestPhysAddr,
        hpa: HostPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        let level = layout::<F>()
            .geometry
            .leaf_level(size)
            .ok_or(Error::UnsupportedPageSize { size })?;
        self.map_job(
            gpa.as_usize(),
            hpa.as_usize(),
            size,
            flags,
            Some(level),
            false,
            size,
        )
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
        let granule = layout::<F>().geometry.granule();
        self.map_job(
            gpa.as_usize(),
            hpa.as_usize(),
            size,
            flags,
            None,
            allow_huge,
            granule,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn map_job(
        &mut self,
        gpa: usize,
        hpa: usize,
        size: usize,
        flags: MappingFlags,
        level: Option<usize>,
        allow_huge: bool,
        align: usize,
    ) -> Result<TlbFlush<F>, Error> {
        Self::check_size(size)?;
        Self::check_gpa(gpa, size, align)?;
        self.check_hpa(hpa, size, align)?;
        let attrs = layout::<F>().attrs(flags)?;
        let job = Job {
            start: gpa,
            hpa,
            attrs,
            level,
            allow_huge,
        };
        let mut tf = self.batch();
        let end = gpa + size;
        if let Err(e) = self.map_rec(Pass::Prepare, self.root, 0, gpa, end, &job, &mut tf) {
            // No leaf was written, but tables may have been installed.
            self.pending_context = tf.scope() != crate::flush::Scope::Nothing;
            tf.ignore();
            return Err(e);
        }
        self.map_rec(Pass::Write, self.root, 0, gpa, end, &job, &mut tf)?;
        Ok(tf)
    }

    fn leaf_fits(job: &Job, lvl: usize, cur: usize, chunk_end: usize) -> bool {
        let levels = layout::<F>().geometry.levels;
        let l = &levels[lvl];
        let last = lvl + 1 == levels.len();
        let span = l.span();
        let hpa = job.hpa + (cur - job.start);
        l.leaf
            && match job.level {
                Some(want) => want == lvl,
                None => job.allow_huge || last,
            }
            && cur % span == 0
            && chunk_end - cur == span
            && hpa % span == 0
    }

    #[allow(clippy::too_many_arguments)]
    fn map_rec(
        &mut self,
        pass: Pass,
        table: u64,
        lvl: usize,
        start: usize,
        end: usize,
        job: &Job,
        tf: &mut TlbFlush<F>,
    ) -> Result<(), Error> {
        let lay = layout::<F>();
        let levels = lay.geometry.levels;
        let l = &levels[lvl];
        let span = l.span();
        let mut cur = start;
        while cur < end {
            let idx = l.index(cur);
            let chunk_end = (cur - cur % span).saturating_add(span).min(end);
            let raw = Self::read(table, idx);
            let decoded = lay.decode(raw, lvl);
            // An existing (empty) table is descended into, not replaced by
            // a block: replacing a table entry with a block needs
            // break-before-make on Arm, which a table edit cannot do alone.
            let is_table = matches!(decoded, Decoded::Table(_));
            let fits = Self::leaf_fits(job, lvl, cur, chunk_end);
            if fits && is_table && job.level == Some(lvl) {
                // A single huge page was asked for where a table is.
                return Err(Error::AlreadyMapped { gpa: cur.into() });
            }
            if fits && !is_table {
                match (pass, decoded) {
                    (Pass::Prepare, Decoded::Invalid) => {}
                    (Pass::Prepare, _) => return Err(Error::AlreadyMapped { gpa: cur.into() }),
                    (Pass::Write, _) => {
                        let hpa = (job.hpa + (cur - job.start)) as u64;
                        Self::write(table, idx, lay.leaf(lvl, hpa, job.attrs));
                        if F::FLUSH.invalidate_on_map {
                            tf.add_page(cur);
                        }
                    }
                }
            } else {
                let next = match decoded {
                    Decoded::Table(next) => next,
                    Decoded::Invalid if pass == Pass::Prepare => {
                        if lvl + 1 >= levels.len() {
                            // A leaf-level entry that cannot be a leaf here
                            // means misaligned input; checked before.
                            return Err(Error::MisalignedGpa {
                                gpa: cur.into(),
                                align: span,
                            });
                        }
                        let next = Self::alloc(1, lay.geometry.granule(), self.output_bits)?;
                        Self::write(table, idx, lay.table(next));
                        if F::FLUSH.invalidate_on_map {
                            tf.add_context();
                        }
                        next
                    }
                    _ => return Err(Error::AlreadyMapped { gpa: cur.into() }),
                };
                self.map_rec(pass, next, lvl + 1, cur, chunk_end, job, tf)?;
            }
            cur = chunk_end;
        }
        Ok(())
    }

    // -- unmap and protect ---------------------------------------------

    /// Fails unless every address in `start..end` is mapped by a leaf lying
    /// wholly inside the range.
    /// With `attrs`, also fails where rewriting a leaf with them would
    /// change bits the format may only change by break-before-make.
    fn check_mapped(
        &self,
        table: u64,
        lvl: usize,
        start: usize,
        end: usize,
        attrs: Option<u64>,
    ) -> Result<(), Error> {
        let lay = layout::<F>();
        let l = &lay.geometry.levels[lvl];
        let span = l.span();
        let mut cur = start;
        while cur < end {
            let base = cur - cur % span;
            let chunk_end = base.saturating_add(span).min(end);
            let raw = Self::read(table, l.index(cur));
            match lay.decode(raw, lvl) {
                Decoded::Invalid | Decoded::Reserved => {
                    return Err(Error::NotMapped { gpa: cur.into() })
                }
                Decoded::Table(next) => self.check_mapped(next, lvl + 1, cur, chunk_end, attrs)?,
                Decoded::Leaf(_) => {
                    if cur != base || chunk_end - cur != span {
                        return Err(Error::SplitsHugePage {
                            gpa: base.into(),
                            size: span,
                        });
                    }
                    if let Some(a) = attrs {
                        let new = (raw & !lay.attr_mask) | a;
                        if (raw ^ new) & lay.bbm_mask != 0 {
                            return Err(Error::BreakBeforeMake {
                                gpa: base.into(),
                                size: span,
                            });
                        }
                    }
                }
            }
            cur = chunk_end;
        }
        Ok(())
    }

    /// Unmaps the one leaf that starts at `gpa`; returns what it mapped.
    pub fn unmap(&mut self, gpa: GuestPhysAddr) -> Result<(Translation, TlbFlush<F>), Error> {
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

    /// Unmaps `size` bytes at `gpa`. Every page in the range must be mapped
    /// and no huge page may straddle its ends. Tables the range covers
    /// entirely are freed.
    pub fn unmap_region(&mut self, gpa: GuestPhysAddr, size: usize) -> Result<TlbFlush<F>, Error> {
        let granule = layout::<F>().geometry.granule();
        let start = gpa.as_usize();
        Self::check_size(size)?;
        Self::check_gpa(start, size, granule)?;
        self.check_mapped(self.root, 0, start, start + size, None)?;
        let mut tf = self.batch();
        self.rewrite_rec(self.root, 0, start, start + size, None, &mut tf);
        Ok(tf)
    }

    /// Changes the flags of the one leaf that starts at `gpa`.
    pub fn protect(
        &mut self,
        gpa: GuestPhysAddr,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        let t = self.query(gpa)?;
        self.protect_region(gpa, t.size, flags)
    }

    /// Changes the flags of every leaf in `size` bytes at `gpa`; every page
    /// must be mapped and no huge page may straddle the range's ends. Where
    /// the format needs break-before-make for a change (Arm: memory type,
    /// shareability), it is refused with `Error::BreakBeforeMake`: unmap,
    /// flush, then map again.
    pub fn protect_region(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        flags: MappingFlags,
    ) -> Result<TlbFlush<F>, Error> {
        let granule = layout::<F>().geometry.granule();
        let start = gpa.as_usize();
        Self::check_size(size)?;
        Self::check_gpa(start, size, granule)?;
        let attrs = layout::<F>().attrs(flags)?;
        self.check_mapped(self.root, 0, start, start + size, Some(attrs))?;
        let mut tf = self.batch();
        self.rewrite_rec(self.root, 0, start, start + size, Some(attrs), &mut tf);
        Ok(tf)
    }

    /// Rewrites every leaf in `start..end` (checked to be mapped): with new
    /// attribute bits, or cleared when `attrs` is `None` (freeing tables
    /// the range covers entirely).
    fn rewrite_rec(
        &mut self,
        table: u64,
        lvl: usize,
        start: usize,
        end: usize,
        attrs: Option<u64>,
        tf: &mut TlbFlush<F>,
    ) {
        let lay = layout::<F>();
        let l = &lay.geometry.levels[lvl];
        let span = l.span();
        let mut cur = start;
        while cur < end {
            let idx = l.index(cur);
            let base = cur - cur % span;
            let chunk_end = base.saturating_add(span).min(end);
            let raw = Self::read(table, idx);
            match lay.decode(raw, lvl) {
                Decoded::Leaf(_) => {
                    let new = match attrs {
                        Some(a) => (raw & !lay.attr_mask) | a,
                        None => 0,
                    };
                    if new != raw {
                        Self::write(table, idx, new);
                        tf.add_page(cur);
                    }
                }
                Decoded::Table(next) => {
                    self.rewrite_rec(next, lvl + 1, cur, chunk_end, attrs, tf);
                    if attrs.is_none() && tf.can_free() && Self::is_empty(next, lvl + 1) {
                        // Unlinked now, freed once the batch has invalidated
                        // the walk caches that may still point at it. It is
                        // empty only if the recursion unlinked all of its
                        // subtables, so nothing below it is lost.
                        Self::write(table, idx, 0);
                        tf.free_later(next as usize, base);
                    }
                }
                Decoded::Invalid | Decoded::Reserved => {}
            }
            cur = chunk_end;
        }
    }

    /// Whether every entry of `table` (at level `lvl`) is zero.
    fn is_empty(table: u64, lvl: usize) -> bool {
        let entries = layout::<F>().geometry.levels[lvl].entries();
        (0..entries).all(|i| Self::read(table, i) == 0)
    }

    // -- query and walk ------------------------------------------------

    /// Translates `gpa`.
    pub fn query(&self, gpa: GuestPhysAddr) -> Result<Translation, Error> {
        let lay = layout::<F>();
        let addr = gpa.as_usize();
        Self::check_gpa(addr, 0, 1)?;
        let mut table = self.root;
        for (lvl, l) in lay.geometry.levels.iter().enumerate() {
            let raw = Self::read(table, l.index(addr));
            match lay.decode(raw, lvl) {
                Decoded::Table(next) => table = next,
                Decoded::Leaf(pa) => {
                    let hpa = pa as usize + addr % l.span();
                    return Ok(Translation {
                        hpa: hpa.into(),
                        flags: lay.flags(raw),
                        size: l.span(),
                    });
                }
                Decoded::Invalid | Decoded::Reserved => break,
            }
        }
        Err(Error::NotMapped { gpa })
    }

    /// Calls `f` for every leaf in address order.
    pub fn for_each_leaf(&self, mut f: impl FnMut(Leaf)) {
        self.walk_rec(self.root, 0, 0, &mut f);
    }

    fn walk_rec(&self, table: u64, lvl: usize, base: usize, f: &mut impl FnMut(Leaf)) {
        let lay = layout::<F>();
        let l = &lay.geometry.levels[lvl];
        for idx in 0..l.entries() {
            let raw = Self::read(table, idx);
            let gpa = base + (idx << l.shift);
            match lay.decode(raw, lvl) {
                Decoded::Table(next) => self.walk_rec(next, lvl + 1, gpa, f),
                Decoded::Leaf(pa) => f(Leaf {
                    gpa: gpa.into(),
                    hpa: (pa as usize).into(),
                    size: l.span(),
                    level: lvl,
                    raw,
                    flags: lay.flags(raw),
                }),
                _ => {}
            }
        }
    }

    /// The number of frames (4 KiB) this table holds, root included.
    pub fn frames_used(&self) -> usize {
        let g = &layout::<F>().geometry;
        Self::frames(g.root_tables) + self.count_tables(self.root, 0) * Self::frames(1)
    }

    fn count_tables(&self, table: u64, lvl: usize) -> usize {
        let lay = layout::<F>();
        let l = &lay.geometry.levels[lvl];
        let mut n = 0;
        for idx in 0..l.entries() {
            if let Decoded::Table(next) = lay.decode(Self::read(table, idx), lvl) {
                n += 1 + self.count_tables(next, lvl + 1);
            }
        }
        n
    }

    /// Frees `table` (at level `lvl`) and every table below it.
    fn free_subtree(&mut self, table: u64, lvl: usize) {
        let lay = layout::<F>();
        let l = &lay.geometry.levels[lvl];
        if lvl + 1 < lay.geometry.levels.len() {
            for idx in 0..l.entries() {
                if let Decoded::Table(next) = lay.decode(Self::read(table, idx), lvl) {
                    self.free_subtree(next, lvl + 1);
                }
            }
        }
        H::dealloc_frames(HostPhysAddr::from(table as usize), Self::frames(1));
    }
}

/// Frees every table frame. Hardware must no longer walk the table, and its
/// context must have been invalidated ([`NestedTable::invalidate_context`]),
/// or walk caches could still point at the freed frames.
impl<F: Format, H: PagingHandler> Drop for NestedTable<F, H> {
    fn drop(&mut self) {
        let lay = layout::<F>();
        let root = &lay.geometry.levels[0];
        if lay.geometry.levels.len() > 1 {
            for idx in 0..root.entries() {
                if let Decoded::Table(next) = lay.decode(Self::read(self.root, idx), 0) {
                    self.free_subtree(next, 1);
                }
            }
        }
        H::dealloc_frames(
            HostPhysAddr::from(self.root as usize),
            Self::frames(lay.geometry.root_tables),
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
