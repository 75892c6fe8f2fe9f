// Arm stage-2 translation (VMSAv8-64), 4 KiB granule, descriptors for a
// 48-bit output address (no FEAT_LPA/LPA2), FEAT_S2FWB not used
// (HCR_EL2.FWB = 0).
//
// Sources (Arm Architecture Reference Manual for A-profile, DDI 0487, K.a):
// - D8.2 "Translation process": granule, levels, "Concatenated translation
//   tables" for the initial stage-2 lookup, VTCR_EL2.{T0SZ, SL0};
// - D8.3 "Translation table descriptor formats": valid bit, table/block/page
//   encodings at each level, output address bits 47:12;
// - D8.4 "Memory access control": stage-2 S2AP and XN (FEAT_XNX);
// - D8.6 "Memory region attributes": stage-2 MemAttr with FEAT_S2FWB
//   disabled, SH;
// - D8.5 "Hardware updates": AF (a descriptor with AF = 0 faults on access
//   unless FEAT_HAFDBS manages it, so npt sets AF = 1);
// - D8.16 "TLB maintenance" and C5.5 (TLBI IPAS2E1IS, VMALLE1IS,
//   VMALLS12E1IS, ALLE1IS); D23.2 registers VTTBR_EL2 and VTCR_EL2.
::npt_macros::format_spec! {
    /// Arm stage 2, 4 KiB granule, 39-bit IPA: 3 levels starting at level 1
    /// (VTCR_EL2.T0SZ = 25, SL0 = 1), leaves of 4 KiB, 2 MiB and 1 GiB.
    format Stage2Ipa39 {
        cite = "Arm ARM D8.2 and D8.3, stage-2 translation with the 4KB granule";
        arch = aarch64;
        entry = Stage2Descriptor;
        flags = Stage2Flags;
        params_type = Stage2Params;

        geometry {
            cite = "Arm ARM D8.2: 4KB granule, level 1 resolves IA[38:30] (T0SZ = 25), level 2 IA[29:21], level 3 IA[20:12]";
            granule = 4K;
            input_bits = 39;
            output_bits = 48;
            root { tables = 1; align = 4K; }
            /// Level 1: a block maps 1 GiB.
            level L1 { number = 1; index = 38:30; leaf = 1G; }
            /// Level 2: a block maps 2 MiB.
            level L2 { number = 2; index = 29:21; leaf = 2M; }
            /// Level 3: a page maps 4 KiB.
            level L3 { number = 3; index = 20:12; leaf = 4K; }
        }

        /// Arm stage 2, 4 KiB granule, 40-bit IPA: the initial lookup is at
        /// level 1 over two concatenated level-1 tables (8 KiB, 8 KiB
        /// aligned, indexed by IA[39:30]); VTCR_EL2.T0SZ = 24, SL0 = 1.
        variant Stage2Ipa40 {
            cite = "Arm ARM D8.2, concatenated translation tables for the initial stage-2 lookup";
            geometry {
                granule = 4K;
                input_bits = 40;
                output_bits = 48;
                root { tables = 2; align = 8K; }
                /// Level 1 over two concatenated tables: a block maps 1 GiB.
                level L1 { number = 1; index = 39:30; leaf = 1G; }
                /// Level 2: a block maps 2 MiB.
                level L2 { number = 2; index = 29:21; leaf = 2M; }
                /// Level 3: a page maps 4 KiB.
                level L3 { number = 3; index = 20:12; leaf = 4K; }
            }
        }

        /// Arm stage 2, 4 KiB granule, 42-bit IPA: the initial lookup is at
        /// level 1 over eight concatenated level-1 tables (4096 entries,
        /// 32 KiB, 32 KiB aligned, indexed by IA[41:30]); VTCR_EL2.T0SZ =
        /// 22, SL0 = 1.
        /// Linux KVM's choice for a 42-bit IPA (a level-0 start would also
        /// be valid, but costs a level).
        variant Stage2Ipa42 {
            cite = "Arm ARM D8.2, concatenated translation tables for the initial stage-2 lookup: 4KB granule, level 1, up to 16 tables (IA up to 43 bits)";
            geometry {
                granule = 4K;
                input_bits = 42;
                output_bits = 48;
                root { tables = 8; align = 32K; }
                /// Level 1 over eight concatenated tables (4096 entries): a
                /// block maps 1 GiB.
                level L1 { number = 1; index = 41:30; leaf = 1G; }
                /// Level 2: a block maps 2 MiB.
                level L2 { number = 2; index = 29:21; leaf = 2M; }
                /// Level 3: a page maps 4 KiB.
                level L3 { number = 3; index = 20:12; leaf = 4K; }
            }
        }

        /// Arm stage 2, 4 KiB granule, 44-bit IPA: 4 levels starting at
        /// level 0, whose one table has 32 entries (IA[43:39]);
        /// VTCR_EL2.T0SZ = 20, SL0 = 2. A level-1 start would need 32
        /// concatenated tables, beyond the 16 the architecture allows. The
        /// level-0 start needs a CPU with PARange of at least 44 bits
        /// (AArch64.S2InvalidSL), which the IPA size implies anyway.
        variant Stage2Ipa44 {
            cite = "Arm ARM D8.2: 4KB granule, stage-2 initial lookup at level 0 for an IA of 40 to 48 bits (IA[43:39] at level 0 for 44 bits)";
            geometry {
                granule = 4K;
                input_bits = 44;
                output_bits = 48;
                root { tables = 1; align = 4K; }
                /// Level 0 (32 of its 512 entries used): table descriptors
                /// only (no blocks with the 4KB granule and 48-bit OA).
                level L0 { number = 0; index = 43:39; }
                /// Level 1: a block maps 1 GiB.
                level L1 { number = 1; index = 38:30; leaf = 1G; }
                /// Level 2: a block maps 2 MiB.
                level L2 { number = 2; index = 29:21; leaf = 2M; }
                /// Level 3: a page maps 4 KiB.
                level L3 { number = 3; index = 20:12; leaf = 4K; }
            }
        }

        /// Arm stage 2, 4 KiB granule, 48-bit IPA: 4 levels starting at
        /// level 0 (VTCR_EL2.T0SZ = 16, SL0 = 2). Needs a CPU whose PARange
        /// is 48 bits for the full range.
        variant Stage2Ipa48 {
            cite = "Arm ARM D8.2: 4KB granule, level 0 resolves IA[47:39]";
            geometry {
                granule = 4K;
                input_bits = 48;
                output_bits = 48;
                root { tables = 1; align = 4K; }
                /// Level 0: table descriptors only (no blocks with the 4KB granule and 48-bit OA).
                level L0 { number = 0; index = 47:39; }
                /// Level 1: a block maps 1 GiB.
                level L1 { number = 1; index = 38:30; leaf = 1G; }
                /// Level 2: a block maps 2 MiB.
                level L2 { number = 2; index = 29:21; leaf = 2M; }
                /// Level 3: a page maps 4 KiB.
                level L3 { number = 3; index = 20:12; leaf = 4K; }
            }
        }

        /// Arm stage 2, 16 KiB granule, 40-bit IPA: the initial lookup is
        /// at level 2 over 16 concatenated level-2 tables (32768 entries,
        /// 256 KiB, 256 KiB aligned, indexed by IA[39:25]); VTCR_EL2.TG0 =
        /// 0b10, T0SZ = 24, SL0 = 0b01 (Linux KVM's layout for this IPA
        /// size). Leaves of 16 KiB and 32 MiB (no level-1 block without
        /// FEAT_LPA2). Needs ID_AA64MMFR0_EL1.TGran16_2 (or TGran16) to
        /// report the granule for stage 2.
        variant Stage2Ipa40G16 {
            cite = "Arm ARM D8.2: 16KB granule, level 2 resolves IA[35:25] (concatenated tables for IA[39:36]), level 3 IA[24:14]";
            entry = Stage2Descriptor16K;
            geometry {
                granule = 16K;
                input_bits = 40;
                output_bits = 48;
                root { tables = 16; align = 256K; }
                /// Level 2 over 16 concatenated tables: a block maps 32 MiB.
                level L2 { number = 2; index = 39:25; leaf = 32M; }
                /// Level 3: a page maps 16 KiB.
                level L3 { number = 3; index = 24:14; leaf = 16K; }
            }
            output_address {
                // 16KB granule, 48-bit OA: OA[47:14] in bits 47:14 (D8.3).
                bits = 47:14;
                pa_low_bit = 14;
            }
        }

        /// Arm stage 2, 64 KiB granule, 42-bit IPA: two levels starting at
        /// level 2 (one 8192-entry table, 64 KiB); VTCR_EL2.TG0 = 0b01,
        /// T0SZ = 22, SL0 = 0b01. Leaves of 64 KiB and 512 MiB (no level-1
        /// block without FEAT_LPA). Needs ID_AA64MMFR0_EL1.TGran64_2 (or
        /// TGran64) to report the granule for stage 2.
        variant Stage2Ipa42G64 {
            cite = "Arm ARM D8.2: 64KB granule, level 2 resolves IA[41:29], level 3 IA[28:16]";
            entry = Stage2Descriptor64K;
            geometry {
                granule = 64K;
                input_bits = 42;
                output_bits = 48;
                root { tables = 1; align = 64K; }
                /// Level 2: a block maps 512 MiB.
                level L2 { number = 2; index = 41:29; leaf = 512M; }
                /// Level 3: a page maps 64 KiB.
                level L3 { number = 3; index = 28:16; leaf = 64K; }
            }
            output_address {
                // 64KB granule, 48-bit OA: OA[47:16] in bits 47:16 (D8.3;
                // bits 15:12 hold OA[51:48] only with FEAT_LPA).
                bits = 47:16;
                pa_low_bit = 16;
            }
        }

        /// Arm stage 2, 16 KiB granule, 48-bit IPA: the initial lookup is
        /// at level 1 over two concatenated level-1 tables (4096 entries,
        /// 32 KiB, 32 KiB aligned, indexed by IA[47:36]); VTCR_EL2.TG0 =
        /// 0b10, T0SZ = 16, SL0 = 0b10. Needs a 48-bit PA (ipa_within_pa).
        variant Stage2Ipa48G16 {
            cite = "Arm ARM D8.2: 16KB granule, level 1 resolves IA[46:36] (two concatenated tables for IA[47]), level 2 IA[35:25], level 3 IA[24:14]";
            entry = Stage2Descriptor16K;
            geometry {
                granule = 16K;
                input_bits = 48;
                output_bits = 48;
                root { tables = 2; align = 32K; }
                /// Level 1 over two concatenated tables: table descriptors
                /// only (no 64 GiB block without FEAT_LPA2).
                level L1 { number = 1; index = 47:36; }
                /// Level 2: a block maps 32 MiB.
                level L2 { number = 2; index = 35:25; leaf = 32M; }
                /// Level 3: a page maps 16 KiB.
                level L3 { number = 3; index = 24:14; leaf = 16K; }
            }
            output_address {
                bits = 47:14;
                pa_low_bit = 14;
            }
        }

        /// Arm stage 2, 64 KiB granule, 48-bit IPA: three levels starting
        /// at level 1 (64 entries, IA[47:42]); VTCR_EL2.TG0 = 0b01, T0SZ =
        /// 16, SL0 = 0b10. Needs a 48-bit PA (ipa_within_pa).
        variant Stage2Ipa48G64 {
            cite = "Arm ARM D8.2: 64KB granule, level 1 resolves IA[47:42], level 2 IA[41:29], level 3 IA[28:16]";
            entry = Stage2Descriptor64K;
            geometry {
                granule = 64K;
                input_bits = 48;
                output_bits = 48;
                root { tables = 1; align = 64K; }
                /// Level 1: table descriptors only (no 4 TiB block without
                /// FEAT_LPA).
                level L1 { number = 1; index = 47:42; }
                /// Level 2: a block maps 512 MiB.
                level L2 { number = 2; index = 41:29; leaf = 512M; }
                /// Level 3: a page maps 64 KiB.
                level L3 { number = 3; index = 28:16; leaf = 64K; }
            }
            output_address {
                bits = 47:16;
                pa_low_bit = 16;
            }
        }

        /// Valid (bit 0).
        bit VALID = 0;
        /// Descriptor type (bit 1): 1 = table at levels 0-2 and page at level
        /// 3; 0 = block at levels 1-2 (0 at level 3 is reserved).
        bit TABLE = 1;
        /// Access flag (bit 10).
        bit AF = 10;
        /// Dirty bit modifier (bit 51, FEAT_HAFDBS).
        bit DBM = 51;
        /// Contiguous hint (bit 52).
        bit CONTIGUOUS = 52;
        /// Bit 55, reserved for software use in stage-2 block and page
        /// descriptors (Arm ARM D8.3, bits [58:55]): npt marks leaves it
        /// write-protected for dirty logging.
        bit SW55 = 55;

        /// Stage-2 memory attributes, MemAttr[3:0] (bits 5:2), FEAT_S2FWB
        /// disabled: MemAttr[3:2] = 00 is Device with MemAttr[1:0] the
        /// Device type; otherwise MemAttr[3:2] is the outer and MemAttr[1:0]
        /// the inner cacheability (01 Non-cacheable, 10 Write-Through, 11
        /// Write-Back).
        field memattr {
            bits = 5:2;
            type = MemAttr;
            values {
                /// Device-nGnRnE.
                DeviceNGnRnE = 0b0000;
                /// Device-nGnRE.
                DeviceNGnRE = 0b0001;
                /// Device-nGRE.
                DeviceNGRE = 0b0010;
                /// Device-GRE.
                DeviceGRE = 0b0011;
                /// Normal, outer and inner Non-cacheable.
                NormalNonCacheable = 0b0101;
                /// Normal, outer Non-cacheable, inner Write-Through.
                NormalOuterNcInnerWt = 0b0110;
                /// Normal, outer Non-cacheable, inner Write-Back.
                NormalOuterNcInnerWb = 0b0111;
                /// Normal, outer Write-Through, inner Non-cacheable.
                NormalOuterWtInnerNc = 0b1001;
                /// Normal, outer and inner Write-Through.
                NormalWriteThrough = 0b1010;
                /// Normal, outer Write-Through, inner Write-Back.
                NormalOuterWtInnerWb = 0b1011;
                /// Normal, outer Write-Back, inner Non-cacheable.
                NormalOuterWbInnerNc = 0b1101;
                /// Normal, outer Write-Back, inner Write-Through.
                NormalOuterWbInnerWt = 0b1110;
                /// Normal, outer and inner Write-Back.
                NormalWriteBack = 0b1111;
                // 0b0100, 0b1000 and 0b1100 (inner cacheability 00 with a
                // Normal outer type) are reserved.
            }
        }

        /// Stage-2 data access permissions S2AP[1:0] (bits 7:6): S2AP[0]
        /// grants read, S2AP[1] grants write.
        field s2ap {
            bits = 7:6;
            type = S2Ap;
            values {
                /// No data access.
                NoAccess = 0b00;
                /// Read-only.
                ReadOnly = 0b01;
                /// Write-only.
                WriteOnly = 0b10;
                /// Read/write.
                ReadWrite = 0b11;
            }
        }

        /// Shareability SH[1:0] (bits 9:8).
        field sh {
            bits = 9:8;
            type = Shareability;
            values {
                /// Non-shareable.
                NonShareable = 0b00;
                /// Outer Shareable.
                OuterShareable = 0b10;
                /// Inner Shareable.
                InnerShareable = 0b11;
            }
        }

        /// Stage-2 execute-never XN[1:0] (bits 54:53). Without FEAT_XNX only
        /// bit 54 exists (bit 53 is RES0): 0b00 and 0b10 mean the same on
        /// every CPU, so npt writes only those two.
        field xn {
            bits = 54:53;
            type = Stage2Xn;
            values {
                /// Executable at EL1 and EL0.
                Executable = 0b00;
                /// FEAT_XNX: not executable at EL1, executable at EL0.
                ExecuteNeverEl1 = 0b01;
                /// Not executable at EL1 or EL0.
                ExecuteNever = 0b10;
                /// FEAT_XNX: executable at EL1, not at EL0.
                ExecuteNeverEl0 = 0b11;
            }
        }

        output_address {
            // 4KB granule, 48-bit OA: OA[47:12] in bits 47:12 (a block's low
            // OA bits are RES0; npt requires aligned output addresses).
            bits = 47:12;
            pa_low_bit = 12;
        }

        descriptors {
            cite = "Arm ARM D8.3: bits 1:0 = 0b11 table (levels 0-2) or page (level 3), 0b01 block (levels 1-2), bit 0 = 0 invalid";
            present = all(VALID);
            // Stage-2 table descriptors carry no attributes.
            table { is = all(TABLE); set = [VALID, TABLE]; }
            block { is = none(TABLE); set = [VALID, AF]; }
            page { is = all(TABLE); set = [VALID, TABLE, AF]; }
            // Arm ARM D8.16.1 (break-before-make): changing the memory type,
            // cacheability or shareability of a live entry needs an invalid
            // entry and a TLBI in between.
            break_before_make = [memattr, sh];
            reserved access_flag_clear {
                when = [none(AF)];
                reason = "a leaf with AF = 0 takes an Access flag fault on first use unless hardware AF management is enabled (D8.5)";
            }
        }

        permissions {
            cite = "Arm ARM D8.4 (S2AP, XN) and D8.6 (stage-2 MemAttr, SH)";
            // Stage 2 applies to EL1 and EL0 alike.
            ignore = [USER];
            map [READ, WRITE] {
                when [] = s2ap: NoAccess;
                when [READ] = s2ap: ReadOnly;
                when [WRITE] = s2ap: WriteOnly;
                when [READ, WRITE] = s2ap: ReadWrite;
            }
            map [EXECUTE] {
                when [] = xn: ExecuteNever;
                when [EXECUTE] = xn: Executable;
            }
            map [DEVICE, UNCACHED] {
                when [] = memattr: NormalWriteBack, sh: InnerShareable;
                when [DEVICE] = memattr: DeviceNGnRE, sh: InnerShareable;
                when [UNCACHED] = memattr: NormalNonCacheable, sh: InnerShareable;
            }
            forbid device_and_uncached {
                flags = [DEVICE, UNCACHED];
                reason = "DEVICE and UNCACHED name different memory types (Device-nGnRE and Normal Non-cacheable); pass one";
            }
            forbid executable_device {
                flags = [DEVICE, EXECUTE];
                reason = "npt policy: Device memory is mapped execute-never, as the Arm ARM recommends (B2.7.2); instruction fetches from it are not meaningful";
            }
        }

        /// The VMID (8 bits: VTCR_EL2.VS = 0, so this works without
        /// FEAT_VMID16).
        param vmid { width = 8; }

        /// The host's physical address size in bits, from
        /// ID_AA64MMFR0_EL1.PARange (32, 36, 40, 42, 44 or 48): it sets
        /// VTCR_EL2.PS, and npt refuses host addresses at or above it.
        param pa_bits { width = 7; default = 48; }
        output_limit = pa_bits;

        /// 1 to have the CPU manage the access flag and the dirty state at
        /// stage 2 (VTCR_EL2.HA = HD = 1): only where
        /// ID_AA64MMFR1_EL1.HAFDBS is 0b0010 or more (FEAT_HAFDBS, access
        /// flag and dirty state). npt's dirty logging and young tracking
        /// then use the CPU's updates.
        param hafdbs { width = 1; }

        // FEAT_HAFDBS at stage 2 (Arm ARM D8.5 "Hardware updates to the
        // translation tables", D8.5.3 stage-2 dirty state): with HA the
        // CPU sets AF instead of taking an Access flag fault; with HD a
        // write through a leaf with DBM = 1 and S2AP[1] = 0 sets S2AP[1]
        // (the leaf becomes writable and dirty) instead of a Permission
        // fault. After software clears either, a TLBI of the IPA makes the
        // CPU update the descriptor again.
        hardware_dirty {
            cite = "Arm ARM D8.5, hardware management of the Access flag and dirty state (FEAT_HAFDBS), stage 2: VTCR_EL2.HA, HD; DBM and S2AP[1]";
            accessed = AF;
            writable_clean = DBM;
            enabled_by = hafdbs;
        }

        /// PARange encodes these sizes only; 52 (FEAT_LPA) is accepted and
        /// clamped to the 48 output bits 4 KiB-granule descriptors hold
        /// without FEAT_LPA2.
        require pa_range {
            cite = "Arm ARM D19.2, ID_AA64MMFR0_EL1.PARange";
            when = match pa_bits { 32 => 1, 36 => 1, 40 => 1, 42 => 1, 44 => 1, 48 => 1, 52 => 1 };
            reason = "pa_bits is not a physical address size ID_AA64MMFR0_EL1.PARange reports (32, 36, 40, 42, 44, 48 or 52)";
        }
        /// The initial lookup level must fit the IPA size: each level
        /// below it resolves granule_shift - 3 bits (9 for 4KB, 11 for
        /// 16KB, 13 for 64KB) above the page offset, and the initial level
        /// resolves at least 1 bit and at most granule_shift - 3 + 4 (a
        /// full table, or up to 16 concatenated tables). With the 4KB
        /// granule a level-0 start takes IA sizes 3 * 9 + 12 + 1 = 40 to
        /// 27 + 12 + 9 + 4 = 52 bits, level 1 31 to 43, level 2 22 to 34;
        /// with 16KB a level-2 start 26 to 40; with 64KB 30 to 46. A
        /// geometry outside that fails to compile (this rule never holds).
        require initial_lookup {
            cite = "Arm ARM D8.2, concatenated translation tables for the initial lookup, and the pseudocode AArch64.S2InconsistentSL";
            when = root_tables <= 16
                && input_bits >= (3 - start_level) * (granule_shift - 3) + granule_shift + 1
                && input_bits <= (4 - start_level) * (granule_shift - 3) + granule_shift + 4;
            reason = "the IPA size and the initial lookup level are inconsistent (AArch64.S2InconsistentSL)";
        }
        /// Block descriptors exist at levels 1 and 2 with the 4KB granule
        /// (1 GiB, 2 MiB), and at level 2 only with 16KB (32 MiB) and 64KB
        /// (512 MiB): a 64 GiB or 4 TiB level-1 block needs 52-bit
        /// descriptors (FEAT_LPA2, FEAT_LPA), which these formats do not
        /// use. A variant declaring one fails to compile.
        require block_sizes {
            cite = "Arm ARM D8.3, block descriptors: levels 1 and 2 with the 4KB granule, level 2 with 16KB and 64KB (level 1 only with 52-bit OAs)";
            when = match granule {
                4K => largest_leaf <= 1G,
                16K => largest_leaf <= 32M,
                64K => largest_leaf <= 512M
            };
            reason = "the geometry has a block size this granule has only with 52-bit descriptors";
        }
        /// The start levels a CPU's physical address size allows
        /// (AArch64.S2InvalidSL): with the 4KB granule SL0 = 0b10 (level
        /// 0) needs PAMax of at least 44 bits; with 16KB SL0 = 0b10 (level
        /// 1) needs 42 and 0b11 (level 0) 52-bit descriptors (FEAT_LPA2),
        /// which these formats do not use; with 64KB SL0 = 0b10 (level 1)
        /// needs 44 and 0b11 is reserved.
        require start_level_pa {
            cite = "Arm ARM, pseudocode AArch64.S2InvalidSL: 4KB SL0 '10' invalid when PAMax() < 44; 16KB SL0 '10' when PAMax() < 42, '11' without DS; 64KB SL0 '10' when PAMax() < 44, '11' always";
            when = match granule {
                4K => start_level != 0 || pa_bits >= 44,
                16K => start_level >= 1 && (start_level != 1 || pa_bits >= 42),
                64K => start_level >= 1 && (start_level != 1 || pa_bits >= 44)
            };
            reason = "the initial lookup level needs a wider physical address size (pa_bits) than this host's, or 52-bit descriptors (AArch64.S2InvalidSL)";
        }
        /// An IPA wider than the physical address size: the walk would
        /// fault (Linux KVM refuses such VMs).
        require ipa_within_pa {
            cite = "Arm ARM D8.2, VTCR_EL2.T0SZ and PS: stage-2 input size checks against the PA size";
            when = input_bits <= pa_bits;
            reason = "the IPA is wider than the host's physical address size (pa_bits)";
        }
        /// VTTBR_EL2.BADDR must be aligned to the (concatenated) root.
        require root_aligned {
            cite = "Arm ARM D23.2, VTTBR_EL2.BADDR";
            when = root_pa & (root_align - 1) == 0;
            reason = "the root table is not aligned to its size";
        }

        /// Virtualization Translation Table Base Register.
        register VTTBR_EL2 {
            cite = "Arm ARM D23.2, VTTBR_EL2";
            root = true;
            /// BADDR: the root table's address, bits 47:1 (aligned to the root's size).
            field baddr { bits = 47:1; value = root_pa >> 1; }
            /// VMID[7:0].
            field vmid { bits = 55:48; value = vmid; }
        }

        /// Virtualization Translation Control Register, matching the geometry.
        register VTCR_EL2 {
            cite = "Arm ARM D23.2, VTCR_EL2";
            /// T0SZ: the IPA is 64 - T0SZ bits.
            field t0sz { bits = 5:0; value = 64 - input_bits; }
            /// SL0, the initial lookup level, encoded per granule: with
            /// TG0 = 4KB 0b00 starts at level 2, 0b01 at level 1, 0b10 at
            /// level 0; with 16KB and 64KB 0b00 starts at level 3, 0b01 at
            /// level 2, 0b10 at level 1 (and, 16KB only, 0b11 at level 0).
            field sl0 {
                bits = 7:6;
                value = match granule {
                    4K => match start_level { 0 => 2, 1 => 1, 2 => 0 },
                    16K => match start_level { 0 => 3, 1 => 2, 2 => 1, 3 => 0 },
                    64K => match start_level { 1 => 2, 2 => 1, 3 => 0 }
                };
            }
            /// IRGN0: Normal, inner Write-Back Read-Allocate Write-Allocate walks.
            field irgn0 { bits = 9:8; value = 1; }
            /// ORGN0: Normal, outer Write-Back Read-Allocate Write-Allocate walks.
            field orgn0 { bits = 11:10; value = 1; }
            /// SH0: Inner Shareable walks.
            field sh0 { bits = 13:12; value = 3; }
            /// TG0, the granule: 0b00 4KB, 0b01 64KB, 0b10 16KB.
            field tg0 { bits = 15:14; value = match granule { 4K => 0, 64K => 1, 16K => 2 }; }
            /// PS: the output (physical address) size, from `pa_bits`.
            field ps { bits = 18:16; value = match pa_bits { 32 => 0, 36 => 1, 40 => 2, 42 => 3, 44 => 4, 48 => 5, 52 => 5 }; }
            /// HA: hardware Access flag updates (FEAT_HAFDBS), from `hafdbs`.
            field ha { bits = 21:21; value = hafdbs; }
            /// HD: hardware dirty state updates (FEAT_HAFDBS), from `hafdbs`.
            field hd { bits = 22:22; value = hafdbs; }
            /// Bit 31 is RES1.
            field res1 { bits = 31:31; value = 1; }
        }

        dirty_log_bit = SW55;

        flush {
            cite = "Arm ARM D8.16 (TLB maintenance) and C5.5: TLBI IPAS2E1IS takes IPA[47:12] in Xt[35:0] and invalidates stage-2-only entries, so cached combined stage-1+2 entries need TLBI VMALLE1IS; both act on the VMID in VTTBR_EL2";
            // Descriptors that generate a Translation fault are not cached
            // (D8.16), so making an invalid entry valid needs no TLBI.
            invalidate_on_map = false;
            // TLBI IPAS2E1IS (not the last-level-only IPAS2LE1IS) removes
            // cached entries from every level of the walk for the IPA, so
            // an unlinked table is invalidated by its base IPA.
            page_covers_tables = true;
            // One TLBI IPAS2E1IS per page up to 512 pages (one level-3
            // table), then TLBI VMALLS12E1IS: the threshold Linux uses for
            // ranges of broadcast TLBIs (arch/arm64 __flush_tlb_range,
            // MAX_DVM_OPS = PTRS_PER_PTE).
            page_limit = 512;
            // Arm ARM D8.16.1 "Using break-before-make when updating
            // translation table entries": changing a block into a table of
            // smaller entries is a change of block size and needs
            // break-before-make (unless FEAT_BBM level 2, not assumed).
            split_break_before_make = true;
            // On a VHE host (HCR_EL2.E2H = 1) with TGE = 1, TLBI VMALLE1IS
            // would invalidate the host's EL2&0 regime, not the guest's
            // EL1&0 (Arm ARM D8.16 and the TLBI VMALLE1IS description:
            // "When HCR_EL2.{E2H, TGE} == {1, 1} ... the EL2&0 translation
            // regime"): TGE is cleared while a recipe runs, as Linux KVM's
            // __tlb_switch_to_guest does; on a non-VHE host it already
            // reads 0 and nothing is switched.
            page {
                current = VTTBR_EL2;
                clear = [HCR_EL2_TGE];
                before = [dsb_ishst];
                each = [tlbi_ipas2e1is(gpa >> 12)];
                after = [dsb_ish, tlbi_vmalle1is, dsb_ish, isb];
            }
            context {
                current = VTTBR_EL2;
                clear = [HCR_EL2_TGE];
                before = [dsb_ishst];
                after = [tlbi_vmalls12e1is, dsb_ish, isb];
            }
            all {
                before = [dsb_ishst];
                after = [tlbi_alle1is, dsb_ish, isb];
            }
        }
    }
}
