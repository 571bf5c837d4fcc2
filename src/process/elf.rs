//! The few things we need from an ELF binary: selected symbol addresses, its PT_LOAD segments
//! (to compute the load bias of a mapping) and a scan of its bytes for a version string.
//!
//! Only the parts that hold these are read (headers, symbol and string tables, `.rodata` for
//! the version scan): an interpreter binary is 5-30 MiB, and reading all of it was most of the
//! cost of attaching to the first process of each interpreter.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use goblin::container::Ctx;
use goblin::elf::section_header::{SHT_DYNSYM, SHT_SYMTAB};
use goblin::elf::sym::Symtab;
use goblin::elf::{program_header::PT_LOAD, Elf, ProgramHeader, SectionHeader};
use goblin::strtab::Strtab;

use super::maps::MapRange;
use super::version_scan::scan_versions;
use crate::byte_lru::{evictions, ByteLru};
use crate::model::Addr;

/// Bound on the parsed images kept across processes (they hold only the symbols asked for:
/// a few KiB each).
const MAX_CACHED_IMAGE_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid ELF file: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// A parsed binary: the symbols we asked for (unrelocated addresses) and its load segments.
/// Serialisable: a snapshot fixture keeps the images attaching looked at (`RecordedFacts`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ElfImage {
    pub path: PathBuf,
    /// Symbol name -> (address as linked, size).
    pub symbols: HashMap<String, (u64, u64)>,
    /// PT_LOAD segments as (file offset, virtual address).
    pub load_segments: Vec<(u64, u64)>,
    /// The entry point as linked (`e_entry`): with the process's `AT_ENTRY` it gives the load
    /// bias of its executable without reading `/proc/PID/maps`.
    pub entry: u64,
    /// Every NUL-delimited `MAJOR.MINOR.PATCH` literal (2.x/3.x) found in the file.
    versions: Vec<(u8, u8, u8)>,
}

impl ElfImage {
    /// Parse `path` and keep the addresses of the symbols named in `wanted` (from `.dynsym`
    /// and, when the binary is not stripped, `.symtab`).
    /// `scan_versions_if` decides, from the symbols found, whether the file is worth a pass
    /// looking for version literals (`find_version_patch`).
    pub fn load(
        path: &Path,
        wanted: &[&str],
        scan_versions_if: fn(&HashMap<String, (u64, u64)>) -> bool,
    ) -> Result<ElfImage, ElfError> {
        let file = File::open(path).map_err(|source| ElfError::Io {
            path: path.into(),
            source,
        })?;
        match load_parts(&file, wanted, scan_versions_if) {
            Ok(Some(image)) => Ok(ElfImage {
                path: path.into(),
                ..image
            }),
            // No section headers (the tables are then found through the dynamic segment),
            // or headers that point outside the file: the whole-file parse decides.
            Ok(None) | Err(_) => ElfImage::load_whole(path, wanted, scan_versions_if),
        }
    }

    /// `load` from the whole file read into memory.
    fn load_whole(
        path: &Path,
        wanted: &[&str],
        scan_versions_if: fn(&HashMap<String, (u64, u64)>) -> bool,
    ) -> Result<ElfImage, ElfError> {
        let bytes = std::fs::read(path).map_err(|source| ElfError::Io {
            path: path.into(),
            source,
        })?;
        let elf = Elf::parse(&bytes).map_err(|e| ElfError::Parse {
            path: path.into(),
            reason: e.to_string(),
        })?;
        let mut symbols = HashMap::new();
        let tables = [(&elf.dynsyms, &elf.dynstrtab), (&elf.syms, &elf.strtab)];
        for (syms, strtab) in tables {
            keep_wanted(syms, strtab, wanted, &mut symbols);
        }
        let load_segments = load_segments(&elf.program_headers);
        let entry = elf.entry;
        drop(elf);
        let versions = if scan_versions_if(&symbols) {
            scan_versions(&bytes)
        } else {
            Vec::new()
        };
        Ok(ElfImage {
            path: path.into(),
            symbols,
            load_segments,
            entry,
            versions,
        })
    }

