//! A bare-metal test hypervisor for QEMU `virt` (AArch64, EL2) that builds
//! its guest's stage-2 tables with npt and checks, as named verdicts, that
//! the hardware (QEMU's model of it) translates, faults and invalidates as
//! npt intends.
//!
//! Run: `qemu-system-aarch64 -M virt,virtualization=on -cpu cortex-a57 -m 128M
//! -nographic -semihosting -kernel <elf>`. Exit code (semihosting): 0 when
//! every verdict passed.
//!
//! The guest runs at EL1 with its stage 1 off, so a guest address is an IPA
//! and guest data accesses are Device memory (aligned probes only). Each
//! guest run enters one of the small routines in `guest.s` with x0..x3 set
//! and ends in `HVC #0`, a stage-2 fault, or (for anything unexpected at EL1)
//! an `HVC #0xE1` from the guest's own vectors.

#![no_std]
#![no_main]

#[path = "../../common/frames.rs"]
mod frames;
#[path = "../../common/report.rs"]
#[macro_use]
mod report;

use core::arch::{asm, global_asm};
use frames::Frames;
use npt::aarch64::{Stage2Ipa39, Stage2Ipa40, Stage2Params};
use npt::flush::{flush_all, ContextRegister, FlushExecutor, Instr, Issued, Scope};
use npt::instr::Host;
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::FlushError;
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF, NestedTable};
use report::{fill, pattern, rd, wr, Report};

global_asm!(include_str!("boot.s"), options(raw));
global_asm!(include_str!("guest.s"), options(raw));

// ---------------------------------------------------------------- platform

const UART: usize = 0x0900_0000;

/// Writes one byte to the PL011.
pub fn putc(c: u8) {
    // SAFETY: the PL011 of QEMU virt; FR (0x18) bit 5 is TXFF.
    unsafe {
        while ((UART + 0x18) as *const u32).read_volatile() & (1 << 5) != 0 {}
        (UART as *mut u32).write_volatile(c as u32);
    }
}

/// Ends the QEMU run with `code` (semihosting SYS_EXIT, ADP_Stopped_ApplicationExit).
fn exit(code: u64) -> ! {
    let block: [u64; 2] = [0x20026, code];
    // SAFETY: semihosting call; QEMU runs with -semihosting.
    unsafe { asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") block.as_ptr(), options(nostack)) };
    loop {
        // SAFETY: waiting forever has no effect.
        unsafe { asm!("wfe") };
    }
}

macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading a system register at EL2.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the hypervisor owns EL2's and the guest's registers.
        unsafe { asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nostack)) };
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    exit(2)
}

/// An exception taken to EL2 from EL2 itself: a hypervisor bug.
#[no_mangle]
extern "C" fn hv_unexpected(vector: u64, esr: u64, elr: u64, far: u64) -> ! {
    println!("PANIC: EL2 exception vector={vector} esr={esr:#x} elr={elr:#x} far={far:#x}");
    exit(3)
}

// ------------------------------------------------------------ world switch

/// The guest's x0..x3 and entry point; x0..x3 come back as the guest left them.
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
    static g_call: u8;
    static guest_vectors: u8;
}

/// Why the guest stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Exit {
    /// `HVC #imm`; the guest's x0..x3.
    Hvc(u16, [u64; 4]),
    /// Stage-2 data abort (EC 0x24): GPA from HPFAR_EL2 and FAR_EL2.
    Dabt {
        gpa: u64,
        hpfar: u64,
        fsc: u64,
        wnr: bool,
    },
    /// Stage-2 instruction abort (EC 0x20).
    Iabt { gpa: u64, hpfar: u64, fsc: u64 },
    /// Anything else.
    Other { esr: u64, elr: u64 },
}

/// The host's physical address size from ID_AA64MMFR0_EL1.PARange (bits
/// 3:0: 0 32, 1 36, 2 40, 3 42, 4 44, 5 48, 6 52 bits), capped at the 48
/// bits the stage-2 formats encode: npt sets VTCR_EL2.PS from it and refuses
/// host addresses beyond it.
fn host_pa_bits() -> u64 {
    let mmfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0, options(nomem, nostack)) };
    match mmfr0 & 0xf {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    }
}

