//! The native and kernel frames of a BPF sample: symbolized, the frame-pointer stack cut where
//! it stops being trustworthy, and with `--native` the copied stack unwound and merged with the
//! Python frames walked at the same instant.

use std::ops::Range;

use crate::model::{Addr, Frame, RawSample, StackStatus};
use crate::native::merge::{self, NativeSlot};
use crate::native::return_address::ReturnAddresses;
use crate::native::unwind::{NativeStack, NativeUnwinder};
use crate::native::{fp_stack, NativeSymbolizer};
use crate::process::regs::{StackCopy, UserRegs};
use crate::sampler::bpf::BpfSummary;

/// Turns addresses into frames: the symbolizer, and with `native` the unwinder; the check of
/// the return addresses of frame-pointer stacks.
pub struct Resolver {
    pub symbols: NativeSymbolizer,
    pub unwinder: Option<NativeUnwinder>,
    pub returns: ReturnAddresses,
}

/// The frame-pointer user stack the kernel recorded, symbolized as far as it can be trusted
/// (`fp_stack`), then a `Truncated` marker saying why it stops there.
pub fn frame_pointer_frames(raw: &RawSample, symbols: &mut Resolver) -> Vec<Frame> {
    let Resolver {
        symbols: names,
        returns,
        ..
    } = symbols;
    let full = raw.user_status == StackStatus::DepthLimit;
    let (keep, cut) = fp_stack::trusted_len(&raw.user, full, |addr| {
        returns.check(raw.pid, addr, |a| names.is_executable(raw.pid, a))
    });
    let mut frames: Vec<Frame> = names
        .user_frames(raw.pid, &raw.user[..keep])
        .into_iter()
        .map(Frame::Native)
        .collect();
    frames.extend(cut.map(Frame::Truncated));
    frames
}

pub fn kernel_frames(raw: &RawSample, symbols: &mut Resolver) -> Vec<Frame> {
    let names = symbols.symbols.kernel_frames(&raw.kernel);
    // An off-CPU record's kernel stack was taken inside the sched_switch program: its leaf
    // frames are the program and the tracepoint's call of it, not the thread's.
    let ours = match raw.off_cpu_ns {
        0 => 0,
        _ => names
            .iter()
            .take_while(|n| n.starts_with("bpf_prog_") || n.starts_with("bpf_trace_run"))
            .count(),
    };
    names.into_iter().skip(ours).map(Frame::Kernel).collect()
}

/// With `native`: the sample's user stack unwound from its registers and stack copy; `None`
/// without a copy (a kernel thread, or the copy failed: counted as `no_registers`).
pub fn unwind(
    raw: &RawSample,
    symbols: &mut Resolver,
    summary: &mut BpfSummary,
) -> Option<NativeStack> {
    let unwinder = symbols.unwinder.as_mut()?;
    let (Some(regs), false) = (raw.user_regs, raw.user_stack.is_empty()) else {
        if raw.pid != 0 && !raw.user.is_empty() {
            summary.native.no_registers += 1;
        }
        return None;
    };
    let copy = StackCopy {
        base: regs.sp,
        bytes: raw.user_stack.clone(),
        unread: raw.user_stack_unread.clone(),
    };
    let regs = UserRegs {
        ip: regs.ip,
        sp: regs.sp,
        bp: regs.bp,
    };
    let stack = unwinder.unwind(raw.pid, regs, &copy);
    summary.native.stacks += 1;
    if stack.truncated.is_some() {
        summary.native.truncated += 1;
    }
    Some(stack)
}

/// A Python thread's unwound native stack merged with its Python frames (as
/// `NativeReader::thread_frames` does for a paused thread).
#[allow(clippy::too_many_arguments)]
pub fn merge_native(
    pid: u32,
    native: &NativeStack,
    eval: &[Range<Addr>],
    python: &[Frame],
    entries: &[bool],
    shims: &[Addr],
    symbols: &mut Resolver,
) -> merge::Merged {
    let slots: Vec<NativeSlot> = symbols
        .symbols
        .user_frames(pid, &native.addrs)
        .into_iter()
        .zip(&native.addrs)
        .enumerate()
        .map(|(i, (frame, addr))| {
            let own = native.sps[i]..native.sps.get(i + 1).copied().unwrap_or(Addr::MAX);
            NativeSlot {
                frame,
                eval: eval.iter().any(|r| r.contains(addr))
                    || shims.iter().any(|s| own.contains(s)),
            }
        })
        .collect();
    let (groups, complete) = merge::python_groups(python, entries);
    merge::merge(&slots, native.truncated, groups, complete)
}
