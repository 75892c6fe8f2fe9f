//! Collapse, the opt-in inverse of a split: a table whose every entry is a
//! leaf, together mapping one contiguous, block-aligned run with the same
//! attributes, becomes one leaf of the level above (KVM's huge-page
//! recovery after dirty logging). On formats that split by
//! break-before-make (Arm) the table entry is made invalid, the context
//! invalidated through the executor, then the block written; elsewhere the
//! table is replaced in place and invalidated with the batch. The table is
//! freed after the batch's invalidation either way.

use super::level::{At, Depth, D0};
use super::NestedTable;
use crate::addr::GuestPhysAddr;
use crate::error::Error;
use crate::flush::{FlushExecutor, TlbFlush};
use crate::format::{Decoded, Format};
use page_table_multiarch::PagingHandler;

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// Rebuilds huge pages in `size` bytes at `gpa` wherever a whole table
    /// maps what one leaf could, innermost first (so 512 × 512 4 KiB pages
    /// can become one 1 GiB page). Holes and ranges that do not qualify are
    /// left alone; the batch invalidates what changed.
    pub fn collapse_region_in(
        &mut self,
        gpa: GuestPhysAddr,
        size: usize,
        exec: &mut impl FlushExecutor,
    ) -> Result<TlbFlush<F>, Error> {
        let (start, end) = Self::range(gpa, size)?;
        let mut tf = self.batch();
        self.collapse_rec::<D0>(self.root, start, end, &mut tf, exec)?;
        Ok(tf)
    }

    fn collapse_rec<D: Depth>(
        &mut self,
        table: u64,
        start: usize,
        end: usize,
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
            if let Decoded::Table(next) = At::<F, D>::decode(raw) {
                self.collapse_rec::<D::Next>(next, cur, ce, tf, exec)?;
                let whole = ce - cur == At::<F, D>::SPAN;
                if let Some(block) = Self::collapsible::<D>(next).filter(|_| whole) {
                    let pages = At::<F, D>::SPAN >> F::LAYOUT.geometry.granule_shift;
                    if F::FLUSH.split_break_before_make {
                        // The table's leaves and walk-cache entries go
                        // with one context invalidation.
                        let ctx = *tf.context();
                        Self::break_before_make::<D>(p, idx, raw, block, cur, || {
                            crate::flush::run_context(&F::FLUSH.context, &ctx, exec)
                        })?;
                    } else {
                        Self::write(p, idx, block);
                        tf.add_unlinked(cur, pages);
                    }
                    self.tables -= 1;
                    tf.free_later(next);
                }
            }
        }
        Ok(())
    }

    /// The leaf at depth `D` that maps what the table `child` (depth
    /// `D + 1`) maps, if its entries map one contiguous, aligned run with
    /// the same attributes. Bits outside the attributes and the address
    /// (accessed and dirty bits the walker sets) are combined: the block
    /// is accessed or dirty if any page was.
    fn collapsible<D: Depth>(child: u64) -> Option<u64> {
        if !At::<F, D>::LEAF {
            return None;
        }
        let lay = &F::LAYOUT;
        let a = &lay.address;
        let p = Self::entries(child);
        let first = Self::read(p, 0);
        if !(At::<F, D::Next>::present(first) && At::<F, D::Next>::is_leaf(first)) {
            return None;
        }
        let pa = a.decode(first);
        if pa & (At::<F, D>::SPAN as u64 - 1) != 0 {
            return None;
        }
        let same = lay.attr_mask | At::<F, D::Next>::LEAF_SET;
        let attrs = first & same;
        let step = ((At::<F, D::Next>::SPAN as u64) >> a.pa_shift) << a.lo;
        let mut enc = a.encode(pa);
        let mut status = 0;
        for k in 0..At::<F, D::Next>::ENTRIES {
            let raw = Self::read(p, k);
            if raw & same != attrs || raw & a.mask() != enc || raw & lay.log_bit != 0 {
                return None;
            }
            status |= raw & !same & !a.mask();
            enc = enc.wrapping_add(step);
        }
        let attrs = attrs & !At::<F, D::Next>::LEAF_SET;
        Some(attrs | status | At::<F, D>::LEAF_SET | a.encode(pa))
    }
}
