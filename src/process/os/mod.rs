//! A target process as the OS shows it, off Linux: the functions `proc.rs` gives on Linux
//! (existence, executable, command line, start time, threads and whether they run, children),
//! plus what Linux reads from `/proc/PID/maps` in another shape (`images`: each loaded binary
//! and where it was loaded; FreeBSD, whose binaries are ELF, gives `maps` as Linux does),
//! `ProcessMemory` and `Paused`. One file per OS; everything here is shared by them.
//!
//! Thread ids are the ones CPython stores in `PyThreadState.native_thread_id` on that OS, so
//! stacks and threads pair up as on Linux: macOS `pthread_threadid_np` (the mach thread's
//! `thread_identifier_info.thread_id`), Windows `GetCurrentThreadId`, FreeBSD
//! `pthread_getthreadid_np` (the LWP id). They are compared as `u32`, as on Linux: macOS's are
//! 64-bit, and both sides are cut the same way.

use std::path::PathBuf;

use crate::model::Addr;

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::*;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process {pid} not found (no such process)")]
    NotFound { pid: u32 },
    #[error("PID {pid} is a kernel thread ({name}), not a Python process")]
    KernelThread { pid: u32, name: String },
    #[error("permission denied reading the {what} of process {pid}: {}", why_denied(*pid))]
    Permission { pid: u32, what: &'static str },
    #[error("reading the {what} of process {pid}: {source}")]
    Io {
        pid: u32,
        what: &'static str,
        source: std::io::Error,
    },
}

impl ProcError {
    /// An OS error from asking about `what` of `pid`, by kind.
    pub(crate) fn from_io(pid: u32, what: &'static str, source: std::io::Error) -> ProcError {
        match source.kind() {
            std::io::ErrorKind::NotFound => ProcError::NotFound { pid },
            std::io::ErrorKind::PermissionDenied => ProcError::Permission { pid, what },
            _ => ProcError::Io { pid, what, source },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("cannot pause process {pid}: {}", why_no_ptrace(*pid))]
    Permission { pid: u32 },
    #[error("cannot pause process {pid}: {source}")]
    Io { pid: u32, source: std::io::Error },
}

/// A binary loaded in a target (macOS, Windows): its path as the target sees it, and the
/// address it was loaded at (Mach-O: its header; PE: the module base).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub path: PathBuf,
    pub base: Addr,
}

/// Thread ids in another PID namespace: Linux only. Elsewhere a thread has one id.
pub fn ns_tids(_pid: u32, _tid: u32) -> Result<Option<Vec<u32>>, ProcError> {
    Ok(None)
}

/// The file of a mapping, as we can open it: the path itself (no container roots to go
/// through off Linux).
pub fn file_in_maps(_pid: u32, _maps: &[super::maps::MapRange], path: &std::path::Path) -> PathBuf {
    path.to_path_buf()
}

/// Direct and indirect children of `pid` (for `--subprocesses`), from `children` of each.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    // Bounded: a pid is added once, and there are finitely many.
    while let Some(p) = frontier.pop() {
        for child in children(p) {
            if child != pid && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}
