//! The scenarios every test hypervisor runs, written once. What differs
//! between the architectures (entering a guest routine, what an exit looks
//! like, how a fault is reported, how a flush batch reaches the hardware)
//! sits behind [`Hv`], which each `main.rs` implements.
//!
//! Each scenario prints one verdict (`report.rs`), except [`remap`], which
//! prints `remap_flush`, `remap_stale_control` (a verdict where
//! [`Hv::STALE_SHOWS`], else an INFO line) and `flush_all`.

use crate::frames::Frames;
use crate::report::{fill, pattern, rd, wr, Report};
use core::fmt;
use core::marker::PhantomData;
use npt::flush::Scope;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::{Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF};
use npt::{NestedTable, TlbFlush};

pub const RWX: MF = MF::READ.union(MF::WRITE).union(MF::EXECUTE);
pub const RW: MF = MF::READ.union(MF::WRITE);
pub const RX: MF = MF::READ.union(MF::EXECUTE);

/// A nested table over the test frame pool.
pub type Table<F> = NestedTable<F, Frames>;

/// The value of an npt call the tests cannot go on without.
pub fn ok<T>(r: Result<T, npt::Error>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("npt refused {what}: {e}"),
    }
}

// ------------------------------------------------------------------ layout

/// Guest RAM: 16 pages.
pub const RAM_SIZE: usize = 0x1_0000;

/// Where the shared scenarios put things. Guest-physical addresses sit at
/// fixed offsets from the guest code page, host-physical ones at fixed
/// offsets from the start of guest RAM; none equals its host-physical
/// address.
pub struct Layout {
    /// The guest code page (`guest.s`).
    pub g_code: u64,
    pub g_ram: u64,
    /// In the same leaf table as RAM, with no entry.
    pub g_hole: u64,
    /// Under no level-1 entry (Arm L1, Sv39x4 root, x86 PDPT).
    pub g_hole_upper: u64,
    pub g_ro: u64,
    pub g_nx: u64,
    pub g_remap: u64,
    pub g_2m: u64,
    pub g_ctx: u64,
    pub g_1g: u64,
    pub h_ram: usize,
    pub h_ro: usize,
    pub h_nx: usize,
    /// The three frames `remap` moves `g_remap` between.
    pub h_a: usize,
    pub h_b: usize,
    pub h_c: usize,
    pub h_2m: usize,
    /// 2 MiB mapped with 4 KiB pages, then replaced by `h_ctx_2m`.
    pub h_ctx_4k: usize,
    pub h_ctx_2m: usize,
    /// The 1 GiB leaf at `g_1g`, and a frame in it the guest reaches.
    pub h_1g: usize,
    pub h_1g_probe: usize,
}

impl Layout {
    pub const fn new(
        g_code: u64,
        h_ram: usize,
        g_hole_upper: u64,
        h_1g: usize,
        h_1g_probe: usize,
    ) -> Self {
        let g_ram = g_code + 0x10_0000;
        Layout {
            g_code,
            g_ram,
            g_hole: g_ram + RAM_SIZE as u64 + 0x28,
            g_hole_upper,
            g_ro: g_code + 0x12_0000,
            g_nx: g_code + 0x13_0000,
            g_remap: g_code + 0x14_0000,
            g_2m: g_code + 0x40_0000,
            g_ctx: g_code + 0x60_0000,
            g_1g: 0x1_0000_0000,
            h_ram,
            h_ro: h_ram + 0x1_0000,
            h_nx: h_ram + 0x1_1000,
            h_a: h_ram + 0x1_2000,
            h_b: h_ram + 0x1_3000,
            h_c: h_ram + 0x1_4000,
            h_2m: h_ram + 0x60_0000,
            h_ctx_4k: h_ram + 0x80_0000,
            h_ctx_2m: h_ram + 0xa0_0000,
            h_1g,
            h_1g_probe,
        }
    }
}

/// Maps what the shared scenarios use into a table no hardware walks yet
/// (nothing to invalidate).
pub fn map_common<F: Format>(t: &mut Table<F>, l: &Layout, code_hpa: usize) {
    let page = |t: &mut Table<F>, gpa: u64, hpa: usize, size, flags, what| {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), size, flags),
            what,
        )
        .ignore();
    };
    let region = |t: &mut Table<F>, gpa: u64, hpa: usize, size, flags, huge, what| {
        let gpa = Gpa::from(gpa as usize);
        ok(t.map_region(gpa, Hpa::from(hpa), size, flags, huge), what).ignore();
    };
    page(t, l.g_code, code_hpa, SIZE_4K, RX, "code");
    region(t, l.g_ram, l.h_ram, RAM_SIZE, RWX, true, "RAM");
    page(t, l.g_ro, l.h_ro, SIZE_4K, MF::READ, "RO page");
    page(t, l.g_nx, l.h_nx, SIZE_4K, RW, "NX page");
    page(t, l.g_remap, l.h_a, SIZE_4K, RW, "remap page");
    page(t, l.g_2m, l.h_2m, SIZE_2M, RW, "2M leaf");
    page(t, l.g_1g, l.h_1g, SIZE_1G, RW, "1G leaf");
    region(t, l.g_ctx, l.h_ctx_4k, SIZE_2M, RW, false, "2M of 4K pages");
}

