//! One worker thread per sink: its own bounded queue, delivery oldest first, retries with
//! exponential backoff and jitter, and (for the HTTP sinks) an on-disk backlog that holds
//! what could not be sent while the sink fails and survives a restart. Nothing here blocks
//! the sampler: windows are handed over with `try_send`, and a full queue is counted and
//! logged. Every window that is not delivered is counted (`dropped`, `rejected`) and logged.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::agent::backlog::Backlog;
use crate::agent::config::{SinkConfig, SinkKind};
use crate::agent::delivery::Delivery;
use crate::agent::http::HttpSink;
use crate::agent::spool::Spool;

/// How a sink sends one delivery.
pub trait Transport: Send {
    /// Sends `d`; `Ok` with the bytes sent.
    fn send(&mut self, d: &Delivery) -> Result<u64, SendError>;
    fn describe(&self) -> String;
}

#[derive(Debug)]
pub enum SendError {
    /// Worth trying again later (the server or the disk may come back).
    Retry(String),
    /// This delivery will never be accepted.
    Reject(String),
}

/// A sink's counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Deliveries sent (spool files written, requests accepted).
    pub exported: AtomicU64,
    /// Attempts that failed and will be retried.
    pub failed: AtomicU64,
    /// Deliveries given up: the queue or the backlog was full.
    pub dropped: AtomicU64,
    /// Deliveries the receiver refused for good.
    pub rejected: AtomicU64,
    /// Waiting now, in memory and in the backlog.
    pub queued: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// Deliveries waiting to be handed to the worker (a window makes one per profile), and their
/// bytes: the worker takes them at once unless it is stuck in a request (up to its timeout).
const QUEUE_DELIVERIES: usize = 4096;
const QUEUE_BYTES: u64 = 64 << 20;
/// Bytes of deliveries a worker keeps in memory; more go to its backlog, or (spool) the
/// oldest are dropped.
const MEMORY_BYTES: usize = 64 << 20;
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Deliveries sent in a row before the worker looks at its queue again.
const MAX_PER_ROUND: usize = 64;

enum Msg {
    Deliver(Delivery),
    /// Deliver what can be delivered before the deadline, keep the rest in the backlog, stop.
    Finish(Instant),
}

pub struct SinkHandle {
    pub name: String,
    pub config: SinkConfig,
    pub state_dir: std::path::PathBuf,
    pub metrics: Arc<SinkMetrics>,
    tx: SyncSender<Msg>,
    /// Bytes of deliveries sent to the worker and not taken yet.
    in_queue: Arc<AtomicU64>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl SinkHandle {
    /// Opens the sink (its spool or backlog directory) and starts its worker; an error is one
    /// line saying which sink and what.
    pub fn start(config: &SinkConfig, state_dir: &Path) -> Result<SinkHandle, String> {
        let name = config.name.clone();
        let (transport, backlog): (Box<dyn Transport>, Option<Backlog>) = match &config.kind {
            SinkKind::Spool { dir, max_bytes } => (Box::new(Spool::open(dir, *max_bytes)?), None),
            SinkKind::Pyroscope { url, tenant, auth } => (
                Box::new(HttpSink::new(url, None, tenant.clone(), auth.clone())),
                Some(open_backlog(state_dir, config)?),
            ),
            SinkKind::Otlp { url, auth } => (
                Box::new(HttpSink::new(
                    url,
                    Some("/v1development/profiles"),
                    None,
                    auth.clone(),
                )),
                Some(open_backlog(state_dir, config)?),
            ),
        };
        let metrics = Arc::new(SinkMetrics::default());
        let (tx, rx) = mpsc::sync_channel(QUEUE_DELIVERIES);
        let in_queue = Arc::new(AtomicU64::new(0));
        let (done_tx, done) = mpsc::channel();
        let mut worker = Worker {
            in_queue: in_queue.clone(),
            name: name.clone(),
            transport,
            backlog,
            pending: VecDeque::new(),
            pending_bytes: 0,
            metrics: metrics.clone(),
            failing: 0,
            next_try: Instant::now(),
            backoff: Backoff::new(),
        };
        if let Some(b) = &worker.backlog {
            if !b.is_empty() {
                log::info!(
                    "sink {name}: {} windows ({} KiB) left by an earlier run in {}; sending them first",
                    b.len(),
                    b.bytes() >> 10,
                    b.path().display()
                );
            }
        }
        worker.update_gauges();
        log::info!("sink {name}: {}", worker.transport.describe());
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                worker.run(rx);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("sink {name}: cannot start its thread: {e}"))?;
        Ok(SinkHandle {
            name,
            config: config.clone(),
            state_dir: state_dir.to_path_buf(),
            metrics,
            tx,
            in_queue,
            done,
            thread: Some(thread),
        })
    }

