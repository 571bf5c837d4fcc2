//! Decoding of the sampler's ring-buffer records (`struct pyspy_sample`, and
//! `struct pyspy_native_sample` with `--native`) into `RawSample`s. Records are untrusted
//! bytes: every length is clamped, and a record too short for what its flags say is dropped.

use super::skel::types::{
    pyspy_native_sample, pyspy_py_status as py_status, pyspy_sample, pyspy_sample_flag as flag,
};
use super::{STACK_OFFSET, STACK_PAGE};
use std::ops::Range;

use crate::model::{Addr, BpfPyFrame, BpfPyStatus, BpfPython, RawSample, SampleRegs, StackStatus};

/// `PY_FRAME_SHIM`, `PY_FRAME_ENTRY`, `PY_FRAME_FLAGS` (bpf/pyspy.h): low bits of a recorded
/// frame address.
const PY_FRAME_SHIM: u64 = 1;
const PY_FRAME_ENTRY: u64 = 2;
const PY_FRAME_FLAGS: u64 = 7;

/// One ring-buffer record as the generated `pyspy_sample`, or `None` when it is too short.
fn read_record(data: &[u8]) -> Option<pyspy_sample> {
    if data.len() < std::mem::size_of::<pyspy_sample>() {
        return None;
    }
    #[allow(unsafe_code)]
    // SAFETY: `data` holds at least size_of::<pyspy_sample>() bytes (checked above), read
    // unaligned; pyspy_sample is a #[repr(C)] struct of integers and integer arrays, for which
    // every bit pattern is a valid value.
    let record = unsafe { std::ptr::read_unaligned(data.as_ptr().cast::<pyspy_sample>()) };
    Some(record)
}

/// An `offcpu_inflight` entry (a thread off the CPU now) as the record it would send if it came
/// back at `now_ns`; `None` when shorter than `min_ns`, or not an off-CPU record.
pub(super) fn decode_in_flight(data: &[u8], now_ns: u64, min_ns: u64) -> Option<RawSample> {
    let record = read_record(data)?;
    if record.flags & flag::SAMPLE_OFFCPU.0 == 0 {
        return None;
    }
    let away = now_ns.saturating_sub(record.ktime_ns).max(1);
    if away < min_ns {
        return None;
    }
    let mut sample = to_raw_sample(&record);
    sample.off_cpu_ns = away;
    Some(sample)
}

/// One record, or `None` when it is too short for its header or for what its flags say.
pub(super) fn decode(data: &[u8]) -> Option<RawSample> {
    let record = read_record(data)?;
    let mut sample = to_raw_sample(&record);
    if record.flags & flag::SAMPLE_NATIVE.0 != 0 {
        let (regs, stack, unread) = native_part(data, record.flags)?;
        sample.user_regs = regs;
        sample.user_stack = stack;
        sample.user_stack_unread = unread;
    }
    Some(sample)
}

/// What a decoded sample holds in memory (the unit of the queue's bound): a sample with a
/// 60 KiB stack copy costs that much more than one without.
pub(super) fn sample_bytes(sample: &RawSample) -> usize {
    std::mem::size_of::<RawSample>()
        + sample.comm.capacity()
        + (sample.kernel.capacity() + sample.user.capacity()) * std::mem::size_of::<u64>()
        + sample.user_stack.capacity()
        + sample.user_stack_unread.capacity() * std::mem::size_of::<std::ops::Range<u64>>()
        + sample.python.frames.capacity() * std::mem::size_of::<BpfPyFrame>()
}

/// What a `pyspy_native_sample` record adds: the registers, the stack copy (from sp up) and
/// the address ranges of the copy that could not be read; `None` when the record is too short
/// for its header.
type NativePart = (Option<SampleRegs>, Vec<u8>, Vec<Range<Addr>>);

