//! Walking one thread's frame chain into unresolved `RawPyFrame`s. Bounded depth, cycle-safe;
//! a failure part-way keeps the frames read so far and says why.

use std::collections::HashSet;

use super::offsets::{FrameModel, PyOffsets};
use crate::model::{Addr, RawPyFrame, Reason};
use crate::process::memory::RemoteMemory;

/// Deepest stack we walk (a recursion of 1000 Python frames is ordinary).
pub const MAX_DEPTH: usize = 4096;

/// Frames leaf first, and why the walk stopped early, if it did.
#[derive(Debug, Default, Clone)]
pub struct Walk {
    pub frames: Vec<RawPyFrame>,
    pub truncated: Option<Reason>,
}

/// Walk the frames of the thread state at `tstate`.
pub fn walk_thread(mem: &dyn RemoteMemory, o: &PyOffsets, tstate: Addr) -> Walk {
    let first = match first_frame(mem, o, tstate) {
        Ok(f) => f,
        Err(_) => {
            return Walk {
                frames: vec![],
                truncated: Some(Reason::ReadFailed),
            }
        }
    };
    match o.frame_model {
        FrameModel::FrameObject => walk_frame_objects(mem, o, first),
        FrameModel::CFrame | FrameModel::CurrentFrame => walk_interpreter_frames(mem, o, first),
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
fn walk_frame_objects(mem: &dyn RemoteMemory, o: &PyOffsets, mut frame: Addr) -> Walk {
    let (Some(back), Some(code), Some(lasti)) = (o.frame_back, o.frame_code, o.frame_lasti) else {
        return Walk {
            frames: vec![],
            truncated: Some(Reason::BadObject),
        };
    };
    let mut walk = Walk::default();
    let mut seen = HashSet::new();
    while frame != 0 {
        if let Some(reason) = limit_reached(&mut seen, frame, walk.frames.len()) {
            walk.truncated = Some(reason);
            break;
        }
        let read = (|| {
            let code_addr = mem.read_u64(frame + code)?;
            let position = mem.read_i32(frame + lasti)?.max(0) as u64;
            let next = mem.read_u64(frame + back)?;
            Ok::<_, crate::process::MemoryError>((code_addr, position, next))
        })();
        match read {
            Ok((code_addr, instr, next)) => {
                if code_addr != 0 {
                    walk.frames.push(RawPyFrame { code_addr, instr });
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
fn walk_interpreter_frames(mem: &dyn RemoteMemory, o: &PyOffsets, mut frame: Addr) -> Walk {
    let (Some(code), Some(previous), Some(instr), Some(owner)) = (
        o.iframe_code,
        o.iframe_previous,
        o.iframe_instr,
        o.iframe_owner,
    ) else {
        return Walk {
            frames: vec![],
            truncated: Some(Reason::BadObject),
        };
    };
    let mut walk = Walk::default();
    let mut seen = HashSet::new();
    while frame != 0 {
        if let Some(reason) = limit_reached(&mut seen, frame, walk.frames.len()) {
            walk.truncated = Some(reason);
            break;
        }
        let read = (|| {
            let owner = mem.read_u8(frame + owner)?;
            let code_addr = mem.read_u64(frame + code)? & !o.executable_tag_mask;
            let instr_ptr = mem.read_u64(frame + instr)?;
            let next = mem.read_u64(frame + previous)?;
            Ok::<_, crate::process::MemoryError>((owner, code_addr, instr_ptr, next))
        })();
        match read {
            Ok((owner, code_addr, instr_ptr, next)) => {
                let shim = Some(owner) == o.owner_cstack || Some(owner) == o.owner_interpreter;
                if !shim && code_addr != 0 {
                    walk.frames.push(RawPyFrame {
                        code_addr,
                        instr: instr_ptr,
                    });
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

fn limit_reached(seen: &mut HashSet<Addr>, frame: Addr, depth: usize) -> Option<Reason> {
    if depth >= MAX_DEPTH {
        Some(Reason::DepthLimit)
    } else if !seen.insert(frame) {
        Some(Reason::Cycle)
    } else {
        None
    }
}
