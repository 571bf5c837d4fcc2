//! Resolving code objects to names, files and lines. What a code object holds never changes,
//! so it is read once per (process, address) and cached; only the line is computed per sample.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::linetable::line_for;
use super::offsets::{LineTable, PyOffsets};
use super::strings::{
    is_live_refcnt, is_object_addr, read_name, read_py_bytes, refcnt_offset, NameError,
    MAX_BYTES_OBJECT,
};
use super::walk::{read_struct, read_structs, StructBytes};
use crate::model::{Addr, Frame, PyFrame, RawPyFrame, Reason};
use crate::process::memory::{MemoryError, RemoteMemory};

/// Code objects cached per process before the cache is cleared (a bound on memory).
const MAX_CACHED_CODES: usize = 100_000;

/// Largest `co_firstlineno` (and line) we believe: CPython stores lines as C ints, but no
/// source file has 16 million lines; a larger value is garbage.
const MAX_LINE: u32 = 1 << 24;

/// Frames `resolve_all` resolved, and those of them known from the BPF program's fingerprint
/// without a read (process-wide: `record` logs them at the end of a BPF run).
static FRAMES_RESOLVED: AtomicU64 = AtomicU64::new(0);
static FRAMES_BY_FINGERPRINT: AtomicU64 = AtomicU64::new(0);

/// (frames known by fingerprint, frames resolved) since the program started.
pub fn fingerprint_stats() -> (u64, u64) {
    (
        FRAMES_BY_FINGERPRINT.load(Ordering::Relaxed),
        FRAMES_RESOLVED.load(Ordering::Relaxed),
    )
}

/// Python frames a sampler rejected (unknown, or a stack cut short by a failure), by reason,
/// and the stacks that had any: the end-of-run summary counts them as Python read errors.
#[derive(Debug, Clone, Default)]
pub struct FrameErrors {
    /// Stacks with at least one rejected frame.
    pub stacks: u64,
    /// Rejected frames per `Reason::as_str`, in the order first seen.
    pub frames: Vec<(&'static str, u64)>,
}

impl FrameErrors {
    /// Count the rejected frames of one stack of Python frames; whether it had any.
    pub fn count(&mut self, frames: &[Frame]) -> bool {
        self.count_where(frames, rejected)
    }

    /// `count` for a stack whose Python frames were merged with native ones (`--native` in
    /// user space): a native unwind that could not read on ends in the same
    /// `Truncated(ReadFailed)` as a Python walk, so that one reason is not counted there.
    pub fn count_merged(&mut self, frames: &[Frame]) -> bool {
        self.count_where(frames, |f| {
            rejected(f).filter(|_| *f != Frame::Truncated(Reason::ReadFailed))
        })
    }

    fn count_where(
        &mut self,
        frames: &[Frame],
        rejected: impl Fn(&Frame) -> Option<Reason>,
    ) -> bool {
        let mut any = false;
        for reason in frames.iter().filter_map(rejected) {
            any = true;
            let name = reason.as_str();
            match self.frames.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => self.frames.push((name, 1)),
            }
        }
        self.stacks += u64::from(any);
        any
    }

    /// `reason=count, ...`, or `None` when nothing was rejected.
    pub fn describe(&self) -> Option<String> {
        (!self.frames.is_empty()).then(|| {
            let parts: Vec<String> = self
                .frames
                .iter()
                .map(|(name, n)| format!("{name}={n}"))
                .collect();
            parts.join(", ")
        })
    }
}

/// Why `frame` is a Python frame the reader could not give, if it is one: every
/// `Frame::Unknown`, and a stack cut short by anything but its depth limit (the only cut that
/// is not an error), a `--native` mismatch (counted on its own) or a native stack's own end
/// (native frames are not Python read errors).
pub fn rejected(frame: &Frame) -> Option<Reason> {
    match frame {
        Frame::Unknown(Reason::PythonStarting) => None,
        Frame::Unknown(reason) => Some(*reason),
        Frame::Truncated(
            Reason::DepthLimit
            | Reason::NativeMismatch
            | Reason::NotReturnAddress
            | Reason::FramePointerLoop
            | Reason::NativeIncomplete,
        ) => None,
        Frame::Truncated(reason) => Some(*reason),
        _ => None,
    }
}

