//! Partial huge pages are split, as KVM does: on x86 and RISC-V the block
//! is replaced in place by a table of the next level's leaves and
//! invalidated with the batch; on Arm by break-before-make (Arm ARM
//! D8.16.1: the block is made invalid, invalidated by its IPA, then the
//! table is written). The executor below reads the block's entry each time
//! an instruction runs, so the order is proven, not assumed.

use npt::aarch64::Stage2Ipa39;
use npt::flush::{Arg, ContextRegister, FlushExecutor, Instr, Issued, Scope};
use npt::riscv::Sv39x4;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::x86_64::Ept4;
use npt::{Error, FlushError, Format};
use npt_tests::{entry, fresh, gpa, hpa, leaves, live_frames, Table, R, RW};

/// Records each instruction with the value the watched entry held then.
struct Probe {
    watch: usize,
    seen: Vec<(Instr, Vec<Arg>, u64)>,
    fail: bool,
}

impl Probe {
    fn new(watch: usize) -> Self {
        Probe {
            watch,
            seen: Vec::new(),
            fail: false,
        }
    }
}

impl FlushExecutor for Probe {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        if self.fail {
            return Err(FlushError::Unsupported(op.instr));
        }
        self.seen
            .push((op.instr, op.args.to_vec(), entry(self.watch, 0)));
        Ok(())
    }
    fn switch_context(&mut self, _: ContextRegister, _: u64) -> Result<Option<u64>, FlushError> {
        Ok(None)
    }
    fn restore_context(&mut self, _: ContextRegister, _: u64) -> Result<(), FlushError> {
        Ok(())
    }
}

/// The physical address of the entry mapping `gpa` at depth `level`.
fn slot_of<F: Format>(t: &Table<F>, g: usize, level: usize) -> usize {
    let lay = &F::LAYOUT;
    let mut table = t.root_paddr().as_usize();
    for (d, l) in lay.geometry.levels.iter().enumerate() {
        let slot = table + l.index(g) * 8;
        if d == level {
            return slot;
        }
        table = lay.address.decode(entry(slot, 0)) as usize;
    }
    unreachable!()
}

/// Every 4 KiB page of `0..len` from `base` translates as one linear map,
/// except those in `holes`.
fn check_linear<F: Format>(t: &Table<F>, base: usize, h: usize, len: usize, holes: &[usize]) {
    for off in (0..len).step_by(SIZE_4K) {
        let q = t.query(gpa(base + off));
        if holes.contains(&(base + off)) {
            assert!(q.is_err(), "{:#x} still mapped", base + off);
        } else {
            assert_eq!(q.unwrap().hpa, hpa(h + off), "at {:#x}", base + off);
        }
    }
}

#[test]
fn ept_splits_in_place_then_invalidates() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(SIZE_1G), hpa(2 * SIZE_1G), SIZE_1G, RW, true)
        .unwrap()
        .ignore();
    let frames = live_frames();
    let pdpte = slot_of(&t, SIZE_1G, 1);
    let block = entry(pdpte, 0);
    // Unmap one 4 KiB page in the middle: 1G -> 512 x 2M -> 512 x 4K.
    let hole = SIZE_1G + 5 * SIZE_2M + 3 * SIZE_4K;
    let mut probe = Probe::new(pdpte);
    let tf = t.unmap_region_in(gpa(hole), SIZE_4K, &mut probe).unwrap();
    // Replace-then-invalidate: nothing ran during the operation.
    assert!(probe.seen.is_empty());
    assert_ne!(entry(pdpte, 0), block, "the PDPTE now points at a PD");
    assert_eq!(entry(pdpte, 0) & 0x80, 0, "PS clear: a table");
    // Two tables: the PD of 2M leaves and the PT of 4K leaves.
    assert_eq!(live_frames(), frames + 2);
    assert_eq!(t.frames_used(), live_frames());
    // The batch invalidates the old 1G leaf, the old 2M leaf and the page.
    assert_eq!(tf.scope(), Scope::Pages);
    assert_eq!(
        tf.pages().collect::<Vec<_>>(),
        [SIZE_1G, SIZE_1G + 5 * SIZE_2M, hole]
    );
    tf.ignore();
    check_linear(&t, SIZE_1G, 2 * SIZE_1G, 8 * SIZE_2M, &[hole]);
    // 511 2M leaves, 511 4K leaves.
    let l = leaves(&t);
    assert_eq!(l.iter().filter(|l| l.size == SIZE_2M).count(), 511);
    assert_eq!(l.iter().filter(|l| l.size == SIZE_4K).count(), 511);
    // The split leaves keep the block's attributes (RW, WB memory type).
    assert!(l.iter().all(|l| l.flags == RW));
    // Unmapping the rest frees everything again: only the root is left.
    t.unmap_region(gpa(SIZE_1G), hole - SIZE_1G)
        .unwrap()
        .ignore();
    let after = hole + SIZE_4K;
    t.unmap_region(gpa(after), 2 * SIZE_1G - after)
        .unwrap()
        .ignore();
    assert_eq!((t.frames_used(), live_frames()), (1, 1));
}