    /// `load`, cached by the file's identity (device, inode, size, modification time): every
    /// process of one interpreter shares its binary, and host-wide profiling attaches to many.
    /// The cache does not key on the arguments: every caller must pass the same ones.
    pub fn load_cached(
        path: &Path,
        wanted: &'static [&'static str],
        scan_versions_if: fn(&HashMap<String, (u64, u64)>) -> bool,
    ) -> Result<Arc<ElfImage>, ElfError> {
        use std::os::unix::fs::MetadataExt;
        type Key = (u64, u64, u64, i64);
        static CACHE: Mutex<Option<ByteLru<Key, Arc<ElfImage>>>> = Mutex::new(None);
        let meta = std::fs::metadata(path).map_err(|source| ElfError::Io {
            path: path.into(),
            source,
        })?;
        let key = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
        if let Some(image) = CACHE
            .lock()
            .ok()
            .and_then(|mut c| c.as_mut()?.get(&key).cloned())
        {
            return Ok(image);
        }
        let started = std::time::Instant::now();
        let image = Arc::new(ElfImage::load(path, wanted, scan_versions_if)?);
        log::debug!(
            "{}: {} of {} symbols, version scan {}, in {:?}",
            path.display(),
            image.symbols.len(),
            wanted.len(),
            if image.versions.is_empty() {
                "no"
            } else {
                "yes"
            },
            started.elapsed()
        );
        if let Ok(mut cache) = CACHE.lock() {
            // Bounded in bytes: a long host-wide run meets many binaries (each version of
            // each interpreter, every embedding program); the least recently used go.
            let map = cache.get_or_insert_with(|| ByteLru::new(MAX_CACHED_IMAGE_BYTES));
            let evicted = map.insert(key, image.clone(), image.heap_bytes());
            evictions::ELF_IMAGES.add(evicted.len() as u64);
        }
        Ok(image)
    }

    /// What the image holds in memory, roughly (the cache's unit).
    pub fn heap_bytes(&self) -> usize {
        const PER_ENTRY: usize = 64; // hash map slot + String header + (u64, u64)
        std::mem::size_of::<Self>()
            + self.path.as_os_str().len()
            + self
                .symbols
                .keys()
                .map(|name| name.len() + PER_ENTRY)
                .sum::<usize>()
            + self.load_segments.len() * 16
            + self.versions.len() * 3
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).map(|&(addr, _)| addr)
    }

    /// Difference between where the file is mapped in the target and where it was linked,
    /// found by matching a mapping's file offset with a PT_LOAD segment. 0 for non-PIE
    /// executables; `None` if no mapping matches.
    pub fn load_bias(&self, mappings: &[&MapRange]) -> Option<Addr> {
        const PAGE: u64 = 4096;
        for map in mappings {
            for &(p_offset, p_vaddr) in &self.load_segments {
                if p_offset & !(PAGE - 1) == map.offset {
                    return Some(map.start.wrapping_sub(p_vaddr & !(PAGE - 1)));
                }
            }
        }
        None
    }

    /// The patch number of a NUL-terminated `MAJOR.MINOR.PATCH` string (CPython's
    /// `PY_VERSION` literal, possibly with a suffix such as `rc1` or `+`) for the series.
    pub fn find_version_patch(&self, major: u8, minor: u8) -> Option<u8> {
        self.versions
            .iter()
            .find(|v| v.0 == major && v.1 == minor)
            .map(|v| v.2)
    }
}

