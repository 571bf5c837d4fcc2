//! The aggregation behind `top`: per-function own/total sample counts (cumulative, and per
//! refresh interval like py-spy's top), and the sorted rows a view shows. Knows nothing about
//! terminals, so it is tested on its own.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::escape::printable;
use crate::frames::shorten_filename;
use crate::model::{Frame, StackTrace};

/// The column rows are sorted by (keys `1`-`4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    OwnPct,
    TotalPct,
    OwnTime,
    TotalTime,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [
        SortKey::OwnPct,
        SortKey::TotalPct,
        SortKey::OwnTime,
        SortKey::TotalTime,
    ];

    /// The column heading.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::OwnPct => "%Own",
            SortKey::TotalPct => "%Total",
            SortKey::OwnTime => "OwnTime",
            SortKey::TotalTime => "TotalTime",
        }
    }

    /// `'1'`..`'4'` -> the column.
    pub fn from_digit(c: char) -> Option<SortKey> {
        match c {
            '1' => Some(SortKey::OwnPct),
            '2' => Some(SortKey::TotalPct),
            '3' => Some(SortKey::OwnTime),
            '4' => Some(SortKey::TotalTime),
            _ => None,
        }
    }
}

/// How the rows are presented; changed by keys, never touches the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub sort: SortKey,
    /// Smallest first instead of largest first.
    pub reversed: bool,
    /// `function (file:line)` rows; off: one row per function, `function (file)`.
    pub line_numbers: bool,
    /// Order rows by process first (only meaningful with `--subprocesses`).
    pub group_by_process: bool,
}

impl Default for View {
    fn default() -> Self {
        View {
            sort: SortKey::OwnPct,
            reversed: false,
            line_numbers: true,
            group_by_process: false,
        }
    }
}

impl View {
    /// Sort by `key`; pressing the current key again reverses the order.
    pub fn press_sort(&mut self, key: SortKey) {
        if self.sort == key {
            self.reversed = !self.reversed;
        } else {
            self.sort = key;
            self.reversed = false;
        }
    }