#[test]
fn protect_of_part_of_a_huge_page_splits_only_what_changes() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(0), hpa(SIZE_2M), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    let frames = live_frames();
    // The same flags: nothing to split, nothing to invalidate.
    let tf = t.protect_region(gpa(SIZE_4K), SIZE_4K, RW).unwrap();
    assert_eq!(tf.scope(), Scope::Nothing);
    assert_eq!(live_frames(), frames);
    // Read-only for 16 KiB inside: one PT.
    let tf = t.protect_region(gpa(SIZE_4K), 4 * SIZE_4K, R).unwrap();
    tf.ignore();
    assert_eq!(live_frames(), frames + 1);
    for p in 0..512 {
        let q = t.query(gpa(p * SIZE_4K)).unwrap();
        let want = if (1..5).contains(&p) { R } else { RW };
        assert_eq!((q.flags, q.size), (want, SIZE_4K), "page {p}");
        assert_eq!(q.hpa, hpa(SIZE_2M + p * SIZE_4K));
    }
}

/// A Stage2Ipa39 table with one 2 MiB block (IPA 2 MiB -> PA 8 MiB), its
/// level-2 entry's address and value.
fn stage2_block() -> (Table<Stage2Ipa39>, usize, u64) {
    let mut t = fresh::<Stage2Ipa39>();
    t.map_region(gpa(SIZE_2M), hpa(4 * SIZE_2M), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    let l2 = slot_of(&t, SIZE_2M, 1);
    let block = entry(l2, 0);
    (t, l2, block)
}

#[test]
fn stage2_splits_by_break_before_make() {
    let (mut t, l2, block) = stage2_block();
    assert_eq!(block & 0b11, 0b01, "a block descriptor");
    let mut probe = Probe::new(l2);
    let tf = t
        .unmap_region_in(gpa(SIZE_2M + SIZE_4K), SIZE_4K, &mut probe)
        .unwrap();
    // During the operation: DSB ISHST; TLBI IPAS2E1IS (IPA >> 12 of the
    // block); DSB ISH; TLBI VMALLE1IS; DSB ISH; ISB, with the block's entry
    // invalid (0) at every step: break, invalidate ...
    let instrs: Vec<Instr> = probe.seen.iter().map(|s| s.0).collect();
    assert_eq!(
        instrs,
        [
            Instr::DsbIshst,
            Instr::TlbiIpas2e1is,
            Instr::DsbIsh,
            Instr::TlbiVmalle1is,
            Instr::DsbIsh,
            Instr::Isb
        ]
    );
    assert_eq!(probe.seen[1].1[0], Arg::Value((SIZE_2M >> 12) as u64));
    assert!(probe.seen.iter().all(|s| s.2 == 0), "{:x?}", probe.seen);
    // ... then make: a table descriptor now.
    assert_eq!(entry(l2, 0) & 0b11, 0b11);
    // The batch invalidates the unmapped page.
    assert_eq!(tf.pages().collect::<Vec<_>>(), [SIZE_2M + SIZE_4K]);
    tf.ignore();
    check_linear(&t, SIZE_2M, 4 * SIZE_2M, SIZE_2M, &[SIZE_2M + SIZE_4K]);
}

#[test]
fn stage2_split_whose_invalidation_fails_changes_nothing() {
    let (mut t, l2, block) = stage2_block();
    let frames = live_frames();
    let mut probe = Probe::new(l2);
    probe.fail = true;
    let e = t
        .unmap_region_in(gpa(SIZE_2M + SIZE_4K), SIZE_4K, &mut probe)
        .unwrap_err();
    assert_eq!(
        e,
        Error::SplitInvalidation {
            gpa: gpa(SIZE_2M),
            size: SIZE_2M
        }
    );
    assert_eq!(entry(l2, 0), block, "the block is back");
    assert_eq!(live_frames(), frames, "the reserved table went back");
    // On this (x86) test host the default form cannot run Arm TLBIs.
    assert!(t.unmap_region(gpa(SIZE_2M + SIZE_4K), SIZE_4K).is_err());
    assert_eq!(entry(l2, 0), block);
}

#[test]
fn sv39x4_splits_in_place_and_fences_the_superpage() {
    let mut t = fresh::<Sv39x4>();
    t.map_region(gpa(SIZE_2M), hpa(4 * SIZE_2M), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    let mut probe = Probe::new(slot_of(&t, SIZE_2M, 1));
    let tf = t
        .protect_region_in(gpa(SIZE_2M), SIZE_4K, R, &mut probe)
        .unwrap();
    assert!(probe.seen.is_empty());
    // HFENCE.GVMA for the old 2M leaf (its address) and the changed page:
    // the same address, recorded once.
    assert_eq!(tf.pages().collect::<Vec<_>>(), [SIZE_2M]);
    tf.ignore();
    assert_eq!(t.query(gpa(SIZE_2M)).unwrap().flags, R);
    assert_eq!(t.query(gpa(SIZE_2M + SIZE_4K)).unwrap().flags, RW);
}

#[test]
fn single_page_unmap_inside_a_huge_page_points_at_unmap_region() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(0), hpa(0), SIZE_2M, RW, true)
        .unwrap()
        .ignore();
    assert_eq!(
        t.unmap(gpa(SIZE_4K)).err(),
        Some(Error::SplitsHugePage {
            gpa: gpa(0),
            size: SIZE_2M
        })
    );
    // A misaligned address is misaligned, not a huge-page matter.
    assert_eq!(
        t.unmap(gpa(0x1001)).err(),
        Some(Error::MisalignedGpa {
            gpa: gpa(0x1001),
            align: SIZE_4K
        })
    );
}

