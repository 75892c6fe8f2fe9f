//! `map`: plan, reserve, fill. The plan pass reads only tables that exist
//! (checking each existing entry once, a leaf table by a tight loop) and
//! counts the tables the mapping needs; the frames are then reserved all at
//! once; the fill pass cannot fail and writes each new leaf table from a
//! template in a tight loop. A refused map therefore changes nothing and
//! allocates nothing that outlives it.

use super::level::{At, Depth};
use super::NestedTable;
use crate::addr::{GuestPhysAddr, HostPhysAddr};
use crate::error::Error;
use crate::flush::TlbFlush;
use crate::format::{Decoded, Format};
use crate::frames::FrameList;
use core::cell::Cell;
use page_table_multiarch::PagingHandler;

/// Where each guest page's host frame is.
pub(crate) trait Target {
    /// Host addresses follow guest addresses linearly (checked once, up
    /// front, for the whole range).
    const LINEAR: bool;
    /// The host address for `gpa`.
    fn hpa(&self, gpa: usize) -> usize;
}

/// `hpa + (gpa - gpa0)`.
pub(crate) struct Linear {
    pub gpa: usize,
    pub hpa: usize,
}

impl Target for Linear {
    const LINEAR: bool = true;
    #[inline(always)]
    fn hpa(&self, gpa: usize) -> usize {
        // In range: checked before the walk.
        self.hpa.wrapping_add(gpa.wrapping_sub(self.gpa))
    }
}

/// A caller's function, asked for every leaf (alloc-backed guest memory).
pub(crate) struct Scattered<G>(pub G);

impl<G: Fn(GuestPhysAddr) -> HostPhysAddr> Target for Scattered<G> {
    const LINEAR: bool = false;
    #[inline(always)]
    fn hpa(&self, gpa: usize) -> usize {
        (self.0)(GuestPhysAddr::from(gpa)).as_usize()
    }
}

