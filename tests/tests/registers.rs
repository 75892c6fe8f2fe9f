//! Registers through the `Format` trait (`F::REGISTERS`, `F::register`,
//! `NestedTable::registers`): what a hypervisor generic over the format
//! loads, with values derived by hand from the manuals (the same values
//! the per-format builders' golden tests derive).

use npt::aarch64::{Stage2Ipa39, Stage2Ipa40, Stage2Params};
use npt::riscv::{Sv39x4, Sv39x4Params};
use npt::x86_64::{Ept4, Npt4};
use npt::{Error, Format, HostPhysAddr};
use npt_tests::{fresh, fresh_with, Table, DEFAULT_BASE};

/// What generic hypervisor code does: every register by name.
fn load_all<F: Format>(t: &Table<F>) -> Vec<(&'static str, u64)> {
    t.registers()
        .map(|(name, v)| (name, v.unwrap_or_else(|e| panic!("{name}: {e}"))))
        .collect()
}

#[test]
fn every_format_lists_its_registers() {
    let root = DEFAULT_BASE as u64;
    // EPTP (SDM Vol. 3C §25.6.11): WB 6 | (4 - 1) << 3 | root.
    assert_eq!(load_all(&fresh::<Ept4>()), [("EPTP", root | 0x1e)]);
    // nCR3 (APM Vol. 2 §15.25.4): the root.
    assert_eq!(load_all(&fresh::<Npt4>()), [("nCR3", root)]);
    // hgatp: MODE 8 << 60 | VMID 5 << 44 | PPN root >> 12.
    let sv = fresh_with::<Sv39x4>(Sv39x4Params { vmid: 5, adue: 0 });
    assert_eq!(load_all(&sv), [("hgatp", 8 << 60 | 5 << 44 | root >> 12)]);
    drop(sv);
    // VTTBR_EL2: BADDR | VMID 3 << 48. VTCR_EL2 for a 39-bit IPA on a
    // 48-bit PA (Arm ARM D8, VTCR_EL2): T0SZ 25, SL0 1 (level 1) << 6,
    // IRGN0 1 << 8, ORGN0 1 << 10, SH0 3 << 12, TG0 0 (4 KiB), PS 5 << 16,
    // RES1 bit 31 = 0x8005_3559.
    let s2 = fresh_with::<Stage2Ipa39>(Stage2Params {
        vmid: 3,
        pa_bits: 48,
        hafdbs: 0,
    });
    assert_eq!(
        load_all(&s2),
        [("VTTBR_EL2", root | 3 << 48), ("VTCR_EL2", 0x8005_3559)]
    );
    // The trait gives what the per-format builders give.
    assert_eq!(
        Stage2Ipa39::register(1, HostPhysAddr::from(DEFAULT_BASE), s2.params()),
        Stage2Ipa39::vtcr_el2(HostPhysAddr::from(DEFAULT_BASE), s2.params())
    );
}

#[test]
fn register_checks_are_the_builders() {
    // A misaligned root is refused through the trait as by the builder.
    let p = Stage2Params {
        vmid: 1,
        pa_bits: 44,
        hafdbs: 0,
    };
    let root = HostPhysAddr::from(0x8_1000);
    let i = Stage2Ipa40::REGISTERS
        .iter()
        .position(|n| *n == "VTTBR_EL2")
        .unwrap();
    assert!(matches!(
        Stage2Ipa40::register(i, root, &p),
        Err(Error::Requirement { .. })
    ));
    assert_eq!(
        Stage2Ipa40::register(i, root, &p),
        Stage2Ipa40::vttbr_el2(root, &p)
    );
    // Past the end.
    assert_eq!(
        Ept4::register(Ept4::REGISTERS.len(), root, &Default::default()),
        Err(Error::NoSuchRegister { index: 1 })
    );
}