/// Split to 4 KiB pages, then collapse: the original leaf comes back bit
/// for bit and both tables go (after the batch).
fn split_then_collapse<F: Format>(root_frames: usize) {
    let mut t = fresh::<F>();
    t.map_region(gpa(SIZE_1G), hpa(2 * SIZE_1G), SIZE_1G, RW, true)
        .unwrap()
        .ignore();
    let before = leaves(&t);
    assert_eq!(before.len(), 1);
    let mut rec = npt::flush::Recorder::default();
    t.protect_region_in(gpa(SIZE_1G + SIZE_4K), SIZE_4K, R, &mut rec)
        .unwrap()
        .ignore();
    assert_eq!(live_frames(), root_frames + 2);
    // A page that differs blocks the collapse of its table (and so of the
    // 1G above it); the other 511 2M leaves are untouched.
    t.collapse_region_in(gpa(SIZE_1G), SIZE_1G, &mut rec)
        .unwrap()
        .ignore();
    assert_eq!(live_frames(), root_frames + 2);
    t.protect_region_in(gpa(SIZE_1G + SIZE_4K), SIZE_4K, RW, &mut rec)
        .unwrap()
        .ignore();
    let tf = t
        .collapse_region_in(gpa(SIZE_1G), SIZE_1G, &mut rec)
        .unwrap();
    assert_eq!(tf.tables_to_free(), 2);
    assert_eq!(live_frames(), root_frames + 2, "freed only after the batch");
    tf.ignore();
    assert_eq!(live_frames(), root_frames);
    assert_eq!(leaves(&t), before);
}

