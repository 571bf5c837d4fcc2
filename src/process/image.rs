//! The few things `python::attach` needs from a Mach-O (macOS) or PE (Windows) binary, as
//! `elf.rs` gives them for ELF: selected symbol addresses, the address a section starts at, the
//! address the image was linked for (to turn a load address into a bias), and the version
//! strings it holds.
//!
//! Symbols: Mach-O's symbol table (`nlist`, names without the leading `_` the C compiler adds),
//! then its export trie (what a stripped binary still has); PE's export table (a DLL has no
//! other symbols once linked). CPython exports `_PyRuntime` and `Py_Version` from
//! `libpython`/`Python.framework` and `python3X.dll`, and places `_PyRuntime` in a section of
//! its own (`__DATA,PyRuntime`; on Windows `PyRuntime`, which PE cuts to 8 bytes: `PyRuntim`)
//! so it can be found without symbols: `runtime_section`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use goblin::mach::{cputype, Mach, MachO};
use goblin::pe::PE;

use crate::model::Addr;

/// Largest binary we parse (CPython's own are 5-30 MiB; a framework build's universal
/// binary holds two).
const MAX_IMAGE_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {size} bytes, more than the {MAX_IMAGE_BYTES} we parse")]
    TooLarge { path: String, size: u64 },
    #[error("{path} is not a Mach-O or PE binary: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{path} holds no {arch} code (a universal binary for other architectures)")]
    NoSuchArch { path: String, arch: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    MachO,
    Pe,
}

/// Which slice of a universal (fat) Mach-O binary to read: the target's architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture we were built for, which is the target's (we read 64-bit processes
    /// of our own architecture only).
    pub fn ours() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    fn cputype(self) -> u32 {
        match self {
            Arch::X86_64 => cputype::CPU_TYPE_X86_64,
            Arch::Aarch64 => cputype::CPU_TYPE_ARM64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "arm64",
        }
    }
}

/// A Mach-O or PE binary, reduced to what attaching needs.
#[derive(Debug, Clone)]
pub struct ObjectImage {
    pub path: PathBuf,
    pub format: ImageFormat,
    /// The address the image was linked to load at: Mach-O's `__TEXT` segment (its header),
    /// PE's `ImageBase`. Symbol and section addresses below are in this space.
    pub linked_base: Addr,
    /// The wanted symbols that the image defines.
    symbols: HashMap<String, Addr>,
    /// (name, address) of every section.
    sections: Vec<(String, Addr)>,
    /// `M.m.p` strings found in its read-only data (see `version_scan`).
    versions: Vec<(u8, u8, u8)>,
}

impl ObjectImage {
    /// Read and parse `path`. `wanted`: the symbol names to keep (C names, no leading `_`).
    pub fn load(path: &Path, wanted: &[&str], arch: Arch) -> Result<ObjectImage, ImageError> {
        let shown = || path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|source| ImageError::Io {
                path: shown(),
                source,
            })?
            .len();
        if size > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge {
                path: shown(),
                size,
            });
        }
        let bytes = std::fs::read(path).map_err(|source| ImageError::Io {
            path: shown(),
            source,
        })?;
        ObjectImage::parse(&bytes, path, wanted, arch)
    }

    /// Parse a binary already in memory (`path` names it in messages).
    pub fn parse(
        bytes: &[u8],
        path: &Path,
        wanted: &[&str],
        arch: Arch,
    ) -> Result<ObjectImage, ImageError> {
        let malformed = |reason: String| ImageError::Malformed {
            path: path.display().to_string(),
            reason,
        };
        if bytes.starts_with(b"MZ") {
            let pe = PE::parse(bytes).map_err(|e| malformed(e.to_string()))?;
            return Ok(from_pe(&pe, bytes, path, wanted));
        }
        match Mach::parse(bytes).map_err(|e| malformed(e.to_string()))? {
            Mach::Binary(macho) => from_macho(&macho, bytes, path, wanted),
            Mach::Fat(fat) => {
                let slice = fat
                    .find_cputype(arch.cputype())
                    .map_err(|e| malformed(e.to_string()))?
                    .ok_or_else(|| ImageError::NoSuchArch {
                        path: path.display().to_string(),
                        arch: arch.name(),
                    })?;
                let bytes = bytes
                    .get(slice.offset as usize..)
                    .and_then(|b| b.get(..slice.size as usize))
                    .ok_or_else(|| malformed("a fat slice runs past the end".into()))?;
                let macho = MachO::parse(bytes, 0).map_err(|e| malformed(e.to_string()))?;
                from_macho(&macho, bytes, path, wanted)
            }
        }
    }

    /// A wanted symbol's address (as linked).
    pub fn symbol(&self, name: &str) -> Option<Addr> {
        self.symbols.get(name).copied()
    }

    /// The address of the first section whose name is `name` (PE names are cut to 8 bytes:
    /// a longer `name` matches its first 8).
    pub fn section(&self, name: &str) -> Option<Addr> {
        let name = match self.format {
            ImageFormat::Pe => &name[..name.len().min(8)],
            ImageFormat::MachO => name,
        };
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, addr)| addr)
    }

    /// Where `_PyRuntime` is when the symbol is not there: CPython (3.10+) gives it a section
    /// of its own so that out-of-process tools find it in stripped binaries.
    pub fn runtime_section(&self) -> Option<Addr> {
        self.section("PyRuntime")
    }

    /// What to add to an address of this image to get the target's, given where the target
    /// loaded it (Mach-O: the header's address; PE: the module base).
    pub fn load_bias(&self, load_address: Addr) -> Addr {
        load_address.wrapping_sub(self.linked_base)
    }

    /// As `ElfImage::find_version_patch`.
    pub fn find_version_patch(&self, major: u8, minor: u8) -> Option<u8> {
        self.versions
            .iter()
            .find(|v| v.0 == major && v.1 == minor)
            .map(|v| v.2)
    }
}

