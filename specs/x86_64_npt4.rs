// AMD nested paging (NPT / RVI), 4-level walk.
//
// Sources (AMD64 Architecture Programmer's Manual, Vol. 2, rev. 3.4x):
// - §15.25 "Nested Paging": nCR3 (VMCB offset 0xB0) holds the nested root
//   in the host's long-mode CR3 format; nested tables use the long-mode
//   page-table format; every nested walk is a user-mode access, so U/S must
//   be 1 at every level (§15.25.5); NX applies when the host's EFER.NXE is
//   set at VMRUN.
// - §5.3 "Long-Mode Page Translation" and §5.4 "Page-Translation-Table
//   Entry Fields" (figures for PML4E, PDPE, PDE, PTE with 1-GByte, 2-MByte
//   and 4-KByte pages): P 0, R/W 1, U/S 2, PWT 3, PCD 4, A 5, D 6, PS 7
//   (PAT in a PTE), G 8, address 51:12, NX 63.
// - §7.8 "Page-Attribute Table Mechanism": PAT:PCD:PWT index the host PAT
//   (power-on default: 0 WB, 1 WT, 2 UC-, 3 UC).
// - §15.16 "TLB Control" (VMCB TLB_CONTROL: 1 flush all, 3 flush this
//   guest's ASID, acted on at the next VMRUN) and §15.16.1 TLB flush.
::npt_macros::format_spec! {
    /// AMD nested paging with a 4-level walk: 48-bit guest-physical
    /// addresses, leaves of 4 KiB, 2 MiB and 1 GiB.
    ///
    /// Mappings without EXECUTE set NX (bit 63), which is a reserved bit
    /// unless the host's EFER.NXE is set at VMRUN: without it every walk
    /// through such an entry faults (#NPF, reserved bit).
    ///
    /// Invalidation is not an instruction the host runs: the recipes ask for
    /// VMCB.TLB_CONTROL at the next VMRUN, which
    /// [`npt::instr::SvmTlbControl`](crate::instr::SvmTlbControl) collects.
    format Npt4 {
        cite = "AMD APM Vol. 2 §15.25, Nested Paging";
        arch = x86_64;
        entry = NptEntry;
        flags = NptFlags;

        geometry {
            cite = "AMD APM Vol. 2 §5.3.3: bits 47:39 index the PML4, 38:30 the PDP, 29:21 the PD, 20:12 the PT";
            granule = 4K;
            input_bits = 48;
            output_bits = 52;
            root { tables = 1; align = 4K; }
            /// Page-map level-4 table.
            level PML4 { number = 4; index = 47:39; }
            /// Page-directory-pointer table; a PDPE with PS = 1 maps a 1-GByte page.
            level PDP { number = 3; index = 38:30; leaf = 1G; }
            /// Page directory; a PDE with PS = 1 maps a 2-MByte page.
            level PD { number = 2; index = 29:21; leaf = 2M; }
            /// Page table; every present PTE maps a 4-KByte page.
            level PT { number = 1; index = 20:12; leaf = 4K; }
        }

        /// AMD nested paging with a 5-level walk: the nested walk uses the
        /// host's paging mode at VMRUN, so this is the format when the host
        /// runs with CR4.LA57 = 1 (57-bit guest-physical addresses, bits
        /// 56:48 selecting the PML5 entry; CPUID Fn0000_0007 ECX[16] LA57).
        variant Npt5 {
            cite = "AMD APM Vol. 2 §5.3.2 (5-level paging: PML5 indexed by bits 56:48) and §15.25.5 (the nested walk takes the host's paging mode)";
            geometry {
                granule = 4K;
                input_bits = 57;
                output_bits = 52;
                root { tables = 1; align = 4K; }
                /// Page-map level-5 table.
                level PML5 { number = 5; index = 56:48; }
                /// Page-map level-4 table.
                level PML4 { number = 4; index = 47:39; }
                /// Page-directory-pointer table; 1-GByte pages.
                level PDP { number = 3; index = 38:30; leaf = 1G; }
                /// Page directory; 2-MByte pages.
                level PD { number = 2; index = 29:21; leaf = 2M; }
                /// Page table; 4-KByte pages.
                level PT { number = 1; index = 20:12; leaf = 4K; }
            }
        }

        /// Present.
        bit P = 0;
        /// Read/write: writes allowed when 1.
        bit RW = 1;
        /// User/supervisor: must be 1 in nested tables (walks are user accesses).
        bit US = 2;
        /// Page-level writethrough (PAT index bit 0).
        bit PWT = 3;
        /// Page-level cache disable (PAT index bit 1).
        bit PCD = 4;
        /// Accessed (set by the CPU).
        bit A = 5;
        /// Dirty (leaves; set by the CPU).
        bit D = 6;
        /// Page size in a PDPE or PDE; PAT index bit 2 in a PTE.
        bit PS = 7;
        /// Global (not used by nested paging).
        bit G = 8;
        /// Bit 9, available to software (AVL, APM Vol. 2 §5.4.1 "Field
        /// Definitions"; nested tables use the long-mode format, §15.25.5):
        /// npt marks leaves it write-protected for dirty logging.
        bit AVL9 = 9;
        /// No-execute (with the host's EFER.NXE set).
        bit NX = 63;

        output_address {
            // Bits 51:12; a 2-MByte or 1-GByte page's low address bits are
            // reserved (bit 12 is its PAT bit), npt requires aligned
            // addresses so they stay 0.
            bits = 51:12;
            pa_low_bit = 12;
        }

        descriptors {
            cite = "AMD APM Vol. 2 §5.4.1: P = 0 not present; PS = 1 in a PDPE or PDE maps a page";
            present = all(P);
            table { is = none(PS); set = [P, RW, US]; }
            block { is = all(PS); set = [P, US, PS]; }
            page { is = always; set = [P, US]; }
        }

        permissions {
            cite = "AMD APM Vol. 2 §5.6 (page protection: a present page is readable; R/W, NX) and §7.8 (PAT)";
            // Nested walks are user accesses: U/S is always 1.
            ignore = [USER];
            map [READ] {
                when [READ] = nothing;
            }
            map WRITE = RW;
            map [EXECUTE] {
                when [] = NX;
                when [EXECUTE] = nothing;
            }
            // PAT index 3 (PCD|PWT) is UC and 2 (PCD) is UC- in the
            // power-on host PAT; index 0 is WB.
            map [DEVICE, UNCACHED] {
                when [] = nothing;
                when [DEVICE] = PCD, PWT;
                when [UNCACHED] = PCD;
            }
            forbid not_readable {
                flags = [!READ];
                reason = "x86 paging cannot deny reads of a present page: write-only, execute-only and no-access are not expressible (AMD APM Vol. 2 §5.6)";
            }
            forbid device_and_uncached {
                flags = [DEVICE, UNCACHED];
                reason = "DEVICE and UNCACHED name different memory types (UC and UC-); pass one";
            }
        }

        /// The guest's ASID (VMCB offset 0x58), which tags its nested translations.
        param asid { width = 32; }

        /// The CPU's physical-address width (CPUID Fn8000_0008 EAX[7:0],
        /// PhysAddrSize, less what memory encryption takes, AMD APM Vol. 2
        /// §7.10.1). Bits 51:PhysAddrSize of a long-mode entry are reserved
        /// (APM Vol. 2 §5.3.1, and §15.25.5 for the nested walk) and
        /// setting one faults, so host addresses from 2^pa_bits on are
        /// refused. 52 (the architectural limit) by default.
        param pa_bits { width = 7; default = 52; }
        output_limit = pa_bits;

        require pa_bits_range {
            cite = "AMD APM Vol. 2 §5.3.1: long mode supports physical addresses of up to 52 bits; CPUID Fn8000_0008 reports at least 32";
            when = pa_bits >= 32 && pa_bits <= 52;
            reason = "pa_bits is not a PhysAddrSize a CPU reports (32..=52)";
        }

        require root_below_pa_bits {
            cite = "AMD APM Vol. 2 §15.25.4: nCR3 has the CR3 format, whose bits above PhysAddrSize are reserved";
            when = root_pa >> pa_bits == 0;
            reason = "the nested PML4 table lies above PhysAddrSize (pa_bits)";
        }

        /// The nested page-table root, VMCB field N_CR3 (offset 0xB0).
        /// nCR3 bits 11:0 are not address bits: the PML4 table must be
        /// 4-KByte aligned.
        require root_aligned {
            cite = "AMD APM Vol. 2 §15.25.4, nCR3 (the CR3 format)";
            when = root_pa & (root_align - 1) == 0;
            reason = "the nested PML4 table is not 4-KByte aligned";
        }

        register nCR3 {
            cite = "AMD APM Vol. 2 §15.25.4, Nested Paging and VMRUN";
            root = true;
            /// Physical address of the nested PML4 table, bits 51:12.
            field pml4 { bits = 51:12; value = root_pa >> 12; }
        }

        dirty_log_bit = AVL9;

        // Nested page tables have the long-mode format, whose walks set A
        // in each entry they use and D in the leaf of a write (AMD APM Vol.
        // 2 §15.25.5 "Nested Table Walk"; §5.4.1 "Field Definitions", A and
        // D); always on, and a flush of the ASID makes the CPU set them again.
        hardware_dirty {
            cite = "AMD APM Vol. 2 §15.25.5 and §5.4.1: the nested walk sets Accessed and Dirty like any long-mode walk";
            accessed = A;
            dirty = D;
        }

        flush {
            cite = "AMD APM Vol. 2 §15.16: TLB_CONTROL 3 flushes the guest's ASID (with FlushByAsid), 1 the whole TLB, at the next VMRUN";
            // Not-present entries are not cached (§5.5.2).
            invalidate_on_map = false;
            // A flush by ASID drops every cached nested translation and
            // paging-structure entry of the guest.
            page_covers_tables = true;
            // TLB_CONTROL has no per-address form: one flush by ASID
            // however many pages changed.
            page_limit = 512;
            // Splitting a large page in place, then flushing the ASID, as
            // for host paging (APM Vol. 2 §5.5.3 "TLB Management": the
            // TLB may hold either size until the flush).
            split_break_before_make = false;
            page { after = [svm_tlb_flush_asid(asid)]; }
            context { after = [svm_tlb_flush_asid(asid)]; }
            all { after = [svm_tlb_flush_all]; }
        }
    }
}
