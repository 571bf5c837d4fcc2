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
use crate::python::{PythonProcess, StackOptions};
#[cfg(target_os = "linux")]
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig, Scope};
#[cfg(target_os = "linux")]
use crate::sampler::source::BpfSource;
use crate::sampler::source::{Source, UserspaceSource};
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
        let config = bpf_config(&TopScope::All, &args);
        let sampler = bpf_source::start(&config)?;
        return watch(&args, None, None, Plan::Bpf(sampler, config), stop);
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
    // pauses the target and unwinds in user space). `--idle` in BPF is wall-clock time.
    #[cfg(target_os = "linux")]
    {
        let userspace_only = if args.blocking {
            Some("--blocking")
        } else if args.native {
            Some("--native in top")
        } else {
            None
        };
        let scope = TopScope::Target(pid, args.subprocesses);
        let config = bpf_config(&scope, &args);
        if let Chosen::Bpf(sampler) = mode::choose(args.mode, false, userspace_only, &config)? {
            let target::Target { process, child } = target;
            return watch(
                &args,
                Some(process),
                child,
                Plan::Bpf(sampler, config),
                stop,
            );
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
        locals: None,
    };
    let plan = Plan::Userspace {
        config,
        #[cfg(target_os = "linux")]
        native_stack,
    };
    watch(&args, Some(target.process), target.child, plan, stop)
}

/// Which source `top` samples with.
enum Plan {
    /// The user-space timer (`native_stack`: `--native`, Linux).
    Userspace {
        config: SamplerConfig,
        #[cfg(target_os = "linux")]
        native_stack: Option<usize>,
    },
    #[cfg(target_os = "linux")]
    Bpf(crate::bpf::BpfSampler, BpfSourceConfig),
}

/// What `top` watches with the BPF sampler.
#[cfg(target_os = "linux")]
enum TopScope {
    All,
    /// A process (and with `-s` its descendants).
    Target(u32, bool),
}

#[cfg(target_os = "linux")]
fn bpf_config(scope: &TopScope, args: &TopArgs) -> BpfSourceConfig {
    BpfSourceConfig {
        rate_hz: args.rate,
        event: PerfEventKind::CpuClock,
        scope: match *scope {
            TopScope::All => Scope::All,
            TopScope::Target(pid, true) => Scope::Tree(pid),
            TopScope::Target(pid, false) => Scope::Pid(pid),
        },
        // Wall-clock time with --all covers Python processes (as `record --all --idle`).
        python_only: args.idle && matches!(scope, TopScope::All),
        gil_only: args.gil,
        include_idle: false,
        kernel_stacks: true,
        thread_names: false,
        native: None,
        // `--idle`: wall-clock time, as `record --idle` (its default `--offcpu-min`).
        off_cpu_min_ns: args.idle.then_some(IDLE_OFFCPU_MIN_NS),
    }
}

/// `top --idle` with BPF: time off the CPU is counted in stretches of at least this long
/// (`record --offcpu-min`'s default).
#[cfg(target_os = "linux")]
const IDLE_OFFCPU_MIN_NS: u64 = 1_000_000;

/// Sample on a thread of its own into the shared counts, whatever the source, and show them
/// until quit or the sampling ends. `process`: the target (none with `--all`).
fn watch(
    args: &TopArgs,
    process: Option<PythonProcess>,
    child: Option<StartedChild>,
    plan: Plan,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<i32> {
    let pid = process.as_ref().map(|p| p.pid);
    let is_bpf = !matches!(plan, Plan::Userspace { .. });
    let per_process = process.is_none() || args.subprocesses;
    let watched = Watched {
        mode: if is_bpf { "bpf" } else { "userspace" },
        pid: pid.unwrap_or(0),
        version: process
            .as_ref()
            .map_or(String::new(), |p| p.version().to_string()),
        rate_hz: args.rate,
        subprocesses: per_process,
    };
    let shared = Live::shared(per_process);
    let wall = is_bpf && args.idle;
    {
        let mut live = top::lock(&shared);
        live.stats.full_filenames = args.full_filenames;
        live.stats.weights_in_ns = wall;
    }
    let period_ns = 1_000_000_000 / u64::from(args.rate.max(1));
    let child: Option<Arc<Mutex<StartedChild>>> = child.map(|c| Arc::new(Mutex::new(c)));
    let sampler = {
        let shared = shared.clone();
        let stop = stop.clone();
        let child = child.clone();
        std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                // If sampling panics, the display must not wait for it forever.
                let failed = FailureFlag(shared.clone());
                // The user-space sampler checks its target's start time itself; BPF is told.
                let (mut source, watched_process) = open(plan, process);
                let mut alive = || {
                    let child_running = match &child {
                        Some(c) => c.lock().unwrap_or_else(|p| p.into_inner()).is_running(),
                        None => true,
                    };
                    child_running && watched_process.as_ref().is_none_or(|p| p.is_same_process())
                };
                let result = source.run(
                    None,
                    &stop,
                    &mut alive,
                    &mut |sample| lock(&shared).add_sample(sample, period_ns),
                    &mut |p| lock(&shared).set_counters(p.errors, p.lost),
                );
                let ended = match &result {
                    Ok(r) => r.end.reason,
                    Err(e) => {
                        log::warn!("sampling ended: {e}");
                        EndReason::Interrupted
                    }
                };
                lock(&shared).finish_with(ended);
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
    if let (Some(pid), Some(EndReason::TargetExited)) = (pid, ended) {
        eprintln!("pyspy-bpf: process {pid} exited");
        if args.target.pid.is_some() {
            return Ok(EXIT_TARGET_GONE);
        }
    }
    Ok(0)
}

/// The source of `plan`, and the process whose exit BPF must be told of (user space checks
/// its own root).
fn open(plan: Plan, process: Option<PythonProcess>) -> (Box<dyn Source>, Option<PythonProcess>) {
    match plan {
        Plan::Userspace {
            config,
            #[cfg(target_os = "linux")]
            native_stack,
        } => {
            let process = process.expect("the user-space sampler has a target");
            #[allow(unused_mut)] // only Linux adds a native reader
            let mut sampler = UserspaceSampler::new(config, process);
            #[cfg(target_os = "linux")]
            if let Some(bytes) = native_stack {
                sampler = sampler.with_native(NativeReader::new(bytes));
            }
            (Box::new(UserspaceSource::new(sampler)), None)
        }
        #[cfg(target_os = "linux")]
        Plan::Bpf(sampler, config) => (Box::new(BpfSource::new(sampler, config)), process),
    }
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
