//! What the CPython readers ask the OS about a process beside its memory: its executable,
//! command line and start time, its threads and their names, its PID namespace, and (Linux,
//! FreeBSD) its mappings, entry point and the interpreter's binary. `LiveProcess` asks the OS;
//! `RecordingFacts` remembers the answers and `RecordedFacts` gives them back, as
//! `RecordingMemory` and `ReplayMemory` do for memory, so that a snapshot test attaches to and
//! reads a recording through the same code as a live process.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::pidns::TidNamespace;
use super::proc::{self, ProcError};

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
use super::elf::{ElfError, ElfImage};
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
use super::maps::MapRange;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
use std::{collections::HashMap, path::Path, sync::Arc};

/// Which symbols `binary_image` keeps, and whether a binary with these is worth a scan for
/// version literals (the arguments of `ElfImage::load_cached`).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
pub type ImageQuery = (
    &'static [&'static str],
    fn(&HashMap<String, (u64, u64)>) -> bool,
);

/// The OS's answers about one process. Implementations must not panic on any input.
pub trait ProcessFacts {
    fn pid(&self) -> u32;
    /// Identifies the process together with its pid (see `proc::start_time`).
    fn start_time(&self) -> Result<u64, ProcError>;
    /// The executable's path as the target sees it.
    fn exe(&self) -> Result<PathBuf, ProcError>;
    fn cmdline(&self) -> Result<Vec<String>, ProcError>;
    /// The process's thread ids (the host's), sorted.
    fn threads(&self) -> Result<Vec<u32>, ProcError>;
    /// The OS's name of thread `tid` (`comm`).
    fn thread_comm(&self, tid: u32) -> Option<String>;
    /// Whether thread `tid` is running or runnable now (what py-spy calls active).
    fn thread_is_running(&self, tid: u32) -> bool;
    fn exists(&self) -> bool;
    /// How the process's own thread ids translate to the host's.
    fn tid_namespace(&self) -> Result<TidNamespace, ProcError>;
    /// The runtime address of the executable's entry point (`AT_ENTRY`).
    #[cfg(target_os = "linux")]
    fn entry_point(&self) -> Result<u64, ProcError>;
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn maps(&self) -> Result<Vec<MapRange>, ProcError>;
    /// The ELF image of `binary` (a path as the target sees it), found through `maps` where
    /// it is mapped, or through the executable's own link when `maps` is `None`.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn binary_image(
        &self,
        binary: &Path,
        maps: Option<&[MapRange]>,
        query: ImageQuery,
    ) -> Result<Arc<ElfImage>, ElfError>;
}

/// A process as the OS sees it now.
#[derive(Debug, Clone, Copy)]
pub struct LiveProcess {
    pid: u32,
}

impl LiveProcess {
    pub fn new(pid: u32) -> Self {
        LiveProcess { pid }
    }
}

