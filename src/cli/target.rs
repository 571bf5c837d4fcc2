//! Getting hold of the process to profile: attach to `--pid`, or start `-- command` and attach
//! as soon as its interpreter is up.

use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context};

use super::TargetArgs;
use crate::python::{AttachError, PythonProcess};
use crate::sampler::registry::{attach_when_ready, WaitError};

/// How long a freshly started program may take to load its interpreter.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `--pid` waits for a process whose interpreter is still starting.
const PID_STARTUP_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Target {
    pub process: PythonProcess,
    /// Set when we started the program ourselves.
    pub child: Option<StartedChild>,
}

/// A program we started (`-- command`). It never outlives the profiler: dropping it (on
/// every path out of a verb, errors and panics included) kills it if it still runs and reaps
/// it.
#[derive(Debug)]
pub struct StartedChild(Child, Option<std::process::ExitStatus>);

impl StartedChild {
    /// Whether it still runs (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        if self.1.is_some() {
            return false;
        }
        match self.0.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.1 = Some(status);
                false
            }
            Err(_) => false,
        }
    }

    /// How it ended on its own, once it has (`None` while it runs, or if we stopped it).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.is_running();
        self.1.map(shell_status)
    }
}

impl Drop for StartedChild {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal that ended it (Unix).
fn shell_status(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    status.code().unwrap_or(1)
}

/// Whether a program we started still runs (reaping it if it has exited); true without one.
pub fn child_alive(child: &mut Option<StartedChild>) -> bool {
    child.as_mut().is_none_or(StartedChild::is_running)
}

/// Stop a program we started that outlived the recording, and reap it.
pub fn finish_child(child: &mut Option<StartedChild>) {
    drop(child.take());
}

/// Attach to `--pid`, or start the command and attach to it.
pub fn resolve(args: &TargetArgs) -> anyhow::Result<Target> {
    if args.all {
        bail!("--all needs the BPF sampler");
    }
    match (&args.pid, args.command.as_slice()) {
        (Some(pid), _) => Ok(Target {
            process: attach_pid(*pid)?,
            child: None,
        }),
        (None, [program, rest @ ..]) => {
            let mut child = StartedChild(
                Command::new(program)
                    .args(rest)
                    .spawn()
                    .with_context(|| format!("cannot start {program}"))?,
                None,
            );
            // On an error the guard kills and reaps the program.
            let process = attach_started(&mut child.0, program)?;
            Ok(Target {
                process,
                child: Some(child),
            })
        }
        (None, []) => bail!("nothing to profile: give --pid PID, --all, or a command after --"),
    }
}

/// `--pid`: a process that has not set up its interpreter yet (`python app.py & pyspy-bpf
/// record --pid $!`) is given up to `PID_STARTUP_TIMEOUT` to do so; anything else is final.
pub(super) fn attach_pid(pid: u32) -> anyhow::Result<PythonProcess> {
    let not_initialised = |e: &AttachError| matches!(e, AttachError::NotInitialised { .. });
    Ok(attach_when_ready(
        pid,
        PID_STARTUP_TIMEOUT,
        not_initialised,
        || Ok(()),
    )?)
}

/// A program we just started: attached as soon as it has loaded its interpreter, for as long
/// as it runs (up to `STARTUP_TIMEOUT`). If it ends first, the error is [`ExitedFirst`].
fn attach_started(child: &mut Child, program: &str) -> anyhow::Result<PythonProcess> {
    let pid = child.id();
    let mut ended = None;
    let still_running = || match child.try_wait() {
        Ok(Some(status)) => {
            ended = Some(status);
            Err(String::new())
        }
        _ => Ok(()),
    };
    let attached = attach_when_ready(
        pid,
        STARTUP_TIMEOUT,
        AttachError::is_transient,
        still_running,
    );
    match (attached, ended) {
        (Ok(process), _) => Ok(process),
        (Err(WaitError::Gone(_)), Some(status)) => Err(ExitedFirst {
            program: program.to_string(),
            status,
        }
        .into()),
        (Err(e), _) => Err(e.into()),
    }
}

/// A program we started ended before its interpreter could be found (`python -c pass` is
/// over in a few ms): there was nothing to sample, which is no failure of the program.
#[derive(Debug, thiserror::Error)]
#[error("{program} exited ({status}) before its Python interpreter could be found")]
pub struct ExitedFirst {
    pub program: String,
    pub status: std::process::ExitStatus,
}

impl ExitedFirst {
    /// Its status as a shell reports it.
    pub fn exit_code(&self) -> i32 {
        shell_status(self.status)
    }
}
