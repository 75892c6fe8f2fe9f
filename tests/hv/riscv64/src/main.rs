//! A bare-metal test hypervisor for QEMU `virt` (RV64 with the hypervisor
//! extension) that builds its guest's Sv39x4 G-stage table with npt (then
//! an Sv48x4 and an Sv57x4 table for checks of their own) and
//! checks, as named verdicts, that the hardware (QEMU's model of it)
//! translates, faults and invalidates as npt intends.
//!
//! Run: `qemu-system-riscv64 -M virt -cpu rv64,h=true,svpbmt=true,sv48=true,sv57=true -m 128M
//! -bios none -nographic -kernel <elf>`. It starts in M-mode, opens all of
//! memory to S/U with one PMP entry, delegates the guest's traps to HS-mode,
//! and runs there as a hypervisor would. Exit status: 0 when every verdict
//! passed (the `sifive_test` device).
//!
//! The guest runs in VS-mode with vsatp = Bare, so a guest address is a GPA.
//! Each guest run enters one of the small routines in `guest.s` with a0..a3
//! set and ends in ECALL or a trap to HS-mode.

#![no_std]
#![no_main]

#[path = "../../common/riscv64.rs"]
#[macro_use]
mod platform;
#[path = "../../common/frames.rs"]
mod frames;
#[path = "../../common/report.rs"]
#[macro_use]
mod report;
#[path = "../../common/host_flush.rs"]
mod host_flush;
#[path = "../../common/scenarios.rs"]
mod scenarios;
#[path = "../../common/scenarios_hw_dirty.rs"]
mod scenarios_hw_dirty;
#[path = "../../common/scenarios_rv_x86.rs"]
mod scenarios_rv_x86;

use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::Ordering;
use host_flush::{HostFlush, TableRegister};
use npt::flush::Scope;
use npt::riscv::{Sv39x4, Sv39x4Params, Sv48x4, Sv57x4};
use npt::size::{SIZE_1G, SIZE_4K};
use npt::{Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF, TlbFlush};
use report::{pattern, rd, wr, Report};
use scenarios::Applied;
use scenarios::{done, expect, fill_common, fill_frames, load_faulted, map_common, ok};
use scenarios::{Access, Class, Fault, Hv, Kind, Layout, Routine, Table, RW};
use scenarios_rv_x86::BIT39;

global_asm!(include_str!("boot.s"), options(raw));
global_asm!(include_str!("guest.s"), options(raw));

// ---------------------------------------------------------------- platform

pub use platform::putc;
use platform::{exit, UART};
use platform::{MENVCFG, MISA};

// ------------------------------------------------------------ world switch

/// The guest's a0..a3 and entry point; a0..a3 come back as the guest left them.
#[repr(C)]
struct Vcpu {
    x: [u64; 4],
    pc: u64,
}

extern "C" {
    fn hv_enter(vcpu: *mut Vcpu);
    static guest_start: u8;
    static g_copy: u8;
    static g_load: u8;
    static g_store: u8;
    static g_loadb: u8;
    static g_call: u8;
}

/// Why the guest stopped.
#[derive(Clone, Copy, PartialEq)]
enum Exit {
    /// ECALL from VS-mode at `pc`; the guest's a0..a3.
    Ecall { pc: u64, x: [u64; 4] },
    /// Guest-page fault (scause 20 fetch, 21 load, 23 store): htval holds
    /// GPA >> 2, stval the guest virtual address (= GPA here).
    Gpf {
        cause: u64,
        htval: u64,
        stval: u64,
        htinst: u64,
    },
    /// Anything else.
    Other { cause: u64, sepc: u64, stval: u64 },
}

/// Causes in decimal (as the privileged spec numbers them), values in hex.
impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Ecall { pc, x } => write!(f, "Ecall {{ pc: {pc:#x}, a0..a3: {x:x?} }}"),
            Exit::Gpf { cause, htval, stval, htinst } => write!(
                f,
                "GuestPageFault {{ scause: {cause}, htval: {htval:#x} (gpa {:#x}), stval: {stval:#x}, htinst: {htinst:#x} }}",
                htval << 2
            ),
            Exit::Other { cause, sepc, stval } => {
                write!(f, "Other {{ scause: {cause:#x}, sepc: {sepc:#x}, stval: {stval:#x} }}")
            }
        }
    }
}

fn code_hpa() -> usize {
    (&raw const guest_start) as usize
}

