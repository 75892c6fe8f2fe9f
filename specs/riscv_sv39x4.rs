// RISC-V G-stage translation: Sv39x4, and the variants Sv48x4 and Sv57x4.
//
// Sources (The RISC-V Instruction Set Manual, Volume II: Privileged
// Architecture, 20211203 and later):
// - Hypervisor extension, "Two-Stage Address Translation" / "Guest
//   Physical Address Translation": Sv39x4 widens the root index to
//   GPA[40:30] (11 bits), so the root table is 16 KiB and 16 KiB aligned;
//   G-stage leaves are checked as U-mode accesses (U must be 1);
//   likewise Sv48x4 (GPA 50 bits, root index GPA[49:39]) and Sv57x4 (GPA
//   59 bits, root index GPA[58:48]) widen the root index of Sv48 and Sv57
//   by two bits, with the same 16 KiB root;
// - Supervisor-level ISA, "Sv48: Page-Based 48-bit Virtual-Memory System"
//   and "Sv57: Page-Based 57-bit Virtual-Memory System": the same PTE
//   format (PPN in bits 53:10); a leaf at level 3 is a 512 GiB terapage,
//   at level 4 a 256 TiB petapage; VPN[3] = VA[47:39], VPN[4] = VA[56:48];
// - Supervisor-level ISA, "Sv39: Page-Based 39-bit Virtual-Memory System"
//   (PTE format: V R W X U G A D, PPN in bits 53:10 for PA bits 55:12;
//   R=W=X=0 is a pointer to the next level; W=1 with R=0 is reserved; for
//   non-leaf PTEs D, A and U are reserved and must be 0);
// - Svpbmt: PBMT in bits 62:61; Svnapot: N in bit 63;
// - Hypervisor CSRs: hgatp (MODE 63:60 = 8 for Sv39x4, 9 for Sv48x4, 10
//   for Sv57x4: the satp MODE numbers of Sv39, Sv48 and Sv57; VMID 57:44,
//   PPN 43:0); "Hypervisor Memory-Management Fence Instructions" (HFENCE.GVMA
//   takes GPA >> 2 in rs1 and the VMID in rs2).
::npt_macros::format_spec! {
    /// RISC-V Sv39x4 G-stage: 41-bit guest-physical addresses, a 16 KiB
    /// root, leaves of 4 KiB, 2 MiB and 1 GiB.
    ///
    /// DEVICE and UNCACHED use Svpbmt's PBMT field: the hypervisor must
    /// enable Svpbmt for G-stage (menvcfg.PBMTE = 1) before using them.
    format Sv39x4 {
        cite = "RISC-V Privileged ISA, Hypervisor extension, Guest Physical Address Translation (Sv39x4)";
        arch = riscv64;
        entry = Sv39x4Pte;
        flags = Sv39x4Flags;

        geometry {
            cite = "Sv39x4: VPN[2] = GPA[40:30] (11 bits), VPN[1] = GPA[29:21], VPN[0] = GPA[20:12]";
            granule = 4K;
            input_bits = 41;
            output_bits = 56;
            root { tables = 4; align = 16K; }
            /// Level 2 (root, 2048 entries over 16 KiB): a leaf is a 1 GiB gigapage.
            level L2 { number = 2; index = 40:30; leaf = 1G; }
            /// Level 1: a leaf is a 2 MiB megapage.
            level L1 { number = 1; index = 29:21; leaf = 2M; }
            /// Level 0: a leaf is a 4 KiB page.
            level L0 { number = 0; index = 20:12; leaf = 4K; }
        }

        /// RISC-V Sv48x4 G-stage: 50-bit guest-physical addresses, four
        /// levels under a 16 KiB root (hgatp.MODE = 9), leaves of 4 KiB,
        /// 2 MiB, 1 GiB and 512 GiB. The hart must implement Sv48 (hgatp
        /// MODE 9 is supported exactly when satp MODE Sv48 is).
        variant Sv48x4 {
            cite = "RISC-V Privileged ISA, Hypervisor extension, Guest Physical Address Translation (Sv48x4)";
            geometry {
                cite = "Sv48x4: VPN[3] = GPA[49:39] (11 bits), VPN[2] = GPA[38:30], VPN[1] = GPA[29:21], VPN[0] = GPA[20:12]";
                granule = 4K;
                input_bits = 50;
                output_bits = 56;
                root { tables = 4; align = 16K; }
                /// Level 3 (root, 2048 entries over 16 KiB): a leaf is a 512 GiB terapage.
                level L3 { number = 3; index = 49:39; leaf = 512G; }
                /// Level 2: a leaf is a 1 GiB gigapage.
                level L2 { number = 2; index = 38:30; leaf = 1G; }
                /// Level 1: a leaf is a 2 MiB megapage.
                level L1 { number = 1; index = 29:21; leaf = 2M; }
                /// Level 0: a leaf is a 4 KiB page.
                level L0 { number = 0; index = 20:12; leaf = 4K; }
            }
        }

        /// RISC-V Sv57x4 G-stage: 59-bit guest-physical addresses, five
        /// levels under a 16 KiB root (hgatp.MODE = 10), leaves of 4 KiB,
        /// 2 MiB, 1 GiB, 512 GiB and 256 TiB. The hart must implement Sv57.
        variant Sv57x4 {
            cite = "RISC-V Privileged ISA, Hypervisor extension, Guest Physical Address Translation (Sv57x4)";
            geometry {
                cite = "Sv57x4: VPN[4] = GPA[58:48] (11 bits), VPN[3] = GPA[47:39], VPN[2] = GPA[38:30], VPN[1] = GPA[29:21], VPN[0] = GPA[20:12]";
                granule = 4K;
                input_bits = 59;
                output_bits = 56;
                root { tables = 4; align = 16K; }
                /// Level 4 (root, 2048 entries over 16 KiB): a leaf is a
                /// 256 TiB petapage (262144 GiB).
                level L4 { number = 4; index = 58:48; leaf = 256T; }
                /// Level 3: a leaf is a 512 GiB terapage.
                level L3 { number = 3; index = 47:39; leaf = 512G; }
                /// Level 2: a leaf is a 1 GiB gigapage.
                level L2 { number = 2; index = 38:30; leaf = 1G; }
                /// Level 1: a leaf is a 2 MiB megapage.
                level L1 { number = 1; index = 29:21; leaf = 2M; }
                /// Level 0: a leaf is a 4 KiB page.
                level L0 { number = 0; index = 20:12; leaf = 4K; }
            }
        }

        /// Valid.
        bit V = 0;
        /// Readable.
        bit R = 1;
        /// Writable.
        bit W = 2;
        /// Executable.
        bit X = 3;
        /// User: G-stage accesses are U-mode accesses, so leaves set it.
        bit U = 4;
        /// Global (not used by G-stage; left 0).
        bit G = 5;
        /// RSW bit 8, reserved for supervisor software (privileged spec,
        /// "Sv39": RSW is ignored by the implementation; G-stage PTEs share
        /// the format): npt marks leaves it write-protected for dirty
        /// logging.
        bit RSW8 = 8;
        /// Accessed: preset, since hardware may fault instead of setting it.
        bit A = 6;
        /// Dirty: preset, since hardware may fault instead of setting it.
        bit D = 7;
        /// NAPOT (Svnapot).
        bit N = 63;

        /// Page-based memory type (Svpbmt), bits 62:61.
        field pbmt {
            bits = 62:61;
            type = Pbmt;
            values {
                /// None: the physical memory attributes apply.
                PMA = 0;
                /// Non-cacheable, idempotent, weakly ordered main memory.
                NC = 1;
                /// Non-cacheable, non-idempotent, strongly ordered I/O.
                IO = 2;
            }
        }

        output_address {
            // PPN[2:0] = PTE bits 53:10 hold PA bits 55:12.
            bits = 53:10;
            pa_low_bit = 12;
        }

        descriptors {
            cite = "Sv39 PTE: V = 0 invalid; R = W = X = 0 points to the next level; otherwise a leaf at any level";
            present = all(V);
            // Non-leaf PTEs: D, A and U must be 0.
            table { is = none(R, W, X); set = [V]; }
            block { is = any(R, W, X); set = [V, U, A, D]; }
            page { is = any(R, W, X); set = [V, U, A, D]; }
            reserved write_without_read {
                when = [all(W), none(R)];
                reason = "R = 0 with W = 1 is reserved for future use (Sv39 PTE format)";
            }
        }

        permissions {
            cite = "Sv39 PTE permission bits and Svpbmt";
            // Every G-stage leaf is a U-mode page (U = 1).
            ignore = [USER];
            map READ = R;
            map WRITE = W;
            map EXECUTE = X;
            map [DEVICE, UNCACHED] {
                when [] = pbmt: PMA;
                when [DEVICE] = pbmt: IO;
                when [UNCACHED] = pbmt: NC;
            }
            forbid write_without_read {
                flags = [WRITE, !READ];
                reason = "R = 0 with W = 1 is a reserved PTE encoding (RISC-V privileged spec, Sv39)";
            }
            forbid no_access {
                flags = [!READ, !WRITE, !EXECUTE];
                reason = "a valid PTE with R = W = X = 0 is a pointer to the next table, not a leaf";
            }
            forbid device_and_uncached {
                flags = [DEVICE, UNCACHED];
                reason = "DEVICE and UNCACHED name different memory types (PBMT IO and NC); pass one";
            }
        }

        /// The VMID (VMIDLEN is at most 14 on RV64; write all ones to hgatp.VMID and read back to find the implemented width).
        param vmid { width = 14; }

        /// 1 if M-mode has set menvcfg.ADUE (Svadu): the hart then sets A
        /// and D in G-stage leaves itself instead of raising guest-page
        /// faults for them (Svade), and npt's dirty logging and young
        /// tracking can use them. npt sets A and D in every leaf it writes,
        /// so with 0 no A/D fault ever occurs.
        param adue { width = 1; }

        // Svadu (RISC-V Privileged ISA, "Svadu" extension; menvcfg.ADUE
        // also governs G-stage translation): the walker sets A on any
        // access and D on a write, atomically; after software clears one,
        // an HFENCE.GVMA of the page makes the hart set it again.
        hardware_dirty {
            cite = "RISC-V Privileged ISA, Svadu: hardware updating of A/D bits, menvcfg.ADUE for G-stage";
            accessed = A;
            dirty = D;
            enabled_by = adue;
        }

        /// Hypervisor guest address translation and protection register.
        /// hgatp.PPN names the 16-KiB root, which must be 16-KiB aligned
        /// (its low two PPN bits are zero).
        require root_aligned {
            cite = "RISC-V Privileged ISA, hgatp: the root page table is 16 KiB and must be aligned to a 16-KiB boundary";
            when = root_pa & (root_align - 1) == 0;
            reason = "the G-stage root (16 KiB) is not 16-KiB aligned";
        }

        register hgatp {
            cite = "RISC-V Privileged ISA, Hypervisor extension, hgatp";
            root = true;
            /// PPN of the 16 KiB-aligned root table.
            field ppn { bits = 43:0; value = root_pa >> 12; }
            /// VMID.
            field vmid { bits = 57:44; value = vmid; }
            /// MODE from the number of levels: 8 Sv39x4 (3), 9 Sv48x4 (4),
            /// 10 Sv57x4 (5), the hgatp MODE encodings of the H extension.
            field mode { bits = 63:60; value = match levels { 3 => 8, 4 => 9, 5 => 10 }; }
        }

        dirty_log_bit = RSW8;

        flush {
            cite = "RISC-V Privileged ISA, Hypervisor Memory-Management Fence Instructions: HFENCE.GVMA rs1 = GPA >> 2, rs2 = VMID; rs1 = x0 covers every address";
            // Without Svvptc a hart need not see an invalid-to-valid PTE
            // change until a fence, so mapping is fenced too.
            invalidate_on_map = true;
            // HFENCE.GVMA with rs1 != x0 invalidates leaf entries only:
            // unlinking a table needs rs1 = x0.
            page_covers_tables = false;
            // One HFENCE.GVMA per page up to 64 pages, then one for the
            // whole VMID: Linux's riscv tlb_flush_all_threshold (64).
            page_limit = 64;
            // Privileged spec, "Supervisor Memory-Management Fence
            // Instruction": a PTE may be changed in place and fenced after;
            // a superpage replaced by a table is fenced by its address.
            split_break_before_make = false;
            page { each = [hfence_gvma(gpa >> 2, vmid)]; }
            context { after = [hfence_gvma(0, vmid)]; }
            all { after = [hfence_gvma(0, 0)]; }
        }
    }
}
