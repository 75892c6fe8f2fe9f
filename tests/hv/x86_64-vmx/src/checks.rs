//! Checks of this hypervisor's own, beyond the shared scenarios: the exact
//! exit qualifications, a GPA just below 4 GiB, the EPT-misconfiguration
//! rule npt's refusals follow, EPT accessed/dirty flags, and whether Bochs
//! keeps stale translations across VM entries once VPID is on.

use crate::qual;
use crate::report::{pattern, rd, wr, Report};
use crate::scenarios::{ok, Applied, Hv, Routine, Table, RW, RX};
use crate::vmx::{Caps, Exit, Vmx};
use crate::x86::{code_hpa, map_x86, G_GPT, H_GPT, L};
use npt::flush::flush_all;
use npt::instr::Host;
use npt::size::SIZE_4K;
use npt::x86_64::{Ept4, Ept4Params};
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF};

/// Bits 51:12 of an EPT entry: the next table's or the page's address.
const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// EPT entry bits (SDM Vol. 3C §29.3.2).
const R: u64 = 1 << 0;
const W: u64 = 1 << 1;
const A: u64 = 1 << 8;
const D: u64 = 1 << 9;

/// The host-physical address of the 4 KiB leaf entry for `gpa`, walked by
/// hand from the root (PML4 index bits 47:39, PDPT 38:30, PD 29:21, PT
/// 20:12); None if a level has no table there.
fn leaf_entry(t: &Table<Ept4>, gpa: u64) -> Option<usize> {
    let mut table = t.root_paddr().as_usize() as u64;
    for shift in [39, 30, 21] {
        let e = rd((table + (gpa >> shift & 0x1ff) * 8) as usize);
        if e & 7 == 0 || e & (1 << 7) != 0 {
            return None;
        }
        table = e & ADDR;
    }
    Some((table + (gpa >> 12 & 0x1ff) * 8) as usize)
}

/// Exit qualifications, bit for bit (SDM Vol. 3C §28.2.1, Table 28-7). A
/// guest load from the hole: bit 0 (read), nothing allowed (bits 5:3
/// clear: not present), bits 7 and 8 (a linear address, the translated
/// one) = 0x181. A store to the read-only page: bit 1 (write), bit 3
/// (readable), 7, 8 = 0x18a. A fetch from the no-execute page (mapped
/// read-write): bit 2 (fetch), bits 3 and 4, 7, 8 = 0x19c. Bits 11:9 stay
/// clear: this CPU reports no advanced VM-exit information
/// (IA32_VMX_EPT_VPID_CAP bit 22), and bit 12 (NMI unblocking) is clear.
pub fn ept_qualification(rep: &mut Report, hv: &mut Vmx) {
    let hole = hv.load(L.g_hole);
    let ro = hv.store(L.g_ro + 0x100, 1);
    let nx = hv.run(Routine::Call, [L.g_nx, 0, 0, 0]);
    let want = [
        (L.g_hole, qual::READ | qual::LINEAR_VALID | qual::TRANSLATED),
        (
            L.g_ro + 0x100,
            qual::WRITE | qual::READABLE | qual::LINEAR_VALID | qual::TRANSLATED,
        ),
        (
            L.g_nx,
            qual::FETCH | qual::READABLE | qual::WRITABLE | qual::LINEAR_VALID | qual::TRANSLATED,
        ),
    ];
    let got = [hole.err(), Some(ro), Some(nx)];
    let pass = got.iter().zip(want).all(|(g, (gpa, q))| {
        matches!(g, Some(Exit::EptViolation { qual: gq, gpa: gg, .. }) if *gq == q && *gg == gpa)
    });
    rep.verdict(
        "ept_qualification",
        pass,
        format_args!(
            "hole load -> {:x?}, read-only store -> {ro:x?}, no-execute fetch -> {nx:x?} (want qualifications {:#x}, {:#x}, {:#x} at those GPAs)",
            got[0], want[0].1, want[1].1, want[2].1
        ),
    );
}

