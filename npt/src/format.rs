//! What a format is, as data: the generator turns each spec into a
//! [`Layout`] and a [`FlushSpec`], and the engine ([`NestedTable`](crate::NestedTable)) is
//! driven by them alone.

use crate::error::Error;
use crate::flush::FlushSpec;
use core::fmt::Debug;
use page_table_entry::MappingFlags;

/// A predicate over an entry's bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pred {
    /// Always true.
    Always,
    /// At least one of the bits is set.
    Any(u64),
    /// All of the bits are set.
    All(u64),
    /// None of the bits is set.
    None(u64),
}

impl Pred {
    /// Whether `raw` satisfies the predicate.
    #[inline(always)]
    pub const fn holds(self, raw: u64) -> bool {
        match self {
            Pred::Always => true,
            Pred::Any(m) => raw & m != 0,
            Pred::All(m) => raw & m == m,
            Pred::None(m) => raw & m == 0,
        }
    }

    /// Whether no value whose bits below `shift` are all zero satisfies
    /// the predicate (so a frame address reads as an invalid entry).
    pub const fn reads_invalid_below(self, shift: u32) -> bool {
        let low = (1u64 << shift) - 1;
        match self {
            Pred::Always | Pred::None(_) => false,
            Pred::Any(m) => m != 0 && m & !low == 0,
            Pred::All(m) => m & low != 0,
        }
    }
}

/// How one kind of descriptor (table, block, page) is recognised and built.
#[derive(Clone, Copy, Debug)]
pub struct DescriptorKind {
    /// Recognises the kind among present descriptors.
    pub is: Pred,
    /// The bits building one always sets.
    pub set: u64,
}

/// One level of the walk, root first.
#[derive(Clone, Copy, Debug)]
pub struct Level {
    /// The manual's name for this level's table (PML4, L1, ...).
    pub name: &'static str,
    /// The manual's number for the level.
    pub number: u8,
    /// The lowest input-address bit this level indexes.
    pub shift: u32,
    /// How many input-address bits this level indexes.
    pub index_bits: u32,
    /// Whether an entry at this level may be a leaf.
    pub leaf: bool,
}

impl Level {
    /// The bytes one entry of this level spans.
    #[inline]
    pub const fn span(&self) -> usize {
        1 << self.shift
    }

    /// The number of entries in this level's table (all root tables
    /// together for the root).
    #[inline]
    pub const fn entries(&self) -> usize {
        1 << self.index_bits
    }

    /// The index of `gpa` at this level.
    #[inline]
    pub const fn index(&self, gpa: usize) -> usize {
        (gpa >> self.shift) & (self.entries() - 1)
    }
}

/// The shape of a format's walk.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    /// log2 of the granule (table and smallest page size).
    pub granule_shift: u32,
    /// Width of guest-physical addresses.
    pub input_bits: u32,
    /// Width of host-physical addresses.
    pub output_bits: u32,
    /// Granule-sized tables making up the root (more than one when roots
    /// are concatenated).
    pub root_tables: usize,
    /// Alignment of the root.
    pub root_align: usize,
    /// The levels, root first.
    pub levels: &'static [Level],
}

impl Geometry {
    /// The granule in bytes.
    #[inline]
    pub const fn granule(&self) -> usize {
        1 << self.granule_shift
    }

    /// The level index (root = 0) whose leaves are `size` bytes.
    pub fn leaf_level(&self, size: usize) -> Option<usize> {
        self.levels.iter().position(|l| l.leaf && l.span() == size)
    }

    /// One past the highest guest-physical address.
    #[inline]
    pub const fn input_limit(&self) -> u128 {
        1u128 << self.input_bits
    }

    /// One past the highest host-physical address.
    #[inline]
    pub const fn output_limit(&self) -> u128 {
        1u128 << self.output_bits
    }
}

/// Where the output address sits in a descriptor.
#[derive(Clone, Copy, Debug)]
pub struct AddressField {
    /// The field's lowest bit in the entry.
    pub lo: u32,
    /// The field's width.
    pub width: u32,
    /// The physical-address bit the field's lowest bit stands for.
    pub pa_shift: u32,
}

impl AddressField {
    /// The field's mask within the entry.
    #[inline(always)]
    pub const fn mask(&self) -> u64 {
        (((1u128 << self.width) - 1) as u64) << self.lo
    }

    /// The field's bits for `pa` (which the caller has range-checked and
    /// aligned).
    #[inline(always)]
    pub const fn encode(&self, pa: u64) -> u64 {
        ((pa >> self.pa_shift) << self.lo) & self.mask()
    }

