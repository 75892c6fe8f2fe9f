//! What the U-Boot hypervisors (`uboot-aarch64/`, `uboot-riscv64/`) share:
//! the run's configuration (planted by the runner, `tests/tests/uboot.rs`),
//! mapping guest RAM and the device windows with npt, and the checks made
//! when the guest powers off.
//!
//! The runner loads Debian's U-Boot and a patched copy of QEMU's device
//! tree at the host-physical address backing guest RAM, and four 64-bit
//! words at [`CONFIG_HPA`]: [`MAGIC`], that host address, the flags
//! ([`HUGE`], [`WIDE`]) and the 32-bit marker U-Boot is told to write.

use crate::frames::Frames;
use crate::report::{rd, wr, Report};
use npt::size::{SIZE_2M, SIZE_4K};
use npt::{Format, GuestPhysAddr as Gpa, HostPhysAddr as Hpa, MappingFlags as MF, NestedTable};

/// A nested table over the test frame pool.
pub type Table<F> = NestedTable<F, Frames>;

pub const RW: MF = MF::READ.union(MF::WRITE);
pub const RWX: MF = RW.union(MF::EXECUTE);
pub const DEV: MF = RW.union(MF::DEVICE);

/// "npt_uboo".
pub const MAGIC: u64 = 0x6e70_745f_7562_6f6f;
/// Guest RAM: map it with 2 MiB leaves where alignment allows (the first
/// 2 MiB always with 4 KiB pages, so both sizes are in use).
pub const HUGE: u64 = 1;
/// The wider format (AArch64: `Stage2Ipa40` with the high PCIe windows).
pub const WIDE: u64 = 2;

/// Guest RAM's size (the runner patches the device tree's `/memory` to it).
pub const RAM_SIZE: usize = 64 << 20;
/// Where in guest RAM the hypervisor plants words for U-Boot's `md.l`.
pub const PLANT_OFF: usize = 0x10_0000;
/// Where in guest RAM U-Boot is told to `mw.l` the marker.
pub const MARK_OFF: usize = 0x80_0000;
/// The first planted word ("npt!").
pub const PLANT0: u32 = 0x6e70_7421;

/// The run's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub ram_hpa: usize,
    pub flags: u64,
    pub marker: u32,
}

impl Config {
    pub fn huge(&self) -> bool {
        self.flags & HUGE != 0
    }

    pub fn wide(&self) -> bool {
        self.flags & WIDE != 0
    }
}

/// Reads the configuration at `at`; `host` is host RAM and `own` the
/// hypervisor's image, which guest RAM must stay out of.
pub fn config(
    at: usize,
    host: (usize, usize),
    own: (usize, usize),
) -> Result<Config, &'static str> {
    if rd(at) != MAGIC {
        return Err("no configuration (the runner plants it with -device loader)");
    }
    let ram_hpa = rd(at + 8) as usize;
    let c = Config {
        ram_hpa,
        flags: rd(at + 16),
        marker: rd(at + 24) as u32,
    };
    let end = ram_hpa.wrapping_add(RAM_SIZE);
    let overlaps = |(s, e): (usize, usize)| ram_hpa < e && s < end;
    if !ram_hpa.is_multiple_of(SIZE_4K) || ram_hpa < host.0 || end > host.1 || end < ram_hpa {
        return Err("guest RAM is not 4 KiB aligned inside host RAM");
    }
    if overlaps(own) || overlaps((at, at + 32)) {
        return Err("guest RAM overlaps the hypervisor or its configuration");
    }
    Ok(c)
}

/// Maps guest RAM at `gpa` to the configured host address, RWX.
pub fn map_ram<F: Format>(t: &mut Table<F>, gpa: u64, c: &Config) -> Result<(), npt::Error> {
    let (g, h) = (gpa as usize, c.ram_hpa);
    if c.huge() {
        t.map_region(Gpa::from(g), Hpa::from(h), SIZE_2M, RWX, false)?
            .ignore();
        t.map_region(
            Gpa::from(g + SIZE_2M),
            Hpa::from(h + SIZE_2M),
            RAM_SIZE - SIZE_2M,
            RWX,
            true,
        )?
        .ignore();
    } else {
        // Huge leaves allowed: the host address's alignment must keep npt
        // to 4 KiB pages.
        t.map_region(Gpa::from(g), Hpa::from(h), RAM_SIZE, RWX, true)?
            .ignore();
    }
    Ok(())
}

/// A device window: guest-physical, host-physical, size.
pub type Window = (u64, u64, usize);