/// The last page below 4 GiB: mapped, read and written by the guest at
/// its own host frame; unmapped (npt's INVEPT), the same load violates at
/// the exact GPA.
pub fn gpa_below_4g(rep: &mut Report, hv: &mut Vmx, t: &mut Table<Ept4>, h_frame: usize) {
    let g = 0xffff_f000u64;
    ok(
        t.map(Gpa::from(g as usize), Hpa::from(h_frame), SIZE_4K, RW),
        "the page below 4 GiB",
    )
    .ignore();
    wr(h_frame + 0xff8, pattern(h_frame, 0x1ff));
    let read = hv.load(g + 0xff8);
    let store = hv.store(g + 0x10, 0x4444_4444_0000_0010);
    let stored = rd(h_frame + 0x10);
    let (_, tf) = ok(t.unmap(Gpa::from(g as usize)), "unmap below 4 GiB");
    let fl = hv.flush(tf, npt::flush::Scope::Pages);
    let gone = hv.load(g + 0xff8);
    rep.verdict(
        "gpa_below_4g",
        read == Ok(pattern(h_frame, 0x1ff))
            && matches!(store, Exit::Vmcall { .. })
            && stored == 0x4444_4444_0000_0010
            && matches!(gone, Err(Exit::EptViolation { qual: 0x181, gpa, .. }) if gpa == g + 0xff8),
        format_args!(
            "gpa {:#x} -> {read:x?} (hpa {:#x}); store -> {store:x?}, hpa holds {stored:#x}; unmapped, {fl}: load -> {gone:x?} (want qualification 0x181 at {:#x})",
            g + 0xff8,
            h_frame + 0xff8,
            g + 0xff8
        ),
    );
}

/// npt refuses WRITE without READ because the SDM calls that entry a
/// misconfiguration (§29.3.3.1). Writing one into the table by hand (npt
/// cannot be made to) must give exit reason 49 with the GPA, not a
/// violation or an access; restored, the page reads again.
pub fn ept_misconfig(rep: &mut Report, hv: &mut Vmx, t: &mut Table<Ept4>, h_frame: usize) {
    let g = L.g_code + 0x16_0000;
    let refused = t.map(
        Gpa::from(g as usize),
        Hpa::from(h_frame),
        SIZE_4K,
        MF::WRITE,
    );
    let refused = matches!(refused, Err(npt::Error::IllegalFlags { .. }));
    ok(
        t.map(Gpa::from(g as usize), Hpa::from(h_frame), SIZE_4K, RW),
        "the misconfiguration page",
    )
    .ignore();
    wr(h_frame + 0x20, 0x4949_4949_4949_4949);
    let before = hv.load(g + 0x20);
    let Some(entry) = leaf_entry(t, g) else {
        rep.verdict(
            "ept_misconfig",
            false,
            format_args!("no 4 KiB leaf for {g:#x}"),
        );
        return;
    };
    let good = rd(entry);
    wr(entry, good & !R | W);
    let all = flush_all::<Ept4>(&mut Host);
    let bad = hv.load(g + 0x20);
    wr(entry, good);
    let all2 = flush_all::<Ept4>(&mut Host);
    let after = hv.load(g + 0x20);
    let (_, tf) = ok(
        t.unmap(Gpa::from(g as usize)),
        "unmap the misconfiguration page",
    );
    let _ = hv.flush(tf, npt::flush::Scope::Pages);
    rep.verdict(
        "ept_misconfig",
        refused
            && before == Ok(0x4949_4949_4949_4949)
            && all.is_ok()
            && all2.is_ok()
            && matches!(bad, Err(Exit::EptMisconfig { gpa, .. }) if gpa == g + 0x20)
            && after == before,
        format_args!(
            "npt refuses WRITE alone={refused}; before={before:x?}; leaf {good:#x} -> {:#x} (W without R) by hand, INVEPT all={all:?}: load -> {bad:x?} (want EptMisconfig at {:#x}); restored, INVEPT all={all2:?}: load -> {after:x?}",
            good & !R | W,
            g + 0x20
        ),
    );
}

