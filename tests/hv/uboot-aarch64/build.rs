fn main() {
    // The plain AArch64 hypervisor's linker script (image at 0x4010_0000).
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg=-T{dir}/../aarch64/link.ld");
    println!("cargo:rerun-if-changed=../aarch64/link.ld");
}
