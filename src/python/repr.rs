//! Safe, bounded `repr()`s of objects in the target, for `dump --locals`: `None`, `bool`,
//! `int` (any size), `float`, `str`, `bytes`, the lengths (and with more detail the first
//! items) of `list`, `tuple`, `dict` and `set`, and `<TYPE at 0x...>` for anything else.
//!
//! Nothing here trusts the target: every length is capped before it is read, nesting is
//! capped, and an unreadable object becomes a `<... at 0x...>` text, never an error or panic.

use super::objects::{
    dict_items, long_digits_to_decimal, read_big_int, read_int, sequence_items, type_flags,
    type_of, BigInt, ObjectError, TPFLAGS_BYTES_SUBCLASS, TPFLAGS_DICT_SUBCLASS,
    TPFLAGS_INT_SUBCLASS, TPFLAGS_LIST_SUBCLASS, TPFLAGS_LONG_SUBCLASS, TPFLAGS_TUPLE_SUBCLASS,
    TPFLAGS_UNICODE_SUBCLASS,
};
use super::offsets::{PyOffsets, StringModel};
use super::strings::decode_units;
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory};

/// Longest type name read (`tp_name`).
const MAX_TYPE_NAME: usize = 128;
/// Most int digits (30 bits each) read: about 2,300 decimal digits.
const MAX_INT_DIGITS: u64 = 256;

/// How much to show: `dump -l` is detail 1, `-ll` detail 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReprLimits {
    /// Characters (or bytes) of a string shown before it is cut.
    pub max_chars: u64,
    /// Decimal digits of an int shown before it is cut.
    pub max_int_digits: usize,
    /// Items of a container shown (0: only its length).
    pub max_items: u64,
    /// Containers nested inside a shown container.
    pub max_depth: u32,
}

impl ReprLimits {
    pub fn for_detail(detail: u8) -> ReprLimits {
        if detail <= 1 {
            ReprLimits {
                max_chars: 64,
                max_int_digits: 40,
                max_items: 0,
                max_depth: 0,
            }
        } else {
            ReprLimits {
                max_chars: 256,
                max_int_digits: 200,
                max_items: 8,
                max_depth: 2,
            }
        }
    }
}

/// A value as shown to the user: its type name and its bounded repr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub type_name: String,
    pub repr: String,
}

/// The bounded repr of the object at `obj`. Never fails: an unreadable object says so.
pub fn repr_object(mem: &dyn RemoteMemory, o: &PyOffsets, obj: Addr, limits: ReprLimits) -> Repr {
    repr_at(mem, o, obj, limits, 0)
}

/// The `tp_name` of an object's type.
pub fn type_name(mem: &dyn RemoteMemory, o: &PyOffsets, obj: Addr) -> Result<String, ObjectError> {
    let tp = type_of(mem, o, obj)?;
    let name = mem.read_ptr(tp.checked_add(o.type_name).unwrap_or(0), "tp_name")?;
    Ok(mem.read_c_string(name, MAX_TYPE_NAME)?)
}

fn repr_at(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    limits: ReprLimits,
    depth: u32,
) -> Repr {
    if obj == 0 {
        return Repr {
            type_name: "?".into(),
            repr: "<NULL>".into(),
        };
    }
    let type_name = match type_name(mem, o, obj) {
        Ok(name) => name,
        Err(_) => {
            return Repr {
                type_name: "?".into(),
                repr: format!("<unreadable object at {obj:#x}>"),
            }
        }
    };
    let repr = value_repr(mem, o, obj, &type_name, limits, depth)
        .unwrap_or_else(|_| format!("<{type_name} at {obj:#x}>"));
    Repr { type_name, repr }
}

