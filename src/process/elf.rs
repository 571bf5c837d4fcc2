//! The few things we need from an ELF binary: selected symbol addresses, its PT_LOAD segments
//! (to compute the load bias of a mapping) and a scan of its bytes for a version string.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use goblin::elf::{program_header::PT_LOAD, Elf};

use super::maps::MapRange;
use crate::model::Addr;

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
#[derive(Debug, Clone)]
pub struct ElfImage {
    pub path: PathBuf,
    /// Symbol name -> (address as linked, size).
    pub symbols: HashMap<String, (u64, u64)>,
    /// PT_LOAD segments as (file offset, virtual address).
    pub load_segments: Vec<(u64, u64)>,
    /// The raw file, kept for the version-string scan.
    bytes: Vec<u8>,
}

impl ElfImage {
    /// Parse `path` and keep the addresses of the symbols named in `wanted` (from `.dynsym`
    /// and, when the binary is not stripped, `.symtab`).
    pub fn load(path: &Path, wanted: &[&str]) -> Result<ElfImage, ElfError> {
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
            for sym in syms.iter() {
                if sym.st_value == 0 {
                    continue;
                }
                if let Some(name) = strtab.get_at(sym.st_name) {
                    if wanted.contains(&name) {
                        symbols
                            .entry(name.to_string())
                            .or_insert((sym.st_value, sym.st_size));
                    }
                }
            }
        }
        let load_segments = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| (ph.p_offset, ph.p_vaddr))
            .collect();
        drop(elf);
        Ok(ElfImage {
            path: path.into(),
            symbols,
            load_segments,
            bytes,
        })
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

    /// Find a NUL-terminated `MAJOR.MINOR.PATCH` string (CPython's `PY_VERSION` literal,
    /// possibly with a suffix such as `rc1` or `+`) for the given series. Returns the patch.
    pub fn find_version_patch(&self, major: u8, minor: u8) -> Option<u8> {
        let prefix = format!("\0{major}.{minor}.");
        let needle = prefix.as_bytes();
        let bytes = &self.bytes;
        let mut start = 0;
        while let Some(pos) = find(&bytes[start..], needle) {
            let at = start + pos + needle.len();
            let digits: Vec<u8> = bytes[at..]
                .iter()
                .take(3)
                .take_while(|c| c.is_ascii_digit())
                .copied()
                .collect();
            let after = bytes.get(at + digits.len()).copied();
            // The literal ends right after the patch number, or has a short pre-release tag.
            let ends_well = matches!(
                after,
                Some(0) | Some(b'a') | Some(b'b') | Some(b'r') | Some(b'+')
            );
            if !digits.is_empty() && ends_well {
                if let Ok(patch) = std::str::from_utf8(&digits).unwrap_or("x").parse::<u8>() {
                    return Some(patch);
                }
            }
            start = at;
        }
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_symbols_and_bias_of_own_binary() {
        let exe = std::env::current_exe().unwrap();
        let img = ElfImage::load(&exe, &["main"]).unwrap();
        assert!(!img.load_segments.is_empty());
        let maps = crate::process::proc::maps(std::process::id()).unwrap();
        let own: Vec<&MapRange> = maps
            .iter()
            .filter(|m| m.pathname.as_deref() == Some(exe.as_path()))
            .collect();
        let bias = img.load_bias(&own).expect("bias");
        // The bias plus the linked address of a known function is where it really is.
        let here = finds_symbols_and_bias_of_own_binary as usize as u64;
        assert!(own.iter().any(|m| m.contains(here)));
        assert_eq!(bias % 4096, 0);
    }

    #[test]
    fn version_scan() {
        let img = ElfImage {
            path: "x".into(),
            symbols: HashMap::new(),
            load_segments: vec![],
            bytes: b"junk\x003.9.2.1\x00\x003.9.12\x00more".to_vec(),
        };
        assert_eq!(img.find_version_patch(3, 9), Some(12));
        assert_eq!(img.find_version_patch(3, 8), None);
    }
}
