//! Kernel symbols: addresses named from `/proc/kallsyms`, read when the first kernel address
//! must be named. Reading it costs ~50 ms of CPU, nearly all in the kernel formatting its ~120k
//! lines, the largest start-up cost of `record --all`: the core kernel's symbols, fixed for the
//! life of a boot, are therefore kept in a cache file per boot (`$XDG_CACHE_HOME` or
//! `~/.cache`, `pyspy-bpf/kallsyms-BOOT_ID`), and kallsyms itself is read only for an address
//! outside the core kernel's text (a module, a BPF program). The cache is mapped and searched
//! as it lies on disk (`CachedSymbols`): loading it costs microseconds.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Instant;

use crate::model::Addr;
use crate::safe_fs::{Dir, SafeFsError};

pub(crate) const KALLSYMS: &str = "/proc/kallsyms";
/// The symbol that ends the core kernel's text.
const CORE_TEXT_END: &str = "_etext";
/// First line of a cache file (format: `ParsedSymbols::core_table`); v3 adds the text length.
const CACHE_MAGIC: &str = "pyspy-bpf kallsyms core text v3";

/// Where this boot's core kernel symbols are cached: `file` in `base` (`$XDG_CACHE_HOME`,
/// else `$HOME`) / `sub` (`pyspy-bpf`, `.cache/pyspy-bpf`). `base` must exist; `sub` is
/// created. The directory is used only if it is private to us (`Dir::private`).
#[derive(Debug, Clone)]
pub(crate) struct CacheLocation {
    pub(crate) base: PathBuf,
    pub(crate) sub: PathBuf,
    pub(crate) file: String,
}

impl CacheLocation {
    fn path(&self) -> PathBuf {
        self.base.join(&self.sub).join(&self.file)
    }
}

/// Where this boot's core kernel symbols are cached: `None` without a boot id or a home.
pub(crate) fn kallsyms_cache() -> Option<CacheLocation> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let boot_id = boot_id.trim();
    if boot_id.is_empty() || !boot_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return None;
    }
    let file = format!("kallsyms-{boot_id}");
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let (base, sub) = match xdg {
        Some(xdg) => (xdg, PathBuf::from("pyspy-bpf")),
        None => (
            PathBuf::from(std::env::var_os("HOME")?),
            PathBuf::from(".cache/pyspy-bpf"),
        ),
    };
    Some(CacheLocation { base, sub, file })
}

/// The cache's directory, if it is private to us. Otherwise the cache is not used, and one
/// warning per run says why: a `HOME` that another user controls (`sudo -E`, a service's
/// shared home) must not let them choose the file root writes, nor read the kernel's
/// addresses, which undo KASLR.
fn cache_dir(cache: &CacheLocation) -> Option<Dir> {
    match Dir::private(&cache.base, &cache.sub) {
        Ok(dir) => Some(dir),
        Err(e) if e.is_not_found() => {
            log::debug!("kernel symbol cache not used: {e}");
            None
        }
        Err(e) => {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                log::warn!(
                    "kernel symbol cache {} not used: {e}; reading {KALLSYMS} instead",
                    cache.path().display()
                )
            });
            None
        }
    }
}

/// The running kernel's release (`uname -r`), which a cache file must name.
fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Kernel symbols in kallsyms format, sorted by address; an address is named after the
/// nearest symbol at or below it (as blazesym's kallsyms source did).
pub(crate) enum KernelSymbols {
    /// All of kallsyms, parsed from its text.
    All(ParsedSymbols),
    /// Only the core kernel's text symbols (below `_etext`), looked up in this boot's cache
    /// file as it lies on disk.
    Core(CachedSymbols),
}

impl KernelSymbols {
    /// The core kernel's text symbols from this boot's cache file, else all of kallsyms
    /// (whose core part is then written to the cache for the next run).
    pub(crate) fn core_or_all(kallsyms: &str, cache: Option<&CacheLocation>) -> KernelSymbols {
        let release = kernel_release();
        let dir = match (cache, &release) {
            (Some(cache), Some(_)) => cache_dir(cache).map(|dir| (dir, cache.file.as_str())),
            _ => None,
        };
        if let (Some((dir, file)), Some(release)) = (&dir, &release) {
            if let Some(core) = KernelSymbols::read_cache(dir, file, release) {
                return core;
            }
        }
        let all = KernelSymbols::all(kallsyms);
        if let (Some((dir, file)), Some(release)) = (&dir, &release) {
            if let Err(e) = all.write_cache(dir, file, release) {
                log::debug!("not caching kernel symbols: {e}");
            }
        }
        all
    }

