//! A bare-metal test hypervisor for QEMU `virt` (AArch64, EL2) that builds
//! its guest's stage-2 tables with npt (Stage2Ipa39 for the shared
//! scenarios, then Stage2Ipa40, Stage2Ipa42 and Stage2Ipa44 for checks of
//! their own) and checks, as named verdicts, that
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

#[path = "../../common/aarch64.rs"]
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

use core::arch::{asm, global_asm};
use core::fmt;
use host_flush::{HostFlush, TableRegister};
use npt::aarch64::{Stage2Ipa39, Stage2Ipa40, Stage2Ipa42, Stage2Ipa44, Stage2Params};
use npt::aarch64::{Stage2Ipa40G16, Stage2Ipa42G64, Stage2Ipa48G16, Stage2Ipa48G64};
use npt::flush::{flush_all, ContextRegister, FlushExecutor, Instr, Issued, Scope};
use npt::instr::Host;
use npt::size::SIZE_4K;
use npt::{FlushError, Format, TlbFlush};
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF};
use report::{fill, pattern, rd, wr, Report};
use scenarios::Applied;
use scenarios::{done, expect, fill_common, fill_frames, load_faulted, map_common, ok, remap_page};
use scenarios::{Access, Class, Fault, Hv, Kind, Layout, Routine, Table, RW, RX};

global_asm!(include_str!("boot.s"), options(raw));
global_asm!(include_str!("guest.s"), options(raw));

// ---------------------------------------------------------------- platform

use platform::exit;
pub use platform::putc;

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

fn code_hpa() -> usize {
    (&raw const guest_start) as usize
}