    /// "%Own (largest first)".
    pub fn describe_sort(&self) -> String {
        format!(
            "{} ({})",
            self.sort.label(),
            if self.reversed {
                "smallest first"
            } else {
                "largest first"
            }
        )
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The process, with `--subprocesses`.
    pub pid: Option<u32>,
    pub function: String,
    /// `file:line`, `file`, or nothing for a truncated/unknown frame.
    pub location: Option<String>,
    /// Share of the samples of the last refresh interval where this is the leaf.
    pub own_pct: f64,
    /// Share of the samples of the last refresh interval where this is anywhere on the stack.
    pub total_pct: f64,
    /// Cumulative (since start or reset), in seconds: samples / rate.
    pub own_secs: f64,
    pub total_secs: f64,
}

impl Row {
    /// `function (file:line)`.
    /// `function (file:line)` as shown on a terminal: names from the target are escaped.
    pub fn label(&self) -> String {
        let function = printable(&self.function);
        match &self.location {
            Some(loc) => format!("{function} ({})", printable(loc)),
            None => function.into_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// 0 unless rows are per process.
    pid: u32,
    name: String,
    file: Option<String>,
    line: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    own: u64,
    total: u64,
    window_own: u64,
    window_total: u64,
    last_own: u64,
    last_total: u64,
}

/// Counts of every function seen since the start or the last reset.
#[derive(Debug, Clone)]
pub struct TopStats {
    per_process: bool,
    /// Full file paths in rows (`--full-filenames`), else short ones.
    pub full_filenames: bool,
    /// Wall-clock weights (`top --idle` with BPF): each sample counts the nanoseconds it
    /// stands for, so shares are of wall time; else each counts 1 (a sampling period).
    pub weights_in_ns: bool,
    samples: u64,
    window_samples: u64,
    /// The weights of the samples in the current and the last completed interval.
    window_weight: u64,
    last_weight: Option<u64>,
    /// Samples of the last completed interval; `None` until one completed.
    last_samples: Option<u64>,
    last_interval: Duration,
    by_line: HashMap<Key, Counts>,
    by_function: HashMap<Key, Counts>,
    threads: HashSet<(u32, u32, u64)>,
    processes: HashSet<u32>,
}

impl TopStats {
    /// `per_process`: rows are (process, function) instead of function.
    pub fn new(per_process: bool) -> Self {
        TopStats {
            per_process,
            full_filenames: false,
            weights_in_ns: false,
            samples: 0,
            window_samples: 0,
            window_weight: 0,
            last_weight: None,
            last_samples: None,
            last_interval: Duration::ZERO,
            by_line: HashMap::new(),
            by_function: HashMap::new(),
            threads: HashSet::new(),
            processes: HashSet::new(),
        }
    }

    pub fn per_process(&self) -> bool {
        self.per_process
    }

    /// Count one thread's stack (leaf first). Each function counts once per stack toward
    /// its total, however often it recurses.
    pub fn add(&mut self, stack: &StackTrace) {
        self.add_weighted(stack, 1);
    }

    /// Count one stack with a weight (nanoseconds when `weights_in_ns`).
    pub fn add_weighted(&mut self, stack: &StackTrace, weight: u64) {
        self.samples += 1;
        self.window_samples += 1;
        self.window_weight += weight;
        self.threads
            .insert((stack.pid, stack.tid.unwrap_or(0), stack.thread_ident));
        self.processes.insert(stack.pid);
        let pid = if self.per_process { stack.pid } else { 0 };
        for (line_numbers, table) in [(true, &mut self.by_line), (false, &mut self.by_function)] {
            let keys: Vec<Key> = stack
                .frames
                .iter()
                .map(|f| key(pid, f, line_numbers, self.full_filenames))
                .collect();
            let mut seen: HashSet<&Key> = HashSet::with_capacity(keys.len());
            for (i, k) in keys.iter().enumerate() {
                let first = seen.insert(k);
                if i > 0 && !first {
                    continue;
                }
                let c = table.entry(k.clone()).or_default();
                if i == 0 {
                    c.own += weight;
                    c.window_own += weight;
                }
                if first {
                    c.total += weight;
                    c.window_total += weight;
                }
            }
        }
    }

    /// End the current refresh interval (which lasted `elapsed`): percentages now show it.
    pub fn rotate(&mut self, elapsed: Duration) {
        for table in [&mut self.by_line, &mut self.by_function] {
            for c in table.values_mut() {
                c.last_own = std::mem::take(&mut c.window_own);
                c.last_total = std::mem::take(&mut c.window_total);
            }
        }
        self.last_samples = Some(std::mem::take(&mut self.window_samples));
        self.last_weight = Some(std::mem::take(&mut self.window_weight));
        self.last_interval = elapsed;
    }

    /// Forget everything (key `R`).
    pub fn reset(&mut self) {
        *self = TopStats {
            full_filenames: self.full_filenames,
            weights_in_ns: self.weights_in_ns,
            ..TopStats::new(self.per_process)
        };
    }

    /// Samples since the start or the last reset.
    pub fn total_samples(&self) -> u64 {
        self.samples
    }

    /// Samples in the interval not yet rotated out.
    pub fn window_samples(&self) -> u64 {
        self.window_samples
    }

    /// Whether an interval completed since the start or the last reset.
    pub fn has_completed_interval(&self) -> bool {
        self.last_samples.is_some()
    }

    /// Samples per second over the last completed interval.
    pub fn samples_per_second(&self) -> Option<f64> {
        let n = self.last_samples?;
        let secs = self.last_interval.as_secs_f64();
        (secs > 0.0).then(|| n as f64 / secs)
    }

    pub fn threads_seen(&self) -> usize {
        self.threads.len()
    }

    pub fn processes_seen(&self) -> usize {
        self.processes.len()
    }

    /// The rows of `view`, sorted. Times are samples / `rate_hz` (or nanoseconds / 1e9 when
    /// `weights_in_ns`).
    pub fn rows(&self, view: &View, rate_hz: u32) -> Vec<Row> {
        let table = if view.line_numbers {
            &self.by_line
        } else {
            &self.by_function
        };
        // Before the first interval completes, show the one in progress.
        let completed = self.last_samples.is_some();
        let shown = |c: &Counts| {
            if completed {
                (c.last_own, c.last_total)
            } else {
                (c.window_own, c.window_total)
            }
        };
        let denominator = self.last_weight.unwrap_or(self.window_weight);
        let mut entries: Vec<(&Key, &Counts)> = table.iter().collect();
        entries.sort_by(|(ka, a), (kb, b)| {
            let (a_own, a_total) = shown(a);
            let (b_own, b_total) = shown(b);
            // The chosen column, then the others as tie-breakers, largest first.
            let columns = |own, total, c: &Counts| match view.sort {
                SortKey::OwnPct => [own, total, c.own, c.total],
                SortKey::TotalPct => [total, own, c.total, c.own],
                SortKey::OwnTime => [c.own, c.total, own, total],
                SortKey::TotalTime => [c.total, c.own, total, own],
            };
            let mut by_value = columns(b_own, b_total, b).cmp(&columns(a_own, a_total, a));
            if view.reversed {
                by_value = by_value.reverse();
            }
            let by_process = if view.group_by_process {
                ka.pid.cmp(&kb.pid)
            } else {
                Ordering::Equal
            };
            by_process
                .then(by_value)
                .then_with(|| (&ka.name, &ka.file, ka.line).cmp(&(&kb.name, &kb.file, kb.line)))
        });
        // Weights per second: samples at the rate, or nanoseconds.
        let rate = match self.weights_in_ns {
            true => 1e9,
            false => f64::from(rate_hz.max(1)),
        };
        let pct = |n: u64| {
            if denominator == 0 {
                0.0
            } else {
                100.0 * n as f64 / denominator as f64
            }
        };
        entries
            .into_iter()
            .map(|(k, c)| {
                let (own, total) = shown(c);
                Row {
                    pid: self.per_process.then_some(k.pid),
                    function: k.name.clone(),
                    location: match (&k.file, k.line) {
                        (Some(f), Some(l)) => Some(format!("{f}:{l}")),
                        (Some(f), None) => Some(f.clone()),
                        (None, _) => None,
                    },
                    own_pct: pct(own),
                    total_pct: pct(total),
                    own_secs: c.own as f64 / rate,
                    total_secs: c.total as f64 / rate,
                }
            })
            .collect()
    }
}

fn key(pid: u32, frame: &Frame, line_numbers: bool, full_filenames: bool) -> Key {
    match frame {
        Frame::Python(f) => Key {
            pid,
            name: f.function.clone(),
            file: Some(match full_filenames {
                true => f.filename.clone(),
                false => shorten_filename(&f.filename).to_string(),
            }),
            line: line_numbers.then_some(f.line),
        },
        // Native and kernel frames have no line: the same row in both views.
        Frame::Native(f) => Key {
            pid,
            name: f.name.clone(),
            file: (!f.module.is_empty()).then(|| f.module.clone()),
            line: None,
        },
        Frame::Kernel(name) => Key {
            pid,
            name: format!("{name} (kernel)"),
            file: None,
            line: None,
        },
        Frame::Truncated(r) => Key {
            pid,
            name: format!("<truncated: {}>", r.as_str()),
            file: None,
            line: None,
        },
        Frame::Unknown(r) => Key {
            pid,
            name: format!("<unknown frame: {}>", r.as_str()),
            file: None,
            line: None,
        },
        Frame::GilWait => Key {
            pid,
            name: crate::model::GIL_WAIT.to_string(),
            file: None,
            line: None,
        },
    }
}

/// Seconds as a short duration: `4.25s`, `2:03.50`, `1:02:03`.
pub fn format_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    if secs < 60.0 {
        return format!("{secs:.2}s");
    }
    let whole = secs as u64;
    if whole < 3600 {
        return format!("{}:{:05.2}", whole / 60, secs - (whole / 60 * 60) as f64);
    }
    format!("{}:{:02}:{:02}", whole / 3600, whole / 60 % 60, whole % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PyFrame, Reason};

    fn py(function: &str, line: u32) -> Frame {
        Frame::Python(PyFrame {
            function: function.into(),
            filename: "/home/me/app.py".into(),
            line,
            first_line: 1,
        })
    }

    /// A stack given root first, as people write them.
    fn stack(pid: u32, root_first: Vec<Frame>) -> StackTrace {
        let mut frames = root_first;
        frames.reverse();
        StackTrace {
            pid,
            tid: Some(pid),
            thread_name: None,
            thread_ident: 1,
            active: true,
            owns_gil: Some(true),
            frames,
        }
    }

    fn labels(rows: &[Row]) -> Vec<String> {
        rows.iter().map(Row::label).collect()
    }

    fn find<'a>(rows: &'a [Row], label: &str) -> &'a Row {
        rows.iter()
            .find(|r| r.label() == label)
            .unwrap_or_else(|| panic!("no row {label}: {:?}", labels(rows)))
    }

