//! A bare-metal test hypervisor for QEMU `virt` (RV64 with the hypervisor
//! extension) that builds its guest's Sv39x4 G-stage table with npt and
//! checks, as named verdicts, that the hardware (QEMU's model of it)
//! translates, faults and invalidates as npt intends.
//!
//! Run: `qemu-system-riscv64 -M virt -cpu rv64,h=true,svpbmt=true -m 128M
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

#[path = "../../common/frames.rs"]
mod frames;
#[path = "../../common/report.rs"]
#[macro_use]
mod report;

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};
use frames::Frames;
use npt::flush::{flush_all, Scope};
use npt::instr::Host;
use npt::riscv::{Sv39x4, Sv39x4Params};
use npt::size::{SIZE_1G, SIZE_2M, SIZE_4K};
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF, NestedTable};
use report::{fill, pattern, rd, wr, Report};

global_asm!(include_str!("boot.s"), options(raw));
global_asm!(include_str!("guest.s"), options(raw));

// ---------------------------------------------------------------- platform

const UART: usize = 0x1000_0000;
const TEST_DEVICE: usize = 0x10_0000;

/// Writes one byte to the 16550 (LSR bit 5: THR empty).
pub fn putc(c: u8) {
    // SAFETY: the 16550 of QEMU virt.
    unsafe {
        while ((UART + 5) as *const u8).read_volatile() & 0x20 == 0 {}
        (UART as *mut u8).write_volatile(c);
    }
}

/// Ends the QEMU run with `code` (the sifive_test device: 0x5555 passes,
/// `code << 16 | 0x3333` fails with that exit status).
fn exit(code: u32) -> ! {
    let v = if code == 0 {
        0x5555
    } else {
        (code << 16) | 0x3333
    };
    // SAFETY: the test device of QEMU virt.
    unsafe { (TEST_DEVICE as *mut u32).write_volatile(v) };
    loop {
        // SAFETY: waiting forever has no effect.
        unsafe { asm!("wfi") };
    }
}

