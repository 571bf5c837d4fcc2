//! Small readers of `/proc/PID/*`: existence, exe, command line, start time, threads and
//! their scheduler state and names.

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

/// Whether the thread is running or runnable (`R`): what py-spy calls active. Any other state
/// (sleeping, disk wait, stopped) is idle. An unreadable thread counts as idle.
pub fn thread_is_running(pid: u32, tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s).and_then(|f| f.first().map(|st| *st == "R")))
        .unwrap_or(false)
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
    use super::*;

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
        assert!(matches!(
            start_time(u32::MAX - 1),
            Err(ProcError::NotFound { .. })
        ));
    }
}
