//! `top`: a live view of where one Python program (tree) spends its CPU. `stats` aggregates
//! (no terminal knowledge), `ui` is the full-screen ratatui view, `text` prints snapshots when
//! stdout is not a terminal. The sampler thread and the display share one [`Live`] behind a
//! mutex, held only to add a tick's stacks or to take a snapshot.

pub mod stats;
pub mod text;
pub mod ui;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::model::StackTrace;
use crate::sampler::EndReason;
pub use stats::{Row, SortKey, TopStats, View};

/// What is being watched; fixed for the whole run.
#[derive(Debug, Clone)]
pub struct Watched {
    /// `userspace` or `bpf`.
    pub mode: &'static str,
    /// The watched process; 0 with `--all` (every process).
    pub pid: u32,
    pub version: String,
    pub rate_hz: u32,
    /// `--subprocesses`: rows carry a process column and `P` groups by process.
    pub subprocesses: bool,
}

/// The state the sampler thread writes and the display reads.
#[derive(Debug, Clone)]
pub struct Live {
    pub stats: TopStats,
    /// Sampler counters at the last status report, and at the last reset.
    errors: u64,
    late: u64,
    errors_at_reset: u64,
    late_at_reset: u64,
    /// Why sampling ended, once it has.
    pub ended: Option<EndReason>,
    /// The sampling thread stopped without saying why (it panicked).
    pub sampler_failed: bool,
    interval_start: Instant,
}

pub type Shared = Arc<Mutex<Live>>;

/// Lock the shared state. A panic elsewhere cannot leave the counts half-updated in a way that
/// matters for a display, so a poisoned lock is used as is.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Live> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    pub fn new(per_process: bool, now: Instant) -> Self {
        Live {
            stats: TopStats::new(per_process),
            errors: 0,
            late: 0,
            errors_at_reset: 0,
            late_at_reset: 0,
            ended: None,
            sampler_failed: false,
            interval_start: now,
        }
    }

    pub fn shared(per_process: bool) -> Shared {
        Arc::new(Mutex::new(Live::new(per_process, Instant::now())))
    }

    /// One stack with its weight (see `TopStats::add_weighted`).
    pub fn add_weighted(&mut self, stack: &StackTrace, weight: u64) {
        self.stats.add_weighted(stack, weight);
    }

    /// Running totals of errors and of samples lost (BPF) or late ticks (user space).
    pub fn set_counters(&mut self, errors: u64, lost_or_late: u64) {
        self.errors = errors;
        self.late = lost_or_late;
    }

    /// Sampling is over.
    pub fn finish_with(&mut self, ended: EndReason) {
        self.ended = Some(ended);
    }

    /// End the current refresh interval. After sampling ended, the last full interval stays
    /// on show: the cut-off one is used only when there is no other, and only once.
    pub fn rotate(&mut self, now: Instant) {
        if self.ended.is_some()
            && (self.stats.has_completed_interval() || self.stats.window_samples() == 0)
        {
            return;
        }
        self.stats
            .rotate(now.saturating_duration_since(self.interval_start));
        self.interval_start = now;
    }

    /// Forget the counts (key `R`).
    pub fn reset(&mut self, now: Instant) {
        self.stats.reset();
        self.errors_at_reset = self.errors;
        self.late_at_reset = self.late;
        self.interval_start = now;
    }

    pub fn target_exited(&self) -> bool {
        self.ended == Some(EndReason::TargetExited)
    }

    /// Everything one screen (or one text snapshot) shows.
    pub fn snapshot(&self, watched: &Watched, view: &View, paused: bool) -> Snapshot {
        Snapshot {
            header: Header {
                watched: watched.clone(),
                samples_per_sec: self.stats.samples_per_second(),
                total_samples: self.stats.total_samples(),
                threads: self.stats.threads_seen(),
                processes: self.stats.processes_seen(),
                errors: self.errors.saturating_sub(self.errors_at_reset),
                late: self.late.saturating_sub(self.late_at_reset),
                paused,
                exited: self.target_exited(),
            },
            view: *view,
            rows: self.stats.rows(view, watched.rate_hz),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Header {
    pub watched: Watched,
    /// Over the last refresh interval.
    pub samples_per_sec: Option<f64>,
    pub total_samples: u64,
    pub threads: usize,
    pub processes: usize,
    pub errors: u64,
    /// Ticks that came more than one interval late (the sampler could not keep up).
    pub late: u64,
    pub paused: bool,
    pub exited: bool,
}

impl Header {
    /// `pyspy-bpf top: pid 12 (Python 3.11.2), userspace sampling at 100 Hz`.
    pub fn title(&self) -> String {
        let w = &self.watched;
        if w.pid == 0 {
            return format!(
                "pyspy-bpf top: every process, {} sampling at {} Hz per CPU",
                w.mode, w.rate_hz
            );
        }
        format!(
            "pyspy-bpf top: pid {} (Python {}), {} sampling at {} Hz",
            w.pid, w.version, w.mode, w.rate_hz
        )
    }

    /// `PAUSED`, `process 12 exited`, both, or nothing.
    pub fn state(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.exited {
            parts.push(format!("process {} exited", self.watched.pid));
        }
        if self.paused {
            parts.push("PAUSED".to_string());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// `samples: 99/s, 1234 total; threads: 1; processes: 1; errors: 0; late: 0`.
    pub fn counters(&self) -> String {
        let rate = match self.samples_per_sec {
            Some(r) => format!("{r:.0}/s"),
            None => "-/s".to_string(),
        };
        let late = if self.watched.mode == "bpf" {
            "lost"
        } else {
            "late"
        };
        format!(
            "samples: {rate}, {} total; threads: {}; processes: {}; errors: {}; {late}: {}",
            self.total_samples, self.threads, self.processes, self.errors, self.late
        )
    }
}

/// One screenful: header, presentation and rows (all of them; the display cuts).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub header: Header,
    pub view: View,
    pub rows: Vec<Row>,
}

/// The last column's heading for a view.
pub fn function_heading(view: &View) -> &'static str {
    if view.line_numbers {
        "Function (file:line)"
    } else {
        "Function (file)"
    }
}
