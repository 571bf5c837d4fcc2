//! `_Py_DebugOffsets` (3.13+): the table of struct offsets that CPython itself puts at the
//! start of `_PyRuntime` for out-of-process tools. We read it from the target, check its
//! cookie and version, and use it to confirm (or correct) our own offsets row.
//!
//! The struct's own layout changes between minor versions (it is only stable across patch
//! releases), so each supported layout is listed here section by section, exactly as in the
//! real headers: `Include/internal/pycore_runtime.h` (3.13) and
//! `Include/internal/pycore_debug_offsets.h` (3.14, 3.15). Every entry is a `uint64_t`, so a
//! field's byte offset is its position in that list; tools/offsets/probe.c prints the
//! compiler's view of the same offsets and tests/offsets.rs compares the two.

use super::offsets::PyOffsets;
use crate::model::PyVersion;

/// `_Py_Debug_Cookie`: the first 8 bytes of `_PyRuntime` in 3.13+.
pub const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";

/// Bytes before the first section: `char cookie[8]`, `uint64_t version`,
/// `uint64_t free_threaded`.
const HEADER_LEN: usize = 24;

/// The layout of one minor series' `_Py_DebugOffsets`: every section in order, as
/// `(section name, its uint64_t fields separated by spaces)`.
struct Layout {
    series: (u8, u8),
    sections: &'static [(&'static str, &'static str)],
}

/// Number of space-separated words in `s` (a `const fn`, for `DEBUG_OFFSETS_READ_LEN`).
const fn word_count(s: &str) -> usize {
    let bytes = s.as_bytes();
    let (mut n, mut i, mut in_word) = (0, 0, false);
    while i < bytes.len() {
        let space = bytes[i].is_ascii_whitespace();
        if !space && !in_word {
            n += 1;
        }
        in_word = !space;
        i += 1;
    }
    n
}

impl Layout {
    /// `sizeof(_Py_DebugOffsets)`.
    const fn size(&self) -> usize {
        let (mut n, mut i) = (0, 0);
        while i < self.sections.len() {
            n += word_count(self.sections[i].1);
            i += 1;
        }
        HEADER_LEN + 8 * n
    }

    /// Byte offset of `section.field` inside `_Py_DebugOffsets`.
    fn offset(&self, section: &str, field: &str) -> Option<usize> {
        let mut index = 0;
        for (name, fields) in self.sections {
            if *name == section {
                let at = fields.split_ascii_whitespace().position(|f| f == field)?;
                return Some(HEADER_LEN + 8 * (index + at));
            }
            index += word_count(fields);
        }
        None
    }
}

/// 3.13: `struct _Py_DebugOffsets` in Include/internal/pycore_runtime.h (3.13.5).
const LAYOUT_3_13: Layout = Layout {
    series: (3, 13),
    sections: &[
        ("runtime_state", "size finalizing interpreters_head"),
        (
            "interpreter_state",
            "size id next threads_head gc imports_modules sysdict builtins ceval_gil \
             gil_runtime_state gil_runtime_state_enabled gil_runtime_state_locked \
             gil_runtime_state_holder",
        ),
        (
            "thread_state",
            "size prev next interp current_frame thread_id native_thread_id datastack_chunk status",
        ),
        (
            "interpreter_frame",
            "size previous executable instr_ptr localsplus owner",
        ),
        (
            "code_object",
            "size filename name qualname linetable firstlineno argcount localsplusnames \
             localspluskinds co_code_adaptive",
        ),
        ("pyobject", "size ob_type"),
        ("type_object", "size tp_name tp_repr tp_flags"),
        ("tuple_object", "size ob_item ob_size"),
        ("list_object", "size ob_item ob_size"),
        ("dict_object", "size ma_keys ma_values"),
        ("float_object", "size ob_fval"),
        ("long_object", "size lv_tag ob_digit"),
        ("bytes_object", "size ob_size ob_sval"),
        ("unicode_object", "size state length asciiobject_size"),
        ("gc", "size collecting"),
    ],
};