    /// Hands `deliveries` to the worker without waiting; a full queue drops (counted, logged).
    pub fn submit(&self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            let size = d.body.len() as u64;
            if self.in_queue.load(Ordering::Relaxed) + size > QUEUE_BYTES {
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "sink {}: queue full ({} MiB waiting), window of {} dropped",
                    self.name,
                    QUEUE_BYTES >> 20,
                    d.service
                );
                continue;
            }
            self.in_queue.fetch_add(size, Ordering::Relaxed);
            match self.tx.try_send(Msg::Deliver(d)) {
                Ok(()) => {}
                Err(
                    TrySendError::Full(Msg::Deliver(d))
                    | TrySendError::Disconnected(Msg::Deliver(d)),
                ) => {
                    self.in_queue.fetch_sub(size, Ordering::Relaxed);
                    self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "sink {}: queue full, window of {} dropped",
                        self.name,
                        d.service
                    );
                }
                Err(_) => {}
            }
        }
    }

    /// Asks the worker to deliver what it can before `deadline`, keep the rest in its backlog,
    /// and stop; `Finishing::wait` waits for it (so that several sinks finish at once).
    pub fn begin_finish(self, deadline: Instant) -> Finishing {
        let _ = self.tx.send(Msg::Finish(deadline));
        Finishing { sink: self }
    }

    /// `begin_finish` and `wait`.
    pub fn finish(self, deadline: Instant) {
        self.begin_finish(deadline).wait(deadline);
    }
}

/// A sink finishing its last deliveries.
pub struct Finishing {
    sink: SinkHandle,
}

impl Finishing {
    /// Waits until the worker stopped; one stuck in a request past the deadline is left behind
    /// (and logged).
    pub fn wait(mut self, deadline: Instant) {
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        let s = &mut self.sink;
        match s.done.recv_timeout(grace) {
            Ok(()) => {
                if let Some(t) = s.thread.take() {
                    let _ = t.join();
                }
            }
            Err(_) => log::warn!(
                "sink {}: still sending at the end of the flush timeout; {} windows not delivered",
                s.name,
                s.metrics.queued.load(Ordering::Relaxed)
            ),
        }
    }
}

fn open_backlog(state_dir: &Path, config: &SinkConfig) -> Result<Backlog, String> {
    Backlog::open(state_dir, &config.name, config.backlog_bytes)
        .map_err(|e| format!("sink {}: backlog directory: {e}", config.name))
}