    /// Every symbol of `path` (kallsyms). One that cannot be read (no procfs, a sandbox)
    /// gives an empty table: kernel frames are then shown as addresses.
    pub(crate) fn all(path: &str) -> KernelSymbols {
        let started = Instant::now();
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            Err(e) => {
                log::warn!("reading {path}: {e}; kernel frames are shown as addresses");
                String::new()
            }
        };
        let all = ParsedSymbols::parse(text);
        log::debug!(
            "{path}: {} symbols in {:?}",
            all.starts.len(),
            started.elapsed()
        );
        KernelSymbols::All(all)
    }

    /// The cached core symbols, if `file` exists in `dir`, is ours alone, is whole and was
    /// written for this kernel release.
    fn read_cache(dir: &Dir, file: &str, release: &str) -> Option<KernelSymbols> {
        let started = Instant::now();
        let core = CachedSymbols::open(dir, file, release)?;
        log::debug!(
            "{}/{file}: {} core kernel symbols in {:?}",
            dir.path().display(),
            core.count,
            started.elapsed()
        );
        Some(KernelSymbols::Core(core))
    }

    /// Write the core kernel's symbols to `file` in `dir` (format:
    /// `ParsedSymbols::core_table`). A table read from the cache is there already.
    fn write_cache(&self, dir: &Dir, file: &str, release: &str) -> Result<(), CacheError> {
        match self {
            KernelSymbols::All(all) => match all.core_table(release)? {
                Some(table) => write_private(dir, file, &table),
                None => Ok(()), // no `_etext`: no core text to cache
            },
            KernelSymbols::Core(_) => Ok(()),
        }
    }

    /// Whether this table can name `addr`: all of kallsyms can try any address; the core
    /// part only its own text.
    pub(crate) fn covers(&self, addr: Addr) -> bool {
        match self {
            KernelSymbols::All(_) => true,
            KernelSymbols::Core(core) => core.covers(addr),
        }
    }

    /// The symbol at or below `addr` (the first listed of its aliases); `None` below the
    /// first symbol, or for a name the cache file holds badly.
    pub(crate) fn name(&self, addr: Addr) -> Option<&str> {
        match self {
            KernelSymbols::All(all) => all.name(addr),
            KernelSymbols::Core(core) => core.name(addr),
        }
    }

    /// Index kallsyms-format text (see `ParsedSymbols::parse`).
    #[cfg(test)]
    fn parse(text: String) -> KernelSymbols {
        KernelSymbols::All(ParsedSymbols::parse(text))
    }

    /// How many symbols the table holds, aliases included.
    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            KernelSymbols::All(all) => all.starts.len(),
            KernelSymbols::Core(core) => core.count,
        }
    }

    /// `Some(end)`: only the core kernel's text below `end`; `None`: all of kallsyms.
    #[cfg(test)]
    fn core_end(&self) -> Option<Addr> {
        match self {
            KernelSymbols::All(_) => None,
            KernelSymbols::Core(core) => Some(core.end),
        }
    }
}

/// The index of the first listed symbol (aliases share an address) at the highest start
/// address at or below `addr`, among `len` symbols whose start addresses `start` gives by
/// index (only below `len`); `None` below the first symbol. The starts should be sorted; if
/// they are not, the answer is some index below `len`, or `None`: a wrong name, never an
/// index out of bounds.
fn first_at_or_below(len: usize, start: impl Fn(usize) -> Addr, addr: Addr) -> Option<usize> {
    let after = partition_point(len, |i| start(i) <= addr);
    let base = start(after.checked_sub(1)?);
    Some(partition_point(after, |i| start(i) < base))
}

