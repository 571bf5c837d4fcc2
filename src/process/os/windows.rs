//! Windows: a process's memory through `ReadProcessMemory` on a handle opened once
//! (`PROCESS_VM_READ`), its threads, modules and children from toolhelp snapshots, pausing by
//! `SuspendThread` on each thread.
//!
//! Not known on Windows in this step: whether a thread is running (every thread counts as
//! active: `--idle` changes nothing), its name from the OS (names come from `threading`), the
//! command line (it lives in the target's PEB).
//!
//! All unsafe code of this file is FFI into kernel32, each buffer sized here.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ACCESS_DENIED, ERROR_INVALID_PARAMETER, FILETIME, HANDLE,
    INVALID_HANDLE_VALUE, STILL_ACTIVE,
};
use windows_sys::Win32::System::Diagnostics::Debug::ReadProcessMemory;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Module32FirstW, Module32NextW, Process32FirstW, Process32NextW,
    Thread32First, Thread32Next, MODULEENTRY32W, PROCESSENTRY32W, TH32CS_SNAPMODULE,
    TH32CS_SNAPMODULE32, TH32CS_SNAPPROCESS, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, OpenThread, QueryFullProcessImageNameW,
    ResumeThread, SuspendThread, PROCESS_NAME_WIN32, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_VM_READ, THREAD_SUSPEND_RESUME,
};

use super::{LoadedImage, PauseError, ProcError};
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory};

/// Most entries taken from one snapshot.
const MAX_ENTRIES: usize = 65_536;

/// A kernel handle, closed when dropped.
#[derive(Debug)]
struct Handle(HANDLE);

// SAFETY: a Windows kernel handle is a process-wide value; any thread may use or close it.
unsafe impl Send for Handle {}
// SAFETY: as above; the calls made through it do not mutate shared state of ours.
unsafe impl Sync for Handle {}

impl Handle {
    fn new(raw: HANDLE) -> std::io::Result<Handle> {
        if raw.is_null() || raw == INVALID_HANDLE_VALUE {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Handle(raw))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: we own the handle and close it once.
        unsafe { CloseHandle(self.0) };
    }
}

fn open_process(pid: u32, access: u32) -> std::io::Result<Handle> {
    // SAFETY: no pointers.
    Handle::new(unsafe { OpenProcess(access, 0, pid) })
}

/// OpenProcess says "invalid parameter" for a pid that names no process.
fn classify(e: std::io::Error) -> std::io::Error {
    match e.raw_os_error().map(|c| c as u32) {
        Some(ERROR_INVALID_PARAMETER) => std::io::ErrorKind::NotFound.into(),
        Some(ERROR_ACCESS_DENIED) => std::io::ErrorKind::PermissionDenied.into(),
        _ => e,
    }
}

/// Live memory of a process, read with `ReadProcessMemory`.
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    pid: u32,
    handle: Option<Arc<Handle>>,
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        let handle = open_process(pid, PROCESS_VM_READ | PROCESS_QUERY_LIMITED_INFORMATION);
        ProcessMemory {
            pid,
            handle: handle.ok().map(Arc::new),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl RemoteMemory for ProcessMemory {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let pid = self.pid;
        let Some(handle) = &self.handle else {
            return Err(match exists(pid) {
                true => MemoryError::Permission { pid },
                false => MemoryError::Gone { pid },
            });
        };
        if buf.is_empty() {
            return Ok(());
        }
        let mut read = 0usize;
        // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`, owned mutably by us
        // for the call; `addr` is only interpreted in the target's address space.
        let ok = unsafe {
            ReadProcessMemory(
                handle.0,
                addr as usize as *const _,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut read,
            )
        };
        if ok != 0 && read == buf.len() {
            return Ok(());
        }
        if !exists(pid) {
            return Err(MemoryError::Gone { pid });
        }
        Err(MemoryError::Read {
            pid,
            addr,
            len: buf.len(),
            kind: std::io::ErrorKind::UnexpectedEof,
        })
    }
}

pub fn exists(pid: u32) -> bool {
    let Ok(handle) = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION) else {
        return false;
    };
    let mut code = 0u32;
    // SAFETY: `code` is a valid out-pointer.
    let ok = unsafe { GetExitCodeProcess(handle.0, &mut code) };
    ok != 0 && code == STILL_ACTIVE as u32
}

