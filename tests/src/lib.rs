//! Shared support for npt's integration tests: a simulated physical memory
//! whose frame addresses are deterministic, so golden values (root
//! registers, table descriptors) can be derived by hand.

use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::PagingHandler;
use std::cell::RefCell;

pub mod model;
pub mod runner;
mod table;
pub use table::*;

/// Where simulated physical memory starts by default.
pub const DEFAULT_BASE: usize = 0x8000_0000;
/// How many 4 KiB frames it has by default.
pub const DEFAULT_FRAMES: usize = 1024;

struct Arena {
    mem: Vec<u64>,
    base: usize,
    used: Vec<bool>,
    /// Allocations left before the allocator reports exhaustion.
    budget: Option<usize>,
}

thread_local! {
    static ARENA: RefCell<Arena> = RefCell::new(Arena::new(DEFAULT_BASE, DEFAULT_FRAMES));
}

impl Arena {
    fn new(base: usize, frames: usize) -> Self {
        Arena {
            mem: vec![0; frames * 512],
            base,
            used: vec![false; frames],
            budget: None,
        }
    }
}

/// Resets this thread's physical memory: `frames` frames from `base`.
pub fn reset(base: usize, frames: usize) {
    ARENA.with(|a| *a.borrow_mut() = Arena::new(base, frames));
}

/// Frames currently allocated on this thread.
pub fn live_frames() -> usize {
    ARENA.with(|a| a.borrow().used.iter().filter(|u| **u).count())
}

/// Lets only `n` more allocations succeed (`None`: unlimited).
pub fn set_budget(n: Option<usize>) {
    ARENA.with(|a| a.borrow_mut().budget = n);
}

/// Reads the 64-bit word at physical address `pa`.
pub fn read_phys(pa: usize) -> u64 {
    ARENA.with(|a| {
        let a = a.borrow();
        a.mem[(pa - a.base) / 8]
    })
}

/// Writes the 64-bit word at physical address `pa` (what a hardware walker
/// setting accessed or dirty bits would do).
pub fn write_phys(pa: usize, value: u64) {
    ARENA.with(|a| {
        let mut a = a.borrow_mut();
        let base = a.base;
        a.mem[(pa - base) / 8] = value;
    })
}

/// The simulated frame allocator.
pub struct Frames;

impl PagingHandler for Frames {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        assert!(
            num > 0 && align.is_power_of_two() && align.is_multiple_of(4096),
            "npt asked for {num} frames aligned to {align:#x}"
        );
        ARENA.with(|a| {
            let mut a = a.borrow_mut();
            if let Some(b) = a.budget {
                if b == 0 {
                    return None;
                }
                a.budget = Some(b - 1);
            }
            let n = a.used.len();
            let mut i = 0;
            while i + num <= n {
                let pa = a.base + i * 4096;
                if pa % align == 0 && a.used[i..i + num].iter().all(|u| !u) {
                    a.used[i..i + num].iter_mut().for_each(|u| *u = true);
                    // Dirty the frame so tests prove the engine zeroes it.
                    a.mem[i * 512..(i + num) * 512]
                        .iter_mut()
                        .for_each(|w| *w = 0xdead_beef_dead_beef);
                    return Some(PhysAddr::from(pa));
                }
                i += 1;
            }
            None
        })
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        ARENA.with(|a| {
            let mut a = a.borrow_mut();
            let pa = paddr.as_usize();
            assert!(
                pa.is_multiple_of(4096)
                    && pa >= a.base
                    && (pa - a.base) / 4096 + num <= a.used.len(),
                "free of {num} frames at {pa:#x}, which the arena never handed out"
            );
            let i = (pa - a.base) / 4096;
            for u in &mut a.used[i..i + num] {
                assert!(*u, "double free of frame {:#x}", paddr.as_usize());
                *u = false;
            }
        })
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        ARENA.with(|a| {
            let a = a.borrow();
            let pa = paddr.as_usize();
            assert!(
                pa >= a.base && (pa - a.base) / 4096 < a.used.len(),
                "phys_to_virt({pa:#x}): not arena memory"
            );
            let off = pa - a.base;
            // npt reaches only frames it holds: a freed frame is off limits.
            assert!(a.used[off / 4096], "phys_to_virt({pa:#x}): a freed frame");
            VirtAddr::from(a.mem.as_ptr() as usize + off)
        })
    }
}