/// `ElfImage::load` from the parts of `file` it needs. `Ok(None)` when the file has no section
/// headers; `Err` for anything malformed (the caller then parses the whole file, which reports
/// the error or copes).
fn load_parts(
    file: &File,
    wanted: &[&str],
    scan_versions_if: fn(&HashMap<String, (u64, u64)>) -> bool,
) -> Result<Option<ElfImage>, Box<dyn std::error::Error>> {
    let size = file.metadata()?.len();
    let read_at = |offset: u64, len: u64| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        if offset.checked_add(len).map_or(true, |end| end > size) {
            return Err(format!("{len} bytes at {offset:#x} are outside the file").into());
        }
        let mut buf = vec![0u8; usize::try_from(len)?];
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    };
    let header = Elf::parse_header(&read_at(0, size.min(64))?)?;
    let ctx = Ctx::new(header.container()?, header.endianness()?);
    if header.e_shoff == 0 || header.e_shnum == 0 {
        return Ok(None);
    }
    let phdrs = read_at(
        header.e_phoff,
        u64::from(header.e_phnum) * u64::from(header.e_phentsize),
    )?;
    let phdrs = ProgramHeader::parse(&phdrs, 0, usize::from(header.e_phnum), ctx)?;
    let shdrs = read_at(
        header.e_shoff,
        u64::from(header.e_shnum) * u64::from(header.e_shentsize),
    )?;
    let shdrs = SectionHeader::parse_from(&shdrs, 0, usize::from(header.e_shnum), ctx)?;

    let mut symbols = HashMap::new();
    // `.dynsym` first, as the whole-file parse does: where both tables name a symbol, the
    // dynamic one wins.
    for kind in [SHT_DYNSYM, SHT_SYMTAB] {
        let Some(table) = shdrs.iter().find(|sh| sh.sh_type == kind) else {
            continue;
        };
        let names = shdrs
            .get(table.sh_link as usize)
            .ok_or("a symbol table links to no string table")?;
        let syms = read_at(table.sh_offset, table.sh_size)?;
        let syms = Symtab::parse(&syms, 0, syms.len() / sym_entry_size(ctx), ctx)?;
        let strings = read_at(names.sh_offset, names.sh_size)?;
        let strings = Strtab::parse(&strings, 0, strings.len(), 0)?;
        keep_wanted(&syms, &strings, wanted, &mut symbols);
    }
    let versions = if scan_versions_if(&symbols) {
        // `PY_VERSION` is a string literal, so in `.rodata`; the whole file when that has none.
        let section_names = shdrs
            .get(usize::from(header.e_shstrndx))
            .map(|sh| read_at(sh.sh_offset, sh.sh_size))
            .transpose()?;
        let rodata = section_names.as_deref().and_then(|names| {
            shdrs.iter().find(|sh| {
                let name = names.get(sh.sh_name..).unwrap_or_default();
                name.starts_with(b".rodata\0")
            })
        });
        let found = match rodata {
            Some(sh) => scan_versions(&read_at(sh.sh_offset, sh.sh_size)?),
            None => Vec::new(),
        };
        if found.is_empty() {
            scan_versions(&read_at(0, size)?)
        } else {
            found
        }
    } else {
        Vec::new()
    };
    Ok(Some(ElfImage {
        path: PathBuf::new(),
        symbols,
        load_segments: load_segments(&phdrs),
        entry: header.e_entry,
        versions,
    }))
}