/// `slice::partition_point` over the indices `0..len`: the first index for which `is_before`
/// is false, if `is_before` holds for a prefix of them; some index in `0..=len` otherwise.
fn partition_point(len: usize, is_before: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (0, len);
    while low < high {
        let mid = low + (high - low) / 2;
        if is_before(mid) {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    low
}

/// Symbols parsed from kallsyms-format text, indexed by address.
pub(crate) struct ParsedSymbols {
    /// Start addresses, sorted; `names[i]` names `starts[i]`.
    starts: Vec<Addr>,
    /// (offset, length) of each name in `text`.
    names: Vec<(u32, u32)>,
    /// The text parsed.
    text: String,
}

impl ParsedSymbols {
    /// Index kallsyms-format text (`ADDRESS TYPE NAME [\t[MODULE]]` per line; lines that do
    /// not parse are skipped, and so are zero addresses, hidden by `kptr_restrict`).
    fn parse(text: String) -> ParsedSymbols {
        let mut entries: Vec<(Addr, u32, u32)> = Vec::new();
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(addr), Some(_kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(addr) = Addr::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            // `name` is a sub-slice of `text`: its offset in it.
            let offset = name.as_ptr() as usize - text.as_ptr() as usize;
            let (Ok(offset), Ok(len)) = (u32::try_from(offset), u32::try_from(name.len())) else {
                continue;
            };
            entries.push((addr, offset, len));
        }
        // Stable: among symbols at one address (aliases), the first listed wins.
        entries.sort_by_key(|&(addr, _, _)| addr);
        ParsedSymbols {
            starts: entries.iter().map(|&(addr, _, _)| addr).collect(),
            names: entries.iter().map(|&(_, off, len)| (off, len)).collect(),
            text,
        }
    }

    fn name(&self, addr: Addr) -> Option<&str> {
        let first = first_at_or_below(self.starts.len(), |i| self.starts[i], addr)?;
        self.name_at(first)
    }

    fn name_at(&self, index: usize) -> Option<&str> {
        let &(offset, len) = self.names.get(index)?;
        let offset = offset as usize;
        self.text.get(offset..offset + len as usize)
    }

    fn address_of(&self, symbol: &str) -> Option<Addr> {
        (0..self.starts.len())
            .find(|&i| self.name_at(i) == Some(symbol))
            .map(|i| self.starts[i])
    }

    /// The bytes of a cache file of the core kernel's symbols (those below `_etext`, outside
    /// any module); `None` without `_etext`. The format is ready to use, not to read, so that
    /// loading it costs nothing per symbol (see `CachedSymbols`). Two header lines
    /// (`CACHE_MAGIC`; the release, the end address in hex, the symbol count and the length
    /// of the names' text), then, little-endian: the sorted start addresses (u64), each
    /// name's (offset, length) in the text (u32 pairs), and the text of the names.
    fn core_table(&self, release: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(end) = self.address_of(CORE_TEXT_END) else {
            return Ok(None);
        };
        let mut core: Vec<(Addr, &str)> = Vec::new();
        for line in self.text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(addr), Some(_), Some(name), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue; // a module's symbol (`name [module]`) or a malformed line
            };
            if let Ok(addr) = Addr::from_str_radix(addr, 16) {
                if addr != 0 && addr < end {
                    core.push((addr, name));
                }
            }
        }
        // Stable, as in `parse`: aliases keep their order.
        core.sort_by_key(|&(addr, _)| addr);
        let too_big = || std::io::Error::other("kernel symbol names over 4 GiB");
        let mut starts = Vec::with_capacity(core.len() * 8);
        let mut names = Vec::with_capacity(core.len() * 8);
        let mut text = String::new();
        for &(addr, name) in &core {
            starts.extend_from_slice(&addr.to_le_bytes());
            let offset = u32::try_from(text.len()).map_err(|_| too_big())?;
            let len = u32::try_from(name.len()).map_err(|_| too_big())?;
            names.extend_from_slice(&offset.to_le_bytes());
            names.extend_from_slice(&len.to_le_bytes());
            text.push_str(name);
        }
        let header = format!(
            "{CACHE_MAGIC}\n{release} {end:x} {} {}\n",
            core.len(),
            text.len()
        );
        Ok(Some(
            [header.as_bytes(), &starts, &names, text.as_bytes()].concat(),
        ))
    }
}