/// 3.14: `struct _Py_DebugOffsets` in Include/internal/pycore_debug_offsets.h (3.14.10).
const LAYOUT_3_14: Layout = Layout {
    series: (3, 14),
    sections: &[
        ("runtime_state", "size finalizing interpreters_head"),
        (
            "interpreter_state",
            "size id next threads_head threads_main gc imports_modules sysdict builtins \
             ceval_gil gil_runtime_state gil_runtime_state_enabled gil_runtime_state_locked \
             gil_runtime_state_holder code_object_generation tlbc_generation",
        ),
        (
            "thread_state",
            "size prev next interp current_frame thread_id native_thread_id datastack_chunk status",
        ),
        (
            "interpreter_frame",
            "size previous executable instr_ptr localsplus owner stackpointer tlbc_index",
        ),
        (
            "code_object",
            "size filename name qualname linetable firstlineno argcount localsplusnames \
             localspluskinds co_code_adaptive co_tlbc",
        ),
        ("pyobject", "size ob_type"),
        ("type_object", "size tp_name tp_repr tp_flags"),
        ("tuple_object", "size ob_item ob_size"),
        ("list_object", "size ob_item ob_size"),
        ("set_object", "size used table mask"),
        ("dict_object", "size ma_keys ma_values"),
        ("float_object", "size ob_fval"),
        ("long_object", "size lv_tag ob_digit"),
        ("bytes_object", "size ob_size ob_sval"),
        ("unicode_object", "size state length asciiobject_size"),
        ("gc", "size collecting"),
        ("gen_object", "size gi_name gi_iframe gi_frame_state"),
        ("llist_node", "next prev"),
        (
            "debugger_support",
            "eval_breaker remote_debugger_support remote_debugging_enabled \
             debugger_pending_call debugger_script_path debugger_script_path_size",
        ),
    ],
};

/// 3.15: `struct _Py_DebugOffsets` in Include/internal/pycore_debug_offsets.h (3.15.2).
/// Differs from 3.14 in `thread_state` (new frame and GIL fields: `thread_id` moved), a new
/// anonymous `err_stackitem` section, `type_object`, a new `heap_type_object` section,
/// `unicode_object` (`compactunicodeobject_size`) and `gc`.
const LAYOUT_3_15: Layout = Layout {
    series: (3, 15),
    sections: &[
        ("runtime_state", "size finalizing interpreters_head"),
        (
            "interpreter_state",
            "size id next threads_head threads_main gc imports_modules sysdict builtins \
             ceval_gil gil_runtime_state gil_runtime_state_enabled gil_runtime_state_locked \
             gil_runtime_state_holder code_object_generation tlbc_generation",
        ),
        (
            "thread_state",
            "size prev next interp current_frame base_frame last_profiled_frame \
             last_profiled_frame_seq thread_id native_thread_id datastack_chunk status \
             holds_gil gil_requested current_exception exc_state",
        ),
        ("err_stackitem", "exc_value"),
        (
            "interpreter_frame",
            "size previous executable instr_ptr localsplus owner stackpointer tlbc_index",
        ),
        (
            "code_object",
            "size filename name qualname linetable firstlineno argcount localsplusnames \
             localspluskinds co_code_adaptive co_tlbc",
        ),
        ("pyobject", "size ob_type"),
        (
            "type_object",
            "size tp_name tp_repr tp_flags tp_basicsize tp_dictoffset",
        ),
        ("heap_type_object", "size ht_cached_keys"),
        ("tuple_object", "size ob_item ob_size"),
        ("list_object", "size ob_item ob_size"),
        ("set_object", "size used table mask"),
        ("dict_object", "size ma_keys ma_values"),
        ("float_object", "size ob_fval"),
        ("long_object", "size lv_tag ob_digit"),
        ("bytes_object", "size ob_size ob_sval"),
        (
            "unicode_object",
            "size state length asciiobject_size compactunicodeobject_size",
        ),
        (
            "gc",
            "size collecting frame generation_stats_size generation_stats",
        ),
        ("gen_object", "size gi_name gi_iframe gi_frame_state"),
        ("llist_node", "next prev"),
        (
            "debugger_support",
            "eval_breaker remote_debugger_support remote_debugging_enabled \
             debugger_pending_call debugger_script_path debugger_script_path_size",
        ),
    ],
};

const LAYOUTS: &[&Layout] = &[&LAYOUT_3_13, &LAYOUT_3_14, &LAYOUT_3_15];

const fn max_layout_size() -> usize {
    let mut max = HEADER_LEN;
    let mut i = 0;
    while i < LAYOUTS.len() {
        let size = LAYOUTS[i].size();
        if size > max {
            max = size;
        }
        i += 1;
    }
    max
}

/// Bytes to read from the start of `_PyRuntime`: enough for every supported layout.
pub const DEBUG_OFFSETS_READ_LEN: usize = max_layout_size();