/// Maps each device window read/write, DEVICE, without EXECUTE.
pub fn map_devices<F: Format>(t: &mut Table<F>, windows: &[Window]) -> Result<(), npt::Error> {
    for &(g, h, size) in windows {
        t.map_region(
            Gpa::from(g as usize),
            Hpa::from(h as usize),
            size,
            DEV,
            true,
        )?
        .ignore();
    }
    Ok(())
}

/// Plants the words `md.l` shows: "npt!", the host address of guest RAM
/// (low and high halves) and the marker inverted.
pub fn plant(c: &Config) {
    let h = c.ram_hpa as u64;
    wr(
        c.ram_hpa + PLANT_OFF,
        PLANT0 as u64 | (h & 0xffff_ffff) << 32,
    );
    wr(
        c.ram_hpa + PLANT_OFF + 8,
        h >> 32 | (!c.marker as u64) << 32,
    );
}

/// The checks made when the guest powers off: the table's leaves (guest
/// RAM linear at the configured address with the leaf sizes asked for,
/// every device window linear at its host address, DEVICE and not
/// executable) and the marker at the host address.
pub fn finish<F: Format>(
    rep: &mut Report,
    t: &Table<F>,
    ram_gpa: u64,
    c: &Config,
    windows: &[Window],
) {
    let (g0, g1) = (ram_gpa as usize, ram_gpa as usize + RAM_SIZE);
    let (mut n4k, mut n2m, mut other, mut off_linear, mut covered) = (0, 0, 0, 0, 0);
    let (mut dev_ok, mut dev_bad, mut dev_bytes) = (0, 0, 0usize);
    let mut first_bad = None;
    t.for_each_leaf(|l| {
        let g = l.gpa.as_usize();
        if g >= g0 && g < g1 {
            match l.size {
                SIZE_4K => n4k += 1,
                SIZE_2M => n2m += 1,
                _ => other += 1,
            }
            covered += l.size;
            if l.hpa.as_usize() != c.ram_hpa + (g - g0) || l.flags != RWX {
                off_linear += 1;
            }
        } else if let Some(&(wg, wh, _)) = windows
            .iter()
            .find(|&&(wg, _, s)| g >= wg as usize && g < wg as usize + s)
        {
            dev_bytes += l.size;
            let linear = l.hpa.as_usize() == wh as usize + (g - wg as usize);
            if linear && l.flags.contains(MF::DEVICE) && !l.flags.contains(MF::EXECUTE) {
                dev_ok += 1;
            } else {
                dev_bad += 1;
                first_bad.get_or_insert(l);
            }
        } else {
            dev_bad += 1;
            first_bad.get_or_insert(l);
        }
    });
    let sizes_ok = if c.huge() {
        n4k == SIZE_2M / SIZE_4K && n2m == (RAM_SIZE - SIZE_2M) / SIZE_2M
    } else {
        n2m == 0 && n4k == RAM_SIZE / SIZE_4K
    };
    rep.verdict(
        "ram_leaves",
        sizes_ok && other == 0 && off_linear == 0 && covered == RAM_SIZE,
        format_args!(
            "guest RAM gpa {g0:#x}..{g1:#x} -> hpa {:#x}: {n4k} 4 KiB and {n2m} 2 MiB leaves, {other} others, {off_linear} not linear or not RWX, {covered:#x} bytes (huge={})",
            c.ram_hpa,
            c.huge()
        ),
    );
    let want_dev: usize = windows.iter().map(|w| w.2).sum();
    rep.verdict(
        "device_leaves",
        dev_bad == 0 && dev_bytes == want_dev,
        format_args!(
            "{dev_ok} device leaves linear, DEVICE, without EXECUTE over {dev_bytes:#x} bytes (want {want_dev:#x}); {dev_bad} others, first {first_bad:x?}"
        ),
    );
    let at = c.ram_hpa + MARK_OFF;
    // MARK_OFF is 8-byte aligned: the marker is the low half of the word.
    let got = rd(at) as u32;
    let ident = g0 + MARK_OFF;
    let ident_got = rd(ident) as u32;
    let q = t.query(Gpa::from(ident));
    rep.verdict(
        "ram_marker",
        got == c.marker && ident_got != c.marker,
        format_args!(
            "gpa {ident:#x} -> {q:x?}; hpa {at:#x} holds {got:#x} (want the marker {:#x}); hpa {ident:#x} (= the gpa) holds {ident_got:#x}",
            c.marker
        ),
    );
}
