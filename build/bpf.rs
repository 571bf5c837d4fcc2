//! The BPF part of the build script (Linux targets only, see `build.rs`): turns bpf/sampler.bpf.c into a BPF object (clang, through libbpf-cargo) and
//! generates its Rust skeleton and error-counter names into $OUT_DIR. Without clang it uses the
//! committed object bpf/sampler.bpf.o and warns when the sources have changed since it was built.
//!
//! `bpf/sampler.bpf.o.inputs` records what the committed object was built from: the target arch,
//! the clang version, and SHA-256s of the C sources, `bpf/pyspy.h`, `vmlinux/<arch>/vmlinux.h`,
//! the libbpf headers and the object itself (`grep -v '^#' bpf/sampler.bpf.o.inputs | sha256sum
//! -c` checks the files). This script writes the same description of what it embedded into
//! `$OUT_DIR/sampler.bpf.o.inputs` (path in `PYSPY_BPF_BUILT_INPUTS`), so a test compares the two.
//!
//! Environment:
//! - `PYSPY_BPF_CLANG`: the clang to run (default: `clang` on PATH); `none` uses the committed
//!   object even when clang is installed.
//! - `PYSPY_BPF_UPDATE_OBJECT=1`: after compiling, write the object and its inputs file back into
//!   `bpf/` (run this after changing the BPF C, pyspy.h or vmlinux.h, and commit both files).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;
use libbpf_rs::btf::types::Enum;
use libbpf_rs::btf::Btf;
use sha2::{Digest, Sha256};

const SOURCE: &str = "bpf/sampler.bpf.c";
const HEADER: &str = "bpf/pyspy.h";
const COMMITTED_OBJECT: &str = "bpf/sampler.bpf.o";
const COMMITTED_INPUTS: &str = "bpf/sampler.bpf.o.inputs";
/// The C enum whose members name the error counters (bpf/pyspy.h).
const ERROR_ENUM: &str = "pyspy_error";
const ERROR_PREFIX: &str = "ERR_";
/// The clang of `$OUT_DIR/sampler.bpf.o.inputs` when the committed object was used.
const NO_CLANG: &str = "none (the committed object)";

pub fn build() {
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-changed=vmlinux");
    println!("cargo:rerun-if-env-changed=PYSPY_BPF_CLANG");
    println!("cargo:rerun-if-env-changed=PYSPY_BPF_UPDATE_OBJECT");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let vmlinux_dir = format!("vmlinux/{arch}");
    let sources = [
        SOURCE.to_string(),
        HEADER.to_string(),
        format!("{vmlinux_dir}/vmlinux.h"),
    ];
    let committed = fs::read_to_string(manifest_dir.join(COMMITTED_INPUTS))
        .ok()
        .map(|text| Inputs::parse(&text));

    let (object, built) = match clang() {
        Some((clang, version)) => {
            let object = out_dir.join("sampler.bpf.o");
            SkeletonBuilder::new()
                .source(SOURCE)
                .obj(&object)
                .clang(&clang)
                .clang_args([
                    format!("-I{vmlinux_dir}"),
                    // Keep the checkout's path out of the object (BTF line info names the
                    // source file), so every clone builds the same bytes.
                    format!("-fdebug-prefix-map={}=.", manifest_dir.display()),
                    "-Wall".to_string(),
                ])
                .build()
                .unwrap_or_else(|e| panic!("compiling {SOURCE} with {clang}: {e:#}"));
            let built = Inputs::describe(&arch, &version, &sources, &object);
            if env::var_os("PYSPY_BPF_UPDATE_OBJECT").is_some_and(|v| v == "1") {
                fs::copy(&object, manifest_dir.join(COMMITTED_OBJECT)).expect("write object");
                fs::write(manifest_dir.join(COMMITTED_INPUTS), built.render())
                    .expect("write inputs");
            } else {
                warn_if_stale(committed.as_ref(), &built);
            }
            (object, built)
        }
        None => {
            let object = manifest_dir.join(COMMITTED_OBJECT);
            assert!(
                object.exists(),
                "no clang (set PYSPY_BPF_CLANG or install clang) and no committed {COMMITTED_OBJECT}"
            );
            let committed =
                committed.unwrap_or_else(|| panic!("{COMMITTED_OBJECT} has no {COMMITTED_INPUTS}"));
            assert_eq!(
                committed.arch, arch,
                "{COMMITTED_OBJECT} was built for {}, not {arch}: building for {arch} needs clang",
                committed.arch
            );
            let built = Inputs::describe(&arch, NO_CLANG, &sources, &object);
            let changed = built.changed_sources(&committed);
            if !changed.is_empty() {
                println!(
                    "cargo:warning={COMMITTED_OBJECT} is stale: {} changed since it was built. \
                     Install clang to compile the BPF program, then run \
                     `PYSPY_BPF_UPDATE_OBJECT=1 cargo build` and commit bpf/.",
                    changed.join(", ")
                );
            }
            if built.object != committed.object {
                println!(
                    "cargo:warning={COMMITTED_OBJECT} does not match the hash in {COMMITTED_INPUTS}"
                );
            }
            (object, built)
        }
    };

    let built_inputs = out_dir.join("sampler.bpf.o.inputs");
    fs::write(&built_inputs, built.render()).expect("write built inputs");
    println!(
        "cargo:rustc-env=PYSPY_BPF_BUILT_INPUTS={}",
        built_inputs.display()
    );

    SkeletonBuilder::new()
        .obj(&object)
        .generate(out_dir.join("sampler.skel.rs"))
        .unwrap_or_else(|e| panic!("generating the skeleton of {}: {e:#}", object.display()));
    fs::write(out_dir.join("sampler_errors.rs"), error_names(&object)).expect("write names");
}

