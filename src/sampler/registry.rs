//! The processes a run meets, for both samplers: each attached once, tried again while its
//! interpreter is still starting (or after it execs one), replaced when its pid is reused,
//! and dropped when it exits. The BPF sampler meets processes in its samples (the whole host
//! with `--all`), the user-space sampler among the target's descendants (`--subprocesses`),
//! and `cli::target` waits here for the one process a verb is given ([`attach_when_ready`]).
//!
//! A sampler keeps its own state of a process beside the registry's ([`KnownProcess::extra`]),
//! so that it goes with the process; what lives elsewhere (symbolizer, unwinder, the BPF
//! program's maps) it drops when [`ProcessRegistry::observe`] says the pid was reused or
//! [`ProcessRegistry::sweep_exited`] hands back an exited process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::process::details::ProcessDetails;
use crate::process::proc;
use crate::python::{AttachError, PythonProcess};
use crate::sampler::exit_sweep::ExitSweep;

/// How often a known process is looked at again: its start time (pid reuse, where the
/// sampler is not told it otherwise) and, if it is not Python, whether it is now.
pub const RECHECK: Duration = Duration::from_secs(1);
/// How soon a process whose interpreter was still starting is tried again.
pub const RETRY_STARTING: Duration = Duration::from_millis(20);
/// Quick retries (every `RETRY_STARTING`) before a process falls back to `RECHECK`: an
/// interpreter that has not started in a second is not starting, it is something else.
pub const MAX_QUICK_RETRIES: u32 = 50;
/// How often [`attach_when_ready`] tries its one process: a program we started is attached
/// within a few ms of its interpreter being up, so that its first samples are not missed.
const WAIT_POLL: Duration = Duration::from_millis(5);

pub enum Kind {
    Python(Box<PythonProcess>),
    /// Not Python, or not yet (see `KnownProcess::starting`).
    NotPython,
}

/// A process the registry knows.
pub struct KnownProcess<X> {
    /// When it started (clock ticks since boot, as in `/proc/PID/stat`; 0: unknown).
    pub start_time: u64,
    /// Its `comm` (or the name the sampler saw it under, if it is gone from /proc).
    pub name: String,
    /// Its command line and container, read when it was first met.
    pub details: ProcessDetails,
    pub kind: Kind,
    /// Tells this attach from an earlier one of the same pid (a reused pid, a retry).
    pub serial: u64,
    /// Its start as the sampler saw it (the BPF program's `process_start_ns`; 0: unknown).
    /// Once known, a sample with another start is another process under the same pid, and
    /// /proc need not be read to find out.
    pub started_ns: u64,
    /// Attaching failed in a way that passes (the interpreter is still starting): it is
    /// tried again within `RETRY_STARTING`.
    pub starting: bool,
    /// The sampler's own state of this process, which goes with it.
    pub extra: X,
    /// Attach attempts for this process so far (bounds the quick retries).
    attempts: u32,
    /// When the registry last looked at it (`RECHECK`, `RETRY_STARTING`).
    looked_at: Instant,
    /// Look at it again when next met, whenever it was last looked at (`recheck_now`).
    recheck_now: bool,
}

impl<X> KnownProcess<X> {
    pub fn is_python(&self) -> bool {
        matches!(self.kind, Kind::Python(_))
    }

    pub fn python_mut(&mut self) -> Option<&mut PythonProcess> {
        match &mut self.kind {
            Kind::Python(p) => Some(p.as_mut()),
            Kind::NotPython => None,
        }
    }

    pub fn python(&self) -> Option<&PythonProcess> {
        match &self.kind {
            Kind::Python(p) => Some(p.as_ref()),
            Kind::NotPython => None,
        }
    }
}

/// What [`ProcessRegistry::observe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    /// Known already, and unchanged.
    Known,
    /// Met for the first time (and attached if it is Python).
    New,
    /// The pid names another process than before, or the process exec'd another program
    /// (`was_python`: the earlier one was Python): the sampler drops what it kept of the
    /// earlier one.
    Replaced { was_python: bool },
    /// Not Python when last tried, tried again now; `python`: it is now.
    Retried { python: bool },
}

impl Met {
    /// Whether a process was met that the run had not counted before.
    pub fn is_new_process(self) -> bool {
        matches!(self, Met::New | Met::Replaced { .. })
    }
}

/// Which processes are worth an attach.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A cheap test run before attaching to a process met (or trying one again): reading
    /// every distinct binary of a busy host to look for CPython's symbols would cost more
    /// than the profiling. `None`: every process met is attached (a target's descendants).
    pub looks_like_python: Option<fn(u32) -> bool>,
}

pub struct ProcessRegistry<X> {
    table: HashMap<u32, KnownProcess<X>>,
    policy: Policy,
    sweep: ExitSweep,
}

