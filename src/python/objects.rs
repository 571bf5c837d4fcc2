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
pub(crate) mod tests {
    use super::*;
    use crate::model::PyVersion;
    use crate::process::memory::LocalMemory;
    use crate::python::offsets::offsets_for;

    /// A synthetic target address space: objects laid out as a given version would.
    pub(crate) struct Image {
        pub base: Addr,
        pub bytes: Vec<u8>,
        pub o: PyOffsets,
        types: std::collections::HashMap<u64, Addr>,
    }

    impl Image {
        pub fn new(series: (u8, u8)) -> Image {
            let o = offsets_for(PyVersion::new(series.0, series.1, 0)).expect("row");
            Image {
                base: 0x10_0000,
                bytes: Vec::new(),
                o,
                types: Default::default(),
            }
        }

        /// `len` zeroed bytes, 16-aligned (and 32 spare in front, for pre-headers).
        pub fn alloc(&mut self, len: usize) -> Addr {
            let start = (self.bytes.len() + 32 + 15) & !15;
            self.bytes.resize(start + len, 0);
            self.base + start as u64
        }

        pub fn put(&mut self, at: Addr, value: u64) {
            let i = (at - self.base) as usize;
            self.bytes[i..i + 8].copy_from_slice(&value.to_ne_bytes());
        }

        pub fn put_u8(&mut self, at: Addr, value: u8) {
            self.bytes[(at - self.base) as usize] = value;
        }

        /// A type object with these flags (one per distinct flag set).
        pub fn type_with(&mut self, flags: u64) -> Addr {
            if let Some(&t) = self.types.get(&flags) {
                return t;
            }
            let t = self.alloc(1024);
            self.put(t + self.o.type_flags, flags);
            self.put(t + self.o.type_basicsize, 16);
            self.types.insert(flags, t);
            t
        }

        pub fn object(&mut self, flags: u64, len: usize) -> Addr {
            let tp = self.type_with(flags);
            let obj = self.alloc(len.max(16));
            self.put(obj + self.o.object_type, tp);
            obj
        }

        /// A str (2.7: byte string; 3.x: compact ASCII or UCS-2).
        pub fn string(&mut self, text: &str) -> Addr {
            let o = self.o.clone();
            if o.string_model == StringModel::Bytes27 {
                let obj = self.object(TPFLAGS_BYTES_SUBCLASS, o.bytes_data as usize + text.len());
                self.put(obj + o.bytes_size, text.len() as u64);
                let i = (obj + o.bytes_data - self.base) as usize;
                self.bytes[i..i + text.len()].copy_from_slice(text.as_bytes());
                return obj;
            }
            let units: Vec<u16> = text.encode_utf16().collect();
            let ascii = text.is_ascii();
            let (data, width) = if ascii {
                (o.unicode_ascii_data, 1)
            } else {
                (o.unicode_compact_data, 2)
            };
            let obj = self.object(
                TPFLAGS_UNICODE_SUBCLASS,
                (data + 2 * units.len() as u64) as usize + 2,
            );
            self.put(obj + o.unicode_length, units.len() as u64);
            let state: u32 = ((width as u32) << 2) | (1 << 5) | (u32::from(ascii) << 6);
            let i = (obj + o.unicode_state - self.base) as usize;
            self.bytes[i..i + 4].copy_from_slice(&state.to_ne_bytes());
            let i = (obj + data - self.base) as usize;
            for (n, u) in units.iter().enumerate() {
                if ascii {
                    self.bytes[i + n] = *u as u8;
                } else {
                    self.bytes[i + 2 * n..i + 2 * n + 2].copy_from_slice(&u.to_ne_bytes());
                }
            }
            obj
        }

