//! Scenarios the RISC-V and x86_64 hypervisors share (their single table
//! maps GPAs with bit 39 set; AArch64 checks those on its Stage2Ipa40
//! table instead, and does not map after a fault).

use crate::report::{pattern, rd, Report};
use crate::scenarios::{done, expect, load_faulted, ok, Access, Applied, Fault, Hv, Kind};
use crate::scenarios::{Layout, Table, RW};
use npt::flush::Scope;
use npt::size::SIZE_4K;
use npt::{Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa};

/// GPA bit 39: the first bit above a 39-bit space.
pub const BIT39: u64 = 1 << 39;

/// 5d. Mapping `g_new` (to `h_new`) right after the guest has faulted on
///     it: npt's batch has the scope `want` (RISC-V may cache the invalid
///     entry, so npt fences on map too; x86 caches no not-present entries,
///     so nothing), and the guest then reaches the page.
pub fn map_after_fault<A: Hv, F: Format>(
    rep: &mut Report,
    hv: &mut A,
    t: &mut Table<F>,
    (g_new, h_new): (u64, usize),
    want: Scope,
) {
    let probe = g_new + 0x10;
    let hole = Fault::new(probe, Access::Read, Kind::Translation, 3);
    let before = hv.load(probe);
    let tf = ok(
        t.map(Gpa::from(g_new as usize), Hpa::from(h_new), SIZE_4K, RW),
        "map",
    );
    let scope = tf.scope();
    let mut fl = hv.flush(tf, want);
    let after = hv.load(probe);
    fl.observe();
    rep.verdict(
        "map_after_fault",
        load_faulted::<A>(&before, &hole)
            && scope == want
            && fl.ok()
            && after == Ok(pattern(h_new, 2)),
        format_args!(
            "before={before:x?} (want {}); map, scope={scope:?} (want {want:?}), {fl}; after={after:x?} (want {:#x})",
            expect::<A>(hole),
            pattern(h_new, 2)
        ),
    );
}

/// 6. A GPA with bit 39 set reaches its own frame (`h_39`, mapped at
///    `BIT39 | g_ram`), not the one mapped at the same GPA without bit 39;
///    a hole there (the next 2 MiB, no table) faults with the full GPA.
pub fn gpa_bit39<A: Hv>(rep: &mut Report, hv: &mut A, name: &str, l: &Layout, h_39: usize) {
    let hi = BIT39 | l.g_ram;
    let hole_gpa = hi + 0x10_0040;
    let hole_want = Fault::new(hole_gpa, Access::Read, Kind::Translation, 2);
    let r_lo = hv.load(l.g_ram + 0x40);
    let r_hi = hv.load(hi + 0x40);
    let w = hv.store(hi + 0x48, 0x3939_3939_3939_3939);
    let written = rd(h_39 + 0x48);
    let hole = hv.load(hole_gpa);
    rep.verdict(
        name,
        r_lo == Ok(pattern(l.h_ram, 8))
            && r_hi == Ok(pattern(h_39, 8))
            && done::<A>(&w)
            && written == 0x3939_3939_3939_3939
            && load_faulted::<A>(&hole, &hole_want),
        format_args!(
            "gpa {:#x} -> {r_lo:x?} (hpa {:#x}); gpa {:#x} -> {r_hi:x?} (hpa {h_39:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; hole gpa {hole_gpa:#x} -> {hole:x?} (want {})",
            l.g_ram + 0x40,
            l.h_ram,
            hi + 0x40,
            hi + 0x48,
            expect::<A>(hole_want)
        ),
    );
}
