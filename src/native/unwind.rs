//! Unwinding a thread's native stack from a copy of its registers and the top of its stack,
//! with the modules' `.eh_frame` CFI (framehop), so code built without frame pointers
//! (Debian's CPython) unwinds exactly. A module's unwind sections are read once per file
//! (device, inode, size, mtime) for every process that maps it; each process gets its own
//! module list from `/proc/PID/maps`, rebuilt (rate-limited) when an address falls outside it.
//! A read outside the stack copy ends the stack: the result is marked truncated, not an error.

use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use goblin::elf::{program_header::PT_LOAD, Elf};

use crate::byte_lru::{evictions, ByteLru};
use crate::model::{Addr, Reason};
use crate::process::maps::MapRange;
use crate::process::proc;
use crate::process::regs::{StackCopy, UserRegs};

/// Default bytes of stack copied per thread and sample (`--native`).
pub const DEFAULT_STACK_BYTES: usize = 256 * 1024;
/// Deepest native stack we unwind.
pub const MAX_NATIVE_DEPTH: usize = 2048;
/// How often a process's module list may be rebuilt when an address is outside it.
const MODULES_REFRESH: Duration = Duration::from_millis(200);
/// Bound on the unwind sections kept across processes (libpython's `.eh_frame` + header is
/// ~1 MiB, libc's ~0.3 MiB); the least recently used module files go first.
const MAX_CACHED_SECTION_BYTES: usize = 64 << 20;

/// Bytes of one section, shared by every process that maps the file.
#[derive(Debug, Clone, Default)]
pub struct Section(Arc<[u8]>);

impl Deref for Section {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// What unwinding needs from one ELF file, with section ranges as linked (SVMAs).
#[derive(Debug, Default)]
struct ModuleFile {
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    eh_frame: Option<(Range<u64>, Section)>,
    eh_frame_hdr: Option<(Range<u64>, Section)>,
    /// DWARF CFI of a file built without `.eh_frame` (framehop uses it only then).
    debug_frame: Option<Section>,
    /// PT_LOAD segments as (file offset, virtual address).
    load_segments: Vec<(u64, u64)>,
}

/// File identity: device, inode, size, modification time.
type FileKey = (u64, u64, u64, i64);

fn module_file(path: &Path) -> Option<Arc<ModuleFile>> {
    use std::os::unix::fs::MetadataExt;
    static CACHE: Mutex<Option<ByteLru<FileKey, Arc<ModuleFile>>>> = Mutex::new(None);
    let meta = std::fs::metadata(path).ok()?;
    let key = (meta.dev(), meta.ino(), meta.size(), meta.mtime());
    if let Some(hit) = CACHE
        .lock()
        .ok()
        .and_then(|mut c| c.as_mut()?.get(&key).cloned())
    {
        return Some(hit);
    }
    // A file that cannot be parsed is cached as empty: framehop then falls back to rbp.
    let parsed = Arc::new(parse_module_file(path).unwrap_or_default());
    if let Ok(mut cache) = CACHE.lock() {
        let map = cache.get_or_insert_with(|| ByteLru::new(MAX_CACHED_SECTION_BYTES));
        // (Processes still unwinding with an evicted module keep their `Arc`s until their
        // module list is rebuilt or they exit.)
        let evicted = map.insert(key, parsed.clone(), parsed.heap_bytes());
        evictions::UNWIND_MODULES.add(evicted.len() as u64);
    }
    Some(parsed)
}

impl ModuleFile {
    /// The bytes it holds: its sections.
    fn heap_bytes(&self) -> usize {
        let section = |s: Option<&Section>| s.map_or(0, |s| s.len());
        std::mem::size_of::<Self>()
            + section(self.eh_frame.as_ref().map(|(_, s)| s))
            + section(self.eh_frame_hdr.as_ref().map(|(_, s)| s))
            + section(self.debug_frame.as_ref())
            + self.load_segments.len() * 16
    }
}

fn parse_module_file(path: &Path) -> Option<ModuleFile> {
    let bytes = std::fs::read(path).ok()?;
    let elf = Elf::parse(&bytes).ok()?;
    let mut out = ModuleFile {
        load_segments: elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| (ph.p_offset, ph.p_vaddr))
            .collect(),
        ..ModuleFile::default()
    };
    for sh in &elf.section_headers {
        let Some(name) = elf.shdr_strtab.get_at(sh.sh_name) else {
            continue;
        };
        let range = sh.sh_addr..sh.sh_addr.saturating_add(sh.sh_size);
        let data = || -> Option<Section> {
            let start = usize::try_from(sh.sh_offset).ok()?;
            let end = start.checked_add(usize::try_from(sh.sh_size).ok()?)?;
            Some(Section(bytes.get(start..end)?.into()))
        };
        match name {
            ".text" => out.text = Some(range),
            ".got" => out.got = Some(range),
            ".eh_frame" => out.eh_frame = data().map(|d| (range, d)),
            ".eh_frame_hdr" => out.eh_frame_hdr = data().map(|d| (range, d)),
            ".debug_frame" => out.debug_frame = data(),
            _ => {}
        }
    }
    // Code built with -fno-asynchronous-unwind-tables -g keeps its CFI in .debug_frame; its
    // .eh_frame then only describes the C runtime's start-up files. framehop reads one of the
    // two, .eh_frame when present: give it the one that describes more code.
    let eh_len = out.eh_frame.as_ref().map_or(0, |(_, d)| d.len());
    if out.debug_frame.as_ref().is_some_and(|d| d.len() > eh_len) {
        out.eh_frame = None;
        out.eh_frame_hdr = None;
    } else {
        out.debug_frame = None;
    }
    Some(out)
}

