//! Which modules are worth DWARF lookups (`--native` symbols): those with debug info of their
//! own or a split debug file this host has, read from the ELF section headers alone; never the
//! profiler's own executable.

use std::path::Path;

/// Whether `path` is this profiler's own executable: `--all` samples the profiler too, and
/// its DWARF (tens of MB in a build with debug info) is not worth loading for it.
pub fn is_own_executable(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    static OWN: std::sync::OnceLock<Option<(u64, u64)>> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| {
        std::fs::metadata("/proc/self/exe")
            .ok()
            .map(|m| (m.dev(), m.ino()))
    });
    std::fs::metadata(path).is_ok_and(|m| Some((m.dev(), m.ino())) == *own)
}

/// Whether the ELF file at `path` has DWARF of its own (`.debug_info`) or a split debug file
/// this host can find: by build id under /usr/lib/debug/.build-id, or by `.gnu_debuglink`
/// beside it, in its `.debug/` directory or under /usr/lib/debug. Reads only the section
/// headers and the few sections named; any inconsistency in the file means no.
pub fn has_debug_info(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    const MAX_SECTIONS: usize = 4096;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let read = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    };
    let u16_at =
        |b: &[u8], at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at =
        |b: &[u8], at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at =
        |b: &[u8], at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    let check = || -> Option<bool> {
        let header = read(0, 64)?;
        // 64-bit little-endian ELF only (x86-64).
        if header.get(..6)? != b"\x7fELF\x02\x01" {
            return Some(false);
        }
        let shoff = u64_at(&header, 0x28)?;
        let shentsize = usize::from(u16_at(&header, 0x3a)?);
        let shnum = usize::from(u16_at(&header, 0x3c)?);
        let shstrndx = usize::from(u16_at(&header, 0x3e)?);
        if shentsize < 64 || shnum == 0 || shnum > MAX_SECTIONS || shstrndx >= shnum {
            return Some(false);
        }
        let table = read(shoff, shnum.checked_mul(shentsize)?)?;
        let section = |i: usize| -> Option<(u32, u64, u64)> {
            let at = i.checked_mul(shentsize)?;
            // (name offset, file offset, size)
            Some((
                u32_at(&table, at)?,
                u64_at(&table, at + 0x18)?,
                u64_at(&table, at + 0x20)?,
            ))
        };
        let (_, names_at, names_len) = section(shstrndx)?;
        let names = read(names_at, usize::try_from(names_len).ok()?.min(1 << 20))?;
        let name_of = |offset: u32| -> Option<&[u8]> {
            let rest = names.get(offset as usize..)?;
            Some(&rest[..rest.iter().position(|&b| b == 0)?])
        };
        let dir = path.parent()?;
        for i in 0..shnum {
            let (name, at, len) = section(i)?;
            let len = usize::try_from(len).ok()?;
            match name_of(name)? {
                b".debug_info" => return Some(true),
                b".gnu_debuglink" => {
                    let link = read(at, len.min(4096))?;
                    let file =
                        std::str::from_utf8(&link[..link.iter().position(|&b| b == 0)?]).ok()?;
                    let debug_dir =
                        Path::new("/usr/lib/debug").join(dir.strip_prefix("/").unwrap_or(dir));
                    if [
                        dir.join(file),
                        dir.join(".debug").join(file),
                        debug_dir.join(file),
                    ]
                    .iter()
                    .any(|p| p.is_file())
                    {
                        return Some(true);
                    }
                }
                b".note.gnu.build-id" => {
                    // Note header (name size, desc size, type), "GNU\0", then the id.
                    let note = read(at, len.min(256))?;
                    let id = note.get(16..16 + u32_at(&note, 4)? as usize)?;
                    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                    if hex.len() > 2 {
                        let p =
                            format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
                        if Path::new(&p).is_file() {
                            return Some(true);
                        }
                    }
                }
                _ => {}
            }
        }
        Some(false)
    };
    check().unwrap_or(false)
}
