//! Thread ids across PID namespaces: a process in a container (`unshare --pid`, Docker,
//! Kubernetes) knows its threads by the ids of its own namespace (CPython's
//! `native_thread_id`, the tid in glibc's `struct pthread`), while `/proc`, ptrace, the BPF
//! program and the user's `ps` use the host's. `NSpid:` says both for each thread.

use std::collections::HashMap;

use super::proc::{self, ProcError};

/// Translates the thread ids of one process between its own PID namespace and ours.
#[derive(Debug)]
pub struct TidNamespace {
    pid: u32,
    /// Whether the process is in another (nested) PID namespace than our `/proc`.
    nested: bool,
    /// Host tid -> tid in the target's namespace, for the threads of the last `update`.
    inner: HashMap<u32, u32>,
    /// The reverse of `inner`.
    host: HashMap<u32, u32>,
}

impl TidNamespace {
    /// Find out whether `pid` lives in a PID namespace of its own: one read of its main
    /// thread's `status`.
    pub fn of(pid: u32) -> Result<TidNamespace, ProcError> {
        // A kernel without `NSpid:` (before 4.1) cannot tell: ids are taken as they are.
        let nested = proc::ns_tids(pid, pid)?.is_some_and(|ids| ids.len() > 1);
        Ok(TidNamespace {
            pid,
            nested,
            inner: HashMap::new(),
            host: HashMap::new(),
        })
    }

    /// A process of our own namespace (tests, recordings): every id is its own translation.
    pub fn same(pid: u32) -> TidNamespace {
        TidNamespace {
            pid,
            nested: false,
            inner: HashMap::new(),
            host: HashMap::new(),
        }
    }

    pub fn is_nested(&self) -> bool {
        self.nested
    }

    /// Learn the namespace ids of `host_tids`, the process's threads now (one `status` read
    /// per thread not seen before), and forget threads that ended, so that an id reused
    /// later is read afresh. Nothing to do outside a nested namespace.
    pub fn update(&mut self, host_tids: &[u32]) {
        if !self.nested {
            return;
        }
        self.inner.retain(|host, _| host_tids.contains(host));
        for &tid in host_tids {
            if self.inner.contains_key(&tid) {
                continue;
            }
            // A thread that ended since the directory was listed has no status: skip it.
            if let Ok(Some(ids)) = proc::ns_tids(self.pid, tid) {
                if let Some(&own) = ids.last() {
                    self.inner.insert(tid, own);
                }
            }
        }
        self.host = self.inner.iter().map(|(&h, &n)| (n, h)).collect();
    }

    /// The host tid of the thread the target knows as `tid`, as of the last `update`.
    pub fn to_host(&self, tid: u32) -> Option<u32> {
        match self.nested {
            true => self.host.get(&tid).copied(),
            false => Some(tid),
        }
    }

    /// The target's own id for host thread `tid`, as of the last `update`.
    pub fn to_inner(&self, tid: u32) -> Option<u32> {
        match self.nested {
            true => self.inner.get(&tid).copied(),
            false => Some(tid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_identity() {
        let me = std::process::id();
        let mut ns = TidNamespace::of(me).unwrap();
        assert!(!ns.is_nested());
        ns.update(&[me]);
        assert_eq!(ns.to_host(me), Some(me));
        assert_eq!(ns.to_inner(12345), Some(12345));
    }

    /// A real child in a new PID namespace (needs root: `unshare --pid`): its host tid maps
    /// to tid 1 inside, and back.
    #[test]
    fn child_in_new_pid_namespace() {
        let is_root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .map(|l| l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        if !is_root && std::env::var_os("CI").is_none() {
            eprintln!("skipped: needs root (unshare --pid)");
            return;
        }
        let mut child = std::process::Command::new("unshare")
            .args([
                "--fork",
                "--kill-child",
                "--pid",
                "--mount-proc",
                "sleep",
                "30",
            ])
            .spawn()
            .expect("unshare");
        // The forked `sleep` is the child of unshare; wait until it has exec'ed.
        let unshare = child.id();
        let mut inner_pid = None;
        for _ in 0..500 {
            inner_pid = proc::descendants(unshare)
                .into_iter()
                .find(|&p| proc::comm(p).is_ok_and(|c| c == "sleep"));
            if inner_pid.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let host = inner_pid.expect("sleep started in its namespace");
        let mut ns = TidNamespace::of(host).unwrap();
        assert!(ns.is_nested());
        assert_eq!(ns.to_host(1), None, "nothing known before update");
        ns.update(&proc::threads(host).unwrap());
        assert_eq!(ns.to_host(1), Some(host));
        assert_eq!(ns.to_inner(host), Some(1));
        assert_eq!(ns.to_inner(host + 1), None);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::process::Command::new("kill")
            .args(["-9", &host.to_string()])
            .status();
    }
}
