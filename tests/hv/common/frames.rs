//! The frame allocator a hypervisor hands npt: 4 KiB frames from a static
//! array, first fit with the alignment npt asks for (16 KiB for an Sv39x4
//! root, 8 KiB for a Stage2Ipa40 root). The MMU is off where the
//! hypervisor runs (EL2, M-mode), so physical addresses are used as they
//! are (identity `phys_to_virt`).
//! On x86_64 the hypervisor runs in long mode on its own identity map of
//! 0..4 GiB, which keeps `phys_to_virt` the identity there too.

use core::cell::UnsafeCell;
use npt::PagingHandler;
use npt::{PhysAddr, VirtAddr};

/// Frames in the pool: room for a 16 KiB-granule root of 16 concatenated
/// tables (256 KiB, aligned to its size) and its next-level tables.
pub const POOL_FRAMES: usize = 192;
const FRAME: usize = 4096;

#[repr(C, align(16384))]
struct Arena(UnsafeCell<[[u8; FRAME]; POOL_FRAMES]>);
struct Used(UnsafeCell<[bool; POOL_FRAMES]>);

// SAFETY: the hypervisor runs on one CPU with interrupts masked; nothing
// touches the pool concurrently.
unsafe impl Sync for Arena {}
// SAFETY: as above.
unsafe impl Sync for Used {}

static ARENA: Arena = Arena(UnsafeCell::new([[0; FRAME]; POOL_FRAMES]));
static USED: Used = Used(UnsafeCell::new([false; POOL_FRAMES]));

/// npt's frame source.
pub struct Frames;

impl Frames {
    fn base() -> usize {
        ARENA.0.get() as usize
    }

    fn used() -> &'static mut [bool; POOL_FRAMES] {
        // SAFETY: single CPU, and no caller keeps the reference.
        unsafe { &mut *USED.0.get() }
    }

    /// Frames currently handed out.
    pub fn live() -> usize {
        Self::used().iter().filter(|u| **u).count()
    }

    /// Whether `pa` lies in the pool.
    pub fn contains(pa: usize) -> bool {
        pa >= Self::base() && pa < Self::base() + POOL_FRAMES * FRAME
    }
}

impl PagingHandler for Frames {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        let used = Self::used();
        let align = align.max(FRAME);
        let mut i = 0;
        while i + num <= POOL_FRAMES {
            let pa = Self::base() + i * FRAME;
            if pa.is_multiple_of(align) && used[i..i + num].iter().all(|u| !*u) {
                used[i..i + num].iter_mut().for_each(|u| *u = true);
                return Some(PhysAddr::from(pa));
            }
            i += 1;
        }
        None
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        let pa = paddr.as_usize();
        assert!(
            Self::contains(pa) && pa.is_multiple_of(FRAME),
            "dealloc of a frame not from the pool: {pa:#x}"
        );
        let first = (pa - Self::base()) / FRAME;
        let used = Self::used();
        for u in &mut used[first..first + num] {
            assert!(*u, "double free of frame {pa:#x}");
            *u = false;
        }
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}
