//! The BPF sample source: the perf-event BPF program (`crate::bpf`) samples every CPU and
//! delivers `RawSample`s (pid, tid, native stacks). Each is turned into a `StackTrace` right
//! away: for a thread of a Python process, that thread's Python frames are read at once
//! from its thread state (the process is attached lazily, once, and dropped when its pid is
//! reused); any other thread keeps its native and kernel frames, symbolized.
//!
//! With `native` (`--native`), each sample of a user thread carries its registers and the top
//! of its stack: the stack is unwound here with `.eh_frame` (one unwinder for the whole run,
//! which keeps each process's modules), symbolized, and for a Python thread merged with its
//! Python frames (`native::merge`) as the user-space `--native` does; kernel frames go on the
//! leaf side. A sample without a stack copy (a kernel thread, a failed copy, any sample
//! without `--native`) keeps the frame-pointer user stack the kernel recorded, as far as its
//! return addresses can be trusted (`native::fp_stack`).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::bpf::{
    monotonic_ns, online_cpus, ringbuf_bytes_for, BpfConfig, BpfError, BpfSampler, OffCpuConfig,
    PerfEventKind, MAX_OFFCPU_THREADS, MAX_PYTHON_THREADS,
};
use crate::model::{Addr, BpfPyStatus, Frame, PyVersion, RawSample, Reason, StackTrace};
use crate::native::return_address::ReturnAddresses;
use crate::native::unwind::NativeUnwinder;
use crate::native::{symbolize, NativeStats, NativeSymbolizer};
use crate::process::details::ProcessDetails;
use crate::process::priority::{set_own_nice, PROFILER_NICE};
use crate::process::proc;
use crate::python::code::FrameErrors;
use crate::python::state::{SampleError, StackExtras, StackWithEntries};
use crate::python::PythonProcess;
use crate::sampler::bpf_frames::{
    frame_pointer_frames, kernel_frames, merge_native, unwind, Resolver,
};
use crate::sampler::bpf_registry::WalkRegistry;
use crate::sampler::registry::{Kind, KnownProcess, Met, Policy, ProcessRegistry, RECHECK};

/// Which processes a BPF run records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every process on the machine.
    All,
    /// One process (filtered in BPF by tgid).
    Pid(u32),
    /// A process and its descendants (filtered in BPF: the program follows their ancestry).
    Tree(u32),
}

#[derive(Debug, Clone)]
pub struct BpfSourceConfig {
    pub rate_hz: u32,
    pub event: PerfEventKind,
    pub scope: Scope,
    /// Drop samples of processes that are not Python.
    pub python_only: bool,
    /// Only samples of threads holding the GIL.
    pub gil_only: bool,
    /// Also record the CPUs' idle task.
    pub include_idle: bool,
    pub kernel_stacks: bool,
    /// Read Python threads' `threading` names (shown with `--threads`); without, a thread is
    /// named by its `comm`.
    pub thread_names: bool,
    /// Mixed native + Python stacks (`--native`): copy each user thread's registers and this
    /// many bytes of the top of its stack in BPF (at most `bpf::MAX_USER_STACK_COPY`;
    /// [`DEFAULT_STACK_COPY`]) and unwind them here. `None`: frame-pointer user stacks.
    pub native: Option<usize>,
    /// Wall-clock mode: also record threads off the CPU (`--idle` in BPF mode), each stretch
    /// of at least this many nanoseconds as one sample weighted by its length (`--offcpu-min`).
    /// With `Scope::All`, only Python processes. `None`: on-CPU samples only.
    pub off_cpu_min_ns: Option<u64>,
}

/// The process a stack handed to `run`'s `on_stack` belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SampleProcess<'a> {
    /// Its `comm`.
    pub name: &'a str,
    /// Its command line and container, read when it was first met.
    pub details: &'a ProcessDetails,
    /// Its interpreter's version, for a Python process.
    pub python: Option<PyVersion>,
    /// When it started (ns since boot, as in `/proc/PID/stat`): with the pid, tells it from a
    /// later process that reuses the pid.
    pub start_time: u64,
    /// (Of the sample, not the process.) An off-CPU sample: nanoseconds the thread was off the
    /// CPU, at the stack given (`off_cpu_min_ns`). 0: a sample of a running thread, which
    /// stands for one sampling period.
    pub off_cpu_ns: u64,
    /// When the sample was taken (`RawSample::ktime_ns`, CLOCK_MONOTONIC; for an off-CPU
    /// sample, when the thread left the CPU).
    pub ktime_ns: u64,
}

