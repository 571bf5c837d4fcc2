//! `top` when stdout is not a terminal: every refresh interval, print a plain-text snapshot
//! (a line with the time, the header, the top rows) until sampling ends or Ctrl-C.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::stats::format_secs;
use super::{function_heading, lock, Shared, Snapshot, View, Watched};

/// Rows per snapshot.
pub const TEXT_ROWS: usize = 20;

/// Print snapshots to `out` every `delay` until `stop` is set or sampling ends (then one last
/// snapshot). A closed pipe (`top | head`) ends quietly.
pub fn run(
    shared: &Shared,
    watched: &Watched,
    delay: Duration,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut next = start + delay;
    let view = View::default();
    loop {
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next || lock(shared).ended.is_some() {
                break;
            }
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
        }
        let now = Instant::now();
        let (snapshot, ended) = {
            let mut live = lock(shared);
            if live.sampler_failed {
                anyhow::bail!("the sampling thread failed");
            }
            live.rotate(now);
            (live.snapshot(watched, &view, false), live.ended.is_some())
        };
        let text = render(&snapshot, TEXT_ROWS, &stamp(now - start));
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
        if ended {
            return Ok(());
        }
        next += delay;
        if next < now {
            next = now + delay;
        }
    }
}

/// `12:34:56 UTC (+3.0s)`.
fn stamp(since_start: Duration) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{:02}:{:02}:{:02} UTC (+{:.1}s)",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        since_start.as_secs_f64()
    )
}

/// One snapshot: `--- STAMP ---`, title, counters, column headings and up to `max_rows` rows.
pub fn render(snapshot: &Snapshot, max_rows: usize, stamp: &str) -> String {
    let h = &snapshot.header;
    let per_process = h.watched.subprocesses;
    let mut out = String::new();
    let _ = writeln!(out, "--- {stamp} ---");
    match h.state() {
        Some(state) => {
            let _ = writeln!(out, "{} -- {state}", h.title());
        }
        None => {
            let _ = writeln!(out, "{}", h.title());
        }
    }
    let _ = writeln!(out, "{}", h.counters());
    if per_process {
        let _ = write!(out, "{:>7} ", "PID");
    }
    let _ = writeln!(
        out,
        "{:>7} {:>7} {:>9} {:>10}  {}",
        "%Own",
        "%Total",
        "OwnTime",
        "TotalTime",
        function_heading(&snapshot.view)
    );
    for row in snapshot.rows.iter().take(max_rows) {
        if per_process {
            let pid = row.pid.map(|p| p.to_string()).unwrap_or_default();
            let _ = write!(out, "{pid:>7} ");
        }
        let _ = writeln!(
            out,
            "{:>6.1}% {:>6.1}% {:>9} {:>10}  {}",
            row.own_pct,
            row.total_pct,
            format_secs(row.own_secs),
            format_secs(row.total_secs),
            row.label()
        );
    }
    if snapshot.rows.is_empty() {
        let _ = writeln!(out, "(no samples yet)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::{Header, Row};

    fn snapshot(subprocesses: bool, exited: bool) -> Snapshot {
        Snapshot {
            header: Header {
                watched: Watched {
                    mode: "userspace",
                    pid: 42,
                    version: "3.11.2".into(),
                    rate_hz: 100,
                    subprocesses,
                },
                samples_per_sec: Some(99.4),
                total_samples: 500,
                threads: 2,
                processes: 1,
                errors: 3,
                late: 1,
                paused: false,
                exited,
            },
            view: View::default(),
            rows: (0..30)
                .map(|i| Row {
                    pid: subprocesses.then_some(42),
                    function: format!("f{i}"),
                    location: Some(format!("app.py:{i}")),
                    own_pct: 50.0 - i as f64,
                    total_pct: 60.0,
                    own_secs: 1.5,
                    total_secs: 2.0,
                })
                .collect(),
        }
    }

    #[test]
    fn renders_header_and_top_rows() {
        let text = render(&snapshot(false, false), 20, "00:00:01 UTC (+1.0s)");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "--- 00:00:01 UTC (+1.0s) ---");
        assert_eq!(
            lines[1],
            "pyspy-bpf top: pid 42 (Python 3.11.2), userspace sampling at 100 Hz"
        );
        assert_eq!(
            lines[2],
            "samples: 99/s, 500 total; threads: 2; processes: 1; errors: 3; late: 1"
        );
        assert_eq!(
            lines[3],
            "   %Own  %Total   OwnTime  TotalTime  Function (file:line)"
        );
        assert_eq!(
            lines[4],
            "  50.0%   60.0%     1.50s      2.00s  f0 (app.py:0)"
        );
        assert_eq!(lines.len(), 4 + 20);
    }

    #[test]
    fn shows_exit_and_process_column() {
        let text = render(&snapshot(true, true), 2, "t");
        assert!(text.contains("Hz -- process 42 exited\n"), "{text}");
        assert!(text.contains("    PID    %Own"), "{text}");
        assert!(text.contains("     42   50.0%"), "{text}");
    }
}