    /// The physical address in `raw`.
    #[inline(always)]
    pub const fn decode(&self, raw: u64) -> u64 {
        ((raw & self.mask()) >> self.lo) << self.pa_shift
    }
}

/// A combination of `MappingFlags` the format cannot encode, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Illegal {
    /// The reason, in the manual's terms.
    pub reason: &'static str,
    /// Set when a table parameter lifts the refusal (a CPU capability the
    /// caller has: EPT execute-only with IA32_VMX_EPT_VPID_CAP bit 0).
    pub unless: Option<Unless>,
}

/// A refusal a table parameter lifts: the spec's `forbid` with `unless`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unless {
    /// The rule, for [`Format::allows`].
    pub rule: u8,
    /// The attribute bits the combination has once allowed.
    pub attrs: u64,
}

/// Reads one group of `MappingFlags` back from an entry: when
/// `raw & mask == value`, the entry carries `flags`.
#[derive(Clone, Copy, Debug)]
pub struct DecodeRule {
    /// Bits the group's encodings use.
    pub mask: u64,
    /// The encoding of this row.
    pub value: u64,
    /// `MappingFlags` bits this row stands for.
    pub flags: usize,
}

/// Everything the engine needs to know about a format's descriptors.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The format's name.
    pub name: &'static str,
    /// The walk.
    pub geometry: Geometry,
    /// Recognises a present (valid) descriptor.
    pub present: Pred,
    /// Table descriptors.
    pub table: DescriptorKind,
    /// Leaves above the last level, if any level there holds leaves.
    pub block: Option<DescriptorKind>,
    /// Leaves at the last level.
    pub page: DescriptorKind,
    /// The output address.
    pub address: AddressField,
    /// `MappingFlags` bits the format ignores.
    pub ignored: usize,
    /// Attribute bits for each `MappingFlags` combination (indexed by the
    /// flags' bits with ignored flags cleared), or why it is illegal.
    pub leaf_attrs: [Result<u64, Illegal>; 64],
    /// Every bit a permission or memory-type mapping may set.
    pub attr_mask: u64,
    /// Bits of a live leaf that may change only by break-before-make.
    pub bbm_mask: u64,
    /// The software bit marking a leaf write-protected for dirty logging
    /// (0: the format has none, and cannot log).
    pub log_bit: u64,
    /// The bit the CPU sets in a leaf it uses, where it does (the spec's
    /// `hardware_dirty`; 0 if none).
    pub hw_accessed: u64,
    /// The bit the CPU sets in a leaf it writes through (0 if none).
    pub hw_dirty: u64,
    /// The bit that lets the CPU grant write permission on the first write
    /// (Arm's DBM; 0 if none): with it, the dirty state is the write
    /// permission, `hw_write`.
    pub hw_clean: u64,
    /// The bits WRITE sets in a leaf, where `hw_clean` is used (else 0).
    pub hw_write: u64,
    /// Rules that read `MappingFlags` back, grouped per mapping.
    pub decode: &'static [&'static [DecodeRule]],
}

/// What one descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Not present.
    Invalid,
    /// Present but not a valid descriptor at this level (a reserved
    /// encoding).
    Reserved,
    /// A pointer to the next level's table.
    Table(u64),
    /// A leaf (block or page) mapping the output address.
    Leaf(u64),
}

impl Layout {
    /// Classifies `raw` found at `level` (root = 0).
    #[inline(always)]
    pub fn decode(&self, raw: u64, level: usize) -> Decoded {
        if !self.present.holds(raw) {
            return Decoded::Invalid;
        }
        let last = level + 1 == self.geometry.levels.len();
        let pa = self.address.decode(raw);
        if last {
            return if self.page.is.holds(raw) {
                Decoded::Leaf(pa)
            } else {
                Decoded::Reserved
            };
        }
        if self.geometry.levels.get(level).is_some_and(|l| l.leaf) {
            if let Some(block) = self.block {
                if block.is.holds(raw) {
                    return Decoded::Leaf(pa);
                }
            }
        }
        if self.table.is.holds(raw) {
            Decoded::Table(pa)
        } else {
            Decoded::Reserved
        }
    }

    /// The attribute bits for `flags`, or why they are illegal.
    /// `MappingFlags` bits outside the six it defines (READ ... UNCACHED)
    /// are refused, never dropped.
    /// Combinations a conditional rule refuses stay refused: see
    /// [`Layout::attrs_allowing`].
    #[inline]
    pub fn attrs(&self, flags: MappingFlags) -> Result<u64, Error> {
        self.attrs_allowing(flags, |_| false)
    }

