//! Finding the interpreter inside a process: which binary holds it (the executable or a
//! `libpython*.so`), where it is loaded, which exact version it is, and where its
//! interpreter list starts.

use std::path::{Path, PathBuf};

use super::debug_offsets::{apply_debug_offsets, parse_debug_offsets, DEBUG_OFFSETS_READ_LEN};
use super::gil_wait::{self, GilWaitLocation};
use super::offsets::{offsets_for, PyOffsets, SUPPORTED_SERIES};
use super::threads::GilLocation;
use crate::model::{Addr, PyVersion};
#[cfg(unix)]
use crate::process::elf::ElfImage;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
use crate::process::facts::ImageQuery;
use crate::process::facts::{LiveProcess, ProcessFacts};
use crate::process::image::ObjectImage;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
use crate::process::maps::MapRange;
use crate::process::memory::{MemoryError, ProcessMemory, RemoteMemory};
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
use crate::process::proc;
use crate::process::proc::ProcError;

/// Symbols we look up in the interpreter's binary.
const SYMBOLS: &[&str] = &[
    "_PyRuntime",
    "Py_Version",
    "_PyThreadState_Current",
    "interp_head",
    "PyInterpreterState_Head",
    // Where a thread waiting for the GIL sleeps (`gil_wait`): 2.7 and 3.6 (symbol table only).
    "interpreter_lock",
    "PyEval_ThreadsInitialized",
    "gil_cond",
    "gil_mutex",
    "switch_cond",
    "switch_mutex",
];

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("process {pid} is not a Python process: no python binary or libpython with CPython's symbols is mapped (exe: {exe})")]
    NotPython { pid: u32, exe: String },
    #[error("Python {version} in process {pid} is not supported (supported: {supported})")]
    Unsupported {
        pid: u32,
        version: PyVersion,
        supported: String,
    },
    #[error("cannot tell which Python version {binary} is: no Py_Version symbol, no version string, no version in its file name")]
    UnknownVersion { binary: String },
    #[error("{binary} has no {what}: cannot find the interpreter state")]
    MissingSymbol { binary: String, what: &'static str },
    #[error("Python {version} in process {pid}: {reason}")]
    DebugOffsets {
        pid: u32,
        version: PyVersion,
        reason: String,
    },
    #[error("process {pid} has not initialised its Python interpreter yet")]
    NotInitialised { pid: u32 },
    #[error("reading memory of process {pid}: {source}")]
    Memory { pid: u32, source: MemoryError },
    #[error("cannot load {binary}: {reason}")]
    Binary { binary: String, reason: String },
}

impl AttachError {
    /// Worth retrying shortly (a freshly started process that is still loading)?
    pub fn is_transient(&self) -> bool {
        // A binary whose segments are not all mapped yet is still being loaded by ld.so.
        matches!(
            self,
            AttachError::NotPython { .. }
                | AttachError::NotInitialised { .. }
                | AttachError::Binary { .. }
        )
    }
}

/// Where the interpreter list starts.
#[derive(Debug, Clone, Copy)]
pub enum InterpreterRoot {
    /// 3.x: `_PyRuntime` (the list head is a field of it).
    Runtime(Addr),
    /// 2.7: the address of the `interp_head` variable.
    InterpHeadVar(Addr),
}

/// A located interpreter: everything needed to read thread states, found once per process.
#[derive(Debug, Clone)]
pub struct Interpreter {
    pub pid: u32,
    pub version: PyVersion,
    pub offsets: PyOffsets,
    /// The binary holding the interpreter, as the target sees it.
    pub binary: PathBuf,
    pub root: InterpreterRoot,
    pub gil: GilLocation,
    /// Where a thread waiting for the GIL sleeps (`gil_wait`).
    pub gil_wait: GilWaitLocation,
}

impl Interpreter {
    /// Address of the first interpreter state (0 if none yet).
    pub fn interpreters_head(&self, mem: &dyn RemoteMemory) -> Result<Addr, MemoryError> {
        match self.root {
            InterpreterRoot::Runtime(runtime) => {
                let field = self.offsets.runtime_interpreters_head.unwrap_or(0);
                mem.read_u64(runtime + field)
            }
            InterpreterRoot::InterpHeadVar(var) => mem.read_u64(var),
        }
    }
}

