//! Jitter of the sampling period. A timer event fires every `1/rate` seconds exactly, and code
//! that loops with a period near a multiple (or simple fraction) of that lands at the same
//! point of its loop sample after sample: the samples alias with it, and a profile of a
//! periodic program (a benchmark loop, an event loop, a fixed-rate worker) swings by several
//! percentage points from one second to the next and from run to run. Measured here on a loop
//! of three functions (52/29/19% of the time) at 1 kHz: the largest one's per-second share had
//! a standard deviation of 0.057 with the fixed period against 0.021 with the user-space
//! sampler's jittered timer (binomial noise alone: 0.016); `diff` then saw run-to-run variation
//! that was not in the program.
//!
//! So, for the clock events (whose period is in nanoseconds), a thread sets every CPU's event
//! to a new random period every few samples (`PERF_EVENT_IOC_PERIOD`): the rate multiplier is
//! uniform in [1 - SPREAD, 1 + SPREAD], so the phase of the samples in a loop moves by a
//! random amount at every change, and the mean rate stays the one asked for. A change restarts
//! the event's timer (the kernel sets the period left to zero), which drops half a period per
//! change on average: the window's rate is raised by that much to keep the mean rate exact.
//! Cost: one ioctl per CPU per window (at least `MIN_WINDOW`, and at least 1 ms per CPU, so
//! at most ~1000 a second on any host).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::perf;

/// The rate multiplier's half-width.
const SPREAD: f64 = 0.2;
/// Samples per window (per CPU) between period changes, on average. Each change costs an ioctl
/// and a wake-up of the jitter thread (~10 µs of the profiler's CPU in this VM): at 16 samples
/// a window that was 2.6 µs a sample at 1 kHz, +30% on the profiler's CPU per sample (bench
/// cpu_per_sample); at 64 it is +5%. Blocks of 250 samples of tests/scripts/three_functions.py
/// at 1 kHz still vary as binomial noise says (SD 0.017–0.029 in 4 runs against 0.032), where
/// the fixed period gave 0.027–0.105.
const SAMPLES_PER_WINDOW: f64 = 64.0;
const MIN_WINDOW: Duration = Duration::from_millis(10);
const MAX_WINDOW: Duration = Duration::from_millis(250);

/// The thread that changes the periods; stopped (and joined) by [`PeriodJitter::stop`] or drop.
pub struct PeriodJitter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeriodJitter {
    /// Starts changing the period of each of `events` (perf event descriptors of a clock event
    /// opened at `rate_hz`). The descriptors must stay open until [`stop`](Self::stop) returns.
    pub fn start(events: Vec<RawFd>, rate_hz: u64) -> std::io::Result<PeriodJitter> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("period-jitter".into())
                .spawn(move || run(&events, rate_hz, &stop))?
        };
        Ok(PeriodJitter {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it: no period is changed after this returns.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                log::warn!("the sampling-period jitter thread panicked");
            }
        }
    }
}

impl Drop for PeriodJitter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The mean window between changes for `cpus` events at `rate_hz`.
fn window(rate_hz: u64, cpus: usize) -> Duration {
    let by_samples = Duration::from_secs_f64(SAMPLES_PER_WINDOW / rate_hz.max(1) as f64);
    // At most ~1000 ioctls a second (each interrupts its CPU).
    let by_cpus = Duration::from_millis(cpus as u64);
    by_samples.max(by_cpus).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The period (ns) for a window of `window` at `rate_hz` with rate multiplier `v`: raised by
/// the half period each change loses on average (the first sample after a change comes a full
/// period after it), so that a window holds `window * rate_hz * v` samples on average.
fn period_ns(rate_hz: u64, v: f64, window: Duration) -> u64 {
    let rate = rate_hz.max(1) as f64 * v;
    let expected = window.as_secs_f64() * rate;
    let boost = if expected > 0.0 {
        1.0 + 0.5 / expected
    } else {
        1.0
    };
    (1e9 / (rate * boost)).max(10_000.0) as u64
}

fn run(events: &[RawFd], rate_hz: u64, stop: &AtomicBool) {
    let mean = window(rate_hz, events.len());
    let mut rng = Rng::seeded();
    while !stop.load(Ordering::Acquire) {
        // The windows vary too (±50%), so that changes do not come at a fixed rhythm either.
        let w = mean.mul_f64(0.5 + rng.unit());
        for &fd in events {
            let v = 1.0 - SPREAD + 2.0 * SPREAD * rng.unit();
            if let Err(e) = perf::set_period(fd, period_ns(rate_hz, v, w)) {
                log::info!("cannot vary the sampling period ({e}); sampling at a fixed period, which may alias with periodic code");
                return;
            }
        }
        let until = Instant::now() + w;
        while !stop.load(Ordering::Acquire) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
        }
    }
}

/// xorshift64*: plenty for jitter, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Rng((t ^ u64::from(std::process::id()).rotate_left(32)) | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_hold_about_sixty_four_samples_within_bounds() {
        assert_eq!(window(1000, 2), Duration::from_millis(64));
        // 100 Hz: capped, ~25 samples a window; 19 Hz: ~5.
        assert_eq!(window(100, 2), MAX_WINDOW);
        assert_eq!(window(19, 2), MAX_WINDOW);
        // A big host at 1 kHz: at most ~1000 changes a second.
        assert_eq!(window(1000, 64), Duration::from_millis(64));
        assert_eq!(window(100_000, 1), MIN_WINDOW);
    }

    #[test]
    fn the_mean_rate_is_the_one_asked_for() {
        // Simulate windows: each change restarts the timer, so a window of w at period p
        // holds floor((w - p) / p) + 1 samples when w >= p, with the first one a full period
        // after the change (the rest of w is lost).
        let mut rng = Rng(12345);
        for rate in [19u64, 100, 1000] {
            let mean = window(rate, 2);
            let (mut samples, mut seconds) = (0u64, 0.0f64);
            for _ in 0..20_000 {
                let w = mean.mul_f64(0.5 + rng.unit());
                let v = 1.0 - SPREAD + 2.0 * SPREAD * rng.unit();
                let p = period_ns(rate, v, w) as f64 / 1e9;
                // Where the previous window's last sample fell does not matter: the change
                // restarts the timer.
                samples += (w.as_secs_f64() / p).floor() as u64;
                seconds += w.as_secs_f64();
            }
            let measured = samples as f64 / seconds;
            assert!(
                (measured / rate as f64 - 1.0).abs() < 0.03,
                "{rate} Hz: {measured:.2} samples a second"
            );
        }
    }

    #[test]
    fn rates_spread_around_one() {
        let mut rng = Rng(7);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert!(draws.iter().all(|&d| (0.0..1.0).contains(&d)));
    }
}
