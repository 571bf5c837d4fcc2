//! The one table of CPython struct offsets: one row per supported minor version, plus the
//! behaviour switches (frame model, line-table format) that go with it. `offsets_for` is the
//! only version `match` in the crate. Rows were derived from the real headers
//! (see docs/adding-a-version.md) and are proved by the integration tests.

use crate::model::PyVersion;

/// How a thread's Python frames are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameModel {
    /// <= 3.10: `tstate->frame` is a `PyFrameObject*`, linked by `f_back`.
    FrameObject,
    /// 3.11, 3.12: `tstate->cframe->current_frame` is a `_PyInterpreterFrame*`, linked by `previous`.
    CFrame,
    /// 3.13+: `tstate->current_frame` is a `_PyInterpreterFrame*`.
    CurrentFrame,
}

/// How the current instruction maps to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTable {
    /// 2.7: `co_lnotab`, unsigned line increments; `f_lasti` is a byte offset.
    Lnotab27,
    /// 3.8, 3.9: `co_lnotab`, signed line increments; `f_lasti` is a byte offset.
    Lnotab,
    /// 3.10: `co_linetable` (start delta, line delta) pairs; `f_lasti` counts code units.
    Linetable310,
    /// 3.11+: `co_linetable` location table; the instruction is a pointer into
    /// `co_code_adaptive`.
    Locations,
}

/// How string objects are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringModel {
    /// 2.7: `co_name`/`co_filename` are `PyStringObject` (bytes).
    Bytes27,
    /// 3.x: PEP 393 compact unicode.
    Unicode,
}

/// Where an instance's attributes live (`Py_TPFLAGS_MANAGED_DICT` types: classes defined in
/// Python without `__slots__`). Types without that flag always use `tp_dictoffset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceDictModel {
    /// 2.7–3.10: a `PyObject *` dict slot at `tp_dictoffset` inside the instance.
    DictOffset,
    /// 3.11: before the object header, a dict pointer (`managed_dict_before`) and a values
    /// pointer (`managed_values_before`, `_PyObject_ValuesPointer`); with the values, the keys
    /// are the type's shared `ht_cached_keys`.
    PreHeader,
    /// 3.12: one `PyDictOrValues` word at `managed_dict_before`: a dict pointer, or, with its
    /// low bit set, the values pointer minus 1 (`_PyDictOrValues_GetValues`: `values + 1`).
    TaggedPreHeader,
    /// 3.13+: `Py_TPFLAGS_INLINE_VALUES`: a `PyDictValues` inline at `obj + tp_basicsize`
    /// (keys in `ht_cached_keys`), unless a dict was materialised at `managed_dict_before`.
    InlineValues,
}

