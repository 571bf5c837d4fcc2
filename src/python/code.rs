//! Resolving code objects to names, files and lines. What a code object holds never changes,
//! so it is read once per (process, address) and cached; only the line is computed per sample.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::linetable::line_for;
use super::offsets::{LineTable, PyOffsets};
use super::strings::{read_py_bytes, read_py_string, MAX_BYTES_OBJECT};
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
    codes: HashMap<Addr, Arc<CodeInfo>>,
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
        let info = match self.code_info(mem, o, raw.code_addr) {
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
    ) -> Result<Arc<CodeInfo>, CodeError> {
        if let Some(info) = self.codes.get(&addr) {
            return Ok(info.clone());
        }
        self.check_is_code(mem, o, addr)?;
        let info = Arc::new(read_code(mem, o, addr)?);
        if self.codes.len() >= MAX_CACHED_CODES {
            self.codes.clear();
        }
        self.codes.insert(addr, info.clone());
        Ok(info)
    }

    /// A frame may point at something that is not a code object (a freed frame, a 3.12+
    /// executable that is not code): check the type's name before trusting the layout.
    fn check_is_code(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        addr: Addr,
    ) -> Result<(), CodeError> {
        let ty = mem.read_u64(addr + o.object_type)?;
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
    Memory(MemoryError),
}

impl From<MemoryError> for CodeError {
    fn from(e: MemoryError) -> Self {
        CodeError::Memory(e)
    }
}

fn read_code(mem: &dyn RemoteMemory, o: &PyOffsets, addr: Addr) -> Result<CodeInfo, MemoryError> {
    let name_field = o.code_qualname.unwrap_or(o.code_name);
    let function = read_py_string(mem, o, mem.read_u64(addr + name_field)?)?;
    let filename = read_py_string(mem, o, mem.read_u64(addr + o.code_filename)?)?;
    let first_line = mem.read_i32(addr + o.code_firstlineno)?.max(0) as u32;
    let table_addr = mem.read_u64(addr + o.code_linetable)?;
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
