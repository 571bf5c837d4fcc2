//! Sources of samples. `userspace`: a timer that reads the stacks of one process tree through
//! `process::ProcessMemory` (py-spy style, no BPF needed; every OS). `bpf`: Linux only.

#[cfg(target_os = "linux")]
pub mod bpf;
#[cfg(target_os = "linux")]
pub mod bpf_frames;
#[cfg(target_os = "linux")]
pub mod bpf_layout;
#[cfg(target_os = "linux")]
pub mod bpf_registry;
pub mod exit_sweep;
pub mod registry;
pub mod source;
pub mod stats;
pub mod userspace;

pub use userspace::{EndReason, RunSummary, SamplerConfig, UserspaceSampler};