/// Offsets (in bytes) of the fields the walker reads. Each comment names the CPython struct
/// and field. `None` means the version has no such field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyOffsets {
    pub series: (u8, u8),
    pub frame_model: FrameModel,
    pub line_table: LineTable,
    pub string_model: StringModel,

    // --- _PyRuntimeState (3.x; 2.7 uses the `interp_head` symbol instead) ---
    /// `_PyRuntimeState.interpreters.head`
    pub runtime_interpreters_head: Option<u64>,
    /// `_PyRuntimeState.gilstate.tstate_current` (3.8–3.11): the thread state holding the GIL.
    pub runtime_tstate_current: Option<u64>,
    /// `_PyRuntimeState.ceval.gil` (3.7–3.11): the GIL itself (a `_gil_runtime_state`), whose
    /// condition variable and mutex a thread waiting for it sleeps on (`gil_wait`). Each value
    /// is 16 below the `ceval.gil.locked` that the interpreter's own `PyEval_ThreadsInitialized`
    /// loads (objdump of pyenv's 3.7.16, 3.8.18, 3.9.18, 3.10.13, 3.11.7 and the provisioned
    /// 3.9 and 3.11; attach checks `locked` reads -1, 0 or 1 before using it).
    pub runtime_gil: Option<u64>,

    // --- PyInterpreterState ---
    /// `PyInterpreterState.next`
    pub interp_next: u64,
    /// `PyInterpreterState.tstate_head` (<= 3.10) / `.threads.head` (3.11+)
    pub interp_tstate_head: u64,
    /// `PyInterpreterState.modules` (<= 3.11) / `.imports.modules` (3.12+): `sys.modules`.
    pub interp_modules: u64,
    /// `PyInterpreterState.ceval.gil` (3.12+): pointer to the interpreter's `_gil_runtime_state`.
    pub interp_gil_ptr: Option<u64>,

    // --- struct _gil_runtime_state (3.12+, through interp_gil_ptr) ---
    /// `_gil_runtime_state.last_holder` (offset inside the GIL struct, not the interpreter)
    pub gil_last_holder: Option<u64>,
    /// `_gil_runtime_state.locked` (an int; offset inside the GIL struct)
    pub gil_locked: Option<u64>,

    // --- PyThreadState ---
    /// `PyThreadState.next`
    pub tstate_next: u64,
    /// `PyThreadState.interp`
    pub tstate_interp: u64,
    /// `PyThreadState.frame` (<= 3.10), `.cframe` (3.11, 3.12), `.current_frame` (3.13+)
    pub tstate_frame: u64,
    /// `PyThreadState.thread_id` (the `pthread_t`; a `long` in 2.7)
    pub tstate_thread_id: u64,
    /// `PyThreadState.native_thread_id` (3.11+)
    pub tstate_native_thread_id: Option<u64>,

    // --- _PyCFrame (3.11, 3.12) ---
    /// `_PyCFrame.current_frame`
    pub cframe_current_frame: Option<u64>,

    // --- PyFrameObject (<= 3.10) ---
    /// `PyFrameObject.f_back`
    pub frame_back: Option<u64>,
    /// `PyFrameObject.f_code`
    pub frame_code: Option<u64>,
    /// `PyFrameObject.f_lasti` (int)
    pub frame_lasti: Option<u64>,

    // --- _PyInterpreterFrame (3.11+) ---
    /// `_PyInterpreterFrame.f_code` (3.11, 3.12) / `.f_executable` (3.13+; a tagged
    /// `_PyStackRef` in 3.14+, mask with `executable_tag_mask`)
    pub iframe_code: Option<u64>,
    /// `_PyInterpreterFrame.previous`
    pub iframe_previous: Option<u64>,
    /// `_PyInterpreterFrame.prev_instr` (3.11, 3.12) / `.instr_ptr` (3.13+)
    pub iframe_instr: Option<u64>,
    /// `_PyInterpreterFrame.owner` (char)
    pub iframe_owner: Option<u64>,
    /// `_PyInterpreterFrame.is_entry` (3.11 only, bool)
    pub iframe_is_entry: Option<u64>,
    /// Value of `FRAME_OWNED_BY_CSTACK` (3.12–3.14): shim frames to skip. The value moves:
    /// 3 in 3.12 and 3.13, 4 in 3.14 (where 3 became `FRAME_OWNED_BY_INTERPRETER`), and the
    /// constant is gone in 3.15 (`None`). Profilers that hard-code 3 misread 3.14+.
    pub owner_cstack: Option<u8>,
    /// Value of `FRAME_OWNED_BY_INTERPRETER` (3.14+): interpreter-owned base frames to skip.
    pub owner_interpreter: Option<u8>,
    /// Low bits of `f_executable` that are tags, not address (3.14+ `_PyStackRef`: `Py_TAG_BITS`
    /// of the default GIL build, 3), else 0.
    pub executable_tag_mask: u64,

    // --- PyCodeObject ---
    /// `PyCodeObject.co_name`
    pub code_name: u64,
    /// `PyCodeObject.co_qualname` (3.11+)
    pub code_qualname: Option<u64>,
    /// `PyCodeObject.co_filename`
    pub code_filename: u64,
    /// `PyCodeObject.co_firstlineno` (int)
    pub code_firstlineno: u64,
    /// `PyCodeObject.co_lnotab` (<= 3.9) / `.co_linetable` (3.10+): a bytes object.
    pub code_linetable: u64,
    /// `offsetof(PyCodeObject, co_code_adaptive)` (3.11+): where the instructions start.
    pub code_code_adaptive: Option<u64>,

    // --- objects ---
    /// `PyObject.ob_type`
    pub object_type: u64,
    /// `PyTypeObject.tp_name` (char*)
    pub type_name: u64,
    /// `PyVarObject.ob_size` of a bytes object (`PyStringObject.ob_size` in 2.7)
    pub bytes_size: u64,
    /// `PyBytesObject.ob_sval` (3.x) / `PyStringObject.ob_sval` (2.7)
    pub bytes_data: u64,
    /// `PyASCIIObject.length` (3.x). The four unicode fields are 0 in the 2.7 row: 2.7 code
    /// names are byte strings (`StringModel::Bytes27`) and nothing reads them there.
    pub unicode_length: u64,
    /// `PyASCIIObject.state` (3.x): bit field with kind (bits 2..5), compact (bit 5), ascii
    /// (bit 6) in every supported 3.x default build (checked by tools/offsets/probe.c). The
    /// free-threaded build makes `interned` a whole byte, moving the others up by 6 bits.
    pub unicode_state: u64,
    /// `sizeof(PyASCIIObject)`: data of a compact ASCII string follows it.
    pub unicode_ascii_data: u64,
    /// `sizeof(PyCompactUnicodeObject)`: data of a compact non-ASCII string follows it.
    pub unicode_compact_data: u64,

    // --- modules, types, dicts and ints (src/python/objects.rs: thread names, locals) ---
    /// Where instance attributes live; see the enum.
    pub instance_dict: InstanceDictModel,
    /// `PyModuleObject.md_dict` (private to Objects/moduleobject.c before 3.11; always right
    /// after the object header).
    pub module_dict: u64,
    /// `PyTypeObject.tp_basicsize`
    pub type_basicsize: u64,
    /// `PyTypeObject.tp_flags` (unsigned long)
    pub type_flags: u64,
    /// `PyTypeObject.tp_dictoffset` (Py_ssize_t)
    pub type_dictoffset: u64,
    /// `PyHeapTypeObject.ht_cached_keys` (3.x): the keys shared by managed instance dicts.
    pub heaptype_cached_keys: Option<u64>,
    /// `-MANAGED_DICT_OFFSET` (3.11+): the managed dict (3.12: `PyDictOrValues`) pointer is
    /// this many bytes before the object (`_PyObject_ManagedDictPointer`).
    pub managed_dict_before: Option<u64>,
    /// 3.11 only: the values pointer is this many bytes before the object
    /// (`_PyObject_ValuesPointer`).
    pub managed_values_before: Option<u64>,
    /// `PyDictObject.ma_keys` (3.x)
    pub dict_keys: Option<u64>,
    /// `PyDictObject.ma_values` (3.x): split-table values, or null.
    pub dict_values: Option<u64>,
    /// `PyDictObject.ma_mask` (2.7): table size - 1.
    pub dict_mask: Option<u64>,
    /// `PyDictObject.ma_table` (2.7): the `PyDictEntry` array.
    pub dict_table: Option<u64>,
    /// `PyDictKeysObject.dk_size` (3.8–3.10, Py_ssize_t; Objects/dict-common.h)
    pub dict_keys_size: Option<u64>,
    /// `PyDictKeysObject.dk_log2_size` (3.11+, uint8_t)
    pub dict_keys_log2_size: Option<u64>,
    /// `PyDictKeysObject.dk_log2_index_bytes` (3.11+, uint8_t)
    pub dict_keys_log2_index_bytes: Option<u64>,
    /// `PyDictKeysObject.dk_kind` (3.11+, uint8_t): 0 general (`PyDictKeyEntry`), else
    /// unicode-only keys (`PyDictUnicodeEntry`).
    pub dict_keys_kind: Option<u64>,
    /// `PyDictKeysObject.dk_nentries` (3.x, Py_ssize_t)
    pub dict_keys_nentries: Option<u64>,
    /// `PyDictKeysObject.dk_indices` (3.x): the hash index; the entries follow it.
    pub dict_keys_indices: Option<u64>,
    /// `sizeof(PyDictKeyEntry)` (3.x) / `sizeof(PyDictEntry)` (2.7): (hash, key, value).
    pub dict_entry_size: u64,
    /// `PyDictKeyEntry.me_key` / `PyDictEntry.me_key`
    pub dict_entry_key: u64,
    /// `PyDictKeyEntry.me_value` / `PyDictEntry.me_value`
    pub dict_entry_value: u64,
    /// `sizeof(PyDictUnicodeEntry)` (3.11+): (key, value), key at 0, value at 8.
    pub dict_unicode_entry_size: Option<u64>,
    /// `PyDictValues.values` (3.11+); 0 in 3.8–3.10, where `ma_values` is a `PyObject **`.
    pub dict_values_values: Option<u64>,
    /// `PyDictValues.capacity` (3.13+, uint8_t)
    pub dict_values_capacity: Option<u64>,
    /// `PyDictValues.valid` (3.13+, uint8_t): 0 once a materialised dict owns the values.
    pub dict_values_valid: Option<u64>,
    /// `PyIntObject.ob_ival` (2.7, long)
    pub int_value: Option<u64>,
    /// `PyLongObject.ob_size` (<= 3.11): signed digit count.
    pub long_size: Option<u64>,
    /// `PyLongObject.long_value.lv_tag` (3.12+): digit count << 3 | sign (0 +, 1 zero, 2 -).
    pub long_tag: Option<u64>,
    /// `PyLongObject.ob_digit` (`.long_value.ob_digit` in 3.12+): 30-bit digits in uint32_t.
    pub long_digits: u64,

    // --- locals (src/python/locals.rs, `dump --locals`) ---
    /// `PyFrameObject.f_localsplus` (<= 3.10): locals, then cells, then free variables.
    pub frame_localsplus: Option<u64>,
    /// `_PyInterpreterFrame.localsplus` (3.11+; `_PyStackRef`s in 3.14+, masked with
    /// `executable_tag_mask`, whose null is the tag bit alone).
    pub iframe_localsplus: Option<u64>,
    /// `PyCodeObject.co_varnames` (<= 3.10): a tuple of `co_nlocals` names.
    pub code_varnames: Option<u64>,
    /// `PyCodeObject.co_cellvars` (<= 3.10): their slots follow the locals.
    pub code_cellvars: Option<u64>,
    /// `PyCodeObject.co_freevars` (<= 3.10): their slots follow the cells.
    pub code_freevars: Option<u64>,
    /// `PyCodeObject.co_localsplusnames` (3.11+): a tuple of every fast-local name.
    pub code_localsplusnames: Option<u64>,
    /// `PyCodeObject.co_localspluskinds` (3.11+): a bytes object, one `CO_FAST_*` kind per name.
    pub code_localspluskinds: Option<u64>,
    /// `PyVarObject.ob_size` of a tuple or list.
    pub var_size: u64,
    /// `PyTupleObject.ob_item` (3.14 added `ob_hash` before it).
    pub tuple_items: u64,
    /// `PyListObject.ob_item` (a `PyObject **`).
    pub list_items: u64,
    /// `PyDictObject.ma_used`
    pub dict_used: u64,
    /// `PySetObject.used`
    pub set_used: u64,
    /// `PyFloatObject.ob_fval` (double)
    pub float_value: u64,
    /// `PyCellObject.ob_ref`
    pub cell_ref: u64,
    /// `PyUnicodeObject.length` (2.7 `unicode`)
    pub unicode27_length: Option<u64>,
    /// `PyUnicodeObject.str` (2.7 `unicode`): pointer to `Py_UNICODE` units.
    pub unicode27_data: Option<u64>,
    /// `Py_UNICODE_SIZE` (2.7): 4 in the UCS-4 builds Linux distributions ship (2 in a
    /// `--enable-unicode=ucs2` build, which this row does not describe).
    pub unicode27_char_size: Option<u64>,
}