/// The clang to run and its version line, or None when there is none (or `PYSPY_BPF_CLANG=none`).
fn clang() -> Option<(String, String)> {
    let clang = env::var("PYSPY_BPF_CLANG").unwrap_or_else(|_| "clang".to_string());
    if clang == "none" {
        return None;
    }
    let output = Command::new(&clang).arg("--version").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let version = String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    Some((clang, version))
}

/// With clang: say when the committed object no longer matches what this build compiled.
fn warn_if_stale(committed: Option<&Inputs>, built: &Inputs) {
    let Some(committed) = committed else {
        println!(
            "cargo:warning={COMMITTED_INPUTS} is missing: run `PYSPY_BPF_UPDATE_OBJECT=1 cargo build`"
        );
        return;
    };
    let changed = built.changed_sources(committed);
    if !changed.is_empty() {
        println!(
            "cargo:warning={COMMITTED_OBJECT} is stale ({} changed): run \
             `PYSPY_BPF_UPDATE_OBJECT=1 cargo build` and commit bpf/",
            changed.join(", ")
        );
    } else if committed.clang == built.clang && committed.object != built.object {
        println!(
            "cargo:warning={} rebuilt from the same sources differs from {COMMITTED_OBJECT}: \
             the BPF build is not deterministic",
            built.clang
        );
    }
}

/// What a BPF object was built from (the format of `bpf/sampler.bpf.o.inputs`).
#[derive(Debug, PartialEq)]
struct Inputs {
    arch: String,
    clang: String,
    libbpf_headers: String,
    /// (sha256, path) of each source, in build order.
    sources: Vec<(String, String)>,
    object: String,
}

impl Inputs {
    fn describe(arch: &str, clang: &str, sources: &[String], object: &Path) -> Inputs {
        let read = |path: &Path| {
            fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        };
        let mut headers = Sha256::new();
        for (name, text) in libbpf_rs::libbpf_sys::API_HEADERS {
            headers.update(name.as_bytes());
            headers.update([0]);
            headers.update(text.as_bytes());
            headers.update([0]);
        }
        Inputs {
            arch: arch.to_string(),
            clang: clang.to_string(),
            libbpf_headers: hex(&headers.finalize()),
            sources: sources
                .iter()
                .map(|path| (hex(&Sha256::digest(read(Path::new(path)))), path.clone()))
                .collect(),
            object: hex(&Sha256::digest(read(object))),
        }
    }

