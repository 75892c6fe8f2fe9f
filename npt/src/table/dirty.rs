//! Dirty logging by write protection, on every format whose spec names a
//! `dirty_log_bit` (a bit the manual leaves to software), as KVM does it:
//! start logging write-protects the writable leaves of a range (huge
//! pages split to the granule first) and marks them with the log bit; a
//! write fault on a marked leaf is a logging fault, which makes the page
//! writable again (dirty); a harvest reports the dirty pages and
//! write-protects them again (KVM's manual-protect "get and clear").
//!
//! A leaf's state: log bit clear, not logged; log bit set and not
//! writable, logged and clean; log bit set and writable, logged and dirty.
//! A leaf the caller mapped read-only never carries the bit, so logging
//! never makes it writable; `protect` clears the bit of what it rewrites.

use super::level::{At, Depth, D0};
use super::NestedTable;
use crate::addr::GuestPhysAddr;
use crate::error::Error;
use crate::flush::{FlushExecutor, TlbFlush};
use crate::format::{Decoded, Format};
use crate::frames::FrameList;
use page_table_entry::MappingFlags;
use page_table_multiarch::PagingHandler;

/// What [`NestedTable::handle_write_fault`] found.
#[derive(Debug)]
#[must_use = "a logging fault's batch makes the page writable for the guest: run it"]
pub enum WriteFault<F: Format> {
    /// A logging fault: the page is marked dirty and writable again; run
    /// the batch (it invalidates the stricter entry the faulting CPU may
    /// still hold; empty on EPT, whose violation already dropped it) and
    /// resume the guest.
    Logged(TlbFlush<F>),
    /// The leaf is not write-protected by logging: a real permission fault
    /// for the hypervisor to handle.
    NotLogged,
}

