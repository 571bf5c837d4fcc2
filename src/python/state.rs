//! `PythonProcess`: one attached process with its interpreter, caches and thread bookkeeping,
//! and `stacks()`, which reads every thread's stack at one instant (`stacks_with_locals()`
//! for `dump --locals`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::asyncio::{read_tasks, AsyncTask, TaskList};
use super::asyncio_layout::{locate_async_layout, AsyncLayout, AsyncioError};
use super::attach::{locate_in, AttachError, Interpreter};
use super::code::CodeCache;
use super::gil_wait::{GilWaitLocation, GilWaitRanges};
use super::locals::{frame_locals, Local};
use super::repr::ReprLimits;
use super::thread_names::{ThreadKey, ThreadNameCache};
use super::threads::{gil_holders, interpreters, thread_states, ThreadState, TidResolver};
use super::walk::{walk_bpf_frames, walk_thread, walk_thread_with_addrs, Walk};
use crate::model::{Addr, BpfPyFrame, Frame, PyVersion, StackTrace};
use crate::process::facts::{LiveProcess, ProcessFacts};
use crate::process::memory::{MemoryError, ProcessMemory, RemoteMemory};
use crate::process::pidns::TidNamespace;
#[cfg(not(target_os = "linux"))]
use crate::process::proc;

/// Which threads a caller wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct StackOptions {
    /// Include threads that are not running on a CPU.
    pub include_idle: bool,
    /// Only the thread holding the GIL.
    pub gil_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("process {pid} exited")]
    Exited { pid: u32 },
    #[error("reading threads of process {pid}: {source}")]
    Memory { pid: u32, source: MemoryError },
    #[error("asyncio tasks of process {pid}: {why}")]
    Asyncio { pid: u32, why: String },
    /// A read that must pause the process could not (`why`: the pause error, naming it).
    #[error("{why}")]
    NotPaused { pid: u32, why: String },
}

/// A thread's stack with the local variables of its frames (`dump --locals`).
#[derive(Debug, Clone)]
pub struct StackWithLocals {
    pub trace: StackTrace,
    /// The locals of `trace.frames[i]`, for the Python frames read (a trailing
    /// `Frame::Truncated` has none); `Err` says why a frame's locals could not be read.
    pub locals: Vec<FrameLocals>,
}

/// One frame's locals, or why they could not be read.
pub type FrameLocals = Result<Vec<Local>, String>;

/// What `thread_stack_from_bpf` reads beside the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackExtras {
    /// `StackTrace::owns_gil` (a few reads per sample; `None` when not wanted).
    pub gil: bool,
    /// `StackTrace::thread_name` (the `threading` name: many reads, once per thread).
    pub thread_name: bool,
}

impl StackExtras {
    pub const ALL: StackExtras = StackExtras {
        gil: true,
        thread_name: true,
    };
}

/// A stack for `--native`: the trace, `Walk::entry` flags and `Walk::shims` addresses.
pub type StackWithEntries = (StackTrace, Vec<bool>, Vec<Addr>);

/// An attached Python process: its memory `M` and what the OS says of it `F`, live by
/// default, or a recording replayed (the snapshot tests).
pub struct PythonProcess<M = ProcessMemory, F = LiveProcess> {
    pub pid: u32,
    /// `/proc/PID/stat` start time: a different value under the same pid is another process.
    pub start_time: u64,
    pub interpreter: Interpreter,
    pub executable: PathBuf,
    pub cmdline: Vec<String>,
    mem: M,
    os: F,
    codes: CodeCache,
    tids: TidResolver,
    /// The target's own thread ids (what its thread states hold) <-> the host's.
    ns: TidNamespace,
    /// Thread states whose thread id named no thread of the process (see `untranslated_tids`).
    untranslated: u64,
    names: ThreadNameCache,
    /// OS tid -> thread state, from the last full read: lets `thread_stack` walk only the
    /// sampled thread instead of every thread of the process.
    tstates: HashMap<u32, ThreadState>,
    tstates_read_at: Option<Instant>,
    /// Bumped each time `tstates` is rebuilt (see `thread_states_generation`).
    tstates_generation: u64,
    /// Where asyncio keeps its tasks (3.14+), found at the first `async_tasks`.
    asyncio: Option<AsyncLayout>,
    /// When and why the last search for it failed.
    asyncio_missing: Option<(Instant, String)>,
    /// Where a thread waiting for the GIL sleeps, found at the first `waits_for_gil`.
    gil_wait: GilWaitRanges,
}