    fn render(&self) -> String {
        let mut text = String::from(
            "# What bpf/sampler.bpf.o was built from; written by build.rs \
             (PYSPY_BPF_UPDATE_OBJECT=1 cargo build).\n",
        );
        writeln!(text, "# arch: {}", self.arch).unwrap();
        writeln!(text, "# clang: {}", self.clang).unwrap();
        writeln!(text, "# libbpf headers: {}", self.libbpf_headers).unwrap();
        for (hash, path) in &self.sources {
            writeln!(text, "{hash}  {path}").unwrap();
        }
        writeln!(text, "{}  {COMMITTED_OBJECT}", self.object).unwrap();
        text
    }

    fn parse(text: &str) -> Inputs {
        let mut inputs = Inputs {
            arch: String::new(),
            clang: String::new(),
            libbpf_headers: String::new(),
            sources: Vec::new(),
            object: String::new(),
        };
        for line in text.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                if let Some((key, value)) = comment.split_once(": ") {
                    match key {
                        "arch" => inputs.arch = value.to_string(),
                        "clang" => inputs.clang = value.to_string(),
                        "libbpf headers" => inputs.libbpf_headers = value.to_string(),
                        _ => {}
                    }
                }
            } else if let Some((hash, path)) = line.split_once("  ") {
                if path == COMMITTED_OBJECT {
                    inputs.object = hash.to_string();
                } else {
                    inputs.sources.push((hash.to_string(), path.to_string()));
                }
            }
        }
        inputs
    }

    /// Names of the inputs that differ from `other`'s.
    fn changed_sources(&self, other: &Inputs) -> Vec<String> {
        let mut changed: Vec<String> = self
            .sources
            .iter()
            .filter(|source| !other.sources.contains(source))
            .map(|(_, path)| path.clone())
            .collect();
        if self.libbpf_headers != other.libbpf_headers {
            changed.push("the libbpf headers".to_string());
        }
        if self.arch != other.arch {
            changed.push("the target arch".to_string());
        }
        changed
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        write!(s, "{b:02x}").unwrap();
        s
    })
}

/// Rust source naming the error counters: the members of `enum pyspy_error` read from the
/// object's BTF, `ERR_RINGBUF_FULL` -> "ringbuf_full", indexed by value, without `ERR_COUNT`.
fn error_names(object: &Path) -> String {
    let btf = Btf::from_path(object).expect("BTF of the BPF object");
    let error_enum: Enum = btf
        .type_by_name(ERROR_ENUM)
        .unwrap_or_else(|| panic!("enum {ERROR_ENUM} is not in the object's BTF"));
    let mut members: Vec<(i64, String)> = error_enum
        .iter()
        .map(|m| {
            let name = m.name.expect("enum member name").to_string_lossy();
            (m.value, name.into_owned())
        })
        .collect();
    members.sort();
    let count_name = format!("{ERROR_PREFIX}COUNT");
    let names: Vec<String> = members
        .iter()
        .filter(|(_, name)| *name != count_name)
        .enumerate()
        .map(|(index, (value, name))| {
            assert_eq!(
                *value, index as i64,
                "{name}: counters must be numbered 0, 1, ..."
            );
            name.strip_prefix(ERROR_PREFIX)
                .unwrap_or_else(|| panic!("{name} lacks the {ERROR_PREFIX} prefix"))
                .to_lowercase()
        })
        .collect();
    assert!(
        members
            .iter()
            .any(|(value, name)| *name == count_name && *value == names.len() as i64),
        "{count_name} must follow the last counter"
    );
    let mut rust = format!(
        "/// Names of the error counters, indexed by `enum {ERROR_ENUM}` (bpf/pyspy.h); generated \
         by build.rs from the object's BTF.\npub const ERROR_NAMES: [&str; {}] = [\n",
        names.len()
    );
    for name in &names {
        writeln!(rust, "    {name:?},").unwrap();
    }
    rust.push_str("];\n");
    rust
}
