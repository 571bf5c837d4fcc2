//! Reading `str` and `bytes` objects out of the target, in every representation the
//! supported versions use: 2.7 `str`, and PEP 393 compact ASCII, Latin-1, UCS-2, UCS-4.
//! `read_name` is the strict form for the names and file names of code objects.

use super::offsets::{PyOffsets, StringModel};
use super::walk::read_struct;
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory, MAX_STRING_BYTES};

/// Why `read_name` refused an object.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The object's memory was freed (its reference count is the allocator's free-list link
    /// or 0): whatever it names now is not what the code object was sampled with.
    #[error("name object at {0:#x} was freed")]
    Freed(Addr),
    /// Not a well-formed `str`: wrong type, impossible length or representation, or text no
    /// name has (invalid UTF-8).
    #[error("name object at {addr:#x} is not a name: {why}")]
    Invalid { addr: Addr, why: &'static str },
}

/// The offset of `ob_refcnt`: just before `ob_type` in `PyObject_HEAD` (every supported
/// build: no `Py_TRACE_REFS` fields in front).
pub(crate) fn refcnt_offset(o: &PyOffsets) -> u64 {
    o.object_type.saturating_sub(8)
}

/// Whether `refcnt` (the first word of an object) can be a live object's reference count. A
/// live object has at least one reference; 3.12+ immortal counts are at most 32 bits (3.14+
/// keeps flags in the top 16). A block pymalloc or glibc freed holds a free-list pointer
/// there instead (0, or a heap address, whose bits 32..47 are never all clear on x86-64
/// mmap'ed memory), and CPython leaves 0 in an object it deallocated itself.
pub(crate) fn is_live_refcnt(refcnt: u64) -> bool {
    refcnt & 0xffff_ffff != 0 && (refcnt >> 32) & 0xffff == 0
}

/// Whether `addr` can be a `PyObject*` in a user-space process: non-null, pointer-aligned,
/// above the zero page and below the x86-64 user address limit.
pub(crate) fn is_object_addr(addr: Addr) -> bool {
    addr >= 0x1000 && addr < (1 << 47) && addr % 8 == 0
}

/// Read a code object's name or file name, refusing anything that is not a live, well-formed
/// `str` whose text a name can have. `is_str_type` says whether a type object is `str` (the
/// caller caches it). The BPF walk and a user-space read of a running process can both hand
/// us a pointer into memory that was freed and reused (a string local, random bytes): such a
/// name must become an unknown frame, never a function name.
pub fn read_name(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    addr: Addr,
    mut is_str_type: impl FnMut(Addr) -> Result<bool, MemoryError>,
) -> Result<String, NameError> {
    let invalid = |why| NameError::Invalid { addr, why };
    if !is_object_addr(addr) {
        return Err(invalid("not an object address"));
    }
    let refcnt = refcnt_offset(o);
    let text = match o.string_model {
        StringModel::Bytes27 => {
            let head = read_struct(mem, addr, &[refcnt, o.object_type, o.bytes_size])?;
            check_head(
                addr,
                head.u64(refcnt),
                head.u64(o.object_type),
                &mut is_str_type,
            )?;
            let size = head.u64(o.bytes_size);
            if size > MAX_STRING_BYTES as u64 {
                return Err(invalid("too long"));
            }
            // `ob_sval` holds the bytes and a NUL after them.
            let raw = mem.read_bytes(addr + o.bytes_data, size as usize + 1)?;
            if raw[size as usize] != 0 {
                return Err(invalid("no NUL after its bytes"));
            }
            // 2.7 identifiers are ASCII and file names the file system's UTF-8.
            String::from_utf8(raw[..size as usize].to_vec()).map_err(|_| invalid("not UTF-8"))?
        }
        StringModel::Unicode => {
            let head = read_struct(
                mem,
                addr,
                &[refcnt, o.object_type, o.unicode_length, o.unicode_state],
            )?;
            check_head(
                addr,
                head.u64(refcnt),
                head.u64(o.object_type),
                &mut is_str_type,
            )?;
            read_compact(
                mem,
                o,
                addr,
                head.u64(o.unicode_length),
                head.u64(o.unicode_state),
            )?
        }
    };
    // Control characters are not rejected: a live, well-formed `str` may hold them (a hostile
    // or odd program can name a function or thread anything). Garbage is told by the checks
    // above (freed, type, length, representation); text output escapes what a terminal would
    // act on (`crate::escape`).
    Ok(text)
}

fn check_head(
    addr: Addr,
    refcnt: u64,
    ty: Addr,
    is_str_type: &mut impl FnMut(Addr) -> Result<bool, MemoryError>,
) -> Result<(), NameError> {
    if !is_live_refcnt(refcnt) {
        return Err(NameError::Freed(addr));
    }
    if !is_object_addr(ty) || !is_str_type(ty)? {
        return Err(NameError::Invalid {
            addr,
            why: "not a str",
        });
    }
    Ok(())
}

