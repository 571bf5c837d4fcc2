//! Walking one thread's frame chain into unresolved `RawPyFrame`s. Bounded depth, cycle-safe;
//! a failure part-way keeps the frames read so far and says why.

use std::collections::HashSet;

use super::offsets::{FrameModel, PyOffsets};
use super::strings::{is_live_refcnt, is_object_addr, refcnt_offset};
use crate::model::{Addr, BpfPyFrame, RawPyFrame, Reason};
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
    let once = || {
        let mut builder = Builder::new(o, keep_addrs);
        match first_frame(mem, o, tstate) {
            Ok(first) => builder.continue_from(mem, first),
            Err(_) => builder.walk.truncated = Some(Reason::ReadFailed),
        }
        builder.finish()
    };
    let walk = once();
    // A running thread returns from functions all the time: the frame the thread state named
    // a moment ago may be freed by the time it is read (a dead leaf is no frame at all). The
    // thread state names its current frame again; a second dead leaf stays an error.
    if walk.frames.is_empty() && walk.truncated == Some(Reason::BadObject) {
        return once();
    }
    walk
}

/// The walk of a thread whose frames the BPF program read at sample time (`frames`, leaf
/// first, shims included), continued from `next` (the first frame it did not read, 0 when it
/// read them all) through `mem`: the root side of a deep stack is what changes least.
pub fn walk_bpf_frames(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    frames: &[BpfPyFrame],
    next: Addr,
) -> Walk {
    let mut builder = Builder::new(o, false);
    for f in frames {
        let read = FrameRead {
            code: if f.shim { 0 } else { f.code },
            instr: f.instr,
            shim: f.shim,
            entry: f.entry,
            code_id: f.code_id,
        };
        if let Err(reason) = builder.push(f.frame, read) {
            builder.walk.truncated = Some(reason);
            return builder.finish();
        }
    }
    if next != 0 {
        builder.continue_from(mem, next);
    }
    builder.finish()
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

/// What one frame says, whichever way it was read.
struct FrameRead {
    /// 0: no code (skipped).
    code: Addr,
    instr: u64,
    /// A C-stack / interpreter-owned shim (3.12+), marking the eval-loop call rootward of it.
    shim: bool,
    /// The root-most frame of its eval-loop call (3.11 `is_entry`; every frame on <= 3.10).
    entry: bool,
    /// `RawPyFrame::code_id` (BPF reads only).
    code_id: u64,
}

/// Builds a `Walk` frame by frame, leaf first, from reads of target memory or from the BPF
/// program's record: one set of rules (depth cap, cycles, shims, entry flags) for both.
struct Builder<'o> {
    o: &'o PyOffsets,
    walk: Walk,
    seen: HashSet<Addr>,
    keep_addrs: bool,
}

impl<'o> Builder<'o> {
    fn new(o: &'o PyOffsets, keep_addrs: bool) -> Self {
        Builder {
            o,
            walk: Walk::default(),
            seen: HashSet::new(),
            keep_addrs,
        }
    }

    /// Add the frame at `frame`, or say why the walk must stop before it.
    fn push(&mut self, frame: Addr, f: FrameRead) -> Result<(), Reason> {
        if let Some(reason) = limit_reached(&mut self.seen, frame, self.walk.frames.len()) {
            return Err(reason);
        }
        // A frame that is not where frames live, or whose code pointer cannot be an object,
        // is not a frame: the chain led into freed or foreign memory (a frame freed while a
        // running process was read). Following it would only add garbage frames, so the
        // walk stops here.
        if frame % 8 != 0 || (f.code != 0 && !is_object_addr(f.code)) {
            return Err(Reason::BadObject);
        }
        if f.shim {
            self.walk.shims.push(frame);
            // The shim sits rootward of the first frame its eval-loop call ran.
            if let Some(last) = self.walk.entry.last_mut() {
                *last = true;
            }
        } else if f.code != 0 {
            self.walk.frames.push(RawPyFrame {
                code_addr: f.code,
                instr: f.instr,
                code_id: f.code_id,
            });
            if self.keep_addrs {
                self.walk.frame_addrs.push(frame);
            }
            self.walk.entry.push(f.entry);
        }
        Ok(())
    }

    /// Read frames from `frame` rootward until the chain ends or something stops it.
    fn continue_from(&mut self, mem: &dyn RemoteMemory, mut frame: Addr) {
        while frame != 0 {
            let read = match self.o.frame_model {
                FrameModel::FrameObject => read_frame_object(mem, self.o, frame),
                FrameModel::CFrame | FrameModel::CurrentFrame => {
                    read_interpreter_frame(mem, self.o, frame)
                }
            };
            let (f, next) = match read {
                Ok(read) => read,
                Err(reason) => {
                    self.walk.truncated = Some(reason);
                    return;
                }
            };
            if let Err(reason) = self.push(frame, f) {
                self.walk.truncated = Some(reason);
                return;
            }
            frame = next;
        }
    }

    fn finish(mut self) -> Walk {
        // The root-most frame is always an entry.
        if let Some(last) = self.walk.entry.last_mut() {
            *last = true;
        }
        self.walk
    }
}