macro_rules! csrr {
    ($csr:literal) => {{
        let v: u64;
        // SAFETY: reading a CSR of the current or a lower mode.
        unsafe { asm!(concat!("csrr {}, ", $csr), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! csrw {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the hypervisor owns its own and the guest's CSRs.
        unsafe { asm!(concat!("csrw ", $csr, ", {}"), in(reg) v, options(nostack)) };
    }};
}

macro_rules! csrs {
    ($csr:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: as for csrw.
        unsafe { asm!(concat!("csrs ", $csr, ", {}"), in(reg) v, options(nostack)) };
    }};
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    exit(2)
}

#[no_mangle]
extern "C" fn m_unexpected(cause: u64, epc: u64, tval: u64) -> ! {
    println!("PANIC: M-mode trap mcause={cause:#x} mepc={epc:#x} mtval={tval:#x}");
    exit(3)
}

#[no_mangle]
extern "C" fn hs_unexpected(cause: u64, epc: u64, tval: u64) -> ! {
    println!("PANIC: HS-mode trap scause={cause:#x} sepc={epc:#x} stval={tval:#x}");
    exit(3)
}

/// misa and menvcfg as M-mode left them, for HS-mode to report.
static MISA: AtomicU64 = AtomicU64::new(0);
static MENVCFG: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn m_trap();
    fn hs_entry();
}

/// M-mode: everything a firmware would do before starting a hypervisor in
/// HS-mode.
#[no_mangle]
extern "C" fn m_main() -> ! {
    csrw!("mtvec", m_trap as *const () as u64);
    // One NAPOT PMP entry over all of memory, R W X, for S and U.
    csrw!("pmpaddr0", u64::MAX >> 10);
    csrw!("pmpcfg0", 0x1f);
    // The guest's exceptions go to HS-mode: misaligned/access faults (0-7),
    // illegal instruction, breakpoint, ECALL from U and VS (8, 10), page
    // faults (12, 13, 15), guest-page faults (20, 21, 23), virtual
    // instruction (22).
    let deleg: u64 = 0xff | 1 << 8 | 1 << 10 | 1 << 12 | 1 << 13 | 1 << 15 | 0xf << 20;
    csrw!("medeleg", deleg);
    csrw!("mideleg", 0);
    // menvcfg.PBMTE (bit 62): Svpbmt for S-mode and the G-stage (npt maps
    // DEVICE with PBMT = IO).
    csrs!("0x30a", 1 << 62);
    MENVCFG.store(csrr!("0x30a"), Ordering::Relaxed);
    MISA.store(csrr!("misa"), Ordering::Relaxed);
    // mret to HS-mode (MPP = S, MPV = 0) with FS = Initial (the Rust code
    // may use FP registers).
    let mstatus = csrr!("mstatus");
    let mstatus = (mstatus & !(3 << 11) & !(1 << 39) & !(3 << 13)) | 1 << 11 | 1 << 13;
    csrw!("mstatus", mstatus);
    csrw!("mepc", hs_entry as *const () as u64);
    // SAFETY: mepc and mstatus are set up for HS-mode.
    unsafe { asm!("mret", options(noreturn)) }
}

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
impl core::fmt::Debug for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
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

/// The guest-physical address of the guest code page.
const G_CODE: u64 = 0xc000_0000;

fn code_hpa() -> usize {
    (&raw const guest_start) as usize
}

/// The guest-physical address of a routine in `guest.s`.
fn gaddr(sym: *const u8) -> u64 {
    G_CODE + (sym as usize - code_hpa()) as u64
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

fn guest_load(gpa: u64) -> Result<u64, Exit> {
    match run(&raw const g_load, [gpa, 0, 0, 0]) {
        Exit::Ecall { x, .. } => Ok(x[1]),
        e => Err(e),
    }
}

fn guest_store(gpa: u64, v: u64) -> Exit {
    run(&raw const g_store, [gpa, v, 0, 0])
}

fn is_ecall(e: &Exit) -> bool {
    matches!(e, Exit::Ecall { .. })
}

/// A guest-page fault of `cause` at `gpa`, reported as the privileged spec
/// says: htval = GPA >> 2 and (vsatp Bare) stval = GPA.
fn is_gpf(e: &Exit, cause: u64, gpa: u64) -> bool {
    matches!(*e, Exit::Gpf { cause: c, htval, stval, .. } if c == cause && htval == gpa >> 2 && stval == gpa)
}

fn is_gpf_load(r: &Result<u64, Exit>, gpa: u64) -> bool {
    matches!(r, Err(e) if is_gpf(e, 21, gpa))
}

// ------------------------------------------------------------------ layout

/// Host memory the tests own (QEMU virt RAM is 0x8000_0000..0x8800_0000
/// with -m 128M; this image sits at 0x8000_0000 and is far smaller).
const H_RAM: usize = 0x8400_0000; // 16 pages of guest RAM
const RAM_SIZE: usize = 0x1_0000;
const H_RO: usize = 0x8401_0000;
const H_NX: usize = 0x8401_1000;
const H_A: usize = 0x8401_2000;
const H_B: usize = 0x8401_3000;
const H_C: usize = 0x8401_4000;
const H_NEW: usize = 0x8401_5000;
const H_39: usize = 0x8402_0000;
const H_40: usize = 0x8402_1000;
const H_2M: usize = 0x8460_0000;
const H_CTX_4K: usize = 0x8480_0000;
const H_CTX_2M: usize = 0x84a0_0000;
/// The 1 GiB gigapage maps host RAM (1 GiB aligned at 0x8000_0000).
const H_1G: usize = 0x8000_0000;
const H_1G_PROBE: usize = 0x8470_0000;

/// Guest-physical addresses: none equals its host-physical address.
const G_RAM: u64 = 0xc010_0000;
const G_HOLE: u64 = G_RAM + RAM_SIZE as u64 + 0x28; // same leaf table, no entry
const G_HOLE_ROOT: u64 = 0x40_0000_1230; // no root entry
const G_RO: u64 = 0xc012_0000;
const G_NX: u64 = 0xc013_0000;
const G_REMAP: u64 = 0xc014_0000;
const G_NEW: u64 = 0xc015_0000;
const G_2M: u64 = 0xc040_0000;
const G_CTX: u64 = 0xc060_0000;
const G_1G: u64 = 0x1_0000_0000;
const G_UART: u64 = 0xd000_0000;
const BIT39: u64 = 1 << 39;
const BIT40: u64 = 1 << 40;
const BIT41: u64 = 1 << 41;

const RWX: MF = MF::READ.union(MF::WRITE).union(MF::EXECUTE);
const RW: MF = MF::READ.union(MF::WRITE);
const RX: MF = MF::READ.union(MF::EXECUTE);

/// `ECALL`.
const ECALL: u32 = 0x0000_0073;

fn write_insn(pa: usize, insn: u32) {
    let w = rd(pa) & !0xffff_ffff | insn as u64;
    wr(pa, w);
    // SAFETY: instruction fetches see the store after FENCE.I.
    unsafe { asm!("fence.i", options(nostack)) };
}

fn ok<T>(r: Result<T, npt::Error>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("npt refused {what}: {e}"),
    }
}

type Table = NestedTable<Sv39x4, Frames>;

// -------------------------------------------------------------------- main

#[no_mangle]
extern "C" fn hv_main() -> ! {
    let misa = MISA.load(Ordering::Relaxed);
    let menvcfg = MENVCFG.load(Ordering::Relaxed);
    let pbmte = menvcfg & (1 << 62) != 0;
    println!(
        "npt test hypervisor, riscv64, HS-mode; misa={misa:#x} (H={}) menvcfg.PBMTE={pbmte}",
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
        Table::try_new_with(Sv39x4Params { vmid: 1 }),
        "an Sv39x4 table",
    );
    let hgatp = t.root_register();
    let code = code_hpa();
    // The table is not live yet: nothing to invalidate.
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
        "2M page",
    )
    .ignore();
    ok(
        t.map(Gpa::from(G_1G as usize), Hpa::from(H_1G), SIZE_1G, RW),
        "1G page",
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
    ok(
        t.map(
            Gpa::from((BIT39 | G_RAM) as usize),
            Hpa::from(H_39),
            SIZE_4K,
            RW,
        ),
        "bit-39 page",
    )
    .ignore();
    ok(
        t.map(
            Gpa::from((BIT40 | G_RAM) as usize),
            Hpa::from(H_40),
            SIZE_4K,
            RW,
        ),
        "bit-40 page",
    )
    .ignore();
    ok(
        t.map(
            Gpa::from(G_UART as usize),
            Hpa::from(UART),
            SIZE_4K,
            RW | MF::DEVICE,
        ),
        "UART",
    )
    .ignore();

    for pa in [
        H_RO,
        H_NX,
        H_A,
        H_B,
        H_C,
        H_NEW,
        H_39,
        H_40,
        H_CTX_4K + 0x5000,
        H_CTX_2M + 0x5000,
    ] {
        fill(pa, 512, |i| pattern(pa, i));
    }
    fill(H_RAM, RAM_SIZE / 8, |i| pattern(H_RAM, i));

    csrw!("0x680", hgatp);
    let readback = csrr!("0x680");
    println!("Sv39x4: hgatp={hgatp:#x} (read back {readback:#x})");
    if readback != hgatp {
        println!("PANIC: hgatp did not take the Sv39x4 value");
        exit(4);
    }

    ram_rw(&mut rep);
    hole_fault(&mut rep);
    ro_write(&mut rep);
    nx_fetch(&mut rep);
    huge_2m(&mut rep, &t);
    huge_1g(&mut rep, &t);
    remap(&mut rep, &mut t);
    remap_context(&mut rep, &mut t);
    protect_flush(&mut rep, &mut t);
    map_after_fault(&mut rep, &mut t);
    sv39x4_bit39(&mut rep);
    sv39x4_bit40(&mut rep, &mut t);
    device_pbmt(&mut rep, &t, pbmte);

    drop(t);
    let live = Frames::live();
    rep.verdict(
        "frames_freed",
        live == 0,
        format_args!("frames still allocated after dropping the table: {live}"),
    );
    rep.done();
    exit(if rep.fail == 0 { 0 } else { 1 })
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
        is_ecall(&e) && bad.is_none() && sentinels,
        format_args!(
            "exit={e:x?} gpa {:#x}->{:#x} hpa {:#x}->{:#x} words={n} first_mismatch={bad:x?} sentinels_intact={sentinels}",
            G_RAM + src_off as u64,
            G_RAM + dst_off as u64,
            H_RAM + src_off,
            H_RAM + dst_off
        ),
    );
}

