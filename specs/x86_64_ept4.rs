// Intel EPT, 4-level walk.
//
// Sources (Intel 64 and IA-32 Architectures SDM, Vol. 3C, 2023+ editions):
// - §29.3.2 "EPT Translation Mechanism" and its tables "Format of an EPT
//   PML4 Entry", "... PDPTE that Maps a 1-GByte Page", "... PDPTE that
//   References an EPT Page Directory", "... PDE that Maps a 2-MByte Page",
//   "... PDE that References an EPT Page Table", "... PTE that Maps a
//   4-KByte Page";
// - §29.3.3.1 "EPT Misconfigurations";
// - §29.3.7 "EPT and Memory Typing";
// - §25.6.11 "Extended-Page-Table Pointer (EPTP)";
// - §29.4 "Caching Translation Information" and the INVEPT reference page.
::npt_macros::format_spec! {
    /// Intel EPT with a 4-level walk (page-walk length 4): 48-bit
    /// guest-physical addresses, leaves of 4 KiB, 2 MiB and 1 GiB.
    format Ept4 {
        cite = "Intel SDM Vol. 3C §29.3.2, EPT Translation Mechanism";
        arch = x86_64;
        entry = EptEntry;
        flags = EptFlags;

        geometry {
            cite = "SDM Vol. 3C §29.3.2: bits 47:39 select the PML4E, 38:30 the PDPTE, 29:21 the PDE, 20:12 the PTE";
            granule = 4K;
            input_bits = 48;
            // MAXPHYADDR is at most 52 (SDM Vol. 1 §3.3.1); bits 51:N of an
            // entry are reserved on a CPU with a smaller MAXPHYADDR.
            output_bits = 52;
            root { tables = 1; align = 4K; }
            /// EPT PML4 table.
            level PML4 { number = 4; index = 47:39; }
            /// EPT page-directory-pointer table; a PDPTE with bit 7 set maps a 1-GByte page.
            level PDPT { number = 3; index = 38:30; leaf = 1G; }
            /// EPT page directory; a PDE with bit 7 set maps a 2-MByte page.
            level PD { number = 2; index = 29:21; leaf = 2M; }
            /// EPT page table; every present PTE maps a 4-KByte page.
            level PT { number = 1; index = 20:12; leaf = 4K; }
        }

        /// Intel EPT with a 5-level walk (page-walk length 5, EPTP bits
        /// 5:3 = 4): 57-bit guest-physical addresses, bits 56:48 selecting
        /// the EPT PML5 entry. Use it only where IA32_VMX_EPT_VPID_CAP bit 7
        /// (page-walk length of 5 supported) is set (SDM Vol. 3D §A.10).
        variant Ept5 {
            cite = "SDM Vol. 3C §29.3.2: with a page-walk length of 5, bits 56:48 select the EPT PML5 entry; §25.6.11, EPTP bits 5:3";
            geometry {
                granule = 4K;
                input_bits = 57;
                output_bits = 52;
                root { tables = 1; align = 4K; }
                /// EPT PML5 table (its entries are formatted as PML4 entries).
                level PML5 { number = 5; index = 56:48; }
                /// EPT PML4 table.
                level PML4 { number = 4; index = 47:39; }
                /// EPT page-directory-pointer table; 1-GByte pages.
                level PDPT { number = 3; index = 38:30; leaf = 1G; }
                /// EPT page directory; 2-MByte pages.
                level PD { number = 2; index = 29:21; leaf = 2M; }
                /// EPT page table; 4-KByte pages.
                level PT { number = 1; index = 20:12; leaf = 4K; }
            }
        }

        /// Read access (bit 0).
        bit R = 0;
        /// Write access (bit 1).
        bit W = 1;
        /// Execute access (bit 2); supervisor-mode execute when mode-based
        /// execute control is enabled.
        bit X = 2;
        /// Ignore PAT memory type (bit 6, leaves only).
        bit IPAT = 6;
        /// Page size (bit 7): 1 in a PDPTE or PDE that maps a page; must be 0
        /// in a PML4E; ignored in a PTE.
        bit PS = 7;
        /// Accessed (bit 8), written by the CPU when EPTP bit 6 is set.
        bit A = 8;
        /// Dirty (bit 9, leaves), written by the CPU when EPTP bit 6 is set.
        bit D = 9;
        /// User-mode execute access (bit 10) under mode-based execute control.
        bit XU = 10;
        /// Bit 11, ignored by the processor in every EPT entry (SDM Vol. 3C
        /// §29.3.2, the "Format of an EPT ..." tables): npt marks leaves it
        /// write-protected for dirty logging.
        bit SW11 = 11;
        /// Verify guest paging (bit 57).
        bit VGP = 57;
        /// Paging-write access (bit 58).
        bit PWA = 58;
        /// Supervisor shadow stack (bit 60).
        bit SSS = 60;
        /// Suppress #VE (bit 63).
        bit SVE = 63;

        /// EPT memory type (bits 5:3 of a leaf), SDM §29.3.7.
        field memtype {
            bits = 5:3;
            type = EptMemoryType;
            values {
                /// Uncacheable.
                UC = 0;
                /// Write combining.
                WC = 1;
                /// Write through.
                WT = 4;
                /// Write protected.
                WP = 5;
                /// Write back.
                WB = 6;
            }
        }

        output_address {
            // Bits (N-1):12 hold the physical address of the 4-KByte page,
            // table, or (with the low bits zero) the 2-MByte/1-GByte page.
            bits = 51:12;
            pa_low_bit = 12;
        }

        descriptors {
            cite = "SDM Vol. 3C §29.3.2: an entry is not present iff bits 2:0 are all 0; bit 7 tells a page from a table in a PDPTE or PDE";
            present = any(R, W, X);
            // Table entries grant all access so the leaf alone decides;
            // bits 7:3 of a table entry are reserved (0).
            table { is = none(PS); set = [R, W, X]; }
            block { is = all(PS); set = [PS]; }
            page { is = always; set = []; }
            reserved write_without_read {
                when = [all(W), none(R)];
                reason = "bit 1 set with bit 0 clear is an EPT misconfiguration (SDM Vol. 3C §29.3.3.1)";
            }
        }

        permissions {
            cite = "SDM Vol. 3C §29.3.3.1 (misconfigurations) and §29.3.7.2 (memory type used for accesses)";
            // EPT has no user/supervisor distinction for data accesses.
            ignore = [USER];
            map READ = R;
            map WRITE = W;
            map EXECUTE = X;
            // Guest RAM: WB with IPAT, so the guest's PAT cannot weaken it
            // (as KVM does without non-coherent DMA). Device memory: UC
            // without IPAT, so a guest PAT of WC still combines to WC.
            map [DEVICE, UNCACHED] {
                when [] = memtype: WB, IPAT;
                when [DEVICE] = memtype: UC;
                when [UNCACHED] = memtype: WC;
            }
            forbid write_without_read {
                flags = [WRITE, !READ];
                reason = "EPT misconfiguration: write access without read access (SDM Vol. 3C §29.3.3.1)";
            }
            forbid no_access {
                flags = [!READ, !WRITE, !EXECUTE];
                reason = "an EPT entry with bits 2:0 clear is not present (SDM Vol. 3C §29.3.2)";
            }
            // Execute-only (bits 2:0 = 100b) is a misconfiguration unless
            // the CPU reports it: lifted by the `execute_only` param.
            forbid execute_only {
                flags = [EXECUTE, !READ, !WRITE];
                unless = execute_only;
                reason = "execute-only EPT entries need IA32_VMX_EPT_VPID_CAP bit 0; a table made with `execute_only: 1` allows them (SDM Vol. 3C §29.3.3.1)";
            }
            forbid device_and_uncached {
                flags = [DEVICE, UNCACHED];
                reason = "DEVICE and UNCACHED name different memory types (UC and WC); pass one";
            }
        }

        /// Enable accessed and dirty flags (EPTP bit 6): 1 only if
        /// IA32_VMX_EPT_VPID_CAP bit 21 is set.
        param ad { width = 1; }

        /// Allow execute-only leaves (`MappingFlags::EXECUTE` alone): 1 only
        /// if IA32_VMX_EPT_VPID_CAP bit 0 is set (SDM Vol. 3C §29.3.3.1,
        /// Vol. 3D §A.10). With 0 they are refused as `IllegalFlags`.
        param execute_only { width = 1; }

        /// The CPU's physical-address width, MAXPHYADDR (CPUID.80000008H:
        /// EAX[7:0]; SDM Vol. 1 §3.3.1). Bits 51:MAXPHYADDR of an EPT entry
        /// are reserved (SDM Vol. 3C §29.3.2) and setting one is an EPT
        /// misconfiguration (§29.3.3.1), so host addresses from
        /// 2^pa_bits on are refused. 52 (the architectural limit) by default.
        param pa_bits { width = 7; default = 52; }
        output_limit = pa_bits;

        require pa_bits_range {
            cite = "SDM Vol. 1 §3.3.1 and Vol. 3A §4.1.4: MAXPHYADDR is at least 36 and at most 52 on Intel 64";
            when = pa_bits >= 36 && pa_bits <= 52;
            reason = "pa_bits is not a MAXPHYADDR an Intel 64 CPU reports (36..=52)";
        }

        require root_below_pa_bits {
            cite = "SDM Vol. 3C §25.6.11: EPTP bits 63:N are reserved (N = MAXPHYADDR)";
            when = root_pa >> pa_bits == 0;
            reason = "the EPT PML4 table lies above MAXPHYADDR (pa_bits)";
        }

        /// The extended-page-table pointer, VMCS field 0x201A.
        /// EPTP bits 11:0 hold the memory type, walk length and flags: the
        /// PML4 table must be 4-KByte aligned.
        require root_aligned {
            cite = "SDM Vol. 3C §25.6.11, EPTP bits N-1:12";
            when = root_pa & (root_align - 1) == 0;
            reason = "the EPT PML4 table is not 4-KByte aligned";
        }

        register EPTP {
            cite = "SDM Vol. 3C §25.6.11, Extended-Page-Table Pointer (EPTP)";
            root = true;
            /// EPT paging-structure memory type: 6 = write-back.
            field memory_type { bits = 2:0; value = 6; }
            /// Page-walk length minus 1.
            field walk_length { bits = 5:3; value = levels - 1; }
            /// Enable accessed and dirty flags.
            field ad_enable { bits = 6:6; value = ad; }
            /// Physical address of the PML4 table, bits N-1:12.
            field pml4 { bits = 51:12; value = root_pa >> 12; }
        }

        dirty_log_bit = SW11;

        // With EPTP bit 6 set the CPU sets A in every EPT entry a
        // translation uses and D in the leaf of a write (SDM Vol. 3C
        // §29.3.5); clearing either needs an INVEPT before the CPU is sure
        // to set it again (§29.4.3.4, "software ... clears the accessed or
        // dirty flag").
        hardware_dirty {
            cite = "SDM Vol. 3C §29.3.5, Accessed and Dirty Flags for EPT";
            accessed = A;
            dirty = D;
            enabled_by = ad;
        }

        flush {
            cite = "SDM Vol. 3C §29.4.3.1 and INVEPT: single-context invalidates all mappings tagged with the EPTP; there is no per-address form";
            // Not-present entries are not cached (SDM §29.4.2: translations
            // are cached only from entries that permit the access).
            invalidate_on_map = false;
            // INVEPT single-context drops all EPT-derived information,
            // paging-structure caches included.
            page_covers_tables = true;
            // INVEPT has no per-address form: the page recipe is one
            // single-context INVEPT however many pages changed, so the
            // limit only bounds what a batch lists.
            page_limit = 512;
            // Replacing a 2-MByte or 1-GByte leaf by a table of smaller
            // leaves that map the same frames with the same attributes is
            // done in place and invalidated afterwards (SDM §29.4.3.4
            // "Guidelines for Use of the INVEPT Instruction"; Linux KVM's
            // TDP MMU splits huge pages this way).
            split_break_before_make = false;
            // SDM §29.4.3.1 lists an EPT violation among the operations
            // that invalidate cached mappings: the guest-physical mappings
            // used to translate its GPA (and the combined mappings of its
            // linear address). So after a write fault, making the page
            // writable needs no INVEPT; another CPU holding the stricter
            // entry faults, and the handler finds the page writable.
            fault_invalidates = true;
            page { after = [invept_single_context(EPTP)]; }
            context { after = [invept_single_context(EPTP)]; }
            all { after = [invept_all_context]; }
        }
    }
}
