//! Getting hold of the process to profile: attach to `--pid`, or start `-- command` and attach
//! as soon as its interpreter is up.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::TargetArgs;
use crate::python::PythonProcess;

/// How long a freshly started program may take to load its interpreter.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Target {
    pub process: PythonProcess,
    /// Set when we started the program ourselves.
    pub child: Option<StartedChild>,
}

/// A program we started (`-- command`). It never outlives the profiler: dropping it (on
/// every path out of a verb, errors and panics included) kills it if it still runs and reaps
/// it.
#[derive(Debug)]
pub struct StartedChild(Child);

impl StartedChild {
    /// Whether it still runs (reaping it if it has exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
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
            process: PythonProcess::attach(*pid)?,
            child: None,
        }),
        (None, [program, rest @ ..]) => {
            let mut child = StartedChild(
                Command::new(program)
                    .args(rest)
                    .spawn()
                    .with_context(|| format!("cannot start {program}"))?,
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

/// Attach to a program we just started, retrying while it is still loading its interpreter.
fn attach_started(child: &mut Child, program: &str) -> anyhow::Result<PythonProcess> {
    let pid = child.id();
    let started = Instant::now();
    loop {
        match PythonProcess::attach(pid) {
            Ok(process) => return Ok(process),
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "{program} exited ({status}) before its Python interpreter could be found"
                    );
                }
                if !e.is_transient() || started.elapsed() > STARTUP_TIMEOUT {
                    return Err(e.into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}