impl<X: Default> ProcessRegistry<X> {
    pub fn new(policy: Policy) -> Self {
        Self::with_sweep(policy, ExitSweep::default())
    }

    fn with_sweep(policy: Policy, sweep: ExitSweep) -> Self {
        ProcessRegistry {
            table: HashMap::new(),
            policy,
            sweep,
        }
    }

    /// The process a verb was given (`--pid`, `-- CMD`): attached now, without the policy's
    /// test (it was named; an interpreter linked into a program of any name is attached).
    pub fn attach_target(&mut self, pid: u32) -> &mut KnownProcess<X> {
        let comm = proc::comm(pid).unwrap_or_default();
        let known = self.attach(pid, &comm, 0, 1, true, None);
        self.table.insert(pid, known);
        self.table.get_mut(&pid).expect("just inserted")
    }

    /// Process `pid` was met again (`name`: what the sampler saw it as; `started_ns`: its
    /// start as the sampler saw it, 0 if unknown). Attaches it the first time; attaches again
    /// a pid that now names another process, and a process that was not Python when it may
    /// be now (its interpreter was starting, or it exec'd one). Cheap when nothing changed:
    /// /proc is read at most every `RECHECK` (`RETRY_STARTING` while an interpreter starts).
    pub fn observe(
        &mut self,
        pid: u32,
        name: &str,
        started_ns: u64,
    ) -> (Met, &mut KnownProcess<X>) {
        let met = match self.table.get_mut(&pid) {
            None => Met::New,
            Some(k) if k.started_ns != 0 && started_ns != 0 && k.started_ns != started_ns => {
                Met::Replaced {
                    was_python: k.is_python(),
                }
            }
            Some(k) if !k.recheck_now && k.looked_at.elapsed() < recheck_after(k) => Met::Known,
            Some(k) => {
                k.looked_at = Instant::now();
                k.recheck_now = false;
                let reused =
                    k.started_ns == 0 && proc::start_time(pid).is_ok_and(|t| t != k.start_time);
                if reused || exec_d_another_program(pid, k) {
                    Met::Replaced {
                        was_python: k.is_python(),
                    }
                } else if !k.is_python() && (k.starting || self.policy.looks(pid)) {
                    Met::Retried { python: false }
                } else {
                    Met::Known
                }
            }
        };
        let met = match met {
            Met::Known => met,
            Met::New | Met::Replaced { .. } => {
                let known = self.attach(pid, name, started_ns, 1, false, None);
                self.table.insert(pid, known);
                met
            }
            Met::Retried { .. } => {
                // The same process, tried again: what was read of it stands.
                let (attempts, details) = self
                    .table
                    .get_mut(&pid)
                    .map(|k| (k.attempts, std::mem::take(&mut k.details)))
                    .unwrap_or_default();
                let known = self.attach(pid, name, started_ns, attempts + 1, false, Some(details));
                let python = known.is_python();
                self.table.insert(pid, known);
                Met::Retried { python }
            }
        };
        let known = self.table.get_mut(&pid).expect("known or just inserted");
        if known.started_ns == 0 {
            // Attached before its first sample (`attach_target`): from now on the samples
            // tell a reused pid.
            known.started_ns = started_ns;
        }
        (met, known)
    }

    /// Processes found exited (or whose pid now names another process) by a periodic sweep,
    /// when one is due (`exit_sweep`: a bounded batch per second), removed from the registry
    /// and handed back so that the sampler drops its own state of them. `keep`: pids the
    /// sampler keeps whatever the sweep says (the idle task; a single target, whose exit ends
    /// the run).
    pub fn sweep_exited(&mut self, keep: impl Fn(u32) -> bool) -> Vec<(u32, KnownProcess<X>)> {
        let table = &self.table;
        let gone = self
            .sweep
            .due(|| table.iter().map(|(&pid, k)| (pid, k.start_time)).collect());
        gone.into_iter()
            .filter(|&pid| !keep(pid))
            .filter_map(|pid| self.table.remove(&pid).map(|k| (pid, k)))
            .collect()
    }