/// The executable's path (`QueryFullProcessImageNameW`).
pub fn exe(pid: u32) -> Result<PathBuf, ProcError> {
    let err = |e| ProcError::from_io(pid, "executable path", classify(e));
    let handle = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).map_err(err)?;
    let mut buf = vec![0u16; 32_768];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` u16s; `len` is in/out.
    let ok = unsafe {
        QueryFullProcessImageNameW(handle.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
    };
    if ok == 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(PathBuf::from(String::from_utf16_lossy(
        &buf[..len as usize],
    )))
}

/// Creation time (100 ns units since 1601): with the pid it identifies a process across
/// pid reuse.
pub fn start_time(pid: u32) -> Result<u64, ProcError> {
    let err = |e| ProcError::from_io(pid, "times", classify(e));
    let handle = open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION).map_err(err)?;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: four valid out-pointers.
    let ok =
        unsafe { GetProcessTimes(handle.0, &mut created, &mut exited, &mut kernel, &mut user) };
    if ok == 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok((created.dwHighDateTime as u64) << 32 | created.dwLowDateTime as u64)
}

pub fn comm(pid: u32) -> Result<String, ProcError> {
    let exe = exe(pid)?;
    Ok(exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

pub fn thread_comm(_pid: u32, _tid: u32) -> Option<String> {
    None
}

/// Not read on Windows yet (it is in the target's PEB): empty.
pub fn cmdline(_pid: u32) -> Result<Vec<String>, ProcError> {
    Ok(Vec::new())
}

/// Walk a toolhelp snapshot: `first`/`next` fill an entry of type `E` whose first field is
/// its size; `keep` maps each entry to what we want.
fn snapshot<E: Default, T>(
    flags: u32,
    pid: u32,
    first: unsafe extern "system" fn(HANDLE, *mut E) -> i32,
    next: unsafe extern "system" fn(HANDLE, *mut E) -> i32,
    set_size: impl Fn(&mut E),
    mut keep: impl FnMut(&E) -> Option<T>,
) -> std::io::Result<Vec<T>> {
    // SAFETY: no pointers.
    let snap = Handle::new(unsafe { CreateToolhelp32Snapshot(flags, pid) })?;
    let mut entry = E::default();
    set_size(&mut entry);
    let mut out = Vec::new();
    // SAFETY: `entry` is a valid, sized entry for the snapshot kind.
    let mut ok = unsafe { first(snap.0, &mut entry) };
    while ok != 0 && out.len() < MAX_ENTRIES {
        out.extend(keep(&entry));
        // SAFETY: as above.
        ok = unsafe { next(snap.0, &mut entry) };
    }
    Ok(out)
}

/// Thread ids of the process (`GetCurrentThreadId` values, as CPython stores them).
pub fn threads(pid: u32) -> Result<Vec<u32>, ProcError> {
    let mut tids = snapshot(
        TH32CS_SNAPTHREAD,
        0,
        Thread32First,
        Thread32Next,
        |e: &mut THREADENTRY32| e.dwSize = std::mem::size_of::<THREADENTRY32>() as u32,
        |e| (e.th32OwnerProcessID == pid).then_some(e.th32ThreadID),
    )
    .map_err(|e| ProcError::from_io(pid, "threads", e))?;
    if tids.is_empty() && !exists(pid) {
        return Err(ProcError::NotFound { pid });
    }
    tids.sort_unstable();
    Ok(tids)
}

/// Unknown on Windows in this step (it needs `NtQuerySystemInformation`): every thread
/// counts as running, so no thread is dropped as idle.
pub fn thread_is_running(_pid: u32, _tid: u32) -> bool {
    true
}

/// Every thread (see `thread_is_running`).
pub fn running_threads(pid: u32) -> Vec<u32> {
    threads(pid).unwrap_or_default()
}

/// The parent of `pid` (`--subprocesses` trees), from a process snapshot. Windows keeps the
/// id of a parent that has exited (and may have been reused): the caller stops where the
/// chain leaves the tree it knows.
pub fn parent(pid: u32) -> Option<u32> {
    snapshot(
        TH32CS_SNAPPROCESS,
        0,
        Process32FirstW,
        Process32NextW,
        |e: &mut PROCESSENTRY32W| e.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32,
        |e| (e.th32ProcessID == pid).then_some(e.th32ParentProcessID),
    )
    .ok()?
    .into_iter()
    .next()
}

pub fn children(pid: u32) -> Vec<u32> {
    snapshot(
        TH32CS_SNAPPROCESS,
        0,
        Process32FirstW,
        Process32NextW,
        |e: &mut PROCESSENTRY32W| e.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32,
        |e| (e.th32ParentProcessID == pid).then_some(e.th32ProcessID),
    )
    .unwrap_or_default()
}

/// The modules (exe and DLLs) loaded in `pid`, with their base addresses.
pub fn images(pid: u32) -> Result<Vec<LoadedImage>, ProcError> {
    snapshot(
        TH32CS_SNAPMODULE | TH32CS_SNAPMODULE32,
        pid,
        Module32FirstW,
        Module32NextW,
        |e: &mut MODULEENTRY32W| e.dwSize = std::mem::size_of::<MODULEENTRY32W>() as u32,
        |e| {
            let len = e
                .szExePath
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(e.szExePath.len());
            Some(LoadedImage {
                path: PathBuf::from(String::from_utf16_lossy(&e.szExePath[..len])),
                base: e.modBaseAddr as usize as Addr,
            })
        },
    )
    .map_err(|e| ProcError::from_io(pid, "modules", classify(e)))
}

/// While alive, every thread of the process that existed at `pause` time is suspended;
/// dropping it resumes them. Windows keeps a suspend count after its caller dies: a profiler
/// killed during a pause leaves those threads suspended (a pause lasts one sample; Ctrl-C
/// ends a run between samples).
pub struct Paused {
    threads: Vec<Handle>,
}

impl Paused {
    pub fn pause(pid: u32) -> Result<Paused, PauseError> {
        let tids = threads(pid).map_err(|e| PauseError::Io {
            pid,
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut paused = Paused {
            threads: Vec::with_capacity(tids.len()),
        };
        for tid in tids {
            // SAFETY: no pointers.
            let Ok(thread) = Handle::new(unsafe { OpenThread(THREAD_SUSPEND_RESUME, 0, tid) })
            else {
                // A thread that ended since the snapshot; one we may not suspend is refused.
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
                    return Err(PauseError::Permission { pid });
                }
                continue;
            };
            // SAFETY: a thread handle with THREAD_SUSPEND_RESUME.
            if unsafe { SuspendThread(thread.0) } != u32::MAX {
                paused.threads.push(thread);
            }
        }
        Ok(paused)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for thread in &self.threads {
            // SAFETY: each handle was suspended once by `pause`.
            unsafe { ResumeThread(thread.0) };
        }
    }
}

pub fn why_denied(_pid: u32) -> String {
    "the process belongs to another user or is elevated: run the profiler as Administrator".into()
}

pub fn why_no_ptrace(pid: u32) -> String {
    why_denied(pid)
}
