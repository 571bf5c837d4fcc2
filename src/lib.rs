//! pyspy-bpf: a sampling profiler for CPython on Linux. See ARCHITECTURE.md for the path of
//! one sample through these modules.
#![deny(unsafe_code)]

pub mod agent;
pub mod bpf;
pub mod byte_lru;
pub mod cli;
pub mod diff;
pub mod escape;
pub mod frames;
pub mod input;
pub mod model;
pub mod native;
pub mod output;
pub mod process;
pub mod profile;
pub mod python;
pub mod safe_fs;
pub mod sampler;
pub mod top;