/// The guest-physical address of a routine in `guest.s`.
fn gaddr(sym: *const u8) -> u64 {
    L.g_code + (sym as usize - code_hpa()) as u64
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

/// Makes `vttbr`/`vtcr` current (a VMID and table switch).
fn load_stage2(vttbr: u64, vtcr: u64) {
    msr!("vtcr_el2", vtcr);
    msr!("vttbr_el2", vttbr);
}

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

/// HPFAR_EL2 as the Arm ARM defines it for a fault at `gpa`: IPA[51:12] in bits 47:4.
const fn hpfar_of(gpa: u64) -> u64 {
    (gpa >> 12) << 4
}

const VTTBR: TableRegister = TableRegister {
    name: "VTTBR_EL2",
    read: || mrs!("vttbr_el2"),
};

/// The hypervisor at EL2, for the shared scenarios.
struct El2;

impl Hv for El2 {
    type Exit = Exit;
    type Flush = HostFlush;
    /// QEMU keeps combined stage-1+2 entries across guest entries.
    const STALE_SHOWS: bool = true;
    const HOLE_STORE: bool = false;

    fn run(&mut self, routine: Routine, x: [u64; 4]) -> Exit {
        let entry = match routine {
            Routine::Copy => &raw const g_copy,
            Routine::Load => &raw const g_load,
            Routine::Store => &raw const g_store,
            Routine::Call => &raw const g_call,
        };
        run(entry, x)
    }

    /// HVC #imm is done (#0 from a routine); a stage-2 abort is a fault
    /// when HPFAR_EL2 holds exactly the faulting IPA's page, with the kind
    /// and level from the fault status code (0b0001LL translation,
    /// 0b0011LL permission) and WnR for data aborts.
    fn classify(e: &Exit) -> Class {
        let fault = |gpa: u64, hpfar: u64, fsc: u64, access| {
            let kind = match fsc >> 2 {
                0b0001 => Kind::Translation,
                0b0011 => Kind::Permission,
                _ => return Class::Other,
            };
            if hpfar != hpfar_of(gpa) {
                return Class::Other;
            }
            Class::Fault {
                gpa,
                access,
                kind: Some(kind),
                level: Some((fsc & 3) as u8),
            }
        };
        match *e {
            Exit::Hvc(imm, x) => Class::Done {
                imm: Some(imm),
                pc: None,
                x,
            },
            Exit::Dabt {
                gpa,
                hpfar,
                fsc,
                wnr,
            } => fault(
                gpa,
                hpfar,
                fsc,
                if wnr { Access::Write } else { Access::Read },
            ),
            Exit::Iabt { gpa, hpfar, fsc } => fault(gpa, hpfar, fsc, Access::Fetch),
            Exit::Other { .. } => Class::Other,
        }
    }

    fn fmt_fault(want: &Fault, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match want.kind {
            Kind::Translation => "translation",
            Kind::Permission => "permission",
        };
        match want.access {
            Access::Fetch => write!(f, "instruction abort, {kind} fault L{}", want.level)?,
            Access::Read | Access::Write => write!(
                f,
                "data abort, {kind} fault L{}, WnR={}",
                want.level,
                u8::from(want.access == Access::Write)
            )?,
        }
        write!(f, ", HPFAR_EL2={:#x}", hpfar_of(want.gpa))
    }

    fn plant_exit(pa: usize, imm: u16) {
        write_insn(pa, hvc(imm));
    }

    fn fmt_planted(gpa: u64, imm: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hvc({imm}), from the HVC #{imm} at gpa {gpa:#x}")
    }

    fn flush<F: Format>(&mut self, tf: TlbFlush<F>, _: Scope) -> HostFlush {
        host_flush::flush(tf, &VTTBR)
    }

    fn flush_all<F: Format>(&mut self) -> HostFlush {
        host_flush::all::<F>(&VTTBR)
    }

    fn skip_flush<F: Format>(&mut self, _: &mut Report, tf: TlbFlush<F>) -> HostFlush {
        host_flush::ignore(tf)
    }

    fn after_remap<F: Format>(&mut self, rep: &mut Report, t: &mut Table<F>, l: &Layout) {
        remap_ipas2_only_control(rep, t, l);
    }
}

// ------------------------------------------------------------------ layout

/// The shared layout: guest code at GPA 0x8000_0000; host memory the tests
/// own from 0x4400_0000 (QEMU virt RAM is 0x4000_0000..0x4800_0000 with
/// -m 128M; this image sits at 0x4010_0000 and is far smaller); the hole
/// with no L1 entry at 2^38 + ...; the 1 GiB block maps all of host RAM
/// (1 GiB aligned at 0x4000_0000).
const L: Layout = Layout::new(
    0x8000_0000,
    0x4400_0000,
    0x40_0000_1230,
    0x4000_0000,
    0x4470_0000,
);
/// The Stage2Ipa40 table's frames: at GPA `L.g_ram` and `G_BIT39 | L.g_ram`.
const H_40_LO: usize = 0x4402_0000;
const H_40_HI: usize = 0x4402_1000;
const G_BIT39: u64 = 1 << 39;
/// The Stage2Ipa42 and Stage2Ipa44 tables' frames: at GPA `L.g_ram` and
/// with the IPA's top bit set.
const H_WIDE_LO: usize = 0x4402_2000;
const H_WIDE_HI: usize = 0x4402_3000;

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
    wide_ipa::<Stage2Ipa42>(&mut rep, 4, "ipa42_bit41", Stage2Ipa42::vtcr_el2);
    wide_ipa::<Stage2Ipa44>(&mut rep, 5, "ipa44_bit43", Stage2Ipa44::vtcr_el2);
    // ID_AA64MMFR0_EL1: TGran16 (23:20) 0b0001+ is 16KB, TGran64 (27:24)
    // 0b0000 is 64KB; TGran16_2 (35:32) and TGran64_2 (39:36) say so for
    // stage 2: 0b0000 "as the stage-1 field", 0b0001 not supported, 0b0010+
    // supported (Arm ARM D19.2).
    let mmfr0 = mrs!("id_aa64mmfr0_el1");
    let field = |lo: u32| (mmfr0 >> lo) & 0xf;
    let s2_16k = match field(32) {
        0 => field(20) != 0,
        1 => false,
        _ => true,
    };
    let s2_64k = match field(36) {
        0 => field(24) == 0,
        1 => false,
        _ => true,
    };
    println!("ID_AA64MMFR0_EL1={mmfr0:#x}: stage-2 16KB granule {s2_16k}, 64KB granule {s2_64k}");
    big_granule::<Stage2Ipa40G16>(&mut rep, 6, "granule_16k", s2_16k);
    big_granule::<Stage2Ipa42G64>(&mut rep, 7, "granule_64k", s2_64k);
    // The 48-bit IPA needs a 48-bit PA too (npt refuses it below).
    let pa48 = host_pa_bits() >= 48;
    big_granule::<Stage2Ipa48G16>(&mut rep, 8, "granule_16k_ipa48", s2_16k && pa48);
    big_granule::<Stage2Ipa48G64>(&mut rep, 9, "granule_64k_ipa48", s2_64k && pa48);
    vhe(&mut rep);

    scenarios::frames_freed(&mut rep, "every table");
    rep.done();
    exit(if rep.fail == 0 { 0 } else { 1 })
}

