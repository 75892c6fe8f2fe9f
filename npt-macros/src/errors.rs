//! An error sink in the style of serde_derive's `Ctxt`: every stage pushes
//! into it and carries on, so one compilation reports every mistake it can.

use proc_macro2::{Span, TokenStream};
use std::fmt::Display;

/// Collected spec errors.
#[derive(Default)]
pub struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    /// Records an error at `span`.
    pub fn error(&mut self, span: Span, msg: impl Display) {
        self.errors.push(syn::Error::new(span, msg));
    }

    /// Records an error at `span` and a second one pointing at the earlier
    /// item it conflicts with.
    pub fn conflict(
        &mut self,
        span: Span,
        msg: impl Display,
        first: Span,
        first_msg: impl Display,
    ) {
        let mut err = syn::Error::new(span, msg);
        err.combine(syn::Error::new(first, first_msg));
        self.errors.push(err);
    }

    /// How many errors were recorded so far.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// Records an already-built error.
    pub fn push(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    /// `Ok` if nothing was reported, otherwise every error as `compile_error!`s.
    pub fn into_result(self) -> Result<(), TokenStream> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self
                .errors
                .iter()
                .map(syn::Error::to_compile_error)
                .collect())
        }
    }
}