/// The guest-physical address of the guest code page.
const G_CODE: u64 = 0x8000_0000;

fn code_hpa() -> usize {
    (&raw const guest_start) as usize
}

/// The guest-physical address of a routine in `guest.s`.
fn gaddr(sym: *const u8) -> u64 {
    G_CODE + (sym as usize - code_hpa()) as u64
}

/// Runs the guest at `entry` with x0..x3 = `x` until it exits to EL2.
fn run(entry: *const u8, x: [u64; 4]) -> Exit {
    let mut vcpu = Vcpu {
        x,
        pc: gaddr(entry),
    };
    // SAFETY: the stage-2 table in VTTBR_EL2 maps the guest's code; every
    // guest exit returns here through the EL2 vectors.
    unsafe { hv_enter(&mut vcpu) };
    let esr = mrs!("esr_el2");
    let far = mrs!("far_el2");
    let hpfar = mrs!("hpfar_el2");
    let elr = mrs!("elr_el2");
    // HPFAR_EL2.FIPA (bits 47:4) holds IPA[51:12]; FAR_EL2 holds the VA,
    // which is the IPA with the guest's stage 1 off: its low 12 bits
    // complete the address.
    let gpa = ((hpfar & 0x0000_ffff_ffff_fff0) << 8) | (far & 0xfff);
    let iss = esr & 0x1ff_ffff;
    match esr >> 26 {
        0x16 => Exit::Hvc(iss as u16, vcpu.x),
        0x24 => Exit::Dabt {
            gpa,
            hpfar,
            fsc: iss & 0x3f,
            wnr: iss & (1 << 6) != 0,
        },
        0x20 => Exit::Iabt {
            gpa,
            hpfar,
            fsc: iss & 0x3f,
        },
        _ => Exit::Other { esr, elr },
    }
}

/// The value of x1 after a `g_load`, or None on any other exit.
fn guest_load(gpa: u64) -> Result<u64, Exit> {
    match run(&raw const g_load, [gpa, 0, 0, 0]) {
        Exit::Hvc(0, x) => Ok(x[1]),
        e => Err(e),
    }
}

fn guest_store(gpa: u64, v: u64) -> Exit {
    run(&raw const g_store, [gpa, v, 0, 0])
}

/// Makes `vttbr`/`vtcr` current (a VMID and table switch).
fn load_stage2(vttbr: u64, vtcr: u64) {
    msr!("vtcr_el2", vtcr);
    msr!("vttbr_el2", vttbr);
}

// ------------------------------------------------------------------ layout

/// Host memory the tests own (QEMU virt RAM is 0x4000_0000..0x4800_0000
/// with -m 128M; this image sits at 0x4010_0000 and is far smaller).
const H_RAM: usize = 0x4400_0000; // 16 pages of guest RAM
const RAM_SIZE: usize = 0x1_0000;
const H_RO: usize = 0x4401_0000;
const H_NX: usize = 0x4401_1000;
const H_A: usize = 0x4401_2000;
const H_B: usize = 0x4401_3000;
const H_C: usize = 0x4401_4000;
const H_40_LO: usize = 0x4402_0000;
const H_40_HI: usize = 0x4402_1000;
const H_2M: usize = 0x4460_0000;
const H_CTX_4K: usize = 0x4480_0000;
const H_CTX_2M: usize = 0x44a0_0000;
/// The 1 GiB block maps all of host RAM (1 GiB aligned at 0x4000_0000).
const H_1G: usize = 0x4000_0000;
const H_1G_PROBE: usize = 0x4470_0000;