/// A native stack, leaf first. The first address is the instruction pointer; the others are
/// return addresses minus one (inside the calling instruction), ready to symbolize.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeStack {
    pub addrs: Vec<Addr>,
    /// Beside `addrs`: each frame's stack pointer. Frame `i` owns the stack bytes from
    /// `sps[i]` up to `sps[i + 1]` (its locals: for 3.12+ the eval loop's entry shim frame).
    pub sps: Vec<Addr>,
    /// Why the stack ends before its root, if it does.
    pub truncated: Option<Reason>,
}

struct ProcessModules {
    start_time: u64,
    unwinder: UnwinderX86_64<Section>,
    /// Sorted address ranges of the modules added.
    ranges: Vec<Range<Addr>>,
    read_at: Instant,
}

impl ProcessModules {
    fn covers(&self, addr: Addr) -> bool {
        let i = self.ranges.partition_point(|r| r.start <= addr);
        i > 0 && self.ranges[i - 1].contains(&addr)
    }
}

/// Unwinds the native stacks of any number of processes.
pub struct NativeUnwinder {
    processes: HashMap<u32, ProcessModules>,
    cache: CacheX86_64,
}

impl Default for NativeUnwinder {
    fn default() -> Self {
        Self::new()
    }
}

impl NativeUnwinder {
    pub fn new() -> Self {
        NativeUnwinder {
            processes: HashMap::new(),
            cache: CacheX86_64::new(),
        }
    }

    /// Forget a process (it exited or its pid was reused).
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
    }

    /// Unwind the thread of `pid` whose registers are `regs` and whose stack is `stack`.
    pub fn unwind(&mut self, pid: u32, regs: UserRegs, stack: &StackCopy) -> NativeStack {
        let start_time = proc::start_time(pid).unwrap_or(0);
        if self
            .processes
            .get(&pid)
            .is_none_or(|p| p.start_time != start_time)
        {
            self.reload(pid, start_time);
        }
        let first = self.unwind_once(pid, regs, stack);
        let stale = self.processes.get(&pid).is_some_and(|p| {
            p.read_at.elapsed() >= MODULES_REFRESH && first.addrs.iter().any(|&a| !p.covers(a))
        });
        if !stale {
            return first;
        }
        self.reload(pid, start_time);
        self.unwind_once(pid, regs, stack)
    }

    fn reload(&mut self, pid: u32, start_time: u64) {
        let maps = proc::maps(pid).unwrap_or_default();
        let (unwinder, ranges) = build_modules(pid, &maps);
        self.processes.insert(
            pid,
            ProcessModules {
                start_time,
                unwinder,
                ranges,
                read_at: Instant::now(),
            },
        );
    }

    fn unwind_once(&mut self, pid: u32, regs: UserRegs, stack: &StackCopy) -> NativeStack {
        let Some(p) = self.processes.get(&pid) else {
            return NativeStack {
                addrs: vec![regs.ip],
                sps: vec![regs.sp],
                truncated: Some(Reason::ReadFailed),
            };
        };
        let mut read_stack = |addr: u64| stack.read_u64(addr).ok_or(());
        let mut uregs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut at = FrameAddress::from_instruction_pointer(regs.ip);
        let mut out = NativeStack {
            addrs: vec![regs.ip],
            sps: vec![regs.sp],
            truncated: None,
        };
        loop {
            if out.addrs.len() >= MAX_NATIVE_DEPTH {
                out.truncated = Some(Reason::DepthLimit);
                break;
            }
            match p
                .unwinder
                .unwind_frame(at, &mut uregs, &mut self.cache, &mut read_stack)
            {
                Ok(Some(ret)) => match FrameAddress::from_return_address(ret) {
                    Some(next) => {
                        out.addrs.push(next.address_for_lookup());
                        out.sps.push(uregs.sp());
                        at = next;
                    }
                    None => break,
                },
                Ok(None) => break,
                Err(_) => {
                    out.truncated = Some(Reason::ReadFailed);
                    break;
                }
            }
        }
        out
    }
}