        /// An int as the version stores it (2.7: `int` for values that fit a long).
        pub fn int(&mut self, value: i128) -> Addr {
            let o = self.o.clone();
            if let (Some(ival), Ok(v)) = (o.int_value, i64::try_from(value)) {
                let obj = self.object(TPFLAGS_INT_SUBCLASS, 24);
                self.put(obj + ival, v as u64);
                return obj;
            }
            let mut digits = Vec::new();
            let mut rest = value.unsigned_abs();
            while rest != 0 {
                digits.push((rest & ((1 << LONG_SHIFT) - 1)) as u32);
                rest >>= LONG_SHIFT;
            }
            let obj = self.object(
                TPFLAGS_LONG_SUBCLASS,
                o.long_digits as usize + 4 * digits.len().max(1),
            );
            let n = digits.len() as u64;
            match (o.long_tag, o.long_size) {
                (Some(tag), _) => {
                    let sign = if value == 0 {
                        1
                    } else if value < 0 {
                        2
                    } else {
                        0
                    };
                    self.put(obj + tag, (n << LONG_NON_SIZE_BITS) | sign);
                }
                (None, Some(size)) => {
                    let signed = if value < 0 { -(n as i64) } else { n as i64 };
                    self.put(obj + size, signed as u64);
                }
                _ => unreachable!(),
            }
            for (k, d) in digits.iter().enumerate() {
                let i = (obj + o.long_digits - self.base) as usize + 4 * k;
                self.bytes[i..i + 4].copy_from_slice(&d.to_ne_bytes());
            }
            obj
        }

        /// A keys table (3.x) holding `items` in order; `split` leaves values out of the
        /// entries (for shared keys). Returns the keys object.
        pub fn keys(&mut self, items: &[(Addr, Addr)], general: bool, split: bool) -> Addr {
            let o = self.o.clone();
            let size: u64 = 64;
            let indices = o.dict_keys_indices.unwrap();
            let (index_len, entry, key, value) = if o.dict_keys_log2_size.is_some() {
                if general {
                    (
                        size,
                        o.dict_entry_size,
                        o.dict_entry_key,
                        o.dict_entry_value,
                    )
                } else {
                    (
                        size,
                        o.dict_unicode_entry_size.unwrap(),
                        UNICODE_ENTRY_KEY,
                        UNICODE_ENTRY_VALUE,
                    )
                }
            } else {
                (
                    size * index_bytes(size),
                    o.dict_entry_size,
                    o.dict_entry_key,
                    o.dict_entry_value,
                )
            };
            let keys = self.alloc((indices + index_len + entry * size) as usize);
            if let (Some(l2), Some(l2i), Some(kind)) = (
                o.dict_keys_log2_size,
                o.dict_keys_log2_index_bytes,
                o.dict_keys_kind,
            ) {
                self.put_u8(keys + l2, 6);
                self.put_u8(keys + l2i, 6);
                self.put_u8(
                    keys + kind,
                    if general {
                        0
                    } else if split {
                        2
                    } else {
                        1
                    },
                );
            } else {
                self.put(keys + o.dict_keys_size.unwrap(), size);
            }
            self.put(keys + o.dict_keys_nentries.unwrap(), items.len() as u64);
            let entries = keys + indices + index_len;
            for (i, &(k, v)) in items.iter().enumerate() {
                let e = entries + i as u64 * entry;
                self.put(e + key, k);
                if !split {
                    self.put(e + value, v);
                }
            }
            keys
        }

        /// A values array (split table) for `values`, 3.13+ with its header.
        pub fn values_array(&mut self, values: &[Addr]) -> Addr {
            let o = self.o.clone();
            let head = o.dict_values_values.unwrap_or(0);
            let arr = self.alloc((head + 8 * values.len() as u64) as usize + 8);
            if let Some(cap) = o.dict_values_capacity {
                self.put_u8(arr + cap, values.len() as u8);
            }
            if let Some(valid) = o.dict_values_valid {
                self.put_u8(arr + valid, 1);
            }
            for (i, &v) in values.iter().enumerate() {
                self.put(arr + head + 8 * i as u64, v);
            }
            arr
        }

