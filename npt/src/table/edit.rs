//! `unmap`, `protect` and `remap` of mapped ranges: a check pass (every
//! page mapped, no change a live leaf may not take, the tables splitting
//! partial huge pages counted), then splits at the range's two ends, then
//! one pass that rewrites or clears, freeing every table it empties.

use super::level::{At, Depth};
use super::NestedTable;
use crate::error::Error;
use crate::flush::{FlushExecutor, Scope, TlbFlush};
use crate::format::{Decoded, Format};
use crate::frames::FrameList;
use page_table_multiarch::PagingHandler;

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// The leaf `raw` rewritten with attribute bits `attrs`.
    #[inline(always)]
    pub(crate) fn with_attrs(raw: u64, attrs: u64) -> u64 {
        (raw & !F::LAYOUT.attr_mask) | attrs
    }

    /// What `protect` writes: the new attributes, and no dirty-logging
    /// mark (a page the caller protects is the caller's again).
    #[inline(always)]
    fn protect_value(raw: u64, attrs: u64) -> u64 {
        Self::with_attrs(raw, attrs) & !F::LAYOUT.log_bit
    }

    /// Fails unless every page of `start..end` is mapped; with `attrs`,
    /// also where rewriting a leaf would change bits that only
    /// break-before-make may change. Returns the tables splitting the huge
    /// pages the range covers partly would take.
    pub(crate) fn check_mapped<D: Depth>(
        table: u64,
        start: usize,
        end: usize,
        attrs: Option<u64>,
    ) -> Result<usize, Error> {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            let i0 = At::<F, D>::index(start);
            let n = (end - start) >> At::<F, D>::SHIFT;
            for k in 0..n {
                let raw = Self::read(p, i0 + k);
                let gpa = start + (k << At::<F, D>::SHIFT);
                if !(At::<F, D>::present(raw) && At::<F, D>::is_leaf(raw)) {
                    return Err(Error::NotMapped { gpa: gpa.into() });
                }
                Self::check_bbm::<D>(raw, attrs, gpa)?;
            }
            return Ok(0);
        }
        let mut need = 0;
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let raw = Self::read(p, At::<F, D>::index(cur));
            match At::<F, D>::decode(raw) {
                Decoded::Invalid | Decoded::Reserved => {
                    return Err(Error::NotMapped { gpa: cur.into() })
                }
                Decoded::Table(next) => {
                    need += Self::check_mapped::<D::Next>(next, cur, ce, attrs)?
                }
                Decoded::Leaf(_) => {
                    let base = At::<F, D>::base(cur);
                    Self::check_bbm::<D>(raw, attrs, base)?;
                    let whole = cur == base && ce - cur == At::<F, D>::SPAN;
                    let unchanged = attrs.is_some_and(|a| Self::with_attrs(raw, a) == raw);
                    if !whole && !unchanged {
                        need += Self::split_need::<D>(cur, ce)?;
                    }
                }
            }
        }
        Ok(need)
    }

    #[inline(always)]
    fn check_bbm<D: Depth>(raw: u64, attrs: Option<u64>, base: usize) -> Result<(), Error> {
        match attrs {
            Some(a) if (raw ^ Self::with_attrs(raw, a)) & F::LAYOUT.bbm_mask != 0 => {
                Err(Error::BreakBeforeMake {
                    gpa: base.into(),
                    size: At::<F, D>::SPAN,
                })
            }
            _ => Ok(()),
        }
    }

    /// Tables needed to split the leaf at depth `D` holding `cur..ce` (part
    /// of it) until the range's ends fall on leaf boundaries.
    fn split_need<D: Depth>(cur: usize, ce: usize) -> Result<usize, Error> {
        if At::<F, D>::LAST || !At::<F, D::Next>::LEAF {
            return Err(Error::SplitsHugePage {
                gpa: At::<F, D>::base(cur).into(),
                size: At::<F, D>::SPAN,
            });
        }
        let mut need = 1;
        // Only the chunks at the two ends can be partial.
        let first_end = At::<F, D::Next>::chunk_end(cur, ce);
        if first_end - cur != At::<F, D::Next>::SPAN || cur & (At::<F, D::Next>::SPAN - 1) != 0 {
            need += Self::split_need::<D::Next>(cur, first_end)?;
        }
        let last = At::<F, D::Next>::base(ce - 1).max(first_end);
        if last < ce && ce - last != At::<F, D::Next>::SPAN {
            need += Self::split_need::<D::Next>(last, ce)?;
        }
        Ok(need)
    }

    /// Splits leaves at depth `D` or below whose span strictly contains the
    /// address `at`, so that a leaf boundary falls on it. With `attrs`, a
    /// leaf those attributes would not change is left whole.
    pub(crate) fn split_at<D: Depth>(
        &mut self,
        table: u64,
        at: usize,
        attrs: Option<u64>,
        reserve: &mut FrameList,
        tf: &mut TlbFlush<F>,
        exec: &mut impl FlushExecutor,
    ) -> Result<(), Error> {
        if At::<F, D>::LAST {
            return Ok(());
        }
        let p = Self::entries(table);
        let idx = At::<F, D>::index(at);
        let raw = Self::read(p, idx);
        match At::<F, D>::decode(raw) {
            Decoded::Table(next) => self.split_at::<D::Next>(next, at, attrs, reserve, tf, exec),
            Decoded::Leaf(pa) if at & (At::<F, D>::SPAN - 1) != 0 => {
                if attrs.is_some_and(|a| Self::with_attrs(raw, a) == raw) {
                    return Ok(());
                }
                let base = At::<F, D>::base(at);
                let child = reserve.pop(&Self::ops()).ok_or(Error::NoMemory)?;
                Self::fill_split::<D>(child, raw, pa);
                let desc = F::LAYOUT.table(child);
                if F::FLUSH.split_break_before_make {
                    let ctx = *tf.context();
                    let ran = Self::break_before_make::<D>(p, idx, raw, desc, base, || {
                        crate::flush::run_page(&F::FLUSH.page, &ctx, base, exec)
                    });
                    if let Err(e) = ran {
                        reserve.push(&Self::ops(), child);
                        return Err(e);
                    }
                } else {
                    // Replace, then invalidate the old leaf with the batch.
                    Self::write(p, idx, desc);
                    tf.add_page(base);
                }
                self.tables += 1;
                self.split_at::<D::Next>(child, at, attrs, reserve, tf, exec)
            }
            _ => Ok(()),
        }
    }

    /// Replaces the live entry `old` at `p[idx]` (depth `D`, mapping from
    /// `gpa`) by `new` the Arm way: invalid entry, the invalidation
    /// `invalidate` runs now, then `new`. If the invalidation fails, `old`
    /// is put back and nothing changed.
    pub(crate) fn break_before_make<D: Depth>(
        p: *mut u64,
        idx: usize,
        old: u64,
        new: u64,
        gpa: usize,
        invalidate: impl FnOnce() -> Result<(), crate::error::FlushError>,
    ) -> Result<(), Error> {
        Self::write(p, idx, 0);
        if invalidate().is_err() {
            Self::write(p, idx, old);
            return Err(Error::SplitInvalidation {
                gpa: gpa.into(),
                size: At::<F, D>::SPAN,
            });
        }
        Self::write(p, idx, new);
        Ok(())
    }

    /// Fills `child` (a table at depth `D + 1`) with leaves mapping what the
    /// leaf `raw` at depth `D` mapped, with the same attributes.
    fn fill_split<D: Depth>(child: u64, raw: u64, pa: u64) {
        let a = &F::LAYOUT.address;
        let keep = raw & !a.mask() & !At::<F, D>::LEAF_SET;
        let template = keep | At::<F, D::Next>::LEAF_SET;
        let step = ((At::<F, D::Next>::SPAN as u64) >> a.pa_shift) << a.lo;
        let mut enc = a.encode(pa);
        let p = Self::entries(child);
        for k in 0..At::<F, D::Next>::ENTRIES {
            Self::write(p, k, template | enc);
            enc = enc.wrapping_add(step);
        }
    }

    /// Clears every leaf of `start..end` (checked mapped, ends on leaf
    /// boundaries), unlinking every table that ends up empty.
    pub(crate) fn unmap_rec<D: Depth>(
        &mut self,
        table: u64,
        start: usize,
        end: usize,
        tf: &mut TlbFlush<F>,
    ) {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            let i0 = At::<F, D>::index(start);
            let n = (end - start) >> At::<F, D>::SHIFT;
            for k in 0..n {
                Self::write(p, i0 + k, 0);
            }
            tf.add_pages(start, n);
            return;
        }
        let pages_per_entry = At::<F, D>::SPAN >> F::LAYOUT.geometry.granule_shift;
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            match At::<F, D>::decode(Self::read(p, idx)) {
                Decoded::Leaf(_) => {
                    Self::write(p, idx, 0);
                    tf.add_page(cur);
                }
                Decoded::Table(next) if ce - cur == At::<F, D>::SPAN => {
                    // The whole subtree goes: unlink it as it is, free it
                    // after the invalidation of everything it mapped.
                    Self::write(p, idx, 0);
                    self.free_tree_later::<D::Next>(next, tf);
                    tf.add_unlinked(cur, pages_per_entry);
                }
                Decoded::Table(next) => {
                    self.unmap_rec::<D::Next>(next, cur, ce, tf);
                    if Self::is_empty::<D::Next>(next) {
                        Self::write(p, idx, 0);
                        self.tables -= 1;
                        tf.free_later(next);
                        tf.add_unlinked(At::<F, D>::base(cur), 1);
                    }
                }
                Decoded::Invalid | Decoded::Reserved => {}
            }
        }
    }

    /// Hands `table` (depth `D`, unlinked) and every table below it to the
    /// batch.
    fn free_tree_later<D: Depth>(&mut self, table: u64, tf: &mut TlbFlush<F>) {
        if !At::<F, D>::LAST {
            let p = Self::entries(table);
            for idx in 0..At::<F, D>::ENTRIES {
                if let Decoded::Table(next) = At::<F, D>::decode(Self::read(p, idx)) {
                    self.free_tree_later::<D::Next>(next, tf);
                }
            }
        }
        self.tables -= 1;
        tf.free_later(table);
    }

    /// Whether no entry of `table` (depth `D`) is present.
    fn is_empty<D: Depth>(table: u64) -> bool {
        let p = Self::entries(table);
        (0..At::<F, D>::ENTRIES).all(|i| !At::<F, D>::present(Self::read(p, i)))
    }

    /// Rewrites every leaf of `start..end` (checked mapped, ends on leaf
    /// boundaries where a leaf changes) with `attrs`.
    pub(crate) fn protect_rec<D: Depth>(
        table: u64,
        start: usize,
        end: usize,
        attrs: u64,
        tf: &mut TlbFlush<F>,
    ) {
        let p = Self::entries(table);
        if At::<F, D>::LAST {
            let i0 = At::<F, D>::index(start);
            let n = (end - start) >> At::<F, D>::SHIFT;
            // Changed pages are recorded as runs, once a batch is not
            // already context-wide.
            let track = tf.scope() != Scope::Context;
            let (mut run, mut len) = (start, 0);
            for k in 0..n {
                let raw = Self::read(p, i0 + k);
                let new = Self::protect_value(raw, attrs);
                if new != raw {
                    Self::write(p, i0 + k, new);
                    if track {
                        let gpa = start + (k << At::<F, D>::SHIFT);
                        if len > 0 && run + (len << At::<F, D>::SHIFT) != gpa {
                            tf.add_pages(run, len);
                            len = 0;
                        }
                        if len == 0 {
                            run = gpa;
                        }
                        len += 1;
                    }
                }
            }
            tf.add_pages(run, len);
            return;
        }
        for (cur, ce) in At::<F, D>::chunks(start, end) {
            let idx = At::<F, D>::index(cur);
            let raw = Self::read(p, idx);
            match At::<F, D>::decode(raw) {
                Decoded::Leaf(_) => {
                    let new = Self::protect_value(raw, attrs);
                    if new != raw {
                        Self::write(p, idx, new);
                        tf.add_page(At::<F, D>::base(cur));
                    }
                }
                Decoded::Table(next) => Self::protect_rec::<D::Next>(next, cur, ce, attrs, tf),
                Decoded::Invalid | Decoded::Reserved => {}
            }
        }
    }
}
