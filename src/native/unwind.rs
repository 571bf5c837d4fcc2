//! Unwinding a thread's native stack from a copy of its registers and the top of its stack,
//! with the modules' `.eh_frame` CFI (framehop), so code built without frame pointers
//! (Debian's CPython) unwinds exactly. A module's unwind sections are read once per file
//! (device, inode, size, mtime) for every process that maps it; each process gets its own
//! module list from `/proc/PID/maps`, rebuilt (rate-limited) when an address falls outside it.
//! A read outside the stack copy ends the stack: the result is marked truncated, not an error.
//! Every return address the rules give is checked (`return_address`: in a module's code,
//! right after a call); where a frame has no rule (assembly without unwind information) or
//! its rule led outside the code, its return address is searched for on the stack
//! (`stack_scan`), and where none is found the stack ends, marked, rather than going on with
//! invented frames.

use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use goblin::elf::{program_header::PT_LOAD, Elf};

use super::cfi_coverage;
use super::return_address::ReturnAddresses;
use super::stack_scan;
use crate::byte_lru::{evictions, ByteLru};
use crate::model::{Addr, Reason};
use crate::process::maps::MapRange;
use crate::process::memory::ProcessMemory;
use crate::process::proc;
use crate::process::regs::{StackCopy, UserRegs};

/// Default bytes of stack copied per thread and sample (`--native`).
pub const DEFAULT_STACK_BYTES: usize = 256 * 1024;
/// Deepest native stack we unwind.
pub const MAX_NATIVE_DEPTH: usize = 2048;
/// A read this far past the end of the stack copy is the stack going on beyond it (frames
/// with large locals); further is a rule reading a garbage address.
const MAX_BEYOND_COPY: Addr = 1 << 20;
/// Stack scans per stack (`stack_scan`): one for each frame without a rule (an assembly leaf,
/// perhaps a caller of the same kind); more would be guessing a whole stack.
const MAX_SCANS: u32 = 2;
/// Candidates one scan tries (each costs an unwind of the rest of the stack).
const MAX_SCAN_TRIALS: usize = 16;
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

/// One module as the unwinder added it: where its code is mapped, its load bias, its file.
struct ModuleRange {
    range: Range<Addr>,
    bias: Addr,
    file: Arc<ModuleFile>,
}

struct ProcessModules {
    start_time: u64,
    unwinder: UnwinderX86_64<Section>,
    /// The modules added, sorted by address.
    modules: Vec<ModuleRange>,
    read_at: Instant,
}

impl ProcessModules {
    fn module(&self, addr: Addr) -> Option<&ModuleRange> {
        let i = self.modules.partition_point(|m| m.range.start <= addr);
        self.modules[..i].last().filter(|m| m.range.contains(&addr))
    }

    fn covers(&self, addr: Addr) -> bool {
        self.module(addr).is_some()
    }

    /// Whether the unwind rules framehop finds for `addr` are its module's own (an FDE covers
    /// it) rather than framehop's guess. Sections read no further than `cfi_coverage` goes,
    /// and `.debug_frame`, count as covered: the rules are trusted as before.
    fn has_rules(&self, addr: Addr) -> bool {
        let Some(m) = self.module(addr) else {
            return false;
        };
        let f = &m.file;
        match (&f.eh_frame_hdr, &f.eh_frame) {
            (Some((hdr_range, hdr)), Some((eh_range, eh))) => cfi_coverage::covered(
                hdr,
                hdr_range.start,
                eh,
                eh_range.start,
                addr.wrapping_sub(m.bias),
            )
            .unwrap_or(true),
            _ => f.debug_frame.is_some(),
        }
    }
}