        /// A combined dict of `items`.
        pub fn dict(&mut self, items: &[(Addr, Addr)]) -> Addr {
            let o = self.o.clone();
            let dict = self.object(TPFLAGS_DICT_SUBCLASS, 64);
            if let (Some(mask), Some(table)) = (o.dict_mask, o.dict_table) {
                let slots = 32u64;
                let t = self.alloc((slots * o.dict_entry_size) as usize);
                self.put(dict + mask, slots - 1);
                self.put(dict + table, t);
                // Spread the entries over the table, as hashing would.
                for (i, &(k, v)) in items.iter().enumerate() {
                    let e = t + ((i as u64 * 7) % slots) * o.dict_entry_size;
                    self.put(e + o.dict_entry_key, k);
                    self.put(e + o.dict_entry_value, v);
                }
                return dict;
            }
            let all_str = items.iter().all(|&(k, _)| {
                type_flags(&self.mem(), &o, k).is_ok_and(|f| f & TPFLAGS_UNICODE_SUBCLASS != 0)
            });
            let keys = self.keys(items, !(all_str && o.dict_keys_kind.is_some()), false);
            self.put(dict + o.dict_keys.unwrap(), keys);
            dict
        }

        pub fn mem(&self) -> LocalMemory {
            LocalMemory {
                base: self.base,
                bytes: self.bytes.clone(),
            }
        }
    }

    const ALL: &[(u8, u8)] = &[
        (2, 7),
        (3, 8),
        (3, 9),
        (3, 10),
        (3, 11),
        (3, 12),
        (3, 13),
        (3, 14),
        (3, 15),
    ];

    #[test]
    fn digits_decode_to_64_bit_idents_and_beyond() {
        assert_eq!(decode_long_digits(&[], false), Some(0));
        assert_eq!(decode_long_digits(&[5], true), Some(-5));
        // A typical pthread_t: 0x7f12_3456_7000.
        let v: u64 = 0x7f12_3456_7000;
        let d = [(v & 0x3fff_ffff) as u32, (v >> 30) as u32];
        assert_eq!(decode_long_digits(&d, false), Some(i128::from(v)));
        let max = u64::MAX;
        let d = [
            (max & 0x3fff_ffff) as u32,
            ((max >> 30) & 0x3fff_ffff) as u32,
            (max >> 60) as u32,
        ];
        assert_eq!(decode_long_digits(&d, false), Some(i128::from(max)));
        // A digit with bits above the shift is corrupt, not a value.
        assert_eq!(decode_long_digits(&[1 << 30], false), None);
        let four = [0x3fff_ffff; 4];
        assert_eq!(decode_long_digits(&four, false), Some((1i128 << 120) - 1));
    }

    #[test]
    fn big_ints_to_decimal() {
        assert_eq!(long_digits_to_decimal(&[], false).as_deref(), Some("0"));
        assert_eq!(long_digits_to_decimal(&[], true).as_deref(), Some("0"));
        assert_eq!(long_digits_to_decimal(&[42], true).as_deref(), Some("-42"));
        // 2**100 = 2**(30*3) * 2**10: digits [0, 0, 0, 1024].
        assert_eq!(
            long_digits_to_decimal(&[0, 0, 0, 1024], false).as_deref(),
            Some("1267650600228229401496703205376")
        );
        // 10**9 exactly crosses a limb boundary.
        let v: u64 = 1_000_000_000;
        let d = [(v & 0x3fff_ffff) as u32, (v >> 30) as u32];
        assert_eq!(
            long_digits_to_decimal(&d, false).as_deref(),
            Some("1000000000")
        );
        assert_eq!(long_digits_to_decimal(&[1 << 30], false), None);
        let max = [0x3fff_ffff; 4];
        assert_eq!(
            long_digits_to_decimal(&max, false),
            Some(((1i128 << 120) - 1).to_string())
        );
    }