/// Guest-physical addresses: none equals its host-physical address.
const G_RAM: u64 = 0x8010_0000;
const G_HOLE: u64 = G_RAM + RAM_SIZE as u64 + 0x28; // same L3 table, no entry
const G_HOLE_L1: u64 = 0x40_0000_1230; // no L1 entry (2^38 + ...)
const G_RO: u64 = 0x8012_0000;
const G_NX: u64 = 0x8013_0000;
const G_REMAP: u64 = 0x8014_0000;
const G_2M: u64 = 0x8040_0000;
const G_CTX: u64 = 0x8060_0000;
const G_1G: u64 = 0x1_0000_0000;
const G_BIT39: u64 = 1 << 39;

const RWX: MF = MF::READ.union(MF::WRITE).union(MF::EXECUTE);
const RW: MF = MF::READ.union(MF::WRITE);
const RX: MF = MF::READ.union(MF::EXECUTE);

/// `HVC #imm` encoding.
const fn hvc(imm: u16) -> u32 {
    0xd400_0002 | (imm as u32) << 5
}

fn write_insn(pa: usize, insn: u32) {
    let w = rd(pa) & !0xffff_ffff | insn as u64;
    wr(pa, w);
    // SAFETY: cache maintenance after writing an instruction.
    unsafe { asm!("dsb sy", "ic iallu", "dsb sy", "isb", options(nostack)) };
}

fn ok<T>(r: Result<T, npt::Error>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("npt refused {what}: {e}"),
    }
}

fn is_translation(fsc: u64, level: u64) -> bool {
    fsc == 0b000100 | level
}

fn is_permission(fsc: u64, level: u64) -> bool {
    fsc == 0b001100 | level
}

/// HPFAR_EL2 as the Arm ARM defines it for a fault at `gpa`: IPA[51:12] in bits 47:4.
const fn hpfar_of(gpa: u64) -> u64 {
    (gpa >> 12) << 4
}

// -------------------------------------------------------------------- main

#[no_mangle]
extern "C" fn hv_main() -> ! {
    let el = (mrs!("CurrentEL") >> 2) & 3;
    println!("npt test hypervisor, aarch64, EL{el}");
    if el != 2 {
        println!("PANIC: not at EL2 (QEMU needs -M virt,virtualization=on)");
        exit(4);
    }
    let pa_range = mrs!("id_aa64mmfr0_el1") & 0xf;
    println!("ID_AA64MMFR0_EL1.PARange={pa_range}");

    // The guest: AArch64 EL1 with stage 1 off, its own vectors (which report
    // any EL1 exception with HVC #0xE1), stage 2 on.
    msr!("sctlr_el1", 0x30d0_0800);
    msr!("vbar_el1", gaddr(&raw const guest_vectors));
    msr!("hcr_el2", (1 << 31) | 1); // RW (EL1 is AArch64), VM (stage 2 on)

    let mut rep = Report::default();
    stage2_ipa39(&mut rep);
    stage2_ipa40(&mut rep);

    let live = Frames::live();
    rep.verdict(
        "frames_freed",
        live == 0,
        format_args!("frames still allocated after dropping every table: {live}"),
    );
    rep.done();
    exit(if rep.fail == 0 { 0 } else { 1 })
}