/// EPT accessed and dirty flags (EPTP bit 6, SDM Vol. 3C §29.3.5): a
/// second table made with `ad: 1` (npt's EPTP then has bit 6 set) maps the
/// code, the guest's page tables and two data pages; after the guest reads
/// one and writes the other, the CPU has set A on the read page's leaf
/// and A and D on the written one's (npt leaves both clear). Then npt's
/// dirty logging and young tracking by those bits run on a 2 MiB leaf of
/// the same table (`hw_dirty_log`, `hw_young`).
pub fn ept_ad(rep: &mut Report, hv: &mut Vmx, caps: &Caps, old_eptp: u64, h_frames: [usize; 2]) {
    if !caps.ad {
        crate::println!("INFO ept_ad skipped: IA32_VMX_EPT_VPID_CAP bit 21 is clear");
        return;
    }
    let mut t = ok(
        Table::<Ept4>::try_new_with(Ept4Params {
            ad: 1,
            execute_only: 0,
            pa_bits: caps.phys_bits.into(),
        }),
        "an Ept4 table with A/D",
    );
    let (g_read, g_write) = (L.g_ram, L.g_ram + 0x1000);
    crate::scenarios::fill_frames(&h_frames);
    ok(
        t.map(
            Gpa::from(L.g_code as usize),
            Hpa::from(code_hpa()),
            SIZE_4K,
            RX,
        ),
        "code",
    )
    .ignore();
    map_x86(&mut t);
    for (g, h) in [(g_read, h_frames[0]), (g_write, h_frames[1])] {
        ok(
            t.map(Gpa::from(g as usize), Hpa::from(h), SIZE_4K, RW),
            "A/D page",
        )
        .ignore();
    }
    let eptp = t.root_register();
    let leaves = [
        leaf_entry(&t, g_read),
        leaf_entry(&t, g_write),
        leaf_entry(&t, G_GPT),
    ];
    let fresh = leaves.map(|e| e.map(rd));
    let switched = hv.set_eptp(eptp).is_ok();
    let read = hv.load(g_read + 8);
    let write = hv.store(g_write + 8, 0xadad);
    let after = leaves.map(|e| e.map(rd));
    // Dirty logging by the CPU's D bit on this table: a 2 MiB leaf.
    ok(
        t.map(
            Gpa::from(L.g_2m as usize),
            Hpa::from(L.h_2m),
            npt::size::SIZE_2M,
            RW,
        ),
        "2 MiB leaf with A/D",
    )
    .ignore();
    crate::scenarios_hw_dirty::hw_dirty_log(rep, hv, &mut t, L.g_2m, L.h_2m);
    let restored = hv.set_eptp(old_eptp).is_ok();
    // Nothing may keep translations of the table about to be freed.
    let dropped = flush_all::<Ept4>(&mut Host).is_ok();
    let bits = |v: Option<u64>| v.map(|v| v & (A | D));
    let pass = switched
        && restored
        && dropped
        && eptp & (1 << 6) != 0
        && fresh[..2].iter().all(|v| bits(*v) == Some(0))
        && read == Ok(pattern(h_frames[0], 1))
        && matches!(write, Exit::Vmcall { .. })
        && rd(h_frames[1] + 8) == 0xadad
        && bits(after[0]) == Some(A)
        && bits(after[1]) == Some(A | D);
    rep.verdict(
        "ept_ad",
        pass,
        format_args!(
            "EPTP={eptp:#x} (bit 6 set); leaves before: read page {:x?}, written page {:x?}; guest read -> {read:x?}, write -> {write:x?}; after: read page {:x?} (want A), written page {:x?} (want A|D)",
            fresh[0], fresh[1], after[0], after[1]
        ),
    );
    // With A/D on, the CPU's accesses to guest paging structures count as
    // writes (SDM §29.3.5): report what the guest's PML4 page got.
    crate::println!(
        "INFO ept_ad_guest_paging guest PML4 page (GPA {G_GPT:#x}, host {H_GPT:#x}) leaf before={:x?} after={:x?} (A={}, D={})",
        fresh[2],
        after[2],
        after[2].is_some_and(|v| v & A != 0),
        after[2].is_some_and(|v| v & D != 0)
    );
}