    #[test]
    fn big_ints_read_back_or_report_their_size() {
        for &series in ALL {
            let mut img = Image::new(series);
            let obj = img.int(-(1i128 << 70));
            let mem = img.mem();
            match read_big_int(&mem, &img.o, obj, 16).unwrap() {
                BigInt::Small(v) => panic!("{series:?}: small {v}"),
                BigInt::Digits { negative, digits } => {
                    assert!(negative);
                    assert_eq!(
                        long_digits_to_decimal(&digits, negative),
                        Some((-(1i128 << 70)).to_string())
                    );
                }
                BigInt::TooBig { .. } => panic!("{series:?}: too big"),
            }
            assert_eq!(
                read_big_int(&mem, &img.o, obj, 1).unwrap(),
                BigInt::TooBig {
                    negative: true,
                    ndigits: 3
                }
            );
        }
    }

    #[test]
    fn long_headers() {
        assert_eq!(long_tag_sign_and_size(1), Some((false, 0)));
        assert_eq!(long_tag_sign_and_size(2 << 3), Some((false, 2)));
        assert_eq!(long_tag_sign_and_size((1 << 3) | 2), Some((true, 1)));
        assert_eq!(long_tag_sign_and_size(3), None);
        assert_eq!(long_tag_sign_and_size((1 << 3) | 1), None);
        // Bit 2 (reserved for immortality) is neither sign nor size.
        assert_eq!(long_tag_sign_and_size((1 << 3) | 4), Some((false, 1)));
        assert_eq!(long_tag_sign_and_size(1 | 4), Some((false, 0)));
        assert_eq!(long_size_sign_and_size(2), (false, 2));
        assert_eq!(long_size_sign_and_size((-3i64) as u64), (true, 3));
    }

    #[test]
    fn index_width_follows_table_size() {
        assert_eq!(index_bytes(8), 1);
        assert_eq!(index_bytes(0x100), 2);
        assert_eq!(index_bytes(0x1_0000), 4);
        assert_eq!(index_bytes(1 << 32), 8);
    }

    #[test]
    fn entries_parse_with_any_layout() {
        let mut bytes = Vec::new();
        for (k, v) in [(1u64, 2u64), (3, 4)] {
            bytes.extend(9u64.to_ne_bytes());
            bytes.extend(k.to_ne_bytes());
            bytes.extend(v.to_ne_bytes());
        }
        assert_eq!(parse_entries(&bytes, 24, 8, 16), vec![(1, 2), (3, 4)]);
        assert_eq!(parse_entries(&bytes[..30], 24, 8, 16), vec![(1, 2)]);
        assert_eq!(parse_entries(&bytes, 16, 0, 8).len(), 3);
        assert!(parse_entries(&bytes, 0, 0, 8).is_empty());
        // Offsets past the entry read as null instead of panicking.
        assert_eq!(parse_entries(&bytes, 8, 4, 0)[0].0, 0);
    }

    #[test]
    fn ints_read_back_in_every_version() {
        for &series in ALL {
            let mut img = Image::new(series);
            let values = [
                0i128,
                7,
                -7,
                0x7f12_3456_7000,
                u64::MAX as i128,
                -(1i128 << 70),
            ];
            let objs: Vec<Addr> = values.iter().map(|&v| img.int(v)).collect();
            let mem = img.mem();
            for (v, obj) in values.iter().zip(objs) {
                assert_eq!(read_int(&mem, &img.o, obj), Ok(*v), "{series:?}");
            }
            let s = {
                let mut img2 = Image::new(series);
                let s = img2.string("x");
                (img2.mem(), s)
            };
            assert!(matches!(
                read_int(&s.0, &img.o, s.1),
                Err(ObjectError::WrongType { .. })
            ));
        }
    }

    #[test]
    fn too_many_digits_are_refused() {
        let mut img = Image::new((3, 11));
        let obj = img.int(5);
        img.put(obj + img.o.long_size.unwrap(), 1000);
        assert!(matches!(
            read_int(&img.mem(), &img.o, obj),
            Err(ObjectError::Memory(MemoryError::TooLong { .. }))
        ));
    }