/// One framehop module per mapped file with executable mappings.
fn build_modules(pid: u32, maps: &[MapRange]) -> (UnwinderX86_64<Section>, Vec<Range<Addr>>) {
    let mut files: HashMap<(&PathBuf, u64), Vec<&MapRange>> = HashMap::new();
    for m in maps {
        if let Some(path) = &m.pathname {
            files.entry((path, m.inode)).or_default().push(m);
        }
    }
    let mut unwinder = UnwinderX86_64::new();
    let mut ranges = Vec::new();
    for ((path, _), mappings) in files {
        if !mappings.iter().any(|m| m.executable) {
            continue;
        }
        let Some(file) = mappings
            .first()
            .and_then(|m| proc::mapped_file(pid, m))
            .and_then(|local| module_file(&local))
        else {
            continue;
        };
        // One module per load bias: a file is usually mapped once, by the loader, but some
        // libraries map pages of their own file again elsewhere (libffi's static closure
        // trampolines), and those copies need their own bias to be unwound.
        for (bias, range) in exec_ranges_by_bias(&file.load_segments, &mappings) {
            let info = ExplicitModuleSectionInfo {
                base_svma: 0,
                text_svma: file.text.clone(),
                got_svma: file.got.clone(),
                eh_frame_svma: file.eh_frame.as_ref().map(|(r, _)| r.clone()),
                eh_frame: file.eh_frame.as_ref().map(|(_, d)| d.clone()),
                eh_frame_hdr_svma: file.eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
                eh_frame_hdr: file.eh_frame_hdr.as_ref().map(|(_, d)| d.clone()),
                debug_frame: file.debug_frame.clone(),
                ..ExplicitModuleSectionInfo::default()
            };
            let name = path.display().to_string();
            unwinder.add_module(Module::new(name, range.clone(), bias, info));
            ranges.push(range);
        }
    }
    ranges.sort_by_key(|r| r.start);
    (unwinder, ranges)
}