/// Fills the frames the shared scenarios read with [`pattern`].
pub fn fill_common(l: &Layout) {
    fill_frames(&[
        l.h_ro,
        l.h_nx,
        l.h_a,
        l.h_b,
        l.h_c,
        l.h_ctx_4k + 0x5000,
        l.h_ctx_2m + 0x5000,
    ]);
    fill(l.h_ram, RAM_SIZE / 8, |i| pattern(l.h_ram, i));
}

/// Fills each 4 KiB frame with its [`pattern`].
pub fn fill_frames(frames: &[usize]) {
    for &pa in frames {
        fill(pa, 512, |i| pattern(pa, i));
    }
}

// ------------------------------------------------------- the architecture

/// The routines every `guest.s` provides, entered with four argument
/// registers (x0..x3, a0..a3, rdi/rsi/rdx/rcx) set; each ends in the
/// architecture's exit instruction (HVC #0, ECALL, VMMCALL) unless it
/// faults first.
#[derive(Clone, Copy)]
pub enum Routine {
    /// Copies arg2 words from arg0 to arg1, XORed with arg3.
    Copy,
    /// arg1 = [arg0].
    Load,
    /// [arg0] = arg1.
    Store,
    /// Calls or jumps to arg0, which should end the run by itself.
    Call,
}

/// The access a fault reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Access {
    Read,
    Write,
    Fetch,
}

/// The kind of nested-translation fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// No valid entry (Arm translation fault, x86 not-present #NPF).
    Translation,
    /// Mapped, without the access right.
    Permission,
}

/// An exit as the scenarios judge it.
pub enum Class {
    /// The guest ran its exit instruction: its immediate where it has one
    /// (Arm HVC), its address where the exit reports it (RISC-V, x86), and
    /// the argument registers as the guest left them.
    Done {
        imm: Option<u16>,
        pc: Option<u64>,
        x: [u64; 4],
    },
    /// A nested-translation fault at `gpa` whose registers agree with one
    /// another; `kind` and `level` where the architecture reports them.
    Fault {
        gpa: u64,
        access: Access,
        kind: Option<Kind>,
        level: Option<u8>,
    },
    /// Anything else.
    Other,
}

/// An expected fault. `level` is the table level (4 KiB granule: 3 the
/// leaf, 1 the top of a 39-bit space), judged where the architecture
/// reports one.
#[derive(Clone, Copy)]
pub struct Fault {
    pub gpa: u64,
    pub access: Access,
    pub kind: Kind,
    pub level: u8,
}

impl Fault {
    pub const fn new(gpa: u64, access: Access, kind: Kind, level: u8) -> Self {
        Fault {
            gpa,
            access,
            kind,
            level,
        }
    }
}

/// A flush batch as the architecture applied it, judged once the guest has
/// run after it.
pub trait Applied: fmt::Display {
    /// Records what the guest run after the batch saw (x86: the
    /// TLB_CONTROL its VMRUN used).
    fn observe(&mut self);
    /// Whether the batch ran and asked the hardware for what it should.
    fn ok(&self) -> bool;
}

/// One architecture's hypervisor.
pub trait Hv {
    type Exit: Copy + PartialEq + fmt::Debug;
    type Flush: Applied;
    /// Whether QEMU shows a stale translation after a remap whose
    /// invalidation was left out: `remap_stale_control` is then a verdict,
    /// else an INFO line.
    const STALE_SHOWS: bool;
    /// Whether `hole_fault` also stores to a hole.
    const HOLE_STORE: bool;

