//! Generic, bounded readers for CPython objects in the target: type flags, `dict` (every
//! layout from 2.7's open addressing to 3.13+'s inline values), `int` of any size, `str`
//! comparison, tuples and lists, and the attributes of modules and instances. Thread names and
//! `dump --locals` (through repr.rs) use them.
//!
//! Everything read is untrusted: types are checked through `tp_flags`, sizes are capped,
//! arithmetic is checked, and a malformed object is an `ObjectError`, never a panic. The
//! target keeps running while we read, so a dict may change under us: a torn read gives an
//! error or a stale entry, never an unbounded loop.

use super::offsets::{InstanceDictModel, PyOffsets, StringModel};
use super::strings::read_py_string;
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory, MAX_STRING_BYTES};

/// `Py_TPFLAGS_INT_SUBCLASS` (2.7 `int`). The flag bits are the same in every supported
/// version; tools/offsets/probe.c prints them and tests/offsets.rs compares.
pub const TPFLAGS_INT_SUBCLASS: u64 = 1 << 23;
/// `Py_TPFLAGS_LONG_SUBCLASS` (3.x `int`, 2.7 `long`)
pub const TPFLAGS_LONG_SUBCLASS: u64 = 1 << 24;
/// `Py_TPFLAGS_LIST_SUBCLASS`
pub const TPFLAGS_LIST_SUBCLASS: u64 = 1 << 25;
/// `Py_TPFLAGS_TUPLE_SUBCLASS`
pub const TPFLAGS_TUPLE_SUBCLASS: u64 = 1 << 26;
/// `Py_TPFLAGS_BYTES_SUBCLASS` (3.x `bytes`) / `Py_TPFLAGS_STRING_SUBCLASS` (2.7 `str`)
pub const TPFLAGS_BYTES_SUBCLASS: u64 = 1 << 27;
/// `Py_TPFLAGS_UNICODE_SUBCLASS` (3.x `str`, 2.7 `unicode`)
pub const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;
/// `Py_TPFLAGS_DICT_SUBCLASS`
pub const TPFLAGS_DICT_SUBCLASS: u64 = 1 << 29;
/// `Py_TPFLAGS_MANAGED_DICT` (3.11+)
pub const TPFLAGS_MANAGED_DICT: u64 = 1 << 4;
/// `Py_TPFLAGS_INLINE_VALUES` (3.13+)
pub const TPFLAGS_INLINE_VALUES: u64 = 1 << 2;
/// `PyLong_SHIFT`: bits per digit (`PYLONG_BITS_IN_DIGIT` 30 on every 64-bit build).
pub const LONG_SHIFT: u32 = 30;
/// `_PyLong_NON_SIZE_BITS` (3.12+): `lv_tag` holds the digit count above these bits.
pub const LONG_NON_SIZE_BITS: u32 = 3;
/// `_PyLong_SIGN_MASK` (3.12+): 0 positive, 1 zero, 2 negative.
pub const LONG_SIGN_MASK: u64 = 3;
/// `DICT_KEYS_GENERAL` (3.11+): the keys kind whose entries carry a hash.
pub const DICT_KEYS_GENERAL: u8 = 0;
/// `offsetof(PyDictUnicodeEntry, me_key)` and `me_value` (3.11+).
pub const UNICODE_ENTRY_KEY: u64 = 0;
pub const UNICODE_ENTRY_VALUE: u64 = 8;

