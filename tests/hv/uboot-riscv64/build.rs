fn main() {
    // The plain AArch64 hypervisor's linker script (image at 0x8000_0000).
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg=-T{dir}/../riscv64/link.ld");
    println!("cargo:rerun-if-changed=../riscv64/link.ld");
}
