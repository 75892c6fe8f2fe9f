//! Spec mistakes must be compile errors with a span on the offending token.
//! Each case under `ui/<category>/` is `ui/pass/minimal.rs` with one
//! mistake; its `.stderr` is the expected compiler output (toolchain pinned
//! in rust-toolchain.toml). The cases keep `main`'s uses of every generated
//! item, so they also show that the fallback prevents follow-on errors.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    for category in [
        "syntax",
        "keys",
        "geometry",
        "fields",
        "permissions",
        "memtypes",
        "flush",
        "registers",
        "dirty",
        "require",
        "variants",
        "compat",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
}
