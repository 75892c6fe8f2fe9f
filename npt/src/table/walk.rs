//! Reading the tree: `query`, `for_each_leaf`, and freeing it on drop.

use super::level::{At, Depth, D0};
use super::{Leaf, NestedTable, Translation};
use crate::addr::GuestPhysAddr;
use crate::error::Error;
use crate::format::{Decoded, Format};
use memory_addr::PhysAddr;
use page_table_multiarch::PagingHandler;

impl<F: Format, H: PagingHandler> NestedTable<F, H> {
    /// Translates `gpa`.
    #[inline]
    pub fn query(&self, gpa: GuestPhysAddr) -> Result<Translation, Error> {
        let addr = gpa.as_usize();
        if addr as u128 >= F::LAYOUT.geometry.input_limit() {
            return Err(Error::GpaOutOfRange {
                gpa,
                input_bits: F::LAYOUT.geometry.input_bits,
            });
        }
        Self::query_at::<D0>(self.root, addr).ok_or(Error::NotMapped { gpa })
    }

    #[inline(always)]
    fn query_at<D: Depth>(table: u64, addr: usize) -> Option<Translation> {
        let raw = Self::read(Self::entries(table), At::<F, D>::index(addr));
        if !At::<F, D>::present(raw) {
            return None;
        }
        let pa = F::LAYOUT.address.decode(raw) as usize;
        if At::<F, D>::is_leaf(raw) {
            return Some(Translation {
                hpa: (pa + (addr & (At::<F, D>::SPAN - 1))).into(),
                flags: At::<F, D>::flags(raw),
                size: At::<F, D>::SPAN,
            });
        }
        if At::<F, D>::LAST || !F::LAYOUT.table.is.holds(raw) {
            return None;
        }
        Self::query_at::<D::Next>(pa as u64, addr)
    }

    /// Calls `f` for every leaf in address order.
    pub fn for_each_leaf(&self, mut f: impl FnMut(Leaf)) {
        Self::walk_rec::<D0>(self.root, 0, &mut f);
    }

    fn walk_rec<D: Depth>(table: u64, base: usize, f: &mut impl FnMut(Leaf)) {
        let p = Self::entries(table);
        for idx in 0..At::<F, D>::ENTRIES {
            let raw = Self::read(p, idx);
            let gpa = base + (idx << At::<F, D>::SHIFT);
            match At::<F, D>::decode(raw) {
                Decoded::Table(next) => Self::walk_rec::<D::Next>(next, gpa, f),
                Decoded::Leaf(pa) => f(Leaf {
                    gpa: gpa.into(),
                    hpa: (pa as usize).into(),
                    size: At::<F, D>::SPAN,
                    level: D::N,
                    raw,
                    flags: At::<F, D>::flags(raw),
                }),
                Decoded::Invalid | Decoded::Reserved => {}
            }
        }
    }

    /// Frees every table below `table` (depth `D`), not `table` itself.
    pub(crate) fn free_below<D: Depth>(table: u64) {
        if At::<F, D>::LAST {
            return;
        }
        let p = Self::entries(table);
        for idx in 0..At::<F, D>::ENTRIES {
            if let Decoded::Table(next) = At::<F, D>::decode(Self::read(p, idx)) {
                Self::free_below::<D::Next>(next);
                H::dealloc_frames(PhysAddr::from(next as usize), Self::frames(1));
            }
        }
    }
}
