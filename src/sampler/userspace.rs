//! The user-space sampler: wakes `rate` times a second (with a little jitter so periodic code
//! does not alias with the sampling), reads every selected thread of the target process (and
//! its children with `--subprocesses`), and hands the stacks to a callback.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::{PyVersion, StackTrace};
#[cfg(target_os = "linux")]
use crate::native::{NativeReader, NativeStats};
use crate::process::details::{self, ProcessDetails};
use crate::process::kstack::{self, KernelStack};
use crate::process::pause::Paused;
use crate::process::proc;
use crate::python::asyncio::task_stacks;
use crate::python::asyncio_layout::AsyncioError;
use crate::python::code::FrameErrors;
use crate::python::repr::ReprLimits;
use crate::python::state::{SampleError, StackWithLocals};
use crate::python::{PythonProcess, StackOptions};
use crate::sampler::registry::{Met, Policy, ProcessRegistry};

/// No native unwinding off Linux (`--native` is refused there): no reader can exist.
#[cfg(not(target_os = "linux"))]
type NativeReader = std::convert::Infallible;

#[derive(Debug, Clone, Copy)]
pub struct SamplerConfig {
    pub rate_hz: u32,
    pub stacks: StackOptions,
    pub subprocesses: bool,
    /// Pause the target while reading it.
    pub blocking: bool,
    /// `record --async`: asyncio task stacks (`asyncio::task_stacks`) instead of threads.
    pub async_tasks: bool,
    /// `dump --locals`: each Python frame's local variables too, shown within these limits
    /// (not with `--native` or `async_tasks`, which read no locals).
    pub locals: Option<ReprLimits>,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    DurationElapsed,
    Interrupted,
    TargetExited,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Ticks at which the target was read.
    pub ticks: u64,
    /// Stacks recorded.
    pub samples: u64,
    /// Ticks on which reading a process failed, plus stacks with Python frames that could not
    /// be read (`frames_rejected`).
    pub errors: u64,
    /// The Python frames given as unknown or cut short, by reason.
    pub frames_rejected: FrameErrors,
    /// Ticks that came late by more than one interval (the profiler could not keep up).
    pub late: u64,
    pub elapsed: Duration,
    pub ended: EndReason,
    /// `--subprocesses`: children attached, and dropped again because they exited (or their
    /// pid was reused); `children` of them are still attached.
    pub children_attached: u64,
    pub children_dropped: u64,
    pub children: usize,
}

pub struct UserspaceSampler {
    config: SamplerConfig,
    root: PythonProcess,
    /// The root's `comm` and details, read once.
    root_name: String,
    root_details: ProcessDetails,
    /// `--subprocesses`: the root's descendants, Python or not (yet), as the BPF sampler keeps
    /// the processes it meets.
    children: ProcessRegistry<()>,
    last_child_scan: Option<Instant>,
    rng: u64,
    /// `--native`: unwinds each paused thread and merges its native and Python frames.
    native: Option<NativeReader>,
    children_attached: u64,
    children_dropped: u64,
}

/// How often `--subprocesses` looks for new children.
const CHILD_SCAN_INTERVAL: Duration = Duration::from_millis(500);

