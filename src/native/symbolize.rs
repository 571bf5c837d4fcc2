//! Symbolization of native addresses with blazesym, cached so that each distinct address is
//! resolved once per module (user space) or once (kernel). User addresses are first turned
//! into (module, file offset) through the process's maps, which are cached per process and
//! re-read only when an address falls outside them; the module is then symbolized as a file
//! (through `/proc/PID/root`, so processes in containers work), so the result stays right
//! after the process has exited. Addresses that do not resolve become `module+0xoffset` (or
//! the bare address outside any file): they never vanish.
//!
//! Everything is bounded for long host-wide runs: resolved names by their bytes, the files
//! blazesym keeps open and mapped by their size (least recently used evicted, and a process's
//! paths released when it is forgotten), so memory and descriptors do not grow with the
//! processes seen.
//!
//! Kernel addresses are named by `kallsyms::KernelSymbols`.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

use super::debug_info::{has_debug_info, is_own_executable};
use super::kallsyms::{kallsyms_cache, KernelSymbols, KALLSYMS};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blazesym::symbolize::evict::{self, Evict};
use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

use crate::byte_lru::{evictions, ByteLru};
use crate::model::{Addr, NativeFrame};
use crate::process::elf::ElfImage;
use crate::process::maps::MapRange;
use crate::process::proc;

/// How often a process's maps may be re-read when an address is not covered.
const MAPS_REFRESH: Duration = Duration::from_millis(200);
/// Bound on the resolved user-space names kept (by their bytes).
const MAX_SYMBOL_BYTES: usize = 32 << 20;
/// Bound on the resolved kernel names kept.
const MAX_KERNEL_SYMBOL_BYTES: usize = 8 << 20;
/// Bound on the files blazesym keeps open and mapped, by their cost (`file_bytes`): each
/// holds a descriptor, a mapping and its parsed symbol tables (at most 512 files).
const MAX_OPEN_FILE_BYTES: usize = 256 << 20;
/// Bookkeeping per cached name besides its strings (map slot, `Arc`, key).
const SYMBOL_OVERHEAD: usize = 96;

/// A module as the cache knows it: the file's identity in the target's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ModuleKey {
    path: PathBuf,
    inode: u64,
}

struct ProcessMaps {
    start_time: u64,
    maps: Vec<MapRange>,
    read_at: Instant,
}

/// A module file blazesym has open: through which paths (`/proc/PID/root/...`, one per
/// process that used it) and whether it has DWARF.
struct OpenFile {
    paths: HashSet<PathBuf>,
    /// Whether it has DWARF (its own or a split debug file on this host). Only those get the
    /// DWARF lookup: blazesym costs ~10 MB and most of a sample's time for it.
    dwarf: bool,
}

pub struct NativeSymbolizer {
    symbolizer: Symbolizer,
    maps: HashMap<u32, ProcessMaps>,
    user: ByteLru<(ModuleKey, u64), Arc<NativeFrame>>,
    /// The files blazesym holds (a descriptor and a mapping each), by size.
    files: ByteLru<ModuleKey, OpenFile>,
    /// The paths each process had blazesym open, released when it is forgotten.
    paths_of: HashMap<u32, HashSet<(ModuleKey, PathBuf)>>,
    use_dwarf: bool,
    kernel: ByteLru<Addr, Arc<str>>,
    /// The core kernel's text symbols (cached per boot) until an address outside them needs
    /// all of kallsyms; `None` until the first kernel address is named.
    kernel_symbols: Option<KernelSymbols>,
}

impl Default for NativeSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl NativeSymbolizer {
    /// Symbol tables, and DWARF for what they do not name (`--native`).
    pub fn new() -> Self {
        Self::with_dwarf(true)
    }

    /// `with_dwarf(false)`: symbol tables only. Loading a module's DWARF costs tens of
    /// milliseconds and ~10 MB the first time one of its addresses needs it: worth it for
    /// `--native`, not for the native frames `record --all` keeps for non-Python processes.
    pub fn with_dwarf(dwarf: bool) -> Self {
        NativeSymbolizer {
            // DWARF lookups were measured 60x slower and gave a wrong offset for a function
            // with a `.cold` part; the symbol tables alone are right.
            symbolizer: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .build(),
            maps: HashMap::new(),
            user: ByteLru::new(MAX_SYMBOL_BYTES),
            files: ByteLru::new(MAX_OPEN_FILE_BYTES),
            paths_of: HashMap::new(),
            use_dwarf: dwarf,
            kernel: ByteLru::new(MAX_KERNEL_SYMBOL_BYTES),
            kernel_symbols: None,
        }
    }