pub(crate) struct Job<T> {
    pub target: T,
    pub attrs: u64,
    /// Leaves above the last level where alignment allows.
    pub huge: bool,
    /// Leaves only at this depth (single-page `map`).
    pub only: Option<usize>,
    pub output_bits: u32,
    /// Where a scattered target gave another answer in the fill pass than
    /// in the plan pass.
    pub unstable: Cell<Option<usize>>,
}

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// The host address of a leaf at depth `D` mapping `cur..chunk_end`, if
    /// one does; an error where the host address can serve no leaf at all.
    #[inline(always)]
    fn fits<D: Depth, T: Target>(
        job: &Job<T>,
        cur: usize,
        chunk_end: usize,
    ) -> Result<Option<usize>, Error> {
        if !At::<F, D>::LEAF {
            return Ok(None);
        }
        match job.only {
            Some(n) if n != D::N => return Ok(None),
            None if !At::<F, D>::LAST && !job.huge => return Ok(None),
            _ => {}
        }
        let span = At::<F, D>::SPAN;
        if cur & (span - 1) != 0 || chunk_end.wrapping_sub(cur) != span {
            return Ok(None);
        }
        let hpa = job.target.hpa(cur);
        if T::LINEAR && (At::<F, D>::LAST || job.only.is_some()) {
            // Alignment and range of the whole run checked up front.
            return Ok(Some(hpa));
        }
        let must = At::<F, D>::LAST || job.only.is_some();
        if hpa & (span - 1) != 0 {
            return if must {
                Err(Error::MisalignedHpa {
                    hpa: hpa.into(),
                    align: span,
                })
            } else {
                Ok(None)
            };
        }
        if !T::LINEAR && hpa as u128 + span as u128 > 1u128 << job.output_bits {
            return Err(Error::HpaOutOfRange {
                hpa: hpa.into(),
                output_bits: job.output_bits,
            });
        }
        Ok(Some(hpa))
    }

    /// Checks `start..end` in the existing table `table` (depth `D`) and
    /// returns how many tables mapping it needs.
    pub(crate) fn plan<D: Depth, T: Target>(
        table: u64,
        start: usize,
        end: usize,
        job: &Job<T>,
    ) -> Result<usize, Error> {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            let i0 = At::<F, D>::index(start);
            let n = (end - start) >> At::<F, D>::SHIFT;
            for k in 0..n {
                if At::<F, D>::present(Self::read(p, i0 + k)) {
                    let gpa = start + (k << At::<F, D>::SHIFT);
                    return Err(Error::AlreadyMapped { gpa: gpa.into() });
                }
            }
            Self::check_pages::<D, T>(start, end, job)?;
            return Ok(0);
        }
        let mut need = 0;
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let raw = Self::read(p, At::<F, D>::index(cur));
            let fits = Self::fits::<D, T>(job, cur, ce)?.is_some();
            match At::<F, D>::decode(raw) {
                Decoded::Invalid if fits => {}
                Decoded::Invalid => need += 1 + Self::plan_fresh::<D::Next, T>(cur, ce, job)?,
                // An existing table is descended into, never replaced by a
                // block; a single huge page cannot go where a table is.
                Decoded::Table(next) if !(fits && job.only.is_some()) => {
                    need += Self::plan::<D::Next, T>(next, cur, ce, job)?
                }
                _ => return Err(Error::AlreadyMapped { gpa: cur.into() }),
            }
        }
        Ok(need)
    }

    /// How many tables below a new table at depth `D` mapping `start..end`
    /// needs (the new table itself not counted).
    fn plan_fresh<D: Depth, T: Target>(
        start: usize,
        end: usize,
        job: &Job<T>,
    ) -> Result<usize, Error> {
        if At::<F, D>::LAST {
            Self::check_pages::<D, T>(start, end, job)?;
            return Ok(0);
        }
        let mut need = 0;
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            if Self::fits::<D, T>(job, cur, ce)?.is_none() {
                need += 1 + Self::plan_fresh::<D::Next, T>(cur, ce, job)?;
            }
        }
        Ok(need)
    }

    /// Checks the host address of every last-level page of `start..end`
    /// (a linear target was checked up front).
    #[inline(always)]
    fn check_pages<D: Depth, T: Target>(
        start: usize,
        end: usize,
        job: &Job<T>,
    ) -> Result<(), Error> {
        if !T::LINEAR {
            let mut cur = start;
            while cur < end {
                let next = cur + At::<F, D>::SPAN;
                Self::fits::<D, T>(job, cur, next)?;
                cur = next;
            }
        }
        Ok(())
    }

    /// Writes the leaves and tables the plan counted. `fresh`: `table` was
    /// just taken from the reserve (all invalid, unreachable by hardware).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill<D: Depth, T: Target>(
        &mut self,
        table: u64,
        start: usize,
        end: usize,
        job: &Job<T>,
        reserve: &mut FrameList,
        tf: &mut TlbFlush<F>,
        fresh: bool,
    ) {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            Self::write_leaves::<D, T>(p, start, end, job);
            if !fresh && F::FLUSH.invalidate_on_map {
                tf.add_pages(start, (end - start) >> At::<F, D>::SHIFT);
            }
            return;
        }
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = if fresh { 0 } else { Self::read(p, idx) };
            match Self::fits::<D, T>(job, cur, ce) {
                Ok(Some(hpa)) => {
                    Self::write(p, idx, Self::leaf::<D>(hpa as u64, job.attrs));
                    if !fresh && F::FLUSH.invalidate_on_map {
                        tf.add_page(cur);
                    }
                }
                Ok(None) => match At::<F, D>::decode(raw) {
                    Decoded::Table(next) => {
                        self.fill::<D::Next, T>(next, cur, ce, job, reserve, tf, false)
                    }
                    _ => match reserve.pop(&Self::ops()) {
                        Some(next) => {
                            self.fill::<D::Next, T>(next, cur, ce, job, reserve, tf, true);
                            // Linked once filled: a walker never sees it half-built.
                            Self::write(p, idx, F::LAYOUT.table(next));
                            self.tables += 1;
                            if !fresh && F::FLUSH.invalidate_on_map {
                                tf.add_context();
                            }
                        }
                        None => Self::unstable(job, cur),
                    },
                },
                Err(_) => Self::unstable(job, cur),
            }
        }
    }

    #[cold]
    fn unstable<T>(job: &Job<T>, gpa: usize) {
        if job.unstable.get().is_none() {
            job.unstable.set(Some(gpa));
        }
    }

    /// A leaf at depth `D` mapping `hpa`.
    #[inline(always)]
    pub(crate) fn leaf<D: Depth>(hpa: u64, attrs: u64) -> u64 {
        attrs | At::<F, D>::LEAF_SET | F::LAYOUT.address.encode(hpa)
    }

    /// Fills entries of a last-level table: a template ORed with an
    /// address that steps by one page.
    #[inline(always)]
    fn write_leaves<D: Depth, T: Target>(p: *mut u64, start: usize, end: usize, job: &Job<T>) {
        let i0 = At::<F, D>::index(start);
        let n = (end - start) >> At::<F, D>::SHIFT;
        let template = job.attrs | At::<F, D>::LEAF_SET;
        if T::LINEAR {
            let a = &F::LAYOUT.address;
            let step = ((At::<F, D>::SPAN as u64) >> a.pa_shift) << a.lo;
            // The address field holds every output bit (checked when the
            // table is made), so the encoding of consecutive pages steps
            // by the encoding of one page.
            let mut enc = a.encode(job.target.hpa(start) as u64);
            for k in 0..n {
                Self::write(p, i0 + k, template | enc);
                enc = enc.wrapping_add(step);
            }
        } else {
            for k in 0..n {
                let gpa = start + (k << At::<F, D>::SHIFT);
                let next = gpa + At::<F, D>::SPAN;
                match Self::fits::<D, T>(job, gpa, next) {
                    Ok(Some(hpa)) => {
                        let enc = F::LAYOUT.address.encode(hpa as u64);
                        Self::write(p, i0 + k, template | enc);
                    }
                    _ => Self::unstable(job, gpa),
                }
            }
        }
    }
}

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// Maps one leaf at depth `level`: one walk down the existing tables;
    /// where one is missing, the chain below is built off-line and linked
    /// by a single write, so a failed allocation leaves nothing behind.
    #[inline(always)]
    pub(crate) fn map_one<D: Depth>(
        &mut self,
        table: u64,
        gpa: usize,
        hpa: u64,
        attrs: u64,
        level: usize,
    ) -> Result<TlbFlush<F>, Error> {
        let p = Self::entries(table);
        let idx = At::<F, D>::index(gpa);
        let raw = Self::read(p, idx);
        if D::N == level {
            if At::<F, D>::present(raw) {
                return Err(Error::AlreadyMapped { gpa: gpa.into() });
            }
            Self::write(p, idx, Self::leaf::<D>(hpa, attrs));
            let mut tf = self.batch();
            if F::FLUSH.invalidate_on_map {
                tf.add_page(gpa);
            }
            return Ok(tf);
        }
        match At::<F, D>::decode(raw) {
            Decoded::Table(next) if !At::<F, D>::LAST => {
                self.map_one::<D::Next>(next, gpa, hpa, attrs, level)
            }
            Decoded::Invalid if !At::<F, D>::LAST => {
                let top = self.build_chain::<D::Next>(gpa, hpa, attrs, level)?;
                Self::write(p, idx, F::LAYOUT.table(top));
                let mut tf = self.batch();
                if F::FLUSH.invalidate_on_map {
                    tf.add_context();
                }
                Ok(tf)
            }
            _ => Err(Error::AlreadyMapped { gpa: gpa.into() }),
        }
    }

    /// A new table at depth `D` and the tables below it down to the leaf
    /// at depth `level`, not yet linked: freed again if an allocation fails.
    fn build_chain<D: Depth>(
        &mut self,
        gpa: usize,
        hpa: u64,
        attrs: u64,
        level: usize,
    ) -> Result<u64, Error> {
        let table = Self::alloc(1, F::LAYOUT.geometry.granule(), self.output_bits)?;
        let p = Self::entries(table);
        let idx = At::<F, D>::index(gpa);
        if D::N >= level || At::<F, D>::LAST {
            Self::write(p, idx, Self::leaf::<D>(hpa, attrs));
        } else {
            match self.build_chain::<D::Next>(gpa, hpa, attrs, level) {
                Ok(next) => Self::write(p, idx, F::LAYOUT.table(next)),
                Err(e) => {
                    H::dealloc_frames(HostPhysAddr::from(table as usize), Self::frames(1));
                    return Err(e);
                }
            }
        }
        self.tables += 1;
        Ok(table)
    }
}
