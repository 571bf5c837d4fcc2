/*
 * Prints the CPython struct offsets that src/python/offsets.rs needs, computed by the C
 * compiler from the real headers of one CPython version. Build it with probe.sh, which passes
 * the include directories and the defines the interpreter itself was built with.
 *
 * Output: one `name value` line per field of `PyOffsets` (value "none" where the version has
 * no such field, "private" where it has one but no header declares the struct, so the value
 * is proven against live interpreters instead), and `check_*` lines (facts the readers rely
 * on that are not offsets).
 * Names match the Rust field names exactly; tests/offsets.rs compares them with the table.
 *
 * Only offsetof/sizeof and constants from the headers: no structs are copied here.
 */
#include <Python.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#if PY_MAJOR_VERSION == 2
#  include "code.h"
#  include "frameobject.h"
#  include "longintrepr.h"
#elif PY_VERSION_HEX < 0x03070000
#  include "frameobject.h"
#  include "longintrepr.h"
#elif PY_VERSION_HEX < 0x03080000
#  include "frameobject.h"
#  include "longintrepr.h"
#  include "internal/pystate.h"
#elif PY_VERSION_HEX < 0x03090000
#  include "frameobject.h"
#  include "longintrepr.h"
#  include "internal/pycore_pystate.h"
#elif PY_VERSION_HEX < 0x030B0000
#  include "frameobject.h"
#  include "longintrepr.h"
#  include "internal/pycore_interp.h"
#  include "internal/pycore_runtime.h"
#  include "internal/pycore_gil.h"
#elif PY_VERSION_HEX < 0x030E0000
#  include "internal/pycore_code.h"
#  include "internal/pycore_dict.h"
#  include "internal/pycore_moduleobject.h"
#  include "internal/pycore_object.h"
#  include "internal/pycore_frame.h"
#  include "internal/pycore_interp.h"
#  include "internal/pycore_runtime.h"
#  include "internal/pycore_gil.h"
#else
#  include "internal/pycore_code.h"
#  include "internal/pycore_interpframe_structs.h"
#  include "internal/pycore_dict.h"
#  include "internal/pycore_moduleobject.h"
#  include "internal/pycore_object.h"
#  include "internal/pycore_interp_structs.h"
#  include "internal/pycore_runtime_structs.h"
#  include "internal/pycore_stackref.h"
#  include "internal/pycore_gil.h"
#  include "internal/pycore_debug_offsets.h"
#endif

#define V(name, value) printf("%s %lu\n", name, (unsigned long)(value))
#define NONE(name) printf("%s none\n", name)
#define OFF(name, type, field) V(name, offsetof(type, field))

/* Position of the lowest set bit of the 32-bit word at `p` (the unicode `state` field). */
static int lowest_bit(const unsigned char *p)
{
    unsigned int word;
    memcpy(&word, p, sizeof word);
    for (int i = 0; i < 32; i++) {
        if (word & (1u << i)) {
            return i;
        }
    }
    return -1;
}

