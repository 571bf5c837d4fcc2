//! Build script. The BPF sampler (bpf/*.bpf.c, compiled through libbpf-cargo into a skeleton
//! under $OUT_DIR) arrives with the BPF sampler issue; until then there is nothing to generate,
//! and this only tells cargo which inputs would invalidate the build.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=bpf");
}
