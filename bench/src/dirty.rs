//! The dirty-logging row: harvesting 1 GiB of 4 KiB pages with 1% of them
//! written, npt (`Ept4` and `Stage2Ipa48` by write protection, `Ept4` with
//! EPT A/D by the CPU's dirty bit) against a plain walk bound (read every
//! leaf entry of the same tables and write back the 1% that changed, found
//! by indexing). No peer crate logs dirty pages; the bound is what any
//! harvest must at least do.

use crate::handlers::{frame_ptr, Pool, FRAME};
use npt::{flush::Recorder, Format, GuestPhysAddr, HostPhysAddr, MappingFlags, NestedTable};
use std::hint::black_box;
use std::time::Instant;

const GPA: usize = 0x4000_0000;
const HPA: usize = 0x1_0000_0000;

/// One harvest of `size` bytes after writes to every 100th page, in ns;
/// the pages reported are checked.
fn npt_harvest<F: Format>(size: usize) -> f64 {
    let mut t = NestedTable::<F, Pool>::try_new().unwrap_or_else(|e| crate::fail(&e.to_string()));
    let rw = MappingFlags::READ | MappingFlags::WRITE;
    t.map_region(
        GuestPhysAddr::from(GPA),
        HostPhysAddr::from(HPA),
        size,
        rw,
        false,
    )
    .unwrap_or_else(|e| crate::fail(&e.to_string()))
    .ignore();
    let mut rec = Recorder::default();
    t.start_dirty_log_in(GuestPhysAddr::from(GPA), size, &mut rec)
        .unwrap_or_else(|e| crate::fail(&e.to_string()))
        .ignore();
    let pages = size / FRAME;
    let written: Vec<usize> = (0..pages).step_by(100).collect();
    for &p in &written {
        match t.handle_write_fault(GuestPhysAddr::from(GPA + p * FRAME)) {
            Ok(npt::WriteFault::Logged(tf)) => tf.ignore(),
            _ => crate::fail("dirty: a logged page did not fault as logging"),
        }
    }
    let mut bitmap = vec![0u64; pages.div_ceil(64)];
    let start = Instant::now();
    let tf = t
        .harvest_dirty(GuestPhysAddr::from(GPA), size, &mut bitmap)
        .unwrap_or_else(|e| crate::fail(&e.to_string()));
    let ns = start.elapsed().as_nanos() as f64;
    tf.ignore();
    let got: Vec<usize> = (0..pages)
        .filter(|i| bitmap[i / 64] >> (i % 64) & 1 == 1)
        .collect();
    if got != written {
        crate::fail("dirty: the harvest reported other pages than were written");
    }
    black_box(&t);
    ns
}

/// The host address of the leaf entry for `gpa` (a 4 KiB page), walked by
/// hand: the bench plays the CPU that sets the dirty bit.
fn leaf_slot<F: Format>(t: &NestedTable<F, Pool>, gpa: usize) -> *mut u64 {
    let lay = &F::LAYOUT;
    let mut table = t.root_paddr().as_usize();
    for (level, l) in lay.geometry.levels.iter().enumerate() {
        let slot = frame_ptr(table) as *mut u64;
        // SAFETY: an index within the table at this level.
        let slot = unsafe { slot.add((gpa >> l.shift) & ((1 << l.index_bits) - 1)) };
        // SAFETY: a live entry of the table.
        match lay.decode(unsafe { slot.read_volatile() }, level) {
            npt::format::Decoded::Table(next) => table = next as usize,
            npt::format::Decoded::Leaf(_) => return slot,
            _ => break,
        }
    }
    crate::fail("dirty: no leaf")
}

