//! The seam between the samplers and the verbs: a [`Source`] (the user-space timer loop or
//! the BPF program) hands each sample to one callback as a [`Sample`] (stack, process,
//! thread, unix time, weight), reports progress as one [`Progress`], and ends with one
//! [`RunResult`] (the shared `Stats` and how the run ended). `record`, `top` and the agent
//! compose it instead of driving either sampler by hand.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use crate::model::{unix_ns, PyVersion, StackTrace};
use crate::process::details::ProcessDetails;
use crate::python::state::{FrameLocals, SampleError, StackWithLocals};
use crate::sampler::stats::Stats;
use crate::sampler::userspace::{EndReason, Owners, RunSummary, UserspaceSampler};

/// The process a sample belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SampleProcess<'a> {
    pub pid: u32,
    /// Its `comm`.
    pub name: &'a str,
    /// Its command line and the container it runs in, if any (read when first met).
    pub details: &'a ProcessDetails,
    /// Its interpreter's version, when the source knows it.
    pub python: Option<PyVersion>,
    /// When it started (clock ticks since boot, as in `/proc/PID/stat`; 0: unknown): with the
    /// pid, tells it from a later process that reuses the pid.
    pub start_time: u64,
}

/// One sample as every source gives it.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    /// The stack (leaf first) with its pid, tid and thread name.
    pub stack: &'a StackTrace,
    pub process: SampleProcess<'a>,
    /// When it was taken, ns since the epoch. For an off-CPU sample: when the thread left the
    /// CPU (such samples arrive after later ones: consumers that need time order sort).
    pub time_unix_ns: u64,
    /// Nanoseconds the thread was off the CPU at this stack (wall-clock mode); 0: a sample of
    /// a running thread (or a user-space read), which stands for one sampling period.
    pub off_cpu_ns: u64,
    /// `dump --locals`: the locals of the stack's Python frames, leaf first (`None`: not
    /// asked for, and never from BPF).
    pub locals: Option<&'a [FrameLocals]>,
}

impl Sample<'_> {
    /// What the sample is worth in a wall-clock profile: its time away, else one period.
    pub fn wall_ns(&self, period_ns: u64) -> u64 {
        match self.off_cpu_ns {
            0 => period_ns,
            away => away,
        }
    }
}

/// How a run is going, for a status line (and the agent's metrics).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub samples: u64,
    /// Samples whose Python stack could not be (fully) read, or reads that failed.
    pub errors: u64,
    /// BPF: samples lost (ring buffer full, stale, ...); user space: ticks that came late.
    pub lost: u64,
    /// Processes sampled now.
    pub processes: usize,
    pub elapsed: Duration,
    /// Samples of Python processes, and Python processes attached so far.
    pub python_samples: u64,
    pub python_attached: u64,
    /// BPF: each non-zero loss counter by name (empty in user space).
    pub lost_by_name: Vec<(&'static str, u64)>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd {
    pub elapsed: Duration,
    pub reason: EndReason,
}

/// What a run counted, and how it ended.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub stats: Stats,
    pub end: RunEnd,
}

/// Anything that samples: it runs until `stop`, `duration`, or its target's exit
/// (`target_alive` says; it reaps a child we started).
pub trait Source {
    /// `wall-clock`: samples of threads off the CPU come with their time away.
    fn wall_clock(&self) -> bool;
    fn run(
        &mut self,
        duration: Option<Duration>,
        stop: &AtomicBool,
        target_alive: &mut dyn FnMut() -> bool,
        on_sample: &mut dyn FnMut(&Sample),
        on_status: &mut dyn FnMut(&Progress),
    ) -> anyhow::Result<RunResult>;
}

/// The user-space sampler as a [`Source`]. Each stack of one tick carries that tick's time.
pub struct UserspaceSource {
    pub sampler: UserspaceSampler,
    /// The last run's own summary (reads, ticks), for what only user space reports.
    pub summary: Option<RunSummary>,
}

impl UserspaceSource {
    pub fn new(sampler: UserspaceSampler) -> Self {
        UserspaceSource {
            sampler,
            summary: None,
        }
    }
}

impl UserspaceSource {
    /// One reading of every selected thread, as the samples of one tick, outside a run
    /// (`dump`). A failed read of the target is the error.
    pub fn read_once(&mut self, on_sample: &mut dyn FnMut(&Sample)) -> Result<(), SampleError> {
        self.sampler
            .read_once(|stacks, owners| emit_tick(stacks, owners, on_sample))
    }
}

/// The stacks of one user-space tick as samples, each with the tick's time.
fn emit_tick(stacks: &[StackWithLocals], owners: &Owners, on_sample: &mut dyn FnMut(&Sample)) {
    let time_unix_ns = unix_ns(SystemTime::now());
    for StackWithLocals {
        trace: stack,
        locals,
    } in stacks
    {
        let owner = owners.of(stack.pid);
        on_sample(&Sample {
            stack,
            process: SampleProcess {
                pid: stack.pid,
                name: owner.name,
                details: owner.details,
                python: owner.python,
                start_time: owner.start_time,
            },
            time_unix_ns,
            off_cpu_ns: 0,
            locals: (!locals.is_empty()).then_some(locals.as_slice()),
        });
    }
}

impl Source for UserspaceSource {
    fn wall_clock(&self) -> bool {
        false
    }

