//! FreeBSD: a process's facts and threads from `sysctl(KERN_PROC)` (one `kinfo_proc` per
//! thread), its mappings from `kinfo_getvmmap` (its binaries are ELF, read as on Linux), and
//! its memory with `ptrace(PT_IO)`.
//!
//! `PT_IO` reads only a process we trace and have stopped: the user-space sampler pauses the
//! target for each sample here (as `--blocking` does elsewhere), and a read outside a pause
//! attaches, reads and detaches on its own (slow, but only done while attaching).
//!
//! All unsafe code of this file is FFI into libc, each buffer sized here.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::Mutex;

use super::{PauseError, ProcError};
use crate::model::Addr;
use crate::process::maps::MapRange;
use crate::process::memory::{MemoryError, RemoteMemory};

/// Most threads (or processes) taken from one sysctl.
const MAX_ENTRIES: usize = 65_536;

/// Processes we hold stopped under ptrace now (`Paused`), which `PT_IO` can read directly.
static ATTACHED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn sysctl_bytes(mib: &[libc::c_int]) -> std::io::Result<Vec<u8>> {
    let mut size = 0usize;
    // SAFETY: a size query: no output buffer.
    let r = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as u32,
            std::ptr::null_mut(),
            &mut size,
            std::ptr::null(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Room for what appeared between the two calls.
    let mut buf = vec![0u8; size + size / 4 + 4096];
    let mut size = buf.len();
    // SAFETY: `buf` is `size` writable bytes.
    let r = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as u32,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(size);
    Ok(buf)
}

/// The `kinfo_proc` records of `mib` (whole records only, at most `MAX_ENTRIES`).
fn kinfo_procs(mib: &[libc::c_int]) -> std::io::Result<Vec<libc::kinfo_proc>> {
    let bytes = sysctl_bytes(mib)?;
    let size = std::mem::size_of::<libc::kinfo_proc>();
    Ok(bytes
        .chunks_exact(size)
        .take(MAX_ENTRIES)
        // SAFETY: each chunk is one whole kinfo_proc as the kernel wrote it (plain data);
        // read_unaligned because a Vec<u8> promises no alignment.
        .map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<libc::kinfo_proc>()) })
        .collect())
}

/// One record per thread of `pid`.
fn thread_records(pid: u32) -> Result<Vec<libc::kinfo_proc>, ProcError> {
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PID | libc::KERN_PROC_INC_THREAD,
        pid as libc::c_int,
    ];
    let records = kinfo_procs(&mib).map_err(|e| ProcError::from_io(pid, "threads", e))?;
    if records.is_empty() {
        return Err(ProcError::NotFound { pid });
    }
    Ok(records)
}

fn c_chars(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn exists(pid: u32) -> bool {
    // SAFETY: signal 0 checks only.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn exe(pid: u32) -> Result<PathBuf, ProcError> {
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PATHNAME,
        pid as libc::c_int,
    ];
    let mut bytes =
        sysctl_bytes(&mib).map_err(|e| ProcError::from_io(pid, "executable path", e))?;
    bytes.truncate(bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()));
    Ok(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn cmdline(pid: u32) -> Result<Vec<String>, ProcError> {
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_ARGS,
        pid as libc::c_int,
    ];
    let bytes = sysctl_bytes(&mib).map_err(|e| ProcError::from_io(pid, "arguments", e))?;
    Ok(bytes
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect())
}

pub fn comm(pid: u32) -> Result<String, ProcError> {
    Ok(c_chars(&thread_records(pid)?[0].ki_comm))
}

pub fn thread_comm(pid: u32, tid: u32) -> Option<String> {
    let records = thread_records(pid).ok()?;
    let t = records.iter().find(|k| k.ki_tid as u32 == tid)?;
    Some(c_chars(&t.ki_tdname)).filter(|n| !n.is_empty())
}

/// Start time in microseconds since the epoch.
pub fn start_time(pid: u32) -> Result<u64, ProcError> {
    let start = thread_records(pid)?[0].ki_start;
    Ok(start.tv_sec as u64 * 1_000_000 + start.tv_usec as u64)
}

/// Thread (LWP) ids of the process.
pub fn threads(pid: u32) -> Result<Vec<u32>, ProcError> {
    let mut tids: Vec<u32> = thread_records(pid)?
        .iter()
        .map(|k| k.ki_tid as u32)
        .collect();
    tids.sort_unstable();
    tids.dedup();
    Ok(tids)
}