/// What starting dirty logging does with the writable huge pages of the
/// range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HugePages {
    /// Split them to the granule now (KVM's eager split): logging starts
    /// with every page write-protected on its own.
    SplitNow,
    /// Write-protect each whole; the first write fault in one splits it
    /// (the faulting page becomes dirty, its neighbours stay logged and
    /// clean), so huge pages the guest never writes stay huge. A huge page
    /// only partly inside the range is split now.
    SplitOnFault,
}

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    fn log_bit() -> Result<u64, Error> {
        match F::LAYOUT.log_bit {
            0 => Err(Error::NoDirtyLogBit),
            bit => Ok(bit),
        }
    }

    /// `raw` (a writable leaf at depth `D`) write-protected and marked.
    #[inline(always)]
    fn protected<D: Depth>(raw: u64, bit: u64) -> Option<u64> {
        let flags = At::<F, D>::flags(raw) - MappingFlags::WRITE;
        let attrs = F::LAYOUT.attrs(flags).ok()?;
        Some(Self::with_attrs(raw, attrs) | bit)
    }

    /// `raw` (a leaf at depth `D`) writable again, mark kept.
    #[inline(always)]
    fn writable<D: Depth>(raw: u64) -> Option<u64> {
        let flags = At::<F, D>::flags(raw) | MappingFlags::WRITE;
        let attrs = F::LAYOUT.attrs(flags).ok()?;
        Some(Self::with_attrs(raw, attrs))
    }

    /// Starts dirty logging on `size` bytes at `gpa` (holes allowed): huge
    /// pages holding writable memory are split to the granule (Arm: by
    /// break-before-make through `exec`), then every writable page is
    /// write-protected and marked. Pages mapped later are not logged.
    /// Refused without change if the format has no `dirty_log_bit` or the
    /// allocator cannot provide the tables the splits need.
    pub fn start_dirty_log_in(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        self.start_dirty_log_with(gpa, size, HugePages::SplitNow, exec)
    }

    /// [`start_dirty_log_in`](Self::start_dirty_log_in), with the caller's
    /// choice of when huge pages are split: with
    /// [`HugePages::SplitOnFault`] the write faults on them go to
    /// [`handle_write_fault_in`](Self::handle_write_fault_in), which splits.
    pub fn start_dirty_log_with(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        huge: HugePages,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        let bit = Self::log_bit()?;
        let (start, end) = Self::range(gpa, size)?;
        let lazy = huge == HugePages::SplitOnFault;
        let need = Self::log_split_need::<D0>(self.root, start, end, lazy);
        let mut reserve = self.reserve(need)?;
        let mut tf = self.batch();
        let split = self.log_split::<D0>(self.root, start, end, lazy, &mut reserve, &mut tf, exec);
        reserve.free_all(&Self::ops());
        split?;
        Self::log_rewrite::<D0>(self.root, start, end, bit, lazy, &mut tf, &mut |_| {});
        Ok(tf)
    }

    /// Writes into `bitmap` which pages of `size` bytes at `gpa` were
    /// written since logging started or the last harvest (bit `i` of word
    /// `i / 64` for the page at `gpa + i * granule`), and write-protects
    /// them again; the batch invalidates them all at once.
    pub fn harvest_dirty(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        bitmap: &mut [u64],
    ) -> Result<TlbFlush<F>, Error> {
        let bit = Self::log_bit()?;
        let (start, end) = Self::range(gpa, size)?;
        let pages = (end - start) >> F::LAYOUT.geometry.granule_shift;
        if bitmap.len() < pages.div_ceil(64) {
            return Err(Error::BitmapTooSmall { pages });
        }
        bitmap
            .iter_mut()
            .take(pages.div_ceil(64))
            .for_each(|w| *w = 0);
        let mut tf = self.batch();
        let shift = F::LAYOUT.geometry.granule_shift;
        Self::log_rewrite::<D0>(self.root, start, end, bit, false, &mut tf, &mut |page| {
            let i = (page - start) >> shift;
            if let Some(w) = bitmap.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        });
        Ok(tf)
    }

    /// Handles a write fault at `gpa`: a logging fault makes the page
    /// writable and dirty; anything else is the hypervisor's. A fault in a
    /// huge page logged with [`HugePages::SplitOnFault`] splits it first,
    /// which on Arm is break-before-make on the host's instructions: use
    /// [`handle_write_fault_in`](Self::handle_write_fault_in) to choose the
    /// executor.
    pub fn handle_write_fault(&mut self, gpa: GuestPhysAddr) -> Result<WriteFault<F>, Error> {
        self.handle_write_fault_in(gpa, &mut crate::instr::Host)
    }

    /// [`handle_write_fault`](Self::handle_write_fault) with the executor a
    /// break-before-make split runs its invalidation on. Refused without
    /// change ([`Error::NoMemory`]) if a split needs tables the allocator
    /// cannot give.
    pub fn handle_write_fault_in(
        &mut self,
        gpa: GuestPhysAddr,
        exec: &mut impl FlushExecutor,
    ) -> Result<WriteFault<F>, Error> {
        let bit = Self::log_bit()?;
        let addr = gpa.as_usize();
        if addr as u128 >= F::LAYOUT.geometry.input_limit() {
            return Err(Error::GpaOutOfRange {
                gpa,
                input_bits: F::LAYOUT.geometry.input_bits,
            });
        }
        let need = Self::fault_split_need::<D0>(self.root, addr, bit);
        let mut reserve = self.reserve(need)?;
        let mut tf = self.batch();
        let found = self.fault_at::<D0>(self.root, addr, bit, &mut reserve, &mut tf, exec);
        reserve.free_all(&Self::ops());
        match found? {
            Some(true) => Ok(WriteFault::Logged(tf)),
            Some(false) => Ok(WriteFault::NotLogged),
            None => Err(Error::NotMapped { gpa }),
        }
    }

    /// Stops dirty logging on `size` bytes at `gpa`: every marked page is
    /// writable again and unmarked (then `collapse_region_in` can rebuild
    /// huge pages).
    pub fn stop_dirty_log(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
    ) -> Result<TlbFlush<F>, Error> {
        let bit = Self::log_bit()?;
        let (start, end) = Self::range(gpa, size)?;
        let mut tf = self.batch();
        Self::log_stop::<D0>(self.root, start, end, bit, &mut tf);
        Ok(tf)
    }

    // -- walks ---------------------------------------------------------

    /// Tables splitting the writable huge leaves of `start..end` down to
    /// the granule take (with `lazy`, only those partly outside the range).
    fn log_split_need<D: Depth>(table: u64, start: usize, end: usize, lazy: bool) -> usize {
        if At::<F, D>::LAST {
            return 0;
        }
        let p = Self::entries(table);
        let mut need = 0;
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let raw = Self::read(p, At::<F, D>::index(cur));
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) => {
                    need += Self::log_split_need::<D::Next>(next, cur, ce, lazy)
                }
                Decoded::Leaf(_)
                    if At::<F, D>::flags(raw).contains(MappingFlags::WRITE)
                        && !(lazy && Self::whole::<D>(cur, ce)) =>
                {
                    need += Self::subtree_tables::<D::Next>()
                }
                _ => {}
            }
        }
        need
    }

    /// Whether `cur..ce` is the whole leaf at depth `D` around `cur`.
    #[inline(always)]
    fn whole<D: Depth>(cur: usize, ce: usize) -> bool {
        At::<F, D>::base(cur) == cur && ce - cur == 1 << At::<F, D>::SHIFT
    }

    /// Tables a write fault at `addr` splits: a full subtree under a
    /// logged (marked, write-protected) huge leaf, else none.
    fn fault_split_need<D: Depth>(table: u64, addr: usize, bit: u64) -> usize {
        let raw = Self::read(Self::entries(table), At::<F, D>::index(addr));
        match At::<F, D>::decode(raw) {
            Decoded::Table(next) if !At::<F, D>::LAST => {
                Self::fault_split_need::<D::Next>(next, addr, bit)
            }
            Decoded::Leaf(_)
                if !At::<F, D>::LAST
                    && raw & bit != 0
                    && !At::<F, D>::flags(raw).contains(MappingFlags::WRITE) =>
            {
                Self::subtree_tables::<D::Next>()
            }
            _ => 0,
        }
    }

    /// Tables in a full subtree whose top table is at depth `D`.
    fn subtree_tables<D: Depth>() -> usize {
        if At::<F, D>::LAST {
            1
        } else {
            1 + At::<F, D>::ENTRIES * Self::subtree_tables::<D::Next>()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn log_split<D: Depth>(
        &mut self,
        table: u64,
        start: usize,
        end: usize,
        lazy: bool,
        reserve: &mut FrameList,
        tf: &mut TlbFlush<F>,
        exec: &mut impl FlushExecutor,
    ) -> Result<(), Error> {
        if At::<F, D>::LAST {
            return Ok(());
        }
        let p = Self::entries(table);
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = Self::read(p, idx);
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) => {
                    self.log_split::<D::Next>(next, cur, ce, lazy, reserve, tf, exec)?
                }
                Decoded::Leaf(pa)
                    if At::<F, D>::flags(raw).contains(MappingFlags::WRITE)
                        && !(lazy && Self::whole::<D>(cur, ce)) =>
                {
                    self.split_leaf::<D>(p, idx, raw, pa, cur, reserve, tf, exec)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Replaces the huge leaf `raw` (entry `idx` of `p`, covering `addr`)
    /// by a full subtree of granule leaves with the same bits: by
    /// break-before-make through `exec` where the format needs it, else in
    /// place with the old leaf's invalidation in `tf`. Returns the new
    /// table.
    #[allow(clippy::too_many_arguments)]
    fn split_leaf<D: Depth>(
        &mut self,
        p: *mut u64,
        idx: usize,
        raw: u64,
        pa: u64,
        addr: usize,
        reserve: &mut FrameList,
        tf: &mut TlbFlush<F>,
        exec: &mut impl FlushExecutor,
    ) -> Result<u64, Error> {
        let base = At::<F, D>::base(addr);
        let keep = raw & !F::LAYOUT.address.mask() & !At::<F, D>::LEAF_SET;
        let Some(child) = self.build_pages::<D::Next>(keep, pa, reserve) else {
            return Err(Error::NoMemory);
        };
        let desc = F::LAYOUT.table(child);
        if F::FLUSH.split_break_before_make {
            let ctx = *tf.context();
            Self::break_before_make::<D>(p, idx, raw, desc, base, || {
                crate::flush::run_page(&F::FLUSH.page, &ctx, base, exec)
            })?;
        } else {
            Self::write(p, idx, desc);
            tf.add_page(base);
        }
        Ok(child)
    }

    /// A full subtree at depth `D` mapping from `pa` with the bits `keep`,
    /// down to granule leaves; its tables come from `reserve`.
    fn build_pages<D: Depth>(
        &mut self,
        keep: u64,
        pa: u64,
        reserve: &mut FrameList,
    ) -> Option<u64> {
        let table = reserve.pop(&Self::ops())?;
        let p = Self::entries(table);
        let a = &F::LAYOUT.address;
        for k in 0..At::<F, D>::ENTRIES {
            let child_pa = pa + ((k as u64) << At::<F, D>::SHIFT);
            let entry = if At::<F, D>::LAST {
                keep | At::<F, D>::LEAF_SET | a.encode(child_pa)
            } else {
                F::LAYOUT.table(self.build_pages::<D::Next>(keep, child_pa, reserve)?)
            };
            Self::write(p, k, entry);
        }
        self.tables += 1;
        Some(table)
    }

    /// Write-protects and marks every writable granule leaf of
    /// `start..end`, calling `dirty` for each that was marked (a logged
    /// page written since).
    /// With `huge`, writable huge leaves wholly inside the range are
    /// write-protected and marked too (logging that splits on fault).
    fn log_rewrite<D: Depth>(
        table: u64,
        start: usize,
        end: usize,
        bit: u64,
        huge: bool,
        tf: &mut TlbFlush<F>,
        dirty: &mut impl FnMut(usize),
    ) {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            let i0 = At::<F, D>::index(start);
            for k in 0..(end - start) >> At::<F, D>::SHIFT {
                let raw = Self::read(p, i0 + k);
                if !At::<F, D>::present(raw)
                    || !At::<F, D>::flags(raw).contains(MappingFlags::WRITE)
                {
                    continue;
                }
                let page = start + (k << At::<F, D>::SHIFT);
                match Self::protected::<D>(raw, bit) {
                    Some(new) => {
                        if raw & bit != 0 {
                            dirty(page);
                        }
                        Self::write(p, i0 + k, new);
                        tf.add_page(page);
                    }
                    // Flags the format cannot encode without WRITE: the
                    // page cannot be protected, so it is always reported.
                    None => dirty(page),
                }
            }
            return;
        }
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = Self::read(p, idx);
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) => {
                    Self::log_rewrite::<D::Next>(next, cur, ce, bit, huge, tf, dirty)
                }
                Decoded::Leaf(_)
                    if huge
                        && Self::whole::<D>(cur, ce)
                        && At::<F, D>::flags(raw).contains(MappingFlags::WRITE) =>
                {
                    if let Some(new) = Self::protected::<D>(raw, bit) {
                        Self::write(p, idx, new);
                        tf.add_page(cur);
                    }
                }
                _ => {}
            }
        }
    }

    /// The fault at `addr`: `Some(true)` a logging fault (fixed), `Some(false)`
    /// not one, `None` no leaf.
    /// A logged huge leaf (marked, write-protected) is split first, its
    /// pages keeping the mark, and the fault handled in the new table.
    fn fault_at<D: Depth>(
        &mut self,
        table: u64,
        addr: usize,
        bit: u64,
        reserve: &mut FrameList,
        tf: &mut TlbFlush<F>,
        exec: &mut impl FlushExecutor,
    ) -> Result<Option<bool>, Error> {
        let p = Self::entries(table);
        let idx = At::<F, D>::index(addr);
        let raw = Self::read(p, idx);
        match At::<F, D>::decode(raw) {
            Decoded::Table(next) if !At::<F, D>::LAST => {
                self.fault_at::<D::Next>(next, addr, bit, reserve, tf, exec)
            }
            Decoded::Leaf(pa)
                if !At::<F, D>::LAST
                    && raw & bit != 0
                    && !At::<F, D>::flags(raw).contains(MappingFlags::WRITE) =>
            {
                let child = self.split_leaf::<D>(p, idx, raw, pa, addr, reserve, tf, exec)?;
                self.fault_at::<D::Next>(child, addr, bit, reserve, tf, exec)
            }
            Decoded::Leaf(_) if raw & bit != 0 => {
                let Some(new) = Self::writable::<D>(raw) else {
                    return Ok(None);
                };
                if new != raw {
                    Self::write(p, idx, new);
                }
                // Written or not (another CPU's stale entry), the faulting
                // CPU may hold the stricter entry, unless the fault itself
                // dropped it (EPT). A split above still gets its batch.
                if !F::FLUSH.fault_invalidates {
                    tf.add_page(At::<F, D>::base(addr));
                }
                Ok(Some(true))
            }
            Decoded::Leaf(_) => Ok(Some(false)),
            _ => Ok(None),
        }
    }

    fn log_stop<D: Depth>(table: u64, start: usize, end: usize, bit: u64, tf: &mut TlbFlush<F>) {
        let p = Self::entries(table);
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = Self::read(p, idx);
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) if !At::<F, D>::LAST => {
                    Self::log_stop::<D::Next>(next, cur, ce, bit, tf)
                }
                Decoded::Leaf(_) if raw & bit != 0 => {
                    let new = Self::writable::<D>(raw).unwrap_or(raw) & !bit;
                    Self::write(p, idx, new);
                    // A stale read-only entry would fault, and the fault
                    // would no longer look like logging.
                    tf.add_page(At::<F, D>::base(cur));
                }
                _ => {}
            }
        }
    }
}

