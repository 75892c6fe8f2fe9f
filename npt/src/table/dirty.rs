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
    /// still hold) and resume the guest.
    Logged(TlbFlush<F>),
    /// The leaf is not write-protected by logging: a real permission fault
    /// for the hypervisor to handle.
    NotLogged,
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
        let bit = Self::log_bit()?;
        let (start, end) = Self::range(gpa, size)?;
        let need = Self::log_split_need::<D0>(self.root, start, end);
        let mut reserve = self.reserve(need)?;
        let mut tf = self.batch();
        let split = self.log_split::<D0>(self.root, start, end, &mut reserve, &mut tf, exec);
        reserve.free_all(&Self::ops());
        split?;
        Self::log_rewrite::<D0>(self.root, start, end, bit, &mut tf, &mut |_| {});
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
        Self::log_rewrite::<D0>(self.root, start, end, bit, &mut tf, &mut |page| {
            let i = (page - start) >> shift;
            if let Some(w) = bitmap.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        });
        Ok(tf)
    }

    /// Handles a write fault at `gpa`: a logging fault makes the page
    /// writable and dirty; anything else is the hypervisor's.
    pub fn handle_write_fault(&mut self, gpa: GuestPhysAddr) -> Result<WriteFault<F>, Error> {
        let bit = Self::log_bit()?;
        let addr = gpa.as_usize();
        if addr as u128 >= F::LAYOUT.geometry.input_limit() {
            return Err(Error::GpaOutOfRange {
                gpa,
                input_bits: F::LAYOUT.geometry.input_bits,
            });
        }
        let mut tf = self.batch();
        match Self::fault_at::<D0>(self.root, addr, bit, &mut tf) {
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
    /// the granule take.
    fn log_split_need<D: Depth>(table: u64, start: usize, end: usize) -> usize {
        if At::<F, D>::LAST {
            return 0;
        }
        let p = Self::entries(table);
        let mut need = 0;
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let raw = Self::read(p, At::<F, D>::index(cur));
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) => need += Self::log_split_need::<D::Next>(next, cur, ce),
                Decoded::Leaf(_) if At::<F, D>::flags(raw).contains(MappingFlags::WRITE) => {
                    need += Self::subtree_tables::<D::Next>()
                }
                _ => {}
            }
        }
        need
    }

    /// Tables in a full subtree whose top table is at depth `D`.
    fn subtree_tables<D: Depth>() -> usize {
        if At::<F, D>::LAST {
            1
        } else {
            1 + At::<F, D>::ENTRIES * Self::subtree_tables::<D::Next>()
        }
    }

    fn log_split<D: Depth>(
        &mut self,
        table: u64,
        start: usize,
        end: usize,
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
                    self.log_split::<D::Next>(next, cur, ce, reserve, tf, exec)?
                }
                Decoded::Leaf(pa) if At::<F, D>::flags(raw).contains(MappingFlags::WRITE) => {
                    let base = At::<F, D>::base(cur);
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
                }
                _ => {}
            }
        }
        Ok(())
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
    fn log_rewrite<D: Depth>(
        table: u64,
        start: usize,
        end: usize,
        bit: u64,
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
            if let Decoded::Table(next) = At::<F, D>::decode(Self::read(p, At::<F, D>::index(cur)))
            {
                Self::log_rewrite::<D::Next>(next, cur, ce, bit, tf, dirty);
            }
        }
    }

    /// The fault at `addr`: `Some(true)` a logging fault (fixed), `Some(false)`
    /// not one, `None` no leaf.
    fn fault_at<D: Depth>(table: u64, addr: usize, bit: u64, tf: &mut TlbFlush<F>) -> Option<bool> {
        let p = Self::entries(table);
        let idx = At::<F, D>::index(addr);
        let raw = Self::read(p, idx);
        match At::<F, D>::decode(raw) {
            Decoded::Table(next) if !At::<F, D>::LAST => {
                Self::fault_at::<D::Next>(next, addr, bit, tf)
            }
            Decoded::Leaf(_) if raw & bit != 0 => {
                let new = Self::writable::<D>(raw)?;
                if new != raw {
                    Self::write(p, idx, new);
                }
                // Written or not (another CPU's stale entry), the faulting
                // CPU may hold the stricter entry.
                tf.add_page(At::<F, D>::base(addr));
                Some(true)
            }
            Decoded::Leaf(_) => Some(false),
            _ => None,
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