impl UserspaceSampler {
    pub fn new(config: SamplerConfig, root: PythonProcess) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        UserspaceSampler {
            config,
            root_name: proc::comm(root.pid).unwrap_or_else(|_| "?".into()),
            root_details: ProcessDetails::read(root.pid),
            root,
            // Every descendant is attached (a tree is small; an interpreter linked into a
            // program of any name is found).
            children: ProcessRegistry::new(Policy {
                looks_like_python: None,
            }),
            last_child_scan: None,
            rng: seed | 1,
            native: None,
            children_attached: 0,
            children_dropped: 0,
        }
    }

    /// `--native`: mixed native + Python stacks. Implies pausing the target for each read.
    #[cfg(target_os = "linux")]
    pub fn with_native(mut self, reader: NativeReader) -> Self {
        self.native = Some(reader);
        self
    }

    /// The `--native` counters, when native stacks are read.
    #[cfg(target_os = "linux")]
    pub fn native_stats(&self) -> Option<NativeStats> {
        self.native.as_ref().map(|n| n.stats)
    }

    pub fn root(&self) -> &PythonProcess {
        &self.root
    }

    /// The Python process `pid` as the sampler reads it: the root, or a child it attached.
    pub fn process(&self, pid: u32) -> Option<&PythonProcess> {
        match pid == self.root.pid {
            true => Some(&self.root),
            false => self.children.get(pid)?.python(),
        }
    }

    /// One reading of every selected thread now, outside a run (`dump`): the stacks (with
    /// their locals, `SamplerConfig::locals`) of the root and, with `--subprocesses`, of its
    /// Python descendants, and who they belong to. A failed read of the root is the error; a
    /// child that cannot be read is left out.
    pub fn read_once(
        &mut self,
        on_stacks: impl FnOnce(&[StackWithLocals], &Owners),
    ) -> Result<(), SampleError> {
        let stacks = self.sample_tree(IfUnpausable::Fail)?;
        on_stacks(&stacks, &self.owners());
        Ok(())
    }

    fn owners(&self) -> Owners<'_> {
        Owners {
            root: &self.root,
            root_name: &self.root_name,
            root_details: &self.root_details,
            children: &self.children,
        }
    }

    /// Sample until `stop` is set, `duration` elapses, or the root process exits.
    /// `target_alive` is asked each tick (for `-- cmd`, it reaps the child). `on_stacks` is
    /// given each tick's stacks and who they belong to.
    pub fn run(
        &mut self,
        duration: Option<Duration>,
        stop: &AtomicBool,
        mut target_alive: impl FnMut() -> bool,
        mut on_stacks: impl FnMut(&[StackWithLocals], &Owners),
        mut on_status: impl FnMut(&RunSummary),
    ) -> RunSummary {
        let interval = Duration::from_secs_f64(1.0 / self.config.rate_hz.max(1) as f64);
        let start = Instant::now();
        let mut next = start;
        let mut summary = RunSummary {
            ticks: 0,
            samples: 0,
            errors: 0,
            frames_rejected: FrameErrors::default(),
            late: 0,
            elapsed: Duration::ZERO,
            ended: EndReason::Interrupted,
            children_attached: 0,
            children_dropped: 0,
            children: 0,
        };
        let mut last_status = start;
        loop {
            if stop.load(Ordering::Relaxed) {
                summary.ended = EndReason::Interrupted;
                break;
            }
            if duration.is_some_and(|d| start.elapsed() >= d) {
                summary.ended = EndReason::DurationElapsed;
                break;
            }
            if !target_alive() || !self.root.is_same_process() {
                summary.ended = EndReason::TargetExited;
                break;
            }
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > interval {
                // We fell behind: count it and do not try to catch up with a burst.
                summary.late += 1;
                next = now;
            }
            next += self.jittered(interval);
            summary.ticks += 1;
            match self.sample_tree(IfUnpausable::ReadUnpaused) {
                Ok(stacks) => {
                    summary.samples += stacks.len() as u64;
                    for stack in &stacks {
                        let frames = &stack.trace.frames;
                        let rejected = match self.native {
                            Some(_) => summary.frames_rejected.count_merged(frames),
                            None => summary.frames_rejected.count(frames),
                        };
                        summary.errors += u64::from(rejected);
                    }
                    on_stacks(&stacks, &self.owners());
                }
                Err(SampleError::Exited { .. }) => {
                    summary.ended = EndReason::TargetExited;
                    break;
                }
                Err(e) => {
                    summary.errors += 1;
                    log::debug!("sample failed: {e}");
                }
            }
            if last_status.elapsed() >= Duration::from_millis(250) {
                last_status = Instant::now();
                summary.elapsed = start.elapsed();
                self.count_children(&mut summary);
                on_status(&summary);
            }
        }
        summary.elapsed = start.elapsed();
        self.count_children(&mut summary);
        summary
    }

    fn count_children(&self, summary: &mut RunSummary) {
        summary.children_attached = self.children_attached;
        summary.children_dropped = self.children_dropped;
        summary.children = self.children.python_count();
    }

    /// The interval scaled by a random factor in [0.9, 1.1).
    fn jittered(&mut self, interval: Duration) -> Duration {
        // xorshift64: plenty for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        interval.mul_f64(0.9 + 0.2 * unit)
    }

    /// One reading of the root process and, with `--subprocesses`, its Python descendants.
    fn sample_tree(
        &mut self,
        unpausable: IfUnpausable,
    ) -> Result<Vec<StackWithLocals>, SampleError> {
        let mut stacks = read_one(
            &mut self.root,
            self.config,
            self.native.as_mut(),
            unpausable,
        )?;
        if self.config.subprocesses {
            self.refresh_children();
            let mut gone = Vec::new();
            for (pid, child) in self.children.python_mut() {
                match read_one(child, self.config, self.native.as_mut(), unpausable) {
                    Ok(s) => stacks.extend(s),
                    Err(SampleError::Exited { .. }) => gone.push(pid),
                    Err(e) => log::debug!("child {pid}: {e}"),
                }
            }
            for pid in gone {
                self.drop_child(pid);
            }
        }
        Ok(stacks)
    }

    fn drop_child(&mut self, pid: u32) {
        if self.children.forget(pid).is_some_and(|c| c.is_python()) {
            self.children_dropped += 1;
        }
        self.forget_native(pid);
    }

    /// What `--native` kept of process `pid` (it exited, or its pid was reused).
    fn forget_native(&mut self, pid: u32) {
        if let Some(native) = self.native.as_mut() {
            #[cfg(target_os = "linux")]
            native.forget(pid);
            #[cfg(not(target_os = "linux"))]
            {
                let _ = pid;
                match *native {}
            }
        }
    }

    fn refresh_children(&mut self) {
        if self
            .last_child_scan
            .is_some_and(|t| t.elapsed() < CHILD_SCAN_INTERVAL)
        {
            return;
        }
        self.last_child_scan = Some(Instant::now());
        let pids = proc::descendants(self.root.pid);
        // Children that left the tree (they exited, or were handed to another parent): their
        // caches and native state go with them.
        let gone: Vec<u32> = self
            .children
            .pids()
            .filter(|pid| !pids.contains(pid))
            .collect();
        for pid in gone {
            self.drop_child(pid);
        }
        // The others are attached when first met, tried again while they are not Python
        // (their interpreter was starting, or they exec one later), and replaced when their
        // pid names another process.
        for pid in pids {
            match self.children.observe(pid, "", 0).0 {
                Met::Known | Met::Retried { python: false } => {}
                Met::New => self.children_attached += u64::from(self.is_python_child(pid)),
                Met::Replaced { was_python } => {
                    self.children_dropped += u64::from(was_python);
                    self.forget_native(pid);
                    self.children_attached += u64::from(self.is_python_child(pid));
                }
                Met::Retried { python: true } => self.children_attached += 1,
            }
        }
    }

    fn is_python_child(&self, pid: u32) -> bool {
        self.children.get(pid).is_some_and(|c| c.is_python())
    }
}

