//! Core types shared by every layer: samples, frames, stacks, a process tree's nodes, and unix
//! time in nanoseconds. Depends on nothing else in the crate.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// An address in the *target* process. Never dereferenced locally.
pub type Addr = u64;

/// A CPython version as detected in the target (`Py_Version` or the binary's version string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PyVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl PyVersion {
    pub const fn new(major: u8, minor: u8, patch: u8) -> Self {
        PyVersion {
            major,
            minor,
            patch,
        }
    }

    /// `(major, minor)`: what selects a row of the offsets table.
    pub fn minor_series(&self) -> (u8, u8) {
        (self.major, self.minor)
    }
}

impl std::fmt::Display for PyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One Python frame as read from the target, not yet resolved to names and lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawPyFrame {
    /// Address of the code object (`PyCodeObject*`).
    pub code_addr: Addr,
    /// Position of the current instruction: a byte offset (<= 3.9), a code-unit index (3.10)
    /// or the instruction pointer (3.11+). Interpreted only by the version's line table.
    pub instr: u64,
    /// The code object's fingerprint as the BPF program read it at the sample
    /// (`BpfPyFrame::code_id`); 0 when not read (the code cache then reads the header).
    pub code_id: u64,
}

/// A resolved Python frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PyFrame {
    /// Qualified name where the version has one (3.11+), else the plain name.
    pub function: String,
    pub filename: String,
    /// Line of the current instruction; 0 when unknown.
    pub line: u32,
    /// First line of the function (used by `--function`).
    pub first_line: u32,
}

/// Why a stack stops early or a frame could not be read. Truncation is data, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Reason {
    /// The frame chain was longer than the depth limit.
    DepthLimit,
    /// The frame chain looped back on itself.
    Cycle,
    /// Target memory could not be read (process exited or frame freed under us).
    ReadFailed,
    /// The bytes read do not look like the expected object.
    BadObject,
    /// `--native`: the eval-loop frames of the native stack and the Python stack's eval-loop
    /// calls did not pair up one to one.
    NativeMismatch,
    /// The code object the BPF program saw at the sample was freed and its memory holds
    /// another object by the time user space read it (a short-lived function).
    Replaced,
    /// A native stack walk reached a value that is not a return address (outside executable
    /// code, or not right after a call instruction): frame pointers through code built
    /// without them, or an unwind that lost its way. What follows would be invented.
    NotReturnAddress,
    /// A frame-pointer chain that points back at itself: every further frame would repeat.
    FramePointerLoop,
    /// `--native`: the native stack ended before reaching the eval loop the Python frames
    /// run in (code without usable unwind information): the native frames found are the
    /// leaf side, the Python frames the caller side, and what lies between is unknown.
    NativeIncomplete,
    /// A process that is becoming Python (its interpreter is not ready to be read yet): its
    /// native frames are not shown (a frame-pointer walk through such code is garbage).
    PythonStarting,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::DepthLimit => "depth limit",
            Reason::Cycle => "cycle",
            Reason::ReadFailed => "read failed",
            Reason::BadObject => "bad object",
            Reason::NativeMismatch => "native/python mismatch",
            Reason::Replaced => "code object gone",
            Reason::NotReturnAddress => "not a return address",
            Reason::FramePointerLoop => "frame pointer loop",
            Reason::NativeIncomplete => "native stack incomplete",
            Reason::PythonStarting => "python starting",
        }
    }
}

/// A resolved native frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NativeFrame {
    /// The symbol, or `module+0xoffset` when the address has none; never empty.
    pub name: String,
    /// The module's file name (`libc.so.6`), empty when the address is in no file mapping.
    pub module: String,
    /// Where the function starts (for an address no symbol names: the instruction itself), as
    /// an offset in the module's file: the same in every process that maps the module. `None`
    /// when the address is in no file mapping.
    pub offset: Option<u64>,
}

/// One frame of a finished stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum Frame {
    Python(PyFrame),
    /// Machine code in user space.
    Native(NativeFrame),
    /// A kernel function.
    Kernel(String),
    Truncated(Reason),
    Unknown(Reason),
    /// Wall-clock mode: the thread was off the CPU waiting for the GIL (asleep on the GIL's
    /// condition variable or mutex); the leaf, under the Python frame that wanted it back.
    GilWait,
}

/// The name a `Frame::GilWait` is shown with.
pub const GIL_WAIT: &str = "gil_wait";

/// The stack of one thread at one instant, leaf (innermost) first, as CPython links them.
#[derive(Debug, Clone, Serialize)]
pub struct StackTrace {
    pub pid: u32,
    /// OS thread id, when known.
    pub tid: Option<u32>,
    /// `threading` name (or OS thread name) when known.
    pub thread_name: Option<String>,
    /// The `pthread_t` / `thread_id` CPython stores for this thread.
    pub thread_ident: u64,
    /// Whether the thread was running on a CPU (false = idle / waiting).
    pub active: bool,
    /// Whether the thread held the GIL; `None` when that was not read (not a Python thread,
    /// not asked for, or a version whose GIL holder is not known).
    pub owns_gil: Option<bool>,
    /// Frames, leaf (innermost) first.
    pub frames: Vec<Frame>,
}