/// The shared scenarios, on a Stage2Ipa39 table (VMID 1).
fn stage2_ipa39(rep: &mut Report) {
    // FEAT_HAFDBS with dirty state: ID_AA64MMFR1_EL1.HAFDBS (bits 3:0) >= 2.
    let hafdbs = mrs!("id_aa64mmfr1_el1") & 0xf >= 2;
    let mut t = ok(
        Table::<Stage2Ipa39>::try_new_with(Stage2Params {
            vmid: 1,
            pa_bits: host_pa_bits(),
            hafdbs: hafdbs.into(),
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
    map_common(&mut t, &L, code_hpa());
    fill_common(&L);
    load_stage2(vttbr, vtcr);
    scenarios::run_all(rep, &mut El2, &mut t, &L);
    if hafdbs {
        // VTCR_EL2.HA and HD are set (npt's VTCR from `hafdbs`): the CPU
        // grants write permission to writable-clean leaves and sets AF.
        scenarios_hw_dirty::hw_dirty_log(rep, &mut El2, &mut t, L.g_2m, L.h_2m);
    } else {
        println!(
            "INFO hw_dirty_log skipped: ID_AA64MMFR1_EL1.HAFDBS < 2 (no hardware dirty state)"
        );
    }
    // `t` is dropped here while VTTBR_EL2 still points at it; the Ipa40
    // phase replaces it before the guest runs again.
}

/// 5a. A second negative control, right after `flush_all`: npt's page
///     recipe without its TLBI VMALLE1IS (IPAS2E1IS alone does not drop
///     combined stage-1+2 entries) must leave the stale frame, so
///     remap_flush would catch that mistake.
fn remap_ipas2_only_control<F: Format>(rep: &mut Report, t: &mut Table<F>, l: &Layout) {
    let (a, c) = (pattern(l.h_a, 0), pattern(l.h_c, 0));
    let warm = El2.load(l.g_remap);
    let tf = remap_page(t, l.g_remap, l.h_a);
    let partial = tf.flush_with(&mut Without(Instr::TlbiVmalle1is));
    let stale = El2.load(l.g_remap);
    let all = flush_all::<F>(&mut Host);
    let fresh = El2.load(l.g_remap);
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

/// 6. The 40-bit IPA format (two concatenated level-1 roots): GPAs with and
///    without bit 39 reach different frames, and a hole above bit 39
///    reports bit 39 in HPFAR_EL2. Then a flush on the other (Ipa39)
///    table's VMID runs while this one is current and must leave
///    VTTBR_EL2 as it was.
fn stage2_ipa40(rep: &mut Report) {
    let mut t = ok(
        Table::<Stage2Ipa40>::try_new_with(Stage2Params {
            vmid: 2,
            pa_bits: host_pa_bits(),
            hafdbs: 0,
        }),
        "a Stage2Ipa40 table",
    );
    let vtcr = ok(
        Stage2Ipa40::vtcr_el2(t.root_paddr(), t.params()),
        "VTCR_EL2",
    );
    let vttbr = t.root_register();
    println!("Stage2Ipa40: VTTBR_EL2={vttbr:#x} VTCR_EL2={vtcr:#x}");
    let lo = L.g_ram;
    let hi = G_BIT39 | L.g_ram;
    for (gpa, hpa, flags, what) in [
        (L.g_code, code_hpa(), RX, "code"),
        (lo, H_40_LO, RW, "low page"),
        (hi, H_40_HI, RW, "bit-39 page"),
    ] {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, flags),
            what,
        )
        .ignore();
    }
    fill_frames(&[H_40_LO, H_40_HI]);
    let root_hi = t.query(Gpa::from(hi as usize));
    load_stage2(vttbr, vtcr);

    let r_lo = El2.load(lo + 0x40);
    let r_hi = El2.load(hi + 0x40);
    let w = El2.store(hi + 0x48, 0x3939_3939_3939_3939);
    let written = rd(H_40_HI + 0x48);
    let lo_kept = rd(H_40_LO + 0x48) == pattern(H_40_LO, 9);
    rep.verdict(
        "ipa40_bit39",
        r_lo == Ok(pattern(H_40_LO, 8))
            && r_hi == Ok(pattern(H_40_HI, 8))
            && done::<El2>(&w)
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
    let want = Fault::new(hole, Access::Read, Kind::Translation, 2);
    let f = El2.load(hole);
    rep.verdict(
        "ipa40_hole_fault",
        load_faulted::<El2>(&f, &want),
        format_args!("gpa={hole:#x} -> {f:x?} (want {})", expect::<El2>(want)),
    );

    // Flushing a table that is not current: npt switches VTTBR_EL2 to it
    // for the TLBIs and puts this table's value back.
    let mut other = ok(
        Table::<Stage2Ipa39>::try_new_with(Stage2Params {
            vmid: 3,
            pa_bits: host_pa_bits(),
            hafdbs: 0,
        }),
        "a second table",
    );
    ok(
        other.map(Gpa::from(0x1000), Hpa::from(L.h_a), SIZE_4K, RW),
        "map",
    )
    .ignore();
    let tf = ok(other.protect(Gpa::from(0x1000), MF::READ), "protect");
    let flushed = tf.flush();
    let now = mrs!("vttbr_el2");
    let still = El2.load(hi + 0x40);
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

/// 9. Stage2Ipa42 (8 concatenated level-1 roots) and Stage2Ipa44 (a
///    level-0 start), VMIDs 4 and 5: a table with the guest code, a page at
///    `g_ram` and one at `g_ram` with the IPA's top bit (41 / 43) set.
///    VTCR_EL2 comes from npt (T0SZ 22 / 20, SL0 1 / 2, PS from PARange).
///    The top-bit page is its own frame (the low one keeps its contents
///    when the guest stores to it); a hole next to it (the next 2 MiB, no
///    level-3 table) is a level-2 translation fault with its IPA in
///    HPFAR_EL2; IPA 2^42 / 2^44 is refused by npt, and the guest's access
///    there is a translation fault with that IPA in HPFAR_EL2.
fn wide_ipa<F: Format<Params = Stage2Params>>(
    rep: &mut Report,
    vmid: u64,
    name: &str,
    vtcr_of: fn(Hpa, &Stage2Params) -> Result<u64, npt::Error>,
) {
    let bits = F::LAYOUT.geometry.input_bits;
    let mut t = ok(
        Table::<F>::try_new_with(Stage2Params {
            vmid,
            pa_bits: host_pa_bits(),
            hafdbs: 0,
        }),
        "a wide stage-2 table",
    );
    let vtcr = ok(vtcr_of(t.root_paddr(), t.params()), "VTCR_EL2");
    let vttbr = t.root_register();
    println!(
        "{}: VTTBR_EL2={vttbr:#x} VTCR_EL2={vtcr:#x} (T0SZ {}, SL0 {})",
        F::LAYOUT.name,
        vtcr & 0x3f,
        (vtcr >> 6) & 3
    );
    let lo = L.g_ram;
    let hi = (1u64 << (bits - 1)) | L.g_ram;
    for (gpa, hpa, flags, what) in [
        (L.g_code, code_hpa(), RX, "code"),
        (lo, H_WIDE_LO, RW, "low page"),
        (hi, H_WIDE_HI, RW, "top-bit page"),
    ] {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, flags),
            what,
        )
        .ignore();
    }
    fill_frames(&[H_WIDE_LO, H_WIDE_HI]);
    load_stage2(vttbr, vtcr);
    // New VMID on frames an earlier table may have used: start clean.
    let fl = host_flush::all::<F>(&VTTBR);

    let r_lo = El2.load(lo + 0x40);
    let r_hi = El2.load(hi + 0x40);
    let w = El2.store(hi + 0x48, 0x4343_4343_4343_4343);
    let written = rd(H_WIDE_HI + 0x48);
    let lo_kept = rd(H_WIDE_LO + 0x48) == pattern(H_WIDE_LO, 9);
    let hole_gpa = hi + 0x20_0040;
    let hole_want = Fault::new(hole_gpa, Access::Read, Kind::Translation, 2);
    let hole = El2.load(hole_gpa);
    let beyond_gpa = (1u64 << bits) | L.g_ram;
    // AArch64.S2Translate: an IPA beyond the input size is a Translation
    // fault at level 0.
    let beyond_want = Fault::new(beyond_gpa, Access::Read, Kind::Translation, 0);
    let refused = t
        .map(
            Gpa::from(beyond_gpa as usize),
            Hpa::from(H_WIDE_LO),
            SIZE_4K,
            RW,
        )
        .map(|tf| tf.ignore());
    let beyond = El2.load(beyond_gpa);
    // With the guest's stage 1 off, an address at or above the CPU's PA
    // size is a stage-1 Address size fault at level 0, taken at EL1 (Arm
    // ARM D8.2, "the effect of disabling stage 1": output address = input
    // address, checked against PAMax): on a 44-bit CPU the guest cannot
    // even issue IPA 2^44. Its vectors report ESR_EL1 (EC 0x25, DFSC
    // 0b000000) and FAR_EL1 with HVC #0xE1.
    let stage1_limited = beyond_gpa >> host_pa_bits() != 0;
    let beyond_ok = if stage1_limited {
        matches!(beyond, Err(Exit::Hvc(0xe1, [_, esr, _, far]))
            if esr >> 26 == 0x25 && esr & 0x3f == 0 && far == beyond_gpa)
    } else {
        load_faulted::<El2>(&beyond, &beyond_want)
    };
    rep.verdict(
        name,
        fl.ok()
            && r_lo == Ok(pattern(H_WIDE_LO, 8))
            && r_hi == Ok(pattern(H_WIDE_HI, 8))
            && done::<El2>(&w)
            && written == 0x4343_4343_4343_4343
            && lo_kept
            && load_faulted::<El2>(&hole, &hole_want)
            && matches!(refused, Err(npt::Error::GpaOutOfRange { .. }))
            && beyond_ok,
        format_args!(
            "VTCR_EL2={vtcr:#x}, {fl}; gpa {:#x} -> {r_lo:x?} (hpa {H_WIDE_LO:#x}); gpa {:#x} -> {r_hi:x?} (hpa {H_WIDE_HI:#x}); store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}, low frame untouched={lo_kept}; hole gpa {hole_gpa:#x} -> {hole:x?} (want {}); npt map at {beyond_gpa:#x}: {refused:?}; guest load there -> {beyond:x?} (want {})",
            lo + 0x40,
            hi + 0x40,
            hi + 0x48,
            expect::<El2>(hole_want),
            Beyond(stage1_limited, beyond_want)
        ),
    );
    drop(t);
}

/// Host frames for [`big_granule`]: 64 KiB aligned, so they serve either
/// granule; and a probe word inside the level-2 block.
const H_GRAN_LO: usize = 0x4403_0000;
const H_GRAN_HI: usize = 0x4404_0000;
const H_GRAN_PROBE: usize = 0x4300_0000;
/// The block's GPA (aligned to 32 MiB and 512 MiB).
const G_GRAN_BLOCK: u64 = 0x1_0000_0000;

/// 10. The 16 KiB and 64 KiB granules (Stage2Ipa40G16: level 2 over 16
///     concatenated tables; Stage2Ipa42G64: level 2, one table), VMIDs 6
///     and 7, where the CPU supports the granule for stage 2: VTTBR_EL2
///     and VTCR_EL2 come through the `Format` trait (`registers()`), TG0
///     and SL0 from the geometry. A page the size of the granule at
///     `g_ram` is one frame (the guest reads its last word, beyond any 4
///     KiB page); the page with the IPA's top bit set is its own; a
///     level-2 block (32 MiB / 512 MiB) maps host RAM; the next page after
///     `g_ram` is a level-3 translation fault.
fn big_granule<F: Format<Params = Stage2Params>>(
    rep: &mut Report,
    vmid: u64,
    name: &str,
    supported: bool,
) {
    if !supported {
        println!(
            "INFO {name} skipped: ID_AA64MMFR0_EL1 reports no stage-2 support for {}'s granule, or a PA narrower than its IPA",
            F::LAYOUT.name
        );
        return;
    }
    let g = F::LAYOUT.geometry.granule();
    // The level-2 block: the largest leaf (level 1 holds none here).
    let block = F::LAYOUT
        .geometry
        .levels
        .iter()
        .find(|l| l.leaf)
        .map_or(g, |l| 1usize << l.shift);
    let bits = F::LAYOUT.geometry.input_bits;
    let mut t = ok(
        Table::<F>::try_new_with(Stage2Params {
            vmid,
            pa_bits: host_pa_bits(),
            hafdbs: 0,
        }),
        "a big-granule stage-2 table",
    );
    let regs: [(&str, Result<u64, npt::Error>); 2] = {
        let mut it = t.registers();
        let a = it.next();
        let b = it.next();
        match (a, b) {
            (Some(a), Some(b)) => [a, b],
            _ => panic!("two registers"),
        }
    };
    let (vttbr, vtcr) = match regs {
        [("VTTBR_EL2", Ok(a)), ("VTCR_EL2", Ok(b))] => (a, b),
        other => panic!("registers: {other:?}"),
    };
    let lo = L.g_ram;
    let hi = (1u64 << (bits - 1)) | L.g_ram;
    for (gpa, hpa, size, flags, what) in [
        (L.g_code, code_hpa(), g, RX, "code"),
        (lo, H_GRAN_LO, g, RW, "low page"),
        (hi, H_GRAN_HI, g, RW, "top-bit page"),
        (
            G_GRAN_BLOCK,
            H_GRAN_PROBE & !(block - 1),
            block,
            RW,
            "level-2 block",
        ),
    ] {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), size, flags),
            what,
        )
        .ignore();
    }
    for h in [H_GRAN_LO, H_GRAN_HI] {
        fill(h, g / 8, |i| pattern(h, i));
    }
    wr(H_GRAN_PROBE, 0x6b6b_6b6b_0000_0000 | g as u64);
    load_stage2(vttbr, vtcr);
    let fl = host_flush::all::<F>(&VTTBR);

    let last = (g - 8) as u64;
    let r_lo = El2.load(lo + last);
    let r_hi = El2.load(hi + 0x40);
    let w = El2.store(hi + 0x48, 0x1616_6464_1616_6464);
    let written = rd(H_GRAN_HI + 0x48);
    let probe_gpa = G_GRAN_BLOCK + (H_GRAN_PROBE & (block - 1)) as u64;
    let r_block = El2.load(probe_gpa);
    let hole_gpa = lo + g as u64 + 0x40;
    let hole_want = Fault::new(hole_gpa, Access::Read, Kind::Translation, 3);
    let hole = El2.load(hole_gpa);
    rep.verdict(
        name,
        fl.ok()
            && r_lo == Ok(pattern(H_GRAN_LO, g / 8 - 1))
            && r_hi == Ok(pattern(H_GRAN_HI, 8))
            && done::<El2>(&w)
            && written == 0x1616_6464_1616_6464
            && r_block == Ok(0x6b6b_6b6b_0000_0000 | g as u64)
            && load_faulted::<El2>(&hole, &hole_want),
        format_args!(
            "{}: VTTBR_EL2={vttbr:#x} VTCR_EL2={vtcr:#x} (TG0 {}, T0SZ {}, SL0 {}), {fl}; gpa {:#x} (last word of a {g:#x} page) -> {r_lo:x?}; gpa {:#x} -> {r_hi:x?}; store to gpa {:#x}: exit={w:x?}, hpa holds {written:#x}; block gpa {probe_gpa:#x} -> {r_block:x?}; hole gpa {hole_gpa:#x} -> {hole:x?} (want {})",
            F::LAYOUT.name,
            (vtcr >> 14) & 3,
            vtcr & 0x3f,
            (vtcr >> 6) & 3,
            lo + last,
            hi + 0x40,
            hi + 0x48,
            expect::<El2>(hole_want)
        ),
    );
    drop(t);
}