/// How long `async_tasks` waits before looking for the asyncio layout again.
const ASYNCIO_RETRY: Duration = Duration::from_millis(200);

/// How long `thread_stack` trusts the tid -> thread state map before a full read. Each use is
/// confirmed by reading the thread state's own thread id, so this only bounds how long names
/// of ended threads linger; a full read costs a few reads per thread of the process.
const TSTATE_MAP_TTL: Duration = Duration::from_secs(10);

impl PythonProcess {
    pub fn attach(pid: u32) -> Result<PythonProcess, AttachError> {
        PythonProcess::attach_to(ProcessMemory::new(pid), LiveProcess::new(pid))
    }

    /// Every asyncio task of the process (3.14+): each thread's, then each interpreter's
    /// (tasks of threads that ended). The asyncio layout is found at the first call; until
    /// the target imports asyncio there is none, and the error says so.
    pub fn async_tasks(&mut self) -> Result<Vec<AsyncTask>, AsyncioError> {
        if self.asyncio.is_none() {
            // Until asyncio is imported there is no layout; while sampling, looking again
            // (the maps and ELF headers) five times a second is plenty.
            if let Some((at, why)) = &self.asyncio_missing {
                if at.elapsed() < ASYNCIO_RETRY {
                    return Err(AsyncioError::Again(why.clone()));
                }
            }
            match locate_async_layout(&self.mem, &self.interpreter) {
                Ok(layout) => self.asyncio = Some(layout),
                Err(e) => {
                    self.asyncio_missing = Some((Instant::now(), e.to_string()));
                    return Err(e);
                }
            }
        }
        self.read_thread_list()?;
        let pid = self.pid;
        let o = &self.interpreter.offsets;
        let mem: &dyn RemoteMemory = &self.mem;
        let lost = |source: MemoryError| SampleError::Memory { pid, source };
        let head = self.interpreter.interpreters_head(mem).map_err(lost)?;
        let interps = interpreters(mem, o, head).map_err(lost)?;
        let Some(layout) = self.asyncio.as_ref() else {
            return Ok(Vec::new());
        };
        let tid_of: HashMap<Addr, u32> =
            self.tstates.iter().map(|(&tid, t)| (t.addr, tid)).collect();
        let mut lists = Vec::new();
        for &interp in &interps {
            for t in thread_states(mem, o, interp).map_err(lost)? {
                let tid = tid_of.get(&t.addr).copied();
                lists.push(TaskList::of_thread(mem, layout, t.addr, tid));
            }
            lists.push(TaskList::of_interpreter(layout, interp));
        }
        Ok(read_tasks(mem, o, layout, &mut self.codes, &lists))
    }
}

impl<M: RemoteMemory, F: ProcessFacts> PythonProcess<M, F> {
    /// Every selected thread's stack, leaf first. Per-thread trouble becomes a truncated stack;
    /// only losing the process (or its interpreter list) is an error.
    pub fn stacks(&mut self, opts: StackOptions) -> Result<Vec<StackTrace>, SampleError> {
        Ok(self
            .read_now(opts, None)?
            .into_iter()
            .map(|s| s.trace)
            .collect())
    }

    /// As `stacks`, each with its Python frames' locals when `locals` is given (else none):
    /// which threads are running is what the OS says now.
    pub fn read_now(
        &mut self,
        opts: StackOptions,
        locals: Option<ReprLimits>,
    ) -> Result<Vec<StackWithLocals>, SampleError> {
        // Off Linux a thread's state comes from a listing of all of them: one per sample.
        #[cfg(not(target_os = "linux"))]
        {
            let running = proc::running_threads(self.pid);
            self.read_threads(opts, |_, tid| running.contains(&tid), |_| true, locals)
        }
        // On Linux a thread's state is its own small read, asked through the facts so that a
        // recording replays it.
        #[cfg(target_os = "linux")]
        self.read_threads(opts, |os, tid| os.thread_is_running(tid), |_| true, locals)
    }

