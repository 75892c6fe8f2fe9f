//! The format marker, entry, flag and field types.

use super::{docs, hex};
use crate::model::Format;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// Human-readable size: 4 KiB, 2 MiB, 1 GiB, 512 GiB.
fn size_name(bytes: u128) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024 && v % 1024 == 0 && u + 1 < units.len() {
        v /= 1024;
        u += 1;
    }
    format!("{v} {}", units[u])
}

/// The rustdoc of a format: its docs, then what the spec says about its
/// geometry, permissions and invalidation, with the spec's citations.
fn format_docs(f: &Format) -> Vec<String> {
    let g = &f.geometry;
    let mut d = f.docs.clone();
    d.push(String::new());
    d.push(format!("Source: {}.", f.cite.value()));
    d.push(String::new());
    d.push("# Geometry".into());
    d.push(String::new());
    if let Some(c) = &g.cite {
        d.push(format!("{}.", c.value()));
        d.push(String::new());
    }
    d.push("| level | index bits | one entry maps | leaf | |".into());
    d.push("|---|---|---|---|---|".into());
    for l in &g.levels {
        let what = l
            .docs
            .first()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        d.push(format!(
            "| {} ({}) | {}:{} | {} | {} | {} |",
            l.name,
            l.number.value,
            l.index.hi,
            l.index.lo,
            size_name(1u128 << l.index.lo),
            if l.leaf.is_some() { "yes" } else { "no" },
            what
        ));
    }
    d.push(String::new());
    d.push(format!(
        "Root: {} table(s) of {} ({} aligned). Guest-physical addresses: {} bits; host-physical: {} bits.",
        g.root_tables.value,
        size_name(g.granule.value as u128),
        size_name(g.root_align.value as u128),
        g.input_bits.value,
        g.output_bits.value
    ));
    d.push(String::new());
    d.push("# Permissions".into());
    d.push(String::new());
    if let Some(c) = &f.permissions.cite {
        d.push(format!("{}. Refused combinations:", c.value()));
    }
    d.push(String::new());
    for fb in &f.permissions.forbids {
        d.push(format!("- `{}`: {}", fb.name, fb.reason.value()));
    }
    d.push(String::new());
    if let Some(hw) = &f.hardware_dirty {
        d.push("# Hardware accessed and dirty bits".into());
        d.push(String::new());
        let when = match &hw.enabled_by {
            Some(p) => format!(" when the table's `{p}` param is 1"),
            None => String::new(),
        };
        let cite = hw
            .cite
            .as_ref()
            .map(|c| format!(" ({})", c.value()))
            .unwrap_or_default();
        match (&hw.dirty, &hw.writable_clean) {
            (Some(dirty), _) => d.push(format!(
                "The CPU sets `{}` in leaves it uses and `{dirty}` in leaves it writes through{when}{cite}: dirty logging then test-and-clears `{dirty}` instead of write-protecting, and `test_and_clear_young` reads `{}`.",
                hw.accessed, hw.accessed
            )),
            (None, Some(clean)) => d.push(format!(
                "The CPU sets `{}` in leaves it uses and gives a leaf with `{clean}` and no write permission its write permission on the first write{when}{cite}: dirty logging then marks writable leaves `{clean}` and clean, and test-and-clears their write permission; `test_and_clear_young` reads `{}`.",
                hw.accessed, hw.accessed
            )),
            (None, None) => {}
        }
        d.push(String::new());
    }
    d.push("# page_table_multiarch".into());
    d.push(String::new());
    if super::compat::page_table64_can_walk(f) {
        d.push("Implements `PagingMetaData`, so `PageTable64` can walk this format with its entry type (`GenericPTE`).".into());
    } else {
        d.push("Does not implement `PagingMetaData`: `PageTable64` walks only single 4 KiB roots and 9-bit indexes at 3 or 4 levels, and this format's root is different. Its entry still implements `GenericPTE`; use `npt::NestedTable` for the table.".into());
    }
    d.push(String::new());
    d.push("# TLB invalidation".into());
    d.push(String::new());
    if let Some(c) = &f.flush.cite {
        d.push(format!("{}.", c.value()));
    }
    d
}

/// The zero-sized type naming one format.
pub fn marker(f: &Format) -> TokenStream {
    let name = &f.name;
    let fmt_docs = docs(&format_docs(f));
    let name_str = name.to_string();
    let arch = f.arch.value.target_arch();
    quote! {
        #fmt_docs
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct #name;

        impl #name {
            /// The format's name.
            pub const NAME: &'static str = #name_str;
            /// The `target_arch` whose hardware walks this format.
            pub const ARCH: &'static str = #arch;
        }
    }
}