/// The guest-physical address of a routine in `guest.s`.
fn gaddr(sym: *const u8) -> u64 {
    L.g_code + (sym as usize - code_hpa()) as u64
}

/// Runs the guest at `entry` with a0..a3 = `x` until it traps to HS-mode.
fn run(entry: *const u8, x: [u64; 4]) -> Exit {
    let mut vcpu = Vcpu {
        x,
        pc: gaddr(entry),
    };
    csrs!("0x600", 1 << 7); // hstatus.SPV: sret enters V = 1
    csrs!("sstatus", 1 << 8); // sstatus.SPP: ... at VS (S) level
                              // SAFETY: hgatp holds a table mapping the guest's code; every guest
                              // trap returns here through hv_trap.
    unsafe { hv_enter(&mut vcpu) };
    let cause = csrr!("scause");
    let sepc = csrr!("sepc");
    let stval = csrr!("stval");
    let htval = csrr!("0x643");
    let htinst = csrr!("0x64a");
    match cause {
        10 => Exit::Ecall {
            pc: sepc,
            x: vcpu.x,
        },
        20 | 21 | 23 => Exit::Gpf {
            cause,
            htval,
            stval,
            htinst,
        },
        _ => Exit::Other { cause, sepc, stval },
    }
}

/// `ECALL`.
const ECALL: u32 = 0x0000_0073;

fn write_insn(pa: usize, insn: u32) {
    let w = rd(pa) & !0xffff_ffff | insn as u64;
    wr(pa, w);
    // SAFETY: instruction fetches see the store after FENCE.I.
    unsafe { asm!("fence.i", options(nostack)) };
}

/// The guest-page fault cause of an access.
const fn gpf_cause(access: Access) -> u64 {
    match access {
        Access::Fetch => 20,
        Access::Read => 21,
        Access::Write => 23,
    }
}

const HGATP: TableRegister = TableRegister {
    name: "hgatp",
    read: || csrr!("0x680"),
};

/// The hypervisor in HS-mode, for the shared scenarios.
struct Hs;

impl Hv for Hs {
    type Exit = Exit;
    type Flush = HostFlush;
    /// QEMU flushes its whole TLB whenever V changes, so a missing fence
    /// goes unnoticed.
    const STALE_SHOWS: bool = false;
    const HOLE_STORE: bool = true;

    fn run(&mut self, routine: Routine, x: [u64; 4]) -> Exit {
        let entry = match routine {
            Routine::Copy => &raw const g_copy,
            Routine::Load => &raw const g_load,
            Routine::Store => &raw const g_store,
            Routine::Call => &raw const g_call,
        };
        run(entry, x)
    }

    /// ECALL is done; a guest-page fault is a fault at stval (= GPA, vsatp
    /// Bare) when htval = GPA >> 2 agrees, as the privileged spec says.
    /// RISC-V reports neither kind (translation or permission) nor level.
    fn classify(e: &Exit) -> Class {
        match *e {
            Exit::Ecall { pc, x } => Class::Done {
                imm: None,
                pc: Some(pc),
                x,
            },
            Exit::Gpf {
                cause,
                htval,
                stval,
                ..
            } if htval == stval >> 2 => {
                let access = match cause {
                    20 => Access::Fetch,
                    21 => Access::Read,
                    _ => Access::Write,
                };
                Class::Fault {
                    gpa: stval,
                    access,
                    kind: None,
                    level: None,
                }
            }
            Exit::Gpf { .. } | Exit::Other { .. } => Class::Other,
        }
    }

    fn fmt_fault(want: &Fault, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "guest-page fault, cause {}, htval={:#x}, stval={:#x}",
            gpf_cause(want.access),
            want.gpa >> 2,
            want.gpa
        )
    }

    fn plant_exit(pa: usize, _: u16) {
        write_insn(pa, ECALL);
    }

    fn fmt_planted(gpa: u64, _: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ECALL at {gpa:#x}")
    }

    fn flush<F: Format>(&mut self, tf: TlbFlush<F>, _: Scope) -> HostFlush {
        host_flush::flush(tf, &HGATP)
    }

    fn flush_all<F: Format>(&mut self) -> HostFlush {
        host_flush::all::<F>(&HGATP)
    }

    fn skip_flush<F: Format>(&mut self, _: &mut Report, tf: TlbFlush<F>) -> HostFlush {
        host_flush::ignore(tf)
    }
}

// ------------------------------------------------------------------ layout