fn from_macho(
    macho: &MachO,
    bytes: &[u8],
    path: &Path,
    wanted: &[&str],
) -> Result<ObjectImage, ImageError> {
    let mut linked_base = None;
    let mut sections = Vec::new();
    let mut cstrings: Vec<&[u8]> = Vec::new();
    for segment in macho.segments.iter() {
        if segment.name().ok() == Some("__TEXT") {
            linked_base = Some(segment.vmaddr);
        }
        // A section whose data cannot be read is kept by name and address all the same.
        for (section, data) in segment.sections().unwrap_or_default() {
            let Ok(name) = section.name() else { continue };
            if name == "__cstring" || name == "__const" {
                cstrings.push(data);
            }
            sections.push((name.to_string(), section.addr));
        }
    }
    let linked_base = linked_base.ok_or_else(|| ImageError::Malformed {
        path: path.display().to_string(),
        reason: "no __TEXT segment".into(),
    })?;
    let keep = |name: &str| wanted.contains(&name);
    let mut symbols = HashMap::new();
    for (name, nlist) in macho.symbols().flatten() {
        if nlist.is_undefined() || nlist.is_stab() {
            continue;
        }
        if let Some(name) = name.strip_prefix('_').filter(|n| keep(n)) {
            symbols.entry(name.to_string()).or_insert(nlist.n_value);
        }
    }
    // The export trie holds offsets from the image's start (its `__TEXT` segment).
    for export in macho.exports().unwrap_or_default() {
        if let Some(name) = export.name.strip_prefix('_').filter(|n| keep(n)) {
            symbols
                .entry(name.to_string())
                .or_insert(linked_base.wrapping_add(export.offset));
        }
    }
    let versions = if cstrings.is_empty() {
        super::version_scan::scan_versions(bytes)
    } else {
        cstrings
            .iter()
            .flat_map(|data| super::version_scan::scan_versions(data))
            .collect()
    };
    Ok(ObjectImage {
        path: path.to_path_buf(),
        format: ImageFormat::MachO,
        linked_base,
        symbols,
        sections,
        versions,
    })
}

