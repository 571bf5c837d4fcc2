//! `pyspy-bpf agent`: the BPF sampler host-wide, windows cut every interval, and an exporter
//! thread that encodes each window for every sink and hands it to the sink's worker.
//!
//! Threads: the sampler (this one: samples -> `WindowBuilder`), the exporter (windows ->
//! deliveries), one worker per sink (deliveries -> the wire, with retries and a backlog) and
//! the metrics server. Between them are bounded queues fed with `try_send`, so a slow or dead
//! sink never holds up sampling; what a full queue refuses is counted and logged.
//!
//! Signals: SIGTERM/SIGINT end the run: the current window is cut and every sink gets up to
//! `flush_timeout` to deliver it (what it cannot goes to its backlog); a second one exits at
//! once. SIGHUP re-reads the config file: labels, interval, grouping and sinks change in
//! place; the sampler's own settings (rate, event, `--native`, `python_only`, metrics address)
//! need a restart, and a reload that changes them says so.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::agent::config::{self, AgentConfig, Overrides, SinkConfig};
use crate::agent::delivery;
use crate::agent::metrics::{self, Metrics};
use crate::agent::sink::SinkHandle;
use crate::agent::window::{hostname, Window, WindowBuilder, WindowSettings};
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig, Scope, DEFAULT_STACK_COPY};
use crate::sampler::source::{BpfSource, Progress, Source};

/// Windows waiting for the exporter: more means the exporter is stuck, and the newest are
/// dropped (counted) rather than held in memory.
const EXPORT_QUEUE: usize = 8;

enum ExportMsg {
    Window(Window),
    Sinks(Vec<SinkConfig>, PathBuf),
    Finish(Instant),
}

/// Runs until SIGTERM or SIGINT; 0 after a clean shutdown.
pub fn run(config_file: Option<&Path>, overrides: Overrides) -> anyhow::Result<i32> {
    let config = config::load(config_file, &overrides).map_err(anyhow::Error::msg)?;
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while the last windows are flushed exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone())
            .context("cannot install the signal handlers")?;
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install the signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("cannot install the SIGHUP handler")?;

    let metrics = Arc::new(Metrics::default());
    // Every sink is opened before sampling starts: an unwritable spool is an error now.
    let sinks =
        start_sinks(&config.sinks, &config.state_dir, &metrics).map_err(anyhow::Error::msg)?;
    if let Some(addr) = config.metrics_addr {
        metrics::serve(addr, metrics.clone()).map_err(anyhow::Error::msg)?;
    }
    let bpf_config = sampler_config(&config);
    let sampler = bpf_source::start(&bpf_config).context("the agent needs the BPF sampler")?;
    let (export_tx, export_rx) = mpsc::sync_channel(EXPORT_QUEUE);
    let exporter = {
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("exporter".into())
            .spawn(move || export(export_rx, sinks, &metrics))
            .context("cannot start the exporter thread")?
    };
    log::info!(
        "agent: sampling {} on {} CPUs at {} Hz, windows of {:?}, sinks: {}",
        if config.python_only {
            "Python processes"
        } else {
            "every process"
        },
        crate::bpf::online_cpus().map_or(0, |c| c.len()),
        config.rate_hz,
        config.interval,
        config
            .sinks
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let builder = RefCell::new(WindowBuilder::new(window_settings(&config)));
    let mut running = config.clone();
    let mut source = BpfSource::new(sampler, bpf_config);
    let result = source
        .run(
            None,
            &stop,
            &mut || true,
            &mut |sample| builder.borrow_mut().add(sample.stack, &sample.process),
            &mut |status| {
                publish(&metrics, status);
                let mut b = builder.borrow_mut();
                if b.elapsed() >= running.interval || b.is_full() {
                    hand_over(&export_tx, b.cut(), &metrics);
                    // The window just handed over, and the last one encoded, are freed memory
                    // now: give it back, so RSS follows what is live (see own_heap).
                    crate::process::own_heap::release_free_memory();
                }
                if hup.swap(false, Ordering::Relaxed) {
                    reload(
                        config_file,
                        &overrides,
                        &mut running,
                        &mut b,
                        &export_tx,
                        &metrics,
                    );
                }
            },
        )
        .context("BPF sampling failed")?;
    let stats = &result.stats;
    publish(
        &metrics,
        &Progress {
            samples: stats.samples,
            errors: stats.python_errors,
            processes: stats.processes_live as usize,
            elapsed: result.end.elapsed,
            python_samples: stats.python_samples,
            python_attached: stats.python_attached,
            lost_by_name: source
                .summary
                .as_ref()
                .map(|s| s.lost.clone())
                .unwrap_or_default(),
            ..Progress::default()
        },
    );
    // The last window, however short: SIGTERM must not lose what was sampled since the cut.
    let last = builder.borrow_mut().cut();
    log::info!(
        "agent: stopping; flushing the last window ({} samples, {} profiles), at most {:?}",
        last.samples(),
        last.profiles.len(),
        running.flush_timeout
    );
    let _ = export_tx.send(ExportMsg::Window(last));
    let _ = export_tx.send(ExportMsg::Finish(Instant::now() + running.flush_timeout));
    drop(export_tx);
    let _ = exporter.join();
    log::info!(
        "agent: stopped after {:.0}s: {} samples, {} windows",
        result.end.elapsed.as_secs_f64(),
        stats.samples,
        metrics.windows.load(Ordering::Relaxed)
    );
    Ok(0)
}