    /// Attach to the process `os` describes, reading its memory through `mem`.
    pub fn attach_to(mem: M, os: F) -> Result<PythonProcess<M, F>, AttachError> {
        let pid = os.pid();
        let start_time = os.start_time()?;
        let interpreter = locate_in(&mem, &os)?;
        if let GilWaitLocation::Unknown(why) = &interpreter.gil_wait {
            log::debug!("pid {pid}: waits for the GIL will not be told apart: {why}");
        }
        let gil_wait = GilWaitRanges::new(interpreter.gil_wait.clone());
        Ok(PythonProcess {
            pid,
            start_time,
            executable: os.exe().unwrap_or_default(),
            cmdline: os.cmdline().unwrap_or_default(),
            interpreter,
            ns: os.tid_namespace()?,
            mem,
            os,
            codes: CodeCache::default(),
            tids: TidResolver::default(),
            untranslated: 0,
            names: ThreadNameCache::default(),
            tstates: HashMap::new(),
            tstates_read_at: None,
            tstates_generation: 0,
            gil_wait,
            asyncio: None,
            asyncio_missing: None,
        })
    }

    pub fn version(&self) -> PyVersion {
        self.interpreter.version
    }

    /// Whether this pid still names the process we attached to (not exited, not reused).
    pub fn is_same_process(&self) -> bool {
        self.os
            .start_time()
            .map(|t| t == self.start_time)
            .unwrap_or(false)
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Whether the process lives in a PID namespace of its own (a container): its thread
    /// states hold its own thread ids, which every stack translates to the host's.
    pub fn in_pid_namespace(&self) -> bool {
        self.ns.is_nested()
    }

    /// Thread states read whose thread id was no thread of the process (in its namespace,
    /// translated to the host's): such a thread is shown without a tid, and cannot be walked
    /// in BPF. A thread that ends between the two reads counts too.
    pub fn untranslated_tids(&self) -> u64 {
        self.untranslated
    }

    /// `stacks`, with the caller telling which threads are running: a paused process has
    /// every thread stopped, so `--blocking` asks `/proc` before pausing.
    pub fn stacks_with_activity(
        &mut self,
        opts: StackOptions,
        is_running: impl Fn(u32) -> bool,
    ) -> Result<Vec<StackTrace>, SampleError> {
        Ok(self
            .read_threads(opts, |_, tid| is_running(tid), |_| true, None)?
            .into_iter()
            .map(|s| s.trace)
            .collect())
    }

    /// `stacks_with_activity`, plus (with `locals`) every frame's local variables shown within
    /// those limits. Locals are slower (several reads per variable): for `dump`, never for
    /// sampling.
    pub fn stacks_with_locals(
        &mut self,
        opts: StackOptions,
        is_running: impl Fn(u32) -> bool,
        locals: Option<ReprLimits>,
    ) -> Result<Vec<StackWithLocals>, SampleError> {
        self.read_threads(opts, |_, tid| is_running(tid), |_| true, locals)
    }

    /// The stack of the one thread with OS thread id `tid`, which is known to be on a CPU
    /// (the BPF sampler just sampled it), with the eval-loop boundaries and entry shims of
    /// `stacks_with_entries`; `None` if it has no Python thread state. `want` as in
    /// `thread_stack_from_bpf`: a process's first read would otherwise look up every
    /// thread's `threading` name (a hundred reads) for a profile that does not show them.
    pub fn thread_stack_with_entries(
        &mut self,
        tid: u32,
        want: StackExtras,
    ) -> Result<Option<StackWithEntries>, SampleError> {
        let fresh = self
            .tstates_read_at
            .is_some_and(|at| at.elapsed() < TSTATE_MAP_TTL);
        if let (true, Some(&t)) = (fresh, self.tstates.get(&tid)) {
            if let Some(read) = self.one_thread(t, tid, want)? {
                return Ok(Some(read));
            }
        }
        // Unknown thread, a thread state that moved on, or time for a refresh: read them all.
        self.tstates_read_at = Some(Instant::now());
        let all = StackOptions {
            include_idle: true,
            gil_only: false,
        };
        let read = self.read_threads_full(all, |_, _| true, |t| t == Some(tid), None, want)?;
        Ok(read
            .into_iter()
            .map(|(trace, (entry, shims), _)| (trace, entry, shims))
            .next())
    }

    /// Whether a thread that slept in futex(2) on `futex_word` (`RawSample::wait_addr`) was
    /// waiting for the GIL: the word lies inside the GIL's condition variables or mutexes (its
    /// semaphore on 2.7).
    pub fn waits_for_gil(&mut self, futex_word: Addr) -> bool {
        let mem: &dyn RemoteMemory = &self.mem;
        let o = &self.interpreter.offsets;
        let root = &self.interpreter;
        self.gil_wait.contains(mem, o, futex_word, || {
            root.interpreters_head(mem)
                .and_then(|head| interpreters(mem, o, head))
                .unwrap_or_default()
        })
    }

    /// Whether this version publishes asyncio's debug offsets (3.14+), which `async_tasks`
    /// needs.
    pub fn has_asyncio_offsets(&self) -> bool {
        super::offsets::coro_model_for(self.version()).is_some()
    }

    /// Read the thread list (no stacks, names or GIL), so that `thread_state_addrs` knows
    /// every thread before any of them is sampled.
    pub fn read_thread_list(&mut self) -> Result<(), SampleError> {
        self.tstates_read_at = Some(Instant::now());
        let all = StackOptions {
            include_idle: true,
            gil_only: false,
        };
        let none = StackExtras {
            gil: false,
            thread_name: false,
        };
        self.read_threads_full(all, |_, _| true, |_| false, None, none)
            .map(|_| ())
    }

    /// The OS thread id -> thread-state address of every thread seen by the last full read
    /// (what the BPF program needs to walk a thread's frames itself).
    pub fn thread_state_addrs(&self) -> impl Iterator<Item = (u32, Addr)> + '_ {
        self.tstates.iter().map(|(&tid, t)| (tid, t.addr))
    }