/// What we keep of a code object.
#[derive(Debug)]
pub struct CodeInfo {
    pub function: String,
    pub filename: String,
    pub first_line: u32,
    pub line_table: Vec<u8>,
}

/// Cache of one process's code objects. Owned by that process's state, so it is dropped with
/// it when the pid goes away or is reused.
#[derive(Default)]
pub struct CodeCache {
    codes: HashMap<Addr, (Fingerprint, Arc<CodeInfo>)>,
    /// Type objects already checked to be `code` (there is one per process, in practice).
    code_types: HashSet<Addr>,
    /// Type objects already checked to be `str` (likewise).
    str_types: HashSet<Addr>,
}

impl CodeCache {
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Resolve one raw frame. Never fails: an unreadable code object becomes `Frame::Unknown`.
    pub fn resolve(&mut self, mem: &dyn RemoteMemory, o: &PyOffsets, raw: RawPyFrame) -> Frame {
        let header = read_struct(mem, raw.code_addr, &code_fields(o));
        self.resolve_with_header(mem, o, raw, header)
    }

    /// Resolve a stack's raw frames, leaf first. A frame whose `code_id` (the fingerprint the
    /// BPF program read at the sample) matches the cached code object's needs no read; the
    /// other code objects' headers (what tells a cached code object from a new one at the same
    /// address) are read together, in one system call for the whole stack.
    pub fn resolve_all(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        raws: &[RawPyFrame],
    ) -> Vec<Frame> {
        let mut out: Vec<Option<Frame>> =
            raws.iter().map(|raw| self.resolve_known(o, raw)).collect();
        let unknown: Vec<usize> = (0..raws.len()).filter(|&i| out[i].is_none()).collect();
        FRAMES_RESOLVED.fetch_add(raws.len() as u64, Ordering::Relaxed);
        FRAMES_BY_FINGERPRINT.fetch_add((raws.len() - unknown.len()) as u64, Ordering::Relaxed);
        if !unknown.is_empty() {
            let fields = code_fields(o);
            let addrs: Vec<Addr> = unknown.iter().map(|&i| raws[i].code_addr).collect();
            for (header, &i) in read_structs(mem, &addrs, &fields).into_iter().zip(&unknown) {
                out[i] = Some(self.resolve_read(mem, o, raws[i], header));
            }
        }
        out.into_iter()
            .map(|f| f.unwrap_or(Frame::Unknown(Reason::ReadFailed)))
            .collect()
    }

    /// A frame whose code object's header was read now. When the BPF program fingerprinted
    /// the object at the sample and the header read now does not match, the object died and
    /// its memory was reused since (a function that lived a few milliseconds): naming the
    /// frame after whatever lives there now would be wrong.
    fn resolve_read(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        raw: RawPyFrame,
        header: Result<StructBytes, MemoryError>,
    ) -> Frame {
        if raw.code_id == 0 {
            return self.resolve_with_header(mem, o, raw, header);
        }
        let sampled = |h: &StructBytes| Fingerprint::of(h, o).code_id() == raw.code_id;
        if header.as_ref().is_ok_and(|h| !sampled(h)) {
            return Frame::Unknown(Reason::Replaced);
        }
        let frame = self.resolve_with_header(mem, o, raw, header);
        // The names and line table were read after the header: if the object died meanwhile,
        // they may belong to its successor. Its header still matching says it did not.
        if matches!(frame, Frame::Python(_))
            && !read_struct(mem, raw.code_addr, &code_fields(o)).is_ok_and(|h| sampled(&h))
        {
            self.codes.remove(&raw.code_addr);
            return Frame::Unknown(Reason::Replaced);
        }
        frame
    }

    /// The frame of a cached code object whose fingerprint the BPF program read (`code_id`)
    /// and found unchanged; `None` to read its header.
    fn resolve_known(&self, o: &PyOffsets, raw: &RawPyFrame) -> Option<Frame> {
        if raw.code_id == 0 {
            return None;
        }
        let (known, info) = self.codes.get(&raw.code_addr)?;
        (known.code_id() == raw.code_id).then(|| frame_of(o, info, *raw))
    }