/// Most entries read from one dict (3.x `dk_nentries`).
pub const MAX_DICT_ENTRIES: u64 = 1 << 16;
/// Most slots read from one 2.7 dict table (`ma_mask + 1`).
pub const MAX_DICT_SLOTS_27: u64 = 1 << 18;
/// Most digits of an int we decode: 4 × 30 bits fit an `i128`.
pub const MAX_LONG_DIGITS: u64 = 4;
/// Entries per read while scanning a dict.
const ENTRY_CHUNK: u64 = 512;
/// Largest plausible `tp_basicsize` of an instance with inline values.
const MAX_BASICSIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ObjectError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("object at {addr:#x} is not a {expected}")]
    WrongType { addr: Addr, expected: &'static str },
    #[error("{what} at {addr:#x} is malformed ({value:#x})")]
    Malformed {
        what: &'static str,
        addr: Addr,
        value: u64,
    },
    #[error("reading {what} is not supported for this Python version")]
    Unsupported { what: &'static str },
}

type Result<T> = std::result::Result<T, ObjectError>;

fn add(addr: Addr, offset: u64, what: &'static str) -> Result<Addr> {
    addr.checked_add(offset).ok_or(ObjectError::Malformed {
        what,
        addr,
        value: offset,
    })
}

fn sub(addr: Addr, offset: u64, what: &'static str) -> Result<Addr> {
    addr.checked_sub(offset).ok_or(ObjectError::Malformed {
        what,
        addr,
        value: offset,
    })
}

fn too_long(what: &'static str, len: u64, max: u64) -> ObjectError {
    ObjectError::Memory(MemoryError::TooLong { what, len, max })
}

/// `Py_TYPE(obj)`.
pub fn type_of(mem: &dyn RemoteMemory, o: &PyOffsets, obj: Addr) -> Result<Addr> {
    if obj == 0 {
        return Err(MemoryError::Null { what: "object" }.into());
    }
    Ok(mem.read_ptr(add(obj, o.object_type, "object")?, "ob_type")?)
}

/// `Py_TYPE(obj)->tp_flags`.
pub fn type_flags(mem: &dyn RemoteMemory, o: &PyOffsets, obj: Addr) -> Result<u64> {
    let tp = type_of(mem, o, obj)?;
    Ok(mem.read_u64(add(tp, o.type_flags, "type")?)?)
}

fn expect_flag(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    flag: u64,
    expected: &'static str,
) -> Result<()> {
    if type_flags(mem, o, obj)? & flag == 0 {
        return Err(ObjectError::WrongType {
            addr: obj,
            expected,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// int

/// The value of an `int` (2.7: `int` or `long`), or of a subclass such as `bool`. Values
/// beyond `MAX_LONG_DIGITS` digits are refused.
pub fn read_int(mem: &dyn RemoteMemory, o: &PyOffsets, obj: Addr) -> Result<i128> {
    match read_big_int(mem, o, obj, MAX_LONG_DIGITS)? {
        BigInt::Small(v) => Ok(v),
        BigInt::Digits { negative, digits } => {
            decode_long_digits(&digits, negative).ok_or(ObjectError::Malformed {
                what: "int digit",
                addr: obj,
                value: digits.len() as u64,
            })
        }
        BigInt::TooBig { ndigits, .. } => Err(too_long("int digits", ndigits, MAX_LONG_DIGITS)),
    }
}

/// An `int` of any size, as read from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BigInt {
    /// 2.7 `int` (a C long).
    Small(i128),
    /// Little-endian base-2^30 digits (unchecked: `decode_long_digits` and
    /// `long_digits_to_decimal` refuse a digit with bits above the shift).
    Digits { negative: bool, digits: Vec<u32> },
    /// More than the caller's limit of digits; only the count was read.
    TooBig { negative: bool, ndigits: u64 },
}

/// Read an `int` (or 2.7 `long`, or a subclass), reading at most `max_digits` digits.
pub fn read_big_int(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    max_digits: u64,
) -> Result<BigInt> {
    let flags = type_flags(mem, o, obj)?;
    if let (Some(ival), true) = (o.int_value, flags & TPFLAGS_INT_SUBCLASS != 0) {
        let v = mem.read_u64(add(obj, ival, "int")?)? as i64;
        return Ok(BigInt::Small(i128::from(v)));
    }
    if flags & TPFLAGS_LONG_SUBCLASS == 0 {
        return Err(ObjectError::WrongType {
            addr: obj,
            expected: "int",
        });
    }
    let (negative, ndigits) = match (o.long_tag, o.long_size) {
        (Some(tag), _) => {
            let tag = mem.read_u64(add(obj, tag, "int")?)?;
            long_tag_sign_and_size(tag).ok_or(ObjectError::Malformed {
                what: "int lv_tag",
                addr: obj,
                value: tag,
            })?
        }
        (None, Some(size)) => long_size_sign_and_size(mem.read_u64(add(obj, size, "int")?)?),
        (None, None) => return Err(ObjectError::Unsupported { what: "int" }),
    };
    if ndigits > max_digits {
        return Ok(BigInt::TooBig { negative, ndigits });
    }
    let len = usize::try_from(ndigits.saturating_mul(4))
        .map_err(|_| too_long("int digits", ndigits, max_digits))?;
    let raw = mem.read_bytes(add(obj, o.long_digits, "int")?, len)?;
    let digits = raw
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(BigInt::Digits { negative, digits })
}

/// The decimal text of little-endian base-2^30 digits (CPython's own base-10^9 conversion,
/// quadratic in the digit count: callers bound it). `None` if a digit has bits above the
/// shift.
pub fn long_digits_to_decimal(digits: &[u32], negative: bool) -> Option<String> {
    const BASE: u64 = 1_000_000_000;
    // Base-10^9 limbs, little-endian.
    let mut limbs: Vec<u32> = Vec::with_capacity(digits.len() + 1);
    for &d in digits.iter().rev() {
        if d >> LONG_SHIFT != 0 {
            return None;
        }
        let mut carry = u64::from(d);
        for limb in limbs.iter_mut() {
            let z = (u64::from(*limb) << LONG_SHIFT) | carry;
            *limb = (z % BASE) as u32;
            carry = z / BASE;
        }
        while carry != 0 {
            limbs.push((carry % BASE) as u32);
            carry /= BASE;
        }
    }
    let mut text = String::new();
    if negative && !limbs.is_empty() {
        text.push('-');
    }
    match limbs.split_last() {
        None => text.push('0'),
        Some((top, rest)) => {
            text.push_str(&top.to_string());
            for limb in rest.iter().rev() {
                text.push_str(&format!("{limb:09}"));
            }
        }
    }
    Some(text)
}

/// 3.12+ `lv_tag`: (negative, digit count), or `None` for an impossible tag (sign 3, or a
/// zero with digits).
pub fn long_tag_sign_and_size(tag: u64) -> Option<(bool, u64)> {
    let ndigits = tag >> LONG_NON_SIZE_BITS;
    match tag & LONG_SIGN_MASK {
        0 => Some((false, ndigits)),
        1 if ndigits == 0 => Some((false, 0)),
        2 => Some((true, ndigits)),
        _ => None,
    }
}

/// <= 3.11 `ob_size`: (negative, digit count); the sign of the size is the sign of the value.
pub fn long_size_sign_and_size(ob_size: u64) -> (bool, u64) {
    let signed = ob_size as i64;
    (signed < 0, signed.unsigned_abs())
}

/// Little-endian base-2^30 digits to a value; `None` if a digit has bits above the shift or
/// the value does not fit (never with `MAX_LONG_DIGITS` digits).
pub fn decode_long_digits(digits: &[u32], negative: bool) -> Option<i128> {
    let mut value: i128 = 0;
    for (i, &d) in digits.iter().enumerate() {
        if d >> LONG_SHIFT != 0 {
            return None;
        }
        let shift = LONG_SHIFT.checked_mul(u32::try_from(i).ok()?)?;
        if shift >= 127 {
            return None;
        }
        let part = i128::from(d).checked_shl(shift)?;
        if part >> shift != i128::from(d) {
            return None;
        }
        value = value.checked_add(part)?;
    }
    Some(if negative { -value } else { value })
}

// ---------------------------------------------------------------------------------------
// tuple, list

/// `len()` of a tuple or list (`ob_size`), checked to be a plausible size.
pub fn sequence_len(mem: &dyn RemoteMemory, o: &PyOffsets, obj: Addr) -> Result<u64> {
    let size = mem.read_u64(add(obj, o.var_size, "sequence")?)?;
    if (size as i64) < 0 || size > 1 << 40 {
        return Err(ObjectError::Malformed {
            what: "ob_size",
            addr: obj,
            value: size,
        });
    }
    Ok(size)
}

/// The first `max` items of a tuple or list (its `ob_item` array), and its length.
pub fn sequence_items(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    max: u64,
) -> Result<(Vec<Addr>, u64)> {
    let flags = type_flags(mem, o, obj)?;
    let array = if flags & TPFLAGS_TUPLE_SUBCLASS != 0 {
        add(obj, o.tuple_items, "tuple")?
    } else if flags & TPFLAGS_LIST_SUBCLASS != 0 {
        mem.read_u64(add(obj, o.list_items, "list")?)?
    } else {
        return Err(ObjectError::WrongType {
            addr: obj,
            expected: "tuple or list",
        });
    };
    let len = sequence_len(mem, o, obj)?;
    let n = len.min(max);
    if n == 0 {
        return Ok((Vec::new(), len));
    }
    let raw = mem.read_bytes(array, (n * 8) as usize)?;
    let items = raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect();
    Ok((items, len))
}

// ---------------------------------------------------------------------------------------
// str

/// Whether `obj` is a text object (3.x `str`, 2.7 `str`) equal to one of `candidates`;
/// returns the index of the one it equals. Non-strings are simply no match. The length is
/// compared before any text is read, so scanning a large dict for one name stays cheap.
pub fn str_matches(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    candidates: &[&str],
) -> Result<Option<usize>> {
    let flags = type_flags(mem, o, obj)?;
    let (flag, len_offset) = match o.string_model {
        StringModel::Bytes27 => (TPFLAGS_BYTES_SUBCLASS, o.bytes_size),
        StringModel::Unicode => (TPFLAGS_UNICODE_SUBCLASS, o.unicode_length),
    };
    if flags & flag == 0 {
        return Ok(None);
    }
    let len = mem.read_u64(add(obj, len_offset, "str")?)?;
    let same_len = |c: &&str| match o.string_model {
        StringModel::Bytes27 => c.len() as u64 == len,
        StringModel::Unicode => c.chars().count() as u64 == len,
    };
    if !candidates.iter().any(same_len) || len > MAX_STRING_BYTES as u64 {
        return Ok(None);
    }
    let text = read_py_string(mem, o, obj)?;
    Ok(candidates.iter().position(|c| *c == text))
}

/// The value of the first item whose key is a string equal to one of `names` (in `names`
/// order of preference: an earlier name wins). Keys that cannot be read are skipped.
pub fn find_str_key(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    items: &[(Addr, Addr)],
    names: &[&str],
) -> Option<Addr> {
    let mut best: Option<(usize, Addr)> = None;
    for &(key, value) in items {
        if let Ok(Some(rank)) = str_matches(mem, o, key, names) {
            if best.map_or(true, |(r, _)| rank < r) {
                best = Some((rank, value));
            }
            if rank == 0 {
                break;
            }
        }
    }
    best.map(|(_, value)| value)
}

// ---------------------------------------------------------------------------------------
// dict

/// Where a keys table's entries are and how to read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLayout {
    /// Address of entry 0.
    pub entries: Addr,
    /// Number of entries in use or deleted (`dk_nentries`; 2.7: slots).
    pub count: u64,
    pub size: u64,
    pub key: u64,
    pub value: u64,
}

/// `DK_IXSIZE` of 3.8–3.10: bytes per hash index for a table of `size` slots.
pub fn index_bytes(size: u64) -> u64 {
    match size {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// The entry layout of a `PyDictKeysObject` (3.x).
pub fn keys_layout(mem: &dyn RemoteMemory, o: &PyOffsets, keys: Addr) -> Result<EntryLayout> {
    let (Some(nentries_at), Some(indices)) = (o.dict_keys_nentries, o.dict_keys_indices) else {
        return Err(ObjectError::Unsupported { what: "dict keys" });
    };
    let malformed = |what, value| ObjectError::Malformed {
        what,
        addr: keys,
        value,
    };
    let nentries = mem.read_u64(add(keys, nentries_at, "dict keys")?)?;
    if (nentries as i64) < 0 {
        return Err(malformed("dk_nentries", nentries));
    }
    if nentries > MAX_DICT_ENTRIES {
        return Err(too_long("dict entries", nentries, MAX_DICT_ENTRIES));
    }
    let (size, index_len, general) = match (
        o.dict_keys_log2_size,
        o.dict_keys_log2_index_bytes,
        o.dict_keys_kind,
        o.dict_keys_size,
    ) {
        // 3.11+: sizes as powers of two, and a kind.
        (Some(log2_size), Some(log2_index), Some(kind), _) => {
            let log2_size = u64::from(mem.read_u8(add(keys, log2_size, "dict keys")?)?);
            let log2_index = u64::from(mem.read_u8(add(keys, log2_index, "dict keys")?)?);
            let kind = mem.read_u8(add(keys, kind, "dict keys")?)?;
            // Index bytes are 1, 2, 4 or 8 per slot.
            if log2_size > 40 || log2_index < log2_size || log2_index > log2_size + 3 {
                return Err(malformed("dk_log2_index_bytes", log2_index));
            }
            // DICT_KEYS_GENERAL, _UNICODE or _SPLIT.
            if kind > 2 {
                return Err(malformed("dk_kind", u64::from(kind)));
            }
            (
                1u64 << log2_size,
                1u64 << log2_index,
                kind == DICT_KEYS_GENERAL,
            )
        }
        // 3.8–3.10: `dk_size` slots, index width by size, always (hash, key, value).
        (_, _, _, Some(size_at)) => {
            let size = mem.read_u64(add(keys, size_at, "dict keys")?)?;
            if !size.is_power_of_two() || size > 1 << 40 {
                return Err(malformed("dk_size", size));
            }
            (size, size * index_bytes(size), true)
        }
        _ => return Err(ObjectError::Unsupported { what: "dict keys" }),
    };
    if nentries > size {
        return Err(malformed("dk_nentries", nentries));
    }
    let entries = add(add(keys, indices, "dict keys")?, index_len, "dict keys")?;
    let (size, key, value) = match (general, o.dict_unicode_entry_size) {
        (false, Some(unicode)) => (unicode, UNICODE_ENTRY_KEY, UNICODE_ENTRY_VALUE),
        _ => (o.dict_entry_size, o.dict_entry_key, o.dict_entry_value),
    };
    Ok(EntryLayout {
        entries,
        count: nentries,
        size,
        key,
        value,
    })
}

/// Read `layout.count` entries (at most `limit`) as (key, value) pairs, in chunks.
fn read_entries(
    mem: &dyn RemoteMemory,
    layout: &EntryLayout,
    limit: u64,
) -> Result<Vec<(Addr, Addr)>> {
    let count = layout.count.min(limit);
    if layout.size < 8
        || layout.key.saturating_add(8) > layout.size
        || layout.value.saturating_add(8) > layout.size
    {
        return Err(ObjectError::Unsupported {
            what: "dict entry layout",
        });
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(ENTRY_CHUNK);
        let at = add(layout.entries, done * layout.size, "dict entries")?;
        let bytes = mem.read_bytes(at, (n * layout.size) as usize)?;
        out.extend(parse_entries(&bytes, layout.size, layout.key, layout.value));
        done += n;
    }
    Ok(out)
}

/// Split raw entry bytes into (key, value) pairs; a partial trailing entry is ignored.
pub fn parse_entries(bytes: &[u8], size: u64, key: u64, value: u64) -> Vec<(Addr, Addr)> {
    let word = |entry: &[u8], at: u64| {
        let at = at as usize;
        entry
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)
            .unwrap_or(0)
    };
    if size == 0 {
        return Vec::new();
    }
    bytes
        .chunks_exact(size as usize)
        .map(|e| (word(e, key), word(e, value)))
        .collect()
}

/// The live (key, value) pairs of a keys table, taking values from a split `PyDictValues`
/// (or 3.8–3.10 `PyObject **`) array at `values` when given.
fn keys_items(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    keys: Addr,
    values: Option<Addr>,
) -> Result<Vec<(Addr, Addr)>> {
    let layout = keys_layout(mem, o, keys)?;
    let Some(values) = values else {
        let entries = read_entries(mem, &layout, MAX_DICT_ENTRIES)?;
        return Ok(live(entries));
    };
    // Split table: keys from the (shared) keys object, values by entry index.
    let mut count = layout.count;
    if let Some(capacity) = o.dict_values_capacity {
        count = count.min(u64::from(mem.read_u8(add(
            values,
            capacity,
            "dict values",
        )?)?));
    }
    let array = add(values, o.dict_values_values.unwrap_or(0), "dict values")?;
    let entries = read_entries(mem, &layout, count)?;
    let raw = mem.read_bytes(array, entries.len() * 8)?;
    let pairs = entries
        .iter()
        .zip(raw.chunks_exact(8))
        .map(|(&(key, _), v)| {
            let value = u64::from_ne_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
            (key, value)
        })
        .collect();
    Ok(live(pairs))
}

/// Drop empty and deleted entries (null key or value; 2.7's dummy key has a null value).
fn live(entries: Vec<(Addr, Addr)>) -> Vec<(Addr, Addr)> {
    entries
        .into_iter()
        .filter(|&(k, v)| k != 0 && v != 0)
        .collect()
}

/// Every (key, value) of a `dict` (or subclass), in entry order (2.7: table order).
pub fn dict_items(mem: &dyn RemoteMemory, o: &PyOffsets, dict: Addr) -> Result<Vec<(Addr, Addr)>> {
    expect_flag(mem, o, dict, TPFLAGS_DICT_SUBCLASS, "dict")?;
    if let (Some(mask), Some(table)) = (o.dict_mask, o.dict_table) {
        // 2.7: open addressing over `ma_mask + 1` (hash, key, value) slots.
        let mask = mem.read_u64(add(dict, mask, "dict")?)?;
        let slots = mask.checked_add(1).filter(|s| s.is_power_of_two());
        let Some(slots) = slots else {
            return Err(ObjectError::Malformed {
                what: "ma_mask",
                addr: dict,
                value: mask,
            });
        };
        if slots > MAX_DICT_SLOTS_27 {
            return Err(too_long("dict slots", slots, MAX_DICT_SLOTS_27));
        }
        let layout = EntryLayout {
            entries: mem.read_ptr(add(dict, table, "dict")?, "ma_table")?,
            count: slots,
            size: o.dict_entry_size,
            key: o.dict_entry_key,
            value: o.dict_entry_value,
        };
        return Ok(live(read_entries(mem, &layout, MAX_DICT_SLOTS_27)?));
    }
    let (Some(keys), Some(values)) = (o.dict_keys, o.dict_values) else {
        return Err(ObjectError::Unsupported { what: "dict" });
    };
    let keys = mem.read_ptr(add(dict, keys, "dict")?, "ma_keys")?;
    let values = mem.read_u64(add(dict, values, "dict")?)?;
    keys_items(mem, o, keys, (values != 0).then_some(values))
}

/// `dict[name]` for a string key, or `None` if absent.
pub fn dict_get_str(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    dict: Addr,
    name: &str,
) -> Result<Option<Addr>> {
    let items = dict_items(mem, o, dict)?;
    Ok(find_str_key(mem, o, &items, &[name]))
}

// ---------------------------------------------------------------------------------------
// modules and instances

/// A module's `__dict__` (`PyModuleObject.md_dict`).
pub fn module_dict(mem: &dyn RemoteMemory, o: &PyOffsets, module: Addr) -> Result<Addr> {
    Ok(mem.read_ptr(add(module, o.module_dict, "module")?, "md_dict")?)
}

/// A module-level name: `module.name`, from its `__dict__`.
pub fn module_attr(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    module: Addr,
    name: &str,
) -> Result<Option<Addr>> {
    dict_get_str(mem, o, module_dict(mem, o, module)?, name)
}

/// The (name, value) pairs of an instance's own attributes, wherever this version keeps
/// them (see `InstanceDictModel`). An instance without attributes gives an empty list.
pub fn instance_items(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
) -> Result<Vec<(Addr, Addr)>> {
    let tp = type_of(mem, o, obj)?;
    let flags = mem.read_u64(add(tp, o.type_flags, "type")?)?;
    if flags & TPFLAGS_MANAGED_DICT != 0 && o.instance_dict != InstanceDictModel::DictOffset {
        return managed_items(mem, o, obj, tp, flags);
    }
    let offset = mem.read_u64(add(tp, o.type_dictoffset, "type")?)? as i64;
    if offset == 0 {
        return Ok(Vec::new());
    }
    if offset < 0 {
        // Variable-size instances (int or tuple subclasses) count from the end.
        return Err(ObjectError::Unsupported {
            what: "negative tp_dictoffset",
        });
    }
    match mem.read_u64(add(obj, offset as u64, "instance")?)? {
        0 => Ok(Vec::new()),
        dict => dict_items(mem, o, dict),
    }
}

/// Attributes of a `Py_TPFLAGS_MANAGED_DICT` instance (3.11+).
fn managed_items(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    tp: Addr,
    flags: u64,
) -> Result<Vec<(Addr, Addr)>> {
    let Some(dict_before) = o.managed_dict_before else {
        return Err(ObjectError::Unsupported {
            what: "managed dict",
        });
    };
    let shared_keys = || -> Result<Addr> {
        let at = o.heaptype_cached_keys.ok_or(ObjectError::Unsupported {
            what: "shared keys",
        })?;
        Ok(mem.read_ptr(add(tp, at, "type")?, "ht_cached_keys")?)
    };
    let word = mem.read_u64(sub(obj, dict_before, "instance")?)?;
    match o.instance_dict {
        InstanceDictModel::PreHeader => {
            if word != 0 {
                return dict_items(mem, o, word);
            }
            let before = o.managed_values_before.ok_or(ObjectError::Unsupported {
                what: "managed values",
            })?;
            match mem.read_u64(sub(obj, before, "instance")?)? {
                0 => Ok(Vec::new()),
                values => keys_items(mem, o, shared_keys()?, Some(values)),
            }
        }
        InstanceDictModel::TaggedPreHeader => {
            if word & 1 == 1 {
                let values = add(word, 1, "tagged values")?;
                keys_items(mem, o, shared_keys()?, Some(values))
            } else if word != 0 {
                dict_items(mem, o, word)
            } else {
                Ok(Vec::new())
            }
        }
        InstanceDictModel::InlineValues => {
            if word != 0 {
                return dict_items(mem, o, word);
            }
            if flags & TPFLAGS_INLINE_VALUES == 0 {
                return Ok(Vec::new());
            }
            let basicsize = mem.read_u64(add(tp, o.type_basicsize, "type")?)?;
            if basicsize == 0 || basicsize > MAX_BASICSIZE || basicsize % 8 != 0 {
                return Err(ObjectError::Malformed {
                    what: "tp_basicsize",
                    addr: tp,
                    value: basicsize,
                });
            }
            let values = add(obj, basicsize, "inline values")?;
            if let Some(valid) = o.dict_values_valid {
                if mem.read_u8(add(values, valid, "inline values")?)? == 0 {
                    // Being handed over to a new dict: nothing to read this instant.
                    return Ok(Vec::new());
                }
            }
            keys_items(mem, o, shared_keys()?, Some(values))
        }
        InstanceDictModel::DictOffset => Ok(Vec::new()),
    }
}

/// The value of an instance attribute, trying `names` in order (e.g. a name and its
/// mangled form). Looks only at the instance's own attributes, not its class.
pub fn instance_attr(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    names: &[&str],
) -> Result<Option<Addr>> {
    let items = instance_items(mem, o, obj)?;
    Ok(find_str_key(mem, o, &items, names))
}

#[cfg(test)]
#[path = "objects_tests.rs"]
pub(crate) mod tests;