    /// Runs `routine` with its argument registers set to `x` until the
    /// guest exits to the hypervisor.
    fn run(&mut self, routine: Routine, x: [u64; 4]) -> Self::Exit;
    fn classify(e: &Self::Exit) -> Class;
    /// Writes what the architecture reports for `want` (syndrome registers).
    fn fmt_fault(want: &Fault, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Writes the guest's exit instruction (HVC #imm on Arm) at `pa`.
    fn plant_exit(pa: usize, imm: u16);
    /// Writes what [`ran_planted`] accepts for the exit planted at `gpa`.
    fn fmt_planted(gpa: u64, imm: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Applies a batch of the live table for the next guest run; `want`
    /// is the scope it should have.
    fn flush<F: Format>(&mut self, tf: TlbFlush<F>, want: Scope) -> Self::Flush;
    /// Applies the format's "everything" recipe.
    fn flush_all<F: Format>(&mut self) -> Self::Flush;
    /// Does not apply a batch, for the negative control (x86 also checks
    /// that the host's executor refuses it).
    fn skip_flush<F: Format>(&mut self, rep: &mut Report, tf: TlbFlush<F>) -> Self::Flush;
    /// Checks of its own that run right after [`remap`].
    fn after_remap<F: Format>(&mut self, _rep: &mut Report, _t: &mut Table<F>, _l: &Layout) {}

    /// The value the guest loads from `gpa`, or how it exited instead.
    fn load(&mut self, gpa: u64) -> Result<u64, Self::Exit> {
        let e = self.run(Routine::Load, [gpa, 0, 0, 0]);
        match Self::classify(&e) {
            Class::Done {
                imm: None | Some(0),
                x,
                ..
            } => Ok(x[1]),
            _ => Err(e),
        }
    }

    /// The guest stores `v` at `gpa`.
    fn store(&mut self, gpa: u64, v: u64) -> Self::Exit {
        self.run(Routine::Store, [gpa, v, 0, 0])
    }
}

/// Whether a routine ran to its end.
pub fn done<A: Hv>(e: &A::Exit) -> bool {
    matches!(
        A::classify(e),
        Class::Done {
            imm: None | Some(0),
            ..
        }
    )
}

/// Whether the exit instruction planted at `gpa` (with `imm`) ended the run.
pub fn ran_planted<A: Hv>(e: &A::Exit, gpa: u64, imm: u16) -> bool {
    matches!(A::classify(e), Class::Done { imm: i, pc, .. }
        if i.is_none_or(|i| i == imm) && pc.is_none_or(|pc| pc == gpa) && (i.is_some() || pc.is_some()))
}

/// Whether `e` is the fault `want`.
pub fn faulted<A: Hv>(e: &A::Exit, want: &Fault) -> bool {
    matches!(A::classify(e), Class::Fault { gpa, access, kind, level }
        if gpa == want.gpa
            && access == want.access
            && kind.is_none_or(|k| k == want.kind)
            && level.is_none_or(|l| l == want.level))
}

/// Whether a guest load ended in the fault `want`.
pub fn load_faulted<A: Hv>(r: &Result<u64, A::Exit>, want: &Fault) -> bool {
    matches!(r, Err(e) if faulted::<A>(e, want))
}

/// What the architecture reports for an expected fault, for a detail.
pub fn expect<A: Hv>(want: Fault) -> impl fmt::Display {
    struct Expect<A>(Fault, PhantomData<fn() -> A>);
    impl<A: Hv> fmt::Display for Expect<A> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            A::fmt_fault(&self.0, f)
        }
    }
    Expect::<A>(want, PhantomData)
}

/// What the architecture reports for a planted exit, for a detail.
fn planted<A: Hv>(gpa: u64, imm: u16) -> impl fmt::Display {
    struct Planted<A>(u64, u16, PhantomData<fn() -> A>);
    impl<A: Hv> fmt::Display for Planted<A> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            A::fmt_planted(self.0, self.1, f)
        }
    }
    Planted::<A>(gpa, imm, PhantomData)
}

// --------------------------------------------------------------- scenarios

/// Runs the shared scenarios on the live table `t`, in order, with the
/// architecture's own checks after [`remap`].
pub fn run_all<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &mut Table<F>, l: &Layout) {
    ram_rw(rep, hv, l);
    hole_fault(rep, hv, l);
    ro_write(rep, hv, l);
    nx_fetch(rep, hv, l);
    huge_2m(rep, hv, t, l);
    split_collapse_2m(rep, hv, t, l);
    dirty_log_2m(rep, hv, t, l);
    dirty_log_lazy_2m(rep, hv, t, l);
    huge_1g(rep, hv, t, l);
    remap(rep, hv, t, l);
    hv.after_remap(rep, t, l);
    remap_context(rep, hv, t, l);
    protect_flush(rep, hv, t, l);
}

/// 1. The guest copies 16 words across a page boundary of its RAM, XORed
///    with a key, to another place across another page boundary; the host
///    checks the bytes at the host-physical addresses (and the words
///    around them).
pub fn ram_rw<A: Hv>(rep: &mut Report, hv: &mut A, l: &Layout) {
    let (src_off, dst_off, n, key) = (0x0fc0usize, 0x7fc0usize, 16usize, 0x00ff_00ff_1234_5678u64);
    let (src, dst) = (l.g_ram + src_off as u64, l.g_ram + dst_off as u64);
    let sentinel_before = rd(l.h_ram + dst_off - 8);
    let sentinel_after = rd(l.h_ram + dst_off + 8 * n);
    let e = hv.run(Routine::Copy, [src, dst, n as u64, key]);
    let mut bad = None;
    for i in 0..n {
        let want = pattern(l.h_ram, src_off / 8 + i) ^ key;
        let got = rd(l.h_ram + dst_off + 8 * i);
        if got != want && bad.is_none() {
            bad = Some((i, got, want));
        }
    }
    let sentinels = rd(l.h_ram + dst_off - 8) == sentinel_before
        && rd(l.h_ram + dst_off + 8 * n) == sentinel_after;
    rep.verdict(
        "ram_rw",
        done::<A>(&e) && bad.is_none() && sentinels,
        format_args!(
            "exit={e:x?} gpa {src:#x}->{dst:#x} hpa {:#x}->{:#x} words={n} first_mismatch={bad:x?} sentinels_intact={sentinels}",
            l.h_ram + src_off,
            l.h_ram + dst_off
        ),
    );
}