    fn run(
        &mut self,
        duration: Option<Duration>,
        stop: &AtomicBool,
        target_alive: &mut dyn FnMut() -> bool,
        on_sample: &mut dyn FnMut(&Sample),
        on_status: &mut dyn FnMut(&Progress),
    ) -> anyhow::Result<RunResult> {
        let summary = self.sampler.run(
            duration,
            stop,
            target_alive,
            |stacks, owners| emit_tick(stacks, owners, on_sample),
            |s| {
                on_status(&Progress {
                    samples: s.samples,
                    errors: s.errors,
                    lost: s.late,
                    processes: 1 + s.children,
                    elapsed: s.elapsed,
                    python_samples: s.samples,
                    python_attached: 1 + s.children_attached,
                    lost_by_name: Vec::new(),
                })
            },
        );
        #[cfg(target_os = "linux")]
        let native = self.sampler.native_stats();
        #[cfg(not(target_os = "linux"))]
        let native = None;
        let result = RunResult {
            stats: Stats::userspace(&summary, native),
            end: RunEnd {
                elapsed: summary.elapsed,
                reason: summary.ended,
            },
        };
        self.summary = Some(summary);
        Ok(result)
    }
}

/// The BPF sampler as a [`Source`] (Linux). A sample's time is its own (`ktime_ns`, on the
/// monotonic clock), moved to unix time by one offset measured when the run starts.
#[cfg(target_os = "linux")]
pub struct BpfSource {
    sampler: Option<crate::bpf::BpfSampler>,
    pub config: crate::sampler::bpf::BpfSourceConfig,
    /// The last run's own summary, for what only BPF reports (the agent's metrics).
    pub summary: Option<crate::sampler::bpf::BpfSummary>,
}

#[cfg(target_os = "linux")]
impl BpfSource {
    /// A started sampler (`sampler::bpf::start`) and the configuration it was started with.
    pub fn new(
        sampler: crate::bpf::BpfSampler,
        config: crate::sampler::bpf::BpfSourceConfig,
    ) -> Self {
        BpfSource {
            sampler: Some(sampler),
            config,
            summary: None,
        }
    }

    /// The started sampler, until it runs (`record` prints its CPUs).
    pub fn sampler(&self) -> Option<&crate::bpf::BpfSampler> {
        self.sampler.as_ref()
    }
}

/// unix time - monotonic time now: added to a BPF sample's `ktime_ns` it gives the sample's
/// unix time (the two clocks drift apart only by NTP slewing, microseconds over a recording).
#[cfg(target_os = "linux")]
pub fn monotonic_to_unix_offset() -> i128 {
    let before = crate::bpf::monotonic_ns();
    let unix = unix_ns(SystemTime::now());
    let after = crate::bpf::monotonic_ns();
    unix as i128 - (before / 2 + after / 2) as i128
}

#[cfg(target_os = "linux")]
pub fn unix_of_ktime(ktime_ns: u64, offset: i128) -> u64 {
    (ktime_ns as i128 + offset).clamp(0, u64::MAX as i128) as u64
}

#[cfg(target_os = "linux")]
impl Source for BpfSource {
    fn wall_clock(&self) -> bool {
        self.config.off_cpu_min_ns.is_some()
    }

    fn run(
        &mut self,
        duration: Option<Duration>,
        stop: &AtomicBool,
        target_alive: &mut dyn FnMut() -> bool,
        on_sample: &mut dyn FnMut(&Sample),
        on_status: &mut dyn FnMut(&Progress),
    ) -> anyhow::Result<RunResult> {
        let sampler = self
            .sampler
            .take()
            .ok_or_else(|| anyhow::anyhow!("the BPF source has run already"))?;
        let offset = monotonic_to_unix_offset();
        let summary = crate::sampler::bpf::run(
            sampler,
            &self.config,
            duration,
            stop,
            target_alive,
            |stack, p| {
                on_sample(&Sample {
                    stack,
                    process: SampleProcess {
                        pid: stack.pid,
                        name: p.name,
                        details: p.details,
                        python: p.python,
                        start_time: p.start_time,
                    },
                    time_unix_ns: unix_of_ktime(p.ktime_ns, offset),
                    off_cpu_ns: p.off_cpu_ns,
                    locals: None,
                })
            },
            |s| {
                on_status(&Progress {
                    samples: s.samples,
                    errors: s.python_errors,
                    lost: s.lost.iter().map(|(_, n)| n).sum(),
                    processes: s.processes,
                    elapsed: s.elapsed,
                    python_samples: s.python_samples,
                    python_attached: s.python_attached,
                    lost_by_name: s.lost.clone(),
                })
            },
        )?;
        let result = RunResult {
            stats: Stats::bpf(&summary, self.config.native.is_some()),
            end: RunEnd {
                elapsed: summary.elapsed,
                reason: if summary.target_exited {
                    EndReason::TargetExited
                } else if summary.interrupted {
                    EndReason::Interrupted
                } else {
                    EndReason::DurationElapsed
                },
            },
        };
        self.summary = Some(summary);
        Ok(result)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_bpf_time_becomes_the_unix_time_it_was_taken_at() {
        let offset = monotonic_to_unix_offset();
        let now = unix_ns(SystemTime::now());
        let t = unix_of_ktime(crate::bpf::monotonic_ns(), offset);
        assert!(t.abs_diff(now) < 50_000_000, "{t} vs {now}");
        // A sample taken a second ago is a second in the past.
        let earlier = unix_of_ktime(crate::bpf::monotonic_ns() - 1_000_000_000, offset);
        assert!((now - earlier).abs_diff(1_000_000_000) < 50_000_000);
    }
}