/// Unwinds the native stacks of any number of processes.
pub struct NativeUnwinder {
    processes: HashMap<u32, ProcessModules>,
    cache: CacheX86_64,
    returns: ReturnAddresses,
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
            returns: ReturnAddresses::default(),
        }
    }

    /// Forget a process (it exited or its pid was reused).
    pub fn forget(&mut self, pid: u32) {
        self.processes.remove(&pid);
        self.returns.forget(pid);
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
        let (first, outside) = self.unwind_once(pid, regs, stack);
        let stale = self.processes.get(&pid).is_some_and(|p| {
            p.read_at.elapsed() >= MODULES_REFRESH
                && (outside || first.addrs.iter().any(|&a| !p.covers(a)))
        });
        if !stale {
            return first;
        }
        self.reload(pid, start_time);
        self.unwind_once(pid, regs, stack).0
    }

    fn reload(&mut self, pid: u32, start_time: u64) {
        let maps = proc::maps(pid).unwrap_or_default();
        let (unwinder, modules) = build_modules(pid, &maps);
        self.processes.insert(
            pid,
            ProcessModules {
                start_time,
                unwinder,
                modules,
                read_at: Instant::now(),
            },
        );
    }

    /// The stack, and whether a rule gave an address outside every known module (a module
    /// mapped since the list was built: the caller may rebuild it and try again).
    fn unwind_once(&mut self, pid: u32, regs: UserRegs, stack: &StackCopy) -> (NativeStack, bool) {
        let mut out = NativeStack {
            addrs: vec![regs.ip],
            sps: vec![regs.sp],
            truncated: None,
        };
        let Some(p) = self.processes.get(&pid) else {
            out.truncated = Some(Reason::ReadFailed);
            return (out, false);
        };
        let mut walk = Walk {
            p,
            pid,
            stack,
            mem: ProcessMemory::new(pid),
            cache: &mut self.cache,
            returns: &mut self.returns,
            outside: false,
        };
        let at = FrameAddress::from_instruction_pointer(regs.ip);
        let uregs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        walk.run(at, uregs, MAX_SCANS, &mut out);
        (out, walk.outside)
    }
}

/// One unwind of one stack: framehop's rules, each return address checked, and where a frame
/// has no rule (or its rule led outside the code) a scan of the stack for its return address.
struct Walk<'a> {
    p: &'a ProcessModules,
    pid: u32,
    stack: &'a StackCopy,
    mem: ProcessMemory,
    cache: &'a mut CacheX86_64,
    returns: &'a mut ReturnAddresses,
    /// A rule gave an address outside every known module.
    outside: bool,
}