    /// Attach `pid` (`attempts`: this is the how-manyth try; `named`: the verb was given it;
    /// `details`: read already, when this is a retry of the same process).
    fn attach(
        &self,
        pid: u32,
        name: &str,
        started_ns: u64,
        attempts: u32,
        named: bool,
        details: Option<ProcessDetails>,
    ) -> KnownProcess<X> {
        let looks = named || (pid != 0 && self.policy.looks(pid));
        let mut starting = false;
        let kind = if !looks {
            Kind::NotPython
        } else {
            match PythonProcess::attach(pid) {
                Ok(p) => Kind::Python(Box::new(p)),
                Err(e) => {
                    warn_once_if_denied(pid, name, &e);
                    log::debug!("pid {pid} ({name}): not profiled as Python: {e}");
                    // (Only a process worth the attach gets here: `looks`.)
                    starting = attempts < MAX_QUICK_RETRIES && e.is_transient();
                    Kind::NotPython
                }
            }
        };
        let start_time = match &kind {
            // Attaching read it already (the process it attached to is the one it saw).
            Kind::Python(p) => p.start_time,
            Kind::NotPython => proc::start_time(pid).unwrap_or(0),
        };
        KnownProcess {
            start_time,
            name: if pid == 0 {
                "idle".into()
            } else {
                proc::comm(pid).unwrap_or_else(|_| name.to_string())
            },
            details: match (pid, details) {
                (0, _) => ProcessDetails::default(),
                (_, Some(details)) => details,
                (_, None) => ProcessDetails::read(pid),
            },
            kind,
            serial: next_serial(),
            started_ns,
            starting,
            extra: X::default(),
            attempts,
            looked_at: Instant::now(),
            recheck_now: false,
        }
    }
}

impl<X> ProcessRegistry<X> {
    pub fn get(&self, pid: u32) -> Option<&KnownProcess<X>> {
        self.table.get(&pid)
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.table.contains_key(&pid)
    }

    /// Something about process `pid` looks changed (reading it as Python just failed): look at
    /// it again (start time, executable) when it is next met rather than at the next
    /// `RECHECK`, so that a process that exec'd another program is told at once.
    pub fn recheck_now(&mut self, pid: u32) {
        if let Some(k) = self.table.get_mut(&pid) {
            k.recheck_now = true;
        }
    }

    /// Drop process `pid` (it exited, or left the followed tree).
    pub fn forget(&mut self, pid: u32) -> Option<KnownProcess<X>> {
        self.table.remove(&pid)
    }

    /// How many processes are known (Python or not).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.keys().copied()
    }

    /// The Python processes known, by pid.
    pub fn python_mut(&mut self) -> impl Iterator<Item = (u32, &mut PythonProcess)> {
        self.table
            .iter_mut()
            .filter_map(|(&pid, k)| k.python_mut().map(|p| (pid, p)))
    }

    pub fn python_count(&self) -> usize {
        self.table.values().filter(|k| k.is_python()).count()
    }
}

impl Policy {
    fn looks(&self, pid: u32) -> bool {
        self.looks_like_python.is_none_or(|test| test(pid))
    }
}

/// Whether Python process `pid` now runs another executable than the one it was attached with:
/// it exec'd another program (exec keeps the pid and the start time).
fn exec_d_another_program<X>(pid: u32, k: &KnownProcess<X>) -> bool {
    k.python()
        .map(|p| &p.executable)
        .filter(|attached| !attached.as_os_str().is_empty())
        .is_some_and(|attached| proc::exe(pid).is_ok_and(|now| now != *attached))
}

fn recheck_after<X>(k: &KnownProcess<X>) -> Duration {
    if k.starting {
        RETRY_STARTING
    } else {
        RECHECK
    }
}

/// A run that may not read some processes would otherwise record every one of them without
/// its Python frames and never say why: said once.
fn warn_once_if_denied(pid: u32, name: &str, e: &AttachError) {
    use crate::process::memory::MemoryError;
    if let AttachError::Memory {
        source: MemoryError::Permission { .. },
        ..
    }
    | AttachError::Proc(proc::ProcError::Permission { .. }) = e
    {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            log::warn!(
                "pid {pid} ({name}): {e}; Python processes this run may not read are recorded \
                 without their Python frames"
            )
        });
    }
}