impl ProcessFacts for LiveProcess {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn start_time(&self) -> Result<u64, ProcError> {
        proc::start_time(self.pid)
    }
    fn exe(&self) -> Result<PathBuf, ProcError> {
        proc::exe(self.pid)
    }
    fn cmdline(&self) -> Result<Vec<String>, ProcError> {
        proc::cmdline(self.pid)
    }
    fn threads(&self) -> Result<Vec<u32>, ProcError> {
        proc::threads(self.pid)
    }
    fn thread_comm(&self, tid: u32) -> Option<String> {
        proc::thread_comm(self.pid, tid)
    }
    fn thread_is_running(&self, tid: u32) -> bool {
        proc::thread_is_running(self.pid, tid)
    }
    fn exists(&self) -> bool {
        proc::exists(self.pid)
    }
    fn tid_namespace(&self) -> Result<TidNamespace, ProcError> {
        TidNamespace::of(self.pid)
    }
    #[cfg(target_os = "linux")]
    fn entry_point(&self) -> Result<u64, ProcError> {
        proc::entry_point(self.pid)
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn maps(&self) -> Result<Vec<MapRange>, ProcError> {
        proc::maps(self.pid)
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn binary_image(
        &self,
        binary: &Path,
        maps: Option<&[MapRange]>,
        (wanted, scan_versions_if): ImageQuery,
    ) -> Result<Arc<ElfImage>, ElfError> {
        let local = match maps {
            Some(maps) => proc::file_in_maps(self.pid, maps, binary),
            None if cfg!(target_os = "linux") => PathBuf::from(format!("/proc/{}/exe", self.pid)),
            None => binary.to_path_buf(),
        };
        ElfImage::load_cached(&local, wanted, scan_versions_if)
    }
}

impl<T: ProcessFacts + ?Sized> ProcessFacts for &T {
    fn pid(&self) -> u32 {
        (**self).pid()
    }
    fn start_time(&self) -> Result<u64, ProcError> {
        (**self).start_time()
    }
    fn exe(&self) -> Result<PathBuf, ProcError> {
        (**self).exe()
    }
    fn cmdline(&self) -> Result<Vec<String>, ProcError> {
        (**self).cmdline()
    }
    fn threads(&self) -> Result<Vec<u32>, ProcError> {
        (**self).threads()
    }
    fn thread_comm(&self, tid: u32) -> Option<String> {
        (**self).thread_comm(tid)
    }
    fn thread_is_running(&self, tid: u32) -> bool {
        (**self).thread_is_running(tid)
    }
    fn exists(&self) -> bool {
        (**self).exists()
    }
    fn tid_namespace(&self) -> Result<TidNamespace, ProcError> {
        (**self).tid_namespace()
    }
    #[cfg(target_os = "linux")]
    fn entry_point(&self) -> Result<u64, ProcError> {
        (**self).entry_point()
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn maps(&self) -> Result<Vec<MapRange>, ProcError> {
        (**self).maps()
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn binary_image(
        &self,
        binary: &Path,
        maps: Option<&[MapRange]>,
        query: ImageQuery,
    ) -> Result<Arc<ElfImage>, ElfError> {
        (**self).binary_image(binary, maps, query)
    }
}

/// The answers a process gave, as a snapshot fixture keeps them (JSON). A question that was
/// not asked while recording fails on replay as if the process had no answer. The process
/// is taken to be in our own PID namespace.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct RecordedFacts {
    pub pid: u32,
    pub start_time: Option<u64>,
    pub exe: Option<PathBuf>,
    pub cmdline: Option<Vec<String>>,
    pub threads: Option<Vec<u32>>,
    pub thread_names: BTreeMap<u32, String>,
    /// Whether each thread asked about was running (one that was not asked is not).
    #[serde(default)]
    pub running: BTreeMap<u32, bool>,
    #[cfg(target_os = "linux")]
    pub entry_point: Option<u64>,
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    pub maps: Option<Vec<MapRange>>,
    /// The images asked for, by the binary's path as the target sees it.
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    pub images: BTreeMap<PathBuf, ElfImage>,
}

fn not_recorded(pid: u32, what: &'static str) -> ProcError {
    ProcError::Io {
        pid,
        what,
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not in the recording"),
    }
}

impl ProcessFacts for RecordedFacts {
    fn pid(&self) -> u32 {
        self.pid
    }
    fn start_time(&self) -> Result<u64, ProcError> {
        self.start_time.ok_or(not_recorded(self.pid, "stat"))
    }
    fn exe(&self) -> Result<PathBuf, ProcError> {
        self.exe.clone().ok_or(not_recorded(self.pid, "exe"))
    }
    fn cmdline(&self) -> Result<Vec<String>, ProcError> {
        self.cmdline
            .clone()
            .ok_or(not_recorded(self.pid, "cmdline"))
    }
    fn threads(&self) -> Result<Vec<u32>, ProcError> {
        self.threads.clone().ok_or(not_recorded(self.pid, "task"))
    }
    fn thread_comm(&self, tid: u32) -> Option<String> {
        self.thread_names.get(&tid).cloned()
    }
    fn thread_is_running(&self, tid: u32) -> bool {
        self.running.get(&tid).copied().unwrap_or(false)
    }
    fn exists(&self) -> bool {
        true
    }
    fn tid_namespace(&self) -> Result<TidNamespace, ProcError> {
        Ok(TidNamespace::same(self.pid))
    }
    #[cfg(target_os = "linux")]
    fn entry_point(&self) -> Result<u64, ProcError> {
        self.entry_point.ok_or(not_recorded(self.pid, "auxv"))
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn maps(&self) -> Result<Vec<MapRange>, ProcError> {
        self.maps.clone().ok_or(not_recorded(self.pid, "maps"))
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn binary_image(
        &self,
        binary: &Path,
        _maps: Option<&[MapRange]>,
        _query: ImageQuery,
    ) -> Result<Arc<ElfImage>, ElfError> {
        match self.images.get(binary) {
            Some(image) => Ok(Arc::new(image.clone())),
            None => Err(ElfError::Io {
                path: binary.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not in the recording"),
            }),
        }
    }
}

/// Wraps other facts and remembers every answer given, for `RecordedFacts`.
pub struct RecordingFacts<F> {
    inner: F,
    seen: RefCell<RecordedFacts>,
}

impl<F: ProcessFacts> RecordingFacts<F> {
    pub fn new(inner: F) -> Self {
        let seen = RecordedFacts {
            pid: inner.pid(),
            ..RecordedFacts::default()
        };
        RecordingFacts {
            inner,
            seen: RefCell::new(seen),
        }
    }

    /// Everything answered so far.
    pub fn into_recorded(self) -> RecordedFacts {
        self.seen.into_inner()
    }

    /// `answer`, remembered by `keep` when it is one.
    fn keep<T: Clone, E>(
        &self,
        answer: Result<T, E>,
        keep: impl FnOnce(&mut RecordedFacts, T),
    ) -> Result<T, E> {
        if let Ok(value) = &answer {
            keep(&mut self.seen.borrow_mut(), value.clone());
        }
        answer
    }
}

impl<F: ProcessFacts> ProcessFacts for RecordingFacts<F> {
    fn pid(&self) -> u32 {
        self.inner.pid()
    }
    fn start_time(&self) -> Result<u64, ProcError> {
        self.keep(self.inner.start_time(), |r, v| r.start_time = Some(v))
    }
    fn exe(&self) -> Result<PathBuf, ProcError> {
        self.keep(self.inner.exe(), |r, v| r.exe = Some(v))
    }
    fn cmdline(&self) -> Result<Vec<String>, ProcError> {
        self.keep(self.inner.cmdline(), |r, v| r.cmdline = Some(v))
    }
    fn threads(&self) -> Result<Vec<u32>, ProcError> {
        self.keep(self.inner.threads(), |r, v| r.threads = Some(v))
    }
    fn thread_comm(&self, tid: u32) -> Option<String> {
        let name = self.inner.thread_comm(tid)?;
        self.seen
            .borrow_mut()
            .thread_names
            .insert(tid, name.clone());
        Some(name)
    }
    fn thread_is_running(&self, tid: u32) -> bool {
        let running = self.inner.thread_is_running(tid);
        self.seen.borrow_mut().running.insert(tid, running);
        running
    }
    fn exists(&self) -> bool {
        self.inner.exists()
    }
    /// A recording replays as a process of our own namespace: one of another cannot be made.
    fn tid_namespace(&self) -> Result<TidNamespace, ProcError> {
        let ns = self.inner.tid_namespace()?;
        match ns.is_nested() {
            false => Ok(ns),
            true => Err(ProcError::Io {
                pid: self.pid(),
                what: "status",
                source: std::io::Error::other(
                    "a process in another PID namespace cannot be recorded",
                ),
            }),
        }
    }
    #[cfg(target_os = "linux")]
    fn entry_point(&self) -> Result<u64, ProcError> {
        self.keep(self.inner.entry_point(), |r, v| r.entry_point = Some(v))
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn maps(&self) -> Result<Vec<MapRange>, ProcError> {
        self.keep(self.inner.maps(), |r, v| r.maps = Some(v))
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    fn binary_image(
        &self,
        binary: &Path,
        maps: Option<&[MapRange]>,
        query: ImageQuery,
    ) -> Result<Arc<ElfImage>, ElfError> {
        let image = self.inner.binary_image(binary, maps, query)?;
        let mut kept = (*image).clone();
        kept.path = PathBuf::new();
        self.seen
            .borrow_mut()
            .images
            .insert(binary.to_path_buf(), kept);
        Ok(image)
    }
}
