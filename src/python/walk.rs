//! Walking one thread's frame chain into unresolved `RawPyFrame`s. Bounded depth, cycle-safe;
//! a failure part-way keeps the frames read so far and says why.

use std::collections::HashSet;

use super::offsets::{FrameModel, PyOffsets};
use crate::model::{Addr, RawPyFrame, Reason};
use crate::process::memory::{MemoryError, RemoteMemory};

/// Deepest stack we walk (a recursion of 1000 Python frames is ordinary).
pub const MAX_DEPTH: usize = 4096;

/// Frames leaf first, and why the walk stopped early, if it did.
#[derive(Debug, Default, Clone)]
pub struct Walk {
    pub frames: Vec<RawPyFrame>,
    pub truncated: Option<Reason>,
    /// Beside `frames`: `entry[i]` is true when `frames[i]` is the root-most Python frame run
    /// by one C call of the eval loop (`--native` splits the Python stack there). Every frame
    /// on <= 3.10; 3.11 reads `is_entry`; 3.12+ has a C-stack / interpreter shim rootward of it.
    /// The root-most frame is always an entry.
    pub entry: Vec<bool>,
    /// Addresses of the eval loop's entry shim frames (3.12+), leaf first. They live on the C
    /// stack, inside the native frame of the eval-loop call they belong to: `--native` finds
    /// the eval loop by them where its symbol does not cover it (3.14+ static builds).
    pub shims: Vec<Addr>,
    /// The frame (`PyFrameObject` / `_PyInterpreterFrame`) address of each of `frames`; only
    /// filled by `walk_thread_with_addrs` (`dump --locals`), empty when sampling.
    pub frame_addrs: Vec<Addr>,
}

/// Walk the frames of the thread state at `tstate`.
pub fn walk_thread(mem: &dyn RemoteMemory, o: &PyOffsets, tstate: Addr) -> Walk {
    walk(mem, o, tstate, false)
}

/// `walk_thread`, also keeping each frame's address (to read its locals).
pub fn walk_thread_with_addrs(mem: &dyn RemoteMemory, o: &PyOffsets, tstate: Addr) -> Walk {
    walk(mem, o, tstate, true)
}

fn walk(mem: &dyn RemoteMemory, o: &PyOffsets, tstate: Addr, keep_addrs: bool) -> Walk {
    let first = match first_frame(mem, o, tstate) {
        Ok(f) => f,
        Err(_) => {
            return Walk {
                truncated: Some(Reason::ReadFailed),
                ..Walk::default()
            }
        }
    };
    match o.frame_model {
        FrameModel::FrameObject => walk_frame_objects(mem, o, first, keep_addrs),
        FrameModel::CFrame | FrameModel::CurrentFrame => {
            walk_interpreter_frames(mem, o, first, keep_addrs)
        }
    }
}

fn first_frame(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    tstate: Addr,
) -> Result<Addr, crate::process::MemoryError> {
    let at = mem.read_u64(tstate + o.tstate_frame)?;
    match (o.frame_model, o.cframe_current_frame) {
        (FrameModel::CFrame, Some(current)) if at != 0 => mem.read_u64(at + current),
        _ => Ok(at),
    }
}

/// <= 3.10: `PyFrameObject` linked by `f_back`; `f_lasti` is the position.
fn walk_frame_objects(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    mut frame: Addr,
    keep_addrs: bool,
) -> Walk {
    let (Some(back), Some(code), Some(lasti)) = (o.frame_back, o.frame_code, o.frame_lasti) else {
        return Walk {
            truncated: Some(Reason::BadObject),
            ..Walk::default()
        };
    };
    let mut walk = Walk::default();
    let mut seen = HashSet::new();
    while frame != 0 {
        if let Some(reason) = limit_reached(&mut seen, frame, walk.frames.len()) {
            walk.truncated = Some(reason);
            break;
        }
        let read = read_struct(mem, frame, &[back, code, lasti])
            .map(|f| (f.u64(code), f.i32(lasti).max(0) as u64, f.u64(back)));
        match read {
            Ok((code_addr, instr, next)) => {
                if code_addr != 0 {
                    walk.frames.push(RawPyFrame { code_addr, instr });
                    walk.entry.push(true);
                    if keep_addrs {
                        walk.frame_addrs.push(frame);
                    }
                }
                frame = next;
            }
            Err(_) => {
                walk.truncated = Some(Reason::ReadFailed);
                break;
            }
        }
    }
    walk
}