fn sampler_config(config: &AgentConfig) -> BpfSourceConfig {
    BpfSourceConfig {
        rate_hz: config.rate_hz,
        event: config.event,
        scope: Scope::All,
        python_only: config.python_only,
        gil_only: false,
        include_idle: false,
        // Kernel frames are kept for processes that are not Python (Python stacks are their
        // Python frames, or the mixed stack with `--native`).
        kernel_stacks: !config.python_only || config.native,
        thread_names: true,
        native: config.native.then_some(DEFAULT_STACK_COPY),
        off_cpu_min_ns: None,
    }
}

fn window_settings(config: &AgentConfig) -> WindowSettings {
    WindowSettings {
        rate_hz: config.rate_hz,
        group_by: config.group_by,
        labels: config.labels.clone(),
        hostname: hostname(),
    }
}

fn start_sinks(
    configs: &[SinkConfig],
    state_dir: &Path,
    metrics: &Metrics,
) -> Result<Vec<SinkHandle>, String> {
    let mut sinks = Vec::new();
    for c in configs {
        match SinkHandle::start(c, state_dir) {
            Ok(s) => sinks.push(s),
            Err(e) => {
                for s in sinks {
                    s.finish(Instant::now());
                }
                return Err(e);
            }
        }
    }
    *metrics.sinks.lock().unwrap_or_else(|p| p.into_inner()) = sinks
        .iter()
        .map(|s| (s.name.clone(), s.config.kind.type_name(), s.metrics.clone()))
        .collect();
    Ok(sinks)
}

/// The sampler's counters, for the metrics endpoint.
fn publish(metrics: &Metrics, s: &Progress) {
    metrics.samples.store(s.samples, Ordering::Relaxed);
    metrics
        .python_samples
        .store(s.python_samples, Ordering::Relaxed);
    metrics.python_errors.store(s.errors, Ordering::Relaxed);
    metrics
        .python_attached
        .store(s.python_attached, Ordering::Relaxed);
    metrics
        .processes_live
        .store(s.processes as u64, Ordering::Relaxed);
    *metrics.lost.lock().unwrap_or_else(|p| p.into_inner()) = s.lost_by_name.clone();
}

fn hand_over(tx: &SyncSender<ExportMsg>, window: Window, metrics: &Metrics) {
    metrics.windows.fetch_add(1, Ordering::Relaxed);
    metrics
        .last_window_profiles
        .store(window.profiles.len() as u64, Ordering::Relaxed);
    if window.profiles.is_empty() {
        return;
    }
    match tx.try_send(ExportMsg::Window(window)) {
        Ok(()) => {}
        Err(
            TrySendError::Full(ExportMsg::Window(w))
            | TrySendError::Disconnected(ExportMsg::Window(w)),
        ) => {
            metrics.windows_dropped.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "agent: exporter behind, window of {} profiles ({} samples) dropped",
                w.profiles.len(),
                w.samples()
            );
        }
        Err(_) => {}
    }
}