fn next_serial() -> u64 {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// The one process a verb was given, attached as soon as its interpreter is up: tried every
/// few ms for up to `patience` while the error is one that `wait_on` says passes, and while
/// `still_there` holds (`Err(why)`: it will not become Python, e.g. a program we started
/// exited). Any other error is final at once: a pid that is not Python is told so without a
/// wait.
pub fn attach_when_ready(
    pid: u32,
    patience: Duration,
    wait_on: impl Fn(&AttachError) -> bool,
    mut still_there: impl FnMut() -> Result<(), String>,
) -> Result<PythonProcess, WaitError> {
    let started = Instant::now();
    loop {
        match PythonProcess::attach(pid) {
            Ok(process) => return Ok(process),
            Err(e) => {
                still_there().map_err(WaitError::Gone)?;
                if !wait_on(&e) || started.elapsed() > patience {
                    return Err(WaitError::Attach(e));
                }
                log::debug!("{e}; trying again");
                std::thread::sleep(WAIT_POLL);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Attach(AttachError),
    #[error("{0}")]
    Gone(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process that is not Python, killed and reaped when dropped.
    struct Sleeper(std::process::Child);

    impl Sleeper {
        fn start() -> Sleeper {
            Sleeper(
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .expect("sleep"),
            )
        }
        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn every_process() -> Policy {
        Policy {
            looks_like_python: None,
        }
    }

    #[test]
    fn a_process_is_met_once_and_a_reused_pid_is_another_process() {
        let sleeper = Sleeper::start();
        let pid = sleeper.pid();
        // (Not attached: a failed attach would have it retried soon, as if it were starting.)
        let mut registry = ProcessRegistry::<u32>::new(Policy {
            looks_like_python: Some(|_| false),
        });
        let (met, known) = registry.observe(pid, "sleep", 1000);
        assert_eq!(met, Met::New);
        assert!(!known.is_python());
        assert_eq!(known.name, "sleep");
        assert_eq!(known.start_time, proc::start_time(pid).expect("start time"));
        known.extra = 7;
        let serial = known.serial;
        let (met, known) = registry.observe(pid, "sleep", 1000);
        assert_eq!(met, Met::Known);
        assert_eq!(
            (known.serial, known.extra),
            (serial, 7),
            "kept, not attached again"
        );
        // The sampler saw another start under the same pid: another process, whose state
        // starts afresh.
        let (met, known) = registry.observe(pid, "sleep", 2000);
        assert_eq!(met, Met::Replaced { was_python: false });
        assert!(met.is_new_process());
        assert_ne!(known.serial, serial);
        assert_eq!(known.extra, 0);
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_process_that_may_be_starting_python_is_retried_quickly_a_bounded_number_of_times() {
        let sleeper = Sleeper::start();
        let pid = sleeper.pid();
        let mut registry = ProcessRegistry::<()>::new(Policy {
            looks_like_python: Some(|_| true),
        });
        assert_eq!(registry.observe(pid, "sleep", 1).0, Met::New);
        assert!(registry.get(pid).expect("known").starting);
        let mut retries = 0;
        // Long enough for every quick retry, not for a `RECHECK`.
        for _ in 0..MAX_QUICK_RETRIES + 5 {
            std::thread::sleep(RETRY_STARTING + Duration::from_millis(1));
            match registry.observe(pid, "sleep", 1).0 {
                Met::Retried { python: false } => retries += 1,
                Met::Known => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(retries, MAX_QUICK_RETRIES - 1);
        assert!(!registry.get(pid).expect("known").starting);
    }

    #[test]
    fn a_process_the_policy_rules_out_is_not_attached_or_retried() {
        let sleeper = Sleeper::start();
        let pid = sleeper.pid();
        let mut registry = ProcessRegistry::<()>::new(Policy {
            looks_like_python: Some(|_| false),
        });
        let (met, known) = registry.observe(pid, "sleep", 1);
        assert_eq!(met, Met::New);
        assert!(!known.is_python() && !known.starting);
        std::thread::sleep(RETRY_STARTING * 2);
        assert_eq!(registry.observe(pid, "sleep", 1).0, Met::Known);
    }

    #[test]
    fn an_exited_process_is_swept_out_and_handed_back() {
        let mut sleeper = Sleeper::start();
        let mut other = Sleeper::start();
        let mut registry =
            ProcessRegistry::<()>::with_sweep(every_process(), ExitSweep::new(Duration::ZERO, 16));
        registry.observe(sleeper.pid(), "sleep", 1);
        registry.observe(other.pid(), "sleep", 1);
        assert!(registry.sweep_exited(|_| false).is_empty());
        for s in [&mut sleeper, &mut other] {
            s.0.kill().expect("kill");
            s.0.wait().expect("reap");
        }
        let kept = other.pid();
        let gone: Vec<u32> = registry
            .sweep_exited(|pid| pid == kept)
            .into_iter()
            .map(|(pid, _)| pid)
            .collect();
        assert_eq!(gone, [sleeper.pid()]);
        assert!(registry.contains(kept) && !registry.contains(sleeper.pid()));
    }

    #[test]
    fn waiting_for_an_interpreter_gives_up_at_once_on_a_final_error_or_a_gone_program() {
        let sleeper = Sleeper::start();
        let mut asked = 0;
        let never = |_: &AttachError| false;
        let Err(err) = attach_when_ready(sleeper.pid(), Duration::from_secs(60), never, || {
            asked += 1;
            Ok(())
        }) else {
            panic!("sleep attached as Python");
        };
        assert!(matches!(err, WaitError::Attach(_)), "{err}");
        assert_eq!(asked, 1, "no second try");
        let always = |_: &AttachError| true;
        let Err(err) = attach_when_ready(sleeper.pid(), Duration::from_secs(60), always, || {
            Err("the program exited".to_string())
        }) else {
            panic!("sleep attached as Python");
        };
        assert_eq!(err.to_string(), "the program exited");
    }
}
