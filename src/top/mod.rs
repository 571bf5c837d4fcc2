//! `top`: a live view of where one Python program (tree) spends its CPU. `stats` aggregates
//! (no terminal knowledge), `ui` is the full-screen ratatui view, `text` prints snapshots when
//! stdout is not a terminal. The sampler thread and the display share one [`Live`] behind a
//! mutex, held only to add a tick's stacks or to take a snapshot.

pub mod stats;
pub mod text;
pub mod ui;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::sampler::source::Sample;
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

    /// One sample of a source. With wall-clock weights (`stats.weights_in_ns`) it counts the
    /// nanoseconds it stands for: its time off the CPU, or one sampling period of `period_ns`
    /// for a running thread; else it counts 1.
    pub fn add_sample(&mut self, sample: &Sample, period_ns: u64) {
        let weight = match self.stats.weights_in_ns {
            true => sample.wall_ns(period_ns),
            false => 1,
        };
        self.stats.add_weighted(sample.stack, weight);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Frame, PyFrame, StackTrace};
    use crate::sampler::source::SampleProcess;
    use std::collections::HashMap;
    use std::time::Duration;

    /// 100 Hz: one on-CPU sample stands for 10 ms.
    const PERIOD_NS: u64 = 10_000_000;

    fn stack(leaf: &str) -> StackTrace {
        let frame = |function: &str, line| {
            Frame::Python(PyFrame {
                function: function.into(),
                filename: "/srv/app.py".into(),
                line,
                first_line: 1,
            })
        };
        StackTrace {
            pid: 7,
            tid: Some(7),
            thread_name: None,
            thread_ident: 1,
            active: true,
            owns_gil: None,
            frames: vec![frame(leaf, 2), frame("main", 1)],
        }
    }

    /// One sample of `stack`: of a running thread (`off_cpu_ns` 0), or of one away that long.
    fn add(live: &mut Live, stack: &StackTrace, off_cpu_ns: u64) {
        live.add_sample(
            &Sample {
                stack,
                process: SampleProcess {
                    pid: stack.pid,
                    name: "python3",
                    details: &crate::process::details::UNKNOWN,
                    python: None,
                    start_time: 0,
                },
                time_unix_ns: 0,
                off_cpu_ns,
                locals: None,
            },
            PERIOD_NS,
        );
    }

    /// (own %, total %, own seconds) of each function row, by name.
    fn shares(live: &Live) -> HashMap<String, (f64, f64, f64)> {
        let watched = Watched {
            mode: "bpf",
            pid: 7,
            version: "3.12.1".into(),
            rate_hz: 100,
            subprocesses: false,
        };
        let view = View {
            line_numbers: false,
            ..View::default()
        };
        live.snapshot(&watched, &view, false)
            .rows
            .into_iter()
            .map(|r| (r.function, (r.own_pct, r.total_pct, r.own_secs)))
            .collect()
    }

    fn close(actual: (f64, f64, f64), expected: (f64, f64, f64)) -> bool {
        (actual.0 - expected.0).abs() < 1e-9
            && (actual.1 - expected.1).abs() < 1e-9
            && (actual.2 - expected.2).abs() < 1e-9
    }

    #[test]
    fn wall_clock_shares_are_by_time_not_by_sample_count() {
        let (busy, sleeping) = (stack("busy"), stack("sleeping"));
        let now = Instant::now();
        let mut wall = Live::new(false, now);
        wall.stats.weights_in_ns = true;
        let mut counted = Live::new(false, now);
        // Nine samples of a thread on the CPU (10 ms each) and one of a thread that slept
        // 910 ms: 1 s in all, 91% of it asleep, although that is 1 sample in 10.
        for live in [&mut wall, &mut counted] {
            for _ in 0..9 {
                add(live, &busy, 0);
            }
            add(live, &sleeping, 910_000_000);
        }
        let rows = shares(&wall);
        assert!(close(rows["sleeping"], (91.0, 91.0, 0.91)), "{rows:?}");
        assert!(close(rows["busy"], (9.0, 9.0, 0.09)), "{rows:?}");
        assert!(close(rows["main"], (0.0, 100.0, 0.0)), "{rows:?}");
        assert_eq!(wall.stats.total_samples(), 10);
        let view = View::default();
        let first = &wall.stats.rows(&view, 100)[0];
        assert_eq!(first.function, "sleeping", "sorted by time, not count");
        // Without wall-clock weights, every sample is one period and the time away is ignored.
        let rows = shares(&counted);
        assert!(close(rows["sleeping"], (10.0, 10.0, 0.01)), "{rows:?}");
        assert!(close(rows["busy"], (90.0, 90.0, 0.09)), "{rows:?}");

        // A completed interval's shares are of that interval's time; times accumulate.
        wall.rotate(now + Duration::from_secs(1));
        for _ in 0..30 {
            add(&mut wall, &busy, 0);
        }
        add(&mut wall, &sleeping, 100_000_000);
        let rows = shares(&wall);
        assert!(
            close(rows["sleeping"], (91.0, 91.0, 1.01)),
            "the last interval: {rows:?}"
        );
        wall.rotate(now + Duration::from_secs(2));
        let rows = shares(&wall);
        // 300 ms busy, 100 ms asleep.
        assert!(close(rows["busy"], (75.0, 75.0, 0.39)), "{rows:?}");
        assert!(close(rows["sleeping"], (25.0, 25.0, 1.01)), "{rows:?}");
        // A reset keeps weighing by time.
        wall.reset(now + Duration::from_secs(2));
        add(&mut wall, &busy, 0);
        add(&mut wall, &sleeping, 30_000_000);
        let rows = shares(&wall);
        assert!(close(rows["sleeping"], (75.0, 75.0, 0.03)), "{rows:?}");
    }
}
