//! Build script. On a Linux target it builds the BPF sampler (`build/bpf.rs`); other targets
//! have no BPF sampler, so there is nothing to build for them.
//!
//! `cfg(target_os)` here is the *host's* (a build script runs where the build runs), while
//! `CARGO_CFG_TARGET_OS` is the target's: the BPF tools (libbpf-cargo) are build-dependencies
//! only on a Linux host, and they are used only when the target is Linux as well.

#[cfg(target_os = "linux")]
#[path = "build/bpf.rs"]
mod bpf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        return;
    }
    #[cfg(target_os = "linux")]
    bpf::build();
    #[cfg(not(target_os = "linux"))]
    panic!("building for Linux (the BPF sampler) needs a Linux host");
}