    /// Forget a process (it exited or its pid was reused): its maps, and the files blazesym
    /// opened through its `/proc/PID/root` (a file another process still uses stays open
    /// through that process's path). The names resolved stay cached, by module.
    pub fn forget(&mut self, pid: u32) {
        self.maps.remove(&pid);
        for (key, path) in self.paths_of.remove(&pid).unwrap_or_default() {
            self.release(&path);
            let unused = self.files.peek_mut(&key).is_some_and(|file| {
                file.paths.remove(&path);
                file.paths.is_empty()
            });
            if unused {
                self.files.remove(&key);
            }
        }
    }

    /// Processes whose state is kept (maps or open paths).
    pub fn processes(&self) -> usize {
        self.maps
            .keys()
            .chain(self.paths_of.keys())
            .collect::<HashSet<_>>()
            .len()
    }

    /// Bytes of resolved names kept (user, kernel), as the caches count them.
    pub fn cache_bytes(&self) -> (usize, usize) {
        (self.user.bytes(), self.kernel.bytes())
    }

    /// Module files blazesym has open now.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Let blazesym close and unmap `path` (it keeps a file open while any path names it).
    fn release(&mut self, path: &std::path::Path) {
        if let Err(e) = self.symbolizer.evict(&Evict::Elf(evict::Elf::new(path))) {
            log::debug!("releasing {}: {e}", path.display());
        }
    }

    /// Remember `file` as open (evicting the least recently used files past the bound).
    fn keep_file(&mut self, key: ModuleKey, file: OpenFile, bytes: usize) {
        for (old, gone) in self.files.insert(key, file, bytes) {
            evictions::SYMBOL_FILES.add(1);
            for path in gone.paths {
                self.release(&path);
                if let Some(pid) = pid_of(&path) {
                    if let Some(set) = self.paths_of.get_mut(&pid) {
                        set.remove(&(old.clone(), path));
                    }
                }
            }
        }
    }

    /// Resolve user-space addresses of `pid`, leaf first.
    pub fn user_frames(&mut self, pid: u32, addrs: &[Addr]) -> Vec<NativeFrame> {
        addrs.iter().map(|&a| self.user_frame(pid, a)).collect()
    }

    fn user_frame(&mut self, pid: u32, addr: Addr) -> NativeFrame {
        let Some((key, file_offset, vaddr_hint)) = self.locate(pid, addr) else {
            return NativeFrame {
                name: format!("{addr:#x}"),
                module: String::new(),
                offset: None,
            };
        };
        if let Some(frame) = self.user.get(&(key.clone(), file_offset)) {
            return (**frame).clone();
        }
        let module = key
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let host_path = match self.maps.get(&pid) {
            Some(known) => proc::file_in_maps(pid, &known.maps, &key.path),
            None => proc::path_in_root(pid, &key.path),
        };
        let known = self.files.get(&key).map(|f| f.dwarf);
        let dwarf = known.unwrap_or_else(|| {
            self.use_dwarf && !is_own_executable(&host_path) && has_debug_info(&host_path)
        });
        // The symbol tables first (fast, and right for functions with a `.cold` part); DWARF,
        // in the file or its split debug file (.gnu_debuglink / build id under
        // /usr/lib/debug), only for what they do not name: static functions of a binary
        // whose .symtab was stripped.
        // A named frame's offset is its function's start, so that frames of one function
        // are one frame in a profile (an address per return site would make every sample of
        // a busy native program a stack of its own); an unnamed one keeps its own address.
        let (name, offset) = [false, true]
            .into_iter()
            .filter(|&debug_syms| !debug_syms || dwarf)
            .find_map(|debug_syms| {
                let mut elf = Elf::new(&host_path);
                elf.debug_syms = debug_syms;
                match self
                    .symbolizer
                    .symbolize_single(&Source::Elf(elf), Input::FileOffset(file_offset))
                {
                    Ok(Symbolized::Sym(sym)) => Some((
                        sym.name.into_owned(),
                        file_offset.saturating_sub(sym.offset as u64),
                    )),
                    _ => None,
                }
            })
            .unwrap_or_else(|| (format!("{module}+{vaddr_hint:#x}"), file_offset));
        self.note_open(pid, &key, host_path, dwarf);
        let bytes = name.len() + module.len() + key.path.as_os_str().len() + SYMBOL_OVERHEAD;
        let frame = Arc::new(NativeFrame {
            name,
            module,
            offset: Some(offset),
        });
        let evicted = self.user.insert((key, file_offset), frame.clone(), bytes);
        evictions::SYMBOLS.add(evicted.len() as u64);
        (*frame).clone()
    }

