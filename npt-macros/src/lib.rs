//! The spec compiler behind `npt`.
//!
//! A format spec (one file per format under `specs/`) is written in Rust token
//! syntax and handed to [`format_spec!`]. The compiler runs four stages, each a
//! module of its own:
//!
//! 1. `parse`: tokens to a generic tree of spanned nodes (no meaning yet);
//! 2. `model`: the tree to a typed model of the format (keys, literal kinds);
//! 3. `check`: one function per rule over the model (overlaps, geometry,
//!    permission encodings ...), collecting every error;
//! 4. `codegen`: the model to Rust items that use the `npt` runtime.
//!
//! Every error is a `compile_error!` spanned on the offending token. When a
//! spec has errors, `fallback` still emits the declared type names so that
//! one mistake gives one error.

mod check;
mod codegen;
mod encode;
mod errors;
mod eval;
mod fallback;
mod model;
mod parse;
mod vocab;

use proc_macro::TokenStream;

/// Compiles one nested-page-table format spec into its entry, flag,
/// memory-type, parameter and format types.
///
/// See `specs/` in the npt repository for the language; each spec file is one
/// invocation of this macro.
#[proc_macro]
pub fn format_spec(input: TokenStream) -> TokenStream {
    expand(input.into()).into()
}

fn expand(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let tree = match syn::parse2::<parse::SpecTree>(input) {
        Ok(tree) => tree,
        Err(err) => return err.to_compile_error(),
    };
    let mut sink = errors::Errors::default();
    let model = model::build(&tree, &mut sink);
    if let Some(model) = &model {
        check::run(model, &mut sink);
    }
    match (model, sink.into_result()) {
        (Some(model), Ok(())) => codegen::generate(&model),
        (_, Err(errs)) => {
            let mut out = errs;
            out.extend(fallback::generate(&tree));
            out
        }
        (None, Ok(())) => unreachable!("model building failed without reporting an error"),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    /// The whole expansion of a small spec, pretty-printed, against a
    /// reviewed snapshot: a codegen change shows up as a readable diff.
    /// Regenerate with `NPT_BLESS=1 cargo test -p npt-macros`.
    #[test]
    fn toy_spec_expansion_matches_snapshot() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        let spec = std::fs::read_to_string(format!("{dir}/toy.spec")).unwrap();
        let tokens = proc_macro2::TokenStream::from_str(&spec).unwrap();
        let out = super::expand(tokens);
        let file: syn::File = syn::parse2(out).expect("expansion parses as items");
        let pretty = prettyplease::unparse(&file);
        let path = format!("{dir}/toy.expanded.rs");
        if std::env::var_os("NPT_BLESS").is_some() {
            std::fs::write(&path, &pretty).unwrap();
        }
        let want = std::fs::read_to_string(&path).expect("snapshot; run with NPT_BLESS=1");
        assert!(
            pretty == want,
            "expansion changed; diff {path} against a run with NPT_BLESS=1"
        );
    }

    /// A spec with several independent mistakes reports all of them.
    #[test]
    fn every_error_is_reported() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        let spec = std::fs::read_to_string(format!("{dir}/toy.spec")).unwrap();
        let broken = spec
            .replace("granule = 4K;", "granule = 8K;")
            .replace("IO = 2;", "IO = 1;")
            .replace("hfence_gvma(0, 0)", "hfence_vvma(0, 0)");
        let out = super::expand(proc_macro2::TokenStream::from_str(&broken).unwrap()).to_string();
        assert_eq!(out.matches("compile_error").count(), 4, "{out}");
        assert!(out.contains("granule 8192 is not a translation granule"));
        assert!(out.contains("has the same encoding"));
        assert!(out.contains("unknown instruction `hfence_vvma`"));
    }
}
