//! Line numbers from each version's line table. Pure functions over the table's bytes; the
//! tables come from the target and are untrusted, so every loop is bounded by the input and
//! malformed input yields `None` rather than a panic.

use super::offsets::LineTable;

/// Line of the instruction at `position`, where `position` is in the unit the table expects:
/// a byte offset (lnotab), a code-unit index (3.10) or a code-unit index (3.11+ locations).
pub fn line_for(kind: LineTable, table: &[u8], first_line: u32, position: u64) -> Option<u32> {
    let line = match kind {
        LineTable::Lnotab27 => lnotab(table, first_line as i64, position, false),
        LineTable::Lnotab => lnotab(table, first_line as i64, position, true),
        LineTable::Linetable310 => {
            linetable_310(table, first_line as i64, position.checked_mul(2)?)
        }
        LineTable::Locations => locations(table, first_line as i64, position),
    }?;
    u32::try_from(line).ok().filter(|&l| l > 0)
}

/// `co_lnotab`: (byte offset increment, line increment) pairs; signed increments since 3.6.
fn lnotab(table: &[u8], first_line: i64, byte_offset: u64, signed: bool) -> Option<i64> {
    let mut line = first_line;
    let mut addr: u64 = 0;
    for pair in table.chunks_exact(2) {
        addr += pair[0] as u64;
        if addr > byte_offset {
            break;
        }
        line += if signed {
            pair[1] as i8 as i64
        } else {
            pair[1] as i64
        };
    }
    Some(line)
}

/// 3.10 `co_linetable`: (start delta, line delta) pairs; a line delta of -128 means "no line".
fn linetable_310(table: &[u8], first_line: i64, byte_offset: u64) -> Option<i64> {
    let mut line = first_line;
    let mut end: u64 = 0;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += pair[0] as u64;
        let delta = pair[1] as i8;
        let this_line = if delta == -128 {
            None
        } else {
            line += delta as i64;
            Some(line)
        };
        if start <= byte_offset && byte_offset < end {
            return this_line;
        }
    }
    None
}

/// 3.11+ location table (Objects/locations.md): entries of a header byte
/// `1cccclll` (code, length-1 in code units) followed by code-specific varints.
fn locations(table: &[u8], first_line: i64, unit_index: u64) -> Option<i64> {
    let mut pos = 0usize;
    let mut line = first_line;
    let mut addr: u64 = 0;
    while pos < table.len() {
        let header = table[pos];
        pos += 1;
        if header & 0x80 == 0 {
            return None; // Not at an entry start: malformed.
        }
        let code = (header >> 3) & 0x0f;
        let length = (header & 0x07) as u64 + 1;
        let entry_line = match code {
            15 => None, // no location
            14 => {
                let delta = read_svarint(table, &mut pos)?;
                read_varint(table, &mut pos)?; // end line delta
                read_varint(table, &mut pos)?; // column + 1
                read_varint(table, &mut pos)?; // end column + 1
                line += delta;
                Some(line)
            }
            13 => {
                line += read_svarint(table, &mut pos)?;
                Some(line)
            }
            10..=12 => {
                pos += 2; // column, end column
                line += (code - 10) as i64;
                Some(line)
            }
            _ => {
                pos += 1; // short form: column bits
                Some(line)
            }
        };
        if addr <= unit_index && unit_index < addr + length {
            return entry_line;
        }
        addr += length;
    }
    None
}

fn read_varint(table: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *table.get(*pos)?;
        *pos += 1;
        value |= ((byte & 63) as u64) << shift;
        if byte & 64 == 0 {
            return Some(value as i64);
        }
        shift += 6;
        if shift > 60 {
            return None;
        }
    }
}

fn read_svarint(table: &[u8], pos: &mut usize) -> Option<i64> {
    let raw = read_varint(table, pos)?;
    Some(if raw & 1 == 1 { -(raw >> 1) } else { raw >> 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_signed_and_unsigned() {
        // offsets 0..6 -> line 10, 6..20 -> 12, 20.. -> 11 (signed) / 10+2+255 (unsigned)
        let table = [6, 2, 14, 0xff];
        assert_eq!(line_for(LineTable::Lnotab, &table, 10, 0), Some(10));
        assert_eq!(line_for(LineTable::Lnotab, &table, 10, 6), Some(12));
        assert_eq!(line_for(LineTable::Lnotab, &table, 10, 19), Some(12));
        assert_eq!(line_for(LineTable::Lnotab, &table, 10, 20), Some(11));
        assert_eq!(line_for(LineTable::Lnotab27, &table, 10, 20), Some(267));
    }

    #[test]
    fn linetable_310_ranges_and_no_line() {
        // bytes 0..4 line 5 (+0), 4..8 no line, 8..12 line 7 (+2)
        let table = [4, 0, 4, 0x80, 4, 2];
        assert_eq!(line_for(LineTable::Linetable310, &table, 5, 0), Some(5));
        assert_eq!(line_for(LineTable::Linetable310, &table, 5, 1), Some(5));
        assert_eq!(line_for(LineTable::Linetable310, &table, 5, 2), None);
        assert_eq!(line_for(LineTable::Linetable310, &table, 5, 5), Some(7));
        assert_eq!(line_for(LineTable::Linetable310, &table, 5, 6), None);
    }

    #[test]
    fn locations_all_forms() {
        let table = [
            0x80 | (13 << 3) | 0,
            0x02, // 1 unit, one-line-no-column, +1 -> 11
            0x80 | (0 << 3) | 1,
            0x05, // 2 units, short form, line stays 11
            0x80 | (12 << 3),
            4,
            9,                // 1 unit, one-line form +2 -> 13
            0x80 | (15 << 3), // 1 unit, no location
            0x80 | (14 << 3) | 2,
            0x03,
            0,
            1,
            2, // 3 units, long form -1 -> 12
        ];
        let at = |i| line_for(LineTable::Locations, &table, 10, i);
        assert_eq!(at(0), Some(11));
        assert_eq!(at(1), Some(11));
        assert_eq!(at(2), Some(11));
        assert_eq!(at(3), Some(13));
        assert_eq!(at(4), None);
        assert_eq!(at(5), Some(12));
        assert_eq!(at(7), Some(12));
        assert_eq!(at(8), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..200 {
            let table: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 16) as u8
                })
                .collect();
            for kind in [
                LineTable::Lnotab27,
                LineTable::Lnotab,
                LineTable::Linetable310,
                LineTable::Locations,
            ] {
                for pos in [0, 1, 7, 100, u64::MAX / 4] {
                    let _ = line_for(kind, &table, 1, pos);
                }
            }
        }
    }
}