fn stage2_ipa39(rep: &mut Report) {
    let mut t = ok(
        NestedTable::<Stage2Ipa39, Frames>::try_new_with(Stage2Params {
            vmid: 1,
            pa_bits: host_pa_bits(),
        }),
        "a Stage2Ipa39 table",
    );
    let vtcr = ok(
        Stage2Ipa39::vtcr_el2(t.root_paddr(), t.params()),
        "VTCR_EL2",
    );
    let vttbr = t.root_register();
    println!(
        "Stage2Ipa39: PARange {} bits, VTTBR_EL2={vttbr:#x} VTCR_EL2={vtcr:#x}",
        host_pa_bits()
    );

    // The table is not live yet: nothing to invalidate.
    let code = code_hpa();
    ok(
        t.map(Gpa::from(G_CODE as usize), Hpa::from(code), SIZE_4K, RX),
        "code",
    )
    .ignore();
    ok(
        t.map_region(
            Gpa::from(G_RAM as usize),
            Hpa::from(H_RAM),
            RAM_SIZE,
            RWX,
            true,
        ),
        "RAM",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_RO as usize), Hpa::from(H_RO), SIZE_4K, MF::READ),
        "RO page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_NX as usize), Hpa::from(H_NX), SIZE_4K, RW),
        "NX page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_REMAP as usize), Hpa::from(H_A), SIZE_4K, RW),
        "remap page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_2M as usize), Hpa::from(H_2M), SIZE_2M, RW),
        "2M block",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_1G as usize), Hpa::from(H_1G), SIZE_1G, RW),
        "1G block",
    )
    .ignore();
    ok(
        t.map_region(
            Gpa::from(G_CTX as usize),
            Hpa::from(H_CTX_4K),
            SIZE_2M,
            RW,
            false,
        ),
        "2M of 4K pages",
    )
    .ignore();

    for pa in [
        H_RO,
        H_NX,
        H_A,
        H_B,
        H_C,
        H_CTX_4K + 0x5000,
        H_CTX_2M + 0x5000,
    ] {
        fill(pa, 512, |i| pattern(pa, i));
    }
    fill(H_RAM, RAM_SIZE / 8, |i| pattern(H_RAM, i));

    load_stage2(vttbr, vtcr);

    ram_rw(rep);
    hole_fault(rep);
    ro_write(rep);
    nx_fetch(rep);
    huge_2m(rep, &t);
    huge_1g(rep, &t);
    remap(rep, &mut t);
    remap_context(rep, &mut t);
    protect_flush(rep, &mut t);
    // `t` is dropped here while VTTBR_EL2 still points at it; the Ipa40
    // phase replaces it before the guest runs again.
}

/// 1. The guest copies 16 words across a page boundary of its RAM, XORed
///    with a key, to another place across another page boundary; the host
///    checks the bytes at the host-physical addresses (and the words
///    around them).
fn ram_rw(rep: &mut Report) {
    let (src_off, dst_off, n, key) = (0x0fc0usize, 0x7fc0usize, 16usize, 0x00ff_00ff_1234_5678u64);
    let sentinel_before = rd(H_RAM + dst_off - 8);
    let sentinel_after = rd(H_RAM + dst_off + 8 * n);
    let e = run(
        &raw const g_copy,
        [
            G_RAM + src_off as u64,
            G_RAM + dst_off as u64,
            n as u64,
            key,
        ],
    );
    let mut bad = None;
    for i in 0..n {
        let want = pattern(H_RAM, src_off / 8 + i) ^ key;
        let got = rd(H_RAM + dst_off + 8 * i);
        if got != want && bad.is_none() {
            bad = Some((i, got, want));
        }
    }
    let sentinels =
        rd(H_RAM + dst_off - 8) == sentinel_before && rd(H_RAM + dst_off + 8 * n) == sentinel_after;
    rep.verdict(
        "ram_rw",
        matches!(e, Exit::Hvc(0, _)) && bad.is_none() && sentinels,
        format_args!(
            "exit={e:x?} gpa {:#x}->{:#x} hpa {:#x}->{:#x} words={n} first_mismatch={bad:x?} sentinels_intact={sentinels}",
            G_RAM + src_off as u64,
            G_RAM + dst_off as u64,
            H_RAM + src_off,
            H_RAM + dst_off
        ),
    );
}

/// 2. Loads from holes (no level-3 entry; no level-1 entry) fault to EL2
///    with the GPA in HPFAR_EL2 (and FAR_EL2's low bits).
fn hole_fault(rep: &mut Report) {
    let l3 = guest_load(G_HOLE);
    let l1 = guest_load(G_HOLE_L1);
    let good = |r: Result<u64, Exit>, gpa: u64, level: u64| match r {
        Err(Exit::Dabt {
            gpa: g,
            hpfar,
            fsc,
            wnr: false,
        }) => g == gpa && hpfar == hpfar_of(gpa) && is_translation(fsc, level),
        _ => false,
    };
    rep.verdict(
        "hole_fault",
        good(l3, G_HOLE, 3) && good(l1, G_HOLE_L1, 1),
        format_args!(
            "gpa={G_HOLE:#x} -> {l3:x?} (want HPFAR_EL2={:#x}, translation fault L3); gpa={G_HOLE_L1:#x} -> {l1:x?} (want HPFAR_EL2={:#x}, translation fault L1)",
            hpfar_of(G_HOLE),
            hpfar_of(G_HOLE_L1)
        ),
    );
}