    /// [`Layout::attrs`], where `allowed(rule)` says whether the table's
    /// parameters lift conditional rule `rule` ([`Format::allows`]).
    #[inline]
    pub fn attrs_allowing(
        &self,
        flags: MappingFlags,
        allowed: impl Fn(u8) -> bool,
    ) -> Result<u64, Error> {
        if flags.bits() & !0x3f != 0 {
            return Err(Error::IllegalFlags {
                flags,
                reason: "MappingFlags bits other than READ, WRITE, EXECUTE, USER, DEVICE and UNCACHED have no meaning here",
            });
        }
        let idx = flags.bits() & !self.ignored & 0x3f;
        match self.leaf_attrs.get(idx) {
            Some(Ok(attrs)) => Ok(*attrs),
            Some(Err(Illegal {
                unless: Some(u), ..
            })) if allowed(u.rule) => Ok(u.attrs),
            Some(Err(e)) => Err(Error::IllegalFlags {
                flags,
                reason: e.reason,
            }),
            None => Err(Error::IllegalFlags {
                flags,
                reason: "no such flags",
            }),
        }
    }

    /// A leaf at `level` mapping `pa` with attribute bits `attrs`.
    #[inline]
    pub fn leaf(&self, level: usize, pa: u64, attrs: u64) -> u64 {
        let kind = if level + 1 == self.geometry.levels.len() {
            self.page
        } else {
            self.block.unwrap_or(self.page)
        };
        attrs | kind.set | self.address.encode(pa)
    }

    /// A table descriptor pointing at `pa`.
    #[inline(always)]
    pub fn table(&self, pa: u64) -> u64 {
        self.table.set | self.address.encode(pa)
    }

    /// The `MappingFlags` a leaf carries.
    #[inline(always)]
    pub fn flags(&self, raw: u64) -> MappingFlags {
        let mut bits = 0;
        for group in self.decode {
            if let Some(rule) = group.iter().find(|r| raw & r.mask == r.value) {
                bits |= rule.flags;
            }
        }
        MappingFlags::from_bits_truncate(bits)
    }

    /// Whether `raw`, present at a level above the last, is a block.
    #[inline]
    pub fn is_block(&self, raw: u64) -> bool {
        match self.block {
            Some(b) => self.present.holds(raw) && b.is.holds(raw),
            None => false,
        }
    }
}

/// `Layout::flags` as one table lookup: the bits the decode rules read are
/// gathered into an index (at most four runs of bits, ten bits in all) and
/// the `MappingFlags` of every combination are computed at compile time.
#[derive(Clone, Copy, Debug)]
pub struct FlagsTable {
    /// (lowest bit, width, position in the index) of each run.
    runs: [(u32, u32, u32); 4],
    nruns: usize,
    /// Whether the rules fit (otherwise `get` is not to be used).
    pub usable: bool,
    table: [u8; 1 << 10],
}

impl FlagsTable {
    /// The table for `lay`'s decode rules.
    // Const evaluation: an index out of range is a compile error.
    #[allow(clippy::indexing_slicing)]
    pub const fn build(lay: &Layout) -> Self {
        let mut union = 0u64;
        let mut g = 0;
        while g < lay.decode.len() {
            let group = lay.decode[g];
            let mut r = 0;
            while r < group.len() {
                union |= group[r].mask;
                r += 1;
            }
            g += 1;
        }
        let mut t = FlagsTable {
            runs: [(0, 0, 0); 4],
            nruns: 0,
            usable: true,
            table: [0; 1 << 10],
        };
        let mut m = union;
        let mut pos = 0u32;
        while m != 0 {
            let lo = m.trailing_zeros();
            let width = (!(m >> lo)).trailing_zeros();
            if t.nruns == 4 || pos + width > 10 {
                t.usable = false;
                return t;
            }
            t.runs[t.nruns] = (lo, width, pos);
            t.nruns += 1;
            pos += width;
            m &= !(((1u64 << width) - 1) << lo);
        }
        let mut idx = 0usize;
        while idx < 1 << pos {
            // The entry whose gathered bits are `idx`.
            let mut raw = 0u64;
            let mut k = 0;
            while k < t.nruns {
                let (lo, width, at) = t.runs[k];
                raw |= (((idx >> at) as u64) & ((1u64 << width) - 1)) << lo;
                k += 1;
            }
            t.table[idx] = flags_of(lay, raw) as u8;
            idx += 1;
        }
        t
    }