/// 2. Loads from holes (no leaf entry in a present leaf table; no level-1
///    entry) fault to the hypervisor with the GPA; where
///    [`Hv::HOLE_STORE`], so does a store to the first hole.
pub fn hole_fault<A: Hv>(rep: &mut Report, hv: &mut A, l: &Layout) {
    let leaf_want = Fault::new(l.g_hole, Access::Read, Kind::Translation, 3);
    let upper_want = Fault::new(l.g_hole_upper, Access::Read, Kind::Translation, 1);
    let store_want = Fault::new(l.g_hole + 8, Access::Write, Kind::Translation, 3);
    let leaf = hv.load(l.g_hole);
    let upper = hv.load(l.g_hole_upper);
    let store = A::HOLE_STORE.then(|| hv.store(l.g_hole + 8, 1));
    let store_ok = store.as_ref().is_none_or(|e| faulted::<A>(e, &store_want));
    rep.verdict(
        "hole_fault",
        load_faulted::<A>(&leaf, &leaf_want) && load_faulted::<A>(&upper, &upper_want) && store_ok,
        format_args!(
            "load gpa={:#x} -> {leaf:x?} (want {}); load gpa={:#x} -> {upper:x?} (want {}){}",
            l.g_hole,
            expect::<A>(leaf_want),
            l.g_hole_upper,
            expect::<A>(upper_want),
            StoreProbe::<A>(store, store_want)
        ),
    );
}

/// The store `hole_fault` may make, for its detail.
struct StoreProbe<A: Hv>(Option<A::Exit>, Fault);

impl<A: Hv> fmt::Display for StoreProbe<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(e) => write!(
                f,
                "; store gpa={:#x} -> {e:x?} (want {})",
                self.1.gpa,
                expect::<A>(self.1)
            ),
            None => Ok(()),
        }
    }
}

/// 3a. The read-only page reads, and a write to it is a permission fault
///     that leaves the host frame unchanged.
pub fn ro_write<A: Hv>(rep: &mut Report, hv: &mut A, l: &Layout) {
    let probe = l.g_ro + 0x100;
    let want = Fault::new(probe, Access::Write, Kind::Permission, 3);
    let before = rd(l.h_ro + 0x100);
    let read = hv.load(probe);
    let w = hv.store(probe, 0xdead_beef_dead_beef);
    let after = rd(l.h_ro + 0x100);
    rep.verdict(
        "ro_write",
        read == Ok(before) && faulted::<A>(&w, &want) && after == before,
        format_args!(
            "read={read:x?} (want Ok({before:#x})); write -> {w:x?} (want {}); frame unchanged={}",
            expect::<A>(want),
            after == before
        ),
    );
}

/// 3b. Fetching from the no-execute page is an instruction permission
///     fault (the same exit instruction placed in executable RAM runs: the
///     control), and the page's data still reads.
pub fn nx_fetch<A: Hv>(rep: &mut Report, hv: &mut A, l: &Layout) {
    let want = Fault::new(l.g_nx, Access::Fetch, Kind::Permission, 3);
    let ram_insn = l.g_ram + 0xe000;
    A::plant_exit(l.h_nx, 1);
    A::plant_exit(l.h_ram + 0xe000, 2);
    let control = hv.run(Routine::Call, [ram_insn, 0, 0, 0]);
    let fetch = hv.run(Routine::Call, [l.g_nx, 0, 0, 0]);
    let data = hv.load(l.g_nx + 8);
    rep.verdict(
        "nx_fetch",
        ran_planted::<A>(&control, ram_insn, 2)
            && faulted::<A>(&fetch, &want)
            && data == Ok(rd(l.h_nx + 8)),
        format_args!(
            "exec from RAM -> {control:x?} (want {}); exec gpa={:#x} -> {fetch:x?} (want {}); data read={data:x?} (want Ok({:#x}))",
            planted::<A>(ram_insn, 2),
            l.g_nx,
            expect::<A>(want),
            rd(l.h_nx + 8)
        ),
    );
}

/// 4a. A 2 MiB leaf: the guest copies from its middle to its last bytes.
pub fn huge_2m<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &Table<F>, l: &Layout) {
    let q = t.query(Gpa::from(l.g_2m as usize + 0x1f_f000));
    let (src, dst, n) = (0x10_0000usize, SIZE_2M - 64, 8usize);
    let (h_src, h_dst) = (l.h_2m + src, l.h_2m + dst);
    let (g_src, g_dst) = (l.g_2m + src as u64, l.g_2m + dst as u64);
    fill(h_src, n, |i| pattern(h_src, i));
    fill(h_dst, n, |_| 0);
    let e = hv.run(Routine::Copy, [g_src, g_dst, n as u64, 0]);
    let copied = (0..n).all(|i| rd(h_dst + 8 * i) == pattern(h_src, i));
    let leaf = q.map(|q| q.size) == Ok(SIZE_2M);
    rep.verdict(
        "huge_2m",
        leaf && done::<A>(&e) && copied,
        format_args!(
            "leaf={q:x?}; gpa {g_src:#x}->{g_dst:#x} hpa {h_src:#x}->{h_dst:#x} exit={e:x?} copied={copied}"
        ),
    );
}