/// 3a. The read-only page reads, and a write to it is a permission fault
///     that leaves the host frame unchanged.
fn ro_write(rep: &mut Report) {
    let probe = G_RO + 0x100;
    let before = rd(H_RO + 0x100);
    let read = guest_load(probe);
    let w = guest_store(probe, 0xdead_beef_dead_beef);
    let after = rd(H_RO + 0x100);
    let fault_ok = matches!(w, Exit::Dabt { gpa, hpfar, fsc, wnr: true }
        if gpa == probe && hpfar == hpfar_of(probe) && is_permission(fsc, 3));
    rep.verdict(
        "ro_write",
        read == Ok(before) && fault_ok && after == before,
        format_args!(
            "read={read:x?} (want Ok({before:#x})); write -> {w:x?} (want permission fault L3, WnR, HPFAR_EL2={:#x}); frame unchanged={}",
            hpfar_of(probe),
            after == before
        ),
    );
}

/// 3b. Fetching from the no-execute page is an instruction abort (the same
///     `HVC #1` placed in executable RAM runs: the control).
fn nx_fetch(rep: &mut Report) {
    write_insn(H_NX, hvc(1));
    let ram_insn = H_RAM + 0xe000;
    write_insn(ram_insn, hvc(2));
    let control = run(&raw const g_call, [G_RAM + 0xe000, 0, 0, 0]);
    let fetch = run(&raw const g_call, [G_NX, 0, 0, 0]);
    let data = guest_load(G_NX + 8);
    let fetch_ok = matches!(fetch, Exit::Iabt { gpa, hpfar, fsc }
        if gpa == G_NX && hpfar == hpfar_of(G_NX) && is_permission(fsc, 3));
    rep.verdict(
        "nx_fetch",
        matches!(control, Exit::Hvc(2, _)) && fetch_ok && data == Ok(rd(H_NX + 8)),
        format_args!(
            "exec from RAM -> {control:x?} (want Hvc(2)); exec gpa={G_NX:#x} -> {fetch:x?} (want instruction abort, permission L3, HPFAR_EL2={:#x}); data read={data:x?}",
            hpfar_of(G_NX)
        ),
    );
}

/// 4a. A 2 MiB block: the guest copies from its middle to its last bytes.
fn huge_2m(rep: &mut Report, t: &NestedTable<Stage2Ipa39, Frames>) {
    let q = t.query(Gpa::from(G_2M as usize + 0x1f_f000));
    let (src, dst, n) = (0x10_0000usize, SIZE_2M - 64, 8usize);
    fill(H_2M + src, n, |i| pattern(H_2M + src, i));
    fill(H_2M + dst, n, |_| 0);
    let e = run(
        &raw const g_copy,
        [G_2M + src as u64, G_2M + dst as u64, n as u64, 0],
    );
    let copied = (0..n).all(|i| rd(H_2M + dst + 8 * i) == pattern(H_2M + src, i));
    let leaf = q.map(|q| q.size) == Ok(SIZE_2M);
    rep.verdict(
        "huge_2m",
        leaf && matches!(e, Exit::Hvc(0, _)) && copied,
        format_args!(
            "leaf={q:x?}; gpa {:#x}->{:#x} hpa {:#x}->{:#x} exit={e:x?} copied={copied}",
            G_2M + src as u64,
            G_2M + dst as u64,
            H_2M + src,
            H_2M + dst
        ),
    );
}

