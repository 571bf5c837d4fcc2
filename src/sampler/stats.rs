//! One set of named counters for a run of either sampler, so that tests and the fleet agent
//! read numbers, not log lines (`record --stats-json FILE`).
//!
//! Names are stable: a counter a sampler has is always there, zero or not, and one it does
//! not have is absent (the user-space sampler has no `lost` counters, the BPF sampler no
//! `late_ticks`). Cache evictions are the exception: only caches that evicted are named.

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

    /// The end-of-run summary printed on stderr, one line each, from these counters alone: the
    /// same numbers `--stats-json` writes. `show_processes`: the processes line (always with
    /// BPF; with user space only when following subprocesses).
    pub fn summary_lines(&self, show_processes: bool) -> Vec<String> {
        let counter = |name: &str| self.counters.get(name).copied().unwrap_or(0);
        let named = |prefix: &str| -> Vec<String> {
            self.counters
                .iter()
                .filter_map(|(name, n)| Some(format!("{}={n}", name.strip_prefix(prefix)?)))
                .collect()
        };
        let mut lines = Vec::new();
        if self.sampler == "bpf" {
            lines.push(format!(
                "{} samples ({} of Python processes, {} Python read errors) from {} processes, {:.1}s",
                self.samples,
                self.python_samples,
                self.python_errors,
                self.processes_live,
                self.elapsed_secs
            ));
        } else {
            lines.push(format!(
                "{} samples in {} reads, {} errors, {} late ticks, {:.1}s",
                self.samples,
                counter("reads"),
                self.python_errors,
                counter("late_ticks"),
                self.elapsed_secs
            ));
        }
        if self.counters.contains_key("native.stacks") {
            lines.push(format!(
                "native: {} stacks unwound, {} truncated, {} native/python mismatches, {} without registers or a stack copy, {} with kernel frames",
                counter("native.stacks"),
                counter("native.truncated"),
                counter("native.mismatched"),
                counter("native.no_registers"),
                counter("native.kernel"),
            ));
            let late = counter("native.mismatched_read_late");
            if late > 0 {
                lines.push(format!(
                    "native: {late} more mismatches among Python stacks read by user space after their sample"
                ));
            }
        }
        if !self.frames_rejected.is_empty() {
            let parts: Vec<String> = self
                .frames_rejected
                .iter()
                .map(|(reason, n)| format!("{reason}={n}"))
                .collect();
            lines.push(format!("Python frames rejected: {}", parts.join(", ")));
        }
        if show_processes {
            // One parseable line: a long host-wide run must not keep what exited.
            lines.push(format!(
                "processes: attached {} ({} Python), dropped after exit {}, live at end {}",
                self.processes_attached,
                self.python_attached,
                self.processes_dropped,
                self.processes_live
            ));
        }
        let evicted = named("cache_evictions.");
        if !evicted.is_empty() {
            lines.push(format!("cache evictions: {}", evicted.join(", ")));
        }
        let lost: Vec<String> = self
            .counters
            .iter()
            .filter(|(_, &n)| n > 0)
            .filter_map(|(name, n)| Some(format!("{}={n}", name.strip_prefix("lost.")?)))
            .collect();
        if !lost.is_empty() {
            lines.push(format!("lost or damaged samples: {}", lost.join(", ")));
        }
        if self.sampler == "bpf" && self.python_samples > 0 {
            let late = named("read_late.");
            let late_total: u64 = self
                .counters
                .iter()
                .filter(|(name, _)| name.starts_with("read_late."))
                .map(|(_, n)| n)
                .sum();
            lines.push(format!(
                "Python stacks walked in BPF at the sample: {}, read by user space after it: {late_total}{}",
                counter("walked_in_bpf"),
                if late.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", late.join(", "))
                }
            ));
        }
        lines
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_printed_from_the_counters() {
        let mut stats = Stats {
            sampler: "bpf",
            elapsed_secs: 2.04,
            samples: 90,
            python_samples: 80,
            python_errors: 3,
            processes_attached: 4,
            python_attached: 2,
            processes_dropped: 1,
            processes_live: 3,
            ..Stats::default()
        };
        stats.frames_rejected.insert("bad object", 2);
        for (name, n) in [
            ("walked_in_bpf", 70),
            ("read_late.unregistered", 6),
            ("read_late.py_no_thread", 4),
            ("lost.ringbuf_full", 5),
            // Zero: kept in the counters (and the JSON), left out of the printed line.
            ("lost.queue_full", 0),
            ("cache_evictions.symbols", 7),
        ] {
            stats.counters.insert(name.into(), n);
        }
        assert_eq!(
            stats.summary_lines(true),
            [
                "90 samples (80 of Python processes, 3 Python read errors) from 3 processes, 2.0s",
                "Python frames rejected: bad object=2",
                "processes: attached 4 (2 Python), dropped after exit 1, live at end 3",
                "cache evictions: symbols=7",
                "lost or damaged samples: ringbuf_full=5",
                "Python stacks walked in BPF at the sample: 70, read by user space after it: 10 (py_no_thread=4, unregistered=6)",
            ]
        );
        // User space: its own first line, no processes line unless asked, no BPF walk line.
        let stats = Stats {
            sampler: "userspace",
            elapsed_secs: 1.0,
            samples: 50,
            python_errors: 1,
            counters: [("reads".to_string(), 60), ("late_ticks".to_string(), 2)].into(),
            ..Stats::default()
        };
        assert_eq!(
            stats.summary_lines(false),
            ["50 samples in 60 reads, 1 errors, 2 late ticks, 1.0s"]
        );
    }
}