fn layout_for(series: (u8, u8)) -> Option<&'static Layout> {
    LAYOUTS.iter().copied().find(|l| l.series == series)
}

/// `sizeof(_Py_DebugOffsets)` for a minor series, if its layout is known.
pub fn layout_size(version: PyVersion) -> Option<usize> {
    layout_for(version.minor_series()).map(Layout::size)
}

/// `offsetof(_Py_DebugOffsets, section.field)` for a minor series, if known. Used by the
/// tests to compare the layouts above with the real headers.
pub fn layout_offset(version: PyVersion, section: &str, field: &str) -> Option<usize> {
    layout_for(version.minor_series())?.offset(section, field)
}

/// The value of `section.field` in `bytes` (a target's `_Py_DebugOffsets`, already accepted
/// by `parse_debug_offsets` for `version`), for readers that need a field the offsets table
/// does not hold (the asyncio reader's coroutine and set fields); `None` if the layout has
/// no such field.
pub fn debug_field(bytes: &[u8], version: PyVersion, section: &str, field: &str) -> Option<u64> {
    u64_at(bytes, layout_offset(version, section, field)?)
}

/// What went wrong reading a target's `_Py_DebugOffsets`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DebugOffsetsError {
    #[error("_Py_DebugOffsets truncated: need {needed} bytes, got {got}")]
    Truncated { needed: usize, got: usize },
    #[error("_PyRuntime does not start with the \"xdebugpy\" cookie (found {found:?}): not a 3.13+ runtime, or the wrong address")]
    BadCookie { found: String },
    #[error("_Py_DebugOffsets says CPython {found}, but the binary was detected as {expected}")]
    VersionMismatch { expected: String, found: String },
    #[error("free-threaded CPython is not supported (this is a free-threaded {version} build)")]
    FreeThreaded { version: String },
    #[error("no _Py_DebugOffsets layout is known for CPython {version} (known: {known})")]
    UnknownLayout { version: String, known: String },
    #[error("_Py_DebugOffsets of CPython {version} does not match our layout for its series ({field} = {value}, expected {expected}): a debug build, or a patch release that changed the layout?")]
    Implausible {
        version: String,
        field: &'static str,
        value: u64,
        expected: u64,
    },
}

/// The parts of a target's `_Py_DebugOffsets` that overlap our offsets table. Offsets are
/// as CPython states them: `interp_gil_*` are offsets inside `PyInterpreterState` (of its
/// embedded `_gil` struct and that struct's fields), everything else is relative to the
/// struct named in the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugOffsets {
    /// `PY_VERSION_HEX` of the target.
    pub version_hex: u64,
    /// The minor series whose layout was used to read this.
    pub series: (u8, u8),
    pub runtime_interpreters_head: u64,
    pub interp_next: u64,
    pub interp_threads_head: u64,
    pub interp_imports_modules: u64,
    pub interp_ceval_gil: u64,
    /// `offsetof(PyInterpreterState, _gil)`
    pub interp_gil_runtime_state: u64,
    /// `offsetof(PyInterpreterState, _gil.locked)`
    pub interp_gil_locked: u64,
    /// `offsetof(PyInterpreterState, _gil.last_holder)`
    pub interp_gil_holder: u64,
    pub tstate_next: u64,
    pub tstate_interp: u64,
    pub tstate_current_frame: u64,
    pub tstate_thread_id: u64,
    pub tstate_native_thread_id: u64,
    pub frame_previous: u64,
    pub frame_executable: u64,
    pub frame_instr_ptr: u64,
    pub frame_owner: u64,
    pub code_filename: u64,
    pub code_name: u64,
    pub code_qualname: u64,
    pub code_linetable: u64,
    pub code_firstlineno: u64,
    pub code_co_code_adaptive: u64,
    pub object_size: u64,
    pub object_ob_type: u64,
    pub type_tp_name: u64,
    pub bytes_ob_size: u64,
    pub bytes_ob_sval: u64,
    pub unicode_state: u64,
    pub unicode_length: u64,
    pub unicode_asciiobject_size: u64,
    /// `sizeof(PyCompactUnicodeObject)`: only in the 3.15+ layout.
    pub unicode_compactunicodeobject_size: Option<u64>,
    pub type_tp_flags: u64,
    /// `PyTypeObject.tp_basicsize`: only in the 3.15+ layout.
    pub type_tp_basicsize: Option<u64>,
    /// `PyTypeObject.tp_dictoffset`: only in the 3.15+ layout.
    pub type_tp_dictoffset: Option<u64>,
    /// `PyHeapTypeObject.ht_cached_keys`: only in the 3.15+ layout.
    pub heap_type_ht_cached_keys: Option<u64>,
    pub dict_ma_keys: u64,
    pub dict_ma_values: u64,
    /// `offsetof(PyLongObject, long_value.lv_tag)`
    pub long_lv_tag: u64,
    /// `offsetof(PyLongObject, long_value.ob_digit)`
    pub long_ob_digit: u64,
    /// `offsetof(_PyInterpreterFrame, localsplus)`
    pub frame_localsplus: u64,
    pub code_localsplusnames: u64,
    pub code_localspluskinds: u64,
    /// `offsetof(PyTupleObject, ob_item)`
    pub tuple_ob_item: u64,
    /// `offsetof(PyTupleObject, ob_base.ob_size)`
    pub tuple_ob_size: u64,
    /// `offsetof(PyListObject, ob_item)`
    pub list_ob_item: u64,
    /// `offsetof(PyFloatObject, ob_fval)`
    pub float_ob_fval: u64,
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    let chunk = bytes.get(offset..offset.checked_add(8)?)?;
    Some(u64::from_le_bytes(chunk.try_into().ok()?))
}