/// The shared layout: guest code at GPA 0xc000_0000; host memory the tests
/// own from 0x8400_0000 (QEMU virt RAM is 0x8000_0000..0x8800_0000 with
/// -m 128M; this image sits at 0x8000_0000 and is far smaller); the hole
/// with no root entry at 2^38 + ...; the 1 GiB gigapage maps host RAM
/// (1 GiB aligned at 0x8000_0000).
const L: Layout = Layout::new(
    0xc000_0000,
    0x8400_0000,
    0x40_0000_1230,
    0x8000_0000,
    0x8470_0000,
);
/// Mapped by `map_after_fault`.
const G_NEW: u64 = 0xc015_0000;
const H_NEW: usize = 0x8401_5000;
/// The frames at GPA `BIT39 | L.g_ram` and `BIT40 | L.g_ram`.
const H_39: usize = 0x8402_0000;
const H_40: usize = 0x8402_1000;
const G_UART: u64 = 0xd000_0000;
const BIT40: u64 = 1 << 40;
const BIT41: u64 = 1 << 41;
/// The Sv48x4 and Sv57x4 tables' frames: at `g_ram`, at `g_ram` with the
/// format's top GPA bit set, and the one the guest reaches through the
/// top-level leaf (which maps host address 0).
const H_WIDE_LO: usize = 0x8402_2000;
const H_WIDE_HI: usize = 0x8402_3000;
const H_WIDE_HUGE: usize = 0x8402_4000;

// -------------------------------------------------------------------- main

#[no_mangle]
extern "C" fn hv_main() -> ! {
    let misa = MISA.load(Ordering::Relaxed);
    let menvcfg = MENVCFG.load(Ordering::Relaxed);
    let pbmte = menvcfg & (1 << 62) != 0;
    let adue = menvcfg & (1 << 61) != 0;
    println!(
        "npt test hypervisor, riscv64, HS-mode; misa={misa:#x} (H={}) menvcfg.PBMTE={pbmte} menvcfg.ADUE={adue}",
        misa & (1 << 7) != 0
    );
    if misa & (1 << 7) == 0 {
        println!("PANIC: no hypervisor extension (QEMU needs -cpu rv64,h=true)");
        exit(4);
    }
    csrw!("0x602", 0); // hedeleg: every guest trap to HS-mode
    csrw!("0x603", 0); // hideleg
    csrw!("0x280", 0); // vsatp: Bare

    let mut rep = Report::default();
    let mut t = ok(
        // With Svadu on, the hart's own A/D updates serve dirty logging
        // and young tracking (hw_dirty_log, hw_young).
        Table::<Sv39x4>::try_new_with(Sv39x4Params {
            vmid: 1,
            adue: adue.into(),
        }),
        "an Sv39x4 table",
    );
    let hgatp = t.root_register();
    // The table is not live yet: nothing to invalidate.
    map_common(&mut t, &L, code_hpa());
    for (gpa, hpa, flags, what) in [
        (BIT39 | L.g_ram, H_39, RW, "bit-39 page"),
        (BIT40 | L.g_ram, H_40, RW, "bit-40 page"),
        (G_UART, UART, RW | MF::DEVICE, "UART"),
    ] {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, flags),
            what,
        )
        .ignore();
    }
    fill_common(&L);
    fill_frames(&[H_NEW, H_39, H_40]);

    csrw!("0x680", hgatp);
    let readback = csrr!("0x680");
    println!("Sv39x4: hgatp={hgatp:#x} (read back {readback:#x})");
    if readback != hgatp {
        println!("PANIC: hgatp did not take the Sv39x4 value");
        exit(4);
    }

    let hv = &mut Hs;
    scenarios::run_all(&mut rep, hv, &mut t, &L);
    // RISC-V may cache the invalid entry, so npt fences on map too.
    scenarios_rv_x86::map_after_fault(&mut rep, hv, &mut t, (G_NEW, H_NEW), Scope::Pages);
    // Sv39x4's widened root.
    scenarios_rv_x86::gpa_bit39(&mut rep, hv, "sv39x4_bit39", &L, H_39);
    sv39x4_bit40(&mut rep, &mut t);
    device_pbmt(&mut rep, &t, pbmte);
    if adue {
        scenarios_hw_dirty::hw_dirty_log(&mut rep, hv, &mut t, L.g_2m, L.h_2m);
    } else {
        println!("INFO hw_dirty_log skipped: menvcfg.ADUE did not take (no Svadu)");
    }

    drop(t);
    scenarios::frames_freed(&mut rep, "the table");

    // The wider G-stage formats, each on a table of its own (VMID 2, 3).
    wide_gstage::<Sv48x4>(&mut rep, 2, "sv48x4_bit49", "sv48x4_terapage");
    wide_gstage::<Sv57x4>(&mut rep, 3, "sv57x4_bit58", "sv57x4_petapage");
    rep.done();
    exit(if rep.fail == 0 { 0 } else { 1 })
}