    /// Changes whenever `thread_state_addrs` may have changed.
    pub fn thread_states_generation(&self) -> u64 {
        self.tstates_generation
    }

    /// The stack of thread `tid` from the frames the BPF program walked at sample time
    /// (`BpfPython::frames`, continued from `next` by reading memory), with its `Walk::entry`
    /// flags and shims; `None` when `tid` is not a thread of the last full read (the caller
    /// reads the stack itself then). The BPF program checked the thread state is `tid`'s.
    /// `want` says which of the GIL flag and the thread name to read (each costs reads the
    /// BPF sampler spends per sample or per thread only when they are shown or filtered on);
    /// what is not wanted is false / `None`.
    pub fn thread_stack_from_bpf(
        &mut self,
        tid: u32,
        frames: &[BpfPyFrame],
        next: Addr,
        want: StackExtras,
    ) -> Option<StackWithEntries> {
        let t = *self.tstates.get(&tid)?;
        let o = &self.interpreter.offsets;
        let mem: &dyn RemoteMemory = &self.mem;
        let walk = walk_bpf_frames(mem, o, frames, next);
        Some(self.finish_stack(t, tid, walk, want))
    }

    /// The stack of thread state `t`, if it still belongs to OS thread `tid`, with its
    /// `Walk::entry` flags and shims.
    fn one_thread(
        &mut self,
        t: ThreadState,
        tid: u32,
        want: StackExtras,
    ) -> Result<Option<StackWithEntries>, SampleError> {
        let o = &self.interpreter.offsets;
        let mem: &dyn RemoteMemory = &self.mem;
        // `tid` is the host's id; the thread state holds the target's own (`t.native_tid`,
        // read with it), which differ in a container.
        let still_ours = match o.tstate_native_thread_id {
            Some(off) => mem
                .read_u64(t.addr + off)
                .is_ok_and(|v| t.native_tid == Some(v as u32)),
            None => mem
                .read_u64(t.addr + o.tstate_thread_id)
                .is_ok_and(|v| v == t.ident),
        };
        if !still_ours {
            return Ok(None);
        }
        let walk = walk_thread(mem, o, t.addr);
        Ok(Some(self.finish_stack(t, tid, walk, want)))
    }