/// The types shared by a format and its variants.
pub fn generate(f: &Format) -> TokenStream {
    let name = &f.name;
    let entry = &f.entry;
    let flags_ty = &f.flags_ty;

    let flag_consts = f.bits.iter().map(|b| {
        let d = docs(&b.docs);
        let n = &b.name;
        let bit = b.bit.value as u32;
        quote!(#d const #n = 1u64 << #bit;)
    });

    let enums = f.fields.iter().map(|fd| {
        let ty = &fd.ty;
        let d = docs(&fd.docs);
        let range = format!("Bits {}:{} of [`{}`].", fd.bits.hi, fd.bits.lo, entry);
        let variants = fd.variants.iter().map(|v| {
            let vd = docs(&v.docs);
            let vn = &v.name;
            let val = v.value.value;
            quote!(#vd #vn = #val,)
        });
        let arms = fd.variants.iter().map(|v| {
            let vn = &v.name;
            let val = v.value.value;
            quote!(#val => ::core::option::Option::Some(#ty::#vn),)
        });
        let from_bits_doc = format!(
            "The value of the {}-bit encoding `bits`, or `None` for a reserved encoding.",
            fd.bits.width()
        );
        quote! {
            #d
            #[doc = ""]
            #[doc = #range]
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            #[repr(u64)]
            pub enum #ty { #(#variants)* }

            impl #ty {
                #[doc = #from_bits_doc]
                pub const fn from_bits(bits: u64) -> ::core::option::Option<Self> {
                    match bits { #(#arms)* _ => ::core::option::Option::None }
                }
                /// The encoding of this value.
                pub const fn bits(self) -> u64 { self as u64 }
            }
        }
    });

    let flags_doc = format!("The single-bit flags of a [`{entry}`].");
    let params_ty = &f.params_ty;
    let param_fields = f.params.iter().map(|p| {
        let d = docs(&p.docs);
        let n = &p.name;
        let w = match p.default {
            Some(d) => format!(
                "At most {} bits wide; {} by default.",
                p.width.value, d.value
            ),
            None => format!("At most {} bits wide.", p.width.value),
        };
        quote!(#d #[doc = ""] #[doc = #w] pub #n: u64,)
    });
    let param_defaults = f.params.iter().map(|p| {
        let n = &p.name;
        let d = p.default.map_or(0, |d| d.value);
        quote!(#n: #d,)
    });
    let params_doc = format!(
        "Root-register parameters of [`{name}`] (and of the formats sharing its descriptors)."
    );

    quote! {

        ::npt::__private::bitflags::bitflags! {
            #[doc = #flags_doc]
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            pub struct #flags_ty: u64 {
                #(#flag_consts)*
            }
        }

        #(#enums)*

        #[doc = #params_doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct #params_ty {
            #(#param_fields)*
        }

        impl ::core::default::Default for #params_ty {
            fn default() -> Self {
                Self { #(#param_defaults)* }
            }
        }
    }
}

/// The entry type of `f` (`f.entry`): its accessors, conversions and
/// `Debug`, over the shared flags type and field enums. A variant with an
/// encoding of its own gets one too.
pub fn entry_type(f: &Format) -> TokenStream {
    let name = &f.name;
    let entry = &f.entry;
    let flags_ty = &f.flags_ty;
    let accessors = f.fields.iter().map(|fd| {
        let get = &fd.name;
        let set = format_ident!("set_{}", fd.name);
        let ty = &fd.ty;
        let lo = fd.bits.lo;
        let mask = hex(fd.bits.mask());
        let d = docs(&fd.docs);
        let raw_get = format_ident!("{}_bits", fd.name);
        quote! {
            #d
            #[doc = ""]
            #[doc = "`None` when the field holds a reserved encoding."]
            pub const fn #get(self) -> ::core::option::Option<#ty> {
                #ty::from_bits((self.0 & #mask) >> #lo)
            }
            /// The field's raw bits.
            pub const fn #raw_get(self) -> u64 {
                (self.0 & #mask) >> #lo
            }
            /// Sets the field.
            pub fn #set(&mut self, value: #ty) {
                self.0 = (self.0 & !#mask) | ((value as u64) << #lo);
            }
        }
    });

    let debug_fields = f.fields.iter().map(|fd| {
        let get = &fd.name;
        let raw_get = format_ident!("{}_bits", fd.name);
        let label = fd.name.to_string();
        quote! {
            match self.#get() {
                ::core::option::Option::Some(v) => { s.field(#label, &v); }
                ::core::option::Option::None => { s.field(#label, &::core::format_args!("reserved({:#x})", self.#raw_get())); }
            }
        }
    });
    let amask = hex(f.address.bits.mask());
    let alo = f.address.bits.lo;
    let pa_low = f.address.pa_low_bit.value as u32;
    let mut entry_doc = format!("A descriptor of the [`{name}`] format: a 64-bit word with typed accessors. `Debug` decodes it into its fields.");
    if let Some(c) = &f.descriptors.cite {
        entry_doc.push_str(&format!("\n\n{}.", c.value()));
    }

    quote! {
        #[doc = #entry_doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(transparent)]
        pub struct #entry(u64);

        impl #entry {
            /// The entry with these raw bits.
            pub const fn from_raw(raw: u64) -> Self { Self(raw) }
            /// The raw bits.
            pub const fn raw(self) -> u64 { self.0 }
            /// The single-bit flags that are set.
            pub const fn flag_bits(self) -> #flags_ty { #flags_ty::from_bits_truncate(self.0) }
            /// The output address (the physical address the entry points at).
            pub const fn output_address(self) -> ::npt::HostPhysAddr {
                ::npt::HostPhysAddr::from_usize((((self.0 & #amask) >> #alo) << #pa_low) as usize)
            }
            #(#accessors)*
        }

        impl ::core::convert::From<u64> for #entry {
            fn from(raw: u64) -> Self { Self(raw) }
        }

        impl ::core::convert::From<#entry> for u64 {
            fn from(e: #entry) -> u64 { e.0 }
        }

        impl ::core::fmt::Debug for #entry {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                let mut s = f.debug_struct(::core::stringify!(#entry));
                s.field("raw", &::core::format_args!("{:#018x}", self.0));
                s.field("flags", &self.flag_bits());
                #(#debug_fields)*
                s.field("address", &::core::format_args!("{:#x}", self.output_address().as_usize()));
                s.finish()
            }
        }
    }
}
