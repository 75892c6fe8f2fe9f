//! The parameter struct, one builder per register, and the flush context.

use super::docs;
use crate::check::const_env;
use crate::errors::Errors;
use crate::eval::{Env, Value};
use crate::model::{Format, Operand};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::Ident;

/// Names of the context slots: the root register first, then every name a
/// recipe uses (as operand or `current`), in order of appearance.
pub fn slots(f: &Format) -> Vec<String> {
    let mut out: Vec<String> = f
        .registers
        .iter()
        .filter(|r| r.root)
        .map(|r| r.name.to_string())
        .collect();
    for r in [&f.flush.page, &f.flush.context, &f.flush.all] {
        let names = r.current.iter().map(|c| c.to_string()).chain(
            r.before
                .iter()
                .chain(&r.each)
                .chain(&r.after)
                .flat_map(|s| &s.operands)
                .filter_map(|o| match o {
                    Operand::Name(id) => Some(id.to_string()),
                    _ => None,
                }),
        );
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

pub(super) fn builder_name(reg: &Ident) -> Ident {
    format_ident!("{}", reg.to_string().to_lowercase(), span = reg.span())
}

pub fn generate(f: &Format) -> TokenStream {
    let name = &f.name;
    let params_ty = &f.params_ty;
    let param_checks: Vec<TokenStream> = f.params.iter().map(|p| {
        let n = &p.name;
        let s = n.to_string();
        let w = p.width.value as u32;
        quote! {
            if #w < 64 && params.#n >> #w != 0 {
                return ::core::result::Result::Err(::npt::Error::ParamOutOfRange { param: #s, value: params.#n, width: #w });
            }
        }
    }).collect();

    // A limit wider than the format's output field is clamped to it
    // (`Format::output_bits`); one narrower than a granule is refused.
    let output_check = f.output_limit.as_ref().map(|limit| {
        let min = f.geometry.granule.value.trailing_zeros() as u64 + 1;
        let s = limit.to_string();
        quote! {
            if params.#limit < #min || params.#limit > 64 {
                return ::core::result::Result::Err(::npt::Error::ParamOutOfRange { param: #s, value: params.#limit, width: 64 });
            }
        }
    });
    let root_pa = Ident::new("root_pa", Span::call_site());
    let mut runtime: Vec<&Ident> = vec![&root_pa];
    runtime.extend(f.params.iter().map(|p| &p.name));
    let env = Env {
        consts: const_env(f),
        runtime,
    };
    let param_lets: Vec<TokenStream> = f
        .params
        .iter()
        .map(|p| {
            let n = &p.name;
            quote!(let #n: u64 = params.#n;)
        })
        .collect();

    // The spec's `require` conditions, evaluated like register values: a
    // condition that is 0, or that has no value (no `match` arm), refuses.
    let require_tokens = |q: &crate::model::Require| {
        let mut errs = Errors::default();
        let value = q
            .when
            .eval(&env, &mut errs)
            .map(Value::into_tokens)
            .unwrap_or_else(|| quote!(::core::option::Option::None));
        let rule = q.name.to_string();
        let reason = q.reason.value();
        quote! {
            match #value {
                ::core::option::Option::Some(v) if v != 0 => {}
                _ => return ::core::result::Result::Err(::npt::Error::Requirement { rule: #rule, reason: #reason }),
            }
        }
    };
    let requires: Vec<TokenStream> = f.requires.iter().map(require_tokens).collect();
    // The rules that do not read the root address: checked before a root
    // is allocated.
    let param_requires: Vec<TokenStream> = f
        .requires
        .iter()
        .filter(|q| !q.when.uses("root_pa"))
        .map(require_tokens)
        .collect();
    let builders = f.registers.iter().map(|r| {
        let fname = builder_name(&r.name);
        let d = docs(&r.docs);
        let rname = r.name.to_string();
        let cite = r.cite.as_ref().map(|c| {
            let s = format!("Source: {}.", c.value());
            quote!(#[doc = ""] #[doc = #s])
        });
        let field_docs: Vec<String> = r
            .fields
            .iter()
            .map(|fd| {
                let what = fd.docs.first().map(|s| s.trim().to_string()).unwrap_or_default();
                format!("- `{}` (bits {}:{}): {}", fd.name, fd.bits.hi, fd.bits.lo, what)
            })
            .collect();
        let fields = r.fields.iter().map(|fd| {
            let mut errs = Errors::default();
            let value = fd.value.eval(&env, &mut errs).map(Value::into_tokens).unwrap_or_else(|| quote!(::core::option::Option::None));
            let width = fd.bits.width();
            let lo = fd.bits.lo;
            let field = fd.name.to_string();
            quote! {
                match #value {
                    ::core::option::Option::Some(v) if #width >= 64 || v >> #width == 0 => reg |= v << #lo,
                    _ => return ::core::result::Result::Err(::npt::Error::RegisterField { register: #rname, field: #field }),
                }
            }
        });
        let lets = &param_lets;
        let requires = &requires;
        let require_docs: Vec<String> = f
            .requires
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let cite = q.cite.as_ref().map(|c| format!(" ({})", c.value())).unwrap_or_default();
                let head = if i == 0 { "\nRefuses (`Error::Requirement`):\n" } else { "" };
                format!("{head}- `{}`: {}{cite}", q.name, q.reason.value())
            })
            .collect();
        quote! {
            #d
            #cite
            ///
            /// `root_pa` is the host-physical address of the root table.
            /// Fields:
            #(#[doc = #field_docs])*
            #(#[doc = #require_docs])*
            #[allow(unused_variables, clippy::identity_op, unused_comparisons)]
            pub fn #fname(root_pa: ::npt::HostPhysAddr, params: &#params_ty) -> ::core::result::Result<u64, ::npt::Error> {
                let root_pa: u64 = root_pa.as_usize() as u64;
                #(#lets)*
                #(#requires)*
                let mut reg: u64 = 0;
                #(#fields)*
                ::core::result::Result::Ok(reg)
            }
        }
    });

    let slot_values = slots(f).into_iter().enumerate().map(|(i, s)| {
        if let Some(r) = f.registers.iter().find(|r| r.name == s) {
            let b = builder_name(&r.name);
            quote!(ctx[#i] = Self::#b(root, params)?;)
        } else {
            let p = format_ident!("{}", s);
            quote!(ctx[#i] = params.#p;)
        }
    });

    quote! {
        impl #name {
            #(#builders)*

            #[allow(unused_variables, clippy::identity_op, unused_comparisons)]
            fn __check_params(params: &#params_ty) -> ::core::result::Result<(), ::npt::Error> {
                #(#param_checks)*
                #output_check
                #(#param_lets)*
                #(#param_requires)*
                ::core::result::Result::Ok(())
            }

            fn __context(root_pa: u64, params: &#params_ty) -> ::core::result::Result<::npt::flush::Context, ::npt::Error> {
                #(#param_checks)*
                #output_check
                let root = ::npt::HostPhysAddr::from_usize(root_pa as usize);
                let mut ctx: ::npt::flush::Context = [0; 4];
                #(#slot_values)*
                ::core::result::Result::Ok(ctx)
            }
        }
    }
}
