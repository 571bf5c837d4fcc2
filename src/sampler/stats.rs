//! One set of named counters for a run of either sampler, so that tests and the fleet agent
//! read numbers, not log lines (`record --stats-json FILE`).
//!
//! Names are stable: a counter a sampler does not have is absent, not zero (the user-space
//! sampler has no `lost` counters, the BPF sampler no `late_ticks`).

use std::collections::BTreeMap;

use serde::Serialize;

#[cfg(target_os = "linux")]
use crate::native::NativeStats;
use crate::python::code::FrameErrors;
#[cfg(target_os = "linux")]
use crate::sampler::bpf::BpfSummary;

/// No native frames off Linux: no counters of them can exist.
#[cfg(not(target_os = "linux"))]
type NativeStats = std::convert::Infallible;
use crate::sampler::RunSummary;

/// What a run counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// `bpf` or `userspace`.
    pub sampler: &'static str,
    pub elapsed_secs: f64,
    /// Stacks in the profile.
    pub samples: u64,
    /// Samples of Python processes, and those whose Python stack could not be (fully) read.
    pub python_samples: u64,
    pub python_errors: u64,
    /// Rejected Python frames by reason (`code object gone`, `bad object`, ...), and how
    /// many stacks had one.
    pub frames_rejected: BTreeMap<&'static str, u64>,
    pub stacks_with_rejected_frames: u64,
    /// Processes attached, dropped after they exited (or their pid was reused), live at the
    /// end; `python_attached` of the attached ones were Python.
    pub processes_attached: u64,
    pub python_attached: u64,
    pub processes_dropped: u64,
    pub processes_live: u64,
    /// Everything else by name: `lost.ringbuf_full`, `walked_in_bpf`, `read_late.unregistered`,
    /// `gil_read_late`, `late_ticks`, `reads`, `native.stacks`, `cache_evictions.symbols`, ...
    pub counters: BTreeMap<String, u64>,
    /// Why the run ended: `duration`, `interrupted`, `target_exited`.
    pub ended: &'static str,
}

impl Stats {
    /// From a user-space run (`root_and_children`: 1 + the children still attached).
    pub fn userspace(s: &RunSummary, native: Option<NativeStats>) -> Stats {
        let mut stats = Stats {
            sampler: "userspace",
            elapsed_secs: s.elapsed.as_secs_f64(),
            samples: s.samples,
            python_samples: s.samples,
            python_errors: s.errors,
            processes_attached: s.children_attached + 1,
            python_attached: s.children_attached + 1,
            processes_dropped: s.children_dropped,
            processes_live: s.children as u64 + 1,
            ended: match s.ended {
                crate::sampler::EndReason::DurationElapsed => "duration",
                crate::sampler::EndReason::Interrupted => "interrupted",
                crate::sampler::EndReason::TargetExited => "target_exited",
            },
            ..Stats::default()
        };
        stats.rejected(&s.frames_rejected);
        stats.counters.insert("reads".into(), s.ticks);
        stats.counters.insert("late_ticks".into(), s.late);
        if let Some(n) = native {
            stats.native(n);
        }
        stats.evictions();
        stats
    }

    /// From a BPF run.
    #[cfg(target_os = "linux")]
    pub fn bpf(s: &BpfSummary, native: bool) -> Stats {
        let mut stats = Stats {
            sampler: "bpf",
            elapsed_secs: s.elapsed.as_secs_f64(),
            samples: s.samples,
            python_samples: s.python_samples,
            python_errors: s.python_errors,
            processes_attached: s.processes_attached,
            python_attached: s.python_attached,
            processes_dropped: s.processes_dropped,
            processes_live: s.processes as u64,
            ended: if s.target_exited {
                "target_exited"
            } else if s.interrupted {
                "interrupted"
            } else {
                "duration"
            },
            ..Stats::default()
        };
        stats.rejected(&s.python_frames_rejected);
        stats
            .counters
            .insert("walked_in_bpf".into(), s.python_walked_in_bpf);
        stats
            .counters
            .insert("gil_read_late".into(), s.gil_read_late);
        for (name, n) in &s.python_read_late {
            stats.counters.insert(format!("read_late.{name}"), *n);
        }
        for (name, n) in &s.lost {
            stats.counters.insert(format!("lost.{name}"), *n);
        }
        stats.counters.insert("stale_python".into(), s.stale);
        if native {
            stats.native(s.native);
            stats
                .counters
                .insert("native.mismatched_read_late".into(), s.mismatched_read_late);
        }
        stats.evictions();
        stats
    }

    fn rejected(&mut self, f: &FrameErrors) {
        self.stacks_with_rejected_frames = f.stacks;
        for (reason, n) in &f.frames {
            *self.frames_rejected.entry(reason).or_default() += n;
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn native(&mut self, n: NativeStats) {
        match n {}
    }

    #[cfg(target_os = "linux")]
    fn native(&mut self, n: NativeStats) {
        for (name, v) in [
            ("native.stacks", n.stacks),
            ("native.truncated", n.truncated),
            ("native.mismatched", n.mismatched),
            ("native.no_registers", n.no_registers),
            ("native.kernel", n.kernel),
        ] {
            self.counters.insert(name.into(), v);
        }
    }

    fn evictions(&mut self) {
        for (name, n) in crate::byte_lru::evictions::nonzero() {
            self.counters.insert(format!("cache_evictions.{name}"), n);
        }
    }
}
