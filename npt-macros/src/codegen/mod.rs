//! Stage 4: the checked model to Rust items. Pure functions from model to
//! tokens; everything format-specific is emitted as data or small accessors,
//! and the `npt` runtime does the rest.

mod compat;
mod layout;
mod registers;
mod types;

use crate::model::Format;
use proc_macro2::TokenStream;
use quote::quote;

/// All items for one format.
pub fn generate(f: &Format) -> TokenStream {
    let types = types::generate(f);
    let entry = types::entry_type(f);
    let pte = compat::generic_pte(f);
    let instances = std::iter::once(f.clone()).chain(f.variants.iter().map(|v| f.variant(v)));
    let mut entries = vec![f.entry.clone()];
    let per_format = instances.map(|inst| {
        let marker = types::marker(&inst);
        let registers = registers::generate(&inst);
        let layout = layout::generate(&inst);
        let meta = compat::paging_metadata(&inst);
        // A variant with an encoding of its own has its own entry type
        // (once: variants that encode alike may share it).
        let own_entry = (!entries.contains(&inst.entry)).then(|| {
            entries.push(inst.entry.clone());
            let e = types::entry_type(&inst);
            let p = compat::generic_pte(&inst);
            quote!(#e #p)
        });
        quote!(#marker #registers #layout #meta #own_entry)
    });
    quote! {
        #types
        #entry
        #pte
        #(#per_format)*
    }
}

pub use registers::slots;

/// A `u64` literal written in hex, so bit patterns read as the manuals
/// write them.
pub fn hex(v: u64) -> syn::LitInt {
    syn::LitInt::new(&format!("{v:#x}u64"), proc_macro2::Span::call_site())
}

/// `#[doc = ...]` attributes for each line.
pub fn docs(lines: &[String]) -> TokenStream {
    quote!(#(#[doc = #lines])*)
}
