//! pyspy-bpf: a sampling profiler for CPython. See ARCHITECTURE.md for the path of one sample
//! through these modules. The BPF sampler, native frames and the agent are Linux-only; the
//! rest (CPython knowledge, the user-space sampler, profiles, outputs, `top`, the CLI) builds
//! for every OS `process::os` supports.
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod agent;
#[cfg(target_os = "linux")]
pub mod bpf;
pub mod byte_lru;
pub mod cli;
pub mod diff;
pub mod escape;
pub mod frames;
pub mod input;
pub mod model;
#[cfg(target_os = "linux")]
pub mod native;
pub mod output;
pub mod process;
pub mod profile;
pub mod python;
#[cfg(target_os = "linux")]
pub mod safe_fs;
#[cfg(not(target_os = "linux"))]
#[path = "safe_fs_portable.rs"]
pub mod safe_fs;
pub mod safe_name;
pub mod sampler;
pub mod top;