/// 6b. The top of Sv39x4's range: a GPA with bit 40 set works; GPA bit 41
///     is beyond it (npt refuses to map it, the guest faults).
fn sv39x4_bit40(rep: &mut Report, t: &mut Table<Sv39x4>) {
    let hi = BIT40 | L.g_ram;
    let beyond_gpa = BIT41 | L.g_ram;
    let beyond_want = Fault::new(beyond_gpa, Access::Read, Kind::Translation, 1);
    let r = Hs.load(hi + 0x40);
    let w = Hs.store(hi + 0x48, 0x4040_4040_4040_4040);
    let written = rd(H_40 + 0x48);
    let refused = t
        .map(
            Gpa::from(beyond_gpa as usize),
            Hpa::from(H_NEW),
            SIZE_4K,
            RW,
        )
        .map(|tf| tf.ignore());
    let beyond = Hs.load(beyond_gpa);
    rep.verdict(
        "sv39x4_bit40",
        r == Ok(pattern(H_40, 8))
            && done::<Hs>(&w)
            && written == 0x4040_4040_4040_4040
            && matches!(refused, Err(npt::Error::GpaOutOfRange { .. }))
            && load_faulted::<Hs>(&beyond, &beyond_want),
        format_args!(
            "gpa {:#x} -> {r:x?} (hpa {H_40:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; npt map at {beyond_gpa:#x}: {refused:?}; guest load there -> {beyond:x?} (want {})",
            hi + 0x40,
            hi + 0x48,
            expect::<Hs>(beyond_want)
        ),
    );
}

/// 7. DEVICE memory (Svpbmt PBMT = IO in the leaf): the guest reads the
///    UART's line status register through it.
fn device_pbmt(rep: &mut Report, t: &Table<Sv39x4>, pbmte: bool) {
    let mut raw = 0;
    t.for_each_leaf(|l| {
        if l.gpa.as_usize() == G_UART as usize {
            raw = l.raw;
        }
    });
    let pbmt = (raw >> 61) & 3;
    let lsr = run(&raw const g_loadb, [G_UART + 5, 0, 0, 0]);
    rep.verdict(
        "device_pbmt",
        pbmte && pbmt == 2 && matches!(lsr, Exit::Ecall { x, .. } if x[1] & 0x20 != 0),
        format_args!(
            "menvcfg.PBMTE={pbmte}; leaf {raw:#x} PBMT={pbmt} (want 2, IO); guest byte load of LSR at gpa {:#x} (hpa {:#x}) -> {lsr:x?} (want THRE set)",
            G_UART + 5,
            UART + 5
        ),
    );
}