/// 4a'. Unmapping one 4 KiB page inside the 2 MiB leaf the guest has used
///      splits it (Arm: break-before-make with the host's TLBIs during
///      the operation; x86 and RISC-V: the table replaces the leaf, the
///      batch invalidates): the page faults, its neighbours still read
///      their frames. Mapping the page back and collapsing rebuilds the
///      2 MiB leaf, which the guest reads through again.
pub fn split_collapse_2m<A: Hv, F: Format>(
    rep: &mut Report,
    hv: &mut A,
    t: &mut Table<F>,
    l: &Layout,
) {
    let (near, hole) = (0x1000usize, 0x3000usize);
    wr(l.h_2m + near, 0x5917_5917_5917_5917);
    wr(l.h_2m + hole, 0x5933_5933_5933_5933);
    let g = |off: usize| l.g_2m + off as u64;
    let warm = (hv.load(g(near)), hv.load(g(hole)));
    let tf = ok(
        t.unmap_region(Gpa::from(g(hole) as usize), 0x1000),
        "unmap 4K of 2M",
    );
    let split_scope = tf.scope();
    let mut fl = hv.flush(tf, Scope::Pages);
    let want_fault = Fault::new(g(hole), Access::Read, Kind::Translation, 3);
    // One guest run between the flush and `observe` (x86 checks the VMRUN).
    let h_after = hv.load(g(hole));
    fl.observe();
    let n_after = hv.load(g(near));
    let leaf = t.query(Gpa::from(g(near) as usize)).map(|q| q.size);
    let split_ok = warm == (Ok(0x5917_5917_5917_5917), Ok(0x5933_5933_5933_5933))
        && split_scope == Scope::Pages
        && fl.ok()
        && n_after == Ok(0x5917_5917_5917_5917)
        && load_faulted::<A>(&h_after, &want_fault)
        && leaf == Ok(0x1000);
    rep.verdict(
        "split_2m",
        split_ok,
        format_args!(
            "before={warm:x?}; unmap 4K at {:#x}: scope={split_scope:?}, {fl}; near={n_after:x?} (want 0x5917591759175917), hole={h_after:x?} (want {}), leaf size now {leaf:x?}",
            g(hole),
            expect::<A>(want_fault)
        ),
    );

    ok(
        t.map(
            Gpa::from(g(hole) as usize),
            Hpa::from(l.h_2m + hole),
            0x1000,
            RW,
        ),
        "map the page back",
    )
    .ignore();
    let tf = ok(
        t.collapse_region_in(Gpa::from(l.g_2m as usize), SIZE_2M, &mut npt::instr::Host),
        "collapse",
    );
    let frees = tf.tables_to_free();
    let want_scope = if F::FLUSH.split_break_before_make {
        // The context was invalidated between break and make.
        Scope::Nothing
    } else if F::FLUSH.page_covers_tables && 512 <= F::FLUSH.page_limit {
        Scope::Pages
    } else {
        Scope::Context
    };
    let scope = tf.scope();
    let mut fl = hv.flush(tf, want_scope);
    let h2 = hv.load(g(hole));
    fl.observe();
    let n2 = hv.load(g(near));
    let leaf = t.query(Gpa::from(g(near) as usize)).map(|q| q.size);
    rep.verdict(
        "collapse_2m",
        frees == 1
            && scope == want_scope
            && fl.ok()
            && n2 == Ok(0x5917_5917_5917_5917)
            && h2 == Ok(0x5933_5933_5933_5933)
            && leaf == Ok(SIZE_2M),
        format_args!(
            "collapse: tables_to_free={frees} (want 1), scope={scope:?} (want {want_scope:?}), {fl}; near={n2:x?} hole={h2:x?}, leaf size {leaf:x?} (want 0x200000)"
        ),
    );
}

