//! After an error, emit the types a spec declares (as far as they can be
//! read) so that code using them does not add "cannot find type" errors to
//! the real one.

use crate::parse::{Body, SpecTree};
use proc_macro2::{TokenStream, TokenTree};
use quote::quote;

pub fn generate(tree: &SpecTree) -> TokenStream {
    let name = &tree.name;
    let mut out = quote! {
        #[allow(dead_code)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct #name;
    };
    for node in &tree.nodes {
        let key = node.key.to_string();
        if key == "entry" || key == "flags" || key == "params_type" {
            if let Body::Value(v) = &node.body {
                let toks: Vec<TokenTree> = v.clone().into_iter().collect();
                if let [TokenTree::Ident(id)] = toks.as_slice() {
                    out.extend(quote! {
                        #[allow(dead_code)]
                        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
                        pub struct #id(u64);
                    });
                }
            }
        }
    }
    out
}