/// Which leaves a hardware test-and-clear looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Eligible {
    /// Leaves with write permission (a dirty bit on a read-only leaf
    /// cannot come from a write).
    Writable,
    /// Leaves carrying the writable-clean marker (Arm's DBM): logged
    /// writable leaves, clean or dirty.
    Marked,
    /// Every leaf.
    Any,
}

/// Dirty logging and access tracking by the CPU's own accessed and dirty
/// state, on formats whose spec has `hardware_dirty` (EPT with `ad`, AMD
/// NPT, RISC-V with Svadu, Arm with FEAT_HAFDBS): the CPU sets the accessed
/// bit of a leaf it uses, and marks a leaf it writes through dirty, either
/// by a dirty bit (x86, RISC-V) or, for a leaf npt made writable-clean
/// (Arm: DBM set, write permission removed), by granting the write
/// permission. npt test-and-clears that state with atomic read-modify-
/// writes (the CPU may set it at the same moment) and invalidates each leaf
/// it cleared, so the CPU marks it again on the next access instead of
/// trusting a cached translation. No write faults are involved. A huge leaf
/// only partly inside the range is reported (its part) but not cleared, so
/// nothing outside the range is lost.
impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// Whether the CPU tracks accessed and dirty state in this table's
    /// leaves (the format's `hardware_dirty`, enabled by this table's
    /// params).
    pub fn hardware_dirty(&self) -> bool {
        (F::LAYOUT.hw_dirty != 0 || F::LAYOUT.hw_clean != 0) && F::hardware_dirty(&self.params)
    }

    fn hw_bits(&self) -> Result<(), Error> {
        if self.hardware_dirty() {
            Ok(())
        } else {
            Err(Error::NoHardwareDirty)
        }
    }

    /// The bits that say a leaf was written: the dirty bit, or the write
    /// permission where the CPU grants it to writable-clean leaves.
    const DIRTY_STATE: u64 = if F::LAYOUT.hw_clean != 0 {
        F::LAYOUT.hw_write
    } else {
        F::LAYOUT.hw_dirty
    };

    /// Which leaves carry dirty state.
    const LOGGED: Eligible = if F::LAYOUT.hw_clean != 0 {
        Eligible::Marked
    } else {
        Eligible::Writable
    };

    /// Starts dirty logging by the CPU on `size` bytes at `gpa`: writable
    /// huge pages are split to the granule (as
    /// [`start_dirty_log_in`](Self::start_dirty_log_in) does, through
    /// `exec` where that is break-before-make), and every writable leaf is
    /// made clean: its dirty bit cleared, or (Arm) marked writable-clean,
    /// DBM set and write permission removed. Refused without change if the
    /// CPU tracks no dirty state here ([`Error::NoHardwareDirty`]) or the
    /// splits need frames the allocator lacks.
    pub fn start_hardware_dirty_log_in(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        self.hw_bits()?;
        let (start, end) = Self::range(gpa, size)?;
        let need = Self::log_split_need::<D0>(self.root, start, end, false);
        let mut reserve = self.reserve(need)?;
        let mut tf = self.batch();
        let split = self.log_split::<D0>(self.root, start, end, false, &mut reserve, &mut tf, exec);
        reserve.free_all(&Self::ops());
        split?;
        let (clean, write) = (F::LAYOUT.hw_clean, F::LAYOUT.hw_write);
        Self::hw_rewrite::<D0>(self.root, start, end, Eligible::Writable, &mut tf, &|raw| {
            if clean != 0 {
                (raw | clean) & !write
            } else {
                raw & !F::LAYOUT.hw_dirty
            }
        });
        Ok(tf)
    }

    /// Stops dirty logging by the CPU on `size` bytes at `gpa`: (Arm) every
    /// writable-clean leaf gets its write permission back and loses DBM,
    /// so `collapse_region_in` can rebuild huge pages; with a dirty bit
    /// there is nothing to undo (an empty batch).
    pub fn stop_hardware_dirty_log(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
    ) -> Result<TlbFlush<F>, Error> {
        self.hw_bits()?;
        let (start, end) = Self::range(gpa, size)?;
        let mut tf = self.batch();
        let (clean, write) = (F::LAYOUT.hw_clean, F::LAYOUT.hw_write);
        if clean != 0 {
            Self::hw_rewrite::<D0>(self.root, start, end, Eligible::Marked, &mut tf, &|raw| {
                (raw | write) & !clean
            });
        }
        Ok(tf)
    }

    /// Writes into `bitmap` which granule pages of `size` bytes at `gpa`
    /// the CPU has written since logging started or the last harvest (bit
    /// `i` of word `i / 64` for the page at `gpa + i * granule`), making
    /// them clean again; the batch invalidates the pages it cleaned. Pages
    /// mapped read-only are never reported.
    pub fn harvest_hardware_dirty(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        bitmap: &mut [u64],
    ) -> Result<TlbFlush<F>, Error> {
        self.hw_bits()?;
        self.test_and_clear_into(gpa, size, bitmap, Self::DIRTY_STATE, Self::LOGGED)
    }

    /// Writes into `bitmap` which granule pages of `size` bytes at `gpa`
    /// the CPU has used (read, written or fetched) since they were mapped
    /// or last cleared, and clears their accessed bits (Linux's
    /// `test_and_clear_young` over a range, for memory reclaim). The batch
    /// invalidates the leaves it cleared.
    pub fn test_and_clear_young(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        bitmap: &mut [u64],
    ) -> Result<TlbFlush<F>, Error> {
        self.hw_bits()?;
        self.test_and_clear_into(gpa, size, bitmap, F::LAYOUT.hw_accessed, Eligible::Any)
    }

    fn test_and_clear_into(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        bitmap: &mut [u64],
        mask: u64,
        which: Eligible,
    ) -> Result<TlbFlush<F>, Error> {
        let (start, end) = Self::range(gpa, size)?;
        let shift = F::LAYOUT.geometry.granule_shift;
        let pages = (end - start) >> shift;
        let words = pages.div_ceil(64);
        let Some(bitmap) = bitmap.get_mut(..words) else {
            return Err(Error::BitmapTooSmall { pages });
        };
        bitmap.iter_mut().for_each(|w| *w = 0);
        let mut tf = self.batch();
        Self::test_and_clear::<D0>(self.root, start, end, mask, which, &mut tf, &mut |a, b| {
            for i in (a - start) >> shift..(b - start) >> shift {
                if let Some(w) = bitmap.get_mut(i / 64) {
                    *w |= 1 << (i % 64);
                }
            }
        });
        Ok(tf)
    }

    #[inline(always)]
    fn eligible<D: Depth>(raw: u64, which: Eligible) -> bool {
        match which {
            Eligible::Writable => At::<F, D>::flags(raw).contains(MappingFlags::WRITE),
            Eligible::Marked => raw & F::LAYOUT.hw_clean != 0,
            Eligible::Any => true,
        }
    }

    /// Clears `mask` in the eligible leaves of `start..end` that have it,
    /// calling `hit(a, b)` for the part `a..b` of each leaf that had it. A
    /// leaf that reaches outside the range is reported and left as it is.
    fn test_and_clear<D: Depth>(
        table: u64,
        start: usize,
        end: usize,
        mask: u64,
        which: Eligible,
        tf: &mut TlbFlush<F>,
        hit: &mut impl FnMut(usize, usize),
    ) {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            // The hot loop: a clean entry costs one load and one test.
            let i0 = At::<F, D>::index(start);
            for k in 0..(end - start) >> At::<F, D>::SHIFT {
                let raw = Self::read(p, i0 + k);
                if raw & mask == 0
                    || !matches!(At::<F, D>::decode(raw), Decoded::Leaf(_))
                    || !Self::eligible::<D>(raw, which)
                {
                    continue;
                }
                if Self::fetch_and(p, i0 + k, !mask) & mask != 0 {
                    let page = start + (k << At::<F, D>::SHIFT);
                    hit(page, page + (1 << At::<F, D>::SHIFT));
                    tf.add_page(page);
                }
            }
            return;
        }
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = Self::read(p, idx);
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) if !At::<F, D>::LAST => {
                    Self::test_and_clear::<D::Next>(next, cur, ce, mask, which, tf, hit)
                }
                Decoded::Leaf(_) if raw & mask != 0 && Self::eligible::<D>(raw, which) => {
                    if !Self::whole::<D>(cur, ce) {
                        hit(cur, ce);
                        continue;
                    }
                    if Self::fetch_and(p, idx, !mask) & mask != 0 {
                        hit(cur, ce);
                        tf.add_page(At::<F, D>::base(cur));
                    }
                }
                _ => {}
            }
        }
    }

    /// Replaces every eligible leaf of `start..end` wholly inside it by
    /// `f(old)` (atomically), adding the changed ones to `tf`.
    fn hw_rewrite<D: Depth>(
        table: u64,
        start: usize,
        end: usize,
        which: Eligible,
        tf: &mut TlbFlush<F>,
        f: &impl Fn(u64) -> u64,
    ) {
        let p = Self::entries(table);
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = Self::read(p, idx);
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) if !At::<F, D>::LAST => {
                    Self::hw_rewrite::<D::Next>(next, cur, ce, which, tf, f)
                }
                Decoded::Leaf(_)
                    if Self::whole::<D>(cur, ce) && Self::eligible::<D>(raw, which) =>
                {
                    let old = Self::update(p, idx, f);
                    if f(old) != old {
                        tf.add_page(At::<F, D>::base(cur));
                    }
                }
                _ => {}
            }
        }
    }
}