/// 4b. A 1 GiB block over all of host RAM.
fn huge_1g(rep: &mut Report, t: &NestedTable<Stage2Ipa39, Frames>) {
    let off = (H_1G_PROBE - H_1G) as u64;
    let q = t.query(Gpa::from((G_1G + off) as usize));
    wr(H_1G_PROBE, 0x1611_1611_1611_1611);
    let read = guest_load(G_1G + off);
    let w = guest_store(G_1G + off + 0x100, 0x1633_1633_1633_1633);
    let written = rd(H_1G_PROBE + 0x100);
    let leaf = q.map(|q| (q.size, q.hpa.as_usize())) == Ok((SIZE_1G, H_1G_PROBE));
    rep.verdict(
        "huge_1g",
        leaf && read == Ok(0x1611_1611_1611_1611)
            && matches!(w, Exit::Hvc(0, _))
            && written == 0x1633_1633_1633_1633,
        format_args!(
            "leaf={q:x?}; read gpa {:#x} (hpa {H_1G_PROBE:#x}) = {read:x?}; wrote gpa {:#x}, hpa {:#x} holds {written:#x}",
            G_1G + off,
            G_1G + off + 0x100,
            H_1G_PROBE + 0x100
        ),
    );
}

/// Remaps `gpa` (a 4 KiB page) to `hpa`; returns the merged invalidations.
fn remap_page(
    t: &mut NestedTable<Stage2Ipa39, Frames>,
    gpa: u64,
    hpa: usize,
) -> npt::TlbFlush<Stage2Ipa39> {
    let (_, mut tf) = ok(t.unmap(Gpa::from(gpa as usize)), "unmap");
    tf.merge(ok(
        t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, RW),
        "map",
    ));
    tf
}

/// 5. Remapping a page the guest has used: npt's recipe makes the guest see
///    the new frame; without it (negative control) the guest still sees the
///    old one; npt's "all" recipe then clears it.
fn remap(rep: &mut Report, t: &mut NestedTable<Stage2Ipa39, Frames>) {
    let (a, b, c) = (pattern(H_A, 0), pattern(H_B, 0), pattern(H_C, 0));

    let warm = guest_load(G_REMAP);
    let tf = remap_page(t, G_REMAP, H_B);
    let scope = tf.scope();
    let flushed = tf.flush();
    let vttbr_kept = mrs!("vttbr_el2");
    let after = guest_load(G_REMAP);
    rep.verdict(
        "remap_flush",
        warm == Ok(a) && scope == Scope::Pages && flushed.is_ok() && after == Ok(b),
        format_args!(
            "before={warm:x?} (frame A {a:#x}); remap to B, batch scope={scope:?}, flush={flushed:?}; after={after:x?} (want frame B {b:#x}); VTTBR_EL2={vttbr_kept:#x}"
        ),
    );

    let warm = guest_load(G_REMAP);
    remap_page(t, G_REMAP, H_C).ignore();
    let stale = guest_load(G_REMAP);
    rep.verdict(
        "remap_stale_control",
        warm == Ok(b) && stale == Ok(b),
        format_args!(
            "before={warm:x?}; remap to C with the invalidation suppressed (.ignore()); after={stale:x?} (want the stale frame B {b:#x}, not C {c:#x})"
        ),
    );

    let all = flush_all::<Stage2Ipa39>(&mut Host);
    let fresh = guest_load(G_REMAP);
    rep.verdict(
        "flush_all",
        all.is_ok() && fresh == Ok(c),
        format_args!("flush_all={all:?}; after={fresh:x?} (want frame C {c:#x})"),
    );

    // A second negative control: npt's page recipe without its TLBI
    // VMALLE1IS (IPAS2E1IS alone does not drop combined stage-1+2 entries)
    // must leave the stale frame, so remap_flush would catch that mistake.
    let warm = guest_load(G_REMAP);
    let tf = remap_page(t, G_REMAP, H_A);
    let partial = tf.flush_with(&mut Without(Instr::TlbiVmalle1is));
    let stale = guest_load(G_REMAP);
    let all = flush_all::<Stage2Ipa39>(&mut Host);
    let fresh = guest_load(G_REMAP);
    rep.verdict(
        "remap_ipas2_only_control",
        warm == Ok(c) && partial.is_ok() && stale == Ok(c) && all.is_ok() && fresh == Ok(a),
        format_args!(
            "before={warm:x?}; remap to A, page recipe run without TLBI VMALLE1IS: {partial:?}; after={stale:x?} (want the stale frame C {c:#x}); after flush_all={fresh:x?} (want A {a:#x})"
        ),
    );
}

