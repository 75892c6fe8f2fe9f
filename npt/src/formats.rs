//! The formats, each compiled from its spec under `specs/` (wired in by
//! `npt/build.rs`: every `specs/*.rs` is part of the crate, in the module of
//! its architecture).

include!(concat!(env!("OUT_DIR"), "/formats.rs"));