/// HCR_EL2 for a VHE host (Arm ARM D19.2): E2H (bit 34) and TGE (bit 27),
/// with RW (bit 31) and VM (bit 0) for the guest; the guest runs with TGE
/// clear.
const HCR_E2H: u64 = 1 << 34;
const HCR_TGE: u64 = 1 << 27;
const HCR_GUEST: u64 = (1 << 31) | 1;
/// CPTR_EL2 with E2H = 1 has CPACR_EL1's layout: FPEN (bits 21:20) = 0b11
/// leaves FP/SIMD untrapped at EL2.
const CPTR_VHE: u64 = 3 << 20;
/// CPTR_EL2 with E2H = 0 (as boot.s sets it).
const CPTR_NVHE: u64 = 0x33ff;
/// The VHE phase's frames.
const H_VHE: [usize; 3] = [0x4405_0000, 0x4405_1000, 0x4405_2000];

/// Switches between the non-VHE hypervisor and a VHE host (E2H = 1, TGE =
/// 1 while the host runs). CPTR_EL2 changes layout with E2H, so it is
/// rewritten in the same breath, before any FP use.
fn set_vhe(on: bool) {
    let (hcr, cptr) = if on {
        (HCR_E2H | HCR_TGE | HCR_GUEST, CPTR_VHE)
    } else {
        (HCR_GUEST, CPTR_NVHE)
    };
    // SAFETY: the hypervisor owns HCR_EL2 and CPTR_EL2; nothing between the
    // two writes uses FP/SIMD.
    unsafe {
        asm!(
            "msr hcr_el2, {h}",
            "isb",
            "msr cptr_el2, {c}",
            "isb",
            h = in(reg) hcr,
            c = in(reg) cptr,
            options(nostack)
        )
    };
}

