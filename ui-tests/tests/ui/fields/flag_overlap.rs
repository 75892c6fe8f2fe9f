// The smallest complete spec: one level of 4 KiB pages over a 21-bit input.
npt_macros::format_spec! {
    /// A toy format.
    format Toy {
        cite = "test";
        arch = riscv64;
        entry = ToyEntry;
        flags = ToyFlags;
        geometry {
            granule = 4K;
            input_bits = 21;
            output_bits = 40;
            root { tables = 1; align = 4K; }
            level L1 { number = 1; index = 20:12; leaf = 4K; }
        }
        bit V = 0;
        bit R = 1;
        bit W = 2;
        bit X = 3;
        bit A = 2;
        output_address { bits = 39:12; pa_low_bit = 12; }
        descriptors {
            present = all(V);
            table { is = none(R, W, X); set = [V]; }
            page { is = any(R, W, X); set = [V]; }
        }
        permissions {
            ignore = [USER, DEVICE, UNCACHED];
            map READ = R;
            map WRITE = W;
            map EXECUTE = X;
            forbid no_access { flags = [!READ, !WRITE, !EXECUTE]; reason = "not a leaf"; }
        }
        param vmid { width = 8; }
        register ROOT {
            root = true;
            field ppn { bits = 39:12; value = root_pa >> 12; }
            field vmid { bits = 47:40; value = vmid; }
        }
        flush {
            invalidate_on_map = true;
            page { each = [hfence_gvma(gpa >> 2, vmid)]; }
            context { after = [hfence_gvma(0, vmid)]; }
            all { after = [hfence_gvma(0, 0)]; }
        }
    }
}

fn main() {}
