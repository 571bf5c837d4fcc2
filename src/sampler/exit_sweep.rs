//! Finding the processes of a long run that exited, so that their state (attached
//! interpreter, code caches, BPF map entries, symbolizer and unwinder state) is dropped
//! rather than kept for the rest of the run. A cheap periodic sweep, not a check per
//! sample: every `interval`, at most `batch` processes are looked at (`/proc/PID/stat`),
//! taking turns, so its cost per sweep is bounded however many processes a host runs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::process::proc;

/// How often the sweep runs by default.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How many processes one sweep looks at by default (~10 µs of /proc read each).
pub const SWEEP_BATCH: usize = 512;

pub struct ExitSweep {
    interval: Duration,
    batch: usize,
    last: Instant,
    /// Pids still to look at in this round; refilled from the table when empty.
    pending: VecDeque<u32>,
}

impl Default for ExitSweep {
    fn default() -> Self {
        ExitSweep::new(SWEEP_INTERVAL, SWEEP_BATCH)
    }
}

impl ExitSweep {
    pub fn new(interval: Duration, batch: usize) -> Self {
        ExitSweep {
            interval,
            batch: batch.max(1),
            last: Instant::now(),
            pending: VecDeque::new(),
        }
    }

    /// When a sweep is due: the known processes (pid and the start time recorded when it was
    /// first seen, in clock ticks; 0 if unknown) of up to `batch` processes that exited or
    /// whose pid now names another process. `known` lists the table (pid, start time); it is
    /// read only to start a new round.
    pub fn due(&mut self, known: impl Fn() -> Vec<(u32, u64)>) -> Vec<u32> {
        if self.last.elapsed() < self.interval {
            return Vec::new();
        }
        self.last = Instant::now();
        self.sweep(known)
    }

    /// One sweep, whether due or not.
    pub fn sweep(&mut self, known: impl Fn() -> Vec<(u32, u64)>) -> Vec<u32> {
        let table: HashMap<u32, u64> = known().into_iter().collect();
        if self.pending.is_empty() {
            self.pending.extend(table.keys());
        }
        let mut gone = Vec::new();
        for _ in 0..self.batch {
            let Some(pid) = self.pending.pop_front() else {
                break;
            };
            // (A pid dropped from the table since the round started is skipped.)
            let Some(&start_time) = table.get(&pid) else {
                continue;
            };
            if has_exited(pid, start_time) {
                gone.push(pid);
            }
        }
        gone
    }
}

/// Whether process `pid`, started at `start_time` (clock ticks; 0: unknown), is gone: its
/// /proc entry vanished, or the pid now names a process that started at another time.
pub fn has_exited(pid: u32, start_time: u64) -> bool {
    match proc::start_time(pid) {
        Ok(now) => start_time != 0 && now != start_time,
        // Root reads every /proc/PID/stat: an error means the process is gone (or is a
        // zombie whose stat we cannot parse: gone as well, for our purposes).
        Err(_) => !proc::exists(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exited_process_is_found_and_a_live_one_is_not() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let start = proc::start_time(pid).expect("start time");
        let me = std::process::id();
        let my_start = proc::start_time(me).expect("own start time");
        let table = move || vec![(me, my_start), (pid, start)];
        let mut sweep = ExitSweep::new(Duration::ZERO, 16);
        assert!(sweep.sweep(table).is_empty());
        // A pid reused by another process: a different start time.
        assert!(has_exited(me, my_start + 1));
        assert!(!has_exited(me, 0));
        child.kill().expect("kill");
        child.wait().expect("reap");
        assert_eq!(sweep.sweep(table), vec![pid]);
    }

    #[test]
    fn each_sweep_looks_at_a_bounded_batch_and_takes_turns() {
        // Pids far above any pid_max: all "exited".
        let table = || (0..10u32).map(|i| (u32::MAX - i, 1)).collect::<Vec<_>>();
        let mut sweep = ExitSweep::new(Duration::ZERO, 4);
        let rounds: Vec<Vec<u32>> = (0..3).map(|_| sweep.sweep(table)).collect();
        assert_eq!(rounds.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let mut seen: Vec<u32> = rounds.concat();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10, "every process is looked at once per round");
        // Not due again before the interval.
        let mut slow = ExitSweep::new(Duration::from_secs(3600), 4);
        assert!(slow.due(table).is_empty());
    }
}