fn value_repr(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    type_name: &str,
    limits: ReprLimits,
    depth: u32,
) -> Result<String, ObjectError> {
    match type_name {
        "NoneType" => return Ok("None".into()),
        "bool" => {
            return Ok(if read_int(mem, o, obj)? != 0 {
                "True"
            } else {
                "False"
            }
            .into())
        }
        "float" => {
            let bits = mem.read_u64(obj.checked_add(o.float_value).unwrap_or(0))?;
            return Ok(float_repr(f64::from_bits(bits)));
        }
        "set" | "frozenset" => {
            let used = mem.read_u64(obj.checked_add(o.set_used).unwrap_or(0))?;
            return Ok(match (used as i64, type_name) {
                (0, "set") => "set()".into(),
                (0, _) => "frozenset()".into(),
                (n, _) if n < 0 => return Err(malformed("set used", obj, used)),
                (n, _) => format!("{{...}} ({})", items(n as u64)),
            });
        }
        "cell" if depth == 0 => {
            let inner = mem.read_u64(obj.checked_add(o.cell_ref).unwrap_or(0))?;
            if inner == 0 {
                return Ok("<empty cell>".into());
            }
            return Ok(repr_at(mem, o, inner, limits, depth + 1).repr);
        }
        _ => {}
    }
    let flags = type_flags(mem, o, obj)?;
    if flags & (TPFLAGS_LONG_SUBCLASS | TPFLAGS_INT_SUBCLASS) != 0 {
        return int_repr(mem, o, obj, limits);
    }
    if flags & TPFLAGS_UNICODE_SUBCLASS != 0 {
        let (text, len) = read_text(mem, o, obj, limits.max_chars)?;
        let prefix = if o.string_model == StringModel::Bytes27 {
            "u"
        } else {
            ""
        };
        return Ok(cut(
            format!("{prefix}{}", quote_str(&text)),
            len,
            limits.max_chars,
            "chars",
        ));
    }
    if flags & TPFLAGS_BYTES_SUBCLASS != 0 {
        let (bytes, len) = read_bytes_prefix(mem, o, obj, limits.max_chars)?;
        // 2.7's `str` is the bytes type, and is shown as Python 2 shows it: without a `b`.
        let prefix = if o.string_model == StringModel::Bytes27 {
            ""
        } else {
            "b"
        };
        return Ok(cut(
            format!("{prefix}{}", quote_bytes(&bytes)),
            len,
            limits.max_chars,
            "bytes",
        ));
    }
    if flags & (TPFLAGS_LIST_SUBCLASS | TPFLAGS_TUPLE_SUBCLASS) != 0 {
        let tuple = flags & TPFLAGS_TUPLE_SUBCLASS != 0;
        let (open, close) = if tuple { ("(", ")") } else { ("[", "]") };
        let show = if depth < limits.max_depth {
            limits.max_items
        } else {
            0
        };
        let (elements, len) = sequence_items(mem, o, obj, show)?;
        if len == 0 {
            return Ok(format!("{open}{close}"));
        }
        let shown: Vec<String> = elements
            .iter()
            .map(|&e| repr_at(mem, o, e, limits, depth + 1).repr)
            .collect();
        let trailing = if tuple && len == 1 && shown.len() == 1 {
            ","
        } else {
            ""
        };
        return Ok(container(open, close, &shown, trailing, len));
    }
    if flags & TPFLAGS_DICT_SUBCLASS != 0 {
        let used = mem.read_u64(obj.checked_add(o.dict_used).unwrap_or(0))?;
        if (used as i64) < 0 {
            return Err(malformed("ma_used", obj, used));
        }
        if used == 0 {
            return Ok("{}".into());
        }
        let show = if depth < limits.max_depth {
            limits.max_items
        } else {
            0
        };
        let shown: Vec<String> = if show > 0 && used <= show {
            dict_items(mem, o, obj)?
                .into_iter()
                .take(show as usize)
                .map(|(k, v)| {
                    let k = repr_at(mem, o, k, limits, depth + 1).repr;
                    let v = repr_at(mem, o, v, limits, depth + 1).repr;
                    format!("{k}: {v}")
                })
                .collect()
        } else {
            Vec::new()
        };
        return Ok(container("{", "}", &shown, "", used));
    }
    Ok(format!("<{type_name} at {obj:#x}>"))
}