/// 4a''. Dirty logging on the 2 MiB leaf: npt splits and write-protects
///       it; the guest writes a known set of pages, each first write a
///       permission fault npt's handler turns into a dirty page; the
///       harvest must give exactly that set. Two rounds, so re-arming is
///       checked; then logging stops and the leaf is collapsed again.
pub fn dirty_log_2m<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &mut Table<F>, l: &Layout) {
    let base = l.g_2m as usize;
    let mut ok_all = true;
    let mut detail = RoundDetail {
        rounds: [(0, [0; 3], false); 2],
    };
    let tf = ok(
        t.start_dirty_log_in(Gpa::from(base), SIZE_2M, &mut npt::instr::Host),
        "start dirty log",
    );
    let start_scope = tf.scope();
    let mut fl = hv.flush(tf, start_scope);
    let mut first = true;
    for (round, pages) in [[0x1usize, 0x5, 0x100], [0x2, 0x5, 0x1ff]]
        .iter()
        .enumerate()
    {
        let mut faults = 0;
        for &pg in pages {
            let g = (base + pg * SIZE_4K + 0x40) as u64;
            let value = 0xd1d1_0000_0000_0000 | (round as u64) << 16 | pg as u64;
            let mut e = hv.store(g, value);
            if first {
                fl.observe();
                ok_all &= fl.ok();
                first = false;
            }
            let want = Fault::new(g, Access::Write, Kind::Permission, 3);
            if faulted::<A>(&e, &want) {
                faults += 1;
                match t.handle_write_fault(Gpa::from(g as usize)) {
                    Ok(npt::WriteFault::Logged(tf)) => {
                        let mut f2 = hv.flush(tf, Scope::Pages);
                        e = hv.store(g, value);
                        f2.observe();
                        ok_all &= f2.ok();
                    }
                    _ => ok_all = false,
                }
            }
            ok_all &= done::<A>(&e) && rd(l.h_2m + pg * SIZE_4K + 0x40) == value;
            // A second write to the now dirty page does not fault.
            ok_all &= done::<A>(&hv.store(g + 8, value));
        }
        let mut bitmap = [0u64; 8];
        let tf = ok(
            t.harvest_dirty(Gpa::from(base), SIZE_2M, &mut bitmap),
            "harvest",
        );
        let got: [usize; 3] = {
            let mut v = [usize::MAX; 3];
            let mut n = 0;
            for i in 0..512 {
                if bitmap[i / 64] >> (i % 64) & 1 == 1 {
                    if n < 3 {
                        v[n] = i;
                    }
                    n += 1;
                }
            }
            ok_all &= n == 3;
            v
        };
        let mut fl2 = hv.flush(tf, Scope::Pages);
        // The re-armed page faults again.
        let g = (base + pages[0] * SIZE_4K + 0x80) as u64;
        let again = hv.store(g, 1);
        fl2.observe();
        let refaults = faulted::<A>(&again, &Fault::new(g, Access::Write, Kind::Permission, 3));
        if refaults {
            if let Ok(npt::WriteFault::Logged(tf)) = t.handle_write_fault(Gpa::from(g as usize)) {
                let mut f3 = hv.flush(tf, Scope::Pages);
                ok_all &= done::<A>(&hv.store(g, 1));
                f3.observe();
            }
            // That write belongs to the next round's harvest: take it out.
            let mut scratch = [0u64; 8];
            let tf = ok(
                t.harvest_dirty(Gpa::from(base), SIZE_2M, &mut scratch),
                "harvest",
            );
            hv.flush(tf, Scope::Pages).observe();
        }
        ok_all &= fl2.ok() && refaults && got == *pages && faults == 3;
        detail.push_round(round, faults, got, refaults);
    }
    let tf = ok(t.stop_dirty_log(Gpa::from(base), SIZE_2M), "stop dirty log");
    let mut fl = hv.flush(tf, Scope::Context);
    let e = hv.store((base + 0x3000) as u64, 2);
    fl.observe();
    let tf = ok(
        t.collapse_region_in(Gpa::from(base), SIZE_2M, &mut npt::instr::Host),
        "collapse",
    );
    let collapsed = tf.tables_to_free() == 1;
    let want_scope = tf.scope();
    let mut fl2 = hv.flush(tf, want_scope);
    let read = hv.load((base + 0x5040) as u64);
    fl2.observe();
    ok_all &= fl.ok() && done::<A>(&e) && collapsed && fl2.ok() && read.is_ok();
    rep.verdict(
        "dirty_log",
        ok_all,
        format_args!(
            "start scope={start_scope:?}; {detail}; stop: write ok={}; collapsed={collapsed}, read={read:x?}",
            done::<A>(&e)
        ),
    );
}