/// Where section `name` (e.g. `.AsyncioDebug`) of the ELF file `path` is linked, as
/// (address, size); `None` when the file has no such section. Reads only the headers and the
/// section-name table: sections that CPython fills for out-of-process tools have no symbol
/// in stripped builds, only their section name.
pub fn section_range(path: &Path, name: &str) -> Result<Option<(u64, u64)>, ElfError> {
    let parse = |reason: String| ElfError::Parse {
        path: path.into(),
        reason,
    };
    let file = File::open(path).map_err(|source| ElfError::Io {
        path: path.into(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| ElfError::Io {
            path: path.into(),
            source,
        })?
        .len();
    let read_at = |offset: u64, len: u64| -> Result<Vec<u8>, ElfError> {
        if offset.checked_add(len).is_none_or(|end| end > size) || len > 64 << 20 {
            return Err(parse(format!(
                "{len} bytes at {offset:#x} are outside the file"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(|source| ElfError::Io {
                path: path.into(),
                source,
            })?;
        Ok(buf)
    };
    let header = Elf::parse_header(&read_at(0, size.min(64))?).map_err(|e| parse(e.to_string()))?;
    let ctx = Ctx::new(
        header.container().map_err(|e| parse(e.to_string()))?,
        header.endianness().map_err(|e| parse(e.to_string()))?,
    );
    if header.e_shoff == 0 || header.e_shnum == 0 {
        return Ok(None);
    }
    let shdrs = read_at(
        header.e_shoff,
        u64::from(header.e_shnum) * u64::from(header.e_shentsize),
    )?;
    let shdrs = SectionHeader::parse_from(&shdrs, 0, usize::from(header.e_shnum), ctx)
        .map_err(|e| parse(e.to_string()))?;
    let Some(names) = shdrs.get(usize::from(header.e_shstrndx)) else {
        return Ok(None);
    };
    let names = read_at(names.sh_offset, names.sh_size)?;
    let wanted = [name.as_bytes(), b"\0"].concat();
    Ok(shdrs
        .iter()
        .find(|sh| {
            names
                .get(sh.sh_name..)
                .is_some_and(|n| n.starts_with(&wanted))
        })
        .map(|sh| (sh.sh_addr, sh.sh_size)))
}

/// Size of one symbol table entry: 24 bytes in ELF64, 16 in ELF32.
fn sym_entry_size(ctx: Ctx) -> usize {
    if ctx.container.is_big() {
        24
    } else {
        16
    }
}

/// Add the symbols of `syms` named in `wanted` to `out` (a name already there is kept).
fn keep_wanted(
    syms: &Symtab,
    strtab: &Strtab,
    wanted: &[&str],
    out: &mut HashMap<String, (u64, u64)>,
) {
    for sym in syms.iter() {
        if sym.st_value == 0 {
            continue;
        }
        if let Some(name) = strtab.get_at(sym.st_name) {
            if wanted.contains(&name) {
                out.entry(name.to_string())
                    .or_insert((sym.st_value, sym.st_size));
            }
        }
    }
}

/// PT_LOAD segments as (file offset, virtual address).
fn load_segments(phdrs: &[ProgramHeader]) -> Vec<(u64, u64)> {
    phdrs
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD)
        .map(|ph| (ph.p_offset, ph.p_vaddr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_section_by_name() {
        let exe = std::env::current_exe().unwrap();
        let text = section_range(&exe, ".text").unwrap().expect(".text");
        assert!(text.0 > 0 && text.1 > 0);
        assert_eq!(section_range(&exe, ".no_such_section").unwrap(), None);
        // A prefix of a name is not the name.
        assert_eq!(section_range(&exe, ".tex").unwrap(), None);
    }

    #[test]
    fn finds_symbols_and_bias_of_own_binary() {
        let exe = std::env::current_exe().unwrap();
        let img = ElfImage::load(&exe, &["main"], |_| false).unwrap();
        assert!(!img.load_segments.is_empty());
        let maps = crate::process::proc::maps(std::process::id()).unwrap();
        let own: Vec<&MapRange> = maps
            .iter()
            .filter(|m| m.pathname.as_deref() == Some(exe.as_path()))
            .collect();
        let bias = img.load_bias(&own).expect("bias");
        // The bias plus the linked address of a known function is where it really is.
        let here = finds_symbols_and_bias_of_own_binary as *const () as usize as u64;
        assert!(own.iter().any(|m| m.contains(here)));
        assert_eq!(bias % 4096, 0);
        // The same bias from the entry point (AT_ENTRY), without the maps.
        let entry = crate::process::proc::entry_point(std::process::id()).unwrap();
        assert_eq!(entry.wrapping_sub(img.entry), bias);
    }

    #[test]
    fn reading_parts_finds_what_the_whole_file_parse_finds() {
        let exe = std::env::current_exe().unwrap();
        let mut binaries = vec![exe];
        // An interpreter, stripped or not, when there is one.
        binaries.extend(
            ["/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
                .iter()
                .map(PathBuf::from)
                .filter(|p| p.exists()),
        );
        let wanted = &[
            "main",
            "_PyRuntime",
            "Py_Version",
            "malloc",
            "PyInterpreterState_Head",
        ];
        for path in binaries {
            let parts = ElfImage::load(&path, wanted, |_| true).unwrap();
            let whole = ElfImage::load_whole(&path, wanted, |_| true).unwrap();
            assert_eq!(parts.symbols, whole.symbols, "{}", path.display());
            assert_eq!(
                parts.load_segments,
                whole.load_segments,
                "{}",
                path.display()
            );
            assert_eq!(parts.entry, whole.entry, "{}", path.display());
            assert_ne!(parts.entry, 0, "{}", path.display());
            // The `.rodata` scan finds literals the whole-file scan finds.
            for v in &parts.versions {
                assert!(whole.versions.contains(v), "{v:?} {}", path.display());
            }
        }
    }

    #[test]
    fn version_scan() {
        let img = ElfImage {
            path: "x".into(),
            symbols: HashMap::new(),
            load_segments: vec![],
            entry: 0,
            versions: scan_versions(b"junk\x003.9.2.1\x00\x003.9.12\x00more"),
        };
        assert_eq!(img.find_version_patch(3, 9), Some(12));
        assert_eq!(img.find_version_patch(3, 8), None);
        // A literal merged into the tail of a path; the path's other versions do not count.
        let tail = scan_versions(b"x\x00/v/3.10.2/lib\x00/root/.pyenv/versions/3.10.13\x00py");
        assert_eq!(tail, vec![(3, 10, 13)]);
        // One that starts a string wins over a tail.
        let both = scan_versions(b"\x00/p/3.10.1\x00\x003.10.13\x00");
        assert_eq!(both[0], (3, 10, 13));
    }
}