/// Why the cache was not written.
#[derive(Debug, thiserror::Error)]
enum CacheError {
    #[error(transparent)]
    Fs(#[from] SafeFsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Write `bytes` to `file` in `dir` through a new temporary file (`.kallsyms-PID.tmp`,
/// created 0600 where nothing was, never through a symlink) renamed into place: other runs
/// may have the old file open or mapped, and keep reading it whole (a rename swaps the name,
/// not the file), and none ever sees a partly written one. The cache is never written in
/// place.
fn write_private(dir: &Dir, file: &str, bytes: &[u8]) -> Result<(), CacheError> {
    // Kernel addresses are secret from other users (they undo KASLR): the file is ours
    // alone, in a directory that is ours alone (`Dir::private`).
    let mut tmp = dir.create_temp("kallsyms", 0o600)?;
    std::io::Write::write_all(tmp.file(), bytes)?;
    tmp.rename_onto(OsStr::new(file))?;
    Ok(())
}

/// The core kernel's symbols in a cache file (format: `ParsedSymbols::core_table`), used as
/// the file holds them: loading checks only the header, and a lookup decodes the ~17
/// addresses its binary search touches and validates the one name it returns. (Building
/// tables of all ~120k symbols cost ~10-16 ms per run, to name a few hundred addresses.)
pub(crate) struct CachedSymbols {
    file: Mapping,
    /// Where in `file` the start addresses, the names' (offset, length) pairs and the text
    /// of the names begin; the text runs to the end of the file.
    starts_at: usize,
    names_at: usize,
    text_at: usize,
    /// How many symbols; never 0.
    count: usize,
    /// `_etext`: the end of the core kernel's text.
    end: Addr,
}

impl CachedSymbols {
    /// The cache file `name` in `dir`, if it is ours alone (a regular file, not a symlink,
    /// owned by us, 0600), was written for `release` and is whole.
    fn open(dir: &Dir, name: &str, release: &str) -> Option<CachedSymbols> {
        let file = match dir.open_private_file(name) {
            Ok(file) => file?,
            Err(e) => {
                log::warn!("kernel symbol cache not used: {e}");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        let len = usize::try_from(meta.len()).ok()?;
        let file = Mapping::new(&file, len)
            .map_err(|e| log::debug!("mapping {name}: {e}; not used"))
            .ok()?;
        CachedSymbols::from_file(file, release)
    }

    /// Check the header of `file`: the magic, `release`, and sizes that fill the file
    /// exactly (a torn or foreign file is refused). The tables themselves are not walked:
    /// a bad name is found when it is looked up, and addresses out of order give wrong
    /// names, never a panic (see `first_at_or_below`).
    fn from_file(file: Mapping, release: &str) -> Option<CachedSymbols> {
        let bytes = file.bytes();
        let mut at = 0;
        let mut line = || {
            let len = bytes.get(at..)?.iter().position(|&b| b == b'\n')?;
            let text = std::str::from_utf8(&bytes[at..at + len]).ok();
            at += len + 1;
            text
        };
        let (magic, header) = (line()?, line()?);
        let mut fields = header.split_ascii_whitespace();
        let (cached_release, end, count, text_len) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        if magic != CACHE_MAGIC || cached_release != release || fields.next().is_some() {
            return None;
        }
        let end = Addr::from_str_radix(end, 16).ok()?;
        let count: usize = count.parse().ok()?;
        let text_len: usize = text_len.parse().ok()?;
        let table_len = count.checked_mul(8)?;
        let starts_at = at;
        let names_at = starts_at.checked_add(table_len)?;
        let text_at = names_at.checked_add(table_len)?;
        if count == 0 || text_at.checked_add(text_len)? != bytes.len() {
            return None;
        }
        Some(CachedSymbols {
            file,
            starts_at,
            names_at,
            text_at,
            count,
            end,
        })
    }

    fn covers(&self, addr: Addr) -> bool {
        self.start(0).is_some_and(|first| first <= addr) && addr < self.end
    }

    fn name(&self, addr: Addr) -> Option<&str> {
        let first = first_at_or_below(self.count, |i| self.start(i).unwrap_or(Addr::MAX), addr)?;
        let entry = self.entry(self.names_at, first)?;
        let [o0, o1, o2, o3, l0, l1, l2, l3] = entry;
        let offset = u32::from_le_bytes([o0, o1, o2, o3]) as usize;
        let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
        // Within the text and UTF-8, or no name: the frame is shown as an address.
        let text = self.file.bytes().get(self.text_at..)?;
        std::str::from_utf8(text.get(offset..offset.checked_add(len)?)?).ok()
    }

    fn start(&self, index: usize) -> Option<Addr> {
        self.entry(self.starts_at, index).map(Addr::from_le_bytes)
    }

    /// The `index`th 8-byte entry of the table at `table_at`, if it is one of the `count`.
    fn entry(&self, table_at: usize, index: usize) -> Option<[u8; 8]> {
        if index >= self.count {
            return None;
        }
        let at = table_at.checked_add(index.checked_mul(8)?)?;
        self.file
            .bytes()
            .get(at..at.checked_add(8)?)?
            .try_into()
            .ok()
    }
}

/// A file mapped read-only: the bytes of the cache are read from the page cache only where
/// a lookup touches them (a few pages per run) instead of copied whole.
struct Mapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Map the first `len` bytes of `file` (its size when opened).
    #[allow(unsafe_code)]
    fn new(file: &std::fs::File, len: usize) -> std::io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Err(std::io::Error::other("empty file"));
        }
        // SAFETY: a new read-only mapping at an address the kernel chooses, so it replaces
        // none of our memory; `file` is an open descriptor for the call's duration (the
        // mapping outlives it by design). The result is checked before it is used.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr =
            std::ptr::NonNull::new(ptr.cast()).ok_or_else(|| std::io::Error::other("null"))?;
        Ok(Mapping { ptr, len })
    }

    #[allow(unsafe_code)]
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`, which cannot run while this
        // borrow lives. They stay as they were when mapped: the file is ours alone
        // (`Dir::open_private_file`), and we never write it in place nor truncate it (`write_private`
        // writes a new file and renames it over the old one, whose inode our mapping keeps),
        // so no access past its end can fault (SIGBUS) and no byte changes under the borrow.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once; no borrow of it outlives
        // `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    impl KernelSymbols {
        /// `read_cache` of the file at `cache`.
        fn read_cache_at(cache: &Path, release: &str) -> Option<KernelSymbols> {
            let dir = Dir::open(cache.parent()?).ok()?;
            KernelSymbols::read_cache(&dir, cache.file_name()?.to_str()?, release)
        }

        /// `write_cache` to the file at `cache`, its directory created.
        fn write_cache_at(&self, cache: &Path, release: &str) -> Result<(), CacheError> {
            let parent = cache.parent().unwrap();
            std::fs::create_dir_all(parent)?;
            let name = cache.file_name().unwrap().to_str().unwrap();
            self.write_cache(&Dir::open(parent)?, name, release)
        }
    }

    const KALLSYMS_TEXT: &str = "\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000010 T entry_a
0000000000000000 A hidden
ffffffff81000100 t after_a
ffffffff81000200 T _etext
ffffffff81000300 D some_data
ffffffffa0000000 t mod_func\t[some_mod]
garbage
";

    #[test]
    fn kernel_symbols_name_the_nearest_symbol_below() {
        let syms = KernelSymbols::parse(KALLSYMS_TEXT.to_string());
        assert_eq!(syms.len(), 7);
        assert_eq!(syms.name(0xffffffff81000000), Some("_stext"));
        assert_eq!(syms.name(0xffffffff81000008), Some("_stext"));
        assert_eq!(syms.name(0xffffffff81000010), Some("entry_a"));
        assert_eq!(syms.name(0xffffffff810000ff), Some("entry_a"));
        assert_eq!(syms.name(0xffffffff81000100), Some("after_a"));
        assert_eq!(syms.name(0xffffffffa0000040), Some("mod_func"));
        assert_eq!(syms.name(0x1000), None);
        assert!(syms.covers(0x1000));
        assert_eq!(KernelSymbols::parse(String::new()).name(0x1000), None);
    }

    #[test]
    fn core_kernel_symbols_are_cached_per_release() {
        let dir = std::env::temp_dir().join(format!("pyspy-bpf-ksyms-{}", std::process::id()));
        let kallsyms = dir.join("kallsyms");
        let cache = dir.join("cache").join("kallsyms-boot");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&kallsyms, KALLSYMS_TEXT).unwrap();
        let all = KernelSymbols::parse(KALLSYMS_TEXT.to_string());
        all.write_cache_at(&cache, "6.1.0-test").unwrap();
        assert!(KernelSymbols::read_cache_at(&cache, "6.1.0-other").is_none());
        let core = KernelSymbols::read_cache_at(&cache, "6.1.0-test").unwrap();
        // The core text, without data past `_etext` or modules.
        assert_eq!(core.core_end(), Some(0xffffffff81000200));
        assert_eq!(core.len(), 4);
        for addr in [0xffffffff81000008, 0xffffffff81000010, 0xffffffff81000150] {
            assert!(core.covers(addr));
            assert_eq!(core.name(addr), all.name(addr), "{addr:#x}");
        }
        // A file others may read or write is not used.
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |m| std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(m));
            assert_eq!(
                std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
                0o600
            );
            mode(0o644).unwrap();
            assert!(KernelSymbols::read_cache_at(&cache, "6.1.0-test").is_none());
            mode(0o600).unwrap();
        }
        // A torn file is not used.
        let bytes = std::fs::read(&cache).unwrap();
        std::fs::write(&cache, &bytes[..bytes.len() - 3]).unwrap();
        assert!(KernelSymbols::read_cache_at(&cache, "6.1.0-test").is_none());
        // Beyond it, or below it, all of kallsyms must be read.
        assert!(!core.covers(0xffffffff81000200));
        assert!(!core.covers(0xffffffffa0000040));
        assert!(!core.covers(0xffffffff80000000));
        // A missing cache: kallsyms is read (and the cache written).
        std::fs::remove_file(&cache).unwrap();
        let location = CacheLocation {
            base: dir.clone(),
            sub: PathBuf::from("cache"),
            file: "kallsyms-boot".to_string(),
        };
        assert_eq!(location.path(), cache);
        let first = KernelSymbols::core_or_all(kallsyms.to_str().unwrap(), Some(&location));
        assert_eq!(first.core_end(), None);
        if kernel_release().is_some() {
            let second = KernelSymbols::core_or_all(kallsyms.to_str().unwrap(), Some(&location));
            assert_eq!(second.core_end(), Some(0xffffffff81000200));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A cache of `KALLSYMS_TEXT`'s core symbols, in a directory of its own under `name`.
    fn cache_of_test_symbols(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("pyspy-bpf-{name}-{}", std::process::id()));
        let cache = dir.join("kallsyms-boot");
        let all = KernelSymbols::parse(KALLSYMS_TEXT.to_string());
        all.write_cache_at(&cache, "6.1.0-test").unwrap();
        (dir, cache)
    }

    /// Where a cache file's three tables begin (after its two header lines), for 4 symbols.
    fn tables_of(bytes: &[u8]) -> [usize; 3] {
        let newlines: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] == b'\n').collect();
        let starts_at = newlines[1] + 1;
        [starts_at, starts_at + 4 * 8, starts_at + 2 * 4 * 8]
    }

    #[test]
    fn cached_names_outside_the_text_or_not_utf8_are_not_named() {
        let (dir, cache) = cache_of_test_symbols("ksyms-garbage");
        let good = std::fs::read(&cache).unwrap();
        let [_, names_at, text_at] = tables_of(&good);
        let addrs = [0xffffffff81000000, 0xffffffff81000010, 0xffffffff81000150];
        let names_with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = good.clone();
            edit(&mut bytes);
            std::fs::write(&cache, &bytes).unwrap();
            let core = KernelSymbols::read_cache_at(&cache, "6.1.0-test").expect("header intact");
            addrs.map(|a| core.name(a).map(str::to_string))
        };
        // Offsets and lengths far past the text, up to overflowing `offset + len`.
        let none = [None, None, None];
        assert_eq!(names_with(&|b| b[names_at..text_at].fill(0xff)), none);
        // An offset inside the text with a length running past its end.
        let past_end = |b: &mut Vec<u8>| {
            for entry in b[names_at..text_at].chunks_exact_mut(8) {
                entry[4..].copy_from_slice(&1000u32.to_le_bytes());
            }
        };
        assert_eq!(names_with(&past_end), none);
        // Names that are not UTF-8.
        assert_eq!(names_with(&|b| b[text_at..].fill(0xff)), none);
        // Addresses out of order: some answer, or none, but no panic.
        let [starts_at, ..] = tables_of(&good);
        names_with(&|b| b[starts_at..names_at].reverse());
        names_with(&|b| b[starts_at..names_at].fill(0xff));
        // The file as written names them all.
        assert_eq!(
            names_with(&|_| ()),
            ["_stext", "entry_a", "after_a"].map(|n| Some(n.to_string()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cache_whose_header_does_not_fit_the_file_is_refused() {
        let (dir, cache) = cache_of_test_symbols("ksyms-header");
        let good = std::fs::read(&cache).unwrap();
        let [starts_at, ..] = tables_of(&good);
        let header = std::str::from_utf8(&good[..starts_at]).unwrap();
        let text_len = good.len() - starts_at - 2 * 4 * 8;
        assert_eq!(
            header,
            format!("{CACHE_MAGIC}\n6.1.0-test ffffffff81000200 4 {text_len}\n")
        );
        let read_with = |header: &str, tail: &[u8]| {
            let bytes = [header.as_bytes(), &good[starts_at..], tail].concat();
            std::fs::write(&cache, bytes).unwrap();
            KernelSymbols::read_cache_at(&cache, "6.1.0-test").is_some()
        };
        let fields = |count: &str, text_len: &str| {
            format!("{CACHE_MAGIC}\n6.1.0-test ffffffff81000200 {count} {text_len}\n")
        };
        assert!(read_with(header, b""));
        // More symbols, or more text, than the file holds; and bytes past what it claims.
        assert!(!read_with(&fields("5", &text_len.to_string()), b""));
        assert!(!read_with(&fields(&u64::MAX.to_string(), "0"), b""));
        assert!(!read_with(&fields("4", &(text_len + 1).to_string()), b""));
        assert!(!read_with(header, b"x"));
        // No symbols, a field missing or extra, or the previous format.
        assert!(!read_with(&fields("0", "0"), &[]));
        assert!(!read_with(
            &format!("{CACHE_MAGIC}\n6.1.0-test ffffffff81000200 4\n"),
            b""
        ));
        assert!(!read_with(&format!("{} 0\n", header.trim_end()), b""));
        let v2 = header.replace(CACHE_MAGIC, "pyspy-bpf kallsyms core text v2");
        assert!(!read_with(&v2, b""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cached_lookups_below_the_first_symbol_and_from_etext_on() {
        let (dir, cache) = cache_of_test_symbols("ksyms-edges");
        let core = KernelSymbols::read_cache_at(&cache, "6.1.0-test").unwrap();
        let all = KernelSymbols::parse(KALLSYMS_TEXT.to_string());
        // Below `_stext`: no name, and kallsyms is not asked either (it has none there).
        assert!(!core.covers(0xffffffff80ffffff));
        assert_eq!(core.name(0xffffffff80ffffff), None);
        assert_eq!(all.name(0xffffffff80ffffff), None);
        assert!(core.covers(0xffffffff81000000));
        // From `_etext` on the cache does not cover the address (all of kallsyms names it);
        // asked anyway it names the last text symbol, as it did before.
        for addr in [0xffffffff81000200, 0xffffffff81000300, 0xffffffffa0000040] {
            assert!(!core.covers(addr), "{addr:#x}");
            assert_eq!(core.name(addr), Some("after_a"));
        }
        assert!(core.covers(0xffffffff810001ff));
        assert_eq!(all.name(0xffffffff81000200), Some("_etext"));
        assert_eq!(all.name(0xffffffff81000300), Some("some_data"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