    /// Thread `tid`'s walk resolved into a stack (names, GIL) with its entry flags and shims.
    fn finish_stack(
        &mut self,
        t: ThreadState,
        tid: u32,
        walk: Walk,
        want: StackExtras,
    ) -> StackWithEntries {
        let pid = self.pid;
        let o = &self.interpreter.offsets;
        let mem: &dyn RemoteMemory = &self.mem;
        let mut frames: Vec<Frame> = self.codes.resolve_all(mem, o, &walk.frames);
        if let Some(reason) = walk.truncated {
            frames.push(Frame::Truncated(reason));
        }
        let owns_gil = match want.gil {
            true => gil_holders(mem, o, self.interpreter.gil, &[t.interp])
                .map(|holders| holders.contains(&t.addr)),
            false => None,
        };
        let key = ThreadKey {
            interp: t.interp,
            ident: t.ident,
            tid: Some(tid),
        };
        let thread_name = match want.thread_name {
            true => self.names.name(mem, o, key, || self.os.thread_comm(tid)),
            false => None,
        };
        let stack = StackTrace {
            pid,
            tid: Some(tid),
            thread_name,
            thread_ident: t.ident,
            active: true,
            owns_gil,
            frames,
        };
        (stack, walk.entry, walk.shims)
    }

    /// `stacks_with_activity` for `--native`: each stack with, beside its Python frames, the
    /// eval-loop boundaries of `Walk::entry` (one flag per Python frame read) and the entry
    /// shims' addresses (`Walk::shims`).
    pub fn stacks_with_entries(
        &mut self,
        opts: StackOptions,
        is_running: impl Fn(u32) -> bool,
    ) -> Result<Vec<StackWithEntries>, SampleError> {
        self.read_threads_with_entries(opts, |_, tid| is_running(tid), |_| true)
    }

    /// Walk the threads `select` picks (by OS tid) and `opts` lets through; with `locals`,
    /// also read each frame's local variables.
    fn read_threads(
        &mut self,
        opts: StackOptions,
        is_running: impl Fn(&F, u32) -> bool,
        select: impl Fn(Option<u32>) -> bool,
        locals: Option<ReprLimits>,
    ) -> Result<Vec<StackWithLocals>, SampleError> {
        let read = self.read_threads_full(opts, is_running, select, locals, StackExtras::ALL)?;
        Ok(read
            .into_iter()
            .map(|(trace, _, locals)| StackWithLocals { trace, locals })
            .collect())
    }

    fn read_threads_with_entries(
        &mut self,
        opts: StackOptions,
        is_running: impl Fn(&F, u32) -> bool,
        select: impl Fn(Option<u32>) -> bool,
    ) -> Result<Vec<StackWithEntries>, SampleError> {
        let read = self.read_threads_full(opts, is_running, select, None, StackExtras::ALL)?;
        Ok(read
            .into_iter()
            .map(|(trace, (entry, shims), _)| (trace, entry, shims))
            .collect())
    }