/// 4a, lazily. Dirty logging that splits on the first write fault
///        (`HugePages::SplitOnFault`): the 2 MiB leaf stays one leaf,
///        write-protected; the guest's first store in it faults, npt's
///        handler splits it (Arm: break-before-make with the host's TLBIs
///        inside the handler) and makes only that page writable; a store
///        to the next page faults once more, without a split; the harvest
///        is those two pages. Then logging stops and the leaf collapses.
pub fn dirty_log_lazy_2m<A: Hv, F: Format>(
    rep: &mut Report,
    hv: &mut A,
    t: &mut Table<F>,
    l: &Layout,
) {
    let base = l.g_2m as usize;
    let tf = ok(
        t.start_dirty_log_with(
            Gpa::from(base),
            SIZE_2M,
            npt::HugePages::SplitOnFault,
            &mut npt::instr::Host,
        ),
        "start lazy dirty log",
    );
    let scope = tf.scope();
    let mut fl = hv.flush(tf, scope);
    let whole = t
        .query(Gpa::from(base))
        .map(|q| (q.size, q.flags.contains(MF::WRITE)));
    let mut pass = whole == Ok((SIZE_2M, false));
    let mut faults = [false; 2];
    let mut sizes = [0usize; 2];
    for (k, pg) in [0x10usize, 0x11].into_iter().enumerate() {
        let g = (base + pg * SIZE_4K + 0x18) as u64;
        let v = 0x1a2e_0000_0000_0000 | pg as u64;
        let mut e = hv.store(g, v);
        if k == 0 {
            fl.observe();
            pass &= fl.ok();
        }
        // The first fault is on the 2 MiB leaf (level 2), the second on a
        // 4 KiB page (level 3), where the architecture reports a level.
        let level = if k == 0 { 2 } else { 3 };
        faults[k] = faulted::<A>(&e, &Fault::new(g, Access::Write, Kind::Permission, level));
        if faults[k] {
            if let Ok(npt::WriteFault::Logged(tf)) = t.handle_write_fault(Gpa::from(g as usize)) {
                let mut f2 = hv.flush(tf, Scope::Pages);
                e = hv.store(g, v);
                f2.observe();
                pass &= f2.ok();
            }
        }
        sizes[k] = t.query(Gpa::from(base)).map_or(0, |q| q.size);
        pass &= done::<A>(&e) && rd(l.h_2m + pg * SIZE_4K + 0x18) == v;
    }
    let neighbour = t
        .query(Gpa::from(base + 0x12 * SIZE_4K))
        .map(|q| q.flags.contains(MF::WRITE));
    let mut bitmap = [0u64; 8];
    let tf = ok(
        t.harvest_dirty(Gpa::from(base), SIZE_2M, &mut bitmap),
        "harvest",
    );
    hv.flush(tf, Scope::Pages).observe();
    let harvested = bitmap[0] == 0x3 << 16 && bitmap[1..].iter().all(|w| *w == 0);
    let tf = ok(t.stop_dirty_log(Gpa::from(base), SIZE_2M), "stop dirty log");
    hv.flush(tf, Scope::Context).observe();
    let tf = ok(
        t.collapse_region_in(Gpa::from(base), SIZE_2M, &mut npt::instr::Host),
        "collapse",
    );
    let want_scope = tf.scope();
    let mut fl2 = hv.flush(tf, want_scope);
    let read = hv.load((base + 0x10 * SIZE_4K + 0x18) as u64);
    fl2.observe();
    let after = t.query(Gpa::from(base)).map(|q| q.size);
    pass &= faults == [true, true]
        && sizes == [SIZE_4K, SIZE_4K]
        && neighbour == Ok(false)
        && harvested
        && fl2.ok()
        && read == Ok(0x1a2e_0000_0000_0010)
        && after == Ok(SIZE_2M);
    rep.verdict(
        "dirty_log_lazy",
        pass,
        format_args!(
            "start: scope={scope:?}, {fl}, leaf (size, writable)={whole:x?} (want (0x200000, false)); store to page 0x10 faulted={} -> split, leaf size {:#x}; page 0x11 faulted={} (size {:#x}); page 0x12 writable={neighbour:?} (want false); harvest bitmap[0]={:#x} (want 0x30000); stop, collapse: read={read:x?}, leaf size {after:x?}",
            faults[0], sizes[0], faults[1], sizes[1], bitmap[0]
        ),
    );
}

/// The per-round facts `dirty_log_2m` reports.
struct RoundDetail {
    rounds: [(usize, [usize; 3], bool); 2],
}

impl RoundDetail {
    fn push_round(&mut self, round: usize, faults: usize, got: [usize; 3], refaults: bool) {
        if let Some(r) = self.rounds.get_mut(round) {
            *r = (faults, got, refaults);
        }
    }
}

impl fmt::Display for RoundDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (faults, got, refaults)) in self.rounds.iter().enumerate() {
            write!(
                f,
                "round {i}: {faults} logging faults, harvested pages {got:x?}, re-armed page faults again={refaults}; "
            )?;
        }
        Ok(())
    }
}

/// 4b. A 1 GiB leaf over host memory: the guest reads and writes a frame
///     in it.
pub fn huge_1g<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &Table<F>, l: &Layout) {
    let gpa = l.g_1g + (l.h_1g_probe - l.h_1g) as u64;
    let q = t.query(Gpa::from(gpa as usize));
    wr(l.h_1g_probe, 0x1611_1611_1611_1611);
    let read = hv.load(gpa);
    let w = hv.store(gpa + 0x100, 0x1633_1633_1633_1633);
    let written = rd(l.h_1g_probe + 0x100);
    let leaf = q.map(|q| (q.size, q.hpa.as_usize())) == Ok((SIZE_1G, l.h_1g_probe));
    rep.verdict(
        "huge_1g",
        leaf && read == Ok(0x1611_1611_1611_1611)
            && done::<A>(&w)
            && written == 0x1633_1633_1633_1633,
        format_args!(
            "leaf={q:x?}; read gpa {gpa:#x} (hpa {:#x}) = {read:x?}; wrote gpa {:#x} exit={w:x?}, hpa {:#x} holds {written:#x}",
            l.h_1g_probe,
            gpa + 0x100,
            l.h_1g_probe + 0x100
        ),
    );
}

/// Remaps `gpa` (a 4 KiB page) to `hpa`; returns the merged invalidations.
pub fn remap_page<F: Format>(t: &mut Table<F>, gpa: u64, hpa: usize) -> TlbFlush<F> {
    let (_, mut tf) = ok(t.unmap(Gpa::from(gpa as usize)), "unmap");
    tf.merge(ok(
        t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, RW),
        "map",
    ))
    .unwrap();
    tf
}