    /// The `MappingFlags` bits of the leaf `raw`.
    #[inline(always)]
    pub fn get(&self, raw: u64) -> usize {
        let mut idx = 0usize;
        for &(lo, width, at) in self.runs.iter().take(self.nruns) {
            idx |= (((raw >> lo) & ((1u64 << width) - 1)) as usize) << at;
        }
        self.table
            .get(idx & ((1 << 10) - 1))
            .map_or(0, |&b| b as usize)
    }
}

/// `Layout::flags`, in const evaluation.
#[allow(clippy::indexing_slicing)]
const fn flags_of(lay: &Layout, raw: u64) -> usize {
    let mut bits = 0;
    let mut g = 0;
    while g < lay.decode.len() {
        let group = lay.decode[g];
        let mut r = 0;
        while r < group.len() {
            if raw & group[r].mask == group[r].value {
                bits |= group[r].flags;
                break;
            }
            r += 1;
        }
        g += 1;
    }
    bits & 0x3f
}

/// A nested-page-table format: the generator implements this for the format
/// type of each spec.
pub trait Format: 'static + Send + Sync {
    /// The format's name.
    const NAME: &'static str;
    /// The descriptor layout and geometry.
    const LAYOUT: Layout;
    /// The TLB invalidation recipes.
    const FLUSH: FlushSpec;
    /// The entry type.
    type Entry: Copy + Debug + From<u64> + Into<u64>;
    /// Parameters of the root register (VMID and the like).
    type Params: Copy + Debug + Default + Send + Sync;

    /// The output (host-physical) width for tables made with `params`: the
    /// geometry's, or less where the spec lets a param narrow it (the
    /// host's physical address size).
    fn output_bits(params: &Self::Params) -> u32 {
        let _ = params;
        Self::LAYOUT.geometry.output_bits
    }

    /// Checks `params` and computes, for a root table at `root_pa`, the
    /// values flush recipes refer to by name (the root register first).
    fn context(root_pa: u64, params: &Self::Params) -> Result<crate::flush::Context, Error>;

    /// Checks `params` alone: their widths, the output limit, and the
    /// spec's `require` rules that do not read the root's address (run
    /// before a root is allocated; the others run with it).
    fn check_params(params: &Self::Params) -> Result<(), Error>;

    /// The registers the spec declares, in its order (`["EPTP"]`,
    /// `["VTTBR_EL2", "VTCR_EL2"]`, `["hgatp"]`, `["nCR3"]`): what a
    /// hypervisor generic over the format loads, by name.
    const REGISTERS: &'static [&'static str];

    /// The value of register `index` of [`REGISTERS`](Self::REGISTERS) for
    /// a root table at `root_pa` with `params` (the spec's register builder,
    /// with its checks); [`Error::NoSuchRegister`] past the end.
    fn register(
        index: usize,
        root_pa: crate::addr::HostPhysAddr,
        params: &Self::Params,
    ) -> Result<u64, Error>;

    /// Whether the CPU tracks the accessed and dirty state the layout
    /// describes (`hw_accessed`, and `hw_dirty` or `hw_clean`) in tables
    /// made with `params` (EPT: EPTP bit 6, the `ad` param; Arm: `hafdbs`).
    fn hardware_dirty(params: &Self::Params) -> bool {
        let _ = params;
        false
    }

    /// Whether `params` lift the spec's conditional refusal `rule` (a
    /// `forbid` with `unless = PARAM`: the param is non-zero).
    fn allows(params: &Self::Params, rule: u8) -> bool {
        let _ = (params, rule);
        false
    }
}

/// The layout the spec compiler's fallback gives a format whose spec has
/// errors (the crate does not compile, so it is never used).
#[doc(hidden)]
pub const STUB_LAYOUT: Layout = Layout {
    name: "",
    geometry: Geometry {
        granule_shift: 12,
        input_bits: 12,
        output_bits: 12,
        root_tables: 1,
        root_align: 4096,
        levels: &[],
    },
    present: Pred::Always,
    table: DescriptorKind {
        is: Pred::Always,
        set: 0,
    },
    block: None,
    page: DescriptorKind {
        is: Pred::Always,
        set: 0,
    },
    address: AddressField {
        lo: 12,
        width: 0,
        pa_shift: 12,
    },
    ignored: 0,
    leaf_attrs: [Err(Illegal {
        reason: "",
        unless: None,
    }); 64],
    attr_mask: 0,
    bbm_mask: 0,
    log_bit: 0,
    hw_accessed: 0,
    hw_dirty: 0,
    hw_clean: 0,
    hw_write: 0,
    decode: &[],
};