/// 3.11+: `_PyInterpreterFrame` linked by `previous`; C-stack shims and interpreter-owned base
/// frames are skipped; `f_executable` may carry tag bits (3.14+).
fn walk_interpreter_frames(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    mut frame: Addr,
    keep_addrs: bool,
) -> Walk {
    let (Some(code), Some(previous), Some(instr), Some(owner)) = (
        o.iframe_code,
        o.iframe_previous,
        o.iframe_instr,
        o.iframe_owner,
    ) else {
        return Walk {
            truncated: Some(Reason::BadObject),
            ..Walk::default()
        };
    };
    let mut walk = Walk::default();
    let mut seen = HashSet::new();
    while frame != 0 {
        if let Some(reason) = limit_reached(&mut seen, frame, walk.frames.len()) {
            walk.truncated = Some(reason);
            break;
        }
        let is_entry = o.iframe_is_entry.unwrap_or(owner);
        let read = read_struct(mem, frame, &[code, previous, instr, owner, is_entry]).map(|f| {
            (
                f.u8(owner),
                f.u64(code) & !o.executable_tag_mask,
                f.u64(instr),
                f.u64(previous),
                o.iframe_is_entry.is_some() && f.u8(is_entry) != 0,
            )
        });
        match read {
            Ok((owner, code_addr, instr_ptr, next, entry)) => {
                let shim = Some(owner) == o.owner_cstack || Some(owner) == o.owner_interpreter;
                if shim {
                    walk.shims.push(frame);
                    // The shim sits rootward of the first frame its eval-loop call ran.
                    if let Some(last) = walk.entry.last_mut() {
                        *last = true;
                    }
                } else if code_addr != 0 {
                    walk.frames.push(RawPyFrame {
                        code_addr,
                        instr: instr_ptr,
                    });
                    if keep_addrs {
                        walk.frame_addrs.push(frame);
                    }
                    walk.entry.push(entry);
                }
                frame = next;
            }
            Err(_) => {
                walk.truncated = Some(Reason::ReadFailed);
                break;
            }
        }
    }
    if let Some(last) = walk.entry.last_mut() {
        *last = true;
    }
    walk
}

/// The bytes of a struct up to its last field we need, read with one syscall; reading the
/// fields one by one costs a syscall each, per frame, per sample.
pub(crate) struct StructBytes {
    buf: [u8; MAX_STRUCT_BYTES],
}

/// Largest struct prefix read at once (every field offset we read is below it).
pub(crate) const MAX_STRUCT_BYTES: usize = 256;

impl StructBytes {
    pub(crate) fn u64(&self, off: u64) -> u64 {
        let o = off as usize;
        self.buf
            .get(o..o + 8)
            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
            .unwrap_or(0)
    }

    pub(crate) fn i32(&self, off: u64) -> i32 {
        let o = off as usize;
        self.buf
            .get(o..o + 4)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or([0; 4])))
            .unwrap_or(0)
    }

    pub(crate) fn u8(&self, off: u64) -> u8 {
        self.buf.get(off as usize).copied().unwrap_or(0)
    }
}

/// Read `addr` up to the end of the furthest of `fields` (each read as up to 8 bytes).
pub(crate) fn read_struct(
    mem: &dyn RemoteMemory,
    addr: Addr,
    fields: &[u64],
) -> Result<StructBytes, MemoryError> {
    let end = fields.iter().map(|&f| f as usize + 8).max().unwrap_or(0);
    let mut out = StructBytes {
        buf: [0; MAX_STRUCT_BYTES],
    };
    if end > MAX_STRUCT_BYTES {
        return Err(MemoryError::TooLong {
            what: "struct prefix",
            len: end as u64,
            max: MAX_STRUCT_BYTES as u64,
        });
    }
    match mem.read_into(addr, &mut out.buf[..end]) {
        Ok(()) => Ok(out),
        // The struct may end right before an unmapped page: fall back to field-sized reads.
        Err(_) => {
            for &f in fields {
                let f = f as usize;
                let len = 8.min(end - f);
                mem.read_into(addr + f as u64, &mut out.buf[f..f + len])
                    .or_else(|_| mem.read_into(addr + f as u64, &mut out.buf[f..f + 1]))?;
            }
            Ok(out)
        }
    }
}

fn limit_reached(seen: &mut HashSet<Addr>, frame: Addr, depth: usize) -> Option<Reason> {
    if depth >= MAX_DEPTH {
        Some(Reason::DepthLimit)
    } else if !seen.insert(frame) {
        Some(Reason::Cycle)
    } else {
        None
    }
}