/// 8. Sv48x4 / Sv57x4 (`F`, its hgatp MODE 9 / 10 from npt): a table of
///    its own with the guest code, a page at `g_ram`, a page at `g_ram`
///    with the top GPA bit (49 / 58) set, and one leaf of the root level's
///    size (512 GiB / 256 TiB) over host address 0.
///
///    `bit_name`: hgatp takes npt's value (QEMU keeps the old one for a
///    MODE the hart lacks); the page with the top bit set is its own frame,
///    not the one at `g_ram`; a store there lands in it; a hole next to it
///    (the next 2 MiB, no table) faults with the whole GPA in htval << 2;
///    GPA 2^input_bits is refused by npt and faults in the guest.
///    `huge_name`: a guest load through the root-level leaf reads host
///    memory at the offset into the leaf, and npt reports that leaf.
fn wide_gstage<F: Format<Params = Sv39x4Params>>(
    rep: &mut Report,
    vmid: u64,
    bit_name: &str,
    huge_name: &str,
) {
    let g = &F::LAYOUT.geometry;
    let bits = g.input_bits;
    let top = 1u64 << (bits - 1);
    let huge = g.levels[0].span();
    let mut t = ok(
        Table::<F>::try_new_with(Sv39x4Params { vmid, adue: 0 }),
        "a wide table",
    );
    let hi = top | L.g_ram;
    // The third root-level leaf: GPA 3 << shift, host address 0.
    let g_huge = 3u64 << g.levels[0].shift;
    for (gpa, hpa, size, flags, what) in [
        (L.g_code, code_hpa(), SIZE_4K, scenarios::RX, "code"),
        (L.g_ram, H_WIDE_LO, SIZE_4K, RW, "page at g_ram"),
        (hi, H_WIDE_HI, SIZE_4K, RW, "page with the top GPA bit"),
        (g_huge, 0, huge, MF::READ, "root-level leaf"),
    ] {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), size, flags),
            what,
        )
        .ignore();
    }
    fill_frames(&[H_WIDE_LO, H_WIDE_HI, H_WIDE_HUGE]);
    let hgatp = t.root_register();
    csrw!("0x680", hgatp);
    let readback = csrr!("0x680");
    // Another VMID, another table: fence everything once.
    let fl = host_flush::all::<F>(&HGATP);
    let taken = readback == hgatp && hgatp >> 60 == g.levels.len() as u64 + 5;
    println!(
        "{}: hgatp={hgatp:#x} (read back {readback:#x}), {} levels, root-level leaf {huge:#x}",
        F::LAYOUT.name,
        g.levels.len()
    );

    let hs = &mut Hs;
    let r_lo = hs.load(L.g_ram + 0x40);
    let r_hi = hs.load(hi + 0x40);
    let w = hs.store(hi + 0x48, 0x5858_5858_5858_5858);
    let written = rd(H_WIDE_HI + 0x48);
    let hole_gpa = hi + 0x20_0040;
    let hole_want = Fault::new(hole_gpa, Access::Read, Kind::Translation, 2);
    let hole = hs.load(hole_gpa);
    let beyond_gpa = (1u64 << bits) | L.g_ram;
    let beyond_want = Fault::new(beyond_gpa, Access::Read, Kind::Translation, 1);
    let refused = t
        .map(
            Gpa::from(beyond_gpa as usize),
            Hpa::from(H_WIDE_LO),
            SIZE_4K,
            RW,
        )
        .map(|tf| tf.ignore());
    let beyond = hs.load(beyond_gpa);
    rep.verdict(
        bit_name,
        taken
            && fl.ok()
            && r_lo == Ok(pattern(H_WIDE_LO, 8))
            && r_hi == Ok(pattern(H_WIDE_HI, 8))
            && done::<Hs>(&w)
            && written == 0x5858_5858_5858_5858
            && load_faulted::<Hs>(&hole, &hole_want)
            && matches!(refused, Err(npt::Error::GpaOutOfRange { .. }))
            && load_faulted::<Hs>(&beyond, &beyond_want),
        format_args!(
            "hgatp={hgatp:#x} read back {readback:#x} (MODE {}), {fl}; gpa {:#x} -> {r_lo:x?} (hpa {H_WIDE_LO:#x}); gpa {:#x} -> {r_hi:x?} (hpa {H_WIDE_HI:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; hole gpa {hole_gpa:#x} -> {hole:x?} (want {}); npt map at {beyond_gpa:#x}: {refused:?}; guest load there -> {beyond:x?} (want {})",
            hgatp >> 60,
            L.g_ram + 0x40,
            hi + 0x40,
            hi + 0x48,
            expect::<Hs>(hole_want),
            expect::<Hs>(beyond_want)
        ),
    );

    let probe = g_huge + H_WIDE_HUGE as u64 + 0x18;
    let r = hs.load(probe);
    let q = t.query(Gpa::from(probe as usize));
    let leaf_ok =
        matches!(q, Ok(ref q) if q.size == huge && q.hpa.as_usize() == H_WIDE_HUGE + 0x18);
    drop(t);
    // Back to no table (the Sv39x4 one is gone).
    csrw!("0x680", 0);
    let _ = host_flush::all::<F>(&HGATP);
    let live = frames::Frames::live();
    rep.verdict(
        huge_name,
        taken && huge > SIZE_1G && r == Ok(pattern(H_WIDE_HUGE, 3)) && leaf_ok && live == 0,
        format_args!(
            "leaf gpa {g_huge:#x} size {huge:#x} -> hpa 0; guest load at gpa {probe:#x} -> {r:x?} (want {:#x}, hpa {:#x}); npt query: {q:x?}; frames left after dropping the table: {live}",
            pattern(H_WIDE_HUGE, 3),
            H_WIDE_HUGE + 0x18
        ),
    );
}