/// npt's host executor with one instruction left out (negative controls).
struct Without(Instr);

impl FlushExecutor for Without {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        if op.instr == self.0 {
            return Ok(());
        }
        Host.execute(op)
    }

    fn switch_context(
        &mut self,
        reg: ContextRegister,
        value: u64,
    ) -> Result<Option<u64>, FlushError> {
        Host.switch_context(reg, value)
    }

    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError> {
        Host.restore_context(reg, old)
    }
}

/// 5c. Write-protecting a page the guest has written: after npt's flush the
///     next write is a permission fault.
fn protect_flush(rep: &mut Report, t: &mut NestedTable<Stage2Ipa39, Frames>) {
    let probe = G_RAM + 0xf008;
    let warm = guest_store(probe, 0x7777_0000_0000_0001);
    let tf = ok(
        t.protect(Gpa::from((probe & !0xfff) as usize), MF::READ),
        "protect",
    );
    let scope = tf.scope();
    let flushed = tf.flush();
    let w = guest_store(probe, 0x7777_0000_0000_0002);
    let held = rd(H_RAM + 0xf008);
    rep.verdict(
        "protect_flush",
        matches!(warm, Exit::Hvc(0, _))
            && flushed.is_ok()
            && matches!(w, Exit::Dabt { gpa, fsc, wnr: true, .. } if gpa == probe && is_permission(fsc, 3))
            && held == 0x7777_0000_0000_0001,
        format_args!(
            "write before={warm:x?}; protect READ, scope={scope:?}, flush={flushed:?}; write after -> {w:x?} (want permission fault L3); hpa holds {held:#x}"
        ),
    );
}

/// 5b. Context scope: 2 MiB of 4 KiB pages the guest has used are unmapped
///     (their table freed) and replaced by a 2 MiB block elsewhere.
fn remap_context(rep: &mut Report, t: &mut NestedTable<Stage2Ipa39, Frames>) {
    let probe = G_CTX + 0x5000;
    let warm = guest_load(probe);
    let mut tf = ok(
        t.unmap_region(Gpa::from(G_CTX as usize), SIZE_2M),
        "unmap 2M",
    );
    tf.merge(ok(
        t.map(Gpa::from(G_CTX as usize), Hpa::from(H_CTX_2M), SIZE_2M, RW),
        "map 2M",
    ));
    let scope = tf.scope();
    let flushed = tf.flush();
    let after = guest_load(probe);
    let (old, new) = (pattern(H_CTX_4K + 0x5000, 0), pattern(H_CTX_2M + 0x5000, 0));
    rep.verdict(
        "remap_context",
        warm == Ok(old) && scope == Scope::Context && flushed.is_ok() && after == Ok(new),
        format_args!(
            "before={warm:x?} (want {old:#x}); 512 pages -> one 2M block, scope={scope:?}, flush={flushed:?}; after={after:x?} (want {new:#x})"
        ),
    );
}

