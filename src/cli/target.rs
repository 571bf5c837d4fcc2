//! Getting hold of the process to profile: attach to `--pid`, or start `-- command` and attach
//! as soon as its interpreter is up.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::TargetArgs;
use crate::python::{AttachError, PythonProcess};

/// How long a freshly started program may take to load its interpreter.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Target {
    pub process: PythonProcess,
    /// Set when we started the program ourselves.
    pub child: Option<Child>,
}

pub fn resolve(args: &TargetArgs) -> anyhow::Result<Target> {
    match (&args.pid, args.command.as_slice()) {
        (Some(pid), _) => {
            let process = PythonProcess::attach(*pid).map_err(describe)?;
            Ok(Target {
                process,
                child: None,
            })
        }
        (None, [program, rest @ ..]) => {
            let mut child = Command::new(program)
                .args(rest)
                .spawn()
                .with_context(|| format!("cannot start {program}"))?;
            let pid = child.id();
            let started = Instant::now();
            loop {
                match PythonProcess::attach(pid) {
                    Ok(process) => {
                        return Ok(Target {
                            process,
                            child: Some(child),
                        })
                    }
                    Err(e) => {
                        if let Ok(Some(status)) = child.try_wait() {
                            bail!("{program} exited ({status}) before its Python interpreter could be found");
                        }
                        if !e.is_transient() || started.elapsed() > STARTUP_TIMEOUT {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(describe(e));
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        (None, []) => bail!("nothing to profile: give --pid PID or a command after --"),
    }
}

fn describe(e: AttachError) -> anyhow::Error {
    anyhow::Error::new(e)
}
