//! A heap-backed frame allocator for doc examples (not for hypervisors:
//! it treats heap addresses as physical).

use memory_addr::{PhysAddr, VirtAddr};
use page_table_multiarch::PagingHandler;

/// Every allocation is aligned to this, the largest root alignment of the
/// shipped formats, so `dealloc_frames` can rebuild the layout.
const ALIGN: usize = 0x4000;

/// Frames from the global allocator, identity "mapped".
pub struct Frames;

impl PagingHandler for Frames {
    fn alloc_frames(num: usize, align: usize) -> Option<PhysAddr> {
        if align > ALIGN || num == 0 {
            return None;
        }
        let layout = core::alloc::Layout::from_size_align(num * 0x1000, ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        (!p.is_null()).then(|| PhysAddr::from(p as usize))
    }

    fn dealloc_frames(paddr: PhysAddr, num: usize) {
        if let Ok(layout) = core::alloc::Layout::from_size_align(num * 0x1000, ALIGN) {
            // SAFETY: `paddr` came from `alloc_frames` with this layout.
            unsafe { alloc::alloc::dealloc(paddr.as_usize() as *mut u8, layout) };
        }
    }

    fn phys_to_virt(paddr: PhysAddr) -> VirtAddr {
        VirtAddr::from(paddr.as_usize())
    }
}
