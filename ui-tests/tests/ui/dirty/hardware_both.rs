// Mistake: `hardware_dirty` names both a dirty bit and a writable-clean bit.
npt_macros::format_spec! {
    /// A toy format.
    format Toy {
        cite = "test";
        arch = riscv64;
        entry = ToyEntry;
        flags = ToyFlags;
        geometry {
            granule = 4K;
            input_bits = 30;
            output_bits = 40;
            root { tables = 1; align = 4K; }
            level L1 { number = 1; index = 29:21; leaf = 2M; }
            level L0 { number = 0; index = 20:12; leaf = 4K; }
        }
        bit V = 0;
        bit R = 1;
        bit W = 2;
        bit X = 3;
        field pbmt {
            bits = 62:61;
            type = Pbmt;
            values { PMA = 0; NC = 1; IO = 2; }
        }
        output_address { bits = 39:12; pa_low_bit = 12; }
        descriptors {
            present = all(V);
            table { is = none(R, W, X); set = [V]; }
            block { is = any(R, W, X); set = [V]; }
            page { is = any(R, W, X); set = [V]; }
            reserved write_only { when = [all(W), none(R)]; reason = "W without R"; }
        }
        permissions {
            ignore = [USER];
            map READ = R;
            map WRITE = W;
            map EXECUTE = X;
            map [DEVICE, UNCACHED] {
                when [] = pbmt: PMA;
                when [DEVICE] = pbmt: IO;
                when [UNCACHED] = pbmt: NC;
            }
            forbid no_access { flags = [!READ, !WRITE, !EXECUTE]; reason = "not a leaf"; }
            forbid write_only { flags = [WRITE, !READ]; reason = "reserved"; }
            forbid both { flags = [DEVICE, UNCACHED]; reason = "one memory type"; }
        }
        bit A = 6;
        bit D = 7;
        bit DBM = 8;
        param vmid { width = 8; }
        hardware_dirty { accessed = A; dirty = D; writable_clean = DBM; }
        register ROOT {
            root = true;
            field ppn { bits = 27:0; value = root_pa >> 12; }
            field vmid { bits = 47:40; value = vmid; }
            field mode { bits = 63:60; value = levels + 6; }
        }
        flush {
            invalidate_on_map = true;
            page_covers_tables = false;
            page { each = [hfence_gvma(gpa >> 2, vmid)]; }
            context { after = [hfence_gvma(0, vmid)]; }
            all { after = [hfence_gvma(0, 0)]; }
        }
    }
}

// Uses of every generated item: in the compile-fail cases these must not
// add errors of their own (the fallback stands in for the real items).
fn main() {
    use npt::Format;
    assert_eq!(Toy::LAYOUT.geometry.levels.len(), 2);
    let mut e = ToyEntry::from_raw(0b11);
    assert_eq!(e.flag_bits(), ToyFlags::V | ToyFlags::R);
    e.set_pbmt(Pbmt::IO);
    assert_eq!(e.pbmt(), Some(Pbmt::IO));
    let params = ToyParams { vmid: 3 };
    let reg = Toy::root(npt::HostPhysAddr::from(0x8000_0000), &params).unwrap();
    assert_eq!(reg, 0x8000_0000 >> 12 | 3 << 40 | 8 << 60);
}