/// Who the stacks of one tick belong to: the root and the children the registry knows.
pub struct Owners<'a> {
    root: &'a PythonProcess,
    root_name: &'a str,
    root_details: &'a ProcessDetails,
    children: &'a ProcessRegistry<()>,
}

/// The process a stack belongs to, as the sampler knows it.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Its `comm`.
    pub name: &'a str,
    /// Its command line and container.
    pub details: &'a ProcessDetails,
    /// Clock ticks since boot (0: unknown).
    pub start_time: u64,
    pub python: Option<PyVersion>,
}

impl Owners<'_> {
    /// The process `pid` of a stack of this tick (every stack's process is known: a child
    /// that exited during the tick gave no stacks).
    pub fn of(&self, pid: u32) -> Owner<'_> {
        if pid == self.root.pid {
            return Owner {
                name: self.root_name,
                details: self.root_details,
                start_time: self.root.start_time,
                python: Some(self.root.version()),
            };
        }
        match self.children.get(pid) {
            Some(child) => Owner {
                name: &child.name,
                details: &child.details,
                start_time: child.start_time,
                python: child.python().map(PythonProcess::version),
            },
            None => Owner {
                name: "?",
                details: &details::UNKNOWN,
                start_time: 0,
                python: None,
            },
        }
    }
}

/// What a read that should pause its target does when the target cannot be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfUnpausable {
    /// Read it unpaused (a run checked once at its start that pausing is allowed: a pause
    /// that fails later is a passing refusal, and the run goes on).
    ReadUnpaused,
    /// Fail (`dump`: one reading, which must be what was asked for). No check before the
    /// read can stand in for this: a pause wakes sleeping threads, and the reading that
    /// follows would see them running.
    Fail,
}

fn read_one(
    p: &mut PythonProcess,
    config: SamplerConfig,
    native: Option<&mut NativeReader>,
    unpausable: IfUnpausable,
) -> Result<Vec<StackWithLocals>, SampleError> {
    if config.async_tasks {
        return read_tasks(p).map(without_locals);
    }
    if let Some(native) = native {
        #[cfg(target_os = "linux")]
        return read_native(p, config.stacks, native, unpausable).map(without_locals);
        #[cfg(not(target_os = "linux"))]
        match *native {}
    }
    // FreeBSD reads memory only from a process stopped under ptrace: always paused.
    if !config.blocking && !cfg!(target_os = "freebsd") {
        return p.read_now(config.stacks, config.locals);
    }
    // The guard lives only for this read; dropping it resumes the target.
    let (before, _paused) = pause_for_read(p.pid, false, unpausable)?;
    p.stacks_with_locals(config.stacks, |tid| before.is_running(tid), config.locals)
}

fn without_locals(stacks: Vec<StackTrace>) -> Vec<StackWithLocals> {
    stacks
        .into_iter()
        .map(|trace| StackWithLocals {
            trace,
            locals: Vec::new(),
        })
        .collect()
}

