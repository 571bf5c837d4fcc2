//! Sources of samples. `userspace`: a timer that reads the stacks of one process tree with
//! `process_vm_readv` (py-spy style, no BPF needed).

pub mod bpf;
pub mod bpf_layout;
pub mod bpf_registry;
pub mod exit_sweep;
pub mod stats;
pub mod userspace;

pub use userspace::{EndReason, RunSummary, SamplerConfig, UserspaceSampler};