fn from_pe(pe: &PE, bytes: &[u8], path: &Path, wanted: &[&str]) -> ObjectImage {
    let linked_base = pe.image_base as Addr;
    let symbols = pe
        .exports
        .iter()
        // A forwarder (`reexport`) names code in another DLL, not an address in this one.
        .filter(|e| e.reexport.is_none())
        .filter_map(|e| Some((e.name?, e.rva)))
        .filter(|(name, _)| wanted.contains(name))
        .map(|(name, rva)| (name.to_string(), linked_base.wrapping_add(rva as Addr)))
        .collect();
    let mut sections = Vec::new();
    let mut rdata = None;
    for section in &pe.sections {
        let Ok(name) = section.name() else { continue };
        if name == ".rdata" {
            let start = section.pointer_to_raw_data as usize;
            rdata = bytes.get(start..start.saturating_add(section.size_of_raw_data as usize));
        }
        sections.push((
            name.to_string(),
            linked_base.wrapping_add(section.virtual_address as Addr),
        ));
    }
    let versions = super::version_scan::scan_versions(rdata.unwrap_or(bytes));
    ObjectImage {
        path: path.to_path_buf(),
        format: ImageFormat::Pe,
        linked_base,
        symbols,
        sections,
        versions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHO: &str = "tests/fixtures/foreign-binaries/_speedups.cpython-312-darwin.so";
    const PE_DLL: &str = "tests/fixtures/foreign-binaries/_speedups.cp312-win_amd64.pyd";
    const INIT: &str = "PyInit__speedups";

    fn fixture(name: &str) -> (PathBuf, Vec<u8>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        let bytes = std::fs::read(&path).unwrap();
        (path, bytes)
    }

    /// Where goblin's export trie puts `_name`, as an address in the linked image.
    fn goblin_macho_export(bytes: &[u8], name: &str) -> u64 {
        let macho = MachO::parse(bytes, 0).unwrap();
        let text = macho
            .segments
            .iter()
            .find(|s| s.name().unwrap() == "__TEXT")
            .unwrap()
            .vmaddr;
        let export = macho.exports().unwrap();
        let export = export
            .iter()
            .find(|e| e.name == format!("_{name}"))
            .unwrap();
        text + export.offset
    }

    #[test]
    fn macho_symbols_agree_with_goblins_exports() {
        let (path, bytes) = fixture(MACHO);
        let image = ObjectImage::load(&path, &[INIT, "not_there"], Arch::Aarch64).unwrap();
        assert_eq!(image.format, ImageFormat::MachO);
        let ours = image.symbol(INIT).expect("PyInit__speedups");
        assert_eq!(ours, goblin_macho_export(&bytes, INIT));
        // Found in the symbol table (nlist), which the export trie above did not use.
        let macho = MachO::parse(&bytes, 0).unwrap();
        let nlist = macho
            .symbols()
            .flatten()
            .find(|(n, _)| *n == format!("_{INIT}"))
            .unwrap()
            .1;
        assert_eq!(ours, nlist.n_value);
        assert_eq!(image.symbol("not_there"), None);
        assert!(image
            .section("__text")
            .is_some_and(|a| a > image.linked_base));
        assert_eq!(image.runtime_section(), None);
        // Loaded at 0x1_0000_0000, the symbol moves with it.
        let bias = image.load_bias(0x1_0000_0000);
        assert_eq!(
            ours.wrapping_add(bias),
            0x1_0000_0000 + (ours - image.linked_base)
        );
    }

    #[test]
    fn universal_binary_slice_by_arch() {
        let (path, thin) = fixture(MACHO);
        // A universal binary holding the one arm64 slice, as `lipo -create` writes it
        // (big-endian headers, the slice aligned to 2^14).
        const ALIGN: u32 = 14;
        let offset = 1u32 << ALIGN;
        let mut fat = Vec::new();
        for word in [
            0xcafe_babe_u32,
            1,
            cputype::CPU_TYPE_ARM64,
            0,
            offset,
            thin.len() as u32,
            ALIGN,
        ] {
            fat.extend_from_slice(&word.to_be_bytes());
        }
        fat.resize(offset as usize, 0);
        fat.extend_from_slice(&thin);
        let image = ObjectImage::parse(&fat, &path, &[INIT], Arch::Aarch64).unwrap();
        assert_eq!(image.symbol(INIT), Some(goblin_macho_export(&thin, INIT)));
        assert!(matches!(
            ObjectImage::parse(&fat, &path, &[INIT], Arch::X86_64),
            Err(ImageError::NoSuchArch { arch: "x86_64", .. })
        ));
    }

    #[test]
    fn pe_exports_agree_with_goblin() {
        let (path, bytes) = fixture(PE_DLL);
        let image = ObjectImage::load(&path, &[INIT], Arch::X86_64).unwrap();
        assert_eq!(image.format, ImageFormat::Pe);
        let pe = PE::parse(&bytes).unwrap();
        let export = pe.exports.iter().find(|e| e.name == Some(INIT)).unwrap();
        assert_eq!(image.linked_base, pe.image_base as u64);
        assert_eq!(
            image.symbol(INIT),
            Some(pe.image_base as u64 + export.rva as u64)
        );
        let text = pe
            .sections
            .iter()
            .find(|s| s.name().unwrap() == ".text")
            .unwrap();
        assert_eq!(
            image.section(".text"),
            Some(pe.image_base as u64 + text.virtual_address as u64)
        );
        // A DLL loaded elsewhere than its ImageBase (ASLR): its exports move by the difference.
        let loaded = 0x7ff8_1234_0000;
        assert_eq!(
            image
                .symbol(INIT)
                .unwrap()
                .wrapping_add(image.load_bias(loaded)),
            loaded + export.rva as u64
        );
    }

    #[test]
    fn neither_format_is_an_error() {
        let elf = std::fs::read("/proc/self/exe").unwrap_or_else(|_| b"\x7fELF....".to_vec());
        assert!(matches!(
            ObjectImage::parse(&elf, Path::new("x"), &[], Arch::X86_64),
            Err(ImageError::Malformed { .. })
        ));
        assert!(ObjectImage::parse(b"MZ", Path::new("x"), &[], Arch::X86_64).is_err());
    }
}