/// The text of a compact `str` (PEP 393) of `length` code points and `state` bits, checked
/// against what CPython guarantees of every such string: a kind of 1, 2 or 4 bytes, the ASCII
/// flag only with kind 1, a NUL after the last code point, and the narrowest kind that holds
/// its largest code point (Latin-1 needs one >= 0x80, UCS-2 one > 0xff, UCS-4 one > 0xffff).
fn read_compact(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    addr: Addr,
    length: u64,
    state: u64,
) -> Result<String, NameError> {
    let invalid = |why| NameError::Invalid { addr, why };
    let state = state as u32;
    let kind = (state >> 2) & 0b111;
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    let width: u64 = match kind {
        1 | 2 | 4 => kind.into(),
        _ => return Err(invalid("unicode kind")),
    };
    if !compact || (ascii && kind != 1) {
        return Err(invalid("unicode representation"));
    }
    if length > MAX_STRING_BYTES as u64 / width {
        return Err(invalid("too long"));
    }
    let data = addr
        + if ascii {
            o.unicode_ascii_data
        } else {
            o.unicode_compact_data
        };
    let raw = mem.read_bytes(data, ((length + 1) * width) as usize)?;
    let (text, nul) = raw.split_at((length * width) as usize);
    if nul.iter().any(|&b| b != 0) {
        return Err(invalid("no NUL after its code points"));
    }
    let max = text
        .chunks_exact(width as usize)
        .map(|c| match c {
            [a] => u32::from(*a),
            [a, b] => u32::from(u16::from_ne_bytes([*a, *b])),
            [a, b, c, d] => u32::from_ne_bytes([*a, *b, *c, *d]),
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let narrowest_ok = match (kind, ascii) {
        (1, true) => max < 0x80,
        (1, false) => max >= 0x80,
        (2, _) => max > 0xff,
        _ => max > 0xffff && max <= 0x10_ffff,
    };
    if length > 0 && !narrowest_ok {
        return Err(invalid("code points do not match its kind"));
    }
    Ok(decode_units(text, width as usize))
}

/// Longest bytes object (line tables) we read from a target.
pub const MAX_BYTES_OBJECT: u64 = 1 << 20;

/// Read a Python text object (`str` on 3.x, `str`/bytes on 2.7) as a Rust string.
pub fn read_py_string(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    addr: Addr,
) -> Result<String, MemoryError> {
    if addr == 0 {
        return Err(MemoryError::Null {
            what: "string object",
        });
    }
    match o.string_model {
        StringModel::Bytes27 => {
            let bytes = read_py_bytes(mem, o, addr, MAX_STRING_BYTES as u64)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        StringModel::Unicode => read_unicode(mem, o, addr),
    }
}

fn read_unicode(mem: &dyn RemoteMemory, o: &PyOffsets, addr: Addr) -> Result<String, MemoryError> {
    let length = mem.read_u64(addr + o.unicode_length)?;
    let state = mem.read_u32(addr + o.unicode_state)?;
    let kind = (state >> 2) & 0b111;
    let compact = (state >> 5) & 1 == 1;
    let ascii = (state >> 6) & 1 == 1;
    let char_size: u64 = match kind {
        1 => 1,
        2 => 2,
        4 => 4,
        _ => {
            return Err(MemoryError::TooLong {
                what: "unicode kind",
                len: kind as u64,
                max: 4,
            })
        }
    };
    if !compact {
        // Legacy (non-compact) strings are never used for code names or file names.
        return Err(MemoryError::TooLong {
            what: "non-compact unicode",
            len: 0,
            max: 0,
        });
    }
    let max_chars = MAX_STRING_BYTES as u64 / char_size;
    if length > max_chars {
        return Err(MemoryError::TooLong {
            what: "string",
            len: length,
            max: max_chars,
        });
    }
    let data = addr
        + if ascii {
            o.unicode_ascii_data
        } else {
            o.unicode_compact_data
        };
    let raw = mem.read_bytes(data, (length * char_size) as usize)?;
    Ok(decode_units(&raw, char_size as usize))
}

/// Decode fixed-width code units (1: Latin-1, 2: UCS-2, 4: UCS-4). Invalid code points become
/// U+FFFD rather than failing: the bytes are untrusted.
pub fn decode_units(raw: &[u8], width: usize) -> String {
    match width {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| char::from_u32(u16::from_ne_bytes([c[0], c[1]]) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
    }
}

/// Read the contents of a `bytes` object (2.7: `str`), refusing sizes above `max`.
pub fn read_py_bytes(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    addr: Addr,
    max: u64,
) -> Result<Vec<u8>, MemoryError> {
    if addr == 0 {
        return Err(MemoryError::Null {
            what: "bytes object",
        });
    }
    let size = mem.read_u64(addr + o.bytes_size)?;
    if size > max {
        return Err(MemoryError::TooLong {
            what: "bytes object",
            len: size,
            max,
        });
    }
    mem.read_bytes(addr + o.bytes_data, size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::objects::tests::Image;

    /// `read_name` of a str made by `make` in a 3.11 and a 2.7 image, its type named `str`.
    fn name_of(series: (u8, u8), make: impl Fn(&mut Image, Addr)) -> Result<String, NameError> {
        let mut img = Image::new(series);
        let obj = img.string("work_fn");
        // (Zeroed memory after it: CPython's NUL terminator.)
        img.alloc(16);
        img.put(obj + refcnt_offset(&img.o), 1);
        let o = img.o.clone();
        let ty = {
            let i = (obj + o.object_type - img.base) as usize;
            u64::from_ne_bytes(img.bytes[i..i + 8].try_into().expect("8 bytes"))
        };
        make(&mut img, obj);
        read_name(&img.mem(), &o, obj, |t| Ok(t == ty))
    }

    #[test]
    fn a_name_must_be_a_live_well_formed_str() {
        for series in [(3, 11), (2, 7)] {
            let unchanged = name_of(series, |_, _| {});
            assert_eq!(unchanged.expect("a valid name"), "work_fn");
            // Freed: a reference count of 0, or a free-list pointer in its place.
            for refcnt in [0, 0x7f12_3456_7890] {
                let freed = name_of(series, |img, obj| {
                    img.put(obj + refcnt_offset(&img.o), refcnt)
                });
                assert!(matches!(freed, Err(NameError::Freed(_))), "{freed:?}");
            }
            // Another type.
            let other = name_of(series, |img, obj| {
                let o = img.o.clone();
                let t = img.alloc(64);
                img.put(obj + o.object_type, t);
            });
            assert!(matches!(other, Err(NameError::Invalid { .. })), "{other:?}");
            // A control character in the text: still a name (escaped where it is printed).
            let control = name_of(series, |img, obj| {
                let o = img.o.clone();
                let data = match o.string_model {
                    StringModel::Bytes27 => o.bytes_data,
                    StringModel::Unicode => o.unicode_ascii_data,
                };
                img.put_u8(obj + data + 2, 0x07);
            });
            assert_eq!(control.expect("a live str with a BEL"), "wo\u{7}k_fn");
            // A length that runs past the NUL (into whatever follows).
            let long = name_of(series, |img, obj| {
                let o = img.o.clone();
                let field = match o.string_model {
                    StringModel::Bytes27 => o.bytes_size,
                    StringModel::Unicode => o.unicode_length,
                };
                img.put(obj + field, 5);
            });
            assert!(matches!(long, Err(NameError::Invalid { .. })), "{long:?}");
        }
        // 3.x: an ASCII flag on a two-byte kind, and a two-byte string of Latin-1 text (CPython
        // always picks the narrowest kind).
        for state in [(2 << 2) | (1 << 5) | (1 << 6), (2 << 2) | (1 << 5)] {
            let bad = name_of((3, 11), |img, obj| {
                let o = img.o.clone();
                let i = (obj + o.unicode_state - img.base) as usize;
                img.bytes[i..i + 4].copy_from_slice(&(state as u32).to_ne_bytes());
            });
            assert!(matches!(bad, Err(NameError::Invalid { .. })), "{bad:?}");
        }
        // UCS-2 text that needs it is fine.
        let mut img = Image::new((3, 11));
        let obj = img.string("計算");
        img.put(obj + refcnt_offset(&img.o), 1);
        let o = img.o.clone();
        assert_eq!(
            read_name(&img.mem(), &o, obj, |_| Ok(true)).expect("UCS-2"),
            "計算"
        );
    }

    #[test]
    fn decodes_every_width() {
        assert_eq!(decode_units(b"caf\xe9", 1), "café");
        let ucs2: Vec<u8> = "計算"
            .encode_utf16()
            .flat_map(|u| u.to_ne_bytes())
            .collect();
        assert_eq!(decode_units(&ucs2, 2), "計算");
        let ucs4: Vec<u8> = "𠀋a"
            .chars()
            .flat_map(|c| (c as u32).to_ne_bytes())
            .collect();
        assert_eq!(decode_units(&ucs4, 4), "𠀋a");
        // A surrogate or out-of-range code point is replaced, not a panic.
        assert_eq!(decode_units(&0x11_0000u32.to_ne_bytes(), 4), "\u{fffd}");
        assert_eq!(decode_units(&[1, 2, 3], 2), "\u{201}");
    }
}
