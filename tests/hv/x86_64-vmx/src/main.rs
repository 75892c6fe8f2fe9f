//! A bare-metal test hypervisor for Bochs (x86_64 with Intel VMX and EPT)
//! that builds its guest's extended page tables (`Ept4`) with npt and
//! checks, as named verdicts, that the CPU (Bochs's model of it) translates
//! and faults as npt intends and that npt's INVEPT makes a remap visible.
//!
//! Bochs boots it from a disk: `boot.s`'s boot sector loads the image,
//! enters protected mode, and `x86_longmode.s` builds an identity map of
//! 0..4 GiB and switches to long mode. This code then enters VMX operation
//! (CR4.VMXE, CR0/CR4 adjusted to IA32_VMX_CR{0,4}_FIXED{0,1}, VMXON with
//! the revision from IA32_VMX_BASIC), fills one VMCS with controls adjusted
//! to the TRUE capability MSRs, and runs a 64-bit guest (`x86_guest.s`,
//! with its own 1 GiB-page identity tables) under EPTP = npt's
//! `root_register()`. Output goes to Bochs's port 0xE9; the run ends by
//! writing "Shutdown" to port 0x8900 (Bochs then exits with status 1,
//! whatever the verdicts: the runner judges the verdict lines).
//!
//! Sections cited are from the Intel SDM Vol. 3C (2023+ editions): §25
//! "Virtual Machine Control Structures", §27 "VM Entries", §28 "VM Exits",
//! §29.3 "The Extended Page Table Mechanism (EPT)", and Vol. 3D Appendix A
//! "VMX Capability Reporting Facility".

#![no_std]
#![no_main]

#[path = "../../common/frames.rs"]
mod frames;
#[path = "../../common/host_flush.rs"]
mod host_flush;
#[path = "../../common/report.rs"]
#[macro_use]
mod report;
#[path = "../../common/scenarios.rs"]
mod scenarios;
#[path = "../../common/scenarios_hw_dirty.rs"]
mod scenarios_hw_dirty;
#[path = "../../common/scenarios_rv_x86.rs"]
mod scenarios_rv_x86;
#[path = "../../common/x86.rs"]
mod x86;

mod checks;
mod vmx;

use core::arch::global_asm;
use core::fmt;
use host_flush::{HostFlush, TableRegister};
use npt::flush::Scope;
use npt::x86_64::{Ept4, Ept4Params};
use npt::{Format, TlbFlush};
use report::{pattern, Report};
use scenarios::{fill_common, fill_frames, map_common, ok};
use scenarios::{Access, Class, Fault, Hv, Kind, Routine, Table};
use vmx::{Exit, Vmx};
use x86::{code_hpa, load_idt, map_x86, outb, write_guest_tables, write_insn};
use x86::{G_GPT, G_NEW, H_39, H_NEW, L};

global_asm!(
    include_str!("../../common/x86_longmode.s"),
    options(att_syntax, raw)
);
global_asm!(include_str!("boot.s"), options(att_syntax, raw));
global_asm!(
    ".macro guest_exit\n vmcall\n.endm",
    include_str!("../../common/x86_guest.s"),
    options(att_syntax, raw)
);

// ---------------------------------------------------------------- platform

/// Bochs's `port_e9_hack`: bytes written here go to its stdout.
const E9: u16 = 0xe9;
/// Bochs's shutdown port: writing "Shutdown" ends the emulation.
const SHUTDOWN_PORT: u16 = 0x8900;

/// Writes one byte to the console.
pub fn putc(c: u8) {
    outb(E9, c);
}