fn malformed(what: &'static str, addr: Addr, value: u64) -> ObjectError {
    ObjectError::Malformed { what, addr, value }
}

fn items(n: u64) -> String {
    if n == 1 {
        "1 item".into()
    } else {
        format!("{n} items")
    }
}

/// `[a, b]` when every item is shown, else `[a, b, ...] (N items)` / `[...] (N items)`.
fn container(open: &str, close: &str, shown: &[String], trailing: &str, len: u64) -> String {
    if shown.len() as u64 == len {
        return format!("{open}{}{trailing}{close}", shown.join(", "));
    }
    let mut parts: Vec<&str> = shown.iter().map(String::as_str).collect();
    parts.push("...");
    format!("{open}{}{close} ({})", parts.join(", "), items(len))
}

/// `text` if the whole value was shown, else `text... (N units)`.
fn cut(text: String, len: u64, max: u64, unit: &str) -> String {
    if len <= max {
        text
    } else {
        format!("{text}... ({len} {unit})")
    }
}

fn int_repr(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    limits: ReprLimits,
) -> Result<String, ObjectError> {
    match read_big_int(mem, o, obj, MAX_INT_DIGITS)? {
        BigInt::Small(v) => Ok(v.to_string()),
        BigInt::Digits { negative, digits } => {
            let text = long_digits_to_decimal(&digits, negative)
                .ok_or_else(|| malformed("int digit", obj, digits.len() as u64))?;
            let ndigits = text.trim_start_matches('-').len();
            if ndigits <= limits.max_int_digits {
                return Ok(text);
            }
            let keep = limits.max_int_digits + usize::from(negative);
            Ok(format!("{}... ({ndigits} digits)", &text[..keep]))
        }
        BigInt::TooBig { negative, ndigits } => {
            // log10(2^30) = 9.03 decimal digits per 30-bit digit.
            let approx = ndigits.saturating_mul(903) / 100;
            let sign = if negative { "negative " } else { "" };
            Ok(format!("<{sign}int with about {approx} digits>"))
        }
    }
}

/// Python's `repr(float)` for the common cases: shortest round-trip digits, `.0` on whole
/// numbers, `inf`/`nan`, and exponents as `1e+20`.
pub fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        let text = format!("{v:e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.unsigned_abs());
    }
    format!("{v:?}")
}

/// A string as Python 3 quotes it: `'...'`, with `\\`, `\'`, `\n`, `\r`, `\t` and other
/// control characters escaped; printable non-ASCII text stays as it is.
pub fn quote_str(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Bytes as Python quotes them: printable ASCII as is, the rest as `\xNN`.
pub fn quote_bytes(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push(quote as char);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote as char);
    out
}

/// The first `max` characters of a text object (3.x `str`, 2.7 `unicode`) and its length.
fn read_text(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    max: u64,
) -> Result<(String, u64), ObjectError> {
    let at = |off: u64| obj.checked_add(off).ok_or(malformed("str", obj, off));
    if o.string_model == StringModel::Bytes27 {
        let (Some(len_at), Some(data_at), Some(width)) =
            (o.unicode27_length, o.unicode27_data, o.unicode27_char_size)
        else {
            return Err(ObjectError::Unsupported { what: "unicode" });
        };
        let len = mem.read_u64(at(len_at)?)?;
        if (len as i64) < 0 || !matches!(width, 2 | 4) {
            return Err(malformed("unicode length", obj, len));
        }
        let data = mem.read_u64(at(data_at)?)?;
        let n = len.min(max);
        let raw = mem.read_bytes(data, (n * width) as usize)?;
        return Ok((decode_units(&raw, width as usize), len));
    }
    let len = mem.read_u64(at(o.unicode_length)?)?;
    let state = mem.read_u32(at(o.unicode_state)?)?;
    let kind = u64::from((state >> 2) & 0b111);
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    if !matches!(kind, 1 | 2 | 4) || (len as i64) < 0 {
        return Err(malformed("unicode state", obj, u64::from(state)));
    }
    if !compact {
        // Legacy strings (3.8–3.11 C API only) keep their data elsewhere: not shown.
        return Err(ObjectError::Unsupported {
            what: "non-compact str",
        });
    }
    let data = at(if ascii {
        o.unicode_ascii_data
    } else {
        o.unicode_compact_data
    })?;
    let n = len.min(max);
    let raw = mem.read_bytes(data, (n * kind) as usize)?;
    Ok((decode_units(&raw, kind as usize), len))
}

