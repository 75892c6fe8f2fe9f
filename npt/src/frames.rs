//! Lists of table frames linked through the frames themselves, so the
//! `no_std` engine needs no heap: the frames reserved for a `map` before it
//! writes anything, and the tables a batch frees after its invalidation.
//!
//! A frame on a list holds the address of the next one in its first word.
//! Frame addresses are granule-aligned, and every format's present test
//! needs a bit below the granule (checked when a table is created), so a
//! walker that still reaches an unlinked table through a stale cached
//! pointer reads that word as an invalid entry.

use memory_addr::{PhysAddr, VirtAddr};

/// How to reach and free the frames of one `PagingHandler`.
#[derive(Clone, Copy)]
pub(crate) struct FrameOps {
    /// `PagingHandler::dealloc_frames`.
    pub dealloc: fn(PhysAddr, usize),
    /// `PagingHandler::phys_to_virt`.
    pub to_virt: fn(PhysAddr) -> VirtAddr,
    /// 4 KiB frames per granule-sized table.
    pub frames_per_table: usize,
}

impl FrameOps {
    #[inline(always)]
    fn word0(&self, pa: u64) -> *mut u64 {
        (self.to_virt)(PhysAddr::from(pa as usize)).as_mut_ptr() as *mut u64
    }
}

/// A list of table frames.
#[derive(Debug, Default)]
pub(crate) struct FrameList {
    head: u64,
    tail: u64,
    len: usize,
}

impl FrameList {
    /// An empty list.
    pub const fn new() -> Self {
        FrameList {
            head: 0,
            tail: 0,
            len: 0,
        }
    }

    /// How many frames it holds.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Adds the table at `pa`; overwrites its first word.
    #[inline]
    pub fn push(&mut self, ops: &FrameOps, pa: u64) {
        let next = if self.len == 0 { 0 } else { self.head };
        // SAFETY: `pa` is a table frame the list now owns, mapped at
        // `to_virt`; an aligned 64-bit volatile store is seen whole.
        unsafe { ops.word0(pa).write_volatile(next) };
        if self.len == 0 {
            self.tail = pa;
        }
        self.head = pa;
        self.len += 1;
    }

    /// Adds the table at `pa` at the end (popped last); overwrites its
    /// first word.
    #[inline]
    pub fn push_back(&mut self, ops: &FrameOps, pa: u64) {
        if self.len == 0 {
            self.push(ops, pa);
            return;
        }
        // SAFETY: `pa` is a table frame the list now owns; `self.tail` is
        // one it owns already, whose first word is its (unused) link.
        unsafe {
            ops.word0(pa).write_volatile(0);
            ops.word0(self.tail).write_volatile(pa);
        }
        self.tail = pa;
        self.len += 1;
    }

    /// Takes a table back, its first word zeroed again.
    #[inline]
    pub fn pop(&mut self, ops: &FrameOps) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let pa = self.head;
        let word = ops.word0(pa);
        // SAFETY: the list owns `pa`; its first word holds the link.
        unsafe {
            self.head = word.read_volatile();
            word.write_volatile(0);
        }
        self.len -= 1;
        Some(pa)
    }

    /// Moves every frame of `other` onto this list.
    pub fn append(&mut self, ops: &FrameOps, other: FrameList) {
        if other.len == 0 {
            return;
        }
        if self.len > 0 {
            // SAFETY: `other.tail` is a frame `other` owned; its first word
            // is its (unused) link.
            unsafe { ops.word0(other.tail).write_volatile(self.head) };
        } else {
            self.tail = other.tail;
        }
        self.head = other.head;
        self.len += other.len;
    }

    /// Gives every frame back to the allocator.
    pub fn free_all(&mut self, ops: &FrameOps) {
        while self.len > 0 {
            let pa = self.head;
            // SAFETY: the list owns `pa`; read its link before freeing it.
            self.head = unsafe { ops.word0(pa).read_volatile() };
            self.len -= 1;
            (ops.dealloc)(PhysAddr::from(pa as usize), ops.frames_per_table);
        }
    }
}