/// 2. Accesses to holes (no leaf-table entry; no root entry) are
///    guest-page faults with htval = GPA >> 2.
fn hole_fault(rep: &mut Report) {
    let leaf = guest_load(G_HOLE);
    let root = guest_load(G_HOLE_ROOT);
    let store = guest_store(G_HOLE + 8, 1);
    rep.verdict(
        "hole_fault",
        is_gpf_load(&leaf, G_HOLE) && is_gpf_load(&root, G_HOLE_ROOT) && is_gpf(&store, 23, G_HOLE + 8),
        format_args!(
            "load gpa={G_HOLE:#x} -> {leaf:x?} (want cause 21, htval={:#x}); load gpa={G_HOLE_ROOT:#x} -> {root:x?} (want cause 21, htval={:#x}); store gpa={:#x} -> {store:x?} (want cause 23, htval={:#x})",
            G_HOLE >> 2,
            G_HOLE_ROOT >> 2,
            G_HOLE + 8,
            (G_HOLE + 8) >> 2
        ),
    );
}

/// 3a. The read-only page reads, and a write to it is a store guest-page
///     fault (a permission fault: the page is mapped) that leaves the host
///     frame unchanged.
fn ro_write(rep: &mut Report) {
    let probe = G_RO + 0x100;
    let before = rd(H_RO + 0x100);
    let read = guest_load(probe);
    let w = guest_store(probe, 0xdead_beef_dead_beef);
    let after = rd(H_RO + 0x100);
    rep.verdict(
        "ro_write",
        read == Ok(before) && is_gpf(&w, 23, probe) && after == before,
        format_args!(
            "read={read:x?} (want Ok({before:#x})); write -> {w:x?} (want cause 23, htval={:#x}); frame unchanged={}",
            probe >> 2,
            after == before
        ),
    );
}