    #[test]
    fn combined_dicts_in_every_version() {
        for &series in ALL {
            let mut img = Image::new(series);
            let names = ["alpha", "threading", "名前", "_active"];
            let items: Vec<(Addr, Addr)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let k = img.string(n);
                    (k, img.int(i as i128 + 100))
                })
                .collect();
            let dict = img.dict(&items);
            let int_keyed = {
                let k = img.int(0x7f00_0000_1000);
                let v = img.string("v");
                img.dict(&[(k, v)])
            };
            let mem = img.mem();
            let o = &img.o;
            let mut got = dict_items(&mem, o, dict).unwrap();
            got.sort_unstable();
            let mut want = items.clone();
            want.sort_unstable();
            assert_eq!(got, want, "{series:?}");
            let threading = dict_get_str(&mem, o, dict, "threading").unwrap();
            assert_eq!(threading, Some(items[1].1), "{series:?}");
            assert_eq!(
                dict_get_str(&mem, o, dict, "名前").unwrap(),
                Some(items[2].1)
            );
            assert_eq!(dict_get_str(&mem, o, dict, "missing").unwrap(), None);
            let pairs = dict_items(&mem, o, int_keyed).unwrap();
            assert_eq!(pairs.len(), 1, "{series:?}");
            assert_eq!(read_int(&mem, o, pairs[0].0), Ok(0x7f00_0000_1000));
            // Not a dict: refused by type.
            assert!(matches!(
                dict_items(&mem, o, items[0].0),
                Err(ObjectError::WrongType { .. })
            ));
        }
    }

    #[test]
    fn corrupt_dicts_are_errors_not_panics() {
        for &series in ALL {
            let mut img = Image::new(series);
            let k = img.string("k");
            let dict = img.dict(&[(k, k)]);
            let o = img.o.clone();
            let (field, bad) = match (o.dict_mask, o.dict_keys) {
                (Some(mask), _) => (dict + mask, u64::MAX),
                (None, Some(keys)) => {
                    let keys_obj = img.mem().read_u64(dict + keys).unwrap();
                    (keys_obj + o.dict_keys_nentries.unwrap(), 1 << 40)
                }
                _ => unreachable!(),
            };
            img.put(field, bad);
            assert!(dict_items(&img.mem(), &o, dict).is_err(), "{series:?}");
            img.put(field, 3);
            let _ = dict_items(&img.mem(), &o, dict);
        }
    }

    /// A `threading.Thread`-like instance with `_name` and one other attribute, laid out as
    /// each version does for a plain Python class.
    fn instance(img: &mut Image, name: Addr, other: Addr, materialised: bool) -> Addr {
        let o = img.o.clone();
        let key_name = img.string("_name");
        let key_other = img.string("_ident");
        let items = [(key_other, other), (key_name, name)];
        match o.instance_dict {
            InstanceDictModel::DictOffset => {
                let dict = match o.dict_values {
                    // 3.8–3.10 instance dicts are split tables: shared keys, own values.
                    Some(values_at) if !materialised => {
                        let dict = img.object(TPFLAGS_DICT_SUBCLASS, 64);
                        let keys = img.keys(&items, true, true);
                        let values = img.values_array(&[other, name]);
                        img.put(dict + o.dict_keys.unwrap(), keys);
                        img.put(dict + values_at, values);
                        dict
                    }
                    _ => img.dict(&items),
                };
                let obj = img.object(0, 32);
                let tp = img.mem().read_u64(obj + o.object_type).unwrap();
                img.put(tp + o.type_dictoffset, 16);
                img.put(obj + 16, dict);
                obj
            }
            model => {
                let inline = model == InstanceDictModel::InlineValues;
                let flags = TPFLAGS_MANAGED_DICT | if inline { TPFLAGS_INLINE_VALUES } else { 0 };
                let obj = img.object(flags, 16 + 8 + 8 * 4);
                let tp = img.mem().read_u64(obj + o.object_type).unwrap();
                let before = o.managed_dict_before.unwrap();
                if materialised {
                    let dict = img.dict(&items);
                    img.put(obj - before, dict);
                    return obj;
                }
                let keys = img.keys(&items, false, true);
                img.put(tp + o.heaptype_cached_keys.unwrap(), keys);
                match model {
                    InstanceDictModel::PreHeader => {
                        let values = img.values_array(&[other, name]);
                        img.put(obj - o.managed_values_before.unwrap(), values);
                    }
                    InstanceDictModel::TaggedPreHeader => {
                        let values = img.values_array(&[other, name]);
                        img.put(obj - before, values - 1);
                    }
                    _ => {
                        // Inline at tp_basicsize (16): header bytes, then the values.
                        let head = o.dict_values_values.unwrap();
                        img.put_u8(obj + 16 + o.dict_values_capacity.unwrap(), 4);
                        img.put_u8(obj + 16 + o.dict_values_valid.unwrap(), 1);
                        img.put(obj + 16 + head, other);
                        img.put(obj + 16 + head + 8, name);
                    }
                }
                obj
            }
        }
    }

    #[test]
    fn instance_attributes_in_every_layout() {
        for &series in ALL {
            for materialised in [false, true] {
                let mut img = Image::new(series);
                let name = img.string("worker-1");
                let other = img.int(42);
                let obj = instance(&mut img, name, other, materialised);
                let mem = img.mem();
                let o = &img.o;
                let found = instance_attr(&mem, o, obj, &["_name", "_Thread__name"]).unwrap();
                assert_eq!(found, Some(name), "{series:?} materialised={materialised}");
                assert_eq!(read_py_string(&mem, o, name).unwrap(), "worker-1");
                assert_eq!(instance_items(&mem, o, obj).unwrap().len(), 2);
                assert_eq!(instance_attr(&mem, o, obj, &["nope"]).unwrap(), None);
            }
        }
    }

    #[test]
    fn preferred_name_wins() {
        let mut img = Image::new((2, 7));
        let (a, b) = (img.string("_Thread__name"), img.string("_name"));
        let (va, vb) = (img.int(1), img.int(2));
        let items = [(a, va), (b, vb)];
        let mem = img.mem();
        assert_eq!(
            find_str_key(&mem, &img.o, &items, &["_name", "_Thread__name"]),
            Some(vb)
        );
        assert_eq!(
            find_str_key(&mem, &img.o, &items[..1], &["_name", "_Thread__name"]),
            Some(va)
        );
    }

    #[test]
    fn inline_values_respect_capacity_and_validity() {
        let mut img = Image::new((3, 13));
        let name = img.string("n");
        let other = img.int(1);
        let obj = instance(&mut img, name, other, false);
        let o = img.o.clone();
        img.put_u8(obj + 16 + o.dict_values_capacity.unwrap(), 1);
        assert_eq!(instance_items(&img.mem(), &o, obj).unwrap().len(), 1);
        img.put_u8(obj + 16 + o.dict_values_valid.unwrap(), 0);
        assert!(instance_items(&img.mem(), &o, obj).unwrap().is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for &series in ALL {
            let o = offsets_for(PyVersion::new(series.0, series.1, 0)).unwrap();
            for _ in 0..300 {
                let bytes: Vec<u8> = (0..4096)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        // Mostly small numbers and in-range pointers, some noise.
                        match state % 4 {
                            0 => (state >> 8) as u8,
                            _ => 0,
                        }
                    })
                    .collect();
                let mem = LocalMemory { base: 0, bytes };
                let at = state % 4096;
                let _ = dict_items(&mem, &o, at);
                let _ = read_int(&mem, &o, at);
                let _ = instance_items(&mem, &o, at);
                let _ = str_matches(&mem, &o, at, &["x"]);
            }
        }
    }
}