impl PyOffsets {
    /// Every numeric field by its Rust name (`None` where the version has no such field),
    /// in declaration order. The names are the ones tools/offsets/probe.c prints, so a row
    /// can be compared with the headers field by field; also handy for logging a row.
    pub fn fields(&self) -> Vec<(&'static str, Option<u64>)> {
        vec![
            ("runtime_interpreters_head", self.runtime_interpreters_head),
            ("runtime_tstate_current", self.runtime_tstate_current),
            ("runtime_gil", self.runtime_gil),
            ("interp_next", Some(self.interp_next)),
            ("interp_tstate_head", Some(self.interp_tstate_head)),
            ("interp_modules", Some(self.interp_modules)),
            ("interp_gil_ptr", self.interp_gil_ptr),
            ("gil_last_holder", self.gil_last_holder),
            ("gil_locked", self.gil_locked),
            ("tstate_next", Some(self.tstate_next)),
            ("tstate_interp", Some(self.tstate_interp)),
            ("tstate_frame", Some(self.tstate_frame)),
            ("tstate_thread_id", Some(self.tstate_thread_id)),
            ("tstate_native_thread_id", self.tstate_native_thread_id),
            ("cframe_current_frame", self.cframe_current_frame),
            ("frame_back", self.frame_back),
            ("frame_code", self.frame_code),
            ("frame_lasti", self.frame_lasti),
            ("iframe_code", self.iframe_code),
            ("iframe_previous", self.iframe_previous),
            ("iframe_instr", self.iframe_instr),
            ("iframe_owner", self.iframe_owner),
            ("iframe_is_entry", self.iframe_is_entry),
            ("owner_cstack", self.owner_cstack.map(u64::from)),
            ("owner_interpreter", self.owner_interpreter.map(u64::from)),
            ("executable_tag_mask", Some(self.executable_tag_mask)),
            ("code_name", Some(self.code_name)),
            ("code_qualname", self.code_qualname),
            ("code_filename", Some(self.code_filename)),
            ("code_firstlineno", Some(self.code_firstlineno)),
            ("code_linetable", Some(self.code_linetable)),
            ("code_code_adaptive", self.code_code_adaptive),
            ("object_type", Some(self.object_type)),
            ("type_name", Some(self.type_name)),
            ("bytes_size", Some(self.bytes_size)),
            ("bytes_data", Some(self.bytes_data)),
            ("unicode_length", Some(self.unicode_length)),
            ("unicode_state", Some(self.unicode_state)),
            ("unicode_ascii_data", Some(self.unicode_ascii_data)),
            ("unicode_compact_data", Some(self.unicode_compact_data)),
            ("module_dict", Some(self.module_dict)),
            ("type_basicsize", Some(self.type_basicsize)),
            ("type_flags", Some(self.type_flags)),
            ("type_dictoffset", Some(self.type_dictoffset)),
            ("heaptype_cached_keys", self.heaptype_cached_keys),
            ("managed_dict_before", self.managed_dict_before),
            ("managed_values_before", self.managed_values_before),
            ("dict_keys", self.dict_keys),
            ("dict_values", self.dict_values),
            ("dict_mask", self.dict_mask),
            ("dict_table", self.dict_table),
            ("dict_keys_size", self.dict_keys_size),
            ("dict_keys_log2_size", self.dict_keys_log2_size),
            (
                "dict_keys_log2_index_bytes",
                self.dict_keys_log2_index_bytes,
            ),
            ("dict_keys_kind", self.dict_keys_kind),
            ("dict_keys_nentries", self.dict_keys_nentries),
            ("dict_keys_indices", self.dict_keys_indices),
            ("dict_entry_size", Some(self.dict_entry_size)),
            ("dict_entry_key", Some(self.dict_entry_key)),
            ("dict_entry_value", Some(self.dict_entry_value)),
            ("dict_unicode_entry_size", self.dict_unicode_entry_size),
            ("dict_values_values", self.dict_values_values),
            ("dict_values_capacity", self.dict_values_capacity),
            ("dict_values_valid", self.dict_values_valid),
            ("int_value", self.int_value),
            ("long_size", self.long_size),
            ("long_tag", self.long_tag),
            ("long_digits", Some(self.long_digits)),
            ("frame_localsplus", self.frame_localsplus),
            ("iframe_localsplus", self.iframe_localsplus),
            ("code_varnames", self.code_varnames),
            ("code_cellvars", self.code_cellvars),
            ("code_freevars", self.code_freevars),
            ("code_localsplusnames", self.code_localsplusnames),
            ("code_localspluskinds", self.code_localspluskinds),
            ("var_size", Some(self.var_size)),
            ("tuple_items", Some(self.tuple_items)),
            ("list_items", Some(self.list_items)),
            ("dict_used", Some(self.dict_used)),
            ("set_used", Some(self.set_used)),
            ("float_value", Some(self.float_value)),
            ("cell_ref", Some(self.cell_ref)),
            ("unicode27_length", self.unicode27_length),
            ("unicode27_data", self.unicode27_data),
            ("unicode27_char_size", self.unicode27_char_size),
        ]
    }
}

/// The oldest and newest series with a row, for error messages.
pub const SUPPORTED_SERIES: &[(u8, u8)] = &[
    (2, 7),
    (3, 6),
    (3, 7),
    (3, 8),
    (3, 9),
    (3, 10),
    (3, 11),
    (3, 12),
    (3, 13),
    (3, 14),
    (3, 15),
];

/// The offsets row of a version, or `None` if that series is not supported.
///
/// Rows are for x86_64 Linux, default (GIL) builds; the patch level does not matter (CPython
/// keeps these layouts stable within a minor series). Rows marked "probe" were printed by
/// tools/offsets/probe.sh from the provisioned interpreter's own headers and are re-checked
/// by tests/offsets.rs on every run; the others (3.6, 3.7, 3.8, 3.10, 3.12) are not
/// provisioned: tests/offsets.rs checks them against the headers of pyenv's builds where
/// those are installed (`probe.sh --prefix`).
pub fn offsets_for(version: PyVersion) -> Option<PyOffsets> {
    match version.minor_series() {
        (2, 7) => Some(v2_7()),
        (3, 6) => Some(v3_6()),
        (3, 7) => Some(v3_7()),
        (3, 8) => Some(v3_8()),
        (3, 9) => Some(v3_9()),
        (3, 10) => Some(v3_10()),
        (3, 11) => Some(v3_11()),
        (3, 12) => Some(v3_12()),
        (3, 13) => Some(v3_13()),
        (3, 14) => Some(v3_14()),
        (3, 15) => Some(v3_15()),
        _ => None,
    }
}

/// How a suspended coroutine says what it awaits (3.14+, read by `python::asyncio`): the
/// values of `gi_frame_state` (`enum _framestate`, Include/internal/pycore_frame.h) and where
/// the awaited object sits on the coroutine frame's value stack. Only the versions whose
/// `_asyncio` module publishes `_Py_AsyncioModuleDebugOffsets` have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoroModel {
    /// `FRAME_SUSPENDED_YIELD_FROM` (and 3.15's `FRAME_SUSPENDED_YIELD_FROM_LOCKED`): the
    /// coroutine is suspended in an `await`.
    pub yield_from_states: &'static [i8],
    /// `FRAME_CLEARED`: the coroutine finished; its frame is gone.
    pub cleared_state: i8,
    /// The awaited object is `stackpointer[-awaited_slot]` of the coroutine's frame: 1 in
    /// 3.14, 2 in 3.15 (the slot each version's own `_remote_debugging` reads;
    /// tests/asyncio.rs checks both against live chains).
    pub awaited_slot: u64,
    /// `FRAME_OWNED_BY_GENERATOR`: a coroutine's frame is owned by its coroutine object.
    pub owner_generator: u8,
}