/// Ends the Bochs run.
fn exit() -> ! {
    b"Shutdown".iter().for_each(|&c| outb(SHUTDOWN_PORT, c));
    println!("PANIC: still running after writing Shutdown to port {SHUTDOWN_PORT:#x}");
    loop {
        // SAFETY: stops this CPU.
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("PANIC: {info}");
    exit()
}

/// An exception taken by the host itself (the longmode stubs): a bug.
#[no_mangle]
extern "C" fn host_exception(vector: u64, error: u64, rip: u64, cr2: u64) -> ! {
    println!("PANIC: host exception vector={vector} error={error:#x} rip={rip:#x} cr2={cr2:#x}");
    exit()
}

// --------------------------------------------------------------- the guest

/// `VMCALL` (0F 01 C1).
const VMCALL: u32 = 0x00c1_010f;

/// EPT-violation exit qualification (SDM Vol. 3C §28.2.1, Table 28-7):
/// bits 0..2 the access (read, write, fetch), bits 3..5 whether the
/// entries allowed read, write, execute (the AND over the walk; all clear
/// for a not-present entry), bit 7 the guest linear address is valid, bit
/// 8 the access was to the translated linear address (not to a guest
/// paging structure).
pub mod qual {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const FETCH: u64 = 1 << 2;
    pub const READABLE: u64 = 1 << 3;
    pub const WRITABLE: u64 = 1 << 4;
    pub const EXECUTABLE: u64 = 1 << 5;
    pub const LINEAR_VALID: u64 = 1 << 7;
    pub const TRANSLATED: u64 = 1 << 8;
}

impl Hv for Vmx {
    type Exit = Exit;
    type Flush = HostFlush;
    /// Bochs drops its TLB on every VM entry and exit (see the README for
    /// the `vpid_stale` probe that checks it with VPID on).
    const STALE_SHOWS: bool = false;
    const HOLE_STORE: bool = true;

    fn run(&mut self, routine: Routine, x: [u64; 4]) -> Exit {
        self.run_routine(routine, x)
    }

    /// VMCALL is done; an EPT violation on the translated linear address
    /// (bits 7 and 8) is a fault at the guest-physical address field: a
    /// fetch, write or read by bits 2..0 (exactly one), a permission fault
    /// if the entry allowed any access (bits 5..3), else not-present.
    fn classify(e: &Exit) -> Class {
        match *e {
            Exit::Vmcall { rip, x } => Class::Done {
                imm: None,
                pc: Some(rip),
                x,
            },
            Exit::EptViolation { qual: q, gpa, .. }
                if q & (qual::LINEAR_VALID | qual::TRANSLATED)
                    == qual::LINEAR_VALID | qual::TRANSLATED
                    && (q & 7).count_ones() == 1 =>
            {
                let access = if q & qual::FETCH != 0 {
                    Access::Fetch
                } else if q & qual::WRITE != 0 {
                    Access::Write
                } else {
                    Access::Read
                };
                let kind = if q & (qual::READABLE | qual::WRITABLE | qual::EXECUTABLE) != 0 {
                    Kind::Permission
                } else {
                    Kind::Translation
                };
                Class::Fault {
                    gpa,
                    access,
                    kind: Some(kind),
                    level: None,
                }
            }
            _ => Class::Other,
        }
    }

    fn fmt_fault(want: &Fault, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match want.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::Fetch => "fetch",
        };
        let allowed = match want.kind {
            Kind::Translation => "bits 5:3 clear",
            Kind::Permission => "some of bits 5:3 set",
        };
        write!(
            f,
            "EPT violation (exit reason 48), qualification: {access}, {allowed}, bits 7 and 8 set; guest-physical address {:#x}",
            want.gpa
        )
    }

    fn plant_exit(pa: usize, _: u16) {
        write_insn(pa, VMCALL);
    }

    fn fmt_planted(gpa: u64, _: u16, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VMCALL at {gpa:#x}")
    }

    fn flush<F: Format>(&mut self, tf: TlbFlush<F>, _want: Scope) -> HostFlush {
        host_flush::flush(tf, &EPTP_REGISTER)
    }

    fn flush_all<F: Format>(&mut self) -> HostFlush {
        host_flush::all::<F>(&EPTP_REGISTER)
    }

    fn skip_flush<F: Format>(&mut self, _rep: &mut Report, tf: TlbFlush<F>) -> HostFlush {
        host_flush::ignore(tf)
    }
}

/// The VMCS's EPTP field, printed after each flush.
const EPTP_REGISTER: TableRegister = TableRegister {
    name: "EPTP",
    read: vmx::eptp,
};

// -------------------------------------------------------------------- main

#[no_mangle]
extern "C" fn hv_main() -> ! {
    load_idt();
    let caps = match vmx::enable() {
        Ok(caps) => caps,
        Err(why) => {
            println!("PANIC: cannot enter VMX operation: {why}");
            exit();
        }
    };
    println!("npt test hypervisor, x86_64 (Intel VMX, Bochs); {caps}");
    if !caps.ept_1g || !caps.invept_single {
        println!("PANIC: the CPU lacks 1 GiB EPT pages or single-context INVEPT (Bochs needs a Haswell or later model)");
        exit();
    }

    let mut rep = Report::default();
    let mut t = ok(
        // Execute-only leaves where the CPU has them (checks::execute_only).
        Table::<Ept4>::try_new_with(Ept4Params {
            ad: 0,
            execute_only: caps.execute_only.into(),
            pa_bits: caps.phys_bits.into(),
        }),
        "an Ept4 table",
    );
    let eptp = t.root_register();
    println!(
        "Ept4: EPTP={eptp:#x} (root at {:#x})",
        t.root_paddr().as_usize()
    );
    write_guest_tables();
    // The table is not live yet: nothing to invalidate.
    map_common(&mut t, &L, code_hpa());
    map_x86(&mut t);
    fill_common(&L);
    fill_frames(&[H_NEW, H_39]);

    let hv = &mut match Vmx::new(&caps, eptp, G_GPT) {
        Ok(hv) => hv,
        Err(why) => {
            println!("PANIC: cannot set up the VMCS: {why}");
            exit();
        }
    };
    let first = hv.load(L.g_ram + 0x10);
    println!(
        "first VM entry: guest load of gpa {:#x} -> {first:x?} (want Ok({:#x}))",
        L.g_ram + 0x10,
        pattern(L.h_ram, 2)
    );
    if let Err(e @ (Exit::Failed { .. } | Exit::Other { .. })) = first {
        println!("PANIC: the guest does not run: {e:x?}");
        exit();
    }

    scenarios::run_all(&mut rep, hv, &mut t, &L);
    // x86 caches no not-present entries: npt asks for no flush.
    scenarios_rv_x86::map_after_fault(&mut rep, hv, &mut t, (G_NEW, H_NEW), Scope::Nothing);
    scenarios_rv_x86::gpa_bit39(&mut rep, hv, "gpa_bit39", &L, H_39);
    checks::ept_qualification(&mut rep, hv);
    checks::gpa_below_4g(&mut rep, hv, &mut t, 0x0510_0000);
    checks::ept_misconfig(&mut rep, hv, &mut t, 0x0511_0000);
    checks::ept_ad(&mut rep, hv, &caps, eptp, [0x0512_0000, 0x0513_0000]);
    checks::execute_only(&mut rep, hv, &caps, &mut t, 0x0517_0000);
    checks::vpid_remap(
        &mut rep,
        hv,
        &caps,
        &mut t,
        [0x0514_0000, 0x0515_0000, 0x0516_0000],
    );

    drop(t);
    scenarios::frames_freed(&mut rep, "the table");
    rep.done();
    exit()
}
