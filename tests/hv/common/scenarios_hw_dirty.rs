//! Dirty logging and access tracking by the CPU's own accessed and dirty
//! bits (npt's `start_hardware_dirty_log_in`, `harvest_hardware_dirty`,
//! `test_and_clear_young`), on the x86 hypervisors: AMD NPT always has
//! them; EPT when EPTP bit 6 is set (a table made with `ad: 1`).

use crate::report::{rd, Report};
use crate::scenarios::{done, ok, Applied, Hv, Table};
use core::fmt;
use npt::flush::Scope;
use npt::size::{SIZE_2M, SIZE_4K};
use npt::{Format, GuestPhysAddr as Gpa};

/// The pages of a 2 MiB bitmap that are set.
struct Pages([u64; 8]);

impl Pages {
    fn list(&self) -> impl Iterator<Item = usize> + '_ {
        (0..512).filter(|i| self.0[i / 64] >> (i % 64) & 1 == 1)
    }

    fn is(&self, want: &[usize]) -> bool {
        self.list().eq(want.iter().copied())
    }
}

impl fmt::Display for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (n, i) in self.list().enumerate() {
            if n > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{i:#x}")?;
        }
        write!(f, "]")
    }
}

/// `hw_dirty_log`: the 2 MiB leaf at `base` (mapped read-write, host frames
/// at `h_base`) is logged by the CPU's dirty bit: npt splits it and clears
/// the bits; the guest writes a known set of pages (no fault: the CPU just
/// sets D) and reads another; the harvest must give exactly the written
/// set, and a second harvest nothing, in two rounds. `hw_young`: then
/// every page the guest used since the start (written or read) is young
/// once, and after the guest reads one more page, only that one.
pub fn hw_dirty_log<A: Hv, F: Format>(
    rep: &mut Report,
    hv: &mut A,
    t: &mut Table<F>,
    base: u64,
    h_base: usize,
) {
    let b = base as usize;
    let tf = ok(
        t.start_hardware_dirty_log_in(Gpa::from(b), SIZE_2M, &mut npt::instr::Host),
        "start hardware dirty log",
    );
    let scope = tf.scope();
    let mut fl = hv.flush(tf, scope);
    // The split pages inherit the huge leaf's accessed bit (the scenarios
    // before used it): start the young count afresh.
    let mut scratch = [0u64; 8];
    let tf = ok(
        t.test_and_clear_young(Gpa::from(b), SIZE_2M, &mut scratch),
        "young reset",
    );
    hv.flush(tf, Scope::Pages).observe();
    let mut pass = t.hardware_dirty();
    let mut detail: [(Pages, Pages, bool); 2] = [
        (Pages([0; 8]), Pages([0; 8]), false),
        (Pages([0; 8]), Pages([0; 8]), false),
    ];
    let rounds: [[usize; 3]; 2] = [[0x1, 0x5, 0x100], [0x2, 0x5, 0x1ff]];
    let read_page = 0x7;
    for (r, pages) in rounds.iter().enumerate() {
        let mut wrote = true;
        for (k, &pg) in pages.iter().enumerate() {
            let g = base + (pg * SIZE_4K) as u64 + 0x80;
            let v = 0x4844_0000_0000_0000 | (r as u64) << 16 | pg as u64;
            let e = hv.store(g, v);
            if r == 0 && k == 0 {
                fl.observe();
                pass &= fl.ok();
            }
            wrote &= done::<A>(&e) && rd(h_base + pg * SIZE_4K + 0x80) == v;
        }
        let read = hv.load(base + (read_page * SIZE_4K) as u64);
        let mut bits = Pages([0; 8]);
        let tf = ok(
            t.harvest_hardware_dirty(Gpa::from(b), SIZE_2M, &mut bits.0),
            "harvest",
        );
        let invalidated = tf.page_count();
        hv.flush(tf, Scope::Pages).observe();
        let mut again = Pages([0; 8]);
        let tf = ok(
            t.harvest_hardware_dirty(Gpa::from(b), SIZE_2M, &mut again.0),
            "harvest again",
        );
        let empty = tf.scope() == Scope::Nothing;
        hv.flush(tf, Scope::Nothing).observe();
        let ok_round =
            wrote && read.is_ok() && bits.is(pages) && invalidated == 3 && again.is(&[]) && empty;
        pass &= ok_round;
        if let Some(d) = detail.get_mut(r) {
            *d = (bits, again, wrote && read.is_ok());
        }
    }
    rep.verdict(
        "hw_dirty_log",
        pass,
        format_args!(
            "start: scope={scope:?}, {fl}; round 0: guest writes {:x?} (ran={}), harvest {} then {}; round 1: writes {:x?} (ran={}), harvest {} then {}",
            rounds[0], detail[0].2, detail[0].0, detail[0].1, rounds[1], detail[1].2, detail[1].0, detail[1].1
        ),
    );

    let mut young = Pages([0; 8]);
    let tf = ok(
        t.test_and_clear_young(Gpa::from(b), SIZE_2M, &mut young.0),
        "young",
    );
    hv.flush(tf, Scope::Pages).observe();
    let read = hv.load(base + (0x9 * SIZE_4K) as u64 + 8);
    let mut young2 = Pages([0; 8]);
    let tf = ok(
        t.test_and_clear_young(Gpa::from(b), SIZE_2M, &mut young2.0),
        "young again",
    );
    hv.flush(tf, Scope::Pages).observe();
    // Stop: (Arm) the logged leaves get their write permission back; a
    // write then goes straight through.
    let tf = ok(t.stop_hardware_dirty_log(Gpa::from(b), SIZE_2M), "stop");
    // Arm: every logged page relaxed (512: Arm's page limit, one TLBI
    // each); with a dirty bit nothing to undo.
    let stop_want = if F::LAYOUT.hw_clean != 0 {
        Scope::Pages
    } else {
        Scope::Nothing
    };
    let stop_scope = tf.scope();
    let mut fl = hv.flush(tf, stop_want);
    let g = base + (0x30 * SIZE_4K) as u64;
    let e = hv.store(g, 0x5709);
    fl.observe();
    let stopped = stop_scope == stop_want
        && done::<A>(&e)
        && rd(h_base + 0x30 * SIZE_4K) == 0x5709
        && fl.ok();
    let want = [0x1, 0x2, 0x5, read_page, 0x100, 0x1ff];
    rep.verdict(
        "hw_young",
        young.is(&want) && read.is_ok() && young2.is(&[0x9]) && stopped,
        format_args!(
            "young since the start: {young} (want {want:x?}); guest reads page 0x9 -> {read:x?}; young: {young2} (want [0x9]); after stop (scope {stop_scope:?}, want {stop_want:?}), {fl}, a store to page 0x30 -> {e:x?}"
        ),
    );
}