/// The coroutine model of a version (`None` before 3.14: no asyncio debug offsets).
pub fn coro_model_for(version: PyVersion) -> Option<CoroModel> {
    match version.minor_series() {
        // 3.14: FRAME_CREATED -3 .. FRAME_SUSPENDED_YIELD_FROM -1, FRAME_CLEARED 4.
        (3, 14) => Some(CoroModel {
            yield_from_states: &[-1],
            cleared_state: 4,
            awaited_slot: 1,
            owner_generator: 1,
        }),
        // 3.15: FRAME_CREATED 0, FRAME_SUSPENDED 1, FRAME_SUSPENDED_YIELD_FROM 2,
        // FRAME_SUSPENDED_YIELD_FROM_LOCKED 3, FRAME_EXECUTING 4, FRAME_CLEARED 5.
        (3, 15) => Some(CoroModel {
            yield_from_states: &[2, 3],
            cleared_state: 5,
            awaited_slot: 2,
            owner_generator: 1,
        }),
        _ => None,
    }
}

/// 2.7 — probe (2.7.18 headers). No `_PyRuntime`: the attach code starts from the
/// `interp_head` symbol. Names are `PyStringObject`s, so the unicode fields are unused (0).
/// `PyModuleObject` is private to Objects/moduleobject.c (`md_dict` 16, proven live by
/// tests/thread_names.rs); dicts are the open-addressing `ma_table` of (hash, key, value).
fn v2_7() -> PyOffsets {
    PyOffsets {
        series: (2, 7),
        frame_model: FrameModel::FrameObject,
        line_table: LineTable::Lnotab27,
        string_model: StringModel::Bytes27,
        runtime_interpreters_head: None,
        runtime_tstate_current: None,
        runtime_gil: None,
        interp_next: 0,
        interp_tstate_head: 8,
        interp_modules: 16,
        interp_gil_ptr: None,
        gil_last_holder: None,
        gil_locked: None,
        tstate_next: 0,
        tstate_interp: 8,
        tstate_frame: 16,
        tstate_thread_id: 144,
        tstate_native_thread_id: None,
        cframe_current_frame: None,
        frame_back: Some(24),
        frame_code: Some(32),
        frame_lasti: Some(120),
        iframe_code: None,
        iframe_previous: None,
        iframe_instr: None,
        iframe_owner: None,
        iframe_is_entry: None,
        owner_cstack: None,
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 88,
        code_qualname: None,
        code_filename: 80,
        code_firstlineno: 96,
        code_linetable: 104,
        code_code_adaptive: None,
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 36,
        unicode_length: 0,
        unicode_state: 0,
        unicode_ascii_data: 0,
        unicode_compact_data: 0,
        instance_dict: InstanceDictModel::DictOffset,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: None,
        managed_dict_before: None,
        managed_values_before: None,
        dict_keys: None,
        dict_values: None,
        dict_mask: Some(32),
        dict_table: Some(40),
        dict_keys_size: None,
        dict_keys_log2_size: None,
        dict_keys_log2_index_bytes: None,
        dict_keys_kind: None,
        dict_keys_nentries: None,
        dict_keys_indices: None,
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: None,
        dict_values_values: None,
        dict_values_capacity: None,
        dict_values_valid: None,
        int_value: Some(16),
        long_size: Some(16),
        long_tag: None,
        long_digits: 24,
        frame_localsplus: Some(376),
        iframe_localsplus: None,
        code_varnames: Some(56),
        code_cellvars: Some(72),
        code_freevars: Some(64),
        code_localsplusnames: None,
        code_localspluskinds: None,
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 24,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: Some(16),
        unicode27_data: Some(24),
        unicode27_char_size: Some(4),
    }
}

/// 3.6 — probe of pyenv's 3.6.15 headers (`probe.sh --prefix`). No `_PyRuntime` yet: as in
/// 2.7, the interpreter list starts at the static `interp_head` (in the symbol table, else
/// decoded from `PyInterpreterState_Head`) and the GIL holder is the exported
/// `_PyThreadState_Current`. The code object, type and dict layouts are 3.7's; what differs:
/// `PyFrameObject` still holds the exception triple `f_exc_type/value/traceback` (3.7 moved it
/// to the thread's `exc_state`), so f_lasti is 120 and f_localsplus 376; `PyThreadState` has
/// neither `exc_state` nor 3.7's context fields (thread_id 152); `PyInterpreterState.modules`
/// is its third field (16). Line numbers: `co_lnotab` with signed
/// line increments (new in 3.6), `f_lasti` in bytes (3.6's wordcode), as in 3.8.
/// Private layouts (`md_dict`, Objects/dict-common.h: dk_size 8, dk_nentries 32, dk_indices
/// 40, 24-byte entries) are 3.8's; tests/thread_names.rs proves them live.
fn v3_6() -> PyOffsets {
    PyOffsets {
        series: (3, 6),
        runtime_interpreters_head: None,
        runtime_tstate_current: None,
        runtime_gil: None,
        interp_modules: 16,
        tstate_thread_id: 152,
        frame_lasti: Some(120),
        frame_localsplus: Some(376),
        ..v3_7()
    }
}

/// 3.7 — probe of pyenv's 3.7.16 headers (`probe.sh --prefix`). `_PyRuntime` is new
/// (Include/internal/pystate.h): `interpreters.head` 24, `gilstate.tstate_current` 1480.
/// Differs from 3.8 in `PyInterpreterState.modules` (40), the code object (3.8 added
/// `co_posonlyargcount`, moving every pointer after the ints by 8) and `PyTypeObject`'s size
/// (3.8 alone has `tp_vectorcall` and a trailing `tp_print`: `ht_cached_keys` 856 here).
fn v3_7() -> PyOffsets {
    PyOffsets {
        series: (3, 7),
        runtime_interpreters_head: Some(24),
        runtime_tstate_current: Some(1480),
        runtime_gil: Some(1264),
        interp_modules: 40,
        code_name: 104,
        code_filename: 96,
        code_firstlineno: 36,
        code_linetable: 112,
        heaptype_cached_keys: Some(856),
        code_varnames: Some(64),
        code_cellvars: Some(80),
        code_freevars: Some(72),
        ..v3_8()
    }
}

