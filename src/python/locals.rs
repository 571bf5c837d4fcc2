//! The local variables of one frame, for `dump --locals`: names from the code object
//! (`co_varnames` + cell and free variables up to 3.10, `co_localsplusnames` with their kinds
//! from 3.11), values from the frame's fast locals (`f_localsplus` / `localsplus`, tagged
//! `_PyStackRef`s in 3.14+), each shown through repr.rs.
//!
//! Only `dump` calls this, once per frame: the sampling path never reads locals.

use serde::Serialize;

use super::objects::{sequence_items, ObjectError, TPFLAGS_BYTES_SUBCLASS};
use super::offsets::PyOffsets;
use super::repr::{repr_object, type_name, ReprLimits};
use super::strings::{read_py_bytes, read_py_string};
use crate::model::Addr;
use crate::process::memory::RemoteMemory;

/// Most fast locals read from one frame.
pub const MAX_LOCALS: u64 = 1024;

/// `CO_FAST_HIDDEN` (3.12+): a comprehension's inlined variables, not the function's own.
pub const CO_FAST_HIDDEN: u8 = 0x10;
/// `CO_FAST_LOCAL` (3.11+)
pub const CO_FAST_LOCAL: u8 = 0x20;
/// `CO_FAST_CELL` (3.11+)
pub const CO_FAST_CELL: u8 = 0x40;
/// `CO_FAST_FREE` (3.11+)
pub const CO_FAST_FREE: u8 = 0x80;

/// One bound local variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Local {
    pub name: String,
    /// A bounded repr (see repr.rs).
    pub repr: String,
    /// The value's type name (`tp_name`); for a cell, the type of its contents.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The bound locals of the frame at `frame` running `code`, in the code object's order.
/// Unbound variables (a null slot, or an empty cell) are left out.
pub fn frame_locals(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    frame: Addr,
    code: Addr,
    limits: ReprLimits,
) -> Result<Vec<Local>, ObjectError> {
    if type_name(mem, o, code)? != "code" {
        return Err(ObjectError::WrongType {
            addr: code,
            expected: "code",
        });
    }
    let field = |off: Option<u64>, what: &'static str| -> Result<Addr, ObjectError> {
        let off = off.ok_or(ObjectError::Unsupported { what })?;
        code.checked_add(off).ok_or(ObjectError::Malformed {
            what,
            addr: code,
            value: off,
        })
    };
    // (name object, kind) per slot; kinds exist from 3.11.
    let (names, kinds, values_at): (Vec<Addr>, Option<Vec<u8>>, Option<u64>) =
        if o.code_localsplusnames.is_some() {
            let names = name_tuple(mem, o, field(o.code_localsplusnames, "co_localsplusnames")?)?;
            let kinds_obj = mem.read_u64(field(o.code_localspluskinds, "co_localspluskinds")?)?;
            if super::objects::type_flags(mem, o, kinds_obj)? & TPFLAGS_BYTES_SUBCLASS == 0 {
                return Err(ObjectError::WrongType {
                    addr: kinds_obj,
                    expected: "bytes",
                });
            }
            let kinds = read_py_bytes(mem, o, kinds_obj, MAX_LOCALS)?;
            (names, Some(kinds), o.iframe_localsplus)
        } else {
            let mut names = Vec::new();
            for (off, what) in [
                (o.code_varnames, "co_varnames"),
                (o.code_cellvars, "co_cellvars"),
                (o.code_freevars, "co_freevars"),
            ] {
                let left = MAX_LOCALS.saturating_sub(names.len() as u64);
                let tuple = mem.read_u64(field(off, what)?)?;
                let (mut more, _) = sequence_items(mem, o, tuple, left)?;
                names.append(&mut more);
            }
            (names, None, o.frame_localsplus)
        };
    if let Some(kinds) = &kinds {
        if kinds.len() != names.len() {
            return Err(ObjectError::Malformed {
                what: "co_localspluskinds length",
                addr: code,
                value: kinds.len() as u64,
            });
        }
    }
    let values_at = values_at.ok_or(ObjectError::Unsupported {
        what: "fast locals",
    })?;
    let values_addr = frame.checked_add(values_at).ok_or(ObjectError::Malformed {
        what: "frame",
        addr: frame,
        value: values_at,
    })?;
    let raw = if names.is_empty() {
        Vec::new()
    } else {
        mem.read_bytes(values_addr, names.len() * 8)?
    };
    let mut out = Vec::new();
    for (i, (name_obj, word)) in names.iter().zip(raw.chunks_exact(8)).enumerate() {
        let kind = kinds.as_ref().and_then(|k| k.get(i).copied()).unwrap_or(0);
        if kind & CO_FAST_HIDDEN != 0 {
            continue;
        }
        let bits = u64::from_ne_bytes(word.try_into().unwrap_or([0; 8]));
        // 3.14+: a `_PyStackRef` whose tag bits are not address (its null is the tag alone).
        let value = bits & !o.executable_tag_mask;
        if value == 0 {
            continue;
        }
        let name = read_py_string(mem, o, *name_obj).unwrap_or_else(|_| format!("<local {i}>"));
        let shown = repr_object(mem, o, value, limits);
        if shown.repr == "<empty cell>" {
            continue;
        }
        let type_name = if shown.type_name == "cell" {
            cell_contents_type(mem, o, value).unwrap_or(shown.type_name)
        } else {
            shown.type_name
        };
        out.push(Local {
            name,
            repr: shown.repr,
            type_name,
        });
    }
    Ok(out)
}

/// The items of a tuple of names, bounded.
fn name_tuple(mem: &dyn RemoteMemory, o: &PyOffsets, at: Addr) -> Result<Vec<Addr>, ObjectError> {
    let tuple = mem.read_u64(at)?;
    Ok(sequence_items(mem, o, tuple, MAX_LOCALS)?.0)
}

/// The type name of what a cell holds.
fn cell_contents_type(mem: &dyn RemoteMemory, o: &PyOffsets, cell: Addr) -> Option<String> {
    let inner = mem.read_u64(cell.checked_add(o.cell_ref)?).ok()?;
    type_name(mem, o, inner).ok()
}
