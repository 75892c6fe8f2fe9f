//! The `npt::format::Layout` and `npt::flush::FlushSpec` constants and the
//! `npt::Format` impl.

use super::hex;
use super::registers::slots;
use crate::encode::row_bits;
use crate::model::{Format, Kind, Operand, Pred, Recipe};
use crate::vocab;
use proc_macro2::{Ident, TokenStream};
use quote::quote;

fn pred(f: &Format, p: &Pred) -> TokenStream {
    let mask = hex(f.pred_mask(p).unwrap_or(0));
    match p {
        Pred::Always => quote!(::npt::format::Pred::Always),
        Pred::Any(_) => quote!(::npt::format::Pred::Any(#mask)),
        Pred::All(_) => quote!(::npt::format::Pred::All(#mask)),
        Pred::None(_) => quote!(::npt::format::Pred::None(#mask)),
    }
}

fn kind(f: &Format, k: &Kind) -> TokenStream {
    let is = pred(f, &k.is);
    let set = hex(f.assigns_bits(&k.set).map(|(_, v)| v).unwrap_or(0));
    quote!(::npt::format::DescriptorKind { is: #is, set: #set })
}

fn recipe(f: &Format, r: &Recipe) -> TokenStream {
    let names = slots(f);
    let slot = |n: &str| names.iter().position(|s| s == n).unwrap_or(0) as u8;
    let steps = |list: &[crate::model::Step]| {
        let items = list.iter().map(|s| {
            let variant = vocab::instruction(&s.instr.to_string()).map(|i| i.variant).unwrap_or("Isb");
            let variant = Ident::new(variant, s.instr.span());
            let ops = s.operands.iter().map(|o| match o {
                Operand::Zero => quote!(::npt::flush::Operand::Zero),
                Operand::Gpa(shift, _) => quote!(::npt::flush::Operand::Gpa(#shift)),
                Operand::Name(id) => {
                    let i = slot(&id.to_string());
                    quote!(::npt::flush::Operand::Slot(#i))
                }
            });
            quote!(::npt::flush::Step { instr: ::npt::flush::Instr::#variant, operands: &[#(#ops),*] })
        });
        quote!(&[#(#items),*])
    };
    let current = match &r.current {
        Some(c) => {
            let v = Ident::new(
                vocab::context_register(&c.to_string()).map_or("VttbrEl2", |(v, _)| v),
                c.span(),
            );
            let i = slot(&c.to_string());
            quote!(::core::option::Option::Some((::npt::flush::ContextRegister::#v, #i)))
        }
        None => quote!(::core::option::Option::None),
    };
    let clear = r.clear.iter().map(|c| {
        let v = Ident::new(
            vocab::clearable_bit(&c.to_string()).map_or("HcrEl2Tge", |(v, _)| v),
            c.span(),
        );
        quote!(::npt::flush::ContextRegister::#v)
    });
    let before = steps(&r.before);
    let each = steps(&r.each);
    let after = steps(&r.after);
    quote!(::npt::flush::Recipe { current: #current, clear: &[#(#clear),*], before: #before, each: #each, after: #after })
}

pub fn generate(f: &Format) -> TokenStream {
    let name = &f.name;
    let name_str = name.to_string();
    let entry = &f.entry;
    let params_ty = &f.params_ty;
    let g = &f.geometry;
    let granule_shift = g.granule.value.trailing_zeros();
    let input_bits = g.input_bits.value as u32;
    let output_bits = g.output_bits.value as u32;
    let root_tables = g.root_tables.value as usize;
    let root_align = g.root_align.value as usize;
    let levels = g.levels.iter().map(|l| {
        let n = l.name.to_string();
        let number = l.number.value as u8;
        let shift = l.index.lo;
        let bits = l.index.width();
        let leaf = l.leaf.is_some();
        quote!(::npt::format::Level { name: #n, number: #number, shift: #shift, index_bits: #bits, leaf: #leaf })
    });
    let d = &f.descriptors;
    let present = pred(f, &d.present);
    let table = kind(f, &d.table);
    let block = match &d.block {
        Some(b) => {
            let k = kind(f, b);
            quote!(::core::option::Option::Some(#k))
        }
        None => quote!(::core::option::Option::None),
    };
    let page = kind(f, &d.page);
    let alo = f.address.bits.lo;
    let awidth = f.address.bits.width();
    let pa_shift = f.address.pa_low_bit.value as u32;
    let ignored = f.ignored_bits();

    let leaf_attrs = (0..64usize).map(|combo| match f.encode_combo(combo) {
        Some(Ok((_, v))) => {
            let v = hex(v);
            quote!(::core::result::Result::Ok(#v))
        }
        Some(Err(crate::encode::Illegal::Forbidden(i))) => {
            let fb = &f.permissions.forbids[i];
            let reason = fb.reason.value();
            // A conditional refusal carries the encoding its param unlocks.
            let unless = match (&fb.unless, f.encode_rows(combo)) {
                (Some(_), Some(Ok((_, v)))) => {
                    let v = hex(v);
                    let rule = i as u8;
                    quote!(::core::option::Option::Some(::npt::format::Unless { rule: #rule, attrs: #v }))
                }
                _ => quote!(::core::option::Option::None),
            };
            quote!(::core::result::Result::Err(::npt::format::Illegal { reason: #reason, unless: #unless }))
        }
        Some(Err(crate::encode::Illegal::NoRow(i))) => {
            let m = &f.permissions.mappings[i];
            let names: Vec<&str> = m.governs.iter().map(|g| g.value.name()).collect();
            let reason = format!(
                "{name_str} has no encoding for this combination of {}",
                names.join(", ")
            );
            quote!(::core::result::Result::Err(::npt::format::Illegal { reason: #reason, unless: ::core::option::Option::None }))
        }
        None => quote!(::core::result::Result::Err(::npt::format::Illegal {
            reason: "unencodable",
            unless: ::core::option::Option::None,
        })),
    });
    let attr_mask_value = f.mapping_bits();
    let attr_mask = hex(attr_mask_value);
    let bbm_mask = hex(f
        .descriptors
        .break_before_make
        .iter()
        .filter_map(|n| f.name_mask(&n.to_string()))
        .fold(0, |a, b| a | b));
    let log_bit = hex(f
        .dirty_log_bit
        .as_ref()
        .and_then(|n| f.name_mask(&n.to_string()))
        .unwrap_or(0));
    let hw = f.hardware_dirty.as_ref();
    let hw_mask = |name: Option<&syn::Ident>| {
        hex(name.and_then(|n| f.name_mask(&n.to_string())).unwrap_or(0))
    };
    let hw_accessed = hw_mask(hw.map(|h| &h.accessed));
    let hw_dirty = hw_mask(hw.and_then(|h| h.dirty.as_ref()));
    let hw_clean = hw_mask(hw.and_then(|h| h.writable_clean.as_ref()));
    // With `writable_clean` the dirty state is the write permission: the
    // bits WRITE toggles (checked to be the same in every combination).
    let hw_write = hex(hw
        .filter(|h| h.writable_clean.is_some())
        .and_then(|_| f.write_bits())
        .unwrap_or(0));
    let hardware_dirty_fn = hw.map(|h| {
        let on = match &h.enabled_by {
            Some(p) => quote!(params.#p != 0),
            None => quote!({
                let _ = params;
                true
            }),
        };
        quote! {
            fn hardware_dirty(params: &#params_ty) -> bool {
                #on
            }
        }
    });
    let decode = f.permissions.mappings.iter().map(|m| {
        let mask = hex(f.mapping_mask(m).unwrap_or(0));
        let rules = m.rows.iter().filter_map(|r| {
            let value = hex(f.assigns_bits(&r.assigns)?.1);
            let flags = row_bits(&r.flags);
            Some(quote!(::npt::format::DecodeRule { mask: #mask, value: #value, flags: #flags }))
        });
        quote!(&[#(#rules),*])
    });
    let output_bits_fn = f.output_limit.as_ref().map(|limit| {
        quote! {
            fn output_bits(params: &#params_ty) -> u32 {
                (params.#limit as u32).min(#output_bits)
            }
        }
    });
    let lifts = f
        .permissions
        .forbids
        .iter()
        .enumerate()
        .filter_map(|(i, fb)| {
            let param = fb.unless.as_ref()?;
            let rule = i as u8;
            Some(quote!(#rule => params.#param != 0,))
        })
        .collect::<Vec<_>>();
    let allows_fn = (!lifts.is_empty()).then(|| {
        quote! {
            fn allows(params: &#params_ty, rule: u8) -> bool {
                match rule {
                    #(#lifts)*
                    _ => false,
                }
            }
        }
    });
    let reg_names: Vec<String> = f.registers.iter().map(|r| r.name.to_string()).collect();
    let reg_arms = f.registers.iter().enumerate().map(|(i, r)| {
        let b = super::registers::builder_name(&r.name);
        quote!(#i => Self::#b(root_pa, params),)
    });
    let on_map = f.flush.invalidate_on_map.value;
    let covers = f.flush.page_covers_tables.value;
    let page_limit = f.flush.page_limit.as_ref().map_or(16, |l| l.value as usize);
    let split_bbm = f
        .flush
        .split_break_before_make
        .as_ref()
        .is_none_or(|b| b.value);
    let fault_invalidates = f.flush.fault_invalidates.as_ref().is_some_and(|b| b.value);
    let page_r = recipe(f, &f.flush.page);
    let context_r = recipe(f, &f.flush.context);
    let all_r = recipe(f, &f.flush.all);

    quote! {
        impl ::npt::Format for #name {
            const NAME: &'static str = #name_str;
            const LAYOUT: ::npt::format::Layout = ::npt::format::Layout {
                name: #name_str,
                geometry: ::npt::format::Geometry {
                    granule_shift: #granule_shift,
                    input_bits: #input_bits,
                    output_bits: #output_bits,
                    root_tables: #root_tables,
                    root_align: #root_align,
                    levels: &[#(#levels),*],
                },
                present: #present,
                table: #table,
                block: #block,
                page: #page,
                address: ::npt::format::AddressField { lo: #alo, width: #awidth, pa_shift: #pa_shift },
                ignored: #ignored,
                leaf_attrs: [#(#leaf_attrs),*],
                attr_mask: #attr_mask,
                bbm_mask: #bbm_mask,
                log_bit: #log_bit,
                hw_accessed: #hw_accessed,
                hw_dirty: #hw_dirty,
                hw_clean: #hw_clean,
                hw_write: #hw_write,
                decode: &[#(#decode),*],
            };
            const FLUSH: ::npt::flush::FlushSpec = ::npt::flush::FlushSpec {
                invalidate_on_map: #on_map,
                page_covers_tables: #covers,
                page_limit: #page_limit,
                split_break_before_make: #split_bbm,
                fault_invalidates: #fault_invalidates,
                page: #page_r,
                context: #context_r,
                all: #all_r,
            };
            type Entry = #entry;
            type Params = #params_ty;

            #output_bits_fn
            #allows_fn
            #hardware_dirty_fn

            const REGISTERS: &'static [&'static str] = &[#(#reg_names),*];

            fn register(
                index: usize,
                root_pa: ::npt::HostPhysAddr,
                params: &#params_ty,
            ) -> ::core::result::Result<u64, ::npt::Error> {
                match index {
                    #(#reg_arms)*
                    _ => ::core::result::Result::Err(::npt::Error::NoSuchRegister { index }),
                }
            }

            fn context(root_pa: u64, params: &#params_ty) -> ::core::result::Result<::npt::flush::Context, ::npt::Error> {
                Self::__context(root_pa, params)
            }

            fn check_params(params: &#params_ty) -> ::core::result::Result<(), ::npt::Error> {
                Self::__check_params(params)
            }
        }
    }
}