fn native_part(data: &[u8], flags: u32) -> Option<NativePart> {
    use std::mem::offset_of;
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(data.get(at..at + 8)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
    };
    let regs = SampleRegs {
        ip: u64_at(offset_of!(pyspy_native_sample, ip))?,
        sp: u64_at(offset_of!(pyspy_native_sample, sp))?,
        bp: u64_at(offset_of!(pyspy_native_sample, bp))?,
    };
    let stack_len = u32_at(offset_of!(pyspy_native_sample, stack_len))? as usize;
    let missing = u32_at(offset_of!(pyspy_native_sample, missing_pages))?;
    let copy = data.get(STACK_OFFSET..).unwrap_or_default();
    if flags & flag::SAMPLE_REGS_FAILED.0 != 0 {
        return Some((None, Vec::new(), Vec::new()));
    }
    // stack[] mirrors the pages from the one holding sp: the valid bytes start at sp's offset.
    let first = (regs.sp % STACK_PAGE as u64) as usize;
    let end = stack_len.min(copy.len());
    let stack = copy.get(first..end).unwrap_or_default().to_vec();
    // Page 0 holds sp (a copy without it is empty); a missing page above is a hole in the copy.
    let page_addr = regs.sp - first as u64;
    let unread = (1..end.div_ceil(STACK_PAGE).min(32))
        .filter(|&i| missing & (1 << i) != 0)
        .map(|i| {
            let start = page_addr + (i * STACK_PAGE) as u64;
            start..start + STACK_PAGE as u64
        })
        .collect();
    Some((Some(regs), stack, unread))
}

fn to_raw_sample(record: &pyspy_sample) -> RawSample {
    let has = |bit: flag| record.flags & bit.0 != 0;
    let stack = |frames: &[u64], len: u32| frames[..(len as usize).min(frames.len())].to_vec();
    let status = |failed: flag, full: flag, off: Option<flag>| {
        if off.is_some_and(has) {
            StackStatus::NotCollected
        } else if has(failed) {
            StackStatus::Failed
        } else if has(full) {
            StackStatus::DepthLimit
        } else {
            StackStatus::Collected
        }
    };
    let comm: Vec<u8> = record
        .comm
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    RawSample {
        pid: record.tgid,
        tid: record.tid,
        cpu: record.cpu,
        ktime_ns: record.ktime_ns,
        process_start_ns: record.process_start_ns,
        off_cpu_ns: match has(flag::SAMPLE_OFFCPU) {
            // At least 1: an off-CPU sample is never taken for an on-CPU one.
            true => record.off_cpu_ns.max(1),
            false => 0,
        },
        off_cpu_seeded: has(flag::SAMPLE_OFFCPU) && has(flag::SAMPLE_OFFCPU_SEEDED),
        wait_addr: match has(flag::SAMPLE_OFFCPU) {
            true => record.wait_addr,
            false => 0,
        },
        comm: String::from_utf8_lossy(&comm).into_owned(),
        kernel: stack(&record.kernel, record.kernel_len),
        user: stack(&record.user, record.user_len),
        kernel_status: status(
            flag::SAMPLE_KSTACK_FAILED,
            flag::SAMPLE_KSTACK_FULL,
            Some(flag::SAMPLE_KSTACK_OFF),
        ),
        user_status: status(flag::SAMPLE_USTACK_FAILED, flag::SAMPLE_USTACK_FULL, None),
        user_regs: None,
        user_stack: Vec::new(),
        user_stack_unread: Vec::new(),
        python: python_part(record),
    }
}