/// One sample from the BPF sampler: which thread ran where and when, and its raw stacks
/// (instruction pointers, leaf first), not yet symbolized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSample {
    /// Process id (the kernel's tgid).
    pub pid: u32,
    /// Thread id (the kernel's pid).
    pub tid: u32,
    pub cpu: u32,
    /// `CLOCK_MONOTONIC` time of the sample.
    pub ktime_ns: u64,
    /// When the process started (ns since boot; 0 when unknown): a different value under the
    /// same pid is another process.
    pub process_start_ns: u64,
    /// An off-CPU sample (BPF wall-clock mode): nanoseconds the thread was off the CPU from
    /// `ktime_ns`, when it left and its stacks were taken. 0: a sample of a running thread.
    pub off_cpu_ns: u64,
    /// An off-CPU sample of a thread that was off the CPU when the recording started: user space
    /// read its stack then (the record has none).
    pub off_cpu_seeded: bool,
    /// An off-CPU sample of a thread that slept in futex(2): the futex word's address (the
    /// GIL's, for a thread waiting for the GIL); 0 otherwise.
    pub wait_addr: u64,
    /// The thread's `comm` (at most 15 bytes; empty when it could not be read).
    pub comm: String,
    /// Kernel stack, leaf first.
    pub kernel: Vec<Addr>,
    /// User stack, leaf first (frame-pointer unwound by the kernel).
    pub user: Vec<Addr>,
    pub kernel_status: StackStatus,
    pub user_status: StackStatus,
    /// With a user-stack copy (BPF `--native`): the thread's user registers at the sample;
    /// `None` without a copy or when they could not be read.
    pub user_regs: Option<SampleRegs>,
    /// With `user_regs`: the top of the thread's user stack, from `user_regs.sp` up (empty when
    /// it could not be copied).
    pub user_stack: Vec<u8>,
    /// Address ranges inside `user_stack` that could not be read (zero in the copy): pages of
    /// a large frame never touched yet, which the BPF program cannot fault in.
    pub user_stack_unread: Vec<std::ops::Range<Addr>>,
    /// The thread's Python frames as the BPF program walked them at the same instant.
    pub python: BpfPython,
}

/// The Python frames of a BPF sample, walked by the BPF program from the thread's thread state
/// (processes user space registered only), unresolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BpfPython {
    pub status: BpfPyStatus,
    /// Leaf first: every frame read, shims included (`Walked`/`Depth`: the whole walk so far;
    /// `ReadFailed`: the frames before the failure).
    pub frames: Vec<BpfPyFrame>,
    /// `Depth`: the address of the first frame not walked.
    pub next: Addr,
    /// Whether the thread held the GIL at the sample, when the program read it.
    pub gil: Option<bool>,
}

/// What the BPF program's Python walk did for one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BpfPyStatus {
    /// Not a registered Python process (not Python, or not attached yet).
    #[default]
    NotWalked,
    /// The whole frame chain (empty when the thread runs no Python code).
    Walked,
    /// The walk stopped at its depth limit; `BpfPython::next` continues it.
    Depth,
    /// The thread is not registered yet.
    NoThread,
    /// The registered thread state is no longer this thread's.
    ThreadMismatch,
    /// A read failed part-way.
    ReadFailed,
}

impl BpfPyStatus {
    /// Whether the frames are usable as they are (possibly continued by user space).
    pub fn is_walked(self) -> bool {
        matches!(self, BpfPyStatus::Walked | BpfPyStatus::Depth)
    }
}

/// One frame of a BPF Python walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BpfPyFrame {
    /// The frame's address (`PyFrameObject*` / `_PyInterpreterFrame*`).
    pub frame: Addr,
    /// Its code object; 0 for a shim (or a frame without code).
    pub code: Addr,
    /// As `RawPyFrame::instr`.
    pub instr: u64,
    /// An eval-loop entry shim (3.12+): no Python code of its own.
    pub shim: bool,
    /// 3.11's `is_entry`; always set on <= 3.10, where every frame is its own eval call.
    pub entry: bool,
    /// A hash of the code object's header fields that tell it from a later code object at
    /// the same address (`python::code::CodeId`); 0 when the program did not read them.
    pub code_id: u64,
}

/// The user registers a native unwind starts from (x86-64), as the BPF sampler captured them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRegs {
    pub ip: Addr,
    pub sp: Addr,
    pub bp: Addr,
}

/// How a raw stack was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum StackStatus {
    /// Captured (possibly empty: a kernel thread has no user stack).
    Collected,
    /// The stack filled the buffer: it may have been cut at the depth limit.
    DepthLimit,
    /// Capturing it failed; the stack is empty.
    Failed,
    /// Not asked for (kernel stacks switched off).
    NotCollected,
}

/// A process of a recorded process tree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessNode {
    /// The process it sits under: its parent, or the profiled root when a parent in between
    /// exited before the process was seen. `None` for the root.
    pub parent: Option<u32>,
    /// Its command line, arguments joined by spaces, bounded in length.
    pub command_line: String,
}

/// `t` in nanoseconds since the Unix epoch (0 before it).
pub fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