int main(void)
{
    printf("version_hex %#lx\n", (unsigned long)PY_VERSION_HEX);

    /* --- _PyRuntimeState (3.7+; 2.7 and 3.6 start from the static `interp_head`) --- */
#if PY_VERSION_HEX < 0x03070000
    NONE("runtime_interpreters_head");
    NONE("runtime_tstate_current");
    NONE("runtime_gil");
#else
    OFF("runtime_interpreters_head", _PyRuntimeState, interpreters.head);
#  if PY_VERSION_HEX < 0x030C0000
    OFF("runtime_tstate_current", _PyRuntimeState, gilstate.tstate_current);
    OFF("runtime_gil", _PyRuntimeState, ceval.gil);
#  else
    NONE("runtime_tstate_current");
    NONE("runtime_gil");
#  endif
#endif

    /* --- PyInterpreterState --- */
    OFF("interp_next", PyInterpreterState, next);
#if PY_VERSION_HEX < 0x030B0000
    OFF("interp_tstate_head", PyInterpreterState, tstate_head);
#else
    OFF("interp_tstate_head", PyInterpreterState, threads.head);
#endif
#if PY_VERSION_HEX < 0x030C0000
    OFF("interp_modules", PyInterpreterState, modules);
    NONE("interp_gil_ptr");
    NONE("gil_last_holder");
    NONE("gil_locked");
#else
    OFF("interp_tstate_head", PyInterpreterState, threads.head);
    OFF("interp_modules", PyInterpreterState, imports.modules);
    OFF("interp_gil_ptr", PyInterpreterState, ceval.gil);
    OFF("gil_last_holder", struct _gil_runtime_state, last_holder);
    OFF("gil_locked", struct _gil_runtime_state, locked);
#endif

    /* --- PyThreadState --- */
    OFF("tstate_next", PyThreadState, next);
    OFF("tstate_interp", PyThreadState, interp);
#if PY_VERSION_HEX < 0x030B0000
    OFF("tstate_frame", PyThreadState, frame);
#elif PY_VERSION_HEX < 0x030D0000
    OFF("tstate_frame", PyThreadState, cframe);
#else
    OFF("tstate_frame", PyThreadState, current_frame);
#endif
    OFF("tstate_thread_id", PyThreadState, thread_id);
#if PY_VERSION_HEX < 0x030B0000
    NONE("tstate_native_thread_id");
#else
    OFF("tstate_native_thread_id", PyThreadState, native_thread_id);
#endif

    /* --- _PyCFrame (3.11, 3.12) --- */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
    OFF("cframe_current_frame", _PyCFrame, current_frame);
#else
    NONE("cframe_current_frame");
#endif

    /* --- PyFrameObject (<= 3.10) --- */
#if PY_VERSION_HEX < 0x030B0000
    OFF("frame_back", PyFrameObject, f_back);
    OFF("frame_code", PyFrameObject, f_code);
    OFF("frame_lasti", PyFrameObject, f_lasti);
#else
    NONE("frame_back");
    NONE("frame_code");
    NONE("frame_lasti");
#endif

    /* --- _PyInterpreterFrame (3.11+) --- */
#if PY_VERSION_HEX < 0x030B0000
    NONE("iframe_code");
    NONE("iframe_previous");
    NONE("iframe_instr");
    NONE("iframe_owner");
    NONE("iframe_is_entry");
#else
#  if PY_VERSION_HEX < 0x030D0000
    OFF("iframe_code", _PyInterpreterFrame, f_code);
    OFF("iframe_instr", _PyInterpreterFrame, prev_instr);
#  else
    OFF("iframe_code", _PyInterpreterFrame, f_executable);
    OFF("iframe_instr", _PyInterpreterFrame, instr_ptr);
#  endif
    OFF("iframe_previous", _PyInterpreterFrame, previous);
    OFF("iframe_owner", _PyInterpreterFrame, owner);
#  if PY_VERSION_HEX < 0x030C0000
    OFF("iframe_is_entry", _PyInterpreterFrame, is_entry);
#  else
    NONE("iframe_is_entry");
#  endif
#endif

    /* Frame owner constants: enum values, so they are tested by version, not #ifdef. */
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030F0000
    V("owner_cstack", FRAME_OWNED_BY_CSTACK);
#else
    NONE("owner_cstack"); /* 3.15 removed FRAME_OWNED_BY_CSTACK */
#endif
#if PY_VERSION_HEX >= 0x030E0000
    V("owner_interpreter", FRAME_OWNED_BY_INTERPRETER);
#else
    NONE("owner_interpreter");
#endif
#if PY_VERSION_HEX >= 0x030E0000
    V("executable_tag_mask", Py_TAG_BITS);
#else
    V("executable_tag_mask", 0);
#endif

    /* --- PyCodeObject --- */
    OFF("code_name", PyCodeObject, co_name);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("code_qualname", PyCodeObject, co_qualname);
#else
    NONE("code_qualname");
#endif
    OFF("code_filename", PyCodeObject, co_filename);
    OFF("code_firstlineno", PyCodeObject, co_firstlineno);
#if PY_VERSION_HEX < 0x030A0000
    OFF("code_linetable", PyCodeObject, co_lnotab);
#else
    OFF("code_linetable", PyCodeObject, co_linetable);
#endif
#if PY_VERSION_HEX >= 0x030B0000
    OFF("code_code_adaptive", PyCodeObject, co_code_adaptive);
#else
    NONE("code_code_adaptive");
#endif

    /* --- objects --- */
    OFF("object_type", PyObject, ob_type);
    OFF("type_name", PyTypeObject, tp_name);
#if PY_MAJOR_VERSION == 2
    OFF("bytes_size", PyStringObject, ob_size);
    OFF("bytes_data", PyStringObject, ob_sval);
    /* 2.7 code names are byte strings; the unicode fields are unused there. */
    V("unicode_length", 0);
    V("unicode_state", 0);
    V("unicode_ascii_data", 0);
    V("unicode_compact_data", 0);
#else
    OFF("bytes_size", PyVarObject, ob_size);
    OFF("bytes_data", PyBytesObject, ob_sval);
    OFF("unicode_length", PyASCIIObject, length);
    OFF("unicode_state", PyASCIIObject, state);
    V("unicode_ascii_data", sizeof(PyASCIIObject));
    V("unicode_compact_data", sizeof(PyCompactUnicodeObject));

    /* The walker decodes `state` with fixed bit positions: prove them for this version. */
    {
        PyASCIIObject probe;
        unsigned char *state = (unsigned char *)&probe + offsetof(PyASCIIObject, state);

        memset(&probe, 0, sizeof probe);
        probe.state.kind = 1;
        printf("check_unicode_kind_shift %d\n", lowest_bit(state));
        memset(&probe, 0, sizeof probe);
        probe.state.kind = 7;
        printf("check_unicode_kind_mask %#x\n", 7u << lowest_bit(state));
        memset(&probe, 0, sizeof probe);
        probe.state.compact = 1;
        printf("check_unicode_compact_bit %d\n", lowest_bit(state));
        memset(&probe, 0, sizeof probe);
        probe.state.ascii = 1;
        printf("check_unicode_ascii_bit %d\n", lowest_bit(state));
    }
#endif

    /* --- modules, types, dicts, ints: thread names (src/python/objects.rs) ---
       "private" = the struct is private to a .c file in this version (no header has it);
       the row's value is proven against the live interpreters by tests/thread_names.rs. */
#define PRIVATE(name) printf("%s private\n", name)
#if PY_VERSION_HEX >= 0x030B0000
    OFF("module_dict", PyModuleObject, md_dict);
#else
    PRIVATE("module_dict"); /* Objects/moduleobject.c */
#endif
    OFF("type_basicsize", PyTypeObject, tp_basicsize);
    OFF("type_flags", PyTypeObject, tp_flags);
    OFF("type_dictoffset", PyTypeObject, tp_dictoffset);
#if PY_MAJOR_VERSION == 2
    NONE("heaptype_cached_keys");
#else
    OFF("heaptype_cached_keys", PyHeapTypeObject, ht_cached_keys);
#endif
    {
        /* Where the managed dict (and 3.11's values pointer) sit relative to the object:
           asked of CPython's own accessors, on a buffer that stands in for an object. */
        static PyObject *fake[16];
        PyObject *obj = (PyObject *)&fake[8];
        (void)obj;
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
        V("managed_dict_before", (char *)obj - (char *)_PyObject_ManagedDictPointer(obj));
        V("managed_values_before", (char *)obj - (char *)_PyObject_ValuesPointer(obj));
#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
        V("managed_dict_before", (char *)obj - (char *)_PyObject_DictOrValuesPointer(obj));
        NONE("managed_values_before");
#elif PY_VERSION_HEX >= 0x030D0000
        V("managed_dict_before", (char *)obj - (char *)_PyObject_ManagedDictPointer(obj));
        NONE("managed_values_before");
#else
        NONE("managed_dict_before");
        NONE("managed_values_before");
#endif
    }
#if PY_MAJOR_VERSION == 2
    NONE("dict_keys");
    NONE("dict_values");
    OFF("dict_mask", PyDictObject, ma_mask);
    OFF("dict_table", PyDictObject, ma_table);
#else
    OFF("dict_keys", PyDictObject, ma_keys);
    OFF("dict_values", PyDictObject, ma_values);
    NONE("dict_mask");
    NONE("dict_table");
#endif
#if PY_MAJOR_VERSION == 2
    NONE("dict_keys_size");
    NONE("dict_keys_log2_size");
    NONE("dict_keys_log2_index_bytes");
    NONE("dict_keys_kind");
    NONE("dict_keys_nentries");
    NONE("dict_keys_indices");
    V("dict_entry_size", sizeof(PyDictEntry));
    OFF("dict_entry_key", PyDictEntry, me_key);
    OFF("dict_entry_value", PyDictEntry, me_value);
    NONE("dict_unicode_entry_size");
    NONE("dict_values_values");
    NONE("dict_values_capacity");
    NONE("dict_values_valid");
#elif PY_VERSION_HEX < 0x030B0000
    /* PyDictKeysObject and PyDictKeyEntry live in Objects/dict-common.h. */
    PRIVATE("dict_keys_size");
    NONE("dict_keys_log2_size");
    NONE("dict_keys_log2_index_bytes");
    NONE("dict_keys_kind");
    PRIVATE("dict_keys_nentries");
    PRIVATE("dict_keys_indices");
    PRIVATE("dict_entry_size");
    PRIVATE("dict_entry_key");
    PRIVATE("dict_entry_value");
    NONE("dict_unicode_entry_size");
    V("dict_values_values", 0); /* ma_values is a plain PyObject ** */
    NONE("dict_values_capacity");
    NONE("dict_values_valid");
#else
    NONE("dict_keys_size");
    OFF("dict_keys_log2_size", PyDictKeysObject, dk_log2_size);
    OFF("dict_keys_log2_index_bytes", PyDictKeysObject, dk_log2_index_bytes);
    OFF("dict_keys_kind", PyDictKeysObject, dk_kind);
    OFF("dict_keys_nentries", PyDictKeysObject, dk_nentries);
    OFF("dict_keys_indices", PyDictKeysObject, dk_indices);
    V("dict_entry_size", sizeof(PyDictKeyEntry));
    OFF("dict_entry_key", PyDictKeyEntry, me_key);
    OFF("dict_entry_value", PyDictKeyEntry, me_value);
    V("dict_unicode_entry_size", sizeof(PyDictUnicodeEntry));
    OFF("dict_values_values", PyDictValues, values);
#  if PY_VERSION_HEX >= 0x030D0000
    OFF("dict_values_capacity", PyDictValues, capacity);
    OFF("dict_values_valid", PyDictValues, valid);
#  else
    NONE("dict_values_capacity");
    NONE("dict_values_valid");
#  endif
    /* The reader assumes these. */
    V("check_dict_keys_general", DICT_KEYS_GENERAL);
    V("check_dict_unicode_entry_key", offsetof(PyDictUnicodeEntry, me_key));
    V("check_dict_unicode_entry_value", offsetof(PyDictUnicodeEntry, me_value));
#endif
#if PY_MAJOR_VERSION == 2
    OFF("int_value", PyIntObject, ob_ival);
#else
    NONE("int_value");
#endif
#if PY_VERSION_HEX < 0x030C0000
#  if PY_MAJOR_VERSION == 2
    OFF("long_size", PyLongObject, ob_size);
#  else
    OFF("long_size", PyLongObject, ob_base.ob_size);
#  endif
    NONE("long_tag");
    OFF("long_digits", PyLongObject, ob_digit);
#else
    NONE("long_size");
    OFF("long_tag", PyLongObject, long_value.lv_tag);
    OFF("long_digits", PyLongObject, long_value.ob_digit);
    V("check_long_non_size_bits", _PyLong_NON_SIZE_BITS);
    V("check_long_sign_mask", _PyLong_SIGN_MASK);
#endif
    V("check_long_shift", PyLong_SHIFT);
    V("check_digit_size", sizeof(digit));
    V("check_tpflags_long_subclass", Py_TPFLAGS_LONG_SUBCLASS);
    V("check_tpflags_dict_subclass", Py_TPFLAGS_DICT_SUBCLASS);
    V("check_tpflags_unicode_subclass", Py_TPFLAGS_UNICODE_SUBCLASS);
#if PY_MAJOR_VERSION == 2
    V("check_tpflags_int_subclass", Py_TPFLAGS_INT_SUBCLASS);
    V("check_tpflags_bytes_subclass", Py_TPFLAGS_STRING_SUBCLASS);
#else
    V("check_tpflags_bytes_subclass", Py_TPFLAGS_BYTES_SUBCLASS);
#endif
#ifdef Py_TPFLAGS_MANAGED_DICT
    V("check_tpflags_managed_dict", Py_TPFLAGS_MANAGED_DICT);
#endif
#ifdef Py_TPFLAGS_INLINE_VALUES
    V("check_tpflags_inline_values", Py_TPFLAGS_INLINE_VALUES);
#endif

    /* --- locals (src/python/locals.rs, `dump --locals`) --- */
#if PY_VERSION_HEX < 0x030B0000
    OFF("frame_localsplus", PyFrameObject, f_localsplus);
    NONE("iframe_localsplus");
    OFF("code_varnames", PyCodeObject, co_varnames);
    OFF("code_cellvars", PyCodeObject, co_cellvars);
    OFF("code_freevars", PyCodeObject, co_freevars);
    NONE("code_localsplusnames");
    NONE("code_localspluskinds");
#else
    NONE("frame_localsplus");
    OFF("iframe_localsplus", _PyInterpreterFrame, localsplus);
    NONE("code_varnames");
    NONE("code_cellvars");
    NONE("code_freevars");
    OFF("code_localsplusnames", PyCodeObject, co_localsplusnames);
    OFF("code_localspluskinds", PyCodeObject, co_localspluskinds);
    V("check_co_fast_local", CO_FAST_LOCAL);
    V("check_co_fast_cell", CO_FAST_CELL);
    V("check_co_fast_free", CO_FAST_FREE);
#  ifdef CO_FAST_HIDDEN
    V("check_co_fast_hidden", CO_FAST_HIDDEN);
#  endif
#endif
#if PY_VERSION_HEX >= 0x030E0000
    V("check_stackref_null_bits", PyStackRef_NULL.bits);
#endif
    OFF("var_size", PyVarObject, ob_size);
    OFF("tuple_items", PyTupleObject, ob_item);
    OFF("list_items", PyListObject, ob_item);
    OFF("dict_used", PyDictObject, ma_used);
    OFF("set_used", PySetObject, used);
    OFF("float_value", PyFloatObject, ob_fval);
    OFF("cell_ref", PyCellObject, ob_ref);
#if PY_MAJOR_VERSION == 2
    OFF("unicode27_length", PyUnicodeObject, length);
    OFF("unicode27_data", PyUnicodeObject, str);
    V("unicode27_char_size", Py_UNICODE_SIZE);
#else
    NONE("unicode27_length");
    NONE("unicode27_data");
    NONE("unicode27_char_size");
#endif
    V("check_tpflags_list_subclass", Py_TPFLAGS_LIST_SUBCLASS);
    V("check_tpflags_tuple_subclass", Py_TPFLAGS_TUPLE_SUBCLASS);

#if PY_VERSION_HEX >= 0x030D0000
    /* The layout of _Py_DebugOffsets itself (the head of _PyRuntime), for the fields
       src/python/debug_offsets.rs reads: `debug.SECTION.FIELD offset`. */
#  define DBG(section, field) \
    V("debug." #section "." #field, offsetof(_Py_DebugOffsets, section.field))
    V("debug_size", sizeof(_Py_DebugOffsets));
    V("debug.version", offsetof(_Py_DebugOffsets, version));
    V("debug.free_threaded", offsetof(_Py_DebugOffsets, free_threaded));
    DBG(runtime_state, interpreters_head);
    DBG(interpreter_state, next);
    DBG(interpreter_state, threads_head);
    DBG(interpreter_state, imports_modules);
    DBG(interpreter_state, ceval_gil);
    DBG(interpreter_state, gil_runtime_state);
    DBG(interpreter_state, gil_runtime_state_locked);
    DBG(interpreter_state, gil_runtime_state_holder);
    DBG(thread_state, next);
    DBG(thread_state, interp);
    DBG(thread_state, current_frame);
    DBG(thread_state, thread_id);
    DBG(thread_state, native_thread_id);
    DBG(interpreter_frame, previous);
    DBG(interpreter_frame, executable);
    DBG(interpreter_frame, instr_ptr);
    DBG(interpreter_frame, owner);
    DBG(interpreter_frame, localsplus);
    DBG(code_object, filename);
    DBG(code_object, name);
    DBG(code_object, qualname);
    DBG(code_object, linetable);
    DBG(code_object, firstlineno);
    DBG(code_object, co_code_adaptive);
    DBG(code_object, localsplusnames);
    DBG(code_object, localspluskinds);
    DBG(tuple_object, ob_item);
    DBG(tuple_object, ob_size);
    DBG(list_object, ob_item);
    DBG(float_object, ob_fval);
    DBG(pyobject, size);
    DBG(pyobject, ob_type);
    DBG(type_object, tp_name);
    DBG(bytes_object, ob_size);
    DBG(bytes_object, ob_sval);
    DBG(unicode_object, state);
    DBG(unicode_object, length);
    DBG(unicode_object, asciiobject_size);
#  if PY_VERSION_HEX >= 0x030F0000
    DBG(unicode_object, compactunicodeobject_size);
#  endif
    DBG(type_object, tp_flags);
#  if PY_VERSION_HEX >= 0x030F0000
    DBG(type_object, tp_basicsize);
    DBG(type_object, tp_dictoffset);
    DBG(heap_type_object, ht_cached_keys);
#  endif
    DBG(dict_object, ma_keys);
    DBG(dict_object, ma_values);
    DBG(long_object, lv_tag);
    DBG(long_object, ob_digit);
#endif
    return 0;
}