    fn resolve_with_header(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        raw: RawPyFrame,
        header: Result<StructBytes, MemoryError>,
    ) -> Frame {
        let info = match header
            .map_err(CodeError::from)
            .and_then(|header| self.code_info(mem, o, raw.code_addr, &header))
        {
            Ok(info) => info,
            Err(CodeError::NotCode | CodeError::BadName) => {
                return Frame::Unknown(Reason::BadObject)
            }
            Err(CodeError::Freed) => return Frame::Unknown(Reason::Replaced),
            Err(CodeError::Memory(_)) => return Frame::Unknown(Reason::ReadFailed),
        };
        frame_of(o, &info, raw)
    }

    fn code_info(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        addr: Addr,
        header: &StructBytes,
    ) -> Result<Arc<CodeInfo>, CodeError> {
        // Code objects die and their memory is reused for new ones (module bodies after
        // import, functions made at run time), so a cached entry is trusted only while the
        // object at that address still has the same type, names, file and line table.
        let fingerprint = Fingerprint::of(header, o);
        if let Some((known, info)) = self.codes.get(&addr) {
            if *known == fingerprint {
                return Ok(info.clone());
            }
        }
        // (A cached entry is served even when the object has been freed since, as long as its
        // memory was not reused: the fingerprint says it is the object that was cached.)
        // Freed, not cached: its names may be freed too, or reused by other strings.
        if !is_live_refcnt(header.u64(refcnt_offset(o))) {
            return Err(CodeError::Freed);
        }
        self.check_is_code(mem, o, fingerprint.type_addr)?;
        let info = Arc::new(self.read_code(mem, o, header)?);
        if self.codes.len() >= MAX_CACHED_CODES {
            self.codes.clear();
        }
        self.codes.insert(addr, (fingerprint, info.clone()));
        Ok(info)
    }

    /// A frame may point at something that is not a code object (a freed frame, a 3.12+
    /// executable that is not code): check the type's name before trusting the layout.
    fn check_is_code(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        ty: Addr,
    ) -> Result<(), CodeError> {
        if self.code_types.contains(&ty) {
            return Ok(());
        }
        if !is_object_addr(ty) {
            return Err(CodeError::NotCode);
        }
        let name_ptr = mem.read_u64(ty + o.type_name)?;
        if mem.read_c_string(name_ptr, 16)? == "code" {
            self.code_types.insert(ty);
            Ok(())
        } else {
            Err(CodeError::NotCode)
        }
    }

    /// What we keep of the code object whose header is `header`, every part validated: a
    /// name and a file name that are live `str`s of printable text, a first line in range.
    fn read_code(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        header: &StructBytes,
    ) -> Result<CodeInfo, CodeError> {
        let first_line = u32::try_from(header.i32(o.code_firstlineno))
            .ok()
            .filter(|&line| line <= MAX_LINE)
            .ok_or(CodeError::BadName)?;
        let name_field = o.code_qualname.unwrap_or(o.code_name);
        let str_types = &mut self.str_types;
        let mut is_str = |ty: Addr| -> Result<bool, MemoryError> {
            if str_types.contains(&ty) {
                return Ok(true);
            }
            let name_ptr = mem.read_u64(ty + o.type_name)?;
            let is_str = mem.read_c_string(name_ptr, 16)? == "str";
            if is_str {
                str_types.insert(ty);
            }
            Ok(is_str)
        };
        let function = read_name(mem, o, header.u64(name_field), &mut is_str)?;
        let filename = read_name(mem, o, header.u64(o.code_filename), &mut is_str)?;
        let table_addr = header.u64(o.code_linetable);
        // A missing line table costs the line number, not the frame.
        let line_table = read_py_bytes(mem, o, table_addr, MAX_BYTES_OBJECT).unwrap_or_default();
        Ok(CodeInfo {
            function,
            filename,
            first_line,
            line_table,
        })
    }
}

/// Why a code object could not be resolved (each becomes a `Frame::Unknown` reason).
enum CodeError {
    /// Its type is not `code`.
    NotCode,
    /// Its name, file name or first line is not one a code object has.
    BadName,
    /// It, or its name, was freed (not yet reused).
    Freed,
    Memory(#[allow(dead_code)] MemoryError),
}

impl From<NameError> for CodeError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Memory(e) => CodeError::Memory(e),
            NameError::Freed(_) => CodeError::Freed,
            NameError::Invalid { .. } => CodeError::BadName,
        }
    }
}

impl From<MemoryError> for CodeError {
    fn from(e: MemoryError) -> Self {
        CodeError::Memory(e)
    }
}

