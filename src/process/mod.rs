//! Everything about a target process that comes from the kernel: `/proc` files, its memory
//! mappings, its binaries (read through `/proc/PID/root` so processes in containers work)
//! and its memory, and its thread ids in its own PID namespace (`pidns.rs`).

pub mod access;
pub mod elf;
pub mod image;
pub mod kstack;
pub mod maps;
pub mod memory;
pub mod own_heap;
pub mod pause;
pub mod pidns;
pub mod priority;
pub mod proc;
pub mod regs;
pub mod version_scan;

pub use memory::{MemoryError, ProcessMemory, RemoteMemory};