/// The executable mappings of one file grouped by load bias (where the file's address 0 would
/// be for that mapping), each group with the address range it spans. A mapping's file offset
/// places it in the PT_LOAD segment that starts at or below it (`load_segments`: (offset,
/// vaddr) pairs); mappings the loader made share one bias, a page the program mapped again
/// elsewhere gets its own.
fn exec_ranges_by_bias(
    load_segments: &[(u64, u64)],
    mappings: &[&MapRange],
) -> Vec<(Addr, Range<Addr>)> {
    const PAGE: u64 = 4096;
    let mut groups: Vec<(Addr, Range<Addr>)> = Vec::new();
    for m in mappings.iter().filter(|m| m.executable) {
        let Some(&(off, vaddr)) = load_segments
            .iter()
            .filter(|&&(off, _)| off & !(PAGE - 1) <= m.offset)
            .max_by_key(|&&(off, _)| off)
        else {
            continue;
        };
        let svma = (vaddr & !(PAGE - 1)).wrapping_add(m.offset - (off & !(PAGE - 1)));
        let bias = m.start.wrapping_sub(svma);
        match groups.iter_mut().find(|(b, _)| *b == bias) {
            Some((_, range)) => {
                range.start = range.start.min(m.start);
                range.end = range.end.max(m.end);
            }
            None => groups.push((bias, m.start..m.end)),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(start: Addr, end: Addr, offset: u64, executable: bool) -> MapRange {
        MapRange {
            start,
            end,
            readable: true,
            writable: false,
            executable,
            offset,
            inode: 1,
            pathname: Some("/lib/libffi.so.8".into()),
        }
    }

    /// A library built without `.eh_frame` (`-fno-asynchronous-unwind-tables -g`) keeps its
    /// CFI in `.debug_frame`: that is what the unwinder is given then.
    #[test]
    fn debug_frame_is_picked_up_when_there_is_no_eh_frame() {
        let dir = std::env::temp_dir().join(format!("pyspy-debug-frame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let src = dir.join("f.c");
        let lib = dir.join("libf.so");
        std::fs::write(&src, "int f(int x) { return x * 3 + 1; }\n").expect("write");
        let built = std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-g", "-O1"])
            .args(["-fno-asynchronous-unwind-tables", "-fno-unwind-tables"])
            .arg("-o")
            .arg(&lib)
            .arg(&src)
            .status();
        let file = parse_module_file(&lib);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            built.is_ok_and(|s| s.success()),
            "cc failed (build-essential is required)"
        );
        let file = file.expect("parses");
        // (The C runtime's start-up files bring a small .eh_frame of their own.)
        assert!(file.eh_frame.is_none(), ".eh_frame was preferred");
        assert!(file.debug_frame.is_some_and(|d| !d.is_empty()));
    }

    #[test]
    fn a_file_page_mapped_again_elsewhere_gets_its_own_bias() {
        // libffi: text segment at file offset/vaddr 0x2000; the loader maps it at
        // 0x7f00_0000_2000 (bias 0x7f00_0000_0000); the trampoline page (file offset 0xd000) is
        // mapped again below the library, at 0x7eff_0000_0000.
        let segments = [
            (0, 0),
            (0x2000, 0x2000),
            (0xf000, 0xf000),
            (0x11c30, 0x11c30),
        ];
        let maps = [
            mapping(0x7eff_0000_0000, 0x7eff_0000_1000, 0xd000, true),
            mapping(0x7f00_0000_0000, 0x7f00_0000_2000, 0, false),
            mapping(0x7f00_0000_2000, 0x7f00_0000_f000, 0x2000, true),
            mapping(0x7f00_0000_f000, 0x7f00_0001_1000, 0xf000, false),
        ];
        let refs: Vec<&MapRange> = maps.iter().collect();
        let groups = exec_ranges_by_bias(&segments, &refs);
        assert_eq!(
            groups,
            [
                (
                    0x7eff_0000_0000 - 0xd000,
                    0x7eff_0000_0000..0x7eff_0000_1000
                ),
                (0x7f00_0000_0000, 0x7f00_0000_2000..0x7f00_0000_f000),
            ]
        );
    }
    use crate::process::memory::ProcessMemory;
    use crate::process::regs::copy_stack;

    #[inline(never)]
    fn unwind_here(depth: u32) -> NativeStack {
        if depth > 0 {
            return std::hint::black_box(unwind_here(depth - 1));
        }
        // Start from this very point: ip, sp and bp read by one instruction sequence.
        let (ip, sp, bp): (u64, u64, u64);
        #[allow(unsafe_code)]
        // SAFETY: reads three registers into locals; no memory or flags are touched.
        unsafe {
            std::arch::asm!("lea {}, [rip]", "mov {}, rsp", "mov {}, rbp",
                out(reg) ip, out(reg) sp, out(reg) bp,
                options(nomem, nostack, preserves_flags));
        }
        let mem = ProcessMemory::new(std::process::id());
        let stack = copy_stack(&mem, sp, DEFAULT_STACK_BYTES);
        let mut u = NativeUnwinder::new();
        u.unwind(std::process::id(), UserRegs { ip, sp, bp }, &stack)
    }

    #[test]
    fn unwinds_own_stack_through_recursion() {
        let stack = unwind_here(5);
        let mut sym = crate::native::NativeSymbolizer::new();
        let names: Vec<String> = sym
            .user_frames(std::process::id(), &stack.addrs)
            .into_iter()
            .map(|f| f.name)
            .collect();
        let recursions = names.iter().filter(|n| n.contains("unwind_here")).count();
        assert!(recursions >= 6, "{names:?} {:?}", stack.truncated);
    }
}