/// The fields of `PyCodeObject` we read, as offsets.
fn code_fields(o: &PyOffsets) -> Vec<u64> {
    let mut fields = vec![
        refcnt_offset(o),
        o.object_type,
        o.code_name,
        o.code_filename,
        o.code_firstlineno,
        o.code_linetable,
    ];
    fields.extend(o.code_qualname);
    fields
}

/// What identifies the code object living at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    type_addr: Addr,
    name: Addr,
    filename: Addr,
    line_table: Addr,
    first_line: i32,
}

/// `PY_CODE_ID_SEED` and `PY_CODE_ID_MUL` in bpf/pyspy.h.
const CODE_ID_SEED: u64 = 0x7079_7370_795f_6964;
const CODE_ID_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Fingerprint {
    /// The hash of these fields the BPF program computes from the code object's header
    /// (`code_id` in bpf/sampler.bpf.c, same fields in the same order): equal ids say the code
    /// object at the address is still the one cached, without reading it.
    fn code_id(&self) -> u64 {
        let mix = |h: u64, v: u64| {
            let h = (h ^ v).wrapping_mul(CODE_ID_MUL);
            h ^ (h >> 29)
        };
        let h = [
            self.type_addr,
            self.name,
            self.filename,
            self.line_table,
            u64::from(self.first_line as u32),
        ]
        .into_iter()
        .fold(CODE_ID_SEED, mix);
        if h == 0 {
            1
        } else {
            h
        }
    }

    fn of(header: &StructBytes, o: &PyOffsets) -> Fingerprint {
        Fingerprint {
            type_addr: header.u64(o.object_type),
            name: header.u64(o.code_qualname.unwrap_or(o.code_name)),
            filename: header.u64(o.code_filename),
            line_table: header.u64(o.code_linetable),
            first_line: header.i32(o.code_firstlineno),
        }
    }
}

/// The frame `raw` is, in code object `info`.
fn frame_of(o: &PyOffsets, info: &CodeInfo, raw: RawPyFrame) -> Frame {
    Frame::Python(PyFrame {
        function: info.function.clone(),
        filename: info.filename.clone(),
        // A line beyond any source file says the table or position was not this code's.
        line: line_of(o, info, raw)
            .filter(|&line| line <= MAX_LINE)
            .unwrap_or(0),
        first_line: info.first_line,
    })
}

