//! Everything about a target process that comes from the OS: its threads, images, executable
//! and memory, and pausing it. On Linux: `/proc` files, its memory mappings, its binaries (read
//! through `/proc/PID/root` so processes in containers work), `process_vm_readv`, ptrace, and
//! its thread ids in its own PID namespace (`pidns.rs`).
//!
//! Off Linux, `proc` is `os/`: the same functions and types, from the OS's own interfaces
//! (macOS: mach and libproc; Windows: toolhelp snapshots and `ReadProcessMemory`; FreeBSD:
//! sysctl and ptrace), so the CPython readers and the user-space sampler do not care where
//! they run. `pause` and `access` are its pausing and permission hints under their Linux names.

#[cfg(target_os = "linux")]
pub mod access;
pub mod cgroup;
pub mod details;
#[cfg(unix)]
pub mod elf;
pub mod facts;
pub mod image;
pub mod kstack;
pub mod lineage;
pub mod maps;
pub mod memory;
#[cfg(target_os = "linux")]
pub mod own_heap;
#[cfg(target_os = "linux")]
pub mod pause;
pub mod pidns;
#[cfg(target_os = "linux")]
pub mod priority;
#[cfg(target_os = "linux")]
pub mod proc;
#[cfg(target_os = "linux")]
pub mod regs;
pub mod version_scan;

#[cfg(not(target_os = "linux"))]
#[path = "os/mod.rs"]
pub mod proc;

/// Pausing a process (`--blocking`): the OS's own way, in `os/`.
#[cfg(not(target_os = "linux"))]
pub mod pause {
    pub use super::proc::{PauseError, Paused};
}

/// Why the OS refused us a process: a hint for the error message.
#[cfg(not(target_os = "linux"))]
pub mod access {
    pub use super::proc::{why_denied, why_no_ptrace};
}

pub use facts::{LiveProcess, ProcessFacts};
pub use memory::{MemoryError, ProcessMemory, RemoteMemory};