/// 3b. Fetching from the no-execute page is an instruction guest-page fault
///     (the same ECALL placed in executable RAM runs: the control).
fn nx_fetch(rep: &mut Report) {
    write_insn(H_NX, ECALL);
    write_insn(H_RAM + 0xe000, ECALL);
    let control = run(&raw const g_call, [G_RAM + 0xe000, 0, 0, 0]);
    let fetch = run(&raw const g_call, [G_NX, 0, 0, 0]);
    let data = guest_load(G_NX + 8);
    rep.verdict(
        "nx_fetch",
        matches!(control, Exit::Ecall { pc, .. } if pc == G_RAM + 0xe000)
            && is_gpf(&fetch, 20, G_NX)
            && data == Ok(rd(H_NX + 8)),
        format_args!(
            "exec from RAM -> {control:x?} (want ECALL at {:#x}); exec gpa={G_NX:#x} -> {fetch:x?} (want cause 20, htval={:#x}); data read={data:x?}",
            G_RAM + 0xe000,
            G_NX >> 2
        ),
    );
}

/// 4a. A 2 MiB megapage: the guest copies from its middle to its last bytes.
fn huge_2m(rep: &mut Report, t: &Table) {
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
        leaf && is_ecall(&e) && copied,
        format_args!(
            "leaf={q:x?}; gpa {:#x}->{:#x} hpa {:#x}->{:#x} exit={e:x?} copied={copied}",
            G_2M + src as u64,
            G_2M + dst as u64,
            H_2M + src,
            H_2M + dst
        ),
    );
}