/// A guest load under the VHE host: TGE cleared for the guest's run (the
/// EL1&0 regime exists only then) and set again on the way back.
fn vhe_load(gpa: u64) -> Result<u64, Exit> {
    msr!("hcr_el2", HCR_E2H | HCR_GUEST);
    let r = El2.load(gpa);
    msr!("hcr_el2", HCR_E2H | HCR_TGE | HCR_GUEST);
    r
}

/// Runs a batch on the host's instructions but ignores the recipe's
/// `clear = [HCR_EL2_TGE]`: the negative control of `vhe_remap_flush`.
struct KeepTge;

impl FlushExecutor for KeepTge {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        Host.execute(op)
    }

    fn switch_context(
        &mut self,
        reg: ContextRegister,
        value: u64,
    ) -> Result<Option<u64>, FlushError> {
        match reg {
            ContextRegister::HcrEl2Tge => Ok(None),
            _ => Host.switch_context(reg, value),
        }
    }

    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError> {
        Host.restore_context(reg, old)
    }
}

/// 11. A VHE host (FEAT_VHE, `-cpu max`; HCR_EL2.E2H = 1, TGE = 1 outside
///     the guest), table Stage2Ipa39 VMID 10. With E2H and TGE set, TLBI
///     VMALLE1IS acts on the host's EL2&0 regime, not the guest's EL1&0
///     (Arm ARM, TLBI VMALLE1IS), and TLBI IPAS2E1IS drops stage-2 entries
///     only, so the guest's cached stage-1+2 entry survives a remap whose
///     recipe leaves TGE set: `vhe_tge_control` must see the old frame.
///     npt's recipe clears TGE around its TLBIs (`clear = [HCR_EL2_TGE]`),
///     so after it the guest sees the new frame (`vhe_remap_flush`), and
///     TGE is set again.
fn vhe(rep: &mut Report) {
    if (mrs!("id_aa64mmfr1_el1") >> 8) & 0xf == 0 {
        println!("INFO vhe skipped: ID_AA64MMFR1_EL1.VH is 0 (no FEAT_VHE)");
        return;
    }
    let mut t = ok(
        Table::<Stage2Ipa39>::try_new_with(Stage2Params {
            vmid: 10,
            pa_bits: host_pa_bits(),
            hafdbs: 0,
        }),
        "a VHE stage-2 table",
    );
    let g = L.g_ram;
    for (gpa, hpa, flags, what) in [
        (L.g_code, code_hpa(), RX, "code"),
        (g, H_VHE[0], RW, "the remapped page"),
    ] {
        ok(
            t.map(Gpa::from(gpa as usize), Hpa::from(hpa), SIZE_4K, flags),
            what,
        )
        .ignore();
    }
    fill_frames(&H_VHE);
    let vtcr = ok(
        Stage2Ipa39::vtcr_el2(t.root_paddr(), t.params()),
        "VTCR_EL2",
    );
    load_stage2(t.root_register(), vtcr);
    let fl = host_flush::all::<Stage2Ipa39>(&VTTBR);
    let [a, b, c] = H_VHE.map(|h| pattern(h, 0));

    set_vhe(true);
    let hcr_host = mrs!("hcr_el2");
    let warm = vhe_load(g);
    let tf = remap_page(&mut t, g, H_VHE[1]);
    let kept = tf.flush_with(&mut KeepTge).map_err(|u| u.error);
    let stale = vhe_load(g);
    let tf = remap_page(&mut t, g, H_VHE[2]);
    let flushed = tf.flush().map_err(|u| u.error);
    let hcr_after = mrs!("hcr_el2");
    let fresh = vhe_load(g);
    set_vhe(false);

    rep.verdict(
        "vhe_tge_control",
        fl.ok() && warm == Ok(a) && kept.is_ok() && stale == Ok(a),
        format_args!(
            "HCR_EL2={hcr_host:#x} (E2H, TGE); before={warm:x?} (A {a:#x}); remap to B, npt's page recipe with TGE left set: {kept:?}; guest load -> {stale:x?} (want the stale A: VMALLE1IS hit EL2&0)"
        ),
    );
    rep.verdict(
        "vhe_remap_flush",
        flushed.is_ok() && hcr_after == hcr_host && fresh == Ok(c),
        format_args!(
            "remap to C, TlbFlush::flush() (TGE cleared around the TLBIs): {flushed:?}; HCR_EL2 after={hcr_after:#x} (want {hcr_host:#x}); guest load -> {fresh:x?} (want C {c:#x}, not B {b:#x})"
        ),
    );
    drop(t);
}

/// What a guest access beyond the IPA size should give (see [`wide_ipa`]).
struct Beyond(bool, Fault);

impl fmt::Display for Beyond {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 {
            write!(
                f,
                "beyond the CPU's PA size: the guest's own stage-1 Address size fault L0, ESR_EL1 EC 0x25 DFSC 0, FAR_EL1={:#x}",
                self.1.gpa
            )
        } else {
            El2::fmt_fault(&self.1, f)
        }
    }
}