/// SIGHUP: the config file again. A bad one is refused whole (the running config stays).
fn reload(
    file: Option<&Path>,
    overrides: &Overrides,
    running: &mut AgentConfig,
    builder: &mut WindowBuilder,
    export_tx: &SyncSender<ExportMsg>,
    metrics: &Metrics,
) {
    let new = match config::load(file, overrides) {
        Ok(c) => c,
        Err(e) => {
            metrics.config_reload_errors.fetch_add(1, Ordering::Relaxed);
            log::error!("agent: config reload refused, keeping the running one: {e}");
            return;
        }
    };
    let mut needs_restart = Vec::new();
    if new.rate_hz != running.rate_hz {
        needs_restart.push("rate");
    }
    if new.event != running.event {
        needs_restart.push("event");
    }
    if new.native != running.native {
        needs_restart.push("native");
    }
    if new.python_only != running.python_only {
        needs_restart.push("python_only");
    }
    if new.metrics_addr != running.metrics_addr {
        needs_restart.push("metrics_addr");
    }
    if !needs_restart.is_empty() {
        log::warn!(
            "agent: config reload: {} take effect only after a restart",
            needs_restart.join(", ")
        );
    }
    let mut settings = window_settings(&new);
    settings.rate_hz = running.rate_hz;
    builder.set_settings(settings);
    if new.sinks != running.sinks || new.state_dir != running.state_dir {
        let _ = export_tx.send(ExportMsg::Sinks(new.sinks.clone(), new.state_dir.clone()));
    }
    let keep = running.clone();
    *running = AgentConfig {
        rate_hz: keep.rate_hz,
        event: keep.event,
        native: keep.native,
        python_only: keep.python_only,
        metrics_addr: keep.metrics_addr,
        ..new
    };
    metrics.config_reloads.fetch_add(1, Ordering::Relaxed);
    log::info!("agent: config reloaded");
}

/// The exporter thread: windows to deliveries for every sink; sink changes; the final flush.
fn export(rx: Receiver<ExportMsg>, mut sinks: Vec<SinkHandle>, metrics: &Metrics) {
    while let Ok(msg) = rx.recv() {
        match msg {
            ExportMsg::Window(window) => {
                for sink in &sinks {
                    sink.submit(delivery::encode(&sink.config.kind, &window));
                }
            }
            ExportMsg::Sinks(configs, state_dir) => {
                // The old workers first: they put what they could not send in their backlogs,
                // which the new sink of the same name then picks up (one owner at a time).
                let old: Vec<(SinkConfig, PathBuf)> = sinks
                    .iter()
                    .map(|s| (s.config.clone(), s.state_dir.clone()))
                    .collect();
                finish_all(
                    std::mem::take(&mut sinks),
                    Instant::now() + Duration::from_secs(5),
                );
                sinks = match start_sinks(&configs, &state_dir, metrics) {
                    Ok(new) => {
                        log::info!(
                            "agent: sinks now: {}",
                            new.iter()
                                .map(|s| s.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                        new
                    }
                    Err(e) => {
                        log::error!("agent: config reload: the new sinks cannot start ({e}); restarting the old ones");
                        restart(&old, metrics)
                    }
                };
            }
            ExportMsg::Finish(deadline) => {
                finish_all(std::mem::take(&mut sinks), deadline);
                return;
            }
        }
    }
    finish_all(sinks, Instant::now());
}

fn restart(old: &[(SinkConfig, PathBuf)], metrics: &Metrics) -> Vec<SinkHandle> {
    let mut sinks = Vec::new();
    for (config, state_dir) in old {
        match SinkHandle::start(config, state_dir) {
            Ok(s) => sinks.push(s),
            Err(e) => log::error!("agent: sink {} lost: {e}", config.name),
        }
    }
    *metrics.sinks.lock().unwrap_or_else(|p| p.into_inner()) = sinks
        .iter()
        .map(|s| (s.name.clone(), s.config.kind.type_name(), s.metrics.clone()))
        .collect();
    sinks
}

fn finish_all(sinks: Vec<SinkHandle>, deadline: Instant) {
    let waiting: Vec<_> = sinks
        .into_iter()
        .map(|s| s.begin_finish(deadline))
        .collect();
    for w in waiting {
        w.wait(deadline);
    }
}