/// Locate the interpreter in `pid`.
pub fn locate(pid: u32) -> Result<Interpreter, AttachError> {
    locate_in(&ProcessMemory::new(pid), &LiveProcess::new(pid))
}

/// What `ProcessFacts::binary_image` keeps of a binary for attaching.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
const IMAGE_QUERY: ImageQuery = (SYMBOLS, needs_version_scan);

/// Locate the interpreter in the process `os` describes, whose memory is `mem` (live, or a
/// recording replayed).
#[cfg(target_os = "linux")]
pub fn locate_in(
    mem: &dyn RemoteMemory,
    os: &dyn ProcessFacts,
) -> Result<Interpreter, AttachError> {
    let pid = os.pid();
    let exe = os.exe()?;

    // Most Python processes run an interpreter built into their executable: its load bias
    // comes from the entry point (`AT_ENTRY`, in a few hundred bytes of auxv), without
    // /proc/PID/maps (a line per mapping: ~150 us for a process of 50 threads, paid per
    // process by `record --all`). The maps are read when the executable is not the
    // interpreter (a shared build's launcher, a program embedding libpython).
    if let Ok(image) = os.binary_image(&exe, None, IMAGE_QUERY) {
        if is_interpreter(&*image) {
            if let Ok(entry) = os.entry_point() {
                let bias = entry.wrapping_sub(image.entry);
                // Anything amiss (a libpython that holds the live state, a process still
                // starting) is settled by the maps, as without this shortcut.
                match interpreter_in(pid, mem, exe.clone(), &*image, bias) {
                    Ok(interpreter) => return Ok(interpreter),
                    Err(e) => log::debug!("pid {pid}: the executable's interpreter: {e}"),
                }
            }
        }
    }
    locate_in_maps(mem, os, &exe)
}

/// Locate the interpreter (FreeBSD: ELF binaries, mappings from `kinfo_getvmmap`).
#[cfg(target_os = "freebsd")]
pub fn locate_in(
    mem: &dyn RemoteMemory,
    os: &dyn ProcessFacts,
) -> Result<Interpreter, AttachError> {
    locate_in_maps(mem, os, &os.exe()?)
}

/// The interpreter among the ELF binaries mapped in the process.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn locate_in_maps(
    mem: &dyn RemoteMemory,
    os: &dyn ProcessFacts,
    exe: &Path,
) -> Result<Interpreter, AttachError> {
    let pid = os.pid();
    let maps = os.maps()?;
    for binary in candidate_binaries(&maps, exe) {
        let image = match os.binary_image(&binary, Some(&maps), IMAGE_QUERY) {
            Ok(image) => image,
            Err(e) => {
                log::debug!("pid {pid}: skipping {}: {e}", binary.display());
                continue;
            }
        };
        if !is_interpreter(&*image) {
            continue;
        }
        let mappings: Vec<&MapRange> = maps
            .iter()
            .filter(|m| m.pathname.as_deref() == Some(&binary))
            .collect();
        let bias = image
            .load_bias(&mappings)
            .ok_or_else(|| AttachError::Binary {
                binary: binary.display().to_string(),
                reason: "no mapping matches its load segments".into(),
            })?;
        return interpreter_in(pid, mem, binary, &*image, bias);
    }
    Err(AttachError::NotPython {
        pid,
        exe: exe.display().to_string(),
    })
}

