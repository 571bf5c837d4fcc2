//! Parsing `/proc/PID/maps`.

use std::path::{Path, PathBuf};

use crate::model::Addr;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRange {
    pub start: Addr,
    pub end: Addr,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    pub offset: u64,
    pub inode: u64,
    /// The mapped path as the target sees it, if file-backed.
    pub pathname: Option<PathBuf>,
}

impl MapRange {
    pub fn contains(&self, addr: Addr) -> bool {
        self.start <= addr && addr < self.end
    }

    pub fn size(&self) -> u64 {
        self.end - self.start
    }

    /// The file name of the mapped path (`libpython3.11.so.1.0`).
    pub fn file_name(&self) -> Option<&str> {
        self.pathname.as_ref()?.file_name()?.to_str()
    }
}

/// As a maps line (the device is not kept: 00:00).
impl std::fmt::Display for MapRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = |on: bool, c: char| if on { c } else { '-' };
        write!(
            f,
            "{:x}-{:x} {}{}{}p {:08x} 00:00 {} {}",
            self.start,
            self.end,
            flag(self.readable, 'r'),
            flag(self.writable, 'w'),
            flag(self.executable, 'x'),
            self.offset,
            self.inode,
            self.pathname.as_deref().unwrap_or(Path::new("")).display()
        )
    }
}

/// Serialised as its maps line (a snapshot fixture keeps the maps attaching read).
impl serde::Serialize for MapRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MapRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MapRange, D::Error> {
        let line = String::deserialize(d)?;
        parse_line(&line)
            .ok_or_else(|| serde::de::Error::custom(format!("not a maps line: {line}")))
    }
}

/// Parse the text of a maps file. Malformed lines are skipped, never fatal.
pub fn parse_maps(text: &str) -> Vec<MapRange> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MapRange> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?.as_bytes();
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().map(str::trim_start).unwrap_or("");
    let (start, end) = range.split_once('-')?;
    if perms.len() < 3 {
        return None;
    }
    let pathname = if path.starts_with('/') {
        // " (deleted)" marks a file replaced on disk; the mapping is still the old file.
        Some(PathBuf::from(
            path.strip_suffix(" (deleted)").unwrap_or(path),
        ))
    } else {
        None
    };
    Some(MapRange {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        readable: perms[0] == b'r',
        writable: perms[1] == b'w',
        executable: perms[2] == b'x',
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        pathname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_anonymous_mappings() {
        let text = "\
00400000-00401000 r--p 00000000 fe:01 123 /usr/bin/python3.11
7f00-8f00 rw-p 00000000 00:00 0
7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]
55d0-55e0 r-xp 00001000 fe:01 99 /tmp/my lib.so (deleted)
garbage line
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 4);
        assert_eq!(maps[0].start, 0x400000);
        assert_eq!(maps[0].file_name(), Some("python3.11"));
        assert!(maps[1].pathname.is_none() && maps[1].writable);
        assert!(maps[2].pathname.is_none());
        assert_eq!(
            maps[3].pathname.as_deref(),
            Some(std::path::Path::new("/tmp/my lib.so"))
        );
        assert!(maps[3].executable && maps[3].offset == 0x1000);
        for m in &maps {
            assert_eq!(parse_line(&m.to_string()).as_ref(), Some(m), "{m}");
        }
    }
}
