//! macOS: a process's memory, threads and pausing through its mach task port
//! (`task_for_pid`: root, or a target that allows it), its facts through libproc
//! (`proc_pidpath`, `proc_pidinfo`, `proc_listchildpids`) and sysctl, and its loaded images
//! from dyld's own list (`TASK_DYLD_INFO` -> `dyld_all_image_infos`), read like any other
//! memory of it.
//!
//! All unsafe code of this file is FFI into those system calls, each with its buffer sized
//! here; nothing returned by the target is trusted beyond bounds-checked reads.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use mach2::kern_return::KERN_SUCCESS;
use mach2::port::{mach_port_name_t, MACH_PORT_NULL};
use mach2::task_info::{task_dyld_info, TASK_DYLD_INFO, TASK_DYLD_INFO_COUNT};
use mach2::traps::mach_task_self;

use super::{LoadedImage, PauseError, ProcError};
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory};

/// Most threads and images we list from one process.
const MAX_THREADS: usize = 16_384;
const MAX_IMAGES: u32 = 16_384;
/// `PATH_MAX` on macOS (`proc_pidpath` wants `PROC_PIDPATHINFO_MAXSIZE`, 4 of them).
const PATH_BYTES: usize = 4 * 1024;

/// A send right to a task, given back to the kernel when the last user drops it.
#[derive(Debug)]
struct TaskPort(mach_port_name_t);

impl TaskPort {
    fn open(pid: u32) -> std::io::Result<TaskPort> {
        let mut task: mach_port_name_t = MACH_PORT_NULL;
        // SAFETY: `task` is a valid out-pointer for the call's duration.
        let kr = unsafe { libc::task_for_pid(mach_task_self(), pid as libc::c_int, &mut task) };
        if kr != KERN_SUCCESS {
            // task_for_pid says only "failure" (5): tell a process that is gone from one we
            // may not read.
            return Err(match exists(pid) {
                true => std::io::ErrorKind::PermissionDenied.into(),
                false => std::io::ErrorKind::NotFound.into(),
            });
        }
        Ok(TaskPort(task))
    }
}

impl Drop for TaskPort {
    fn drop(&mut self) {
        // SAFETY: we own this send right; giving it back once is the contract.
        unsafe { mach2::mach_port::mach_port_deallocate(mach_task_self(), self.0) };
    }
}

/// Live memory of a process, read with `mach_vm_read_overwrite` through its task port. The
/// port is opened once; if that fails every read says why (permission, or gone).
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    pid: u32,
    task: Option<Arc<TaskPort>>,
}

impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        ProcessMemory {
            pid,
            task: TaskPort::open(pid).ok().map(Arc::new),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl RemoteMemory for ProcessMemory {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let pid = self.pid;
        let Some(task) = &self.task else {
            return Err(match exists(pid) {
                true => MemoryError::Permission { pid },
                false => MemoryError::Gone { pid },
            });
        };
        if buf.is_empty() {
            return Ok(());
        }
        let mut read: u64 = 0;
        // SAFETY: the kernel writes at most `buf.len()` bytes at `buf`, which we own mutably
        // for the call; `addr` is only interpreted in the target's address space.
        let kr = unsafe {
            mach2::vm::mach_vm_read_overwrite(
                task.0,
                addr,
                buf.len() as u64,
                buf.as_mut_ptr() as u64,
                &mut read,
            )
        };
        if kr == KERN_SUCCESS && read == buf.len() as u64 {
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
    // SAFETY: signal 0 checks only; no memory is passed.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The executable's path (`proc_pidpath`).
pub fn exe(pid: u32) -> Result<PathBuf, ProcError> {
    let mut buf = vec![0u8; PATH_BYTES];
    // SAFETY: `buf` holds `PATH_BYTES` writable bytes.
    let n = unsafe {
        libc::proc_pidpath(
            pid as libc::c_int,
            buf.as_mut_ptr().cast(),
            PATH_BYTES as u32,
        )
    };
    if n <= 0 {
        return Err(ProcError::from_io(
            pid,
            "executable path",
            std::io::Error::last_os_error(),
        ));
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(String::from_utf8_lossy(&buf).into_owned()))
}

fn bsd_info(pid: u32) -> Result<libc::proc_bsdinfo, ProcError> {
    // SAFETY: proc_bsdinfo is plain data; all-zero is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: `info` is `size` writable bytes.
    let n = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdinfo).cast(),
            size,
        )
    };
    if n != size {
        return Err(ProcError::from_io(
            pid,
            "process info",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(info)
}

/// Start time in microseconds since the epoch: with the pid it identifies a process across
/// pid reuse.
pub fn start_time(pid: u32) -> Result<u64, ProcError> {
    let info = bsd_info(pid)?;
    Ok(info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec)
}

pub fn comm(pid: u32) -> Result<String, ProcError> {
    let info = bsd_info(pid)?;
    let bytes: Vec<u8> = info
        .pbi_comm
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Thread names are read from `threading` instead (macOS keeps them in the target's memory).
pub fn thread_comm(_pid: u32, _tid: u32) -> Option<String> {
    None
}

/// The arguments (`KERN_PROCARGS2`: argc, the exec path, then argc NUL-terminated strings).
pub fn cmdline(pid: u32) -> Result<Vec<String>, ProcError> {
    let mut mib = [libc::CTL_KERN, libc::KERN_PROCARGS2, pid as libc::c_int];
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = buf.len();
    // SAFETY: `buf` is `size` writable bytes; `mib` names 3 integers.
    let r = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            3,
            buf.as_mut_ptr().cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    if r != 0 {
        return Err(ProcError::from_io(
            pid,
            "arguments",
            std::io::Error::last_os_error(),
        ));
    }
    buf.truncate(size);
    Ok(parse_procargs2(&buf))
}

fn parse_procargs2(buf: &[u8]) -> Vec<String> {
    let Some(argc) = buf
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return Vec::new();
    };
    let rest = &buf[4..];
    // Skip the exec path and the NULs that pad it.
    let Some(path_end) = rest.iter().position(|&b| b == 0) else {
        return Vec::new();
    };
    let args_start = rest[path_end..]
        .iter()
        .position(|&b| b != 0)
        .map_or(rest.len(), |p| path_end + p);
    rest[args_start..]
        .split(|&b| b == 0)
        .take(argc.max(0) as usize)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The task's thread ports, each given to `f`, then all given back.
fn with_threads<T>(
    pid: u32,
    mut f: impl FnMut(libc::thread_act_t) -> Option<T>,
) -> Result<Vec<T>, ProcError> {
    let task = TaskPort::open(pid).map_err(|e| ProcError::from_io(pid, "threads", e))?;
    let mut list: libc::thread_act_array_t = std::ptr::null_mut();
    let mut count: libc::mach_msg_type_number_t = 0;
    // SAFETY: out-pointers valid for the call; the kernel allocates `list` in our space.
    let kr = unsafe { libc::task_threads(task.0, &mut list, &mut count) };
    if kr != KERN_SUCCESS {
        return Err(ProcError::Io {
            pid,
            what: "threads",
            source: std::io::Error::other(format!("task_threads: {kr}")),
        });
    }
    let mut out = Vec::new();
    for i in 0..count as usize {
        // SAFETY: the kernel gave `count` ports at `list`.
        let thread = unsafe { *list.add(i) };
        if out.len() < MAX_THREADS {
            out.extend(f(thread));
        }
        // SAFETY: each port in the list is a send right we now own.
        unsafe { mach2::mach_port::mach_port_deallocate(mach_task_self(), thread) };
    }
    let bytes = count as u64 * std::mem::size_of::<libc::thread_act_t>() as u64;
    // SAFETY: `list` was allocated by the kernel in our address space with this size.
    unsafe { mach2::vm::mach_vm_deallocate(mach_task_self(), list as u64, bytes) };
    Ok(out)
}

/// (thread id, running) of one thread port.
fn thread_state(thread: libc::thread_act_t) -> Option<(u32, bool)> {
    // SAFETY: plain data, zero is valid; each buffer is the size its count says.
    let mut id: libc::thread_identifier_info = unsafe { std::mem::zeroed() };
    let mut n = libc::THREAD_IDENTIFIER_INFO_COUNT;
    let kr = unsafe {
        libc::thread_info(
            thread,
            libc::THREAD_IDENTIFIER_INFO as u32,
            (&mut id as *mut libc::thread_identifier_info).cast(),
            &mut n,
        )
    };
    if kr != KERN_SUCCESS {
        return None;
    }
    let mut basic: libc::thread_basic_info = unsafe { std::mem::zeroed() };
    let mut n = libc::THREAD_BASIC_INFO_COUNT;
    let kr = unsafe {
        libc::thread_info(
            thread,
            libc::THREAD_BASIC_INFO as u32,
            (&mut basic as *mut libc::thread_basic_info).cast(),
            &mut n,
        )
    };
    let running = kr == KERN_SUCCESS && basic.run_state == libc::TH_STATE_RUNNING;
    // Cut to u32 as CPython's native_thread_id is by our reader (see mod.rs).
    Some((id.thread_id as u32, running))
}

/// Thread ids of the process (as `pthread_threadid_np` gives them).
pub fn threads(pid: u32) -> Result<Vec<u32>, ProcError> {
    let mut tids = with_threads(pid, |t| thread_state(t).map(|(tid, _)| tid))?;
    tids.sort_unstable();
    Ok(tids)
}

/// The threads that are running (`TH_STATE_RUNNING`): one listing of the task's threads, two
/// system calls per thread.
pub fn running_threads(pid: u32) -> Vec<u32> {
    with_threads(pid, |t| thread_state(t).filter(|&(_, running)| running))
        .map(|all| all.into_iter().map(|(tid, _)| tid).collect())
        .unwrap_or_default()
}

/// Whether the thread is running (`running_threads`: prefer it for more than one thread).
pub fn thread_is_running(pid: u32, tid: u32) -> bool {
    running_threads(pid).contains(&tid)
}

/// The parent of `pid` (`--subprocesses` trees), from its BSD info.
pub fn parent(pid: u32) -> Option<u32> {
    bsd_info(pid).ok().map(|info| info.pbi_ppid)
}

pub fn children(pid: u32) -> Vec<u32> {
    let mut pids = vec![0 as libc::pid_t; 4096];
    let bytes = (pids.len() * std::mem::size_of::<libc::pid_t>()) as libc::c_int;
    // SAFETY: `pids` holds `bytes` writable bytes.
    let n =
        unsafe { libc::proc_listchildpids(pid as libc::pid_t, pids.as_mut_ptr().cast(), bytes) };
    // It returns a count of pids on current macOS (bytes on some older ones): either way,
    // never more than the buffer, and a pid of 0 is no process.
    pids.truncate((n.max(0) as usize).min(pids.len()));
    pids.into_iter()
        .filter(|&p| p > 0)
        .map(|p| p as u32)
        .collect()
}

/// The binaries loaded in `pid` and where, from dyld's `dyld_all_image_infos` (found with
/// `task_info(TASK_DYLD_INFO)`): version, count, and an array of {load address, path, date}.
pub fn images(pid: u32) -> Result<Vec<LoadedImage>, ProcError> {
    let task = TaskPort::open(pid).map_err(|e| ProcError::from_io(pid, "images", e))?;
    let mut info = task_dyld_info::default();
    let mut count = TASK_DYLD_INFO_COUNT;
    // SAFETY: `info` is TASK_DYLD_INFO_COUNT natural_t's, as `count` says.
    let kr = unsafe {
        mach2::task::task_info(
            task.0,
            TASK_DYLD_INFO,
            (&mut info as *mut task_dyld_info).cast(),
            &mut count,
        )
    };
    if kr != KERN_SUCCESS {
        return Err(ProcError::Io {
            pid,
            what: "images",
            source: std::io::Error::other(format!("task_info: {kr}")),
        });
    }
    let mem = ProcessMemory::new(pid);
    let io = |e: MemoryError| ProcError::Io {
        pid,
        what: "images",
        source: std::io::Error::other(e.to_string()),
    };
    let all = info.all_image_info_addr;
    let n = mem.read_u32(all + 4).map_err(io)?.min(MAX_IMAGES);
    let array = mem.read_u64(all + 8).map_err(io)?;
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as u64 {
        // struct dyld_image_info { const mach_header *imageLoadAddress; const char
        // *imageFilePath; uintptr_t imageFileModDate; }
        let entry = array + i * 24;
        let (Ok(base), Ok(path)) = (mem.read_u64(entry), mem.read_u64(entry + 8)) else {
            continue;
        };
        if let Ok(path) = mem.read_c_string(path, PATH_BYTES) {
            out.push(LoadedImage {
                path: PathBuf::from(path),
                base,
            });
        }
    }
    Ok(out)
}

/// While alive, the whole task is suspended; dropping it resumes it. `task_suspend2` hands
/// back a suspension token (a port): if we die without resuming, the kernel destroys the
/// token and resumes the task, so a killed profiler never leaves its target stopped (as
/// ptrace's seize does on Linux).
pub struct Paused {
    token: mach2::mach_types::task_suspension_token_t,
}

impl Paused {
    pub fn pause(pid: u32) -> Result<Paused, PauseError> {
        let task = TaskPort::open(pid).map_err(|source| match source.kind() {
            std::io::ErrorKind::PermissionDenied => PauseError::Permission { pid },
            _ => PauseError::Io { pid, source },
        })?;
        let mut token = MACH_PORT_NULL;
        // SAFETY: a valid task port and a valid out-pointer.
        let kr = unsafe { mach2::task::task_suspend2(task.0, &mut token) };
        if kr != KERN_SUCCESS {
            return Err(PauseError::Io {
                pid,
                source: std::io::Error::other(format!("task_suspend2: {kr}")),
            });
        }
        Ok(Paused { token })
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // SAFETY: the token task_suspend2 gave us, used once (it consumes the token).
        unsafe { mach2::task::task_resume2(self.token) };
    }
}

/// Why reading another process failed.
pub fn why_denied(_pid: u32) -> String {
    "reading another process's memory on macOS needs root (sudo), and System Integrity \
     Protection refuses it for Apple-signed binaries such as /usr/bin/python3"
        .into()
}

pub fn why_no_ptrace(pid: u32) -> String {
    why_denied(pid)
}

#[cfg(test)]
mod tests {
    #[test]
    fn procargs2() {
        let mut buf = 2i32.to_ne_bytes().to_vec();
        buf.extend_from_slice(b"/usr/bin/python3\0\0\0python3\0x.py\0HOME=/\0");
        assert_eq!(super::parse_procargs2(&buf), vec!["python3", "x.py"]);
    }
}