struct Worker {
    /// Shared with the handle: bytes sent to us and not taken yet.
    in_queue: Arc<AtomicU64>,
    name: String,
    transport: Box<dyn Transport>,
    backlog: Option<Backlog>,
    /// Newer than everything in the backlog.
    pending: VecDeque<Delivery>,
    pending_bytes: usize,
    metrics: Arc<SinkMetrics>,
    /// Failed attempts in a row.
    failing: u64,
    next_try: Instant,
    backoff: Backoff,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            let wait = match self.has_work() {
                true => self.next_try.saturating_duration_since(Instant::now()),
                false => Duration::from_secs(3600),
            };
            match rx.recv_timeout(wait) {
                Ok(Msg::Deliver(d)) => self.accept(d),
                Ok(Msg::Finish(deadline)) => {
                    // Whatever is still queued behind the Finish arrived before it.
                    while let Ok(Msg::Deliver(d)) = rx.try_recv() {
                        self.accept(d);
                    }
                    self.drain(deadline);
                    self.persist_pending();
                    self.update_gauges();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.persist_pending();
                    return;
                }
            }
            if Instant::now() >= self.next_try {
                self.attempt_round();
            }
            self.update_gauges();
        }
    }

    fn has_work(&self) -> bool {
        !self.pending.is_empty() || self.backlog.as_ref().is_some_and(|b| !b.is_empty())
    }

    fn accept(&mut self, d: Delivery) {
        self.in_queue
            .fetch_sub(d.body.len() as u64, Ordering::Relaxed);
        if self.failing > 0 && self.backlog.is_some() {
            // While the sink fails, windows wait on disk: a crash or restart keeps them.
            self.save_to_backlog(d);
            return;
        }
        self.pending_bytes += d.body.len();
        self.pending.push_back(d);
        while self.pending_bytes > MEMORY_BYTES {
            let Some(oldest) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= oldest.body.len();
            match self.backlog.is_some() {
                true => self.save_to_backlog(oldest),
                false => self.drop_delivery(&oldest, "the sink's memory queue is full"),
            }
        }
    }

    fn save_to_backlog(&mut self, d: Delivery) {
        let Some(backlog) = self.backlog.as_mut() else {
            return;
        };
        match backlog.push(&d) {
            Ok(dropped) if dropped.files > 0 => {
                self.metrics
                    .dropped
                    .fetch_add(dropped.files, Ordering::Relaxed);
                log::warn!(
                    "sink {}: backlog over its size, {} oldest windows ({} KiB) dropped",
                    self.name,
                    dropped.files,
                    dropped.bytes >> 10
                );
            }
            Ok(_) => {}
            Err(e) => self.drop_delivery(&d, &format!("cannot write the backlog: {e}")),
        }
    }

    fn drop_delivery(&self, d: &Delivery, why: &str) {
        self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "sink {}: window of {} ({}s..{}s) dropped: {why}",
            self.name,
            d.service,
            d.window_start_unix_ns / 1_000_000_000,
            d.window_end_unix_ns / 1_000_000_000
        );
    }

    /// Moves what waits in memory to the backlog (kept across a restart).
    fn persist_pending(&mut self) {
        if self.backlog.is_none() {
            for d in std::mem::take(&mut self.pending) {
                self.drop_delivery(&d, "not delivered before the agent stopped");
            }
            self.pending_bytes = 0;
            return;
        }
        while let Some(d) = self.pending.pop_front() {
            self.pending_bytes -= d.body.len();
            self.save_to_backlog(d);
        }
    }

    /// The oldest waiting delivery: the backlog's first, else memory's.
    fn oldest(&mut self) -> Option<(Delivery, bool)> {
        if let Some(backlog) = self.backlog.as_mut() {
            while let Some(read) = backlog.oldest() {
                match read {
                    Ok(d) => return Some((d, true)),
                    Err(e) => {
                        self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                        log::warn!("sink {}: backlog file dropped: {e}", self.name);
                    }
                }
            }
        }
        self.pending.front().map(|d| (d.clone(), false))
    }

    fn remove_oldest(&mut self, from_backlog: bool) {
        match from_backlog {
            true => {
                if let Some(b) = self.backlog.as_mut() {
                    b.pop();
                }
            }
            false => {
                if let Some(d) = self.pending.pop_front() {
                    self.pending_bytes -= d.body.len();
                }
            }
        }
    }

    /// Sends oldest first until one fails or `MAX_PER_ROUND` went. Returns false on failure.
    fn attempt_round(&mut self) -> bool {
        for _ in 0..MAX_PER_ROUND {
            let Some((d, from_backlog)) = self.oldest() else {
                return true;
            };
            match self.transport.send(&d) {
                Ok(bytes) => {
                    self.metrics.exported.fetch_add(1, Ordering::Relaxed);
                    self.metrics.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                    self.remove_oldest(from_backlog);
                    if self.failing > 0 {
                        log::info!(
                            "sink {}: delivering again after {} failed attempts",
                            self.name,
                            self.failing
                        );
                        self.failing = 0;
                        self.backoff = Backoff::new();
                    }
                }
                Err(SendError::Reject(why)) => {
                    self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                    self.remove_oldest(from_backlog);
                    log::warn!(
                        "sink {}: window of {} rejected, dropped: {why}",
                        self.name,
                        d.service
                    );
                }
                Err(SendError::Retry(why)) => {
                    self.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    self.failing += 1;
                    let delay = self.backoff.next();
                    self.next_try = Instant::now() + delay;
                    log::warn!(
                        "sink {}: {why}; retrying in {:.1}s ({} windows waiting)",
                        self.name,
                        delay.as_secs_f64(),
                        self.waiting()
                    );
                    self.persist_pending();
                    return false;
                }
            }
        }
        true
    }

    /// At shutdown: one more try of everything waiting (ignoring the backoff) until the
    /// deadline or the first failure.
    fn drain(&mut self, deadline: Instant) {
        while self.has_work() && Instant::now() < deadline {
            if !self.attempt_round() {
                break;
            }
        }
    }

    fn waiting(&self) -> u64 {
        self.pending.len() as u64 + self.backlog.as_ref().map_or(0, |b| b.len() as u64)
    }

    fn update_gauges(&self) {
        self.metrics.queued.store(self.waiting(), Ordering::Relaxed);
        self.metrics.backlog_bytes.store(
            self.backlog.as_ref().map_or(0, |b| b.bytes()),
            Ordering::Relaxed,
        );
    }
}