/// Locate the interpreter (macOS, Windows): among the process's loaded Mach-O or PE images,
/// the Python library first (`Python.framework/.../Python`, `libpython3.X.dylib`,
/// `python3X.dll`: the executable is then a launcher; `python3.dll`, which only forwards to
/// it, has no symbols of its own and is passed over), then the executable. The images come
/// from the OS (`proc::images`), whatever `os` is.
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
pub fn locate_in(
    mem: &dyn RemoteMemory,
    os: &dyn ProcessFacts,
) -> Result<Interpreter, AttachError> {
    let pid = os.pid();
    let exe = os.exe()?;
    let images = proc::images(pid)?;
    let is_library = |path: &Path| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let lower = name.to_ascii_lowercase();
        name == "Python"
            || lower.starts_with("libpython")
            || (lower.starts_with("python") && lower.ends_with(".dll"))
    };
    // The executable: named as `exe` says, or the first image (dyld and toolhelp both list
    // it first), in case the two spell its path differently.
    let mut ordered: Vec<&proc::LoadedImage> =
        images.iter().filter(|i| is_library(&i.path)).collect();
    for loaded in images
        .iter()
        .filter(|i| i.path == exe)
        .chain(images.first())
    {
        if !ordered.contains(&loaded) {
            ordered.push(loaded);
        }
    }
    for loaded in ordered {
        let image =
            match ObjectImage::load(&loaded.path, SYMBOLS, crate::process::image::Arch::ours()) {
                Ok(image) => image,
                Err(e) => {
                    log::debug!("pid {pid}: skipping {}: {e}", loaded.path.display());
                    continue;
                }
            };
        if !is_interpreter(&image) {
            continue;
        }
        let bias = image.load_bias(loaded.base);
        return interpreter_in(pid, mem, loaded.path.clone(), &image, bias);
    }
    Err(AttachError::NotPython {
        pid,
        exe: exe.display().to_string(),
    })
}

/// What finding the interpreter needs of its binary, whatever the format.
trait InterpreterImage {
    /// A symbol's address as linked (add the load bias for the target's).
    fn symbol(&self, name: &str) -> Option<Addr>;
    /// The patch number of a `PY_VERSION` literal of the series.
    fn find_version_patch(&self, major: u8, minor: u8) -> Option<u8>;
}

#[cfg(unix)]
impl InterpreterImage for ElfImage {
    fn symbol(&self, name: &str) -> Option<Addr> {
        ElfImage::symbol(self, name)
    }
    fn find_version_patch(&self, major: u8, minor: u8) -> Option<u8> {
        ElfImage::find_version_patch(self, major, minor)
    }
}

impl InterpreterImage for ObjectImage {
    /// `_PyRuntime` is also where its own section starts, for binaries that do not export it.
    fn symbol(&self, name: &str) -> Option<Addr> {
        ObjectImage::symbol(self, name).or_else(|| match name {
            "_PyRuntime" => self.runtime_section(),
            _ => None,
        })
    }
    fn find_version_patch(&self, major: u8, minor: u8) -> Option<u8> {
        ObjectImage::find_version_patch(self, major, minor)
    }
}

/// Whether `image` holds CPython's interpreter state (defines one of its roots).
fn is_interpreter(image: &dyn InterpreterImage) -> bool {
    [
        "_PyRuntime",
        "_PyThreadState_Current",
        "interp_head",
        "PyInterpreterState_Head",
    ]
    .iter()
    .any(|s| image.symbol(s).is_some())
}

fn memory_error(pid: u32, source: MemoryError) -> AttachError {
    match source {
        MemoryError::Permission { .. } => {
            AttachError::Proc(ProcError::Permission { pid, what: "mem" })
        }
        MemoryError::Gone { .. } => AttachError::Proc(ProcError::NotFound { pid }),
        source => AttachError::Memory { pid, source },
    }
}