/// `--async`: the process's asyncio tasks as stacks. A process that has not imported asyncio
/// yet (a `-- CMD` still starting) has none, which is no error.
fn read_tasks(p: &mut PythonProcess) -> Result<Vec<StackTrace>, SampleError> {
    match p.async_tasks() {
        Ok(tasks) => Ok(task_stacks(p.pid, &tasks)),
        Err(AsyncioError::Threads(e)) => Err(e),
        Err(e @ (AsyncioError::NotLoaded { .. } | AsyncioError::Again(_))) => {
            log::debug!("pid {}: {e}", p.pid);
            Ok(Vec::new())
        }
        Err(e) => Err(SampleError::Asyncio {
            pid: p.pid,
            why: e.to_string(),
        }),
    }
}

/// What `/proc` says about a process's threads just before it is paused. A pause moves every
/// thread into a ptrace stop and wakes a sleeping one for a moment (its system call is
/// interrupted and restarted): read during or right after a pause, every thread looks stopped
/// or, briefly, running, and its kernel stack shows the stop instead of its wait.
#[derive(Debug, Clone, Default)]
pub struct BeforePause {
    /// The threads that were running or runnable.
    running: Vec<u32>,
    /// The kernel stacks of the others, when asked for and readable (root).
    kernel: HashMap<u32, KernelStack>,
}

impl BeforePause {
    /// `kernel_stacks`: also read the kernel stacks of the threads that are not running.
    pub fn read(pid: u32, kernel_stacks: bool) -> Result<BeforePause, SampleError> {
        let mut before = BeforePause::default();
        for tid in proc::threads(pid).map_err(|_| SampleError::Exited { pid })? {
            if proc::thread_is_running(pid, tid) {
                before.running.push(tid);
            } else if let Some(stack) = kernel_stacks.then(|| kstack::read(pid, tid)).flatten() {
                before.kernel.insert(tid, stack);
            }
        }
        Ok(before)
    }

    /// Whether thread `tid` was on a CPU (or runnable) before the pause.
    pub fn is_running(&self, tid: u32) -> bool {
        self.running.contains(&tid)
    }

    /// The kernel stack of thread `tid` (one that was not running), if it was read.
    pub fn kernel_stack(&self, tid: u32) -> Option<&KernelStack> {
        self.kernel.get(&tid)
    }
}

/// Pause `pid` for one read. Returns what `/proc` said about its threads just before, and the
/// pause guard, `None` if pausing failed and `unpausable` says to read unpaused.
fn pause_for_read(
    pid: u32,
    kernel_stacks: bool,
    unpausable: IfUnpausable,
) -> Result<(BeforePause, Option<Paused>), SampleError> {
    let before = BeforePause::read(pid, kernel_stacks)?;
    match Paused::pause(pid) {
        Ok(g) => Ok((before, Some(g))),
        Err(_) if !proc::exists(pid) => Err(SampleError::Exited { pid }),
        Err(e) if unpausable == IfUnpausable::Fail => Err(SampleError::NotPaused {
            pid,
            why: e.to_string(),
        }),
        Err(e) => {
            log::debug!("{e}");
            Ok((before, None))
        }
    }
}

/// Pause `p`, read every selected thread's Python stack with its eval-loop boundaries, unwind
/// each thread's native stack and merge the two (`--native`); a thread sleeping in a system
/// call gets its kernel frames on the leaf side (with `--idle`, and when readable: root). If
/// the target cannot be paused, the Python stacks are returned without native frames.
#[cfg(target_os = "linux")]
pub fn read_native(
    p: &mut PythonProcess,
    opts: StackOptions,
    native: &mut NativeReader,
    unpausable: IfUnpausable,
) -> Result<Vec<StackTrace>, SampleError> {
    // Kernel stacks are read only for threads that are not running, which only --idle keeps.
    let (before, paused) = pause_for_read(p.pid, opts.include_idle, unpausable)?;
    if paused.is_none() {
        let read = p.stacks_with_entries(opts, |tid| before.is_running(tid))?;
        return Ok(read.into_iter().map(|(stack, _, _)| stack).collect());
    }
    let stacks = read_native_paused(p, opts, native, &before);
    drop(paused);
    stacks
}

/// As [`read_native`], for a process the caller has paused (`pause::Paused`) after reading
/// `before`.
#[cfg(target_os = "linux")]
pub fn read_native_paused(
    p: &mut PythonProcess,
    opts: StackOptions,
    native: &mut NativeReader,
    before: &BeforePause,
) -> Result<Vec<StackTrace>, SampleError> {
    let read = p.stacks_with_entries(opts, |tid| before.is_running(tid))?;
    let binary = p.interpreter.binary.clone();
    let mut out = Vec::with_capacity(read.len());
    for (mut stack, entry, shims) in read {
        if let Some(tid) = stack.tid {
            stack.frames = native.thread_frames(
                p.pid,
                p.start_time,
                tid,
                p.memory(),
                &binary,
                &stack.frames,
                &entry,
                &shims,
                before.kernel_stack(tid),
            );
        }
        out.push(stack);
    }
    Ok(out)
}
