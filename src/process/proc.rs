//! Small readers of `/proc/PID/*`: existence, exe, command line, start time, threads and
//! their scheduler state, names and ids in the PID namespaces they belong to.

use std::path::{Path, PathBuf};

use super::maps::{parse_maps, MapRange};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process {pid} not found (no such process)")]
    NotFound { pid: u32 },
    #[error("PID {pid} is a kernel thread ({name}), not a Python process")]
    KernelThread { pid: u32, name: String },
    #[error("permission denied reading /proc/{pid}/{what}: {}", super::access::why_denied(*pid))]
    Permission { pid: u32, what: &'static str },
    #[error("reading /proc/{pid}/{what}: {source}")]
    Io {
        pid: u32,
        what: &'static str,
        source: std::io::Error,
    },
}

fn read_proc(pid: u32, what: &'static str) -> Result<String, ProcError> {
    std::fs::read_to_string(format!("/proc/{pid}/{what}"))
        .map_err(|source| classify(pid, what, source))
}

fn classify(pid: u32, what: &'static str, source: std::io::Error) -> ProcError {
    match source.kind() {
        // A kernel thread has a /proc entry but no `exe` (and empty maps).
        std::io::ErrorKind::NotFound => match super::access::kernel_thread(pid) {
            Some(name) => ProcError::KernelThread { pid, name },
            None => ProcError::NotFound { pid },
        },
        std::io::ErrorKind::PermissionDenied => ProcError::Permission { pid, what },
        _ if source.raw_os_error() == Some(libc::ESRCH) => ProcError::NotFound { pid },
        _ => ProcError::Io { pid, what, source },
    }
}

pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

pub fn maps(pid: u32) -> Result<Vec<MapRange>, ProcError> {
    Ok(parse_maps(&read_proc(pid, "maps")?))
}

/// The executable's path as the target sees it.
pub fn exe(pid: u32) -> Result<PathBuf, ProcError> {
    std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| classify(pid, "exe", e))
}

/// The runtime address of the executable's entry point (`AT_ENTRY` in `/proc/PID/auxv`, a
/// few hundred bytes): minus the ELF's `e_entry`, the executable's load bias.
pub fn entry_point(pid: u32) -> Result<u64, ProcError> {
    const AT_ENTRY: u64 = 9;
    let raw = std::fs::read(format!("/proc/{pid}/auxv")).map_err(|e| classify(pid, "auxv", e))?;
    raw.chunks_exact(16)
        .map(|pair| {
            let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
            (word(&pair[..8]), word(&pair[8..]))
        })
        .find(|&(key, _)| key == AT_ENTRY)
        .map(|(_, value)| value)
        .ok_or_else(|| ProcError::Io {
            pid,
            what: "auxv",
            source: std::io::ErrorKind::InvalidData.into(),
        })
}

/// Threads on the host now (the total of `/proc/loadavg`'s "running/total" field).
pub fn host_threads() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// A path of the target's mount namespace, reachable from ours through `/proc/PID/root`.
pub fn path_in_root(pid: u32, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    PathBuf::from(format!("/proc/{pid}/root")).join(relative)
}

/// The file mapped at `m` in `pid`, as a path we can open: the mapped path under
/// `/proc/PID/root` when that is the very file mapped (same inode), else
/// `/proc/PID/map_files/START-END`, the kernel's link to the mapped file itself (root only).
/// Maps name files relative to the target's mount namespace, which is not its root when it
/// was chrooted inside that namespace, and a file replaced since it was mapped (an upgrade)
/// is no longer at its path at all.
pub fn mapped_file(pid: u32, m: &MapRange) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = m.pathname.as_deref()?;
    let in_root = path_in_root(pid, path);
    if std::fs::metadata(&in_root).is_ok_and(|meta| meta.ino() == m.inode) {
        return Some(in_root);
    }
    let link = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
    match std::fs::metadata(&link) {
        Ok(_) => Some(link),
        Err(_) => Some(in_root),
    }
}

/// `mapped_file` for the first mapping of `path` in `maps`; the path under `/proc/PID/root`
/// when it is not mapped.
pub fn file_in_maps(pid: u32, maps: &[MapRange], path: &Path) -> PathBuf {
    maps.iter()
        .find(|m| m.pathname.as_deref() == Some(path))
        .and_then(|m| mapped_file(pid, m))
        .unwrap_or_else(|| path_in_root(pid, path))
}

pub fn cmdline(pid: u32) -> Result<Vec<String>, ProcError> {
    let raw =
        std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| classify(pid, "cmdline", e))?;
    Ok(raw
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect())
}

/// `comm`: the short process (or thread) name.
pub fn comm(pid: u32) -> Result<String, ProcError> {
    Ok(read_proc(pid, "comm")?.trim_end().to_string())
}

pub fn thread_comm(pid: u32, tid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Fields of a `stat` line after the `(comm)` part, which may itself hold spaces and parens.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().collect())
}