/// 4b. A 1 GiB gigapage over host RAM.
fn huge_1g(rep: &mut Report, t: &Table) {
    let off = (H_1G_PROBE - H_1G) as u64;
    let q = t.query(Gpa::from((G_1G + off) as usize));
    wr(H_1G_PROBE, 0x1611_1611_1611_1611);
    let read = guest_load(G_1G + off);
    let w = guest_store(G_1G + off + 0x100, 0x1633_1633_1633_1633);
    let written = rd(H_1G_PROBE + 0x100);
    let leaf = q.map(|q| (q.size, q.hpa.as_usize())) == Ok((SIZE_1G, H_1G_PROBE));
    rep.verdict(
        "huge_1g",
        leaf && read == Ok(0x1611_1611_1611_1611) && is_ecall(&w) && written == 0x1633_1633_1633_1633,
        format_args!(
            "leaf={q:x?}; read gpa {:#x} (hpa {H_1G_PROBE:#x}) = {read:x?}; wrote gpa {:#x}, hpa {:#x} holds {written:#x}",
            G_1G + off,
            G_1G + off + 0x100,
            H_1G_PROBE + 0x100
        ),
    );
}

/// Remaps `gpa` (a 4 KiB page) to `hpa`; returns the merged invalidations.
fn remap_page(t: &mut Table, gpa: u64, hpa: usize) -> npt::TlbFlush<Sv39x4> {
    let (_, mut tf) = ok(t.unmap(Gpa::from(gpa as usize)), "unmap");
    tf.merge(ok(
        t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, RW),
        "map",
    ));
    tf
}

/// 5. Remapping a page the guest has used: after npt's HFENCE.GVMA recipe
///    the guest sees the new frame. The run without it is reported (INFO),
///    not judged: QEMU flushes its TLB whenever V changes, so the stale
///    frame cannot show on RISC-V.
fn remap(rep: &mut Report, t: &mut Table) {
    let (a, b, c) = (pattern(H_A, 0), pattern(H_B, 0), pattern(H_C, 0));

    let warm = guest_load(G_REMAP);
    let tf = remap_page(t, G_REMAP, H_B);
    let scope = tf.scope();
    let pages = tf.pages().len();
    let flushed = tf.flush();
    let after = guest_load(G_REMAP);
    rep.verdict(
        "remap_flush",
        warm == Ok(a) && scope == Scope::Pages && flushed.is_ok() && after == Ok(b),
        format_args!(
            "before={warm:x?} (frame A {a:#x}); remap to B, batch scope={scope:?} pages={pages}, flush={flushed:?}; after={after:x?} (want frame B {b:#x})"
        ),
    );

    let warm = guest_load(G_REMAP);
    remap_page(t, G_REMAP, H_C).ignore();
    let seen = guest_load(G_REMAP);
    let what = if seen == Ok(b) {
        "stale (old frame B)"
    } else if seen == Ok(c) {
        "fresh (new frame C)"
    } else {
        "neither"
    };
    println!(
        "INFO remap_stale_control observed={what} detail=before={warm:x?}; remap to C with the invalidation suppressed (.ignore()); after={seen:x?}"
    );

    let all = flush_all::<Sv39x4>(&mut Host);
    let fresh = guest_load(G_REMAP);
    rep.verdict(
        "flush_all",
        all.is_ok() && fresh == Ok(c),
        format_args!("flush_all={all:?}; after={fresh:x?} (want frame C {c:#x})"),
    );
}

/// 5b. Context scope: 2 MiB of 4 KiB pages the guest has used are unmapped
///     (their table freed) and replaced by a 2 MiB megapage elsewhere.
fn remap_context(rep: &mut Report, t: &mut Table) {
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
            "before={warm:x?} (want {old:#x}); 512 pages -> one 2M page, scope={scope:?}, flush={flushed:?}; after={after:x?} (want {new:#x})"
        ),
    );
}

/// 5c. Write-protecting a page the guest has written: after npt's flush the
///     next write is a store guest-page fault.
fn protect_flush(rep: &mut Report, t: &mut Table) {
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
        is_ecall(&warm) && flushed.is_ok() && is_gpf(&w, 23, probe) && held == 0x7777_0000_0000_0001,
        format_args!(
            "write before={warm:x?}; protect READ, scope={scope:?}, flush={flushed:?}; write after -> {w:x?} (want cause 23); hpa holds {held:#x}"
        ),
    );
}

