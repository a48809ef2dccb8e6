//! Exports the target triple this binary is built for, so `plantgate
//! update` can refuse a release bundle built for another one.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=PLANTGATE_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
