//! `pyspy-bpf top`: sample on a thread of its own into shared counts, and show them live, full
//! screen on a terminal, or as plain-text snapshots when stdout is not one.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::mode;
#[cfg(target_os = "linux")]
use super::mode::Chosen;
use super::signals;
#[cfg(target_os = "linux")]
use super::stack_size::{self, Copier};
use super::target::{self, StartedChild};
use super::TopArgs;
#[cfg(target_os = "linux")]
use crate::bpf::PerfEventKind;
#[cfg(target_os = "linux")]
use crate::native::NativeReader;
use crate::process::pause::Paused;
use crate::python::StackOptions;
#[cfg(target_os = "linux")]
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig, Scope};
use crate::sampler::{EndReason, SamplerConfig, UserspaceSampler};
use crate::top::{self, lock, Live, Watched};

/// Exit status when the process given by `--pid` exited while `top` watched it (as `record`).
const EXIT_TARGET_GONE: i32 = 2;

pub fn run(args: TopArgs) -> anyhow::Result<i32> {
    // Off Linux only the user-space sampler exists: BPF-only options fail before anything
    // starts.
    mode::refuse_off_linux(&[
        ("--all", args.target.all),
        ("--mode bpf", args.mode == mode::ModeArg::Bpf),
        ("--native", args.native),
    ])?;
    let stop = signals::stop_flag()?;
    #[cfg(target_os = "linux")]
    if args.target.all {
        // (`run_bpf` applies `--gil`: a filter on the samples, not part of what is loaded.)
        return run_bpf(
            args,
            None,
            bpf_source::start(&bpf_config(&TopScope::All, false))?,
            stop,
        );
    }
    // Checked before anything starts: a bad size must not leave a started program behind.
    #[cfg(target_os = "linux")]
    let native_stack = match args.native {
        true => Some(stack_size::bytes_for(
            args.native_stack_size,
            Copier::Userspace,
        )?),
        false => None,
    };
    let target = target::resolve(&args.target)?;
    let pid = target.process.pid;
    // As in `record`: BPF unless an option needs the user-space sampler (top's --native
    // pauses the target and unwinds in user space).
    #[cfg(target_os = "linux")]
    {
        let userspace_only = if args.blocking {
            Some("--blocking")
        } else if args.idle {
            Some("--idle (threads that are not on a CPU)")
        } else if args.native {
            Some("--native in top")
        } else {
            None
        };
        let scope = TopScope::Target(pid, args.subprocesses);
        let config = bpf_config(&scope, args.gil);
        if let Chosen::Bpf(sampler) = mode::choose(args.mode, false, userspace_only, &config)? {
            return run_bpf(args, Some(target), sampler, stop);
        }
    }
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
        async_tasks: false,
    };
    let watched = Watched {
        mode: "userspace",
        pid,
        version: target.process.version().to_string(),
        rate_hz: args.rate,
        subprocesses: args.subprocesses,
    };
    let shared = Live::shared(args.subprocesses);
    top::lock(&shared).stats.full_filenames = args.full_filenames;
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
                #[allow(unused_mut)] // only Linux adds a native reader
                let mut sampler = UserspaceSampler::new(config, process);
                #[cfg(target_os = "linux")]
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

/// What `top` watches with the BPF sampler.
#[cfg(target_os = "linux")]
enum TopScope {
    All,
    /// A process (and with `-s` its descendants).
    Target(u32, bool),
}

#[cfg(target_os = "linux")]
fn bpf_config(scope: &TopScope, gil_only: bool) -> BpfSourceConfig {
    BpfSourceConfig {
        rate_hz: 100,
        event: PerfEventKind::CpuClock,
        scope: match *scope {
            TopScope::All => Scope::All,
            TopScope::Target(pid, true) => Scope::Tree(pid),
            TopScope::Target(pid, false) => Scope::Pid(pid),
        },
        python_only: false,
        gil_only,
        include_idle: false,
        kernel_stacks: true,
        thread_names: false,
        native: None,
        off_cpu_min_ns: None,
    }
}

/// `top` on the BPF sampler: every process (`--all`, a process column), or one target and
/// with `-s` its children.
#[cfg(target_os = "linux")]
fn run_bpf(
    args: TopArgs,
    target: Option<target::Target>,
    bpf: crate::bpf::BpfSampler,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<i32> {
    let scope = match &target {
        Some(t) => TopScope::Target(t.process.pid, args.subprocesses),
        None => TopScope::All,
    };
    let mut config = bpf_config(&scope, args.gil);
    config.rate_hz = args.rate;
    let per_process = target.is_none() || args.subprocesses;
    let watched = Watched {
        mode: "bpf",
        pid: target.as_ref().map_or(0, |t| t.process.pid),
        version: target
            .as_ref()
            .map_or(String::new(), |t| t.process.version().to_string()),
        rate_hz: args.rate,
        subprocesses: per_process,
    };
    let (process, child) = match target {
        Some(t) => (Some(t.process), t.child.map(|c| Arc::new(Mutex::new(c)))),
        None => (None, None),
    };
    let pid = process.as_ref().map(|p| p.pid);
    let shared = Live::shared(per_process);
    top::lock(&shared).stats.full_filenames = args.full_filenames;
    let sampler = {
        let shared = shared.clone();
        let stop = stop.clone();
        let child = child.clone();
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let failed = FailureFlag(shared.clone());
                let alive = || {
                    let child_running = match &child {
                        Some(c) => c.lock().unwrap_or_else(|p| p.into_inner()).is_running(),
                        None => true,
                    };
                    child_running && process.as_ref().is_none_or(|p| p.is_same_process())
                };
                let result = bpf_source::run(
                    bpf,
                    &config,
                    None,
                    &stop,
                    alive,
                    |stack, _process| lock(&shared).add(std::slice::from_ref(stack)),
                    |s| {
                        lock(&shared)
                            .set_counters(s.python_errors, s.lost.iter().map(|(_, n)| n).sum())
                    },
                );
                let ended = match &result {
                    Ok(s) if s.target_exited => EndReason::TargetExited,
                    Ok(_) => EndReason::Interrupted,
                    Err(e) => {
                        log::warn!("BPF sampling ended: {e}");
                        EndReason::Interrupted
                    }
                };
                lock(&shared).finish_with(ended);
                drop(failed);
            })
            .context("cannot start the sampling thread")?
    };
    let shown = show(&shared, &watched, args.delay, &stop, child.is_some());
    let ended = lock(&shared).ended;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    drop(child);
    shown?;
    if let (Some(pid), Some(EndReason::TargetExited)) = (pid, ended) {
        eprintln!("pyspy-bpf: process {pid} exited");
        if args.target.pid.is_some() {
            return Ok(EXIT_TARGET_GONE);
        }
    }
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