/// Default `BpfSourceConfig::native`: the most a BPF sample holds (60 KiB). numpy's matmul
/// needs 32 KiB to reach the eval loop through OpenBLAS's SkylakeX kernel and 60 KiB through
/// its Haswell kernel (~32 KiB of packed matrix on the stack below the kernel's return
/// address); 16 KiB truncated nearly every such stack. Copying the extra pages cost nothing
/// measurable at 100 Hz (pyspy-bpf's CPU and the workload's speed within run-to-run noise).
pub const DEFAULT_STACK_COPY: usize = crate::bpf::MAX_USER_STACK_COPY;

/// What a run counted; `lost` holds every loss/error counter by name, zero or not.
#[derive(Debug, Clone, Default)]
pub struct BpfSummary {
    pub samples: u64,
    pub python_samples: u64,
    /// Samples of Python (or not yet known) processes handled too late to read their Python
    /// stack truthfully (the consumer fell behind); dropped, not given another instant's frames.
    pub stale: u64,
    /// Samples of Python processes whose Python stack could not be read, or had frames that
    /// could not be (`python_frames_rejected`).
    pub python_errors: u64,
    /// The Python frames given as unknown or cut short, by reason.
    pub python_frames_rejected: FrameErrors,
    /// Python stacks whose frames the BPF program walked at the sample's instant.
    pub python_walked_in_bpf: u64,
    /// Wall-clock mode: off-CPU samples of threads that were away when the recording started
    /// (their stacks read by user space then, `seed_sleepers`).
    pub off_cpu_seeded: u64,
    /// Python stacks read by user space after the sample instead, and why (the BPF walk's
    /// counters `py_*`, and `unregistered` for a process or thread not handed to it yet).
    pub python_read_late: Vec<(&'static str, u64)>,
    /// Python samples whose GIL state user space read after the sample, because the BPF
    /// program had not (a sample it did not walk, or whose GIL it failed to read).
    pub gil_read_late: u64,
    /// `native`: mismatches among the stacks of `python_read_late` (their Python part is from
    /// a later instant than their native part); `native.mismatched` counts the others.
    pub mismatched_read_late: u64,
    pub lost: Vec<(&'static str, u64)>,
    /// Processes in the table now (live at the end of the run).
    pub processes: usize,
    /// Processes attached over the run (each pid, and each reuse of it, once; a process that
    /// became Python once more), and how many of those were Python.
    pub processes_attached: u64,
    pub python_attached: u64,
    /// Processes whose state was dropped because they exited (or their pid was reused).
    pub processes_dropped: u64,
    pub elapsed: Duration,
    pub interrupted: bool,
    /// The single target (`Scope::Pid`/`Tree`) exited.
    pub target_exited: bool,
    /// `native`: stacks unwound (`no_registers`: user-thread samples without a stack copy).
    pub native: NativeStats,
}

/// A Python stack read later than this after its sample was taken would describe another
/// instant: such samples are dropped and counted as stale.
const MAX_PYTHON_AGE_NS: u64 = 200_000_000;
/// How often stale samples of threads the BPF program does not know yet have the thread list
/// read (see `to_stack`).
const REFRESH_THREADS: Duration = Duration::from_millis(100);
/// How often a single target is checked for having exited.
const ALIVE_CHECK: Duration = Duration::from_millis(100);
/// Bytes of samples the ring-buffer reader may queue ahead of us: ~16K samples of frame
/// pointer stacks (~2 KiB each), ~1.5K with `native`, whose samples carry a stack copy each
/// (16 KiB by default, up to 60 KiB): a bound in bytes holds whatever the samples carry.
const QUEUE_BYTES: usize = 32 << 20;

/// What this sampler keeps of a process beside the registry's, which goes with it.
struct Walked {
    /// `native`, Python: the address ranges of its eval loop, found at its first sample.
    eval: Option<Vec<Range<Addr>>>,
    /// When a stale sample of a thread the BPF program did not know last had the thread list
    /// read (and registered).
    threads_refreshed: Instant,
}

impl Default for Walked {
    fn default() -> Self {
        Walked {
            eval: None,
            threads_refreshed: Instant::now(),
        }
    }
}

type Processes = ProcessRegistry<Walked>;

/// Start the BPF sampler, or say exactly why it cannot run.
pub fn start(config: &BpfSourceConfig) -> Result<BpfSampler, BpfError> {
    // On a saturated host, loading and verifying the program at the default priority can take
    // a second of wall time: the profile would start that much later.
    raise_priority();
    let cpus = online_cpus().map_or(1, |cpus| cpus.len());
    // Off-CPU records come on top of the samples: at most one per thread per `min_ns` away,
    // counted here as up to OFFCPU_RECORDS_PER_CPU a second per CPU more.
    let records_hz = match config.off_cpu_min_ns {
        Some(_) => config.rate_hz as u64 + OFFCPU_RECORDS_PER_CPU,
        None => config.rate_hz as u64,
    };
    BpfSampler::start(&BpfConfig {
        rate_hz: config.rate_hz as u64,
        event: config.event,
        target_tgid: match config.scope {
            Scope::Pid(pid) | Scope::Tree(pid) => Some(pid),
            Scope::All => None,
        },
        follow_children: matches!(config.scope, Scope::Tree(_)),
        kernel_stacks: config.kernel_stacks,
        include_idle: config.include_idle,
        copy_user_stack: config.native,
        ringbuf_bytes: ringbuf_bytes_for(cpus, records_hz, config.native),
        python_threads: python_thread_slots(),
        off_cpu: config.off_cpu_min_ns.map(|min_ns| OffCpuConfig {
            min_ns,
            python_only: true,
            inflight_threads: offcpu_slots(config.scope),
        }),
    })
}

/// Ring-buffer room for off-CPU records, per CPU and second (see `start`).
const OFFCPU_RECORDS_PER_CPU: u64 = 1000;

/// `offcpu_inflight` entries (threads of the scope off the CPU at once; ~4.3 KiB each,
/// allocated at load): for one process, its threads now with room to grow (at least 256); with
/// descendants or every Python process, twice the host's threads; at most
/// `MAX_OFFCPU_THREADS`. One more thread than that off the CPU at once is counted
/// (`offcpu_inflight_full`), not recorded.
fn offcpu_slots(scope: Scope) -> u32 {
    let wanted = match scope {
        Scope::Pid(pid) => proc::threads(pid).map_or(256, |t| (t.len() as u32).saturating_mul(4)),
        Scope::Tree(_) | Scope::All => {
            proc::host_threads().map_or(MAX_OFFCPU_THREADS, |n| n.saturating_mul(2))
        }
    };
    wanted
        .clamp(256, MAX_OFFCPU_THREADS)
        .next_power_of_two()
        .min(MAX_OFFCPU_THREADS)
}

/// `py_threads` entries for this host: twice the threads it runs now (any of them may be
/// Python's, and more may start), at least 4096. The map's memory is allocated at load:
/// 65536 entries (4 MiB) cost ~3 ms of CPU per run. Threads beyond it are read by user
/// space, and counted (`py_no_thread`).
fn python_thread_slots() -> u32 {
    proc::host_threads()
        .map_or(MAX_PYTHON_THREADS, |n| {
            n.saturating_mul(2).clamp(4096, MAX_PYTHON_THREADS)
        })
        .next_power_of_two()
        .min(MAX_PYTHON_THREADS)
}

/// The consumer runs at `PROFILER_NICE` (as root) so that a saturated host does not starve
/// it (its samples would go stale); this thread and the threads it starts later.
fn raise_priority() {
    if let Err(e) = set_own_nice(PROFILER_NICE) {
        log::info!("keeping the default CPU priority ({e}); on a saturated host samples may be lost as stale");
    }
}

/// Consume samples until `stop`, `duration`, or (for a single target) its exit, which
/// `target_alive` tells (it reaps a child we started). Each stack is handed to `on_stack`
/// with the name of its process.
pub fn run(
    mut sampler: BpfSampler,
    config: &BpfSourceConfig,
    duration: Option<Duration>,
    stop: &AtomicBool,
    mut target_alive: impl FnMut() -> bool,
    mut on_stack: impl FnMut(&StackTrace, &SampleProcess),
    mut on_status: impl FnMut(&BpfSummary),
) -> Result<BpfSummary, BpfError> {
    // Again (`start` did it already, for the load), in case the sampler was started on another
    // thread; before the reader thread starts, so that it inherits the priority too.
    raise_priority();
    let mut samples = sampler.spawn_reader(QUEUE_BYTES)?;
    // Only processes that map something named python are attached (`may_have_become_python`);
    // `--pid` and `-- CMD` are attached whatever their name (`attach_target`).
    let mut table = Processes::new(Policy {
        looks_like_python: Some(may_have_become_python),
    });
    let mut symbols = Resolver {
        symbols: NativeSymbolizer::with_dwarf(config.native.is_some()),
        unwinder: config.native.map(|_| NativeUnwinder::new()),
        returns: ReturnAddresses::default(),
    };
    let mut summary = BpfSummary::default();
    let mut registry = WalkRegistry::default();
    let first = match config.scope {
        Scope::Pid(pid) | Scope::Tree(pid) => vec![pid],
        // Off-CPU time with --all is recorded for Python processes the program knows: those
        // running now are handed to it before the start (one that sleeps throughout would
        // otherwise never be sampled on a CPU, so never known); later ones at their first
        // sample.
        Scope::All if config.off_cpu_min_ns.is_some() => python_processes(),
        Scope::All => Vec::new(),
    };
    for pid in first {
        let single = matches!(config.scope, Scope::Pid(_) | Scope::Tree(_));
        register_target(pid, single, &sampler, &mut table, &mut registry);
        summary.processes_attached += 1;
        summary.python_attached += table.get(pid).map_or(0, |e| e.is_python() as u64);
    }
    let mut seeded = match config.off_cpu_min_ns {
        Some(_) => seed_sleepers(&sampler, &mut table),
        None => HashMap::new(),
    };
    let mut children_checked = Instant::now();
    let mut alive_checked = Instant::now() - ALIVE_CHECK;
    let start = Instant::now();
    let mut last_status = start;
    loop {
        if stop.load(Ordering::Relaxed) {
            summary.interrupted = true;
            break;
        }
        if duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        if let Scope::Pid(_) | Scope::Tree(_) = config.scope {
            // A few /proc reads: every few samples would be a third of the per-sample cost.
            if alive_checked.elapsed() >= ALIVE_CHECK {
                alive_checked = Instant::now();
                if !target_alive() {
                    summary.target_exited = true;
                    break;
                }
            }
            if matches!(config.scope, Scope::Tree(_)) && children_checked.elapsed() >= RECHECK {
                // The BPF program follows the target's descendants by their ancestry; one
                // that exited must not pass its membership on to whoever reuses its pid.
                for child in sampler.children() {
                    if !proc::exists(child) {
                        sampler.remove_child(child);
                    }
                }
                children_checked = Instant::now();
            }
        }
        // The single target's exit ends the run (`target_alive`); the idle task stays.
        let keep = |pid: u32| {
            pid == 0 || matches!(config.scope, Scope::Pid(p) | Scope::Tree(p) if p == pid)
        };
        for (pid, _) in table.sweep_exited(keep) {
            drop_process(pid, config.scope, &mut symbols, &sampler, &mut registry);
            summary.processes_dropped += 1;
        }
        match samples.recv_timeout(Duration::from_millis(100)) {
            Ok(raw) => handle(
                &raw,
                config,
                &mut table,
                &mut symbols,
                Some(&sampler),
                &mut registry,
                &mut summary,
                &mut seeded,
                &mut on_stack,
            ),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_status.elapsed() >= Duration::from_millis(250) {
            last_status = Instant::now();
            summary.elapsed = start.elapsed();
            summary.processes = table.len();
            summary.lost = losses(sampler.counters().unwrap_or_default(), summary.stale);
            on_status(&summary);
        }
    }
    summary.elapsed = start.elapsed();
    // Threads still off the CPU: their time away so far (they have not come back to send it).
    let in_flight = match config.off_cpu_min_ns {
        Some(min_ns) => sampler.off_cpu_in_flight(monotonic_ns(), min_ns),
        None => Vec::new(),
    };
    // Samples taken during the recording may still wait in the queue (the reader runs ahead
    // of us while we attach to new processes): stop sampling, then handle every one of them.
    let counters = sampler.stop()?;
    // (The BPF maps are gone with the program: nothing more is registered.)
    for raw in samples.try_iter().chain(in_flight) {
        handle(
            &raw,
            config,
            &mut table,
            &mut symbols,
            None,
            &mut registry,
            &mut summary,
            &mut seeded,
            &mut on_stack,
        );
    }
    summary.processes = table.len();
    summary.lost = losses(counters, summary.stale);
    let (known, resolved) = crate::python::code::fingerprint_stats();
    log::info!(
        "{known} of {resolved} Python frames resolved from the BPF program's code fingerprint \
         (no read of the code object)"
    );
    // (After the line above: tests read it as the first of this module's.)
    let (user_bytes, kernel_bytes) = symbols.symbols.cache_bytes();
    log::info!(
        "symbol caches: user names {user_bytes} bytes, kernel names {kernel_bytes} bytes, \
         {} files open, for {} processes",
        symbols.symbols.open_files(),
        symbols.symbols.processes()
    );
    Ok(summary)
}

/// The one target (`--pid`, `-- CMD`): attached and handed to the BPF program before its
/// first sample, so that every sample of it is walked in BPF at its instant (otherwise the
/// first samples are read by user space later, when short-lived code may be gone). `single`:
/// it was named (attached whatever its name); else one of the Python processes running at the
/// start of a wall-clock `--all`.
fn register_target(
    pid: u32,
    single: bool,
    sampler: &BpfSampler,
    table: &mut Processes,
    registry: &mut WalkRegistry,
) {
    let entry = match single {
        true => table.attach_target(pid),
        false => table.observe(pid, "", 0).1,
    };
    let serial = entry.serial;
    if let Some(process) = entry.python_mut() {
        match process.read_thread_list() {
            Ok(()) => registry.sync(sampler, pid, serial, process),
            Err(e) => log::debug!("pid {pid}: {e}"),
        }
    }
}

/// Wall-clock mode: the Python threads of the processes registered so far that are off the CPU
/// now. The program only sees a thread leave the CPU; one asleep since before the start (a
/// worker waiting on a queue, a main thread in `join`) would not be seen until it comes back,
/// or at all. So its stack is read now, while it sleeps, and the program is told it is away
/// since now (`BpfSampler::seed_off_cpu`): its record, when it comes back or at the end, is
/// given this stack. Returns tid -> stack.
fn seed_sleepers(sampler: &BpfSampler, table: &mut Processes) -> HashMap<u32, StackTrace> {
    let now = monotonic_ns();
    let mut seeded = HashMap::new();
    let all = crate::python::StackOptions {
        include_idle: true,
        gil_only: false,
    };
    for (pid, process) in table.python_mut() {
        let Ok(stacks) = process.stacks(all) else {
            continue;
        };
        for mut stack in stacks {
            let Some(tid) = stack.tid.filter(|_| !stack.active) else {
                continue;
            };
            // Asleep on the GIL since before the start: a gil_wait, as the program would say.
            let on_gil = proc::blocked_futex(pid, tid).is_some_and(|w| process.waits_for_gil(w));
            if on_gil && stack.frames.iter().any(|f| matches!(f, Frame::Python(_))) {
                stack.frames.insert(0, Frame::GilWait);
            }
            match sampler.seed_off_cpu(pid, tid, now) {
                Ok(()) => {
                    seeded.insert(tid, stack);
                }
                Err(e) => log::debug!("{e}"),
            }
        }
    }
    seeded
}

/// The processes running now whose executable is named python (the cheap half of
/// `may_have_become_python`: a full scan of every process's maps would cost more).
fn python_processes() -> Vec<u32> {
    let own = std::process::id();
    proc::pids()
        .into_iter()
        .filter(|&pid| pid != own)
        .filter(|&pid| proc::exe(pid).is_ok_and(|exe| exe.to_string_lossy().contains("python")))
        .collect()
}

/// Process `pid` exited (the registry dropped its attached interpreter and code caches): drop
/// everything else kept for it (its layout and threads in the BPF maps, and its membership of the
/// followed tree; its symbolizer and unwinder state).
fn drop_process(
    pid: u32,
    scope: Scope,
    symbols: &mut Resolver,
    sampler: &BpfSampler,
    registry: &mut WalkRegistry,
) {
    registry.forget(sampler, pid);
    if let Scope::Tree(_) = scope {
        sampler.remove_child(pid);
    }
    symbols.symbols.forget(pid);
    symbols.returns.forget(pid);
    if let Some(unwinder) = symbols.unwinder.as_mut() {
        unwinder.forget(pid);
    }
}

/// Every BPF loss counter, zero or not (a counter's absence must mean the sampler has none,
/// and a metrics series should exist before its first loss), plus our own count of stale
/// Python samples.
fn losses(counters: Vec<(&'static str, u64)>, stale: u64) -> Vec<(&'static str, u64)> {
    // The Python walk's counters lose nothing (user space reads those stacks itself): they
    // are reported with `python_read_late`.
    let mut lost: Vec<_> = counters
        .into_iter()
        .filter(|(name, _)| !name.starts_with("py_"))
        .collect();
    lost.push(("stale_python", stale));
    lost
}

/// One sample: turned into a stack, counted.
#[allow(clippy::too_many_arguments)]
fn handle(
    raw: &RawSample,
    config: &BpfSourceConfig,
    table: &mut Processes,
    symbols: &mut Resolver,
    bpf: Option<&BpfSampler>,
    registry: &mut WalkRegistry,
    summary: &mut BpfSummary,
    seeded: &mut HashMap<u32, StackTrace>,
    on_stack: &mut impl FnMut(&StackTrace, &SampleProcess),
) {
    if raw.off_cpu_seeded {
        // Away since before the start: the stack user space read then (`seed_sleepers`).
        let (Some(stack), Some(entry)) = (seeded.remove(&raw.tid), table.get(raw.pid)) else {
            return;
        };
        if stack.pid != raw.pid || (config.gil_only && stack.owns_gil != Some(true)) {
            return;
        }
        summary.samples += 1;
        summary.python_samples += 1;
        summary.off_cpu_seeded += 1;
        let python = entry.python().map(PythonProcess::version);
        on_stack(
            &stack,
            &SampleProcess {
                name: entry.name.as_str(),
                details: &entry.details,
                python,
                start_time: entry.start_time,
                off_cpu_ns: raw.off_cpu_ns,
                ktime_ns: raw.ktime_ns,
            },
        );
        return;
    }
    if let Some((stack, process)) = to_stack(raw, config, table, symbols, bpf, registry, summary) {
        summary.samples += 1;
        on_stack(&stack, &process);
    }
}

/// One raw sample to a stack (leaf first) and its process's name; `None` when filtered out.
fn to_stack<'t>(
    raw: &RawSample,
    config: &BpfSourceConfig,
    table: &'t mut Processes,
    symbols: &mut Resolver,
    bpf: Option<&BpfSampler>,
    registry: &mut WalkRegistry,
    summary: &mut BpfSummary,
) -> Option<(StackTrace, SampleProcess<'t>)> {
    // An off-CPU sample's thread ran again at the end of its time away: a stack read after
    // that would be another instant's.
    let taken_ns = raw.ktime_ns.saturating_add(raw.off_cpu_ns);
    let stale = monotonic_ns().saturating_sub(taken_ns) > MAX_PYTHON_AGE_NS;
    if stale && !table.contains(raw.pid) {
        // Attaching to a new process is the slow path; behind already, it would only put us
        // further behind for a sample whose Python stack could no longer be read truthfully.
        summary.stale += 1;
        return None;
    }
    if raw.python.status == BpfPyStatus::ReadFailed {
        // The walk failed where it had worked: the process may have exec'd another program.
        table.recheck_now(raw.pid);
    }
    let entry = entry_for(table, symbols, raw, summary);
    let unwound = unwind(raw, symbols, summary);
    let mut stack = StackTrace {
        pid: raw.pid,
        tid: Some(raw.tid),
        thread_name: Some(raw.comm.clone()),
        thread_ident: 0,
        active: raw.off_cpu_ns == 0,
        owns_gil: None,
        frames: Vec::new(),
    };
    let starting_python = !entry.is_python() && entry.starting;
    let serial = entry.serial;
    let extra = &mut entry.extra;
    if let Kind::Python(process) = &mut entry.kind {
        summary.python_samples += 1;
        // Frames the BPF program walked are the sample's own, however late we get to them;
        // a stack read now is only the sample's if now is soon enough.
        if stale && !raw.python.status.is_walked() {
            summary.stale += 1;
            // A thread the program does not know yet is read late at every sample until it is
            // registered; behind already, we would never get to register it (wall-clock mode
            // loses a new thread's time that way): read the thread list now and then.
            if raw.python.status == BpfPyStatus::NoThread
                && extra.threads_refreshed.elapsed() >= REFRESH_THREADS
            {
                extra.threads_refreshed = Instant::now();
                if let (Some(sampler), Ok(())) = (bpf, process.read_thread_list()) {
                    registry.sync(sampler, raw.pid, serial, process);
                }
            }
            return None;
        }
        let want = StackExtras {
            // The GIL as the program read it at the sample; read here only where it did not.
            gil: raw.python.gil.is_none(),
            thread_name: config.thread_names,
        };
        let (read, walked_in_bpf) = read_python(process, raw, want, summary);
        let late_gil = match &read {
            Ok(Some((py, _, _))) => py.owns_gil,
            _ => None,
        };
        summary.gil_read_late += u64::from(raw.python.gil.is_none() && late_gil.is_some());
        if let Some(sampler) = bpf {
            if let Err(SampleError::Exited { .. }) = &read {
                registry.forget(sampler, raw.pid);
            } else {
                registry.sync(sampler, raw.pid, serial, process);
            }
        }
        match read {
            Ok(Some((py, entries, shims))) if !py.frames.is_empty() => {
                // The Python frames alone (a native unwind's truncation is not a read error).
                if summary.python_frames_rejected.count(&py.frames) {
                    summary.python_errors += 1;
                }
                let mut frames = match &unwound {
                    Some(native) => {
                        let eval = extra.eval.get_or_insert_with(|| {
                            symbolize::function_ranges(
                                raw.pid,
                                &process.interpreter.binary,
                                crate::native::EVAL_LOOP,
                            )
                        });
                        let mut frames = kernel_frames(raw, symbols);
                        let merged = merge_native(
                            raw.pid, native, eval, &py.frames, &entries, &shims, symbols,
                        );
                        if merged.mismatch && walked_in_bpf {
                            summary.native.mismatched += 1;
                        } else if merged.mismatch {
                            summary.mismatched_read_late += 1;
                        }
                        frames.extend(merged.frames);
                        frames
                    }
                    None => py.frames.clone(),
                };
                // A stretch off the CPU asleep on the GIL: what the thread waited for, under
                // the Python frame that wanted it back.
                if raw.off_cpu_ns != 0 && process.waits_for_gil(raw.wait_addr) {
                    frames.insert(0, Frame::GilWait);
                }
                stack = StackTrace {
                    active: raw.off_cpu_ns == 0,
                    frames,
                    thread_name: py.thread_name.clone().or(stack.thread_name),
                    ..py
                };
            }
            Ok(_) => {}
            Err(e) => {
                summary.python_errors += 1;
                log::debug!("pid {}: {e}", raw.pid);
            }
        }
        stack.owns_gil = raw.python.gil.or(late_gil);
        if config.gil_only && stack.owns_gil != Some(true) {
            return None;
        }
    } else {
        if let Some(sampler) = bpf {
            // A pid that was Python and now names another process.
            registry.sync_native(sampler, raw.pid, serial);
        }
        if config.python_only || config.gil_only {
            return None;
        }
    }
    if stack.frames.is_empty() {
        // Not running Python code (or not Python at all): its native and kernel frames.
        stack.frames = kernel_frames(raw, symbols);
        match &unwound {
            Some(native) => {
                stack.frames.extend(
                    symbols
                        .symbols
                        .user_frames(raw.pid, &native.addrs)
                        .into_iter()
                        .map(Frame::Native),
                );
                if let Some(reason) = native.truncated {
                    stack.frames.push(Frame::Truncated(reason));
                }
            }
            // An interpreter still starting up: not readable as Python yet, and its
            // frame-pointer stack would be the garbage of code built without them.
            None if starting_python => stack.frames.push(Frame::Unknown(Reason::PythonStarting)),
            None => stack.frames.extend(frame_pointer_frames(raw, symbols)),
        }
    }
    let python = entry.python().map(PythonProcess::version);
    Some((
        stack,
        SampleProcess {
            name: entry.name.as_str(),
            details: &entry.details,
            python,
            start_time: entry.start_time,
            off_cpu_ns: raw.off_cpu_ns,
            ktime_ns: raw.ktime_ns,
        },
    ))
}

/// The sampled thread's Python stack: from the frames the BPF program walked at the sample's
/// instant when it could (`true`), else read now from the thread state (and counted, by why).
fn read_python(
    process: &mut PythonProcess,
    raw: &RawSample,
    want: StackExtras,
    summary: &mut BpfSummary,
) -> (Result<Option<StackWithEntries>, SampleError>, bool) {
    let why = match raw.python.status {
        BpfPyStatus::Walked | BpfPyStatus::Depth => {
            let (frames, next) = (&raw.python.frames, raw.python.next);
            match process.thread_stack_from_bpf(raw.tid, frames, next, want) {
                Some(read) => {
                    summary.python_walked_in_bpf += 1;
                    return (Ok(Some(read)), true);
                }
                // Registered in BPF but gone from our own map since (a full read just now).
                None => "unregistered",
            }
        }
        BpfPyStatus::NotWalked => "unregistered",
        BpfPyStatus::NoThread => "py_no_thread",
        BpfPyStatus::ThreadMismatch => "py_thread_mismatch",
        BpfPyStatus::ReadFailed => "py_read_failed",
    };
    match summary
        .python_read_late
        .iter_mut()
        .find(|(name, _)| *name == why)
    {
        Some((_, n)) => *n += 1,
        None => summary.python_read_late.push((why, 1)),
    }
    (process.thread_stack_with_entries(raw.tid, want), false)
}

/// The registry's state of the sample's process (attached at its first sample, replaced when
/// its pid names another process, tried again while it may become Python), counted; what the
/// symbolizer and unwinder kept of an earlier process under its pid is dropped.
fn entry_for<'t>(
    table: &'t mut Processes,
    symbols: &mut Resolver,
    raw: &RawSample,
    summary: &mut BpfSummary,
) -> &'t mut KnownProcess<Walked> {
    let (met, entry) = table.observe(raw.pid, &raw.comm, raw.process_start_ns);
    if let Met::Replaced { .. } = met {
        symbols.symbols.forget(raw.pid);
        symbols.returns.forget(raw.pid);
        if let Some(unwinder) = symbols.unwinder.as_mut() {
            unwinder.forget(raw.pid);
        }
    }
    summary.processes_attached += u64::from(met.is_new_process());
    summary.python_attached += u64::from(match met {
        Met::Known | Met::Retried { python: false } => false,
        Met::New | Met::Replaced { .. } => entry.is_python(),
        Met::Retried { python: true } => true,
    });
    entry
}

/// Cheap test before attaching to a process, or re-attaching a known non-Python one: does it
/// (now) map an interpreter? An executable whose path names python is mapped, so it answers
/// for most Python processes without `/proc/PID/maps`, which costs ~10x more to read (a line
/// per thread stack; attaching reads it once anyway); embedded interpreters (a `libpython`
/// loaded by another program) and lib-dynload modules are found in the maps.
fn may_have_become_python(pid: u32) -> bool {
    if proc::exe(pid).is_ok_and(|exe| exe.to_string_lossy().contains("python")) {
        return true;
    }
    proc::maps(pid)
        .map(|maps| maps_run_python(&maps))
        .unwrap_or(false)
}

/// Whether code of a file named python is mapped executable: the interpreter, libpython, its
/// lib-dynload modules. A file mapped only to be read (another profiler's symbolizer mapping
/// libpython, a debugger) does not make a process Python: such a process was attached and
/// retried at every recheck, and its own binary symbolized, for as long as it ran.
fn maps_run_python(maps: &[crate::process::maps::MapRange]) -> bool {
    maps.iter().any(|m| {
        m.executable
            && m.pathname
                .as_ref()
                .and_then(|p| p.to_str())
                .is_some_and(|p| p.contains("python"))
    })
}

#[cfg(test)]
mod tests {
    use super::maps_run_python;
    use crate::process::maps::parse_maps;

    #[test]
    fn a_libpython_mapped_only_to_be_read_is_not_python() {
        let reader =
            "7f34c5800000-7f34c638e000 r--s 00000000 08:01 1234 /usr/lib/libpython3.11.so.1.0\n\
                      7f34c7000000-7f34c7001000 r-xp 00000000 08:01 99 /usr/bin/profiler\n";
        assert!(!maps_run_python(&parse_maps(reader)));
        let embedded = "7f34c5800000-7f34c5900000 r--p 00000000 08:01 1234 /usr/lib/libpython3.11.so.1.0\n\
                        7f34c5900000-7f34c5c00000 r-xp 00100000 08:01 1234 /usr/lib/libpython3.11.so.1.0\n";
        assert!(maps_run_python(&parse_maps(embedded)));
        let dynload = "7f34c5900000-7f34c5c00000 r-xp 00100000 08:01 77 /usr/lib/python3.11/lib-dynload/_ssl.so\n";
        assert!(maps_run_python(&parse_maps(dynload)));
    }
}