/// 5d. Mapping a GPA the guest has just faulted on (RISC-V may cache the
///     invalid entry, so npt fences on map too): the guest then reaches it.
fn map_after_fault(rep: &mut Report, t: &mut Table) {
    let probe = G_NEW + 0x10;
    let before = guest_load(probe);
    let tf = ok(
        t.map(Gpa::from(G_NEW as usize), Hpa::from(H_NEW), SIZE_4K, RW),
        "map",
    );
    let scope = tf.scope();
    let flushed = tf.flush();
    let after = guest_load(probe);
    rep.verdict(
        "map_after_fault",
        is_gpf_load(&before, probe) && scope == Scope::Pages && flushed.is_ok() && after == Ok(pattern(H_NEW, 2)),
        format_args!(
            "before={before:x?} (want cause 21); map, scope={scope:?}, flush={flushed:?}; after={after:x?} (want {:#x})",
            pattern(H_NEW, 2)
        ),
    );
}

/// 6a. Sv39x4's widened root: a GPA with bit 39 set reaches its own frame,
///     not the one mapped at the same GPA without bit 39.
fn sv39x4_bit39(rep: &mut Report) {
    let hi = BIT39 | G_RAM;
    let r_lo = guest_load(G_RAM + 0x40);
    let r_hi = guest_load(hi + 0x40);
    let w = guest_store(hi + 0x48, 0x3939_3939_3939_3939);
    let written = rd(H_39 + 0x48);
    let hole = guest_load(BIT39 | 0xc020_0040);
    rep.verdict(
        "sv39x4_bit39",
        r_lo == Ok(pattern(H_RAM, 8))
            && r_hi == Ok(pattern(H_39, 8))
            && is_ecall(&w)
            && written == 0x3939_3939_3939_3939
            && is_gpf_load(&hole, BIT39 | 0xc020_0040),
        format_args!(
            "gpa {:#x} -> {r_lo:x?} (hpa {H_RAM:#x}); gpa {:#x} -> {r_hi:x?} (hpa {H_39:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; hole gpa {:#x} -> {hole:x?}",
            G_RAM + 0x40,
            hi + 0x40,
            hi + 0x48,
            BIT39 | 0xc020_0040
        ),
    );
}

/// 6b. The top of Sv39x4's range: a GPA with bit 40 set works; GPA bit 41
///     is beyond it (npt refuses to map it, the guest faults).
fn sv39x4_bit40(rep: &mut Report, t: &mut Table) {
    let hi = BIT40 | G_RAM;
    let r = guest_load(hi + 0x40);
    let w = guest_store(hi + 0x48, 0x4040_4040_4040_4040);
    let written = rd(H_40 + 0x48);
    let refused = t
        .map(
            Gpa::from((BIT41 | G_RAM) as usize),
            Hpa::from(H_NEW),
            SIZE_4K,
            RW,
        )
        .map(|tf| tf.ignore());
    let beyond = guest_load(BIT41 | G_RAM);
    rep.verdict(
        "sv39x4_bit40",
        r == Ok(pattern(H_40, 8))
            && is_ecall(&w)
            && written == 0x4040_4040_4040_4040
            && matches!(refused, Err(npt::Error::GpaOutOfRange { .. }))
            && is_gpf_load(&beyond, BIT41 | G_RAM),
        format_args!(
            "gpa {:#x} -> {r:x?} (hpa {H_40:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; npt map at {:#x}: {refused:?}; guest load there -> {beyond:x?} (want cause 21)",
            hi + 0x40,
            hi + 0x48,
            BIT41 | G_RAM
        ),
    );
}

/// 7. DEVICE memory (Svpbmt PBMT = IO in the leaf): the guest reads the
///    UART's line status register through it.
fn device_pbmt(rep: &mut Report, t: &Table, pbmte: bool) {
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
