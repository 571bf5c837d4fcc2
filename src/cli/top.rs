//! `pyspy-bpf top`: sample on a thread of its own into shared counts, and show them live, full
//! screen on a terminal, or as plain-text snapshots when stdout is not one.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::signals;
use super::stack_size::{self, Copier};
use super::target::{self, StartedChild};
use super::TopArgs;
use crate::bpf::PerfEventKind;
use crate::native::NativeReader;
use crate::process::pause::Paused;
use crate::python::StackOptions;
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig, Scope};
use crate::sampler::{EndReason, SamplerConfig, UserspaceSampler};
use crate::top::{self, lock, Live, Watched};

/// Exit status when the process given by `--pid` exited while `top` watched it (as `record`).
const EXIT_TARGET_GONE: i32 = 2;

pub fn run(args: TopArgs) -> anyhow::Result<i32> {
    let stop = signals::stop_flag()?;
    if args.target.all {
        return run_all(args, stop);
    }
    // Checked before anything starts: a bad size must not leave a started program behind.
    let native_stack = match args.native {
        true => Some(stack_size::bytes_for(
            args.native_stack_size,
            Copier::Userspace,
        )?),
        false => None,
    };
    let target = target::resolve(&args.target)?;
    let pid = target.process.pid;
    if args.blocking || args.native {
        // Find out now, not at the first sample, whether we may pause the target.
        drop(Paused::pause(pid)?);
    }
    let config = SamplerConfig {
        rate_hz: args.rate,
        stacks: StackOptions {
            include_idle: args.idle,
            gil_only: args.gil,
        },
        subprocesses: args.subprocesses,
        blocking: args.blocking,
    };
    let watched = Watched {
        mode: "userspace",
        pid,
        version: target.process.version().to_string(),
        rate_hz: args.rate,
        subprocesses: args.subprocesses,
    };
    let shared = Live::shared(args.subprocesses);
    let child: Option<Arc<Mutex<StartedChild>>> = target.child.map(|c| Arc::new(Mutex::new(c)));

    let sampler = {
        let shared = shared.clone();
        let stop = stop.clone();
        let child = child.clone();
        let process = target.process;
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                // If sampling panics, the display must not wait for it forever.
                let failed = FailureFlag(shared.clone());
                let mut sampler = UserspaceSampler::new(config, process);
                if let Some(bytes) = native_stack {
                    sampler = sampler.with_native(NativeReader::new(bytes));
                }
                let summary = sampler.run(
                    None,
                    &stop,
                    || match &child {
                        Some(c) => c.lock().unwrap_or_else(|p| p.into_inner()).is_running(),
                        None => true,
                    },
                    |stacks| lock(&shared).add(stacks),
                    |summary| lock(&shared).update_counters(summary),
                );
                lock(&shared).finish(&summary);
                drop(failed);
            })
            .context("cannot start the sampling thread")?
    };

    let shown = show(&shared, &watched, args.delay, &stop, child.is_some());
    // Read before stopping: killing a program we started must not count as it exiting.
    let ended = lock(&shared).ended;
    stop.store(true, Ordering::Relaxed);
    // Joining makes sure a `--blocking` target is resumed before we exit; dropping the last
    // handle on a program we started then kills and reaps it.
    let _ = sampler.join();
    drop(child);
    shown?;
    if ended == Some(EndReason::TargetExited) {
        eprintln!("pyspy-bpf: process {pid} exited");
        if args.target.pid.is_some() {
            return Ok(EXIT_TARGET_GONE);
        }
    }
    Ok(0)
}

/// `top --all`: the BPF sampler, every process, a process column.
fn run_all(args: TopArgs, stop: Arc<AtomicBool>) -> anyhow::Result<i32> {
    let config = BpfSourceConfig {
        rate_hz: args.rate,
        event: PerfEventKind::CpuClock,
        scope: Scope::All,
        python_only: false,
        gil_only: args.gil,
        include_idle: args.idle,
        kernel_stacks: true,
        thread_names: false,
        native: None,
    };
    let bpf = bpf_source::start(&config)?;
    let watched = Watched {
        mode: "bpf",
        pid: 0,
        version: String::new(),
        rate_hz: args.rate,
        subprocesses: true,
    };
    let shared = Live::shared(true);
    let sampler = {
        let shared = shared.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let failed = FailureFlag(shared.clone());
                let result = bpf_source::run(
                    bpf,
                    &config,
                    None,
                    &stop,
                    || true,
                    |stack, _name| lock(&shared).add(std::slice::from_ref(stack)),
                    |s| {
                        lock(&shared)
                            .set_counters(s.python_errors, s.lost.iter().map(|(_, n)| n).sum())
                    },
                );
                if let Err(e) = result {
                    log::warn!("BPF sampling ended: {e}");
                }
                lock(&shared).finish_with(EndReason::Interrupted);
                drop(failed);
            })
            .context("cannot start the sampling thread")?
    };
    let shown = show(&shared, &watched, args.delay, &stop, false);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    shown?;
    Ok(0)
}

/// Full screen on a terminal, else plain-text snapshots, until quit or the sampling ends.
fn show(
    shared: &top::Shared,
    watched: &Watched,
    delay: f64,
    stop: &AtomicBool,
    started_child: bool,
) -> anyhow::Result<()> {
    let delay = Duration::from_secs_f64(delay);
    if std::io::stdout().is_terminal() {
        top::ui::run(shared, watched, delay, stop, started_child)
    } else {
        top::text::run(shared, watched, delay, stop, &mut std::io::stdout().lock())
    }
}

/// Marks the shared state failed when dropped by a panic of the sampling thread.
struct FailureFlag(top::Shared);

impl Drop for FailureFlag {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0).sampler_failed = true;
        }
    }
}