/// The record's Python walk (`walk_python` in sampler.bpf.c).
fn python_part(record: &pyspy_sample) -> BpfPython {
    let status = match record.py_status {
        s if s == py_status::PY_WALKED.0 => BpfPyStatus::Walked,
        s if s == py_status::PY_DEPTH.0 => BpfPyStatus::Depth,
        s if s == py_status::PY_NO_THREAD.0 => BpfPyStatus::NoThread,
        s if s == py_status::PY_THREAD_MISMATCH.0 => BpfPyStatus::ThreadMismatch,
        s if s == py_status::PY_READ_FAILED.0 => BpfPyStatus::ReadFailed,
        _ => BpfPyStatus::NotWalked,
    };
    let len = (record.py_len as usize).min(record.py.len());
    let frames = record.py[..len]
        .iter()
        .map(|f| BpfPyFrame {
            frame: f.frame & !PY_FRAME_FLAGS,
            code: f.code,
            instr: f.instr,
            shim: f.frame & PY_FRAME_SHIM != 0,
            entry: f.frame & PY_FRAME_ENTRY != 0,
            code_id: f.code_id,
        })
        .collect();
    let has = |bit: flag| record.flags & bit.0 != 0;
    BpfPython {
        status,
        frames,
        next: if status == BpfPyStatus::Depth {
            record.py_next
        } else {
            0
        },
        gil: has(flag::SAMPLE_PY_GIL_READ).then(|| has(flag::SAMPLE_PY_GIL_HELD)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sample_bytes_of, user_stack_pages};
    use super::*;

    fn record() -> pyspy_sample {
        let mut record = pyspy_sample {
            tgid: 42,
            tid: 43,
            cpu: 1,
            ktime_ns: 123_456,
            kernel_len: 2,
            user_len: 3,
            ..Default::default()
        };
        for (dst, src) in record.comm.iter_mut().zip(b"python3\0junk") {
            *dst = *src as i8;
        }
        record.kernel[..3].copy_from_slice(&[0xffff_ffff_8100_0001, 0xffff_ffff_8100_0002, 0xdead]);
        record.user[..4].copy_from_slice(&[0x1, 0x2, 0x3, 0xdead]);
        record
    }

    #[test]
    fn decodes_a_record() {
        let sample = to_raw_sample(&record());
        assert_eq!((sample.pid, sample.tid, sample.cpu), (42, 43, 1));
        assert_eq!(sample.ktime_ns, 123_456);
        assert_eq!(sample.comm, "python3");
        assert_eq!(
            sample.kernel,
            [0xffff_ffff_8100_0001, 0xffff_ffff_8100_0002]
        );
        assert_eq!(sample.user, [0x1, 0x2, 0x3]);
        assert_eq!(sample.kernel_status, StackStatus::Collected);
        assert_eq!(sample.user_status, StackStatus::Collected);
    }

    #[test]
    fn decodes_the_python_walk() {
        let mut r = record();
        assert_eq!(to_raw_sample(&r).python, BpfPython::default());
        r.py_status = py_status::PY_DEPTH.0;
        r.py_len = 3;
        r.py_next = 0x7000;
        r.py[0].frame = 0x1000 | PY_FRAME_ENTRY;
        r.py[0].code = 0xa000;
        r.py[0].instr = 0xa040;
        r.py[1].frame = 0x2000 | PY_FRAME_SHIM;
        r.py[2].frame = 0x3000;
        r.py[2].code = 0xb000;
        let python = to_raw_sample(&r).python;
        assert_eq!(python.status, BpfPyStatus::Depth);
        assert_eq!(python.next, 0x7000);
        assert_eq!(python.frames.len(), 3);
        assert_eq!(
            python.frames[0],
            BpfPyFrame {
                frame: 0x1000,
                code: 0xa000,
                instr: 0xa040,
                shim: false,
                entry: true,
                code_id: 0,
            }
        );
        assert!(python.frames[1].shim && python.frames[1].frame == 0x2000);
        assert!(!python.frames[2].shim && !python.frames[2].entry);
        // A length past the array is clamped; `next` only counts with PY_DEPTH.
        r.py_status = py_status::PY_READ_FAILED.0;
        r.py_len = u32::MAX;
        let python = to_raw_sample(&r).python;
        assert_eq!(python.status, BpfPyStatus::ReadFailed);
        assert_eq!(python.frames.len(), r.py.len());
        assert_eq!(python.next, 0);
        r.py_status = 999;
        assert_eq!(to_raw_sample(&r).python.status, BpfPyStatus::NotWalked);
    }

    #[test]
    fn gil_flags_say_read_and_held() {
        let mut r = record();
        r.py_status = py_status::PY_WALKED.0;
        assert_eq!(to_raw_sample(&r).python.gil, None);
        r.flags = flag::SAMPLE_PY_GIL_READ.0;
        assert_eq!(to_raw_sample(&r).python.gil, Some(false));
        r.flags |= flag::SAMPLE_PY_GIL_HELD.0;
        assert_eq!(to_raw_sample(&r).python.gil, Some(true));
        // Held without read is no reading.
        r.flags = flag::SAMPLE_PY_GIL_HELD.0;
        assert_eq!(to_raw_sample(&r).python.gil, None);
    }

    #[test]
    fn decodes_off_cpu_records() {
        let mut r = record();
        r.off_cpu_ns = 5_000_000;
        // Without the flag the field means nothing: an on-CPU sample.
        assert_eq!(to_raw_sample(&r).off_cpu_ns, 0);
        r.flags = flag::SAMPLE_OFFCPU.0;
        assert_eq!(to_raw_sample(&r).off_cpu_ns, 5_000_000);
        r.off_cpu_ns = 0;
        assert_eq!(to_raw_sample(&r).off_cpu_ns, 1);
        // A thread still away: its time so far; an entry without the flag is no such thread.
        r.ktime_ns = 1_000;
        let bytes = sample_bytes_of(&r);
        let away = decode_in_flight(bytes, 3_000_500, 1_000_000).expect("in flight");
        assert_eq!(away.off_cpu_ns, 2_999_500);
        assert_eq!(
            decode_in_flight(bytes, 10, 0)
                .expect("in flight")
                .off_cpu_ns,
            1
        );
        // Shorter than --offcpu-min: not recorded, as the program would not.
        assert!(decode_in_flight(bytes, 3_000_500, 3_000_000).is_none());
        r.flags = 0;
        assert!(decode_in_flight(sample_bytes_of(&r), 3_000_500, 0).is_none());
        assert!(decode_in_flight(&[0u8; 16], 1, 0).is_none());
    }

    #[test]
    fn flags_become_stack_status() {
        let mut r = record();
        r.flags = flag::SAMPLE_KSTACK_OFF.0 | flag::SAMPLE_USTACK_FAILED.0;
        let sample = to_raw_sample(&r);
        assert_eq!(sample.kernel_status, StackStatus::NotCollected);
        assert_eq!(sample.user_status, StackStatus::Failed);
        r.flags = flag::SAMPLE_KSTACK_FULL.0 | flag::SAMPLE_USTACK_FULL.0;
        let sample = to_raw_sample(&r);
        assert_eq!(sample.kernel_status, StackStatus::DepthLimit);
        assert_eq!(sample.user_status, StackStatus::DepthLimit);
    }

    #[test]
    fn lengths_are_clamped_and_short_records_rejected() {
        let mut r = record();
        r.user_len = 10_000;
        assert_eq!(to_raw_sample(&r).user.len(), r.user.len());
        assert!(decode(&[0u8; 16]).is_none());
        let bytes = vec![0u8; std::mem::size_of::<pyspy_sample>() + 8];
        let sample = decode(&bytes[8..]).expect("a zeroed record decodes");
        assert_eq!((sample.pid, sample.comm.as_str()), (0, ""));
        assert!(sample.kernel.is_empty() && sample.user.is_empty());
    }

    #[test]
    fn decodes_a_record_with_a_stack_copy() {
        let mut native = Box::new(pyspy_native_sample {
            sample: record(),
            ip: 0x40_1000,
            sp: 0x7ffc_0000_1ff0,
            bp: 0x7ffc_0000_2000,
            stack_len: 2 * STACK_PAGE as u32,
            stack_pages: 2,
            ..Default::default()
        });
        native.sample.flags = flag::SAMPLE_NATIVE.0;
        native.stack[0xff0..0xff8].copy_from_slice(&0x1234u64.to_ne_bytes());
        let len = STACK_OFFSET + 2 * STACK_PAGE;
        let sample = decode(bytes_of(&native, len)).expect("decodes");
        assert_eq!(sample.comm, "python3");
        let regs = sample.user_regs.expect("registers");
        assert_eq!(
            (regs.ip, regs.sp, regs.bp),
            (0x40_1000, 0x7ffc_0000_1ff0, 0x7ffc_0000_2000)
        );
        // From sp (0xff0 into its page) to the end of the second page.
        assert_eq!(sample.user_stack.len(), 0x10 + STACK_PAGE);
        assert_eq!(sample.user_stack[..8], 0x1234u64.to_ne_bytes());
        assert!(sample.user_stack_unread.is_empty());
        // A failed copy: registers, no stack; failed registers: neither.
        native.stack_len = 0;
        native.sample.flags |= flag::SAMPLE_USTACK_COPY_FAILED.0;
        let sample = decode(bytes_of(&native, len)).expect("decodes");
        assert!(sample.user_regs.is_some() && sample.user_stack.is_empty());
        native.sample.flags = flag::SAMPLE_NATIVE.0 | flag::SAMPLE_REGS_FAILED.0;
        let sample = decode(bytes_of(&native, len)).expect("decodes");
        assert!(sample.user_regs.is_none() && sample.user_stack.is_empty());
        // A record flagged native but cut short is rejected; a plain record has neither.
        let short = std::mem::size_of::<pyspy_sample>();
        assert!(decode(bytes_of(&native, short)).is_none());
        native.sample.flags = 0;
        let plain = decode(bytes_of(&native, std::mem::size_of::<pyspy_sample>()));
        assert!(plain.is_some_and(|s| s.user_regs.is_none()));
        assert_eq!(user_stack_pages(16 * 1024), 5);
        assert_eq!(user_stack_pages(1), 2);
    }

    /// A page the BPF program could not read, between two it could, is a hole in the copy:
    /// the pages above it are kept, and reads inside it fail.
    #[test]
    fn a_missing_page_is_a_hole_in_the_copy() {
        let sp = 0x7ffc_0000_1ff0;
        let mut native = Box::new(pyspy_native_sample {
            sample: record(),
            sp,
            stack_len: 4 * STACK_PAGE as u32,
            stack_pages: 4,
            missing_pages: 1 << 2,
            ..Default::default()
        });
        native.sample.flags = flag::SAMPLE_NATIVE.0;
        native.stack[3 * STACK_PAGE..3 * STACK_PAGE + 8].copy_from_slice(&0x5678u64.to_ne_bytes());
        let sample = decode(bytes_of(&native, STACK_OFFSET + 4 * STACK_PAGE)).expect("decodes");
        assert_eq!(sample.user_stack.len(), 0x10 + 3 * STACK_PAGE);
        let hole = 0x7ffc_0000_3000..0x7ffc_0000_4000;
        assert_eq!(sample.user_stack_unread, vec![hole.clone()]);
        let copy = crate::process::regs::StackCopy {
            base: sp,
            bytes: sample.user_stack,
            unread: sample.user_stack_unread,
        };
        assert_eq!(copy.read_u64(hole.end), Some(0x5678));
        assert_eq!(copy.read_u64(hole.start), None);
        assert_eq!(copy.read_u64(hole.start - 4), None);
        assert_eq!(copy.read_u64(hole.start - 8), Some(0));
    }

    fn bytes_of(native: &pyspy_native_sample, len: usize) -> &[u8] {
        #[allow(unsafe_code)]
        // SAFETY: a plain #[repr(C)] struct of integers, at least `len` bytes long.
        unsafe {
            std::slice::from_raw_parts((native as *const pyspy_native_sample).cast::<u8>(), len)
        }
    }
}
