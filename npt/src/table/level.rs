//! Levels as types: the engine's walks are generic over a [`Depth`], so
//! every per-level fact (shift, entry count, whether it holds leaves, how
//! its descriptors decode) is a constant of the monomorphised code, folded
//! into masks and shifts, never looked up at run time.

use crate::format::{Decoded, FlagsTable, Format, Layout, Level};
use core::marker::PhantomData;

/// A depth in the walk, root = 0. `Next` is the depth below (the deepest
/// names itself; the walks stop at a format's last level before it).
pub(crate) trait Depth {
    const N: usize;
    type Next: Depth;
}

macro_rules! depths {
    ($($d:ident = $n:literal -> $next:ident;)*) => {$(
        pub(crate) enum $d {}
        impl Depth for $d {
            const N: usize = $n;
            type Next = $next;
        }
    )*};
}

// Six levels: the deepest walks the manuals define (x86 5-level EPT, Arm
// with FEAT_LPA2 starting at level -1, RISC-V Sv57x4) have five.
depths! {
    D0 = 0 -> D1;
    D1 = 1 -> D2;
    D2 = 2 -> D3;
    D3 = 3 -> D4;
    D4 = 4 -> D5;
    D5 = 5 -> D5;
}

/// The deepest walk the engine handles.
pub(crate) const MAX_LEVELS: usize = 6;

const PAST_THE_END: Level = Level {
    name: "",
    number: 0,
    shift: 12,
    index_bits: 9,
    leaf: false,
};

// Const evaluation: an index out of range is a compile error, never a
// run-time panic.
#[allow(clippy::indexing_slicing)]
const fn level_at(levels: &[Level], n: usize) -> Level {
    if n < levels.len() {
        levels[n]
    } else {
        PAST_THE_END
    }
}

/// Format `F`'s flags table, built at compile time.
pub(crate) struct FlagsOf<F>(PhantomData<F>);

impl<F: Format> FlagsOf<F> {
    pub const TABLE: &'static FlagsTable = &FlagsTable::build(&F::LAYOUT);
}

/// Level `D` of format `F`, as constants.
pub(crate) struct At<F, D>(PhantomData<(F, D)>);

impl<F: Format, D: Depth> At<F, D> {
    const LAY: &'static Layout = &F::LAYOUT;
    const LEVEL: Level = level_at(F::LAYOUT.geometry.levels, D::N);
    /// The lowest input bit this level indexes.
    pub const SHIFT: u32 = Self::LEVEL.shift;
    /// Bytes one entry spans.
    pub const SPAN: usize = 1 << Self::SHIFT;
    /// Entries in this level's table (all root tables for the root).
    pub const ENTRIES: usize = 1 << Self::LEVEL.index_bits;
    /// Whether this is the format's last level.
    pub const LAST: bool = D::N + 1 >= F::LAYOUT.geometry.levels.len();
    /// Whether an entry here may be a leaf.
    pub const LEAF: bool = Self::LEVEL.leaf;
    /// The bits a leaf at this level always sets (block or page).
    pub const LEAF_SET: u64 = if Self::LAST {
        F::LAYOUT.page.set
    } else {
        match F::LAYOUT.block {
            Some(b) => b.set,
            None => F::LAYOUT.page.set,
        }
    };

    /// The index of `gpa` in this level's table.
    #[inline(always)]
    pub fn index(gpa: usize) -> usize {
        (gpa >> Self::SHIFT) & (Self::ENTRIES - 1)
    }

    /// The start of the entry's span holding `gpa`.
    #[inline(always)]
    pub fn base(gpa: usize) -> usize {
        gpa & !(Self::SPAN - 1)
    }

    /// The end of the chunk of `cur..end` within one entry.
    #[inline(always)]
    pub fn chunk_end(cur: usize, end: usize) -> usize {
        Self::base(cur).saturating_add(Self::SPAN).min(end)
    }

    /// The pieces of `start..end` that fall in one entry each, as
    /// `(first, end)` pairs.
    #[inline(always)]
    pub fn chunks(start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> {
        let mut cur = start;
        core::iter::from_fn(move || {
            (cur < end).then(|| {
                let ce = Self::chunk_end(cur, end);
                let chunk = (cur, ce);
                cur = ce;
                chunk
            })
        })
    }

    /// The `MappingFlags` of the leaf `raw` (a table lookup).
    #[inline(always)]
    pub fn flags(raw: u64) -> page_table_entry::MappingFlags {
        let bits = if FlagsOf::<F>::TABLE.usable {
            FlagsOf::<F>::TABLE.get(raw)
        } else {
            F::LAYOUT.flags(raw).bits()
        };
        page_table_entry::MappingFlags::from_bits_truncate(bits)
    }

    /// Whether `raw` is present.
    #[inline(always)]
    pub fn present(raw: u64) -> bool {
        Self::LAY.present.holds(raw)
    }

    /// Whether `raw` (present) is a leaf at this level.
    #[inline(always)]
    pub fn is_leaf(raw: u64) -> bool {
        if Self::LAST {
            Self::LAY.page.is.holds(raw)
        } else if Self::LEAF {
            match Self::LAY.block {
                Some(b) => b.is.holds(raw),
                None => false,
            }
        } else {
            false
        }
    }

    /// Classifies `raw` found at this level.
    #[inline(always)]
    pub fn decode(raw: u64) -> Decoded {
        if !Self::present(raw) {
            return Decoded::Invalid;
        }
        let pa = Self::LAY.address.decode(raw);
        if Self::is_leaf(raw) {
            Decoded::Leaf(pa)
        } else if !Self::LAST && Self::LAY.table.is.holds(raw) {
            Decoded::Table(pa)
        } else {
            Decoded::Reserved
        }
    }
}