    /// blazesym now holds `host_path` (module `key`) open for `pid`: account for it.
    fn note_open(&mut self, pid: u32, key: &ModuleKey, host_path: PathBuf, dwarf: bool) {
        self.paths_of
            .entry(pid)
            .or_default()
            .insert((key.clone(), host_path.clone()));
        if let Some(file) = self.files.get_mut(key) {
            file.paths.insert(host_path);
            return;
        }
        let bytes = file_bytes(&host_path);
        let file = OpenFile {
            paths: HashSet::from([host_path]),
            dwarf,
        };
        self.keep_file(key.clone(), file, bytes);
    }

    /// The module and file offset of `addr` in `pid`, re-reading the maps (rate-limited) when
    /// it is not covered. The third value is the offset from the mapping's start, for names.
    fn locate(&mut self, pid: u32, addr: Addr) -> Option<(ModuleKey, u64, u64)> {
        self.mapping(pid, addr).and_then(|m| module_offset(m, addr))
    }

    /// Whether `addr` lies in an executable mapping of `pid` (file-backed or not: JIT code
    /// and trampolines are code too), from the same cached maps as the names.
    pub fn is_executable(&mut self, pid: u32, addr: Addr) -> bool {
        self.mapping(pid, addr).is_some_and(|m| m.executable)
    }

    /// The mapping of `pid` that holds `addr`, re-reading the maps (rate-limited) when the
    /// cached ones do not cover it.
    fn mapping(&mut self, pid: u32, addr: Addr) -> Option<&MapRange> {
        let covered = self
            .maps
            .get(&pid)
            .is_some_and(|m| m.maps.iter().any(|m| m.contains(addr)));
        let stale = || {
            self.maps
                .get(&pid)
                .is_none_or(|m| m.read_at.elapsed() >= MAPS_REFRESH)
        };
        if !covered && stale() {
            let fresh = || -> Option<ProcessMaps> {
                Some(ProcessMaps {
                    start_time: proc::start_time(pid).ok()?,
                    maps: proc::maps(pid).ok()?,
                    read_at: Instant::now(),
                })
            };
            if let Some(m) = fresh() {
                self.maps.insert(pid, m);
            }
        }
        self.maps.get(&pid)?.maps.iter().find(|m| m.contains(addr))
    }

    /// Whether the cached maps of `pid` belong to the process that now has that pid.
    pub fn maps_belong_to(&self, pid: u32, start_time: u64) -> bool {
        self.maps
            .get(&pid)
            .map(|m| m.start_time == start_time)
            .unwrap_or(true)
    }

    /// Resolve kernel addresses, leaf first.
    pub fn kernel_frames(&mut self, addrs: &[Addr]) -> Vec<String> {
        addrs
            .iter()
            .map(|&a| self.kernel_frame(a).to_string())
            .collect()
    }

    fn kernel_frame(&mut self, addr: Addr) -> Arc<str> {
        if let Some(name) = self.kernel.get(&addr) {
            return name.clone();
        }
        let mut symbols = self
            .kernel_symbols
            .take()
            .unwrap_or_else(|| KernelSymbols::core_or_all(KALLSYMS, kallsyms_cache().as_ref()));
        if !symbols.covers(addr) {
            symbols = KernelSymbols::all(KALLSYMS);
        }
        let name: Arc<str> = match symbols.name(addr) {
            Some(name) => name.into(),
            None => format!("{addr:#x}").into(),
        };
        self.kernel_symbols = Some(symbols);
        let evicted = self
            .kernel
            .insert(addr, name.clone(), name.len() + SYMBOL_OVERHEAD);
        evictions::SYMBOLS.add(evicted.len() as u64);
        name
    }
}

/// The address ranges, in `pid`, of the functions named in `names` of the ELF file `binary`
/// (a path as the target sees it), from its symbol tables (`.symtab` when not stripped, which
/// also has the `.cold` parts). Asked once per process, so the eval loop is recognised by
/// address range instead of by name in every frame.
pub fn function_ranges(pid: u32, binary: &std::path::Path, names: &[&str]) -> Vec<Range<Addr>> {
    let Ok(maps) = proc::maps(pid) else {
        return Vec::new();
    };
    let Ok(image) = ElfImage::load(&proc::file_in_maps(pid, &maps, binary), names, |_| false)
    else {
        return Vec::new();
    };
    let mappings: Vec<&MapRange> = maps
        .iter()
        .filter(|m| m.pathname.as_deref() == Some(binary))
        .collect();
    let Some(bias) = image.load_bias(&mappings) else {
        return Vec::new();
    };
    image
        .symbols
        .values()
        .filter(|&&(_, size)| size > 0)
        .map(|&(addr, size)| bias.wrapping_add(addr)..bias.wrapping_add(addr + size))
        .collect()
}