impl Walk<'_> {
    fn is_return_address(&mut self, addr: Addr) -> bool {
        self.p.covers(addr) && self.returns.check(self.pid, addr, |_| true)
    }

    /// Unwind from frame `at` with registers `uregs`, appending to `out` (which holds `at`'s
    /// frame already); at most `scans` stack scans.
    fn run(
        &mut self,
        mut at: FrameAddress,
        mut uregs: UnwindRegsX86_64,
        scans: u32,
        out: &mut NativeStack,
    ) {
        let stack = self.stack;
        let copy_end = stack.base.saturating_add(stack.bytes.len() as Addr);
        let mut read_stack = |addr: u64| stack.read_u64(addr).ok_or(());
        loop {
            if out.addrs.len() >= MAX_NATIVE_DEPTH {
                out.truncated = Some(Reason::DepthLimit);
                return;
            }
            let before = uregs;
            let step = self
                .p
                .unwinder
                .unwind_frame(at, &mut uregs, self.cache, &mut read_stack);
            let callee = at.address_for_lookup();
            let ret = match step {
                // A rule of the module's own, or a guess that also called this function.
                Ok(Some(ret))
                    if self.is_return_address(ret)
                        && (self.p.has_rules(callee)
                            || stack_scan::call_can_reach(&self.mem, ret, callee)) =>
                {
                    ret
                }
                // The end of the stack, as the unwind information of its root frame says.
                Ok(None) if out.addrs.len() > 1 => return,
                // The stack goes on beyond the copy.
                Err(framehop::Error::CouldNotReadStack(addr))
                    if (copy_end..copy_end.saturating_add(MAX_BEYOND_COPY)).contains(&addr) =>
                {
                    out.truncated = Some(Reason::ReadFailed);
                    return;
                }
                // No rule for this frame (framehop then guesses: the word at the stack
                // pointer for the leaf, frame pointers above it), or a rule that led outside
                // the code: look for its return address on the stack.
                other => {
                    self.outside |= matches!(other, Ok(Some(ret)) if !self.p.covers(ret));
                    if scans > 0 && self.scan(callee, before, scans - 1, out) {
                        return;
                    }
                    out.truncated = match other {
                        Ok(None) => None,
                        Err(_) => Some(Reason::ReadFailed),
                        Ok(Some(_)) => Some(Reason::NotReturnAddress),
                    };
                    return;
                }
            };
            match FrameAddress::from_return_address(ret) {
                Some(next) => {
                    out.addrs.push(next.address_for_lookup());
                    out.sps.push(uregs.sp());
                    at = next;
                }
                None => return,
            }
        }
    }

    /// The stack scan for the return address of frame `callee` (whose registers were
    /// `before`): each candidate (after a call that can have called it) is tried by unwinding
    /// on from it, and taken only if that unwind does not run into a value that is no return
    /// address. Leftovers of earlier calls in the frame's locals are self-consistent for a
    /// while, then lead into live frames through saved values that no longer fit. Callers in
    /// the callee's own module are tried first: code without unwind information is
    /// hand-written assembly, called by its own library's drivers (OpenBLAS's `dgemm_nn`
    /// calls its kernels), while the leftovers below it are often another module's (a
    /// stale libc frame unwound onto the live `dgemm_nn` in a third of the Haswell samples).
    /// Whether a candidate was taken (its frames are then in `out`).
    fn scan(
        &mut self,
        callee: Addr,
        before: UnwindRegsX86_64,
        scans: u32,
        out: &mut NativeStack,
    ) -> bool {
        let own = self.p.module(callee).map(|m| m.range.clone());
        let same_module = |ret: Addr| own.as_ref().is_some_and(|r| r.contains(&ret));
        self.scan_pass(callee, before, scans, out, &same_module)
            || self.scan_pass(callee, before, scans, out, &|_| true)
    }

    /// One pass of `scan` over the candidates `admit` accepts.
    fn scan_pass(
        &mut self,
        callee: Addr,
        before: UnwindRegsX86_64,
        scans: u32,
        out: &mut NativeStack,
        admit: &dyn Fn(Addr) -> bool,
    ) -> bool {
        let mut from = before.sp();
        for _ in 0..MAX_SCAN_TRIALS {
            let stack = self.stack;
            let mem = ProcessMemory::new(self.pid);
            let found = stack_scan::find_return_address(stack, from, |ret| {
                admit(ret)
                    && self.is_return_address(ret)
                    && stack_scan::call_can_reach(&mem, ret, callee)
            });
            let Some((slot, ret)) = found else {
                return false;
            };
            let Some(next) = FrameAddress::from_return_address(ret) else {
                return false;
            };
            let mut uregs = before;
            uregs.set_sp(slot + 8);
            let mut trial = NativeStack {
                addrs: vec![next.address_for_lookup()],
                sps: vec![uregs.sp()],
                truncated: None,
            };
            self.run(next, uregs, scans, &mut trial);
            if trial.truncated != Some(Reason::NotReturnAddress) {
                out.addrs.extend(trial.addrs);
                out.sps.extend(trial.sps);
                out.truncated = trial.truncated;
                return true;
            }
            from = slot + 8;
        }
        false
    }
}

/// One framehop module per mapped file with executable mappings.
fn build_modules(pid: u32, maps: &[MapRange]) -> (UnwinderX86_64<Section>, Vec<ModuleRange>) {
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
            ranges.push(ModuleRange {
                range,
                bias,
                file: file.clone(),
            });
        }
    }
    ranges.sort_by_key(|m| m.range.start);
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
