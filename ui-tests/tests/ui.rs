//! Spec mistakes must be compile errors with a span on the offending token.
//! Each case under `ui/<category>/` holds one mistake; its `.stderr` is the
//! expected compiler output (toolchain pinned in rust-toolchain.toml).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fields/*.rs");
}