    #[test]
    fn own_and_total_with_recursion_counted_once() {
        let mut s = TopStats::new(false);
        for _ in 0..3 {
            s.add(&stack(
                1,
                vec![py("main", 10), py("hot", 2), py("hot", 3), py("hot", 3)],
            ));
        }
        s.add(&stack(1, vec![py("main", 11), py("cold", 5)]));
        assert_eq!(s.total_samples(), 4);
        let rows = s.rows(&View::default(), 100);
        // "hot (app.py:3)" is the leaf 3 times and appears (twice per stack) in 3 stacks.
        let hot3 = find(&rows, "hot (app.py:3)");
        assert_eq!((hot3.own_pct, hot3.total_pct), (75.0, 75.0));
        assert!((hot3.own_secs - 0.03).abs() < 1e-9);
        let hot2 = find(&rows, "hot (app.py:2)");
        assert_eq!((hot2.own_pct, hot2.total_pct), (0.0, 75.0));
        assert_eq!(rows[0].label(), "hot (app.py:3)");
        assert_eq!(rows[1].label(), "cold (app.py:5)");

        // By function: hot counts once per stack although it is on it three times.
        let by_function = View {
            line_numbers: false,
            ..View::default()
        };
        let rows = s.rows(&by_function, 100);
        let hot = find(&rows, "hot (app.py)");
        assert_eq!((hot.own_pct, hot.total_pct), (75.0, 75.0));
        let main = find(&rows, "main (app.py)");
        assert_eq!((main.own_pct, main.total_pct), (0.0, 100.0));
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn sorting_and_reversing() {
        let mut s = TopStats::new(false);
        for _ in 0..5 {
            s.add(&stack(1, vec![py("main", 1), py("a", 1)]));
        }
        for _ in 0..2 {
            s.add(&stack(1, vec![py("main", 1), py("b", 1)]));
        }
        let mut view = View::default();
        assert_eq!(labels(&s.rows(&view, 100))[0], "a (app.py:1)");
        view.press_sort(SortKey::TotalPct);
        assert_eq!(
            labels(&s.rows(&view, 100)),
            ["main (app.py:1)", "a (app.py:1)", "b (app.py:1)"]
        );
        view.press_sort(SortKey::TotalPct);
        assert!(view.reversed);
        assert_eq!(labels(&s.rows(&view, 100))[0], "b (app.py:1)");
        view.press_sort(SortKey::OwnTime);
        assert!(!view.reversed);
        assert_eq!(labels(&s.rows(&view, 100))[0], "a (app.py:1)");
        assert_eq!(SortKey::from_digit('4'), Some(SortKey::TotalTime));
        assert_eq!(SortKey::from_digit('5'), None);
    }

    #[test]
    fn percentages_follow_the_last_interval_times_accumulate() {
        let mut s = TopStats::new(false);
        for _ in 0..10 {
            s.add(&stack(1, vec![py("a", 1)]));
        }
        // The interval in progress is shown until one completes.
        assert_eq!(s.rows(&View::default(), 10)[0].own_pct, 100.0);
        s.rotate(Duration::from_secs(1));
        assert_eq!(s.samples_per_second(), Some(10.0));
        for _ in 0..10 {
            s.add(&stack(1, vec![py("b", 1)]));
        }
        // Still the completed interval: all "a".
        let rows = s.rows(&View::default(), 10);
        assert_eq!(find(&rows, "a (app.py:1)").own_pct, 100.0);
        assert_eq!(find(&rows, "b (app.py:1)").own_pct, 0.0);
        s.rotate(Duration::from_millis(500));
        assert_eq!(s.samples_per_second(), Some(20.0));
        let rows = s.rows(&View::default(), 10);
        assert_eq!(rows[0].label(), "b (app.py:1)");
        assert_eq!(rows[0].own_pct, 100.0);
        // Times are cumulative.
        assert_eq!(find(&rows, "a (app.py:1)").own_secs, 1.0);
        assert_eq!(find(&rows, "a (app.py:1)").own_pct, 0.0);
        assert_eq!(s.total_samples(), 20);

        s.reset();
        assert_eq!(s.total_samples(), 0);
        assert!(s.rows(&View::default(), 10).is_empty());
        assert_eq!(s.samples_per_second(), None);
    }

    #[test]
    fn per_process_rows_and_grouping() {
        let mut s = TopStats::new(true);
        for _ in 0..3 {
            s.add(&stack(20, vec![py("work", 1)]));
        }
        s.add(&stack(10, vec![py("work", 1)]));
        s.add(&stack(10, vec![py("idle", 1)]));
        assert_eq!(s.processes_seen(), 2);
        assert_eq!(s.threads_seen(), 2);
        let rows = s.rows(&View::default(), 100);
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].pid, rows[0].function.as_str()), (Some(20), "work"));
        let grouped = View {
            group_by_process: true,
            ..View::default()
        };
        let pids: Vec<_> = s.rows(&grouped, 100).iter().map(|r| r.pid).collect();
        assert_eq!(pids, [Some(10), Some(10), Some(20)]);
        assert!(TopStats::new(false).rows(&grouped, 100).is_empty());
    }

    #[test]
    fn truncated_and_empty_stacks() {
        let mut s = TopStats::new(false);
        s.add(&stack(1, vec![]));
        s.add(&stack(
            1,
            vec![Frame::Truncated(Reason::DepthLimit), py("deep", 1)],
        ));
        let rows = s.rows(&View::default(), 100);
        assert_eq!(s.total_samples(), 2);
        assert_eq!(find(&rows, "deep (app.py:1)").own_pct, 50.0);
        assert_eq!(find(&rows, "<truncated: depth limit>").total_pct, 50.0);
    }

    #[test]
    fn native_and_kernel_frames() {
        use crate::model::NativeFrame;
        let mut s = TopStats::new(false);
        s.add(&stack(
            1,
            vec![
                py("main", 3),
                Frame::Native(NativeFrame {
                    name: "compress".into(),
                    module: "libz.so.1".into(),
                    offset: Some(0x1234),
                }),
                Frame::Kernel("do_syscall_64".into()),
            ],
        ));
        let rows = s.rows(&View::default(), 100);
        assert_eq!(rows[0].label(), "do_syscall_64 (kernel)");
        find(&rows, "compress (libz.so.1)");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_secs(0.0), "0.00s");
        assert_eq!(format_secs(4.256), "4.26s");
        assert_eq!(format_secs(123.5), "2:03.50");
        assert_eq!(format_secs(3723.0), "1:02:03");
        assert_eq!(format_secs(f64::NAN), "-");
    }
}