/// The first `max` bytes of a bytes object (2.7 `str`) and its length.
fn read_bytes_prefix(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    obj: Addr,
    max: u64,
) -> Result<(Vec<u8>, u64), ObjectError> {
    let len = mem.read_u64(obj.checked_add(o.bytes_size).unwrap_or(0))?;
    if (len as i64) < 0 {
        return Err(malformed("bytes size", obj, len));
    }
    let data = obj
        .checked_add(o.bytes_data)
        .ok_or(MemoryError::Null { what: "bytes" })?;
    Ok((mem.read_bytes(data, len.min(max) as usize)?, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PyVersion;
    use crate::process::memory::LocalMemory;
    use crate::python::offsets::offsets_for;

    #[test]
    fn floats_read_like_python() {
        assert_eq!(float_repr(3.5), "3.5");
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(-0.25), "-0.25");
        assert_eq!(float_repr(0.1), "0.1");
        assert_eq!(float_repr(1e20), "1e+20");
        assert_eq!(float_repr(1.5e-7), "1.5e-07");
        assert_eq!(float_repr(f64::INFINITY), "inf");
        assert_eq!(float_repr(f64::NAN), "nan");
    }

    #[test]
    fn strings_are_quoted_like_python() {
        assert_eq!(quote_str("hello"), "'hello'");
        assert_eq!(quote_str("héllo 計算 𠀋"), "'héllo 計算 𠀋'");
        assert_eq!(quote_str("it's"), "\"it's\"");
        assert_eq!(quote_str("a'\"b"), "'a\\'\"b'");
        assert_eq!(quote_str("a\nb\\\u{1}"), "'a\\nb\\\\\\x01'");
        assert_eq!(quote_bytes(b"raw"), "'raw'");
        assert_eq!(quote_bytes(b"\x00\xffz"), "'\\x00\\xffz'");
    }

    #[test]
    fn containers_and_cuts() {
        assert_eq!(container("[", "]", &[], "", 3), "[...] (3 items)");
        let shown = vec!["1".to_string(), "2".to_string()];
        assert_eq!(container("[", "]", &shown, "", 2), "[1, 2]");
        assert_eq!(container("(", ")", &shown, "", 5), "(1, 2, ...) (5 items)");
        assert_eq!(container("(", ")", &shown[..1], ",", 1), "(1,)");
        assert_eq!(cut("'ab'".into(), 2, 2, "chars"), "'ab'");
        assert_eq!(cut("'ab'".into(), 9, 2, "chars"), "'ab'... (9 chars)");
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for series in [(2, 7), (3, 9), (3, 11), (3, 12), (3, 14)] {
            let o = offsets_for(PyVersion::new(series.0, series.1, 0)).unwrap();
            for _ in 0..300 {
                let bytes: Vec<u8> = (0..4096)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        match state % 3 {
                            0 => (state >> 8) as u8,
                            _ => 0,
                        }
                    })
                    .collect();
                let mem = LocalMemory { base: 0, bytes };
                let at = state % 4096;
                for detail in [1, 2] {
                    let _ = repr_object(&mem, &o, at, ReprLimits::for_detail(detail));
                }
            }
        }
    }
}
