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
    pub child: Option<Child>,
}

/// Whether a program we started still runs (reaping it if it has exited); true without one.
pub fn child_alive(child: &mut Option<Child>) -> bool {
    match child {
        Some(c) => matches!(c.try_wait(), Ok(None)),
        None => true,
    }
}

/// Stop a program we started that outlived the recording, and reap it.
pub fn finish_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
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
            let mut child = Command::new(program)
                .args(rest)
                .spawn()
                .with_context(|| format!("cannot start {program}"))?;
            match attach_started(&mut child, program) {
                Ok(process) => Ok(Target {
                    process,
                    child: Some(child),
                }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(e)
                }
            }
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