/// 3.8 — by hand (not provisioned), from the 3.8 Include/internal/pycore_pystate.h,
/// Include/cpython/pystate.h, frameobject.h, code.h and unicodeobject.h:
/// - `_PyRuntimeState`: 4 ints (16) + `finalizing` pointer (8), then `interpreters`
///   { mutex 24, head 32 }. `gilstate` sits at 1360 (DWARF, cross-check below) and
///   `tstate_current` follows `int check_enabled` + padding: 1368.
/// - `_is`: next 0, tstate_head 8, id 16, id_refcount 24, requires_idref 32, id_mutex 40,
///   finalizing 48, modules 56.
/// - `_ts`: prev 0, next 8, interp 16, frame 24, ... thread_id 176.
/// - `_frame`: 24-byte var head, f_back 24, f_code 32, ..., f_gen 96, f_lasti 104, f_lineno 108.
/// - `PyCodeObject`: six ints from 16 (co_firstlineno 40), co_code 48 ... co_filename 104,
///   co_name 112, co_lnotab 120.
/// - `PyASCIIObject` still has `wstr`: 48 bytes; compact 72.
///
/// Cross-checks against tables generated from 3.8.0 debug info: pyroscope (gilstate 1360,
/// tstate frame 24, f_back 24, f_code 32, co_filename 104, co_name 112, ASCII 48, compact
/// 72), parca runtime-data (thread_id 176, tstate_head 8, f_lineno 108, co_firstlineno 40),
/// strobelight (TCurrentState 1368, thread 176).
///
/// Objects (thread names): `md_dict` 16, right after the header as in every version.
/// `PyTypeObject` has 3.9's field offsets (tp_basicsize 32, tp_flags 168, tp_dictoffset 288)
/// but is 416 bytes (3.8 alone keeps a deprecated `tp_print` after `tp_vectorcall`), so
/// `ht_cached_keys` = 416 + as_async 24 + as_number 288 + as_mapping 24 + as_sequence 80 +
/// as_buffer 16 + three names 24 = 872. `PyDictObject`: ma_used 16, ma_version_tag 24,
/// ma_keys 32, ma_values 40 (a `PyObject **`). Objects/dict-common.h: dk_refcnt 0, dk_size 8,
/// dk_lookup 16, dk_usable 24, dk_nentries 32, dk_indices 40; `PyDictKeyEntry` (hash, key,
/// value) 24 bytes. `PyLongObject`: ob_size 16, ob_digit 24.
///
/// Locals: `_frame` continues f_iblock 112, f_executing 116, `f_blockstack[20]` of 12-byte
/// `PyTryBlock`s at 120, so `f_localsplus` 360 (as probed for 3.9); `PyCodeObject`
/// co_varnames 72, co_freevars 80, co_cellvars 88 (3.9's, probed).
fn v3_8() -> PyOffsets {
    PyOffsets {
        series: (3, 8),
        frame_model: FrameModel::FrameObject,
        line_table: LineTable::Lnotab,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(32),
        runtime_tstate_current: Some(1368),
        runtime_gil: Some(1152),
        interp_next: 0,
        interp_tstate_head: 8,
        interp_modules: 56,
        interp_gil_ptr: None,
        gil_last_holder: None,
        gil_locked: None,
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 24,
        tstate_thread_id: 176,
        tstate_native_thread_id: None,
        cframe_current_frame: None,
        frame_back: Some(24),
        frame_code: Some(32),
        frame_lasti: Some(104),
        iframe_code: None,
        iframe_previous: None,
        iframe_instr: None,
        iframe_owner: None,
        iframe_is_entry: None,
        owner_cstack: None,
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 112,
        code_qualname: None,
        code_filename: 104,
        code_firstlineno: 40,
        code_linetable: 120,
        code_code_adaptive: None,
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        instance_dict: InstanceDictModel::DictOffset,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(872),
        managed_dict_before: None,
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: Some(8),
        dict_keys_log2_size: None,
        dict_keys_log2_index_bytes: None,
        dict_keys_kind: None,
        dict_keys_nentries: Some(32),
        dict_keys_indices: Some(40),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: None,
        dict_values_values: Some(0),
        dict_values_capacity: None,
        dict_values_valid: None,
        int_value: None,
        long_size: Some(16),
        long_tag: None,
        long_digits: 24,
        frame_localsplus: Some(360),
        iframe_localsplus: None,
        code_varnames: Some(72),
        code_cellvars: Some(88),
        code_freevars: Some(80),
        code_localsplusnames: None,
        code_localspluskinds: None,
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.9 — probe (3.9.2 headers). `md_dict` and the dict keys object (Objects/dict-common.h)
/// are in no header: the probe says "private" and tests/thread_names.rs proves them live.
fn v3_9() -> PyOffsets {
    PyOffsets {
        series: (3, 9),
        frame_model: FrameModel::FrameObject,
        line_table: LineTable::Lnotab,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(32),
        runtime_tstate_current: Some(568),
        runtime_gil: Some(352),
        interp_next: 0,
        interp_tstate_head: 8,
        interp_modules: 856,
        interp_gil_ptr: None,
        gil_last_holder: None,
        gil_locked: None,
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 24,
        tstate_thread_id: 176,
        tstate_native_thread_id: None,
        cframe_current_frame: None,
        frame_back: Some(24),
        frame_code: Some(32),
        frame_lasti: Some(104),
        iframe_code: None,
        iframe_previous: None,
        iframe_instr: None,
        iframe_owner: None,
        iframe_is_entry: None,
        owner_cstack: None,
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 112,
        code_qualname: None,
        code_filename: 104,
        code_firstlineno: 40,
        code_linetable: 120,
        code_code_adaptive: None,
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        instance_dict: InstanceDictModel::DictOffset,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(864),
        managed_dict_before: None,
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: Some(8),
        dict_keys_log2_size: None,
        dict_keys_log2_index_bytes: None,
        dict_keys_kind: None,
        dict_keys_nentries: Some(32),
        dict_keys_indices: Some(40),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: None,
        dict_values_values: Some(0),
        dict_values_capacity: None,
        dict_values_valid: None,
        int_value: None,
        long_size: Some(16),
        long_tag: None,
        long_digits: 24,
        frame_localsplus: Some(360),
        iframe_localsplus: None,
        code_varnames: Some(72),
        code_cellvars: Some(88),
        code_freevars: Some(80),
        code_localsplusnames: None,
        code_localspluskinds: None,
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.10 — by hand (not provisioned), from the 3.10 Include/internal/pycore_runtime.h,
/// pycore_interp.h, Include/cpython/pystate.h, frameobject.h and code.h:
/// - `_PyRuntimeState` has the 3.9 prefix (4 ints, `_finalizing`, `interpreters`):
///   head 32; `gilstate` at 560 as in 3.9, so `tstate_current` 568.
/// - `_is`: next 0, tstate_head 8, runtime 16, id 24, id_refcount 32, requires_idref 40,
///   id_mutex 48, finalizing 56, `ceval` 64 (4 ints + `_pending_calls` of 536 = 552),
///   `gc` 616 (240 bytes), modules 856.
/// - `_ts` unchanged from 3.9 for what we read: next 8, interp 16, frame 24, thread_id 176.
/// - `_frame` lost `f_stacktop` and gained `int f_stackdepth`: f_back 24, f_code 32,
///   f_gen 88, f_lasti 96 (counts code units now), f_lineno 100.
/// - `PyCodeObject`: co_lnotab became co_linetable at the same place, 120.
///
/// Cross-checks against tables generated from 3.10 debug info: pyroscope 3.10.0 (frame 24,
/// f_back 24, f_code 32, co_filename 104, co_name 112, gilstate 560, ASCII 48, compact 72),
/// parca runtime-data 3.10.0 (thread_id 176, tstate_head 8, f_lineno 100, co_firstlineno 40),
/// strobelight 3.10 (modules 856, f_lasti 96, co_linetable 120, TCurrentState 568).
///
/// Objects (thread names): as 3.9 (probed, and its private dict layout proven live), except
/// `PyAsyncMethods` gained `am_send`: `ht_cached_keys` = 408 + 32 + 288 + 24 + 80 + 16 + 24
/// = 872. The 3.10 Objects/dict-common.h still has `Py_ssize_t dk_size` and `dk_lookup`
/// (`DK_SIZE(dk)` is `dk->dk_size` in 3.10's dictobject.c; `dk_log2_size` and `dk_kind` came
/// with 3.11, when the struct moved to pycore_dict.h), so the keys layout is 3.9's.
///
/// Locals: after f_lineno 100, `int f_iblock` 104, `PyFrameState f_state` (a signed char)
/// 108, `f_blockstack[20]` (12-byte `PyTryBlock`s, int-aligned) 112, so `f_localsplus` 352;
/// co_varnames, co_freevars and co_cellvars are where 3.9 has them (72, 80, 88).
fn v3_10() -> PyOffsets {
    PyOffsets {
        series: (3, 10),
        frame_model: FrameModel::FrameObject,
        line_table: LineTable::Linetable310,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(32),
        runtime_tstate_current: Some(568),
        runtime_gil: Some(352),
        interp_next: 0,
        interp_tstate_head: 8,
        interp_modules: 856,
        interp_gil_ptr: None,
        gil_last_holder: None,
        gil_locked: None,
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 24,
        tstate_thread_id: 176,
        tstate_native_thread_id: None,
        cframe_current_frame: None,
        frame_back: Some(24),
        frame_code: Some(32),
        frame_lasti: Some(96),
        iframe_code: None,
        iframe_previous: None,
        iframe_instr: None,
        iframe_owner: None,
        iframe_is_entry: None,
        owner_cstack: None,
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 112,
        code_qualname: None,
        code_filename: 104,
        code_firstlineno: 40,
        code_linetable: 120,
        code_code_adaptive: None,
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        instance_dict: InstanceDictModel::DictOffset,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(872),
        managed_dict_before: None,
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: Some(8),
        dict_keys_log2_size: None,
        dict_keys_log2_index_bytes: None,
        dict_keys_kind: None,
        dict_keys_nentries: Some(32),
        dict_keys_indices: Some(40),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: None,
        dict_values_values: Some(0),
        dict_values_capacity: None,
        dict_values_valid: None,
        int_value: None,
        long_size: Some(16),
        long_tag: None,
        long_digits: 24,
        frame_localsplus: Some(352),
        iframe_localsplus: None,
        code_varnames: Some(72),
        code_cellvars: Some(88),
        code_freevars: Some(80),
        code_localsplusnames: None,
        code_localspluskinds: None,
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.11 — probe (3.11.2 headers). `threads.head` replaces `tstate_head`; the GIL is still
/// global (`gilstate.tstate_current`).
fn v3_11() -> PyOffsets {
    PyOffsets {
        series: (3, 11),
        frame_model: FrameModel::CFrame,
        line_table: LineTable::Locations,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(40),
        runtime_tstate_current: Some(576),
        runtime_gil: Some(360),
        interp_next: 0,
        interp_tstate_head: 16,
        interp_modules: 888,
        interp_gil_ptr: None,
        gil_last_holder: None,
        gil_locked: None,
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 56,
        tstate_thread_id: 152,
        tstate_native_thread_id: Some(160),
        cframe_current_frame: Some(8),
        frame_back: None,
        frame_code: None,
        frame_lasti: None,
        iframe_code: Some(32),
        iframe_previous: Some(48),
        iframe_instr: Some(56),
        iframe_owner: Some(69),
        iframe_is_entry: Some(68),
        owner_cstack: None,
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 120,
        code_qualname: Some(128),
        code_filename: 112,
        code_firstlineno: 72,
        code_linetable: 136,
        code_code_adaptive: Some(184),
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 48,
        unicode_compact_data: 72,
        instance_dict: InstanceDictModel::PreHeader,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(872),
        managed_dict_before: Some(24),
        managed_values_before: Some(32),
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: None,
        dict_keys_log2_size: Some(8),
        dict_keys_log2_index_bytes: Some(9),
        dict_keys_kind: Some(10),
        dict_keys_nentries: Some(24),
        dict_keys_indices: Some(32),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: Some(16),
        dict_values_values: Some(0),
        dict_values_capacity: None,
        dict_values_valid: None,
        int_value: None,
        long_size: Some(16),
        long_tag: None,
        long_digits: 24,
        frame_localsplus: None,
        iframe_localsplus: Some(72),
        code_varnames: None,
        code_cellvars: None,
        code_freevars: None,
        code_localsplusnames: Some(96),
        code_localspluskinds: Some(104),
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.12 — by hand (not provisioned), from the 3.12 Include/internal/pycore_runtime.h,
/// pycore_interp.h, pycore_ceval_state.h, pycore_gc.h, pycore_import.h, pycore_gil.h,
/// pycore_frame.h, Include/cpython/pystate.h, code.h and unicodeobject.h:
/// - `_PyRuntimeState`: 5 ints (`_initialized` is new) + `_finalizing` at 24, then
///   `interpreters` { mutex 32, head 40 }. No `gilstate.tstate_current` any more: the
///   current thread state is a thread-local, and each interpreter points at its GIL.
/// - `_is`: next 0, id 8, id_refcount 16, requires_idref 24, id_mutex 32, _initialized 40,
///   finalizing 44, monitoring_version 48, last_restart_version 56, `threads` 64
///   { next_unique_id 64, head 72 }, runtime 96, _finalizing 104, `gc` 112 (240 bytes),
///   sysdict 352, builtins 360, `ceval` 368 { eval_breaker, gil_drop_request,
///   recursion_limit, gil 384, own_gil, gc_scheduled, `_pending_calls` 544 bytes; 576 in
///   all }, `imports` 944 { modules 944 }.
/// - `_gil_runtime_state`: interval 0, last_holder 8, locked 16 (unchanged since 3.8).
/// - `_ts`: prev 0, next 8, interp 16, 4-byte `_status` bit field, six ints, cframe 56, ...,
///   thread_id 136, native_thread_id 144. `_PyCFrame` lost `use_tracing`: current_frame 0.
/// - `_PyInterpreterFrame`: f_code 0, previous 8, f_funcobj 16, f_globals 24, f_builtins 32,
///   f_locals 40, frame_obj 48, prev_instr 56, stacktop 64, return_offset 68, owner 70; no
///   `is_entry` (entry frames are `FRAME_OWNED_BY_CSTACK` = 3 shims instead).
/// - `PyCodeObject`: co_firstlineno 68, co_filename 112, co_name 120, co_qualname 128,
///   co_linetable 136, co_code_adaptive 192.
/// - `PyASCIIObject` lost `wstr`: 40 bytes; compact 56.
///
/// Cross-checks: pyroscope 3.12.0 from debug info (cframe 56, current_frame 0, f_code 0,
/// previous 8, owner 70, co_filename 112, co_name 120, ASCII 40, compact 56); strobelight
/// 3.12 from a live process (thread_id 136, prev_instr 56, co_firstlineno 68, co_qualname
/// 128, co_linetable 136, co_code_adaptive 192, owner 70). The interpreter-state offsets
/// (72, 944, 384) have no published cross-check; the arithmetic was re-done by a C compiler.
///
/// Objects (thread names): `PyTypeObject` is 3.11's plus `unsigned char tp_watched`, 416
/// bytes, so `ht_cached_keys` is 3.11's 872 + 8 = 880. pycore_dict.h keeps 3.11's keys object
/// (dk_log2_size 8, dk_log2_index_bytes 9, dk_kind 10, dk_nentries 24, dk_indices 32) and
/// `struct _dictvalues { PyObject *values[1]; }`. pycore_object.h: `_PyObject_DictOrValuesPointer`
/// is `((PyDictOrValues *)obj)-3` (24 bytes before), tagged: `_PyDictOrValues_IsValues` tests
/// bit 0 and `_PyDictOrValues_GetValues` adds 1. cpython/longintrepr.h: `_PyLongValue`
/// { lv_tag, ob_digit } after the 16-byte header: lv_tag 16, ob_digit 24.
///
/// Locals: `_PyInterpreterFrame.localsplus` follows `owner` (70) at 72; `PyCodeObject` has
/// co_nlocalsplus 72 ... co_version 92, then co_localsplusnames 96, co_localspluskinds 104
/// (as 3.11 and 3.13 probe); `PyTupleObject.ob_item` is 24 until 3.14 adds `ob_hash`.
fn v3_12() -> PyOffsets {
    PyOffsets {
        series: (3, 12),
        frame_model: FrameModel::CFrame,
        line_table: LineTable::Locations,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(40),
        runtime_tstate_current: None,
        runtime_gil: None,
        interp_next: 0,
        interp_tstate_head: 72,
        interp_modules: 944,
        interp_gil_ptr: Some(384),
        gil_last_holder: Some(8),
        gil_locked: Some(16),
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 56,
        tstate_thread_id: 136,
        tstate_native_thread_id: Some(144),
        cframe_current_frame: Some(0),
        frame_back: None,
        frame_code: None,
        frame_lasti: None,
        iframe_code: Some(0),
        iframe_previous: Some(8),
        iframe_instr: Some(56),
        iframe_owner: Some(70),
        iframe_is_entry: None,
        owner_cstack: Some(3),
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 120,
        code_qualname: Some(128),
        code_filename: 112,
        code_firstlineno: 68,
        code_linetable: 136,
        code_code_adaptive: Some(192),
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        instance_dict: InstanceDictModel::TaggedPreHeader,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(880),
        managed_dict_before: Some(24),
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: None,
        dict_keys_log2_size: Some(8),
        dict_keys_log2_index_bytes: Some(9),
        dict_keys_kind: Some(10),
        dict_keys_nentries: Some(24),
        dict_keys_indices: Some(32),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: Some(16),
        dict_values_values: Some(0),
        dict_values_capacity: None,
        dict_values_valid: None,
        int_value: None,
        long_size: None,
        long_tag: Some(16),
        long_digits: 24,
        frame_localsplus: None,
        iframe_localsplus: Some(72),
        code_varnames: None,
        code_cellvars: None,
        code_freevars: None,
        code_localsplusnames: Some(96),
        code_localspluskinds: Some(104),
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.13 — probe (3.13.5 headers). `_PyRuntime` now starts with `_Py_DebugOffsets` (584
/// bytes), and `PyInterpreterState` starts with `ceval` (its 300-entry pending-call array
/// pushes `next` to 7264), so most runtime/interpreter offsets jumped.
fn v3_13() -> PyOffsets {
    PyOffsets {
        series: (3, 13),
        frame_model: FrameModel::CurrentFrame,
        line_table: LineTable::Locations,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(632),
        runtime_tstate_current: None,
        runtime_gil: None,
        interp_next: 7264,
        interp_tstate_head: 7344,
        interp_modules: 7656,
        interp_gil_ptr: Some(16),
        gil_last_holder: Some(8),
        gil_locked: Some(16),
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 72,
        tstate_thread_id: 152,
        tstate_native_thread_id: Some(160),
        cframe_current_frame: None,
        frame_back: None,
        frame_code: None,
        frame_lasti: None,
        iframe_code: Some(0),
        iframe_previous: Some(8),
        iframe_instr: Some(56),
        iframe_owner: Some(70),
        iframe_is_entry: None,
        owner_cstack: Some(3),
        owner_interpreter: None,
        executable_tag_mask: 0,
        code_name: 120,
        code_qualname: Some(128),
        code_filename: 112,
        code_firstlineno: 68,
        code_linetable: 136,
        code_code_adaptive: Some(200),
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        instance_dict: InstanceDictModel::InlineValues,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(880),
        managed_dict_before: Some(24),
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: None,
        dict_keys_log2_size: Some(8),
        dict_keys_log2_index_bytes: Some(9),
        dict_keys_kind: Some(10),
        dict_keys_nentries: Some(24),
        dict_keys_indices: Some(32),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: Some(16),
        dict_values_values: Some(8),
        dict_values_capacity: Some(0),
        dict_values_valid: Some(3),
        int_value: None,
        long_size: None,
        long_tag: Some(16),
        long_digits: 24,
        frame_localsplus: None,
        iframe_localsplus: Some(72),
        code_varnames: None,
        code_cellvars: None,
        code_freevars: None,
        code_localsplusnames: Some(96),
        code_localspluskinds: Some(104),
        var_size: 16,
        tuple_items: 24,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.14 — probe (3.14.10 headers, with the build's `-D_Py_TIER2=3 -D_Py_JIT`, which do not
/// move any field read here). `f_executable` is a `_PyStackRef` (tag bits 3); the frame
/// owner enum gained `FRAME_OWNED_BY_INTERPRETER` = 3, pushing `FRAME_OWNED_BY_CSTACK` to 4.
fn v3_14() -> PyOffsets {
    PyOffsets {
        series: (3, 14),
        frame_model: FrameModel::CurrentFrame,
        line_table: LineTable::Locations,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(808),
        runtime_tstate_current: None,
        runtime_gil: None,
        interp_next: 7272,
        interp_tstate_head: 7344,
        interp_modules: 7688,
        interp_gil_ptr: Some(16),
        gil_last_holder: Some(8),
        gil_locked: Some(16),
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 72,
        tstate_thread_id: 152,
        tstate_native_thread_id: Some(160),
        cframe_current_frame: None,
        frame_back: None,
        frame_code: None,
        frame_lasti: None,
        iframe_code: Some(0),
        iframe_previous: Some(8),
        iframe_instr: Some(56),
        iframe_owner: Some(74),
        iframe_is_entry: None,
        owner_cstack: Some(4),
        owner_interpreter: Some(3),
        executable_tag_mask: 3,
        code_name: 120,
        code_qualname: Some(128),
        code_filename: 112,
        code_firstlineno: 68,
        code_linetable: 136,
        code_code_adaptive: Some(208),
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        instance_dict: InstanceDictModel::InlineValues,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(880),
        managed_dict_before: Some(24),
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: None,
        dict_keys_log2_size: Some(8),
        dict_keys_log2_index_bytes: Some(9),
        dict_keys_kind: Some(10),
        dict_keys_nentries: Some(24),
        dict_keys_indices: Some(32),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: Some(16),
        dict_values_values: Some(8),
        dict_values_capacity: Some(0),
        dict_values_valid: Some(3),
        int_value: None,
        long_size: None,
        long_tag: Some(16),
        long_digits: 24,
        frame_localsplus: None,
        iframe_localsplus: Some(80),
        code_varnames: None,
        code_cellvars: None,
        code_freevars: None,
        code_localsplusnames: Some(96),
        code_localspluskinds: Some(104),
        var_size: 16,
        tuple_items: 32,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

/// 3.15 — probe (3.15.2 headers, same build defines as 3.14). `FRAME_OWNED_BY_CSTACK` no
/// longer exists; `FRAME_OWNED_BY_INTERPRETER` is still 3.
fn v3_15() -> PyOffsets {
    PyOffsets {
        series: (3, 15),
        frame_model: FrameModel::CurrentFrame,
        line_table: LineTable::Locations,
        string_model: StringModel::Unicode,
        runtime_interpreters_head: Some(936),
        runtime_tstate_current: None,
        runtime_gil: None,
        interp_next: 7264,
        interp_tstate_head: 7336,
        interp_modules: 7592,
        interp_gil_ptr: Some(16),
        gil_last_holder: Some(8),
        gil_locked: Some(16),
        tstate_next: 8,
        tstate_interp: 16,
        tstate_frame: 72,
        tstate_thread_id: 176,
        tstate_native_thread_id: Some(184),
        cframe_current_frame: None,
        frame_back: None,
        frame_code: None,
        frame_lasti: None,
        iframe_code: Some(0),
        iframe_previous: Some(8),
        iframe_instr: Some(56),
        iframe_owner: Some(74),
        iframe_is_entry: None,
        owner_cstack: None,
        owner_interpreter: Some(3),
        executable_tag_mask: 3,
        code_name: 120,
        code_qualname: Some(128),
        code_filename: 112,
        code_firstlineno: 68,
        code_linetable: 136,
        code_code_adaptive: Some(208),
        object_type: 8,
        type_name: 24,
        bytes_size: 16,
        bytes_data: 32,
        unicode_length: 16,
        unicode_state: 32,
        unicode_ascii_data: 40,
        unicode_compact_data: 56,
        instance_dict: InstanceDictModel::InlineValues,
        module_dict: 16,
        type_basicsize: 32,
        type_flags: 168,
        type_dictoffset: 288,
        heaptype_cached_keys: Some(888),
        managed_dict_before: Some(24),
        managed_values_before: None,
        dict_keys: Some(32),
        dict_values: Some(40),
        dict_mask: None,
        dict_table: None,
        dict_keys_size: None,
        dict_keys_log2_size: Some(8),
        dict_keys_log2_index_bytes: Some(9),
        dict_keys_kind: Some(10),
        dict_keys_nentries: Some(24),
        dict_keys_indices: Some(32),
        dict_entry_size: 24,
        dict_entry_key: 8,
        dict_entry_value: 16,
        dict_unicode_entry_size: Some(16),
        dict_values_values: Some(8),
        dict_values_capacity: Some(0),
        dict_values_valid: Some(3),
        int_value: None,
        long_size: None,
        long_tag: Some(16),
        long_digits: 24,
        frame_localsplus: None,
        iframe_localsplus: Some(80),
        code_varnames: None,
        code_cellvars: None,
        code_freevars: None,
        code_localsplusnames: Some(96),
        code_localspluskinds: Some(104),
        var_size: 16,
        tuple_items: 32,
        list_items: 24,
        dict_used: 16,
        set_used: 24,
        float_value: 16,
        cell_ref: 16,
        unicode27_length: None,
        unicode27_data: None,
        unicode27_char_size: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_series_has_a_row_and_nothing_else_does() {
        for &(major, minor) in SUPPORTED_SERIES {
            let row = offsets_for(PyVersion::new(major, minor, 0)).expect("row");
            assert_eq!(row.series, (major, minor));
        }
        assert!(offsets_for(PyVersion::new(3, 5, 0)).is_none());
        assert!(offsets_for(PyVersion::new(3, 16, 0)).is_none());
        assert!(offsets_for(PyVersion::new(2, 6, 0)).is_none());
    }

    #[test]
    fn rows_are_consistent_with_their_frame_model() {
        for &(major, minor) in SUPPORTED_SERIES {
            let o = offsets_for(PyVersion::new(major, minor, 0)).unwrap();
            match o.frame_model {
                FrameModel::FrameObject => {
                    assert!(
                        o.frame_back.is_some() && o.frame_code.is_some() && o.frame_lasti.is_some()
                    );
                    assert!(o.iframe_code.is_none() && o.cframe_current_frame.is_none());
                }
                FrameModel::CFrame => {
                    assert!(o.cframe_current_frame.is_some() && o.iframe_code.is_some());
                    assert!(o.frame_back.is_none());
                }
                FrameModel::CurrentFrame => {
                    assert!(o.cframe_current_frame.is_none() && o.iframe_code.is_some());
                }
            }
            // 3.7+ has a runtime; the GIL is found either globally (<= 3.11) or per
            // interpreter. 2.7 and 3.6 start from `interp_head` and `_PyThreadState_Current`.
            if (major, minor) <= (3, 6) {
                assert!(
                    o.runtime_interpreters_head.is_none() && o.runtime_tstate_current.is_none()
                );
                assert!(o.interp_gil_ptr.is_none());
            } else {
                assert!(o.runtime_interpreters_head.is_some());
                assert!(
                    o.runtime_tstate_current.is_some() != o.interp_gil_ptr.is_some(),
                    "{major}.{minor}"
                );
            }
            assert_eq!(
                o.code_code_adaptive.is_some(),
                o.line_table == LineTable::Locations
            );
            assert_eq!(o.executable_tag_mask != 0, o.owner_interpreter.is_some());
        }
    }

    #[test]
    fn object_rows_pick_exactly_one_layout_of_each_kind() {
        for &(major, minor) in SUPPORTED_SERIES {
            let o = offsets_for(PyVersion::new(major, minor, 0)).unwrap();
            let v = (major, minor);
            // dicts: 2.7's table, or a keys object with either dk_size or the log2 sizes.
            assert_eq!(o.dict_table.is_some(), o.dict_mask.is_some(), "{v:?}");
            assert_eq!(o.dict_table.is_some(), o.dict_keys.is_none(), "{v:?}");
            assert_eq!(
                o.dict_keys.is_some(),
                o.dict_keys_nentries.is_some(),
                "{v:?}"
            );
            if o.dict_keys.is_some() {
                let log2 = o.dict_keys_log2_size.is_some();
                assert!(log2 != o.dict_keys_size.is_some(), "{v:?}");
                assert_eq!(log2, o.dict_keys_kind.is_some(), "{v:?}");
                assert_eq!(log2, o.dict_unicode_entry_size.is_some(), "{v:?}");
                assert!(o.dict_values_values.is_some(), "{v:?}");
            }
            // ints: 2.7 has both int and long; long is ob_size or lv_tag, never both.
            assert_eq!(o.int_value.is_some(), major == 2, "{v:?}");
            assert!(o.long_size.is_some() != o.long_tag.is_some(), "{v:?}");
            // instances: the model says which pre-header fields exist.
            let (dict_before, values_before, capacity) = match o.instance_dict {
                InstanceDictModel::DictOffset => (false, false, false),
                InstanceDictModel::PreHeader => (true, true, false),
                InstanceDictModel::TaggedPreHeader => (true, false, false),
                InstanceDictModel::InlineValues => (true, false, true),
            };
            assert_eq!(o.managed_dict_before.is_some(), dict_before, "{v:?}");
            assert_eq!(o.managed_values_before.is_some(), values_before, "{v:?}");
            assert_eq!(o.dict_values_capacity.is_some(), capacity, "{v:?}");
            assert_eq!(o.dict_values_valid.is_some(), capacity, "{v:?}");
            if dict_before {
                assert!(o.heaptype_cached_keys.is_some(), "{v:?}");
            }
        }
    }

    #[test]
    fn rows_have_one_source_of_locals() {
        for &(major, minor) in SUPPORTED_SERIES {
            let o = offsets_for(PyVersion::new(major, minor, 0)).unwrap();
            let v = (major, minor);
            let frame_objects = o.frame_model == FrameModel::FrameObject;
            assert_eq!(o.frame_localsplus.is_some(), frame_objects, "{v:?}");
            assert_eq!(o.code_varnames.is_some(), frame_objects, "{v:?}");
            assert_eq!(o.code_cellvars.is_some(), frame_objects, "{v:?}");
            assert_eq!(o.code_freevars.is_some(), frame_objects, "{v:?}");
            assert_eq!(o.iframe_localsplus.is_some(), !frame_objects, "{v:?}");
            assert_eq!(o.code_localsplusnames.is_some(), !frame_objects, "{v:?}");
            assert_eq!(o.code_localspluskinds.is_some(), !frame_objects, "{v:?}");
            let py2 = o.string_model == StringModel::Bytes27;
            assert_eq!(o.unicode27_length.is_some(), py2, "{v:?}");
            assert_eq!(o.unicode27_data.is_some(), py2, "{v:?}");
            assert_eq!(o.unicode27_char_size.is_some(), py2, "{v:?}");
        }
    }

    #[test]
    fn fields_lists_every_offset_once() {
        let row = offsets_for(PyVersion::new(3, 14, 0)).unwrap();
        let names: Vec<_> = row.fields().into_iter().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
        assert_eq!(names.len(), 85);
    }
}
