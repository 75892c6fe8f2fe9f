//! After an error, emit the items a spec declares, as far as their names can
//! be read from the raw tree, with bodies that are never run (the crate does
//! not compile anyway). Code that uses the format then type-checks, so one
//! spec mistake gives one error, not a cascade of "cannot find type" errors
//! (thiserror's fallback, extended to every generated item).

use crate::parse::{Body, Node, SpecTree};
use proc_macro2::{TokenStream, TokenTree};
use quote::{format_ident, quote};
use syn::Ident;

fn ident_value(node: &Node) -> Option<Ident> {
    match &node.body {
        Body::Value(v) => {
            let toks: Vec<TokenTree> = v.clone().into_iter().collect();
            match toks.as_slice() {
                [TokenTree::Ident(id)] => Some(id.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn name_arg(node: &Node) -> Option<Ident> {
    match node.args.as_slice() {
        [TokenTree::Ident(id)] => Some(id.clone()),
        _ => None,
    }
}

fn children(node: &Node) -> &[Node] {
    match &node.body {
        Body::Block(nodes, _) => nodes,
        _ => &[],
    }
}

fn find<'a>(nodes: &'a [Node], key: &str) -> Option<&'a Node> {
    nodes.iter().find(|n| n.key == key)
}

pub fn generate(tree: &SpecTree) -> TokenStream {
    let nodes = &tree.nodes;
    let entry = find(nodes, "entry").and_then(ident_value);
    let flags = find(nodes, "flags").and_then(ident_value);
    let params = find(nodes, "params_type")
        .and_then(ident_value)
        .unwrap_or_else(|| format_ident!("{}Params", tree.name));
    let registers: Vec<Ident> = nodes
        .iter()
        .filter(|n| n.key == "register")
        .filter_map(name_arg)
        .map(|r| format_ident!("{}", r.to_string().to_lowercase(), span = r.span()))
        .collect();
    let param_names: Vec<Ident> = nodes
        .iter()
        .filter(|n| n.key == "param")
        .filter_map(name_arg)
        .collect();
    let formats = std::iter::once(tree.name.clone()).chain(
        nodes
            .iter()
            .filter(|n| n.key == "variant")
            .filter_map(name_arg),
    );
    let mut out = TokenStream::new();

    let entry_ty = entry
        .clone()
        .map(|e| quote!(#e))
        .unwrap_or_else(|| quote!(u64));
    for name in formats {
        out.extend(quote! {
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
            pub struct #name;
            #[allow(dead_code, unused_variables)]
            impl #name {
                pub const NAME: &'static str = "";
                pub const ARCH: &'static str = "";
                #(pub fn #registers(root_pa: ::npt::HostPhysAddr, params: &#params) -> ::core::result::Result<u64, ::npt::Error> { ::core::unreachable!() })*
            }
            impl ::npt::Format for #name {
                const NAME: &'static str = "";
                const LAYOUT: ::npt::format::Layout = ::npt::__private::STUB_LAYOUT;
                const FLUSH: ::npt::flush::FlushSpec = ::npt::__private::STUB_FLUSH;
                type Entry = #entry_ty;
                type Params = #params;
                const REGISTERS: &'static [&'static str] = &[];
                fn context(_: u64, _: &#params) -> ::core::result::Result<::npt::flush::Context, ::npt::Error> {
                    ::core::unreachable!()
                }
                fn register(_: usize, _: ::npt::HostPhysAddr, _: &#params) -> ::core::result::Result<u64, ::npt::Error> {
                    ::core::unreachable!()
                }
                fn check_params(_: &#params) -> ::core::result::Result<(), ::npt::Error> {
                    ::core::unreachable!()
                }
            }
        });
    }
    out.extend(quote! {
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct #params { #(pub #param_names: u64,)* }
    });

    let bit_names: Vec<Ident> = nodes
        .iter()
        .filter(|n| n.key == "bit")
        .filter_map(name_arg)
        .collect();
    if let Some(flags) = &flags {
        out.extend(quote! {
            ::npt::__private::bitflags::bitflags! {
                #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
                pub struct #flags: u64 { #(const #bit_names = 0;)* }
            }
        });
    }

    let mut accessors = TokenStream::new();
    for field in nodes.iter().filter(|n| n.key == "field") {
        let (Some(fname), Some(ty)) = (
            name_arg(field),
            find(children(field), "type").and_then(ident_value),
        ) else {
            continue;
        };
        let variants: Vec<&Ident> = find(children(field), "values")
            .map(children)
            .unwrap_or(&[])
            .iter()
            .map(|n| &n.key)
            .collect();
        let set = format_ident!("set_{}", fname);
        let raw = format_ident!("{}_bits", fname);
        out.extend(quote! {
            #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
            pub enum #ty { #(#variants,)* }
            #[allow(dead_code, unused_variables)]
            impl #ty {
                pub const fn from_bits(bits: u64) -> ::core::option::Option<Self> { ::core::unreachable!() }
                pub const fn bits(self) -> u64 { ::core::unreachable!() }
            }
        });
        accessors.extend(quote! {
            pub const fn #fname(self) -> ::core::option::Option<#ty> { ::core::unreachable!() }
            pub const fn #raw(self) -> u64 { ::core::unreachable!() }
            pub fn #set(&mut self, value: #ty) { ::core::unreachable!() }
        });
    }

    if let Some(entry) = &entry {
        let flag_bits = flags
            .as_ref()
            .map(|f| quote!(pub const fn flag_bits(self) -> #f { ::core::unreachable!() }));
        out.extend(quote! {
            #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
            pub struct #entry(u64);
            #[allow(dead_code, unused_variables)]
            impl #entry {
                pub const fn from_raw(raw: u64) -> Self { Self(raw) }
                pub const fn raw(self) -> u64 { self.0 }
                pub const fn output_address(self) -> ::npt::HostPhysAddr { ::core::unreachable!() }
                #flag_bits
                #accessors
            }
            impl ::core::convert::From<u64> for #entry {
                fn from(raw: u64) -> Self { Self(raw) }
            }
            impl ::core::convert::From<#entry> for u64 {
                fn from(e: #entry) -> u64 { e.0 }
            }
        });
    }
    out
}
