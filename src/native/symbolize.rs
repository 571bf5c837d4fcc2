//! Symbolization of native addresses with blazesym, cached so that each distinct address is
//! resolved once per module (user space) or once (kernel). User addresses are first turned
//! into (module, file offset) through the process's maps, which are cached per process and
//! re-read only when an address falls outside them; the module is then symbolized as a file
//! (through `/proc/PID/root`, so processes in containers work), so the result stays right
//! after the process has exited. Addresses that do not resolve become `module+0xoffset` (or
//! the bare address outside any file): they never vanish.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

use crate::model::{Addr, NativeFrame};
use crate::process::elf::ElfImage;
use crate::process::maps::MapRange;
use crate::process::proc;

/// How often a process's maps may be re-read when an address is not covered.
const MAPS_REFRESH: Duration = Duration::from_millis(200);
/// Bound on cached symbols before the caches are cleared.
const MAX_CACHED: usize = 500_000;

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

pub struct NativeSymbolizer {
    symbolizer: Symbolizer,
    maps: HashMap<u32, ProcessMaps>,
    user: HashMap<(ModuleKey, u64), Arc<NativeFrame>>,
    kernel: HashMap<Addr, Arc<str>>,
}

impl Default for NativeSymbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl NativeSymbolizer {
    pub fn new() -> Self {
        NativeSymbolizer {
            // DWARF lookups were measured 60x slower and gave a wrong offset for a function
            // with a `.cold` part; the symbol tables alone are right.
            symbolizer: Symbolizer::builder()
                .enable_code_info(false)
                .enable_inlined_fns(false)
                .build(),
            maps: HashMap::new(),
            user: HashMap::new(),
            kernel: HashMap::new(),
        }
    }

    /// Forget a process (it exited or its pid was reused).
    pub fn forget(&mut self, pid: u32) {
        self.maps.remove(&pid);
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
        let host_path = proc::path_in_root(pid, &key.path);
        let mut elf = Elf::new(&host_path);
        elf.debug_syms = false;
        let src = Source::Elf(elf);
        let name = match self
            .symbolizer
            .symbolize_single(&src, Input::FileOffset(file_offset))
        {
            Ok(Symbolized::Sym(sym)) => sym.name.into_owned(),
            _ => format!("{module}+{vaddr_hint:#x}"),
        };
        let frame = Arc::new(NativeFrame { name, module });
        if self.user.len() >= MAX_CACHED {
            self.user.clear();
        }
        self.user.insert((key, file_offset), frame.clone());
        (*frame).clone()
    }

    /// The module and file offset of `addr` in `pid`, re-reading the maps (rate-limited) when
    /// it is not covered. The third value is the offset from the mapping's start, for names.
    fn locate(&mut self, pid: u32, addr: Addr) -> Option<(ModuleKey, u64, u64)> {
        let fresh = |pid| -> Option<ProcessMaps> {
            Some(ProcessMaps {
                start_time: proc::start_time(pid).ok()?,
                maps: proc::maps(pid).ok()?,
                read_at: Instant::now(),
            })
        };
        let known = self.maps.get(&pid).and_then(|m| find(&m.maps, addr));
        let found = match known {
            Some(hit) => Some(hit),
            None => {
                let stale = self
                    .maps
                    .get(&pid)
                    .map(|m| m.read_at.elapsed() >= MAPS_REFRESH)
                    .unwrap_or(true);
                if stale {
                    if let Some(m) = fresh(pid) {
                        self.maps.insert(pid, m);
                    }
                }
                self.maps.get(&pid).and_then(|m| find(&m.maps, addr))
            }
        };
        found
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
        let src = Source::Kernel(Kernel {
            debug_syms: false,
            ..Kernel::default()
        });
        let name: Arc<str> = match self.symbolizer.symbolize_single(&src, Input::AbsAddr(addr)) {
            Ok(Symbolized::Sym(sym)) => sym.name.into(),
            _ => format!("{addr:#x}").into(),
        };
        if self.kernel.len() >= MAX_CACHED {
            self.kernel.clear();
        }
        self.kernel.insert(addr, name.clone());
        name
    }
}

/// The address ranges, in `pid`, of the functions named in `names` of the ELF file `binary`
/// (a path as the target sees it), from its symbol tables (`.symtab` when not stripped, which
/// also has the `.cold` parts). Asked once per process, so the eval loop is recognised by
/// address range instead of by name in every frame.
pub fn function_ranges(pid: u32, binary: &std::path::Path, names: &[&str]) -> Vec<Range<Addr>> {
    let Ok(image) = ElfImage::load(&proc::path_in_root(pid, binary), names, |_| false) else {
        return Vec::new();
    };
    let maps = proc::maps(pid).unwrap_or_default();
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

fn find(maps: &[MapRange], addr: Addr) -> Option<(ModuleKey, u64, u64)> {
    let m = maps.iter().find(|m| m.contains(addr))?;
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
