::npt::__private::bitflags::bitflags! {
    #[doc = "The single-bit flags of a [`ToyEntry`]."] #[derive(Clone, Copy, Debug,
    PartialEq, Eq, Hash)] pub struct ToyFlags : u64 { const V = 1u64 << 0u32; const R =
    1u64 << 1u32; const W = 1u64 << 2u32; const X = 1u64 << 3u32; }
}
///
///Bits 62:61 of [`ToyEntry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
pub enum Pbmt {
    PMA = 0u64,
    NC = 1u64,
    IO = 2u64,
}
impl Pbmt {
    ///The value of the 2-bit encoding `bits`, or `None` for a reserved encoding.
    pub const fn from_bits(bits: u64) -> ::core::option::Option<Self> {
        match bits {
            0u64 => ::core::option::Option::Some(Pbmt::PMA),
            1u64 => ::core::option::Option::Some(Pbmt::NC),
            2u64 => ::core::option::Option::Some(Pbmt::IO),
            _ => ::core::option::Option::None,
        }
    }
    /// The encoding of this value.
    pub const fn bits(self) -> u64 {
        self as u64
    }
}
///Root-register parameters of [`Toy`] (and of the formats sharing its descriptors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToyParams {
    ///
    ///At most 8 bits wide.
    pub vmid: u64,
}
impl ::core::default::Default for ToyParams {
    fn default() -> Self {
        Self { vmid: 0u64 }
    }
}
///A descriptor of the [`Toy`] format: a 64-bit word with typed accessors. `Debug` decodes it into its fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct ToyEntry(u64);
impl ToyEntry {
    /// The entry with these raw bits.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
    /// The raw bits.
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// The single-bit flags that are set.
    pub const fn flag_bits(self) -> ToyFlags {
        ToyFlags::from_bits_truncate(self.0)
    }
    /// The output address (the physical address the entry points at).
    pub const fn output_address(self) -> ::npt::HostPhysAddr {
        ::npt::HostPhysAddr::from_usize(
            (((self.0 & 0xfffffff000u64) >> 12u32) << 12u32) as usize,
        )
    }
    ///
    ///`None` when the field holds a reserved encoding.
    pub const fn pbmt(self) -> ::core::option::Option<Pbmt> {
        Pbmt::from_bits((self.0 & 0x6000000000000000u64) >> 61u32)
    }
    /// The field's raw bits.
    pub const fn pbmt_bits(self) -> u64 {
        (self.0 & 0x6000000000000000u64) >> 61u32
    }
    /// Sets the field.
    pub fn set_pbmt(&mut self, value: Pbmt) {
        self.0 = (self.0 & !0x6000000000000000u64) | ((value as u64) << 61u32);
    }
}
impl ::core::convert::From<u64> for ToyEntry {
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}
impl ::core::convert::From<ToyEntry> for u64 {
    fn from(e: ToyEntry) -> u64 {
        e.0
    }
}
impl ::core::fmt::Debug for ToyEntry {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        let mut s = f.debug_struct(::core::stringify!(ToyEntry));
        s.field("raw", &::core::format_args!("{:#018x}", self.0));
        s.field("flags", &self.flag_bits());
        match self.pbmt() {
            ::core::option::Option::Some(v) => {
                s.field("pbmt", &v);
            }
            ::core::option::Option::None => {
                s.field(
                    "pbmt",
                    &::core::format_args!("reserved({:#x})", self.pbmt_bits()),
                );
            }
        }
        s.field(
            "address",
            &::core::format_args!("{:#x}", self.output_address().as_usize()),
        );
        s.finish()
    }
}
impl ::npt::__private::GenericPTE for ToyEntry {
    fn new_page(
        paddr: ::npt::HostPhysAddr,
        flags: ::npt::__private::MappingFlags,
        is_huge: bool,
    ) -> Self {
        Self(::npt::pte::new_page::<Toy>(paddr, flags, is_huge))
    }
    fn new_table(paddr: ::npt::HostPhysAddr) -> Self {
        Self(::npt::pte::new_table::<Toy>(paddr))
    }
    fn paddr(&self) -> ::npt::HostPhysAddr {
        ::npt::pte::paddr::<Toy>(self.0)
    }
    fn flags(&self) -> ::npt::__private::MappingFlags {
        ::npt::pte::flags::<Toy>(self.0)
    }
    fn set_paddr(&mut self, paddr: ::npt::HostPhysAddr) {
        self.0 = ::npt::pte::set_paddr::<Toy>(self.0, paddr);
    }
    fn set_flags(&mut self, flags: ::npt::__private::MappingFlags, is_huge: bool) {
        self.0 = ::npt::pte::set_flags::<Toy>(self.0, flags, is_huge);
    }
    fn bits(self) -> usize {
        self.0 as usize
    }
    fn is_unused(&self) -> bool {
        self.0 == 0
    }
    fn is_present(&self) -> bool {
        ::npt::pte::is_present::<Toy>(self.0)
    }
    fn is_huge(&self) -> bool {
        ::npt::pte::is_huge::<Toy>(self.0)
    }
    fn clear(&mut self) {
        self.0 = 0;
    }
}
/// A toy format.
///
///Source: test.
///
///# Geometry
///
///| level | index bits | one entry maps | leaf | |
///|---|---|---|---|---|
///| L1 (1) | 29:21 | 2 MiB | yes |  |
///| L0 (0) | 20:12 | 4 KiB | yes |  |
///
///Root: 1 table(s) of 4 KiB (4 KiB aligned). Guest-physical addresses: 30 bits; host-physical: 40 bits.
///
///# Permissions
///
///
///- `no_access`: not a leaf
///- `write_only`: reserved
///- `both`: one memory type
///
///# page_table_multiarch
///
///Does not implement `PagingMetaData`: `PageTable64` walks only single 4 KiB roots and 9-bit indexes at 3 or 4 levels, and this format's root is different. Its entry still implements `GenericPTE`; use `npt::NestedTable` for the table.
///
///# TLB invalidation
///
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toy;
impl Toy {
    /// The format's name.
    pub const NAME: &'static str = "Toy";
    /// The `target_arch` whose hardware walks this format.
    pub const ARCH: &'static str = "riscv64";
}
impl Toy {
    ///
    /// `root_pa` is the host-physical address of the root table.
    /// Fields:
    ///- `ppn` (bits 27:0):
    ///- `vmid` (bits 47:40):
    ///- `mode` (bits 63:60):
    #[allow(unused_variables, clippy::identity_op, unused_comparisons)]
    pub fn root(
        root_pa: ::npt::HostPhysAddr,
        params: &ToyParams,
    ) -> ::core::result::Result<u64, ::npt::Error> {
        let root_pa: u64 = root_pa.as_usize() as u64;
        let vmid: u64 = params.vmid;
        let mut reg: u64 = 0;
        match match (
            ::core::option::Option::Some(root_pa),
            ::core::option::Option::Some(12u64),
        ) {
            (::core::option::Option::Some(a), ::core::option::Option::Some(b)) => {
                u32::try_from(b).ok().and_then(|b| a.checked_shr(b))
            }
            _ => ::core::option::Option::None,
        } {
            ::core::option::Option::Some(v) if 28u32 >= 64 || v >> 28u32 == 0 => {
                reg |= v << 0u32;
            }
            _ => {
                return ::core::result::Result::Err(::npt::Error::RegisterField {
                    register: "ROOT",
                    field: "ppn",
                });
            }
        }
        match ::core::option::Option::Some(vmid) {
            ::core::option::Option::Some(v) if 8u32 >= 64 || v >> 8u32 == 0 => {
                reg |= v << 40u32;
            }
            _ => {
                return ::core::result::Result::Err(::npt::Error::RegisterField {
                    register: "ROOT",
                    field: "vmid",
                });
            }
        }
        match ::core::option::Option::Some(8u64) {
            ::core::option::Option::Some(v) if 4u32 >= 64 || v >> 4u32 == 0 => {
                reg |= v << 60u32;
            }
            _ => {
                return ::core::result::Result::Err(::npt::Error::RegisterField {
                    register: "ROOT",
                    field: "mode",
                });
            }
        }
        ::core::result::Result::Ok(reg)
    }
    #[allow(unused_variables, clippy::identity_op, unused_comparisons)]
    fn __check_params(params: &ToyParams) -> ::core::result::Result<(), ::npt::Error> {
        if 8u32 < 64 && params.vmid >> 8u32 != 0 {
            return ::core::result::Result::Err(::npt::Error::ParamOutOfRange {
                param: "vmid",
                value: params.vmid,
                width: 8u32,
            });
        }
        let vmid: u64 = params.vmid;
        ::core::result::Result::Ok(())
    }
    fn __context(
        root_pa: u64,
        params: &ToyParams,
    ) -> ::core::result::Result<::npt::flush::Context, ::npt::Error> {
        if 8u32 < 64 && params.vmid >> 8u32 != 0 {
            return ::core::result::Result::Err(::npt::Error::ParamOutOfRange {
                param: "vmid",
                value: params.vmid,
                width: 8u32,
            });
        }
        let root = ::npt::HostPhysAddr::from_usize(root_pa as usize);
        let mut ctx: ::npt::flush::Context = [0; 4];
        ctx[0usize] = Self::root(root, params)?;
        ctx[1usize] = params.vmid;
        ::core::result::Result::Ok(ctx)
    }
}
impl ::npt::Format for Toy {
    const NAME: &'static str = "Toy";
    const LAYOUT: ::npt::format::Layout = ::npt::format::Layout {
        name: "Toy",
        geometry: ::npt::format::Geometry {
            granule_shift: 12u32,
            input_bits: 30u32,
            output_bits: 40u32,
            root_tables: 1usize,
            root_align: 4096usize,
            levels: &[
                ::npt::format::Level {
                    name: "L1",
                    number: 1u8,
                    shift: 21u32,
                    index_bits: 9u32,
                    leaf: true,
                },
                ::npt::format::Level {
                    name: "L0",
                    number: 0u8,
                    shift: 12u32,
                    index_bits: 9u32,
                    leaf: true,
                },
            ],
        },
        present: ::npt::format::Pred::All(0x1u64),
        table: ::npt::format::DescriptorKind {
            is: ::npt::format::Pred::None(0xeu64),
            set: 0x1u64,
        },
        block: ::core::option::Option::Some(::npt::format::DescriptorKind {
            is: ::npt::format::Pred::Any(0xeu64),
            set: 0x1u64,
        }),
        page: ::npt::format::DescriptorKind {
            is: ::npt::format::Pred::Any(0xeu64),
            set: 0x1u64,
        },
        address: ::npt::format::AddressField {
            lo: 12u32,
            width: 28u32,
            pa_shift: 12u32,
        },
        ignored: 8usize,
        leaf_attrs: [
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x2u64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x6u64),
            ::core::result::Result::Ok(0x8u64),
            ::core::result::Result::Ok(0xau64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0xeu64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x2u64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x6u64),
            ::core::result::Result::Ok(0x8u64),
            ::core::result::Result::Ok(0xau64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0xeu64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x4000000000000002u64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x4000000000000006u64),
            ::core::result::Result::Ok(0x4000000000000008u64),
            ::core::result::Result::Ok(0x400000000000000au64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x400000000000000eu64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x4000000000000002u64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x4000000000000006u64),
            ::core::result::Result::Ok(0x4000000000000008u64),
            ::core::result::Result::Ok(0x400000000000000au64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x400000000000000eu64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x2000000000000002u64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x2000000000000006u64),
            ::core::result::Result::Ok(0x2000000000000008u64),
            ::core::result::Result::Ok(0x200000000000000au64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x200000000000000eu64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x2000000000000002u64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x2000000000000006u64),
            ::core::result::Result::Ok(0x2000000000000008u64),
            ::core::result::Result::Ok(0x200000000000000au64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Ok(0x200000000000000eu64),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "not a leaf",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "reserved",
                unless: ::core::option::Option::None,
            }),
            ::core::result::Result::Err(::npt::format::Illegal {
                reason: "one memory type",
                unless: ::core::option::Option::None,
            }),
        ],
        attr_mask: 0x600000000000000eu64,
        bbm_mask: 0x0u64,
        log_bit: 0x0u64,
        hw_accessed: 0x0u64,
        hw_dirty: 0x0u64,
        hw_clean: 0x0u64,
        hw_write: 0x0u64,
        decode: &[
            &[
                ::npt::format::DecodeRule {
                    mask: 0x2u64,
                    value: 0x0u64,
                    flags: 0usize,
                },
                ::npt::format::DecodeRule {
                    mask: 0x2u64,
                    value: 0x2u64,
                    flags: 1usize,
                },
            ],
            &[
                ::npt::format::DecodeRule {
                    mask: 0x4u64,
                    value: 0x0u64,
                    flags: 0usize,
                },
                ::npt::format::DecodeRule {
                    mask: 0x4u64,
                    value: 0x4u64,
                    flags: 2usize,
                },
            ],
            &[
                ::npt::format::DecodeRule {
                    mask: 0x8u64,
                    value: 0x0u64,
                    flags: 0usize,
                },
                ::npt::format::DecodeRule {
                    mask: 0x8u64,
                    value: 0x8u64,
                    flags: 4usize,
                },
            ],
            &[
                ::npt::format::DecodeRule {
                    mask: 0x6000000000000000u64,
                    value: 0x0u64,
                    flags: 0usize,
                },
                ::npt::format::DecodeRule {
                    mask: 0x6000000000000000u64,
                    value: 0x4000000000000000u64,
                    flags: 16usize,
                },
                ::npt::format::DecodeRule {
                    mask: 0x6000000000000000u64,
                    value: 0x2000000000000000u64,
                    flags: 32usize,
                },
            ],
        ],
    };
    const FLUSH: ::npt::flush::FlushSpec = ::npt::flush::FlushSpec {
        invalidate_on_map: true,
        page_covers_tables: false,
        page_limit: 16usize,
        split_break_before_make: true,
        fault_invalidates: false,
        page: ::npt::flush::Recipe {
            current: ::core::option::Option::None,
            clear: &[],
            before: &[],
            each: &[
                ::npt::flush::Step {
                    instr: ::npt::flush::Instr::HfenceGvma,
                    operands: &[
                        ::npt::flush::Operand::Gpa(2u32),
                        ::npt::flush::Operand::Slot(1u8),
                    ],
                },
            ],
            after: &[],
        },
        context: ::npt::flush::Recipe {
            current: ::core::option::Option::None,
            clear: &[],
            before: &[],
            each: &[],
            after: &[
                ::npt::flush::Step {
                    instr: ::npt::flush::Instr::HfenceGvma,
                    operands: &[
                        ::npt::flush::Operand::Zero,
                        ::npt::flush::Operand::Slot(1u8),
                    ],
                },
            ],
        },
        all: ::npt::flush::Recipe {
            current: ::core::option::Option::None,
            clear: &[],
            before: &[],
            each: &[],
            after: &[
                ::npt::flush::Step {
                    instr: ::npt::flush::Instr::HfenceGvma,
                    operands: &[::npt::flush::Operand::Zero, ::npt::flush::Operand::Zero],
                },
            ],
        },
    };
    type Entry = ToyEntry;
    type Params = ToyParams;
    const REGISTERS: &'static [&'static str] = &["ROOT"];
    fn register(
        index: usize,
        root_pa: ::npt::HostPhysAddr,
        params: &ToyParams,
    ) -> ::core::result::Result<u64, ::npt::Error> {
        match index {
            0usize => Self::root(root_pa, params),
            _ => {
                ::core::result::Result::Err(::npt::Error::NoSuchRegister {
                    index,
                })
            }
        }
    }
    fn context(
        root_pa: u64,
        params: &ToyParams,
    ) -> ::core::result::Result<::npt::flush::Context, ::npt::Error> {
        Self::__context(root_pa, params)
    }
    fn check_params(params: &ToyParams) -> ::core::result::Result<(), ::npt::Error> {
        Self::__check_params(params)
    }
}