/// 6. The 40-bit IPA format (two concatenated level-1 roots): GPAs with and
///    without bit 39 reach different frames, and a hole above bit 39
///    reports bit 39 in HPFAR_EL2. Then a flush on the other (Ipa39)
///    table's VMID runs while this one is current and must leave
///    VTTBR_EL2 as it was.
fn stage2_ipa40(rep: &mut Report) {
    let mut t = ok(
        NestedTable::<Stage2Ipa40, Frames>::try_new_with(Stage2Params {
            vmid: 2,
            pa_bits: host_pa_bits(),
        }),
        "a Stage2Ipa40 table",
    );
    let vtcr = ok(
        Stage2Ipa40::vtcr_el2(t.root_paddr(), t.params()),
        "VTCR_EL2",
    );
    let vttbr = t.root_register();
    println!("Stage2Ipa40: VTTBR_EL2={vttbr:#x} VTCR_EL2={vtcr:#x}");
    let lo = G_RAM;
    let hi = G_BIT39 | G_RAM;
    ok(
        t.map(
            Gpa::from(G_CODE as usize),
            Hpa::from(code_hpa()),
            SIZE_4K,
            RX,
        ),
        "code",
    )
    .ignore();
    ok(
        t.map(Gpa::from(lo as usize), Hpa::from(H_40_LO), SIZE_4K, RW),
        "low page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(hi as usize), Hpa::from(H_40_HI), SIZE_4K, RW),
        "bit-39 page",
    )
    .ignore();
    fill(H_40_LO, 512, |i| pattern(H_40_LO, i));
    fill(H_40_HI, 512, |i| pattern(H_40_HI, i));
    let root_hi = t.query(Gpa::from(hi as usize));
    load_stage2(vttbr, vtcr);

    let r_lo = guest_load(lo + 0x40);
    let r_hi = guest_load(hi + 0x40);
    let w = guest_store(hi + 0x48, 0x3939_3939_3939_3939);
    let written = rd(H_40_HI + 0x48);
    let lo_kept = rd(H_40_LO + 0x48) == pattern(H_40_LO, 9);
    rep.verdict(
        "ipa40_bit39",
        r_lo == Ok(pattern(H_40_LO, 8))
            && r_hi == Ok(pattern(H_40_HI, 8))
            && matches!(w, Exit::Hvc(0, _))
            && written == 0x3939_3939_3939_3939
            && lo_kept,
        format_args!(
            "VTCR_EL2={vtcr:#x}; gpa {:#x} -> {r_lo:x?} (hpa {H_40_LO:#x}); gpa {:#x} -> {r_hi:x?} (hpa {H_40_HI:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}, low frame untouched={lo_kept}; query={root_hi:x?}",
            lo + 0x40,
            hi + 0x40,
            hi + 0x48
        ),
    );

    let hole = G_BIT39 | 0x8020_0040;
    let f = guest_load(hole);
    rep.verdict(
        "ipa40_hole_fault",
        matches!(f, Err(Exit::Dabt { gpa, hpfar, fsc, wnr: false })
            if gpa == hole && hpfar == hpfar_of(hole) && is_translation(fsc, 2)),
        format_args!(
            "gpa={hole:#x} -> {f:x?} (want translation fault L2, HPFAR_EL2={:#x})",
            hpfar_of(hole)
        ),
    );

    // Flushing a table that is not current: npt switches VTTBR_EL2 to it
    // for the TLBIs and puts this table's value back.
    let mut other = ok(
        NestedTable::<Stage2Ipa39, Frames>::try_new_with(Stage2Params {
            vmid: 3,
            pa_bits: host_pa_bits(),
        }),
        "a second table",
    );
    ok(
        other.map(Gpa::from(0x1000), Hpa::from(H_A), SIZE_4K, RW),
        "map",
    )
    .ignore();
    let tf = ok(other.protect(Gpa::from(0x1000), MF::READ), "protect");
    let flushed = tf.flush();
    let now = mrs!("vttbr_el2");
    let still = guest_load(hi + 0x40);
    rep.verdict(
        "flush_other_vmid",
        flushed.is_ok() && now == vttbr && still == Ok(pattern(H_40_HI, 8)),
        format_args!(
            "flush of VMID 3's batch while VMID 2 is current: {flushed:?}; VTTBR_EL2 after={now:#x} (want {vttbr:#x}); guest still runs: {still:x?}"
        ),
    );
    drop(other);
    drop(t);
}
