//! Resolving code objects to names, files and lines. What a code object holds never changes,
//! so it is read once per (process, address) and cached; only the line is computed per sample.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::linetable::line_for;
use super::offsets::{LineTable, PyOffsets};
use super::strings::{read_py_bytes, read_py_string, MAX_BYTES_OBJECT};
use super::walk::{read_struct, read_structs, StructBytes};
use crate::model::{Addr, Frame, PyFrame, RawPyFrame, Reason};
use crate::process::memory::{MemoryError, RemoteMemory};

/// Code objects cached per process before the cache is cleared (a bound on memory).
const MAX_CACHED_CODES: usize = 100_000;

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

    /// Resolve a stack's raw frames, leaf first. The code objects' headers (what tells a
    /// cached code object from a new one at the same address) are read together, in one
    /// system call for the whole stack instead of one per frame.
    pub fn resolve_all(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        raws: &[RawPyFrame],
    ) -> Vec<Frame> {
        let fields = code_fields(o);
        let addrs: Vec<Addr> = raws.iter().map(|r| r.code_addr).collect();
        read_structs(mem, &addrs, &fields)
            .into_iter()
            .zip(raws)
            .map(|(header, raw)| self.resolve_with_header(mem, o, *raw, header))
            .collect()
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
            Err(CodeError::NotCode) => return Frame::Unknown(Reason::BadObject),
            Err(CodeError::Memory(_)) => return Frame::Unknown(Reason::ReadFailed),
        };
        let line = line_of(o, &info, raw).unwrap_or(0);
        Frame::Python(PyFrame {
            function: info.function.clone(),
            filename: info.filename.clone(),
            line,
            first_line: info.first_line,
        })
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
        self.check_is_code(mem, o, fingerprint.type_addr)?;
        let info = Arc::new(read_code(mem, o, header)?);
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
        let name_ptr = mem.read_u64(ty + o.type_name)?;
        if mem.read_c_string(name_ptr, 16)? == "code" {
            self.code_types.insert(ty);
            Ok(())
        } else {
            Err(CodeError::NotCode)
        }
    }
}

enum CodeError {
    NotCode,
    Memory(#[allow(dead_code)] MemoryError),
}

impl From<MemoryError> for CodeError {
    fn from(e: MemoryError) -> Self {
        CodeError::Memory(e)
    }
}

/// The fields of `PyCodeObject` we read, as offsets.
fn code_fields(o: &PyOffsets) -> Vec<u64> {
    let mut fields = vec![
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

impl Fingerprint {
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

fn read_code(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    header: &StructBytes,
) -> Result<CodeInfo, MemoryError> {
    let name_field = o.code_qualname.unwrap_or(o.code_name);
    let function = read_py_string(mem, o, header.u64(name_field))?;
    let filename = read_py_string(mem, o, header.u64(o.code_filename))?;
    let first_line = header.i32(o.code_firstlineno).max(0) as u32;
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