/// 5. Remapping a page the guest has used: after npt's batch the guest
///    sees the new frame (`remap_flush`). Without it (the negative
///    control) it still sees the old one where QEMU keeps stale entries
///    (judged only there: [`Hv::STALE_SHOWS`]); npt's "all" recipe then
///    brings the new one (`flush_all`).
pub fn remap<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &mut Table<F>, l: &Layout) {
    let (a, b, c) = (pattern(l.h_a, 0), pattern(l.h_b, 0), pattern(l.h_c, 0));

    let warm = hv.load(l.g_remap);
    let tf = remap_page(t, l.g_remap, l.h_b);
    let scope = tf.scope();
    let pages = tf.page_count();
    let mut fl = hv.flush(tf, Scope::Pages);
    let after = hv.load(l.g_remap);
    fl.observe();
    rep.verdict(
        "remap_flush",
        warm == Ok(a) && scope == Scope::Pages && fl.ok() && after == Ok(b),
        format_args!(
            "before={warm:x?} (frame A {a:#x}); remap to B, batch scope={scope:?} pages={pages}, {fl}; after={after:x?} (want frame B {b:#x})"
        ),
    );

    let warm = hv.load(l.g_remap);
    let tf = remap_page(t, l.g_remap, l.h_c);
    let mut skipped = hv.skip_flush(rep, tf);
    let seen = hv.load(l.g_remap);
    skipped.observe();
    if A::STALE_SHOWS {
        rep.verdict(
            "remap_stale_control",
            warm == Ok(b) && seen == Ok(b),
            format_args!(
                "before={warm:x?}; remap to C, {skipped}; after={seen:x?} (want the stale frame B {b:#x}, not C {c:#x})"
            ),
        );
    } else {
        let what = if seen == Ok(b) {
            "stale (old frame B)"
        } else if seen == Ok(c) {
            "fresh (new frame C)"
        } else {
            "neither"
        };
        crate::println!(
            "INFO remap_stale_control observed={what} detail=before={warm:x?}; remap to C, {skipped}; after={seen:x?}"
        );
    }

    let mut all = hv.flush_all::<F>();
    let fresh = hv.load(l.g_remap);
    all.observe();
    rep.verdict(
        "flush_all",
        all.ok() && fresh == Ok(c),
        format_args!("flush_all: {all}; after={fresh:x?} (want frame C {c:#x})"),
    );
}

/// 5b. 2 MiB of 4 KiB pages the guest has used are unmapped (their table
///     unlinked whole, freed once the batch has run) and replaced by a
///     2 MiB leaf elsewhere. Where the per-page recipe covers table entries
///     and 512 pages are within the format's page limit (Arm: 512 TLBI
///     IPAS2E1IS) the batch goes page by page, else context-wide.
pub fn remap_context<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &mut Table<F>, l: &Layout) {
    let probe = l.g_ctx + 0x5000;
    let warm = hv.load(probe);
    let mut tf = ok(
        t.unmap_region(Gpa::from(l.g_ctx as usize), SIZE_2M),
        "unmap 2M",
    );
    tf.merge(ok(
        t.map(
            Gpa::from(l.g_ctx as usize),
            Hpa::from(l.h_ctx_2m),
            SIZE_2M,
            RW,
        ),
        "map 2M",
    ))
    .unwrap();
    let scope = tf.scope();
    let frees = tf.tables_to_free();
    let want_scope = if F::FLUSH.page_covers_tables && 512 <= F::FLUSH.page_limit {
        Scope::Pages
    } else {
        Scope::Context
    };
    let mut fl = hv.flush(tf, want_scope);
    let after = hv.load(probe);
    fl.observe();
    let (old, new) = (
        pattern(l.h_ctx_4k + 0x5000, 0),
        pattern(l.h_ctx_2m + 0x5000, 0),
    );
    rep.verdict(
        "remap_context",
        warm == Ok(old) && scope == want_scope && fl.ok() && after == Ok(new),
        format_args!(
            "before={warm:x?} (want {old:#x}); 512 pages -> one 2M leaf, scope={scope:?} (want {want_scope:?}) tables_to_free={frees}, {fl}; after={after:x?} (want {new:#x})"
        ),
    );
}

/// 5c. Write-protecting a page the guest has written: after npt's batch
///     the next write is a permission fault.
pub fn protect_flush<A: Hv, F: Format>(rep: &mut Report, hv: &mut A, t: &mut Table<F>, l: &Layout) {
    let probe = l.g_ram + 0xf008;
    let want = Fault::new(probe, Access::Write, Kind::Permission, 3);
    let warm = hv.store(probe, 0x7777_0000_0000_0001);
    let tf = ok(
        t.protect(Gpa::from((probe & !0xfff) as usize), MF::READ),
        "protect",
    );
    let scope = tf.scope();
    let mut fl = hv.flush(tf, Scope::Pages);
    let w = hv.store(probe, 0x7777_0000_0000_0002);
    fl.observe();
    let held = rd(l.h_ram + 0xf008);
    rep.verdict(
        "protect_flush",
        done::<A>(&warm) && fl.ok() && faulted::<A>(&w, &want) && held == 0x7777_0000_0000_0001,
        format_args!(
            "write before={warm:x?}; protect READ, scope={scope:?}, {fl}; write after -> {w:x?} (want {}); hpa holds {held:#x}",
            expect::<A>(want)
        ),
    );
}

/// Last: every frame npt took from the pool is back once the tables are
/// gone (`what` says which).
pub fn frames_freed(rep: &mut Report, what: &str) {
    let live = Frames::live();
    rep.verdict(
        "frames_freed",
        live == 0,
        format_args!("frames still allocated after dropping {what}: {live}"),
    );
}