/// Exponential backoff with jitter: each delay is drawn between half and all of a ceiling
/// that doubles from `BACKOFF_FIRST` to `BACKOFF_MAX`, so that many agents that lost the same
/// receiver do not come back in step.
struct Backoff {
    ceiling: Duration,
    state: u64,
}

impl Backoff {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Backoff {
            ceiling: BACKOFF_FIRST,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> Duration {
        // xorshift64: jitter needs no more than this.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let fraction = 0.5 + (self.state % 1000) as f64 / 2000.0;
        let delay = self.ceiling.mul_f64(fraction);
        self.ceiling = (self.ceiling * 2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| b.next()).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= BACKOFF_FIRST);
        assert!(delays[3] >= Duration::from_secs(4));
        for d in &delays {
            assert!(*d <= BACKOFF_MAX);
        }
        assert!(delays[9] >= BACKOFF_MAX / 2);
    }

    /// A transport that fails `fail` times, then records what it sends.
    struct Flaky {
        fail: usize,
        sent: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Transport for Flaky {
        fn send(&mut self, d: &Delivery) -> Result<u64, SendError> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err(SendError::Retry("down".into()));
            }
            self.sent.lock().unwrap().push(d.service.clone());
            Ok(d.body.len() as u64)
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    fn delivery(service: &str) -> Delivery {
        Delivery {
            window_start_unix_ns: 0,
            window_end_unix_ns: 1,
            service: service.into(),
            target: "/x".into(),
            content_type: "x".into(),
            body: vec![1; 100],
        }
    }

    #[test]
    fn a_failing_sink_keeps_order_and_delivers_everything_later() {
        let dir = std::env::temp_dir().join(format!("pyspy-bpf-sink-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = Worker {
            in_queue: Arc::new(AtomicU64::new(1 << 20)),
            name: "t".into(),
            transport: Box::new(Flaky {
                fail: 2,
                sent: sent.clone(),
            }),
            backlog: Some(Backlog::open(&dir, "t", 1 << 20).unwrap()),
            pending: VecDeque::new(),
            pending_bytes: 0,
            metrics: Arc::new(SinkMetrics::default()),
            failing: 0,
            next_try: Instant::now(),
            backoff: Backoff::new(),
        };
        w.accept(delivery("a"));
        assert!(!w.attempt_round());
        // Failing: new windows go to the backlog behind the first.
        w.accept(delivery("b"));
        assert_eq!(w.backlog.as_ref().unwrap().len(), 2);
        assert!(!w.attempt_round());
        w.accept(delivery("c"));
        assert!(w.attempt_round());
        assert_eq!(*sent.lock().unwrap(), vec!["a", "b", "c"]);
        assert_eq!(w.metrics.failed.load(Ordering::Relaxed), 2);
        assert_eq!(w.metrics.exported.load(Ordering::Relaxed), 3);
        assert_eq!(w.waiting(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
