//! The two frame handlers every implementation draws its tables from.
//!
//! Both treat the virtual address of the memory they hand out as its
//! "physical" address, so `phys_to_virt` is the identity. Both count the
//! frames they have handed out and not had back, which is how the bench
//! measures what a table holds, the same way for every implementation.

use npt::{PagingHandler, PhysAddr, VirtAddr};
use std::alloc::{self, Layout};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The size of a frame.
pub const FRAME: usize = 0x1000;

/// A frame handler the bench can report on.
pub trait Frames: PagingHandler + 'static {
    /// Its name in the report.
    const NAME: &'static str;

    /// How many frames are handed out now.
    fn live() -> usize;
}

/// The virtual address of a frame this bench handed out.
pub fn frame_ptr(pa: usize) -> *mut u8 {
    pa as *mut u8
}

// ---------------------------------------------------------------------------
// Pool

/// A pool of frames reserved and faulted in once, at startup: allocation
/// pops a free list (or bumps into untouched frames), so the bench measures
/// the table code, not the kernel's page-fault path.
pub struct Pool;

struct PoolState {
    /// The first frame of the buffer.
    base: usize,
    /// How many frames the buffer holds.
    frames: usize,
    /// Frames below this index have been handed out at least once.
    next: usize,
    /// Frames handed back, popped first.
    free: Vec<usize>,
    live: usize,
}

thread_local! {
    static POOL: RefCell<Option<PoolState>> = const { RefCell::new(None) };
}

impl Pool {
    /// Reserves `frames` frames and touches each one, so no allocation
    /// faults later. Frames are never returned to the process allocator.
    pub fn init(frames: usize) {
        let layout = Layout::from_size_align(frames * FRAME, FRAME).expect("pool layout");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc::alloc(layout) };
        assert!(!base.is_null(), "cannot reserve a pool of {frames} frames");
        for k in 0..frames {
            // SAFETY: inside the buffer just allocated.
            unsafe { base.add(k * FRAME).write_volatile(0) };
        }
        POOL.with_borrow_mut(|p| {
            *p = Some(PoolState {
                base: base as usize,
                frames,
                next: 0,
                free: Vec::with_capacity(frames),
                live: 0,
            })
        });
    }
}

impl PoolState {
    fn alloc(&mut self, num: usize, align: usize) -> Option<usize> {
        if num == 0 || !align.is_power_of_two() {
            return None;
        }
        let pa = if num == 1 && align <= FRAME {
            match self.free.pop() {
                Some(pa) => pa,
                None => self.bump(1, FRAME)?,
            }
        } else if num == 1 {
            match self.free.iter().rposition(|&pa| pa % align == 0) {
                Some(i) => self.free.swap_remove(i),
                None => self.bump(1, align)?,
            }
        } else {
            // Several contiguous frames come from the untouched part; they
            // go back to the free list one by one.
            self.bump(num, align)?
        };
        self.live += num;
        Some(pa)
    }

    fn bump(&mut self, num: usize, align: usize) -> Option<usize> {
        let first = self.base + self.next * FRAME;
        let start = first.next_multiple_of(align.max(FRAME));
        let end = start + num * FRAME;
        if end > self.base + self.frames * FRAME {
            return None;
        }
        // Frames skipped to align the start stay usable as single frames.
        self.free.extend((first..start).step_by(FRAME));
        self.next = (end - self.base) / FRAME;
        Some(start)
    }

    fn dealloc(&mut self, pa: usize, num: usize) {
        self.free.extend((0..num).map(|k| pa + k * FRAME));
        self.live -= num;
    }
}

impl PagingHandler for Pool {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        POOL.with_borrow_mut(|p| p.as_mut()?.alloc(num, align))
            .map(PhysAddr::from)
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        POOL.with_borrow_mut(|p| {
            p.as_mut()
                .expect("pool not initialised")
                .dealloc(paddr.as_usize(), num)
        });
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

impl Frames for Pool {
    const NAME: &'static str = "Pool";

    fn live() -> usize {
        POOL.with_borrow(|p| p.as_ref().map_or(0, |p| p.live))
    }
}

// ---------------------------------------------------------------------------
// Global

/// Frames from the process allocator, one allocation per request: what a
/// hypervisor on a general-purpose heap sees, page faults included.
pub struct Global;

thread_local! {
    static GLOBAL_LIVE: Cell<usize> = const { Cell::new(0) };
    /// Alignments above [`FRAME`], which `dealloc_frames` cannot know.
    static OVER_ALIGNED: RefCell<HashMap<usize, usize>> = RefCell::new(HashMap::new());
}

fn global_layout(num: usize, align: usize) -> Option<Layout> {
    Layout::from_size_align(num.checked_mul(FRAME)?, align.max(FRAME)).ok()
}

impl PagingHandler for Global {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        if num == 0 {
            return None;
        }
        let layout = global_layout(num, align)?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc::alloc(layout) };
        if p.is_null() {
            return None;
        }
        if layout.align() > FRAME {
            OVER_ALIGNED.with_borrow_mut(|m| m.insert(p as usize, layout.align()));
        }
        GLOBAL_LIVE.set(GLOBAL_LIVE.get() + num);
        Some(PhysAddr::from(p as usize))
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        let pa = paddr.as_usize();
        let align = OVER_ALIGNED
            .with_borrow_mut(|m| if m.is_empty() { None } else { m.remove(&pa) })
            .unwrap_or(FRAME);
        let layout = global_layout(num, align).expect("layout of a live allocation");
        // SAFETY: `pa` came from `alloc_frames` with this layout.
        unsafe { alloc::dealloc(frame_ptr(pa), layout) };
        GLOBAL_LIVE.set(GLOBAL_LIVE.get() - num);
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}

impl Frames for Global {
    const NAME: &'static str = "Global";

    fn live() -> usize {
        GLOBAL_LIVE.get()
    }
}