/// What keeping `path` open costs, roughly: blazesym maps it whole but touches (and parses)
/// only its symbol tables, so a big binary's size (a test binary with DWARF, rustc's driver:
/// hundreds of MiB) is counted up to a cap; a small library costs at least a floor (its
/// descriptor and bookkeeping), which also bounds the files held open.
fn file_bytes(path: &std::path::Path) -> usize {
    const FLOOR: usize = 512 << 10;
    const CAP: usize = 32 << 20;
    std::fs::metadata(path).map_or(FLOOR, |m| (m.len() as usize).clamp(FLOOR, CAP))
}

/// The pid of a `/proc/PID/root/...` path.
fn pid_of(path: &std::path::Path) -> Option<u32> {
    path.strip_prefix("/proc")
        .ok()?
        .iter()
        .next()?
        .to_str()?
        .parse()
        .ok()
}

fn module_offset(m: &MapRange, addr: Addr) -> Option<(ModuleKey, u64, u64)> {
    let path = m.pathname.clone()?;
    let from_start = addr - m.start;
    Some((
        ModuleKey {
            path,
            inode: m.inode,
        },
        m.offset + from_start,
        m.offset + from_start,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[inline(never)]
    fn a_function_with_a_symbol() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn resolves_own_function_and_reports_unknown_addresses() {
        let mut s = NativeSymbolizer::new();
        let addr = a_function_with_a_symbol as fn() -> u64 as usize as u64;
        assert_eq!(a_function_with_a_symbol(), 42);
        let frames = s.user_frames(std::process::id(), &[addr, 0x10]);
        assert!(
            frames[0].name.contains("a_function_with_a_symbol"),
            "{:?}",
            frames[0]
        );
        assert!(!frames[0].module.is_empty());
        assert_eq!(frames[1].name, "0x10");
        // Cached: the same answer again.
        assert_eq!(s.user_frames(std::process::id(), &[addr])[0], frames[0]);
        let own = std::env::current_exe().expect("own executable");
        assert!(is_own_executable(&own));
        assert!(!is_own_executable(Path::new("/bin/sh")));
    }

    /// A static function of a library whose .symtab was stripped, with its DWARF in a split
    /// debug file found by .gnu_debuglink: named from the DWARF.
    #[test]
    #[allow(unsafe_code)]
    fn static_functions_of_stripped_libraries_are_named_from_split_dwarf() {
        let dir = std::env::temp_dir().join(format!("pyspy-bpf-dwarf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let src = dir.join("dw.c");
        let lib = dir.join("libdw.so");
        std::fs::write(
            &src,
            "static int __attribute__((noinline)) hidden_helper(int x) { return x * 7 + 3; }\n\
             void *helper_address(void) { return (void *)&hidden_helper; }\n",
        )
        .expect("write");
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
            let ok = std::process::Command::new(cmd)
                .args(args)
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "{cmd} failed (build-essential / binutils are required)");
        };
        let os = |s: &str| std::ffi::OsString::from(s);
        run(
            "cc",
            &[
                &os("-shared"),
                &os("-fPIC"),
                &os("-g"),
                &os("-O1"),
                &os("-o"),
                lib.as_os_str(),
                src.as_os_str(),
            ],
        );
        run(
            "objcopy",
            &[
                &os("--only-keep-debug"),
                lib.as_os_str(),
                &os("libdw.so.debug"),
            ],
        );
        run("strip", &[&os("--strip-all"), lib.as_os_str()]);
        run(
            "objcopy",
            &[&os("--add-gnu-debuglink=libdw.so.debug"), lib.as_os_str()],
        );

        // The split debug file beside it is found; garbage and a file without DWARF are not.
        assert!(has_debug_info(&lib));
        let garbage = dir.join("garbage");
        std::fs::write(&garbage, b"\x7fELF\x02\x01 not really").expect("write");
        assert!(!has_debug_info(&garbage));
        run(
            "strip",
            &[
                &os("--strip-all"),
                &os("-o"),
                &os("nolink.so"),
                lib.as_os_str(),
            ],
        );
        run(
            "objcopy",
            &[&os("--remove-section=.gnu_debuglink"), &os("nolink.so")],
        );
        assert!(!has_debug_info(&dir.join("nolink.so")));
        assert!(!has_debug_info(&dir.join("missing")));

        let path = std::ffi::CString::new(lib.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: dlopen of a library we just built (no constructors); dlsym of a function
        // taking no arguments and returning a pointer, called once.
        let addr = unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW);
            assert!(!handle.is_null(), "dlopen {}", lib.display());
            let f = libc::dlsym(handle, c"helper_address".as_ptr());
            assert!(!f.is_null());
            let f: extern "C" fn() -> *const libc::c_void = std::mem::transmute(f);
            f() as u64
        };
        let frame = NativeSymbolizer::new().user_frames(std::process::id(), &[addr]);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(frame[0].name, "hidden_helper", "{:?}", frame[0]);
        assert_eq!(frame[0].module, "libdw.so");
    }

    /// blazesym keeps a descriptor per file it symbolized; forgetting the process whose
    /// `/proc/PID/root` it was opened through closes it.
    #[test]
    fn forgetting_a_process_closes_the_files_opened_for_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let sleep_text = || {
            proc::maps(pid).ok()?.into_iter().find(|m| {
                m.executable
                    && m.pathname
                        .as_ref()
                        .is_some_and(|p| p.file_name().is_some_and(|n| n == "sleep"))
            })
        };
        // Until the child has exec'd sleep.
        let mut text = None;
        for _ in 0..500 {
            text = sleep_text();
            if text.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = text.expect("sleep's text mapping");
        let file = std::fs::canonicalize(text.pathname.clone().unwrap()).expect("sleep's path");
        let open_to_file = || {
            std::fs::read_dir("/proc/self/fd")
                .expect("own fds")
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| *target == file)
                .count()
        };
        let before = open_to_file();
        let mut s = NativeSymbolizer::with_dwarf(false);
        let frames = s.user_frames(pid, &[text.start + 0x40]);
        assert_eq!(frames[0].module, "sleep", "{frames:?}");
        assert_eq!((s.open_files(), s.processes()), (1, 1));
        assert_eq!(open_to_file(), before + 1, "blazesym holds the file open");
        s.forget(pid);
        assert_eq!((s.open_files(), s.processes()), (0, 0));
        assert_eq!(
            open_to_file(),
            before,
            "closed once the process is forgotten"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn kernel_frames_are_named_from_kallsyms() {
        // A core kernel text symbol and a module's, when this user may see addresses.
        let Ok(text) = std::fs::read_to_string(KALLSYMS) else {
            return;
        };
        let symbol = |module: bool| {
            text.lines().find_map(|l| {
                let mut f = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(f.next()?, 16)
                    .ok()
                    .filter(|&a| a != 0)?;
                let kind = f.next()?;
                let name = f.next()?;
                (matches!(kind, "T" | "t") && f.next().is_some() == module)
                    .then(|| (addr, name.to_string()))
            })
        };
        let mut s = NativeSymbolizer::new();
        for (addr, name) in [symbol(false), symbol(true)].into_iter().flatten() {
            let named = s.kernel_frames(&[addr]);
            // Another symbol may share the address (an alias listed earlier).
            let aliases: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{addr:016x} ")))
                .filter_map(|l| l.split_ascii_whitespace().nth(2))
                .collect();
            assert!(aliases.contains(&named[0].as_str()), "{named:?} {name}");
        }
    }

    #[test]
    fn function_ranges_cover_the_function() {
        let exe = std::env::current_exe().unwrap();
        let addr = a_function_with_a_symbol as fn() -> u64 as usize as u64;
        let sym = s_name_of(addr);
        let ranges = function_ranges(std::process::id(), &exe, &[sym.as_str()]);
        assert!(ranges.iter().any(|r| r.contains(&addr)), "{ranges:?} {sym}");
    }

    /// The mangled symbol of `addr` in the test binary.
    fn s_name_of(addr: u64) -> String {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let elf = goblin::elf::Elf::parse(&bytes).unwrap();
        let maps = proc::maps(std::process::id()).unwrap();
        let own: Vec<&MapRange> = maps
            .iter()
            .filter(|m| m.pathname.as_deref() == Some(exe.as_path()))
            .collect();
        let img = ElfImage::load(&exe, &[], |_| false).unwrap();
        let bias = img.load_bias(&own).unwrap();
        elf.syms
            .iter()
            .find(|s| s.st_value + bias <= addr && addr < s.st_value + bias + s.st_size.max(1))
            .and_then(|s| elf.strtab.get_at(s.st_name))
            .unwrap()
            .to_string()
    }
}
