//! Maps a typical VM layout in every npt format and prints the decoded
//! tables, the root-register values, what was allocated and which
//! invalidations a change needs.
//!
//! Run: `cargo run -p npt-tests --example demo`

use npt::flush::{Event, Recorder};
use npt::format::Format;
use npt::{aarch64, riscv, x86_64};
use npt::{GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF, NestedTable};
use npt_tests::{live_frames, reset, Frames, DEFAULT_BASE};

const MIB: usize = 1 << 20;
const GIB: usize = 1 << 30;

/// One region of the VM layout.
struct Region {
    what: &'static str,
    gpa: usize,
    hpa: usize,
    size: usize,
    flags: MF,
}

fn layout() -> [Region; 3] {
    [
        Region {
            what: "boot ROM (read-only, executable)",
            gpa: 0,
            hpa: 0x1_8000_0000,
            size: 32 << 10,
            flags: MF::READ | MF::EXECUTE,
        },
        Region {
            what: "UART MMIO window (device memory)",
            gpa: 0x0900_0000,
            hpa: 0x0900_0000,
            size: 0x1000,
            flags: MF::READ | MF::WRITE | MF::DEVICE,
        },
        Region {
            what: "guest RAM (huge pages where alignment allows)",
            gpa: GIB,
            hpa: 8 * GIB,
            size: GIB + 6 * MIB + (16 << 10),
            flags: MF::READ | MF::WRITE | MF::EXECUTE,
        },
    ]
}

fn size_name(size: usize) -> String {
    match size {
        s if s >= GIB => format!("{} GiB", s / GIB),
        s if s >= MIB => format!("{} MiB", s / MIB),
        s => format!("{} KiB", s >> 10),
    }
}

/// Builds the layout in format `F`, prints it, and prints the format's
/// registers with `registers` while the table is alive.
fn show<F: Format>(params: F::Params, registers: impl Fn(&NestedTable<F, Frames>)) {
    reset(DEFAULT_BASE, 256);
    let mut table = NestedTable::<F, Frames>::try_new_with(params).expect("root table");
    println!("== {} ==", F::NAME);
    println!(
        "root table at {:?}; root register {:#018x}",
        table.root_paddr(),
        table.root_register()
    );
    for r in layout() {
        let batch = table
            .map_region(Gpa::from(r.gpa), Hpa::from(r.hpa), r.size, r.flags, true)
            .unwrap_or_else(|e| panic!("{}: {e}", r.what));
        println!(
            "mapped {:<48} -> invalidation scope {:?}",
            r.what,
            batch.scope()
        );
        batch.ignore(); // the table is not loaded on any CPU yet
    }
    println!("leaves (runs of equal, contiguous leaves folded):");
    let mut leaves: Vec<npt::Leaf> = Vec::new();
    table.for_each_leaf(|l| leaves.push(l));
    let addr = |l: &npt::Leaf| F::LAYOUT.address.encode(l.hpa.as_usize() as u64);
    let mut i = 0;
    while i < leaves.len() {
        let first = leaves[i];
        let mut n = 1;
        while let Some(next) = leaves.get(i + n) {
            let prev = leaves[i + n - 1];
            let contiguous = next.gpa.as_usize() == prev.gpa.as_usize() + prev.size
                && next.hpa.as_usize() == prev.hpa.as_usize() + prev.size;
            let same = next.size == first.size && next.raw ^ addr(next) == first.raw ^ addr(&first);
            if !(contiguous && same) {
                break;
            }
            n += 1;
        }
        let count = if n > 1 {
            format!("{n} x ")
        } else {
            String::new()
        };
        println!(
            "  {:#012x}..{:#012x} -> {:#012x} {count}{} {:?}",
            first.gpa.as_usize(),
            first.gpa.as_usize() + n * first.size,
            first.hpa.as_usize(),
            size_name(first.size),
            F::Entry::from(first.raw)
        );
        i += n;
    }
    println!(
        "frames: {} in use ({} KiB of tables)",
        table.frames_used(),
        table.frames_used() * 4
    );
    assert_eq!(table.frames_used(), live_frames());

    // Write-protecting part of a huge page splits it (on Arm by
    // break-before-make, whose TLBIs run during the call: here into a
    // recorder); the rest keeps its mapping.
    let mut split = Recorder::default();
    let batch = table
        .protect_region_in(Gpa::from(GIB), 0x1000, MF::READ, &mut split)
        .expect("split and protect");
    let leaf = table.query(Gpa::from(GIB)).expect("still mapped");
    let next = table.query(Gpa::from(GIB + 0x1000)).expect("still mapped");
    println!(
        "protect 4 KiB inside a 1 GiB leaf: split; {} {:?} page, then a {} {:?} leaf; {} instructions during the split, {} pages in the batch",
        size_name(leaf.size),
        leaf.flags,
        size_name(next.size),
        next.flags,
        split.events.len(),
        batch.page_count()
    );
    batch
        .flush_with(&mut Recorder::default())
        .expect("recorder");
    // An address beyond the input width is refused, never truncated.
    let beyond = (1usize << F::LAYOUT.geometry.input_bits) | 0x7000;
    let err = table
        .map(Gpa::from(beyond), Hpa::from(0x7000), 0x1000, MF::READ)
        .unwrap_err();
    println!("map GPA {beyond:#x}: error: {err}");
    // Unmapping one ROM page needs these invalidations:
    let (_, batch) = table.unmap(Gpa::from(0x7000)).expect("ROM page");
    let mut rec = Recorder::default();
    batch.flush_with(&mut rec).expect("recorder");
    println!("unmap GPA 0x7000 issues:");
    for e in &rec.events {
        match e {
            Event::Instr(i) => println!("  {:?} {:x?}", i.instr, i.args),
            other => println!("  {other:x?}"),
        }
    }
    registers(&table);
    println!();
}