fn version_string(hex: u64) -> String {
    format!(
        "{}.{}.{}",
        (hex >> 24) & 0xff,
        (hex >> 16) & 0xff,
        (hex >> 8) & 0xff
    )
}

/// Parse the first bytes of a target's `_PyRuntime` (at least `DEBUG_OFFSETS_READ_LEN` of
/// them, or the layout's size) as `_Py_DebugOffsets`, for a binary detected as `expected`.
pub fn parse_debug_offsets(
    bytes: &[u8],
    expected: PyVersion,
) -> Result<DebugOffsets, DebugOffsetsError> {
    let truncated = |needed: usize| DebugOffsetsError::Truncated {
        needed,
        got: bytes.len(),
    };
    let cookie = bytes.get(..8).ok_or_else(|| truncated(HEADER_LEN))?;
    if cookie != DEBUG_COOKIE {
        return Err(DebugOffsetsError::BadCookie {
            found: cookie.escape_ascii().to_string(),
        });
    }
    let version_hex = u64_at(bytes, 8).ok_or_else(|| truncated(HEADER_LEN))?;
    let free_threaded = u64_at(bytes, 16).ok_or_else(|| truncated(HEADER_LEN))?;
    let series = (
        ((version_hex >> 24) & 0xff) as u8,
        ((version_hex >> 16) & 0xff) as u8,
    );
    if series != expected.minor_series() {
        return Err(DebugOffsetsError::VersionMismatch {
            expected: expected.to_string(),
            found: version_string(version_hex),
        });
    }
    if free_threaded != 0 {
        return Err(DebugOffsetsError::FreeThreaded {
            version: version_string(version_hex),
        });
    }
    let layout = layout_for(series).ok_or_else(|| DebugOffsetsError::UnknownLayout {
        version: version_string(version_hex),
        known: LAYOUTS
            .iter()
            .map(|l| format!("{}.{}", l.series.0, l.series.1))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    if bytes.len() < layout.size() {
        return Err(truncated(layout.size()));
    }
    // Every name below is in every layout (the unit tests check it); were one missing, the
    // result would be an error, never a panic.
    let get = |section: &str, field: &str| {
        layout
            .offset(section, field)
            .and_then(|at| u64_at(bytes, at))
            .ok_or_else(|| truncated(layout.size()))
    };
    // A field only some layouts have: `None` where the layout lacks it.
    let optional = |section: &str, field: &str| match layout.offset(section, field) {
        Some(at) => u64_at(bytes, at)
            .map(Some)
            .ok_or_else(|| truncated(layout.size())),
        None => Ok(None),
    };
    let debug = DebugOffsets {
        version_hex,
        series,
        runtime_interpreters_head: get("runtime_state", "interpreters_head")?,
        interp_next: get("interpreter_state", "next")?,
        interp_threads_head: get("interpreter_state", "threads_head")?,
        interp_imports_modules: get("interpreter_state", "imports_modules")?,
        interp_ceval_gil: get("interpreter_state", "ceval_gil")?,
        interp_gil_runtime_state: get("interpreter_state", "gil_runtime_state")?,
        interp_gil_locked: get("interpreter_state", "gil_runtime_state_locked")?,
        interp_gil_holder: get("interpreter_state", "gil_runtime_state_holder")?,
        tstate_next: get("thread_state", "next")?,
        tstate_interp: get("thread_state", "interp")?,
        tstate_current_frame: get("thread_state", "current_frame")?,
        tstate_thread_id: get("thread_state", "thread_id")?,
        tstate_native_thread_id: get("thread_state", "native_thread_id")?,
        frame_previous: get("interpreter_frame", "previous")?,
        frame_executable: get("interpreter_frame", "executable")?,
        frame_instr_ptr: get("interpreter_frame", "instr_ptr")?,
        frame_owner: get("interpreter_frame", "owner")?,
        code_filename: get("code_object", "filename")?,
        code_name: get("code_object", "name")?,
        code_qualname: get("code_object", "qualname")?,
        code_linetable: get("code_object", "linetable")?,
        code_firstlineno: get("code_object", "firstlineno")?,
        code_co_code_adaptive: get("code_object", "co_code_adaptive")?,
        object_size: get("pyobject", "size")?,
        object_ob_type: get("pyobject", "ob_type")?,
        type_tp_name: get("type_object", "tp_name")?,
        bytes_ob_size: get("bytes_object", "ob_size")?,
        bytes_ob_sval: get("bytes_object", "ob_sval")?,
        unicode_state: get("unicode_object", "state")?,
        unicode_length: get("unicode_object", "length")?,
        unicode_asciiobject_size: get("unicode_object", "asciiobject_size")?,
        unicode_compactunicodeobject_size: optional("unicode_object", "compactunicodeobject_size")?,
        type_tp_flags: get("type_object", "tp_flags")?,
        type_tp_basicsize: optional("type_object", "tp_basicsize")?,
        type_tp_dictoffset: optional("type_object", "tp_dictoffset")?,
        heap_type_ht_cached_keys: optional("heap_type_object", "ht_cached_keys")?,
        dict_ma_keys: get("dict_object", "ma_keys")?,
        dict_ma_values: get("dict_object", "ma_values")?,
        long_lv_tag: get("long_object", "lv_tag")?,
        long_ob_digit: get("long_object", "ob_digit")?,
        frame_localsplus: get("interpreter_frame", "localsplus")?,
        code_localsplusnames: get("code_object", "localsplusnames")?,
        code_localspluskinds: get("code_object", "localspluskinds")?,
        tuple_ob_item: get("tuple_object", "ob_item")?,
        tuple_ob_size: get("tuple_object", "ob_size")?,
        list_ob_item: get("list_object", "ob_item")?,
        float_ob_fval: get("float_object", "ob_fval")?,
    };
    // A few values that are the same in every default build: if they are not, the layout
    // we read with is not the one the target was built with.
    let version = version_string(version_hex);
    for (field, value, expected) in [
        ("pyobject.size", debug.object_size, 16),
        ("pyobject.ob_type", debug.object_ob_type, 8),
        ("type_object.tp_name", debug.type_tp_name, 24),
        ("bytes_object.ob_size", debug.bytes_ob_size, 16),
    ] {
        if value != expected {
            return Err(DebugOffsetsError::Implausible {
                version,
                field,
                value,
                expected,
            });
        }
    }
    Ok(debug)
}

/// The table value reported by `apply_debug_offsets` for a field the row does not have.
pub const ABSENT: u64 = u64::MAX;

/// Overwrite every field of `row` that `debug` covers with the target's own value. Returns
/// `(field, table value, debug value)` for each field that differed (`ABSENT` as the table
/// value where the row had `None`); the caller logs them. Fields the debug offsets do not
/// cover (frame-owner constants, tag mask, behaviour switches) are left alone.
pub fn apply_debug_offsets(
    row: &mut PyOffsets,
    debug: &DebugOffsets,
) -> Vec<(&'static str, u64, u64)> {
    let mut changed = Vec::new();
    // `field <- live` for a plain field, `field <- Some(live)` for an optional one.
    macro_rules! set {
        ($field:ident, $live:expr) => {{
            let live: u64 = $live;
            if row.$field != live {
                changed.push((stringify!($field), row.$field, live));
                row.$field = live;
            }
        }};
    }
    macro_rules! set_opt {
        ($field:ident, $live:expr) => {{
            if let Some(live) = $live {
                if row.$field != Some(live) {
                    changed.push((stringify!($field), row.$field.unwrap_or(ABSENT), live));
                    row.$field = Some(live);
                }
            }
        }};
    }
    let gil = debug.interp_gil_runtime_state;
    set_opt!(
        runtime_interpreters_head,
        Some(debug.runtime_interpreters_head)
    );
    set!(interp_next, debug.interp_next);
    set!(interp_tstate_head, debug.interp_threads_head);
    set!(interp_modules, debug.interp_imports_modules);
    set_opt!(interp_gil_ptr, Some(debug.interp_ceval_gil));
    set_opt!(gil_last_holder, debug.interp_gil_holder.checked_sub(gil));
    set_opt!(gil_locked, debug.interp_gil_locked.checked_sub(gil));
    set!(tstate_next, debug.tstate_next);
    set!(tstate_interp, debug.tstate_interp);
    set!(tstate_frame, debug.tstate_current_frame);
    set!(tstate_thread_id, debug.tstate_thread_id);
    set_opt!(tstate_native_thread_id, Some(debug.tstate_native_thread_id));
    set_opt!(iframe_code, Some(debug.frame_executable));
    set_opt!(iframe_previous, Some(debug.frame_previous));
    set_opt!(iframe_instr, Some(debug.frame_instr_ptr));
    set_opt!(iframe_owner, Some(debug.frame_owner));
    set!(code_name, debug.code_name);
    set_opt!(code_qualname, Some(debug.code_qualname));
    set!(code_filename, debug.code_filename);
    set!(code_firstlineno, debug.code_firstlineno);
    set!(code_linetable, debug.code_linetable);
    set_opt!(code_code_adaptive, Some(debug.code_co_code_adaptive));
    set!(object_type, debug.object_ob_type);
    set!(type_name, debug.type_tp_name);
    set!(bytes_size, debug.bytes_ob_size);
    set!(bytes_data, debug.bytes_ob_sval);
    set!(unicode_length, debug.unicode_length);
    set!(unicode_state, debug.unicode_state);
    set!(unicode_ascii_data, debug.unicode_asciiobject_size);
    if let Some(size) = debug.unicode_compactunicodeobject_size {
        set!(unicode_compact_data, size);
    }
    set!(type_flags, debug.type_tp_flags);
    if let Some(basicsize) = debug.type_tp_basicsize {
        set!(type_basicsize, basicsize);
    }
    if let Some(dictoffset) = debug.type_tp_dictoffset {
        set!(type_dictoffset, dictoffset);
    }
    set_opt!(heaptype_cached_keys, debug.heap_type_ht_cached_keys);
    set_opt!(dict_keys, Some(debug.dict_ma_keys));
    set_opt!(dict_values, Some(debug.dict_ma_values));
    set_opt!(long_tag, Some(debug.long_lv_tag));
    set!(long_digits, debug.long_ob_digit);
    set_opt!(iframe_localsplus, Some(debug.frame_localsplus));
    set_opt!(code_localsplusnames, Some(debug.code_localsplusnames));
    set_opt!(code_localspluskinds, Some(debug.code_localspluskinds));
    set!(tuple_items, debug.tuple_ob_item);
    set!(var_size, debug.tuple_ob_size);
    set!(list_items, debug.list_ob_item);
    set!(float_value, debug.float_ob_fval);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::offsets::offsets_for;

    /// Synthetic `_Py_DebugOffsets` bytes for a layout, each field set from `value`.
    fn synthetic(
        layout: &Layout,
        version_hex: u64,
        free_threaded: u64,
        value: impl Fn(&str, &str) -> u64,
    ) -> Vec<u8> {
        let mut bytes = vec![0u8; DEBUG_OFFSETS_READ_LEN];
        bytes[..8].copy_from_slice(DEBUG_COOKIE);
        bytes[8..16].copy_from_slice(&version_hex.to_le_bytes());
        bytes[16..24].copy_from_slice(&free_threaded.to_le_bytes());
        for (section, fields) in layout.sections {
            for field in fields.split_ascii_whitespace() {
                let at = layout.offset(section, field).unwrap();
                bytes[at..at + 8].copy_from_slice(&value(section, field).to_le_bytes());
            }
        }
        bytes
    }

    /// The values a real default build of `row`'s series would carry.
    fn from_row(row: &PyOffsets) -> impl Fn(&str, &str) -> u64 + '_ {
        const GIL: u64 = 10_000;
        move |section, field| match (section, field) {
            ("runtime_state", "interpreters_head") => row.runtime_interpreters_head.unwrap(),
            ("interpreter_state", "next") => row.interp_next,
            ("interpreter_state", "threads_head") => row.interp_tstate_head,
            ("interpreter_state", "imports_modules") => row.interp_modules,
            ("interpreter_state", "ceval_gil") => row.interp_gil_ptr.unwrap(),
            ("interpreter_state", "gil_runtime_state") => GIL,
            ("interpreter_state", "gil_runtime_state_locked") => GIL + row.gil_locked.unwrap(),
            ("interpreter_state", "gil_runtime_state_holder") => GIL + row.gil_last_holder.unwrap(),
            ("thread_state", "next") => row.tstate_next,
            ("thread_state", "interp") => row.tstate_interp,
            ("thread_state", "current_frame") => row.tstate_frame,
            ("thread_state", "thread_id") => row.tstate_thread_id,
            ("thread_state", "native_thread_id") => row.tstate_native_thread_id.unwrap(),
            ("interpreter_frame", "previous") => row.iframe_previous.unwrap(),
            ("interpreter_frame", "executable") => row.iframe_code.unwrap(),
            ("interpreter_frame", "instr_ptr") => row.iframe_instr.unwrap(),
            ("interpreter_frame", "owner") => row.iframe_owner.unwrap(),
            ("code_object", "filename") => row.code_filename,
            ("code_object", "name") => row.code_name,
            ("code_object", "qualname") => row.code_qualname.unwrap(),
            ("code_object", "linetable") => row.code_linetable,
            ("code_object", "firstlineno") => row.code_firstlineno,
            ("code_object", "co_code_adaptive") => row.code_code_adaptive.unwrap(),
            ("pyobject", "size") => 16,
            ("pyobject", "ob_type") => row.object_type,
            ("type_object", "tp_name") => row.type_name,
            ("bytes_object", "ob_size") => row.bytes_size,
            ("bytes_object", "ob_sval") => row.bytes_data,
            ("unicode_object", "state") => row.unicode_state,
            ("unicode_object", "length") => row.unicode_length,
            ("unicode_object", "asciiobject_size") => row.unicode_ascii_data,
            ("unicode_object", "compactunicodeobject_size") => row.unicode_compact_data,
            ("type_object", "tp_flags") => row.type_flags,
            ("type_object", "tp_basicsize") => row.type_basicsize,
            ("type_object", "tp_dictoffset") => row.type_dictoffset,
            ("heap_type_object", "ht_cached_keys") => row.heaptype_cached_keys.unwrap(),
            ("dict_object", "ma_keys") => row.dict_keys.unwrap(),
            ("dict_object", "ma_values") => row.dict_values.unwrap(),
            ("long_object", "lv_tag") => row.long_tag.unwrap(),
            ("long_object", "ob_digit") => row.long_digits,
            ("interpreter_frame", "localsplus") => row.iframe_localsplus.unwrap(),
            ("code_object", "localsplusnames") => row.code_localsplusnames.unwrap(),
            ("code_object", "localspluskinds") => row.code_localspluskinds.unwrap(),
            ("tuple_object", "ob_item") => row.tuple_items,
            ("tuple_object", "ob_size") => row.var_size,
            ("list_object", "ob_item") => row.list_items,
            ("float_object", "ob_fval") => row.float_value,
            _ => 0xdead,
        }
    }

    fn hex(major: u64, minor: u64, micro: u64) -> u64 {
        (major << 24) | (minor << 16) | (micro << 8) | 0xf0
    }

    #[test]
    fn read_len_covers_every_layout() {
        assert_eq!(LAYOUT_3_13.size(), 584);
        assert_eq!(LAYOUT_3_14.size(), 760);
        assert_eq!(LAYOUT_3_15.size(), 888);
        assert_eq!(DEBUG_OFFSETS_READ_LEN, 888);
    }

    #[test]
    fn a_matching_target_changes_nothing() {
        for layout in LAYOUTS {
            let (major, minor) = layout.series;
            let version = PyVersion::new(major, minor, 3);
            let row = offsets_for(version).unwrap();
            let bytes = synthetic(
                layout,
                hex(major.into(), minor.into(), 3),
                0,
                from_row(&row),
            );
            let debug = parse_debug_offsets(&bytes, version).unwrap();
            assert_eq!(debug.series, (major, minor));
            let mut applied = row.clone();
            assert_eq!(apply_debug_offsets(&mut applied, &debug), vec![]);
            assert_eq!(applied, row);
        }
    }

    #[test]
    fn differences_are_applied_and_reported() {
        let version = PyVersion::new(3, 14, 0);
        let row = offsets_for(version).unwrap();
        let base = from_row(&row);
        let bytes = synthetic(&LAYOUT_3_14, hex(3, 14, 0), 0, |s, f| match (s, f) {
            ("thread_state", "current_frame") => 80,
            ("interpreter_state", "gil_runtime_state_holder") => 10_000 + 24,
            _ => base(s, f),
        });
        let debug = parse_debug_offsets(&bytes, version).unwrap();
        let mut applied = row.clone();
        let changed = apply_debug_offsets(&mut applied, &debug);
        assert_eq!(
            changed,
            vec![("gil_last_holder", 8, 24), ("tstate_frame", 72, 80)]
        );
        assert_eq!(applied.tstate_frame, 80);
        assert_eq!(applied.gil_last_holder, Some(24));
    }

    #[test]
    fn bad_cookie() {
        let mut bytes = synthetic(&LAYOUT_3_13, hex(3, 13, 0), 0, |_, _| 0);
        bytes[..8].copy_from_slice(b"notdebug");
        let err = parse_debug_offsets(&bytes, PyVersion::new(3, 13, 0)).unwrap_err();
        assert!(matches!(err, DebugOffsetsError::BadCookie { .. }), "{err}");
        assert!(err.to_string().contains("notdebug"));
    }

    #[test]
    fn wrong_version_names_both() {
        let bytes = synthetic(&LAYOUT_3_14, hex(3, 14, 2), 0, |_, _| 0);
        let err = parse_debug_offsets(&bytes, PyVersion::new(3, 13, 1)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("3.14.2") && text.contains("3.13.1"), "{text}");
    }

    #[test]
    fn free_threaded_is_rejected() {
        let bytes = synthetic(&LAYOUT_3_14, hex(3, 14, 0), 1, |_, _| 0);
        let err = parse_debug_offsets(&bytes, PyVersion::new(3, 14, 0)).unwrap_err();
        assert!(
            err.to_string()
                .contains("free-threaded CPython is not supported"),
            "{err}"
        );
    }

    #[test]
    fn unknown_layout() {
        let bytes = synthetic(&LAYOUT_3_15, hex(3, 16, 0), 0, |_, _| 0);
        let err = parse_debug_offsets(&bytes, PyVersion::new(3, 16, 0)).unwrap_err();
        assert!(
            matches!(err, DebugOffsetsError::UnknownLayout { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("3.16.0"));
    }

    #[test]
    fn truncated_input_is_an_error_never_a_panic() {
        let version = PyVersion::new(3, 15, 0);
        let row = offsets_for(version).unwrap();
        let bytes = synthetic(&LAYOUT_3_15, hex(3, 15, 0), 0, from_row(&row));
        for len in 0..LAYOUT_3_15.size() {
            let err = parse_debug_offsets(&bytes[..len], version).unwrap_err();
            assert!(
                matches!(
                    err,
                    DebugOffsetsError::Truncated { .. } | DebugOffsetsError::BadCookie { .. }
                ),
                "{len}: {err}"
            );
        }
        assert!(parse_debug_offsets(&bytes[..LAYOUT_3_15.size()], version).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for round in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % (DEBUG_OFFSETS_READ_LEN as u64 + 16)) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (state >> (i % 56)) as u8).collect();
            if round % 2 == 0 && bytes.len() >= 24 {
                bytes[..8].copy_from_slice(DEBUG_COOKIE);
                bytes[8..16].copy_from_slice(&hex(3, 13 + (round % 3) as u64, 0).to_le_bytes());
                bytes[16..24].fill(0);
            }
            let _ = parse_debug_offsets(&bytes, PyVersion::new(3, 13 + (round % 3) as u8, 0));
        }
    }

    #[test]
    fn implausible_values_are_rejected() {
        let version = PyVersion::new(3, 13, 0);
        let row = offsets_for(version).unwrap();
        let base = from_row(&row);
        let bytes = synthetic(&LAYOUT_3_13, hex(3, 13, 0), 0, |s, f| match (s, f) {
            ("pyobject", "size") => 32,
            _ => base(s, f),
        });
        let err = parse_debug_offsets(&bytes, version).unwrap_err();
        assert!(
            matches!(
                err,
                DebugOffsetsError::Implausible {
                    field: "pyobject.size",
                    value: 32,
                    ..
                }
            ),
            "{err}"
        );
    }
}