/// The interpreter in `binary` (`image`, loaded at `bias` in `pid`): its exact version, the
/// offsets for it (with `_Py_DebugOffsets` applied on 3.13+), and where its state starts.
fn interpreter_in(
    pid: u32,
    mem: &dyn RemoteMemory,
    binary: PathBuf,
    image: &dyn InterpreterImage,
    bias: Addr,
) -> Result<Interpreter, AttachError> {
    let mem_err = |source| memory_error(pid, source);
    let version = detect_version(mem, image, &binary, bias).map_err(mem_err)??;
    let mut offsets = offsets_for(version).ok_or_else(|| AttachError::Unsupported {
        pid,
        version,
        supported: SUPPORTED_SERIES
            .iter()
            .map(|(a, b)| format!("{a}.{b}"))
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let sym = |name: &str| image.symbol(name).map(|a| a.wrapping_add(bias));

    let (root, gil, gil_wait) = if let Some(runtime) = sym("_PyRuntime") {
        if version >= PyVersion::new(3, 13, 0) {
            let bytes = mem
                .read_bytes(runtime, DEBUG_OFFSETS_READ_LEN)
                .map_err(mem_err)?;
            // While ld.so is still mapping libpython, `_PyRuntime`'s page can read as zeros
            // (the range is reserved before the data segment is mapped onto it): a process we
            // just started is not ready yet, not broken.
            if bytes
                .get(..8)
                .is_some_and(|cookie| cookie.iter().all(|&b| b == 0))
            {
                return Err(AttachError::NotInitialised { pid });
            }
            let debug =
                parse_debug_offsets(&bytes, version).map_err(|e| AttachError::DebugOffsets {
                    pid,
                    version,
                    reason: e.to_string(),
                })?;
            for (field, table, live) in apply_debug_offsets(&mut offsets, &debug) {
                log::info!("pid {pid}: Python {version}: {field} is {live} in _Py_DebugOffsets (table: {table}); using {live}");
            }
        }
        let gil = match offsets.runtime_tstate_current {
            Some(field) => GilLocation::CurrentTstate(runtime + field),
            None if offsets.interp_gil_ptr.is_some() => GilLocation::PerInterpreter,
            None => GilLocation::Unknown,
        };
        let gil_wait = match offsets.runtime_gil {
            Some(field) => GilWaitLocation::Runtime(runtime + field),
            None if offsets.interp_gil_ptr.is_some() => GilWaitLocation::PerInterpreter,
            None => GilWaitLocation::Unknown("no GIL offset for this version"),
        };
        (InterpreterRoot::Runtime(runtime), gil, gil_wait)
    } else {
        let head = interp_head_var(mem, image, bias)
            .map_err(mem_err)?
            .ok_or_else(|| AttachError::MissingSymbol {
                binary: binary.display().to_string(),
                what: "interp_head or PyInterpreterState_Head",
            })?;
        let gil = sym("_PyThreadState_Current")
            .map(GilLocation::CurrentTstate)
            .unwrap_or(GilLocation::Unknown);
        let gil_wait = gil_wait_before_runtime(mem, version, &sym);
        (InterpreterRoot::InterpHeadVar(head), gil, gil_wait)
    };
    let interpreter = Interpreter {
        pid,
        version,
        offsets,
        binary,
        root,
        gil,
        gil_wait,
    };
    if interpreter.interpreters_head(mem).map_err(mem_err)? == 0 {
        return Err(AttachError::NotInitialised { pid });
    }
    Ok(interpreter)
}

/// Where 2.7's and 3.6's GIL waits sleep (they have no `_PyRuntime`): 3.6's static condition
/// variables and mutexes, 2.7's `interpreter_lock` (from the symbol table, else from the code
/// of the exported `PyEval_ThreadsInitialized`, which tests it).
fn gil_wait_before_runtime(
    mem: &dyn RemoteMemory,
    version: PyVersion,
    sym: &dyn Fn(&str) -> Option<Addr>,
) -> GilWaitLocation {
    if version.major == 3 {
        return gil_wait::statics_of(sym).map_or(
            GilWaitLocation::Unknown("3.6's GIL statics are not in the symbol table"),
            GilWaitLocation::Statics,
        );
    }
    if let Some(var) = sym("interpreter_lock") {
        return GilWaitLocation::LockVar(var);
    }
    let from_code = sym("PyEval_ThreadsInitialized").and_then(|f| {
        let code = mem.read_bytes(f, 16).ok()?;
        gil_wait::lock_var_from_code(&code, f)
    });
    from_code.map_or(
        GilWaitLocation::Unknown("2.7's interpreter_lock: no symbol, and PyEval_ThreadsInitialized's code is not the expected test"),
        GilWaitLocation::LockVar,
    )
}

/// The `PY_VERSION` literal is only needed for interpreters without `Py_Version` (< 3.11);
/// scanning every binary of a host for it would cost a pass over each file.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn needs_version_scan(symbols: &std::collections::HashMap<String, (u64, u64)>) -> bool {
    !symbols.contains_key("Py_Version")
        && [
            "_PyRuntime",
            "_PyThreadState_Current",
            "interp_head",
            "PyInterpreterState_Head",
        ]
        .iter()
        .any(|s| symbols.contains_key(*s))
}

/// `libpython*.so` first (in a shared build the executable is only a launcher), then the
/// executable itself. Only a libpython with executable code mapped: a process that maps one
/// to read it (another profiler's symbolizer, a debugger, a backup) does not run it.
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn candidate_binaries(maps: &[MapRange], exe: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for m in maps {
        if let (Some(path), Some(name)) = (&m.pathname, m.file_name()) {
            if m.executable
                && name.starts_with("libpython")
                && name.contains(".so")
                && !out.contains(path)
            {
                out.push(path.clone());
            }
        }
    }
    if !out.iter().any(|p| p == exe) {
        out.push(exe.to_path_buf());
    }
    out
}

/// Version from `Py_Version` (3.11+), else the `PY_VERSION` string in the binary, else the
/// file name.
fn detect_version(
    mem: &dyn RemoteMemory,
    image: &dyn InterpreterImage,
    binary: &Path,
    bias: Addr,
) -> Result<Result<PyVersion, AttachError>, MemoryError> {
    if let Some(addr) = image.symbol("Py_Version") {
        let hex = mem.read_u32(addr.wrapping_add(bias))?;
        let v = PyVersion::new((hex >> 24) as u8, (hex >> 16) as u8, (hex >> 8) as u8);
        if v.major >= 2 {
            return Ok(Ok(v));
        }
    }
    let file_series = series_from_name(binary);
    let candidates: Vec<(u8, u8)> = match file_series {
        Some(s) => vec![s],
        None => SUPPORTED_SERIES.iter().rev().copied().collect(),
    };
    for (major, minor) in &candidates {
        if let Some(patch) = image.find_version_patch(*major, *minor) {
            return Ok(Ok(PyVersion::new(*major, *minor, patch)));
        }
    }
    Ok(match file_series {
        Some((major, minor)) => Ok(PyVersion::new(major, minor, 0)),
        None => Err(AttachError::UnknownVersion {
            binary: binary.display().to_string(),
        }),
    })
}

/// `python3.11`, `libpython3.11.so.1.0`, `python3.11-shared` -> (3, 11).
fn series_from_name(path: &Path) -> Option<(u8, u8)> {
    let name = path.file_name()?.to_str()?;
    let at = name.find("python")? + "python".len();
    let rest = &name[at..];
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// 2.7: the address of the static `interp_head`, from the symbol table when the binary has
/// one, else decoded from `PyInterpreterState_Head`, whose whole body is
/// `mov rax, [rip + disp32]; ret`.
fn interp_head_var(
    mem: &dyn RemoteMemory,
    image: &dyn InterpreterImage,
    bias: Addr,
) -> Result<Option<Addr>, MemoryError> {
    if let Some(var) = image.symbol("interp_head") {
        return Ok(Some(var.wrapping_add(bias)));
    }
    let Some(func) = image.symbol("PyInterpreterState_Head") else {
        return Ok(None);
    };
    let func = func.wrapping_add(bias);
    let code = mem.read_bytes(func, 8)?;
    Ok(decode_rip_relative_load(&code).map(|disp| (func + 7).wrapping_add(disp as i64 as u64)))
}

/// `48 8b 05 <disp32> c3`: `mov rax, qword ptr [rip + disp32]; ret`.
fn decode_rip_relative_load(code: &[u8]) -> Option<i32> {
    match code {
        [0x48, 0x8b, 0x05, d0, d1, d2, d3, 0xc3, ..] => {
            Some(i32::from_le_bytes([*d0, *d1, *d2, *d3]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_from_file_names() {
        assert_eq!(
            series_from_name(Path::new("/usr/bin/python3.11")),
            Some((3, 11))
        );
        assert_eq!(
            series_from_name(Path::new("/x/libpython3.9.so.1.0")),
            Some((3, 9))
        );
        assert_eq!(
            series_from_name(Path::new("/x/python2.7-shared")),
            Some((2, 7))
        );
        assert_eq!(series_from_name(Path::new("/x/python3")), None);
        assert_eq!(series_from_name(Path::new("/x/uwsgi")), None);
    }

    #[test]
    fn decodes_interp_head_accessor() {
        assert_eq!(
            decode_rip_relative_load(&[0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0xc3]),
            Some(16)
        );
        assert_eq!(
            decode_rip_relative_load(&[0x48, 0x8b, 0x05, 0xf0, 0xff, 0xff, 0xff, 0xc3]),
            Some(-16)
        );
        assert_eq!(decode_rip_relative_load(&[0x55, 0x48]), None);
    }
}
