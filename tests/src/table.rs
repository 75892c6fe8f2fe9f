//! Helpers the integration tests share for building nested tables on the
//! simulated physical memory, reading them back and recording the
//! invalidations they ask for. Generic over the format where that matters.

use crate::{live_frames, read_phys, reset, Frames, DEFAULT_BASE, DEFAULT_FRAMES};
use npt::flush::{Event, Recorder, Scope};
use npt::size::SIZE_4K;
use npt::{Format, GuestPhysAddr, HostPhysAddr, Leaf, MappingFlags as MF, NestedTable, TlbFlush};

/// A nested table of format `F` whose frames come from the simulated memory.
pub type Table<F> = NestedTable<F, Frames>;

/// Read only.
pub const R: MF = MF::READ;
/// Read and write.
pub const RW: MF = MF::READ.union(MF::WRITE);
/// Read and execute.
pub const RX: MF = MF::READ.union(MF::EXECUTE);
/// Read, write and execute.
pub const RWX: MF = RW.union(MF::EXECUTE);

/// `a` as a guest-physical address.
pub fn gpa(a: usize) -> GuestPhysAddr {
    GuestPhysAddr::from(a)
}

/// `a` as a host-physical address.
pub fn hpa(a: usize) -> HostPhysAddr {
    HostPhysAddr::from(a)
}

/// A fresh default arena and an empty table (default parameters) rooted at its first frame.
pub fn fresh<F: Format>() -> Table<F> {
    fresh_with::<F>(F::Params::default())
}

/// A fresh default arena and an empty table with `params`, rooted at its first frame.
pub fn fresh_with<F: Format>(params: F::Params) -> Table<F> {
    reset(DEFAULT_BASE, DEFAULT_FRAMES);
    let t = Table::<F>::try_new_with(params).unwrap();
    assert_eq!(t.root_paddr(), hpa(DEFAULT_BASE));
    t
}

/// Maps one page and checks it needs no invalidation (so not on RISC-V, which fences new leaves).
pub fn map<F: Format>(t: &mut Table<F>, gpa: usize, hpa: usize, size: usize, flags: MF) {
    let tf = t
        .map(
            GuestPhysAddr::from(gpa),
            HostPhysAddr::from(hpa),
            size,
            flags,
        )
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    tf.ignore();
}

/// Maps `n` RW 4 KiB pages from `gpa` to HPA 0x1_0000_0000 on, no huge pages, no invalidation.
pub fn map_pages<F: Format>(t: &mut Table<F>, gpa: usize, n: usize) {
    let tf = t
        .map_region(
            GuestPhysAddr::from(gpa),
            HostPhysAddr::from(0x1_0000_0000),
            n * SIZE_4K,
            RW,
            false,
        )
        .unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    tf.ignore();
}

/// Every leaf of `t`, in address order.
pub fn leaves<F: Format>(t: &Table<F>) -> Vec<Leaf> {
    let mut v = Vec::new();
    t.for_each_leaf(|l| v.push(l));
    v
}

/// The raw leaf mapping `gpa` (which must be a leaf's first address).
pub fn raw_leaf<F: Format>(t: &Table<F>, gpa: usize) -> u64 {
    leaves(t)
        .into_iter()
        .find(|l| l.gpa == GuestPhysAddr::from(gpa))
        .unwrap_or_else(|| panic!("no leaf at {gpa:#x}"))
        .raw
}

/// Entry `idx` of the table at physical address `table`.
pub fn entry(table: usize, idx: usize) -> u64 {
    read_phys(table + idx * 8)
}

/// Everything a refused operation must leave untouched: leaves, frame counts, root entries.
pub fn snapshot<F: Format>(t: &Table<F>) -> (Vec<Leaf>, usize, usize, Vec<u64>) {
    let root_entries = F::LAYOUT.geometry.levels[0].entries();
    let root = t.root_paddr().as_usize();
    let words = (0..root_entries).map(|i| entry(root, i)).collect();
    (leaves(t), t.frames_used(), live_frames(), words)
}

/// Every combination of the six `MappingFlags` bits.
pub fn all_combinations() -> impl Iterator<Item = MF> {
    (0..64usize).map(MF::from_bits_truncate)
}

/// Flushes `tf` into a `Recorder` whose context registers hold `current_value`, and returns it.
pub fn record<F: Format>(tf: TlbFlush<F>, current_value: u64) -> Recorder {
    let mut rec = Recorder {
        current_value,
        ..Recorder::default()
    };
    tf.flush_with(&mut rec).unwrap();
    rec
}

/// The events of flushing `tf` into a default `Recorder` (context registers hold 0).
pub fn run<F: Format>(tf: TlbFlush<F>) -> Vec<Event> {
    record(tf, Recorder::default().current_value).events
}

/// The host-physical address of the leaf entry that maps `gpa`, walked by
/// hand over `F::LAYOUT` (for tests that play the CPU and set accessed or
/// dirty bits in it).
pub fn leaf_slot<F: Format>(t: &Table<F>, gpa: usize) -> usize {
    let lay = &F::LAYOUT;
    let mut table = t.root_paddr().as_usize();
    for (level, l) in lay.geometry.levels.iter().enumerate() {
        let idx = (gpa >> l.shift) & ((1 << l.index_bits) - 1);
        let slot = table + idx * 8;
        match lay.decode(read_phys(slot), level) {
            npt::format::Decoded::Table(next) => table = next as usize,
            npt::format::Decoded::Leaf(_) => return slot,
            other => panic!("{gpa:#x}: {other:?} at level {level}"),
        }
    }
    panic!("{gpa:#x}: no leaf")
}