/// The threads that are running or runnable (`SRUN`): one sysctl.
pub fn running_threads(pid: u32) -> Vec<u32> {
    thread_records(pid)
        .map(|r| {
            r.iter()
                .filter(|k| k.ki_stat == libc::SRUN)
                .map(|k| k.ki_tid as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the thread is running (`running_threads`: prefer it for more than one thread).
pub fn thread_is_running(pid: u32, tid: u32) -> bool {
    running_threads(pid).contains(&tid)
}

/// The parent of `pid` (`--subprocesses` trees): `ki_ppid` of its process entry.
pub fn parent(pid: u32) -> Option<u32> {
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PID,
        pid as libc::c_int,
    ];
    kinfo_procs(&mib).ok()?.first().map(|k| k.ki_ppid as u32)
}

pub fn children(pid: u32) -> Vec<u32> {
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PROC, 0];
    kinfo_procs(&mib)
        .unwrap_or_default()
        .iter()
        .filter(|k| k.ki_ppid as u32 == pid)
        .map(|k| k.ki_pid as u32)
        .collect()
}

/// The process's mappings, in the shape of Linux's `/proc/PID/maps`.
pub fn maps(pid: u32) -> Result<Vec<MapRange>, ProcError> {
    let mut count: libc::c_int = 0;
    // SAFETY: `count` is a valid out-pointer; the result is malloc'ed by libutil.
    let entries = unsafe { libc::kinfo_getvmmap(pid as libc::pid_t, &mut count) };
    if entries.is_null() {
        return Err(ProcError::from_io(
            pid,
            "memory map",
            std::io::Error::last_os_error(),
        ));
    }
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for i in 0..count.max(0) as usize {
        // SAFETY: libutil returned `count` entries at `entries`.
        let e = unsafe { &*entries.add(i) };
        let path: Vec<libc::c_char> = e.kve_path.iter().flatten().copied().collect();
        let path = c_chars(&path);
        out.push(MapRange {
            start: e.kve_start as Addr,
            end: e.kve_end as Addr,
            readable: e.kve_protection & libc::KVME_PROT_READ != 0,
            writable: e.kve_protection & libc::KVME_PROT_WRITE != 0,
            executable: e.kve_protection & libc::KVME_PROT_EXEC != 0,
            offset: e.kve_offset,
            inode: 0,
            pathname: (e.kve_type == libc::KVME_TYPE_VNODE && !path.is_empty())
                .then(|| PathBuf::from(path)),
        });
    }
    // SAFETY: allocated by libutil with malloc, freed once.
    unsafe { libc::free(entries.cast()) };
    Ok(out)
}

/// Memory of a process, read with `ptrace(PT_IO)` (see the module's comment).
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pid: u32,
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        ProcessMemory { pid }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn pt_io(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let pid = self.pid;
        let mut desc = libc::ptrace_io_desc {
            piod_op: libc::PIOD_READ_D,
            piod_offs: addr as usize as *mut libc::c_void,
            piod_addr: buf.as_mut_ptr().cast(),
            piod_len: buf.len(),
        };
        // SAFETY: `desc` points at `buf`, owned mutably for the call; `piod_offs` is only
        // interpreted in the target.
        let r = unsafe {
            libc::ptrace(
                libc::PT_IO,
                pid as libc::pid_t,
                (&mut desc as *mut libc::ptrace_io_desc).cast(),
                0,
            )
        };
        if r == 0 && desc.piod_len == buf.len() {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::ESRCH) if !exists(pid) => MemoryError::Gone { pid },
            Some(libc::EPERM) => MemoryError::Permission { pid },
            _ => MemoryError::Read {
                pid,
                addr,
                len: buf.len(),
                kind: std::io::ErrorKind::UnexpectedEof,
            },
        })
    }
}

impl RemoteMemory for ProcessMemory {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        let held = ATTACHED
            .lock()
            .map(|a| a.contains(&self.pid))
            .unwrap_or(false);
        if held {
            return self.pt_io(addr, buf);
        }
        let pid = self.pid;
        let _paused = Paused::pause(pid).map_err(|e| match e {
            PauseError::Permission { .. } => MemoryError::Permission { pid },
            PauseError::Io { .. } if !exists(pid) => MemoryError::Gone { pid },
            PauseError::Io { source, .. } => MemoryError::Read {
                pid,
                addr,
                len: buf.len(),
                kind: source.kind(),
            },
        })?;
        self.pt_io(addr, buf)
    }
}

/// While alive, the process is attached with ptrace and stopped; dropping it detaches (which
/// resumes it). If the profiler is killed (SIGKILL) while attached, FreeBSD kills the target
/// too unless `kern.kill_on_debugger_exit=0`: untried here, and the reason a pause lasts one
/// sample (SIGINT and SIGTERM end a run between samples).
pub struct Paused {
    pid: u32,
}

impl Paused {
    pub fn pause(pid: u32) -> Result<Paused, PauseError> {
        // SAFETY: no pointers.
        let r =
            unsafe { libc::ptrace(libc::PT_ATTACH, pid as libc::pid_t, std::ptr::null_mut(), 0) };
        if r != 0 {
            let source = std::io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM) => PauseError::Permission { pid },
                _ => PauseError::Io { pid, source },
            });
        }
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; we are now the tracer, so waitpid reports
        // the stop PT_ATTACH caused.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if let Ok(mut attached) = ATTACHED.lock() {
            attached.push(pid);
        }
        Ok(Paused { pid })
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Ok(mut attached) = ATTACHED.lock() {
            attached.retain(|&p| p != self.pid);
        }
        // SAFETY: no pointers; address 1 means "resume where it stopped".
        unsafe {
            libc::ptrace(
                libc::PT_DETACH,
                self.pid as libc::pid_t,
                1 as *mut libc::c_char,
                0,
            )
        };
    }
}

pub fn why_denied(_pid: u32) -> String {
    "reading another process needs root, or the same user with security.bsd.unprivileged_proc_debug=1"
        .into()
}

pub fn why_no_ptrace(pid: u32) -> String {
    why_denied(pid)
}
