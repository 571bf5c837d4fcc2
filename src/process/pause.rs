//! Pausing a process for a consistent snapshot (`--blocking`). Uses ptrace seize + interrupt
//! rather than SIGSTOP: the kernel resumes ptrace-stopped threads if we die, so the target is
//! never left stopped, even if the profiler is killed. Dropping the guard resumes it.

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("cannot pause process {pid}: {}", super::access::why_no_ptrace(*pid))]
    Permission { pid: u32 },
    #[error("cannot pause process {pid}: {source}")]
    Io { pid: u32, source: std::io::Error },
}

/// While alive, every thread of the process that existed at `pause` time is stopped.
pub struct Paused {
    tids: Vec<u32>,
}

impl Paused {
    pub fn pause(pid: u32) -> Result<Paused, PauseError> {
        let tids = super::proc::threads(pid).map_err(|e| PauseError::Io {
            pid,
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut paused = Paused {
            tids: Vec::with_capacity(tids.len()),
        };
        for tid in tids {
            match seize_and_stop(tid) {
                Ok(()) => paused.tids.push(tid),
                // A thread that exited between listing and seizing is not an error.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    return Err(PauseError::Permission { pid })
                }
                Err(source) => return Err(PauseError::Io { pid, source }),
            }
        }
        Ok(paused)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for &tid in &self.tids {
            detach(tid);
        }
    }
}

#[allow(unsafe_code)]
fn seize_and_stop(tid: u32) -> std::io::Result<()> {
    let tid = tid as libc::pid_t;
    // SAFETY: plain syscalls with integer arguments; no memory is shared with the kernel
    // except `status`, a local we own.
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) != 0 {
            let err = std::io::Error::last_os_error();
            libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize);
            return Err(err);
        }
        let mut status = 0;
        if libc::waitpid(tid, &mut status, libc::__WALL) < 0 {
            let err = std::io::Error::last_os_error();
            libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize);
            return Err(err);
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn detach(tid: u32) {
    // SAFETY: a syscall with integer arguments; failure (thread gone) needs no handling.
    unsafe {
        libc::ptrace(libc::PTRACE_DETACH, tid as libc::pid_t, 0usize, 0usize);
    }
}