/// Start time in clock ticks since boot (field 22): with the pid it identifies a process
/// across pid reuse.
pub fn start_time(pid: u32) -> Result<u64, ProcError> {
    let stat = read_proc(pid, "stat")?;
    stat_fields(&stat)
        .and_then(|f| f.get(19).and_then(|s| s.parse().ok()))
        .ok_or_else(|| ProcError::Io {
            pid,
            what: "stat",
            source: std::io::ErrorKind::InvalidData.into(),
        })
}

/// Parent pid (field 4).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_fields(&stat)?.get(1)?.parse().ok()
}

/// Thread ids of the process.
pub fn threads(pid: u32) -> Result<Vec<u32>, ProcError> {
    let dir =
        std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| classify(pid, "task", e))?;
    let mut tids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Thread `tid`'s ids in every PID namespace it belongs to, from the namespace of our `/proc`
/// inward (`NSpid:` in `/proc/PID/task/TID/status`, Linux 4.1+): one id for a thread of our
/// own namespace; in a container, the host id first and the container's own id last. `None`
/// when the kernel does not say (no `NSpid:` line).
pub fn ns_tids(pid: u32, tid: u32) -> Result<Option<Vec<u32>>, ProcError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .map_err(|e| classify(pid, "task/TID/status", e))?;
    Ok(parse_nspid(&status))
}

fn parse_nspid(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Option<Vec<u32>> = line.split_whitespace().map(|s| s.parse().ok()).collect();
    ids.filter(|ids| !ids.is_empty())
}

/// Whether the thread is running or runnable (`R`): what py-spy calls active. Any other state
/// (sleeping, disk wait, stopped) is idle. An unreadable thread counts as idle.
pub fn thread_is_running(pid: u32, tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s).and_then(|f| f.first().map(|st| *st == "R")))
        .unwrap_or(false)
}

/// The futex word a thread is asleep on now (`/proc/PID/task/TID/syscall`: the system call's
/// number, then its arguments; futex(2) is 202 on x86-64), or `None` when it is not in
/// futex(2) (running, another call, unreadable).
pub fn blocked_futex(pid: u32, tid: u32) -> Option<u64> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    futex_of_syscall_line(&line)
}

fn futex_of_syscall_line(line: &str) -> Option<u64> {
    const NR_FUTEX: &str = "202";
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let mut fields = line.split_whitespace();
    if fields.next()? != NR_FUTEX {
        return None;
    }
    let addr = fields.next()?.strip_prefix("0x")?;
    u64::from_str_radix(addr, 16).ok()
}

/// Every process running now (the numeric entries of `/proc`).
pub fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Direct and indirect children of `pid` (for `--subprocesses`), by scanning `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent(p)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    // Bounded: a pid can only be added once, and there are finitely many.
    while let Some(p) = frontier.pop() {
        for &(child, ppid) in &all {
            if ppid == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_futex_wait_is_read_from_the_syscall_line() {
        let line =
            "202 0x7f5e2c0a1b30 0x189 0x0 0x0 0xffffffff 0x0 0x7ffd8c3b2a40 0x7f5e2c3d1e96\n";
        #[cfg(target_arch = "x86_64")]
        assert_eq!(super::futex_of_syscall_line(line), Some(0x7f5e2c0a1b30));
        // read(2), running, and garbage: no futex word.
        assert_eq!(
            super::futex_of_syscall_line("0 0x3 0x7ffd 0x1 0 0 0 0x7ffd 0x7f5e\n"),
            None
        );
        assert_eq!(super::futex_of_syscall_line("running\n"), None);
        assert_eq!(super::futex_of_syscall_line("202 zz"), None);
        assert_eq!(super::futex_of_syscall_line(""), None);
    }

    use super::*;

    #[test]
    fn nspid_lines() {
        let status = "Name:\tpython3\nTgid:\t17332\nNSpid:\t17340\t12\t3\nNSsid:\t1\n";
        assert_eq!(parse_nspid(status), Some(vec![17340, 12, 3]));
        assert_eq!(parse_nspid("NSpid:\t4021\n"), Some(vec![4021]));
        assert_eq!(parse_nspid("Name:\tx\nPid:\t5\n"), None);
        assert_eq!(parse_nspid("NSpid:\t5\tjunk\n"), None);
        assert_eq!(parse_nspid("NSpid:\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(exists(me));
        assert!(start_time(me).unwrap() > 0);
        assert!(threads(me).unwrap().contains(&me));
        assert!(!maps(me).unwrap().is_empty());
        assert!(host_threads().unwrap() >= threads(me).unwrap().len() as u32);
        // The thread running this test is, by definition, running.
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        let tid: u32 = link.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert!(thread_is_running(me, tid));
        assert_eq!(ns_tids(me, tid).unwrap(), Some(vec![tid]));
        assert!(matches!(
            start_time(u32::MAX - 1),
            Err(ProcError::NotFound { .. })
        ));
    }
}