/// <= 3.10: a `PyFrameObject` linked by `f_back`; `f_lasti` is the position. Each frame is its
/// own call of the eval loop.
fn read_frame_object(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    frame: Addr,
) -> Result<(FrameRead, Addr), Reason> {
    let (Some(back), Some(code), Some(lasti)) = (o.frame_back, o.frame_code, o.frame_lasti) else {
        return Err(Reason::BadObject);
    };
    let refcnt = refcnt_offset(o);
    let f =
        read_struct(mem, frame, &[refcnt, back, code, lasti]).map_err(|_| Reason::ReadFailed)?;
    // A frame object is an object: one freed since (the thread returned from it) has a
    // reference count of 0, or is on a free list, linked through `f_back` (2.7-3.9) into more
    // dead frames whose code objects are gone too.
    if !is_live_refcnt(f.u64(refcnt)) {
        return Err(Reason::BadObject);
    }
    let read = FrameRead {
        code: f.u64(code),
        instr: f.i32(lasti).max(0) as u64,
        shim: false,
        entry: true,
        code_id: 0,
    };
    Ok((read, f.u64(back)))
}

/// 3.11+: an `_PyInterpreterFrame` linked by `previous`; C-stack shims and interpreter-owned
/// base frames are shims; `f_executable` may carry tag bits (3.14+).
fn read_interpreter_frame(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    frame: Addr,
) -> Result<(FrameRead, Addr), Reason> {
    let (Some(code), Some(previous), Some(instr), Some(owner)) = (
        o.iframe_code,
        o.iframe_previous,
        o.iframe_instr,
        o.iframe_owner,
    ) else {
        return Err(Reason::BadObject);
    };
    let is_entry = o.iframe_is_entry.unwrap_or(owner);
    let f = read_struct(mem, frame, &[code, previous, instr, owner, is_entry])
        .map_err(|_| Reason::ReadFailed)?;
    let owner = f.u8(owner);
    // `enum _frameowner` has values 0..=4 in every version (thread, generator, frame object,
    // C stack, interpreter): anything else is not a live frame.
    if owner > 4 {
        return Err(Reason::BadObject);
    }
    let read = FrameRead {
        code: f.u64(code) & !o.executable_tag_mask,
        instr: f.u64(instr),
        shim: Some(owner) == o.owner_cstack || Some(owner) == o.owner_interpreter,
        entry: o.iframe_is_entry.is_some() && f.u8(is_entry) != 0,
        code_id: 0,
    };
    Ok((read, f.u64(previous)))
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

/// `read_struct` for several structs with the same `fields`, in one `read_many` (one system
/// call for live memory); a struct whose batched read fails gets `read_struct`'s own fallback.
pub(crate) fn read_structs(
    mem: &dyn RemoteMemory,
    addrs: &[Addr],
    fields: &[u64],
) -> Vec<Result<StructBytes, MemoryError>> {
    let end = fields.iter().map(|&f| f as usize + 8).max().unwrap_or(0);
    if end > MAX_STRUCT_BYTES {
        return addrs.iter().map(|&a| read_struct(mem, a, fields)).collect();
    }
    let mut out: Vec<StructBytes> = addrs
        .iter()
        .map(|_| StructBytes {
            buf: [0; MAX_STRUCT_BYTES],
        })
        .collect();
    let results = {
        let mut reads: Vec<(Addr, &mut [u8])> = addrs
            .iter()
            .zip(out.iter_mut())
            .map(|(&addr, s)| (addr, &mut s.buf[..end]))
            .collect();
        mem.read_many(&mut reads)
    };
    out.into_iter()
        .zip(results)
        .zip(addrs)
        .map(|((bytes, result), &addr)| match result {
            Ok(()) => Ok(bytes),
            Err(_) => read_struct(mem, addr, fields),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PyVersion;
    use crate::process::memory::LocalMemory;
    use crate::python::offsets::offsets_for;

    const BASE: Addr = 0x10_0000;

    /// Four 3.13 `_PyInterpreterFrame`s 0x100 apart, leaf first: code A, code B, a C-stack
    /// shim, code C (the root).
    fn chain() -> (LocalMemory, PyOffsets) {
        let o = offsets_for(PyVersion::new(3, 13, 0)).expect("3.13 row");
        let mut bytes = vec![0u8; 0x400];
        let mut put = |frame: usize, code: u64, owner: u8| {
            let at = frame * 0x100;
            let next = if frame == 3 {
                0
            } else {
                BASE + (frame as u64 + 1) * 0x100
            };
            bytes[at..at + 8].copy_from_slice(&code.to_ne_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&next.to_ne_bytes());
            bytes[at + 56..at + 64].copy_from_slice(&(code + 0x40).to_ne_bytes());
            bytes[at + 70] = owner;
        };
        put(0, 0xa000, 0);
        put(1, 0xb000, 0);
        put(2, 0, o.owner_cstack.expect("3.13 has C-stack shims"));
        put(3, 0xc000, 0);
        (LocalMemory { base: BASE, bytes }, o)
    }

    fn codes(walk: &Walk) -> Vec<Addr> {
        walk.frames.iter().map(|f| f.code_addr).collect()
    }

    fn bpf_frame(i: u64, code: Addr, shim: bool) -> BpfPyFrame {
        BpfPyFrame {
            frame: BASE + i * 0x100,
            code,
            instr: code + 0x40,
            shim,
            entry: false,
            code_id: 0,
        }
    }

    #[test]
    fn bpf_frames_continued_from_memory_match_a_walk_from_memory() {
        let (mem, o) = chain();
        let whole = {
            let mut b = Builder::new(&o, false);
            b.continue_from(&mem, BASE);
            b.finish()
        };
        assert_eq!(codes(&whole), [0xa000, 0xb000, 0xc000]);
        assert_eq!(whole.entry, [false, true, true]);
        assert_eq!(whole.shims, [BASE + 0x200]);
        assert_eq!(whole.truncated, None);

        // The BPF program read two frames and stopped: the rest is read from memory.
        let two = [bpf_frame(0, 0xa000, false), bpf_frame(1, 0xb000, false)];
        let continued = walk_bpf_frames(&mem, &o, &two, BASE + 0x200);
        assert_eq!(codes(&continued), codes(&whole));
        assert_eq!(continued.entry, whole.entry);
        assert_eq!(continued.shims, whole.shims);
        assert_eq!(continued.frames[0].instr, 0xa040);

        // It read them all (the shim flagged by its bit).
        let all = [
            bpf_frame(0, 0xa000, false),
            bpf_frame(1, 0xb000, false),
            bpf_frame(2, 0, true),
            bpf_frame(3, 0xc000, false),
        ];
        let read = walk_bpf_frames(&mem, &o, &all, 0);
        assert_eq!(codes(&read), codes(&whole));
        assert_eq!(read.entry, whole.entry);
        assert_eq!(read.shims, whole.shims);
    }

    #[test]
    fn a_walk_stops_at_a_frame_that_is_not_a_live_frame() {
        // 3.13: the second frame's owner is no `_frameowner`; then its code pointer is odd.
        let (mut mem, o) = chain();
        mem.bytes[0x100 + 70] = 9;
        let walk = walk_thread_from(&mem, &o, BASE);
        assert_eq!(codes(&walk), [0xa000]);
        assert_eq!(walk.truncated, Some(Reason::BadObject));
        let (mut mem, o) = chain();
        mem.bytes[0x100..0x108].copy_from_slice(&0xb003u64.to_ne_bytes());
        let walk = walk_thread_from(&mem, &o, BASE);
        assert_eq!(codes(&walk), [0xa000]);
        assert_eq!(walk.truncated, Some(Reason::BadObject));

        // 3.9: `PyFrameObject`s; the second was freed (reference count 0) and links on into
        // the free list: nothing past the first frame is read as a frame.
        let o = offsets_for(PyVersion::new(3, 9, 0)).expect("3.9 row");
        let (back, code) = (o.frame_back.expect("f_back"), o.frame_code.expect("f_code"));
        let mut bytes = vec![0u8; 0x300];
        for (i, (refcnt, code_addr)) in [(1u64, 0xa000u64), (0, 0xb000), (1, 0xc000)]
            .into_iter()
            .enumerate()
        {
            let at = i * 0x100;
            let put = |bytes: &mut Vec<u8>, off: u64, v: u64| {
                let off = at + off as usize;
                bytes[off..off + 8].copy_from_slice(&v.to_ne_bytes());
            };
            put(&mut bytes, 0, refcnt);
            put(&mut bytes, code, code_addr);
            put(
                &mut bytes,
                back,
                if i < 2 {
                    BASE + (i as u64 + 1) * 0x100
                } else {
                    0
                },
            );
        }
        let mem = LocalMemory { base: BASE, bytes };
        let walk = walk_thread_from(&mem, &o, BASE);
        assert_eq!(codes(&walk), [0xa000]);
        assert_eq!(walk.truncated, Some(Reason::BadObject));
    }

    fn walk_thread_from(mem: &LocalMemory, o: &PyOffsets, frame: Addr) -> Walk {
        let mut b = Builder::new(o, false);
        b.continue_from(mem, frame);
        b.finish()
    }

    #[test]
    fn bpf_frames_that_loop_or_continue_into_garbage_are_cut_short() {
        let (mem, o) = chain();
        let looped = [bpf_frame(0, 0xa000, false), bpf_frame(0, 0xa000, false)];
        let walk = walk_bpf_frames(&mem, &o, &looped, 0);
        assert_eq!(codes(&walk), [0xa000]);
        assert_eq!(walk.truncated, Some(Reason::Cycle));
        // A continuation address outside the process's memory.
        let one = [bpf_frame(0, 0xa000, false)];
        let walk = walk_bpf_frames(&mem, &o, &one, 0xdead_0000);
        assert_eq!(codes(&walk), [0xa000]);
        assert_eq!(walk.entry, [true]);
        assert_eq!(walk.truncated, Some(Reason::ReadFailed));
    }
}