    /// Each selected thread's stack, its `Walk::entry` flags and (with `locals`) the locals
    /// of each Python frame; the GIL flag and thread names only as `want` asks (`gil_only`
    /// reads the GIL anyway).
    #[allow(clippy::type_complexity)]
    fn read_threads_full(
        &mut self,
        opts: StackOptions,
        is_running: impl Fn(&F, u32) -> bool,
        select: impl Fn(Option<u32>) -> bool,
        locals: Option<ReprLimits>,
        want: StackExtras,
    ) -> Result<Vec<(StackTrace, (Vec<bool>, Vec<Addr>), Vec<FrameLocals>)>, SampleError> {
        let pid = self.pid;
        let o = &self.interpreter.offsets;
        let mem: &dyn RemoteMemory = &self.mem;
        let lost = |source: MemoryError| match source {
            MemoryError::Gone { .. } => SampleError::Exited { pid },
            _ if !self.os.exists() => SampleError::Exited { pid },
            source => SampleError::Memory { pid, source },
        };
        let head = self.interpreter.interpreters_head(mem).map_err(lost)?;
        let interps = interpreters(mem, o, head).map_err(lost)?;
        let mut threads = Vec::new();
        for &interp in &interps {
            threads.extend(thread_states(mem, o, interp).map_err(lost)?);
        }
        let holders = match want.gil || opts.gil_only {
            true => gil_holders(mem, o, self.interpreter.gil, &interps),
            false => None,
        };
        let need_mapping: Vec<u64> = threads
            .iter()
            .filter(|t| t.native_tid.is_none())
            .map(|t| t.ident)
            .collect();
        // The OS thread list (a directory read, ~70 us for 50 threads) only for versions
        // whose thread states do not say their OS thread id, or for a process in a PID
        // namespace of its own, whose ids (in thread states and in `struct pthread`) are
        // translated to the host's through each thread's `NSpid:` (read once per thread).
        let os_tids = if need_mapping.is_empty() && !self.ns.is_nested() {
            Vec::new()
        } else {
            self.os.threads().map_err(|_| SampleError::Exited { pid })?
        };
        self.ns.update(&os_tids);
        let mapped = if need_mapping.is_empty() {
            HashMap::new()
        } else {
            let own_tids: Vec<u32> = os_tids
                .iter()
                .filter_map(|&tid| self.ns.to_inner(tid))
                .collect();
            self.tids.resolve(mem, &need_mapping, &own_tids)
        };

        self.names
            .start_sample(threads.iter().map(|t| (t.interp, t.ident)));
        self.tstates.clear();
        self.tstates_generation += 1;
        let mut out = Vec::with_capacity(threads.len());
        for t in threads {
            let owns_gil = holders.as_ref().map(|h| h.contains(&t.addr));
            if opts.gil_only && owns_gil != Some(true) {
                continue;
            }
            let own_tid = t.native_tid.or_else(|| mapped.get(&t.ident).copied());
            let tid = own_tid.and_then(|own| self.ns.to_host(own));
            if own_tid.is_some() && tid.is_none() {
                self.untranslated += 1;
            }
            if let Some(tid) = tid {
                self.tstates.insert(tid, t);
            }
            if !select(tid) {
                continue;
            }
            let active = match tid {
                Some(tid) => is_running(&self.os, tid),
                None => owns_gil == Some(true),
            };
            if !opts.include_idle && !active && !opts.gil_only {
                continue;
            }
            let walk = match locals {
                Some(_) => walk_thread_with_addrs(mem, o, t.addr),
                None => walk_thread(mem, o, t.addr),
            };
            let frame_locals: Vec<FrameLocals> = match locals {
                Some(limits) => walk
                    .frames
                    .iter()
                    .zip(&walk.frame_addrs)
                    .map(|(raw, &frame)| {
                        frame_locals(mem, o, frame, raw.code_addr, limits)
                            .map_err(|e| e.to_string())
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut frames: Vec<Frame> = self.codes.resolve_all(mem, o, &walk.frames);
            if let Some(reason) = walk.truncated {
                frames.push(Frame::Truncated(reason));
            }
            let key = ThreadKey {
                interp: t.interp,
                ident: t.ident,
                tid,
            };
            let thread_name = match want.thread_name {
                true => self
                    .names
                    .name(mem, o, key, || tid.and_then(|t| self.os.thread_comm(t))),
                false => None,
            };
            let stack = StackTrace {
                pid,
                tid,
                thread_name,
                thread_ident: t.ident,
                active,
                owns_gil,
                frames,
            };
            out.push((stack, (walk.entry, walk.shims), frame_locals));
        }
        Ok(out)
    }
}