/// The line of the frame's current instruction.
fn line_of(o: &PyOffsets, info: &CodeInfo, raw: RawPyFrame) -> Option<u32> {
    let position = match o.line_table {
        LineTable::Locations => {
            // 3.11+: the instruction pointer points into co_code_adaptive, in 2-byte units.
            let start = raw.code_addr.checked_add(o.code_code_adaptive?)?;
            raw.instr.checked_sub(start)? / 2
        }
        _ => raw.instr,
    };
    line_for(o.line_table, &info.line_table, info.first_line, position)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::process::memory::LocalMemory;
    use crate::python::objects::tests::Image;

    /// Memory that counts its reads.
    struct Counting {
        inner: LocalMemory,
        reads: Cell<usize>,
    }

    impl RemoteMemory for Counting {
        fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.reads.set(self.reads.get() + 1);
            self.inner.read_into(addr, buf)
        }
    }

    /// A 3.11 image with one code object `work` of `app.py` (line 7), and its address.
    fn image_with_code() -> (Image, Addr) {
        let mut img = Image::new((3, 11));
        let o = img.o.clone();
        let code_type = img.alloc(512);
        let type_name = img.alloc(16);
        let i = (type_name - img.base) as usize;
        img.bytes[i..i + 5].copy_from_slice(b"code\0");
        img.put(code_type + o.type_name, type_name);
        let (name, filename) = (img.string("work"), img.string("app.py"));
        // Live objects (a reference each) whose string type is named `str`.
        let str_name = img.alloc(16);
        let i = (str_name - img.base) as usize;
        img.bytes[i..i + 4].copy_from_slice(b"str\0");
        let str_type = img.bytes[(name + o.object_type - img.base) as usize..][..8].to_vec();
        let str_type = u64::from_ne_bytes(str_type.try_into().expect("8 bytes"));
        img.put(str_type + o.type_name, str_name);
        let code = img.alloc(512);
        for object in [name, filename, code] {
            img.put(object + refcnt_offset(&o), 1);
        }
        img.put(code + o.object_type, code_type);
        img.put(code + o.code_name, name);
        img.put(code + o.code_qualname.expect("3.11 has co_qualname"), name);
        img.put(code + o.code_filename, filename);
        img.put(code + o.code_firstlineno, 7);
        (img, code)
    }

    #[test]
    fn a_matching_fingerprint_spares_the_read_and_a_stale_one_does_not() {
        let (img, code) = image_with_code();
        let o = img.o.clone();
        let mem = Counting {
            inner: img.mem(),
            reads: Cell::new(0),
        };
        let mut cache = CodeCache::default();
        let raw = |code_id| RawPyFrame {
            code_addr: code,
            instr: 0,
            code_id,
        };
        let function = |frames: Vec<Frame>| match &frames[..] {
            [Frame::Python(f)] => f.function.clone(),
            other => panic!("{other:?}"),
        };
        let header = read_struct(&mem, code, &code_fields(&o)).unwrap();
        let id = Fingerprint::of(&header, &o).code_id();
        assert_ne!(id, 0);
        mem.reads.set(0);
        // First sight: read (the BPF program's id is not trusted for an uncached address).
        assert_eq!(function(cache.resolve_all(&mem, &o, &[raw(id)])), "work");
        assert!(mem.reads.get() > 0);
        mem.reads.set(0);
        // The id the program computed from the same header: no read at all.
        assert_eq!(function(cache.resolve_all(&mem, &o, &[raw(id)])), "work");
        assert_eq!(mem.reads.get(), 0);
        // No id (a frame user space walked itself): the header is read, the cache kept.
        assert_eq!(function(cache.resolve_all(&mem, &o, &[raw(0)])), "work");
        assert!(mem.reads.get() > 0);
        // Another id: the object the program saw is not the one there now. The frame is not
        // named after whatever lives at the address.
        mem.reads.set(0);
        let frames = cache.resolve_all(&mem, &o, &[raw(id ^ 1)]);
        assert!(mem.reads.get() > 0);
        assert!(
            matches!(frames[..], [Frame::Unknown(Reason::Replaced)]),
            "{frames:?}"
        );
    }

    #[test]
    fn rejected_frames_are_counted_by_reason_and_a_depth_cut_is_not() {
        let py = Frame::Python(PyFrame {
            function: "f".into(),
            filename: "f.py".into(),
            line: 1,
            first_line: 1,
        });
        let mut errors = FrameErrors::default();
        assert!(!errors.count(&[py.clone(), Frame::Truncated(Reason::DepthLimit)]));
        assert!(errors.count(&[Frame::Unknown(Reason::Replaced), py.clone()]));
        let cut = [
            Frame::Unknown(Reason::Replaced),
            Frame::Unknown(Reason::BadObject),
            Frame::Truncated(Reason::ReadFailed),
        ];
        assert!(errors.count(&cut));
        assert_eq!(errors.stacks, 2);
        assert_eq!(
            errors.describe().as_deref(),
            Some("code object gone=2, bad object=1, read failed=1")
        );
        // Beside native frames, a read-failed cut may be the native unwind's own.
        let mut merged = FrameErrors::default();
        assert!(!merged.count_merged(&[py, Frame::Truncated(Reason::ReadFailed)]));
        assert!(merged.count_merged(&cut));
        assert_eq!(
            merged.describe().as_deref(),
            Some("code object gone=1, bad object=1")
        );
    }

    #[test]
    fn the_fingerprint_covers_every_field() {
        let base = Fingerprint {
            type_addr: 1,
            name: 2,
            filename: 3,
            line_table: 4,
            first_line: 5,
        };
        let variants = [
            Fingerprint {
                type_addr: 9,
                ..base
            },
            Fingerprint { name: 9, ..base },
            Fingerprint {
                filename: 9,
                ..base
            },
            Fingerprint {
                line_table: 9,
                ..base
            },
            Fingerprint {
                first_line: 9,
                ..base
            },
            Fingerprint {
                first_line: -1,
                ..base
            },
        ];
        for v in variants {
            assert_ne!(v.code_id(), base.code_id(), "{v:?}");
            assert_ne!(v.code_id(), 0);
        }
    }
}
