//! Reading `str` and `bytes` objects out of the target, in every representation the
//! supported versions use: 2.7 `str`, and PEP 393 compact ASCII, Latin-1, UCS-2, UCS-4.

use super::offsets::{PyOffsets, StringModel};
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory, MAX_STRING_BYTES};

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
