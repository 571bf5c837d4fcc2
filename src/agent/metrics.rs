//! The agent's own metrics, served as Prometheus text on `--metrics-addr` (`GET /metrics`):
//! samples, lost samples by reason, Python processes, windows per sink (exported, failed,
//! dropped, queued), bytes sent, and the agent's CPU time and resident memory.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::sink::SinkMetrics;

/// A per-sink metric: name, type, help, and which counter.
type PerSink = (
    &'static str,
    &'static str,
    &'static str,
    fn(&SinkMetrics) -> &AtomicU64,
);

#[derive(Debug, Default)]
pub struct Metrics {
    pub samples: AtomicU64,
    pub python_samples: AtomicU64,
    pub python_errors: AtomicU64,
    /// Python processes attached over the run, and attached now.
    pub python_attached: AtomicU64,
    pub processes_live: AtomicU64,
    /// Windows cut, and the profiles in the last one.
    pub windows: AtomicU64,
    pub last_window_profiles: AtomicU64,
    /// Windows the exporter could not take (its queue was full).
    pub windows_dropped: AtomicU64,
    pub config_reloads: AtomicU64,
    pub config_reload_errors: AtomicU64,
    pub lost: Mutex<Vec<(&'static str, u64)>>,
    pub sinks: Mutex<Vec<(String, &'static str, Arc<SinkMetrics>)>>,
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "pyspy_bpf_samples_total",
            "Samples recorded.",
            get(&self.samples),
        );
        counter(
            &mut out,
            "pyspy_bpf_python_samples_total",
            "Samples of Python processes.",
            get(&self.python_samples),
        );
        counter(
            &mut out,
            "pyspy_bpf_python_read_errors_total",
            "Samples whose Python stack could not be read in full.",
            get(&self.python_errors),
        );
        let _ = writeln!(
            out,
            "# HELP pyspy_bpf_lost_samples_total Samples lost or damaged, by reason.\n# TYPE pyspy_bpf_lost_samples_total counter"
        );
        for (reason, n) in self.lost.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "pyspy_bpf_lost_samples_total{{reason=\"{reason}\"}} {n}"
            );
        }
        counter(
            &mut out,
            "pyspy_bpf_python_processes_attached_total",
            "Python processes attached since the start.",
            get(&self.python_attached),
        );
        gauge(
            &mut out,
            "pyspy_bpf_processes",
            "Processes the sampler holds state for now.",
            get(&self.processes_live) as f64,
        );
        counter(
            &mut out,
            "pyspy_bpf_windows_total",
            "Windows cut.",
            get(&self.windows),
        );
        gauge(
            &mut out,
            "pyspy_bpf_last_window_profiles",
            "Profiles in the last window.",
            get(&self.last_window_profiles) as f64,
        );
        counter(
            &mut out,
            "pyspy_bpf_windows_dropped_total",
            "Windows dropped before reaching the sinks (export queue full).",
            get(&self.windows_dropped),
        );
        counter(
            &mut out,
            "pyspy_bpf_config_reloads_total",
            "Configuration reloads (SIGHUP) applied.",
            get(&self.config_reloads),
        );
        counter(
            &mut out,
            "pyspy_bpf_config_reload_errors_total",
            "Configuration reloads refused (the old one was kept).",
            get(&self.config_reload_errors),
        );
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let per_sink: [PerSink; 7] = [
            (
                "pyspy_bpf_sink_exported_total",
                "counter",
                "Windows delivered (files written, requests accepted).",
                |m| &m.exported,
            ),
            (
                "pyspy_bpf_sink_failed_total",
                "counter",
                "Delivery attempts that failed and are retried.",
                |m| &m.failed,
            ),
            (
                "pyspy_bpf_sink_dropped_total",
                "counter",
                "Windows given up (queue or backlog full).",
                |m| &m.dropped,
            ),
            (
                "pyspy_bpf_sink_rejected_total",
                "counter",
                "Windows the receiver refused for good.",
                |m| &m.rejected,
            ),
            (
                "pyspy_bpf_sink_queued",
                "gauge",
                "Windows waiting, in memory and in the backlog.",
                |m| &m.queued,
            ),
            (
                "pyspy_bpf_sink_backlog_bytes",
                "gauge",
                "Bytes in the on-disk backlog.",
                |m| &m.backlog_bytes,
            ),
            (
                "pyspy_bpf_sink_sent_bytes_total",
                "counter",
                "Bytes delivered.",
                |m| &m.bytes_sent,
            ),
        ];
        for (name, kind, help, field) in per_sink {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sink, sink_type, m) in &sinks {
                let _ = writeln!(
                    out,
                    "{name}{{sink=\"{sink}\",type=\"{sink_type}\"}} {}",
                    field(m).load(Ordering::Relaxed)
                );
            }
        }
        gauge(
            &mut out,
            "process_cpu_seconds_total",
            "The agent's CPU time (user and system), in seconds.",
            own_cpu_seconds(),
        );
        gauge(
            &mut out,
            "process_resident_memory_bytes",
            "The agent's resident memory.",
            own_rss_bytes() as f64,
        );
        out
    }
}

/// This process's user + system CPU time, all threads (`/proc/self/stat`).
pub fn own_cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15, counted after the `comm` field's closing paren
    // (a name may hold spaces), in USER_HZ ticks, which the kernel ABI fixes at 100.
    const USER_HZ: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // rest starts at field 3 (state): field N is at index N - 3.
    (field(14 - 3) + field(15 - 3)) as f64 / USER_HZ
}

/// This process's resident set size (`/proc/self/status`, `VmRSS`).
pub fn own_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Binds `addr` now (a taken port is an error before anything starts) and serves the metrics
/// on a thread of its own, one connection at a time, each bounded in time and size.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("metrics_addr {addr}: cannot listen: {e}"))?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = answer(stream, &metrics);
            }
        })
        .map_err(|e| format!("metrics: cannot start its thread: {e}"))?;
    Ok(())
}

fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while request.len() < 8192 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line =
        String::from_utf8_lossy(request.split(|&b| b == b'\n').next().unwrap_or(&[])).to_string();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/") => (
            "200 OK",
            "text/plain",
            "pyspy-bpf agent: see /metrics\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