/// One harvest by the CPU's dirty bit (EPT with `ad`, SDM §29.3.5) after
/// the bench, playing the CPU, set D (bit 9) in every 100th page's leaf.
fn npt_hw_harvest(size: usize) -> f64 {
    use npt::x86_64::{Ept4, Ept4Params};
    let params = Ept4Params {
        ad: 1,
        execute_only: 0,
        pa_bits: 52,
    };
    let mut t = NestedTable::<Ept4, Pool>::try_new_with(params)
        .unwrap_or_else(|e| crate::fail(&e.to_string()));
    let rw = MappingFlags::READ | MappingFlags::WRITE;
    t.map_region(
        GuestPhysAddr::from(GPA),
        HostPhysAddr::from(HPA),
        size,
        rw,
        false,
    )
    .unwrap_or_else(|e| crate::fail(&e.to_string()))
    .ignore();
    t.start_hardware_dirty_log_in(GuestPhysAddr::from(GPA), size, &mut Recorder::default())
        .unwrap_or_else(|e| crate::fail(&e.to_string()))
        .ignore();
    let pages = size / FRAME;
    let written: Vec<usize> = (0..pages).step_by(100).collect();
    for &p in &written {
        let slot = leaf_slot(&t, GPA + p * FRAME);
        // SAFETY: the leaf entry of a mapped page.
        unsafe { slot.write_volatile(slot.read_volatile() | 1 << 9) };
    }
    let mut bitmap = vec![0u64; pages.div_ceil(64)];
    let start = Instant::now();
    let tf = t
        .harvest_hardware_dirty(GuestPhysAddr::from(GPA), size, &mut bitmap)
        .unwrap_or_else(|e| crate::fail(&e.to_string()));
    let ns = start.elapsed().as_nanos() as f64;
    tf.ignore();
    let got: Vec<usize> = (0..pages)
        .filter(|i| bitmap[i / 64] >> (i % 64) & 1 == 1)
        .collect();
    if got != written {
        crate::fail("dirty: the hardware harvest reported other pages than were written");
    }
    black_box(&t);
    ns
}

/// The bound: the same number of leaf entries read through a flat array
/// of 4 KiB frames, 1% of them rewritten.
fn walk_bound(size: usize) -> f64 {
    let tables = size / FRAME / 512;
    let frames: Vec<usize> = (0..tables)
        .map(|_| {
            let pa = <Pool as npt::PagingHandler>::alloc_frames(1, FRAME)
                .unwrap_or_else(|| crate::fail("dirty: pool exhausted"));
            pa.as_usize()
        })
        .collect();
    for (t, &pa) in frames.iter().enumerate() {
        let p = frame_ptr(pa) as *mut u64;
        for i in 0..512 {
            let page = t * 512 + i;
            let dirty = (page % 100 == 0) as u64;
            // SAFETY: a pool frame of 512 entries.
            unsafe { p.add(i).write_volatile(0x1000 | dirty << 1 | 1) };
        }
    }
    let mut bitmap = vec![0u64; (tables * 512).div_ceil(64)];
    let start = Instant::now();
    for (t, &pa) in frames.iter().enumerate() {
        let p = frame_ptr(pa) as *mut u64;
        for i in 0..512 {
            // SAFETY: as above.
            let raw = unsafe { p.add(i).read_volatile() };
            if raw & 2 != 0 {
                let page = t * 512 + i;
                bitmap[page / 64] |= 1 << (page % 64);
                unsafe { p.add(i).write_volatile(raw & !2) };
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64;
    black_box(&bitmap);
    for pa in frames {
        <Pool as npt::PagingHandler>::dealloc_frames(npt::PhysAddr::from(pa), 1);
    }
    ns
}

/// Prints the row: medians and the per-round ratio range.
pub fn row(size: usize, rounds: usize) {
    let mut ept = Vec::new();
    let mut s2 = Vec::new();
    let mut hw = Vec::new();
    let mut bound = Vec::new();
    for _ in 0..rounds.max(1) {
        ept.push(npt_harvest::<npt::x86_64::Ept4>(size));
        hw.push(npt_hw_harvest(size));
        s2.push(npt_harvest::<npt::aarch64::Stage2Ipa48>(size));
        bound.push(walk_bound(size));
    }
    let ratios = |v: &[f64]| {
        let r: Vec<f64> = v.iter().zip(&bound).map(|(a, b)| a / b).collect();
        let min = r.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.iter().copied().fold(0.0, f64::max);
        format!("{min:.2}..{max:.2}")
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] / 1000.0
    };
    println!(
        "### Dirty logging: harvest {} MiB of 4 KiB pages, 1% written (pool handler)\n",
        size >> 20
    );
    println!("| npt Ept4 | npt Stage2Ipa48 | npt Ept4, A/D | walk bound | Ept4/bound | Stage2Ipa48/bound | Ept4 A/D/bound |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {} | {} | {} |\n",
        median(&ept),
        median(&s2),
        median(&hw),
        median(&bound),
        ratios(&ept),
        ratios(&s2),
        ratios(&hw)
    );
}