fn main() {
    show::<x86_64::Ept4>(Default::default(), |t| {
        let eptp = x86_64::Ept4::eptp(t.root_paddr(), t.params()).expect("EPTP");
        println!("EPTP (VMCS field 0x201A) = {eptp:#x}");
    });
    show::<x86_64::Npt4>(
        x86_64::Npt4Params {
            asid: 1,
            pa_bits: 52,
        },
        |t| {
            println!("nCR3 (VMCB offset 0xB0) = {:#x}", t.root_register());
        },
    );
    let p = aarch64::Stage2Params {
        vmid: 1,
        ..Default::default()
    };
    show::<aarch64::Stage2Ipa39>(p, |t| {
        let vtcr = aarch64::Stage2Ipa39::vtcr_el2(t.root_paddr(), t.params()).expect("VTCR");
        println!("VTTBR_EL2 = {:#x}, VTCR_EL2 = {vtcr:#x}", t.root_register());
    });
    show::<aarch64::Stage2Ipa40>(p, |t| {
        let vtcr = aarch64::Stage2Ipa40::vtcr_el2(t.root_paddr(), t.params()).expect("VTCR");
        println!("VTTBR_EL2 = {:#x}, VTCR_EL2 = {vtcr:#x}", t.root_register());
    });
    show::<aarch64::Stage2Ipa42>(p, |t| {
        let vtcr = aarch64::Stage2Ipa42::vtcr_el2(t.root_paddr(), t.params()).expect("VTCR");
        println!("VTTBR_EL2 = {:#x}, VTCR_EL2 = {vtcr:#x}", t.root_register());
    });
    show::<aarch64::Stage2Ipa44>(p, |t| {
        let vtcr = aarch64::Stage2Ipa44::vtcr_el2(t.root_paddr(), t.params()).expect("VTCR");
        println!("VTTBR_EL2 = {:#x}, VTCR_EL2 = {vtcr:#x}", t.root_register());
    });
    show::<aarch64::Stage2Ipa48>(p, |t| {
        let vtcr = aarch64::Stage2Ipa48::vtcr_el2(t.root_paddr(), t.params()).expect("VTCR");
        println!("VTTBR_EL2 = {:#x}, VTCR_EL2 = {vtcr:#x}", t.root_register());
    });
    show::<riscv::Sv39x4>(riscv::Sv39x4Params { vmid: 1, adue: 0 }, |t| {
        println!("hgatp = {:#x}", t.root_register());
    });
    show::<riscv::Sv48x4>(riscv::Sv39x4Params { vmid: 1, adue: 0 }, |t| {
        println!("hgatp = {:#x}", t.root_register());
    });
    show::<riscv::Sv57x4>(riscv::Sv39x4Params { vmid: 1, adue: 0 }, |t| {
        println!("hgatp = {:#x}", t.root_register());
    });
}
