//! Native (machine-code) frames: turning user and kernel addresses into symbol names
//! (`symbolize`), unwinding a paused thread's stack with `.eh_frame` (`unwind`), and the merge
//! of native and Python frames (`merge`) for `--native`; telling a return address from other
//! values (`return_address`) and so how much of a frame-pointer stack to trust (`fp_stack`),
//! and, where the unwinder has no rule for a frame (`cfi_coverage`), where its return
//! address lies (`stack_scan`); which frames are the interpreter's own machinery (`interpreter_frames`).

pub mod cfi_coverage;
pub mod debug_info;
pub mod fp_stack;
pub mod interpreter_frames;
pub mod kallsyms;
pub mod merge;
pub mod return_address;
pub mod stack_scan;
pub mod symbolize;
pub mod unwind;

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

pub use symbolize::NativeSymbolizer;

use crate::model::{Addr, Frame};
use crate::process::kstack::KernelStack;
use crate::process::memory::RemoteMemory;
use crate::process::regs;
use merge::NativeSlot;
use unwind::NativeUnwinder;

/// The functions whose frames are the eval loop, each C call of which runs Python frames.
pub const EVAL_LOOP: &[&str] = &[
    "_PyEval_EvalFrameDefault",
    "_PyEval_EvalFrameDefault.cold",
    "PyEval_EvalFrameEx",
    "PyEval_EvalFrameEx.cold",
];

/// Counters of `--native`, summarised at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeStats {
    /// Threads unwound.
    pub stacks: u64,
    /// Native stacks that ended before their root (stack copy or depth exhausted).
    pub truncated: u64,
    /// Stacks whose eval-loop frames and Python groups did not pair up.
    pub mismatched: u64,
    /// Threads whose registers could not be read (they keep their Python-only stack).
    pub no_registers: u64,
    /// Stacks given the kernel frames of the wait they were stopped in.
    pub kernel: u64,
}

/// Reads the merged native + Python stacks of paused threads.
pub struct NativeReader {
    symbolizer: NativeSymbolizer,
    unwinder: NativeUnwinder,
    /// Per pid: its start time and the address ranges of its eval loop.
    eval: HashMap<u32, (u64, Vec<Range<Addr>>)>,
    stack_bytes: usize,
    pub stats: NativeStats,
}

impl Default for NativeReader {
    fn default() -> Self {
        Self::new(unwind::DEFAULT_STACK_BYTES)
    }
}

impl NativeReader {
    /// `stack_bytes`: how much of each thread's stack is copied, from its stack pointer up.
    pub fn new(stack_bytes: usize) -> Self {
        NativeReader {
            symbolizer: NativeSymbolizer::new(),
            unwinder: NativeUnwinder::new(),
            eval: HashMap::new(),
            stack_bytes,
            stats: NativeStats::default(),
        }
    }

    /// The merged stack, leaf first, of thread `tid` of process `pid` (started at
    /// `start_time`), which must be ptrace-stopped by us. `python` and `entry` are the thread's
    /// Python frames and their eval-loop boundaries (`Walk::entry`); `interpreter_binary` is
    /// the file holding the eval loop, as the target sees it. `shims` are the addresses of the
    /// eval loop's entry frames (3.12+, `Walk::shims`): a native frame whose stack bytes hold
    /// one is the eval loop even where its symbol does not cover the pc. `kernel` is the
    /// thread's kernel stack read just before the pause: it goes on the leaf side if the thread
    /// stopped inside the same system call (else it is from another instant and left out).
    #[allow(clippy::too_many_arguments)]
    pub fn thread_frames(
        &mut self,
        pid: u32,
        start_time: u64,
        tid: u32,
        mem: &dyn RemoteMemory,
        interpreter_binary: &Path,
        python: &[Frame],
        entry: &[bool],
        shims: &[Addr],
        kernel: Option<&KernelStack>,
    ) -> Vec<Frame> {
        let Ok(stopped) = regs::stopped(tid) else {
            self.stats.no_registers += 1;
            return python.to_vec();
        };
        let regs = stopped.regs;
        self.stats.stacks += 1;
        let copy = regs::copy_stack(mem, regs.sp, self.stack_bytes);
        let stack = self.unwinder.unwind(pid, regs, &copy);
        if stack.truncated.is_some() {
            self.stats.truncated += 1;
        }
        if self.eval.get(&pid).is_none_or(|e| e.0 != start_time) {
            let ranges = symbolize::function_ranges(pid, interpreter_binary, EVAL_LOOP);
            self.eval.insert(pid, (start_time, ranges));
        }
        let eval = &self.eval[&pid].1;
        let slots: Vec<NativeSlot> = self
            .symbolizer
            .user_frames(pid, &stack.addrs)
            .into_iter()
            .zip(&stack.addrs)
            .enumerate()
            .map(|(i, (frame, addr))| {
                let own = stack.sps[i]..stack.sps.get(i + 1).copied().unwrap_or(Addr::MAX);
                NativeSlot {
                    frame,
                    eval: eval.iter().any(|r| r.contains(addr))
                        || shims.iter().any(|s| own.contains(s)),
                }
            })
            .collect();
        let (groups, complete) = merge::python_groups(python, entry);
        let merged = merge::merge(&slots, stack.truncated, groups, complete);
        if merged.mismatch {
            self.stats.mismatched += 1;
        }
        match kernel.filter(|k| same_wait(k, stopped.syscall)) {
            Some(k) => {
                self.stats.kernel += 1;
                let mut frames: Vec<Frame> = k.frames.iter().cloned().map(Frame::Kernel).collect();
                frames.extend(merged.frames);
                frames
            }
            None => merged.frames,
        }
    }

    /// Forget a process (it exited or its pid was reused).
    pub fn forget(&mut self, pid: u32) {
        self.eval.remove(&pid);
        self.unwinder.forget(pid);
        self.symbolizer.forget(pid);
    }
}

/// Whether a kernel stack read before the pause is the wait the thread stopped in: it stopped
/// inside a system call, and the same one if the kernel named it before. (A thread that woke
/// up between the two readings stopped in user code or in another call.)
fn same_wait(kernel: &KernelStack, stopped_in: Option<u64>) -> bool {
    stopped_in.is_some() && kernel.syscall.is_none_or(|n| Some(n) == stopped_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_frames_only_for_the_wait_the_thread_stopped_in() {
        let nanosleep = KernelStack {
            frames: vec!["hrtimer_nanosleep".into()],
            syscall: Some(230),
        };
        assert!(same_wait(&nanosleep, Some(230)));
        // Woke up and went on: stopped in user code, or in another system call.
        assert!(!same_wait(&nanosleep, None));
        assert!(!same_wait(&nanosleep, Some(202)));
        // The call was not known before the pause: any call at the stop will do.
        let unnamed = KernelStack {
            syscall: None,
            ..nanosleep
        };
        assert!(same_wait(&unnamed, Some(202)));
        assert!(!same_wait(&unnamed, None));
    }
}