#[test]
fn collapse_restores_the_huge_page_ept() {
    split_then_collapse::<Ept4>(1 + 1);
}

#[test]
fn collapse_restores_the_huge_page_stage2() {
    split_then_collapse::<Stage2Ipa39>(1);
}

#[test]
fn collapse_restores_the_huge_page_sv39x4() {
    split_then_collapse::<Sv39x4>(4);
}

#[test]
fn stage2_collapse_is_break_before_make() {
    let mut t = fresh::<Stage2Ipa39>();
    t.map_region(gpa(SIZE_2M), hpa(4 * SIZE_2M), SIZE_2M, RW, false)
        .unwrap()
        .ignore();
    let l2 = slot_of(&t, SIZE_2M, 1);
    assert_eq!(entry(l2, 0) & 0b11, 0b11, "a table of pages");
    let mut probe = Probe::new(l2);
    let tf = t
        .collapse_region_in(gpa(SIZE_2M), SIZE_2M, &mut probe)
        .unwrap();
    // DSB ISHST; TLBI VMALLS12E1IS; DSB ISH; ISB with the entry invalid.
    let instrs: Vec<Instr> = probe.seen.iter().map(|s| s.0).collect();
    assert_eq!(
        instrs,
        [
            Instr::DsbIshst,
            Instr::TlbiVmalls12e1is,
            Instr::DsbIsh,
            Instr::Isb
        ]
    );
    assert!(probe.seen.iter().all(|s| s.2 == 0));
    // Then the block: output 8 MiB, and the attributes the pages had.
    assert_eq!(entry(l2, 0) & 0b11, 0b01);
    assert_eq!(entry(l2, 0) & 0xffff_ffff_f000, 4 * SIZE_2M as u64);
    assert_eq!(tf.tables_to_free(), 1);
    tf.ignore();
    let q = t.query(gpa(SIZE_2M + 0x1234)).unwrap();
    assert_eq!(
        (q.hpa, q.size, q.flags),
        (hpa(4 * SIZE_2M + 0x1234), SIZE_2M, RW)
    );
}

/// Accessed and dirty bits set by the walker (EPT A = bit 8, D = bit 9,
/// SDM §29.3.5) do not block a collapse: the block is accessed and dirty
/// if any page was.
#[test]
fn collapse_combines_accessed_and_dirty_bits() {
    let mut t = fresh::<Ept4>();
    t.map_region(gpa(0), hpa(SIZE_2M), SIZE_2M, RW, false)
        .unwrap()
        .ignore();
    let pte = slot_of(&t, 5 * SIZE_4K, 3);
    npt_tests::write_phys(pte, entry(pte, 0) | 0x300);
    let tf = t
        .collapse_region_in(gpa(0), SIZE_2M, &mut npt::flush::Recorder::default())
        .unwrap();
    assert_eq!(tf.tables_to_free(), 1);
    tf.ignore();
    let l = leaves(&t);
    assert_eq!((l.len(), l[0].size), (1, SIZE_2M));
    assert_eq!(l[0].raw & 0x380, 0x380, "PS, A and D set");
    // A page with other permissions still blocks it.
    t.protect_region(gpa(0), SIZE_4K, R).unwrap().ignore();
    t.protect_region(gpa(0), SIZE_4K, RW).unwrap().ignore();
    let pte = slot_of(&t, 0, 3);
    npt_tests::write_phys(pte, entry(pte, 0) & !0x2);
    let tf = t
        .collapse_region_in(gpa(0), SIZE_2M, &mut npt::flush::Recorder::default())
        .unwrap();
    assert_eq!(tf.tables_to_free(), 0);
    tf.ignore();
}