/// Whether Bochs keeps a translation across VM exits and entries once
/// VPID is on (SDM Vol. 3C §29.4.1: with VPID, VM entries and exits need
/// not invalidate anything): a page the guest has read is remapped without
/// npt's INVEPT (the batch ignored), and the guest reads again; then
/// remapped with npt's batch, which must bring the new frame.
pub fn vpid_remap(rep: &mut Report, hv: &mut Vmx, caps: &Caps, t: &mut Table<Ept4>, h: [usize; 3]) {
    if !caps.vpid {
        crate::println!("INFO vpid_remap skipped: the CPU has no VPID");
        return;
    }
    let vpid_on = hv.set_vpid(1).is_ok();
    let g = L.g_code + 0x17_0000;
    for &f in &h {
        crate::scenarios::fill_frames(&[f]);
    }
    ok(
        t.map(Gpa::from(g as usize), Hpa::from(h[0]), SIZE_4K, RW),
        "the VPID page",
    )
    .ignore();
    let warm = hv.load(g);
    let tf = crate::scenarios::remap_page(t, g, h[1]);
    tf.ignore();
    let seen = hv.load(g);
    let tf = crate::scenarios::remap_page(t, g, h[2]);
    let fl = hv.flush(tf, npt::flush::Scope::Pages);
    let after = hv.load(g);
    let (a, b, c) = (pattern(h[0], 0), pattern(h[1], 0), pattern(h[2], 0));
    let what = if seen == Ok(a) {
        "stale (old frame A)"
    } else if seen == Ok(b) {
        "fresh (new frame B)"
    } else {
        "neither"
    };
    crate::println!(
        "INFO vpid_stale_control observed={what} detail=VPID 1; before={warm:x?} (A {a:#x}); remap to B, the invalidation suppressed (.ignore()); after={seen:x?} (B {b:#x})"
    );
    let (_, tf) = ok(t.unmap(Gpa::from(g as usize)), "unmap the VPID page");
    let fl2 = hv.flush(tf, npt::flush::Scope::Pages);
    let off = hv.set_vpid(0).is_ok();
    rep.verdict(
        "vpid_remap_flush",
        vpid_on && off && warm == Ok(a) && fl.ok() && after == Ok(c) && fl2.ok(),
        format_args!("VPID 1: remap to C, {fl}; after={after:x?} (want frame C {c:#x})"),
    );
}

/// Execute-only EPT (IA32_VMX_EPT_VPID_CAP bit 0): the table is made with
/// `execute_only: 1` where the CPU reports it, so npt maps EXECUTE alone
/// (X set, R and W clear). The guest runs code there (a planted VMCALL),
/// and its load and store violate with qualifications, by hand from
/// Table 28-7: read 0x1 | executable 0x20 | 0x180 = 0x1a1, write 0x2 |
/// 0x20 | 0x180 = 0x1a2.
pub fn execute_only(
    rep: &mut Report,
    hv: &mut Vmx,
    caps: &Caps,
    t: &mut Table<Ept4>,
    h_frame: usize,
) {
    if !caps.execute_only {
        crate::println!("INFO execute_only skipped: IA32_VMX_EPT_VPID_CAP bit 0 is clear");
        return;
    }
    let g = L.g_code + 0x18_0000;
    crate::scenarios::fill_frames(&[h_frame]);
    <Vmx as Hv>::plant_exit(h_frame + 0x40, 0);
    let mapped = t.map(
        Gpa::from(g as usize),
        Hpa::from(h_frame),
        SIZE_4K,
        MF::EXECUTE,
    );
    let mapped = mapped.map(|tf| tf.ignore()).is_ok();
    let flags = t.query(Gpa::from(g as usize)).map(|q| q.flags);
    let ran = hv.run(Routine::Call, [g + 0x40, 0, 0, 0]);
    let load = hv.load(g + 8);
    let store = hv.store(g + 8, 1);
    let (_, tf) = ok(
        t.unmap(Gpa::from(g as usize)),
        "unmap the execute-only page",
    );
    let fl = hv.flush(tf, npt::flush::Scope::Pages);
    let pass = mapped
        && flags == Ok(MF::EXECUTE)
        && matches!(ran, Exit::Vmcall { rip, .. } if rip == g + 0x40)
        && matches!(load, Err(Exit::EptViolation { qual: 0x1a1, gpa, .. }) if gpa == g + 8)
        && matches!(store, Exit::EptViolation { qual: 0x1a2, gpa, .. } if gpa == g + 8)
        && fl.ok();
    rep.verdict(
        "execute_only",
        pass,
        format_args!(
            "map EXECUTE alone ok={mapped}, query flags={flags:?}; jump to {:#x} -> {ran:x?} (want VMCALL there); load -> {load:x?} (want qualification 0x1a1), store -> {store:x?} (want 0x1a2)",
            g + 0x40
        ),
    );
}
