//! Thread names as `threading` knows them, read from the target's memory without stopping
//! it: `sys.modules["threading"]._active` maps each thread's ident (its `pthread_t`, the
//! same value as `PyThreadState.thread_id`) to its `Thread`, whose `_name` (2.7:
//! `_Thread__name`) is the name. `ThreadNameCache` reads `_active` at most once per new
//! thread, and again for a thread whose name is still unknown after `FIRST_RETRY`, backing
//! off to once per `RETRY_UNKNOWN`; of what it read, it decodes only the threads it is asked
//! about (see `Lookup`). Threads `threading`
//! does not know (it is not imported, or C code started the thread) get the OS thread name
//! instead.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::objects::{dict_get_str, dict_items, instance_attr, module_attr, read_int, ObjectError};
use super::offsets::PyOffsets;
use super::strings::read_py_string;
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory};

/// Most entries of `threading._active` we read.
pub const MAX_ACTIVE_THREADS: usize = 16_384;
/// The name attribute of `threading.Thread`: `_name` on 3.x, name-mangled `__name` on 2.7.
const NAME_ATTRS: &[&str] = &["_name", "_Thread__name"];
/// How long a thread `threading` did not know stays unnamed before `_active` is read again
/// for it the first time. A new `Thread` registers itself in `_active` from its own first
/// bytecodes, so a sample can catch it just before: a quick second look names it after a
/// sample or two instead of a second's worth of them.
pub const FIRST_RETRY: Duration = Duration::from_millis(20);
/// The longest wait between reads for a thread that stays unnamed (C threads, or `threading`
/// never imported): the wait doubles from `FIRST_RETRY` up to this.
pub const RETRY_UNKNOWN: Duration = Duration::from_secs(1);
/// How long entries read from `_active` may still be decoded for a thread asked about later.
/// The `int` keys and `Thread` objects of threads that ended since are freed; reading them
/// soon after keeps that window small (a freed object fails the type checks or gives an ident
/// nobody asks for; a fresh read is taken after this anyway).
const ENTRIES_TTL: Duration = RETRY_UNKNOWN;

/// Bytes read at once by `ReadAhead`: a small object's header and, for a short `str`, its
/// text.
const READ_AHEAD: usize = 256;
/// Blocks `ReadAhead` keeps before starting over.
const READ_AHEAD_BLOCKS: usize = 4096;
const PAGE: u64 = 4096;

/// Memory read a block at a time, kept for one look at `threading`. Finding `threading` in
/// `sys.modules` and `_active` in its module dict compares key after key with a string,
/// several small reads each (type, `tp_flags`, length, text) of which the type's flags are the
/// same for every key: with each read covering the next `READ_AHEAD` bytes and every block
/// kept, most of them cost no system call. Blocks never cross a page (a readable address makes
/// its whole page readable); a block that still cannot be read (a test image's end) falls back
/// to the exact read. Kept only for one call of `ThreadNameCache::name`: the target runs on.
struct ReadAhead<'m> {
    inner: &'m dyn RemoteMemory,
    blocks: RefCell<BTreeMap<Addr, Vec<u8>>>,
}

impl<'m> ReadAhead<'m> {
    fn new(inner: &'m dyn RemoteMemory) -> ReadAhead<'m> {
        ReadAhead {
            inner,
            blocks: RefCell::new(BTreeMap::new()),
        }
    }
}

impl RemoteMemory for ReadAhead<'_> {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let mut blocks = self.blocks.borrow_mut();
        if let Some((&start, bytes)) = blocks.range(..=addr).next_back() {
            let from = addr - start;
            if from.saturating_add(len) <= bytes.len() as u64 {
                buf.copy_from_slice(&bytes[from as usize..(from + len) as usize]);
                return Ok(());
            }
        }
        let page_left = PAGE - addr % PAGE;
        if len >= READ_AHEAD as u64 || len > page_left {
            return self.inner.read_into(addr, buf);
        }
        let mut block = vec![0u8; (READ_AHEAD as u64).min(page_left) as usize];
        if self.inner.read_into(addr, &mut block).is_err() {
            return self.inner.read_into(addr, buf);
        }
        buf.copy_from_slice(&block[..buf.len()]);
        if blocks.len() >= READ_AHEAD_BLOCKS {
            blocks.clear();
        }
        blocks.insert(addr, block);
        Ok(())
    }
}

/// The (ident key, `Thread`) entries of `threading._active` of the interpreter at `interp`,
/// undecoded. Empty when `threading` is not imported; only failing to reach `_active` at all
/// is an error.
pub fn active_entries(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    interp: Addr,
) -> Result<Vec<(Addr, Addr)>, ObjectError> {
    let modules_at = interp
        .checked_add(o.interp_modules)
        .ok_or(MemoryError::Null {
            what: "interpreter state",
        })?;
    let modules = mem.read_ptr(modules_at, "sys.modules")?;
    let Some(threading) = dict_get_str(mem, o, modules, "threading")? else {
        return Ok(Vec::new());
    };
    let Some(active) = module_attr(mem, o, threading, "_active")? else {
        return Ok(Vec::new());
    };
    let mut entries = dict_items(mem, o, active)?;
    entries.truncate(MAX_ACTIVE_THREADS);
    Ok(entries)
}

/// The ident an `_active` key stands for; `None` for a key that is not a readable `int`.
fn entry_ident(mem: &dyn RemoteMemory, o: &PyOffsets, key: Addr) -> Option<u64> {
    read_int(mem, o, key).ok().and_then(ident_from_int)
}

/// The name of a `threading.Thread` object; `None` when it cannot be read (a thread being
/// torn down while we look).
fn thread_object_name(mem: &dyn RemoteMemory, o: &PyOffsets, thread: Addr) -> Option<String> {
    let name = instance_attr(mem, o, thread, NAME_ATTRS).ok()??;
    read_py_string(mem, o, name).ok()
}

/// A thread ident as stored in `PyThreadState.thread_id`: `unsigned long` on 3.x, `long` on
/// 2.7 (so a negative 2.7 ident is the same 64 bits).
pub fn ident_from_int(value: i128) -> Option<u64> {
    if let Ok(v) = u64::try_from(value) {
        return Some(v);
    }
    i64::try_from(value).ok().map(|v| v as u64)
}

/// A thread as the cache knows it: its interpreter, ident and OS thread id. The tid tells a
/// new thread from an ended one whose `pthread_t` (and so ident) was reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub interp: Addr,
    pub ident: u64,
    pub tid: Option<u32>,
}

#[derive(Debug, Clone)]
enum Named {
    /// From `threading`: final.
    Threading(String),
    /// Not known to `threading` (yet): the OS name, or nothing, and when to look again.
    Fallback(Option<String>, Retry),
}

/// When an unnamed thread was last looked up, and how many times it has been.
#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    tries: u32,
}

impl Retry {
    /// The wait after `tries` fruitless looks: `FIRST_RETRY` doubled per look, at most
    /// `RETRY_UNKNOWN`.
    fn wait(tries: u32) -> Duration {
        FIRST_RETRY
            .saturating_mul(1u32 << tries.min(16))
            .min(RETRY_UNKNOWN)
    }

    /// When this thread is due to be looked up again.
    fn due(&self) -> Instant {
        self.at + Retry::wait(self.tries)
    }
}

/// One read of an interpreter's `threading._active`, decoded lazily: the BPF sampler asks
/// about the one thread it sampled, and decoding every entry (an `int` key and a `Thread`'s
/// attribute dict each) of a process with many threads cost ~30 reads per thread, the bulk of
/// attaching to it. Keys are decoded in entry order until the asked ident turns up (the main
/// thread's comes first), and only the asked thread's name is read.
#[derive(Debug)]
struct Lookup {
    at: Instant,
    sample: u64,
    /// `_active`'s (key, `Thread`) entries as read.
    entries: Vec<(Addr, Addr)>,
    /// How many of `entries` have had their key decoded into `threads`.
    decoded: usize,
    /// ident -> `Thread` object, for the keys decoded so far.
    threads: HashMap<u64, Addr>,
}

impl Lookup {
    fn new(at: Instant, sample: u64, entries: Vec<(Addr, Addr)>) -> Lookup {
        Lookup {
            at,
            sample,
            entries,
            decoded: 0,
            threads: HashMap::new(),
        }
    }

    /// The `threading` name of the thread `ident`, if `_active` held it when read.
    fn name(&mut self, mem: &dyn RemoteMemory, o: &PyOffsets, ident: u64) -> Option<String> {
        while !self.threads.contains_key(&ident) && self.decoded < self.entries.len() {
            let (key, thread) = self.entries[self.decoded];
            self.decoded += 1;
            if let Some(id) = entry_ident(mem, o, key) {
                self.threads.entry(id).or_insert(thread);
            }
        }
        thread_object_name(mem, o, *self.threads.get(&ident)?)
    }
}

/// Thread names of one process, read once per thread and cached (never per sample).
#[derive(Debug, Default)]
pub struct ThreadNameCache {
    names: HashMap<ThreadKey, Named>,
    lookups: HashMap<Addr, Lookup>,
    sample: u64,
}

impl ThreadNameCache {
    /// Start a sample: forget threads that ended (their ident may come back with another
    /// thread), given every (interpreter, ident) alive now.
    pub fn start_sample(&mut self, live: impl IntoIterator<Item = (Addr, u64)>) {
        self.sample += 1;
        let live: HashSet<(Addr, u64)> = live.into_iter().collect();
        self.names
            .retain(|k, _| live.contains(&(k.interp, k.ident)));
        let interps: HashSet<Addr> = live.iter().map(|&(i, _)| i).collect();
        self.lookups.retain(|i, _| interps.contains(i));
    }

    /// The thread's name: from `threading` if it knows the thread, else `fallback()` (the OS
    /// thread name). Reads `threading._active` only for a thread not seen before (once per
    /// sample at most, however many new threads it has, while the read is younger than
    /// `ENTRIES_TTL`) or, while this thread is unnamed, when it falls due (`Retry`), unless
    /// a read was made since for another thread.
    pub fn name(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        key: ThreadKey,
        fallback: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        self.name_at(Instant::now(), mem, o, key, fallback)
    }

    /// `name` as if called at `now` (tests step time by hand).
    fn name_at(
        &mut self,
        now: Instant,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        key: ThreadKey,
        fallback: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        let retry = match self.names.get(&key) {
            Some(Named::Threading(name)) => return Some(name.clone()),
            Some(Named::Fallback(name, retry)) if now < retry.due() => {
                // Not due: the name as last seen, unless a read made since (for another new
                // thread) holds this one.
                let name = name.clone();
                return match self.lookups.get_mut(&key.interp) {
                    Some(l) if l.at > retry.at && now.duration_since(l.at) < ENTRIES_TTL => {
                        match l.name(&ReadAhead::new(mem), o, key.ident) {
                            Some(found) => {
                                self.names.insert(key, Named::Threading(found.clone()));
                                Some(found)
                            }
                            None => name,
                        }
                    }
                    _ => name,
                };
            }
            Some(Named::Fallback(_, retry)) => Some(*retry),
            None => None,
        };
        let stale = match (retry, self.lookups.get(&key.interp)) {
            (_, None) => true,
            // A new thread: entries read earlier in this same sample are current enough.
            (None, Some(l)) => l.sample != self.sample || now.duration_since(l.at) >= ENTRIES_TTL,
            // Due again: a read made since it fell due will do, while young.
            (Some(r), Some(l)) => l.at < r.due() || now.duration_since(l.at) >= ENTRIES_TTL,
        };
        let mem = &ReadAhead::new(mem);
        if stale {
            let entries = active_entries(mem, o, key.interp).unwrap_or_else(|e| {
                log::debug!("threading._active of interpreter {:#x}: {e}", key.interp);
                Vec::new()
            });
            self.lookups
                .insert(key.interp, Lookup::new(now, self.sample, entries));
        }
        let found = self
            .lookups
            .get_mut(&key.interp)
            .and_then(|l| l.name(mem, o, key.ident));
        let named = match found {
            Some(name) => Named::Threading(name),
            // New, or retried: (re)read the OS name too, a thread may rename itself.
            None => Named::Fallback(
                fallback(),
                Retry {
                    at: now,
                    tries: retry.map_or(0, |r| r.tries.saturating_add(1)),
                },
            ),
        };
        let name = match &named {
            Named::Threading(name) => Some(name.clone()),
            Named::Fallback(name, _) => name.clone(),
        };
        self.names.insert(key, named);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::python::objects::tests::Image;
    use crate::python::offsets::InstanceDictModel;

    #[test]
    fn idents_keep_their_64_bits() {
        assert_eq!(ident_from_int(0x7f00_dead_b000), Some(0x7f00_dead_b000));
        assert_eq!(ident_from_int(u64::MAX as i128), Some(u64::MAX));
        assert_eq!(ident_from_int(-1), Some(u64::MAX));
        assert_eq!(ident_from_int(1i128 << 64), None);
    }

    /// An interpreter whose `sys.modules` holds a `threading` module whose `_active` maps
    /// each ident to a thread object named as given. Returns (image, interp).
    fn target(series: (u8, u8), threads: &[(u64, &str)]) -> (Image, Addr) {
        let mut img = Image::new(series);
        let o = img.o.clone();
        let mut active = Vec::new();
        for &(ident, name) in threads {
            let key = img.int(ident as i64 as i128);
            let attr = img.string(if series.0 == 2 {
                "_Thread__name"
            } else {
                "_name"
            });
            let value = img.string(name);
            let dict = img.dict(&[(attr, value)]);
            let thread = match o.instance_dict {
                InstanceDictModel::DictOffset => {
                    let t = img.object(0, 32);
                    let tp = img.mem().read_u64(t + o.object_type).unwrap();
                    img.put(tp + o.type_dictoffset, 24);
                    img.put(t + 24, dict);
                    t
                }
                _ => {
                    // A materialised managed dict (the cached-keys forms are covered in
                    // objects.rs).
                    let t = img.object(crate::python::objects::TPFLAGS_MANAGED_DICT, 16);
                    img.put(t - o.managed_dict_before.unwrap(), dict);
                    t
                }
            };
            active.push((key, thread));
        }
        let active = img.dict(&active);
        let (k_active, k_other) = (img.string("_active"), img.string("_limbo"));
        let module_dict = img.dict(&[(k_other, k_other), (k_active, active)]);
        let module = img.object(0, 64);
        img.put(module + o.module_dict, module_dict);
        let (k_sys, k_threading) = (img.string("sys"), img.string("threading"));
        let modules = img.dict(&[(k_sys, k_sys), (k_threading, module)]);
        let interp = img.alloc(o.interp_modules as usize + 8);
        img.put(interp + o.interp_modules, modules);
        (img, interp)
    }

    #[test]
    fn names_come_from_threading_in_every_version() {
        for series in [(2, 7), (3, 8), (3, 10), (3, 11), (3, 12), (3, 13), (3, 15)] {
            let threads = [
                (0x7f12_3456_7000, "MainThread"),
                (0x7f12_0000_1000, "名前-2"),
            ];
            let (img, interp) = target(series, &threads);
            let mem = img.mem();
            let mut cache = ThreadNameCache::default();
            cache.start_sample(threads.iter().map(|&(i, _)| (interp, i)));
            for (ident, name) in threads {
                let got = cache.name(&mem, &img.o, key(interp, ident), || None);
                assert_eq!(got.as_deref(), Some(name), "{series:?}");
            }
        }
    }

    #[test]
    fn no_threading_module_is_no_names() {
        let mut img = Image::new((3, 11));
        let o = img.o.clone();
        let k = img.string("sys");
        let modules = img.dict(&[(k, k)]);
        let interp = img.alloc(o.interp_modules as usize + 8);
        img.put(interp + o.interp_modules, modules);
        assert!(active_entries(&img.mem(), &o, interp).unwrap().is_empty());
    }

    fn key(interp: Addr, ident: u64) -> ThreadKey {
        ThreadKey {
            interp,
            ident,
            tid: Some(ident as u32),
        }
    }

    #[test]
    fn cache_reads_once_and_falls_back() {
        let (img, interp) = target((3, 13), &[(1, "MainThread"), (2, "worker-1")]);
        let mem = img.mem();
        let o = &img.o;
        let mut cache = ThreadNameCache::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        cache.start_sample([(interp, 1), (interp, 2), (interp, 3)]);
        let fallbacks = std::cell::Cell::new(0);
        let fb = || {
            fallbacks.set(fallbacks.get() + 1);
            Some("comm".to_string())
        };
        assert_eq!(
            cache.name_at(t0, &mem, o, key(interp, 1), fb).as_deref(),
            Some("MainThread")
        );
        assert_eq!(
            cache.name_at(t0, &mem, o, key(interp, 2), fb).as_deref(),
            Some("worker-1")
        );
        // Not in _active: the OS name, and no second read within this sample.
        assert_eq!(
            cache.name_at(ms(1), &mem, o, key(interp, 3), fb).as_deref(),
            Some("comm")
        );
        assert_eq!(cache.lookups[&interp].at, t0);
        // Next sample, before its retry is due: cached, no read, no fallback call.
        cache.start_sample([(interp, 1), (interp, 2), (interp, 3)]);
        assert_eq!(
            cache
                .name_at(ms(10), &mem, o, key(interp, 3), fb)
                .as_deref(),
            Some("comm")
        );
        assert_eq!(cache.lookups[&interp].at, t0);
        assert_eq!(fallbacks.get(), 1);
        // A later read (for another new thread) that names it names it at once, before its
        // own retry is due: here ident 3 turns up with thread 2's `Thread` object.
        let lookup = cache.lookups.get_mut(&interp).unwrap();
        let thread_2 = lookup.threads[&2];
        lookup.threads.insert(3, thread_2);
        lookup.at = ms(5);
        assert_eq!(
            cache
                .name_at(ms(12), &mem, o, key(interp, 3), fb)
                .as_deref(),
            Some("worker-1")
        );
        assert_eq!(cache.lookups[&interp].at, ms(5));
        assert_eq!(fallbacks.get(), 1);
        // A thread that ended is forgotten; the same ident with another tid is new.
        cache.start_sample([(interp, 1)]);
        assert_eq!(cache.names.len(), 1);
        let reused = ThreadKey {
            tid: Some(99),
            ..key(interp, 1)
        };
        cache.start_sample([(interp, 1)]);
        assert_eq!(
            cache.name_at(ms(14), &mem, o, reused, fb).as_deref(),
            Some("MainThread")
        );
        assert_eq!(cache.lookups[&interp].at, ms(14));
    }

    #[test]
    fn only_the_asked_threads_are_decoded() {
        let threads: Vec<(u64, String)> = (1..=20).map(|i| (i, format!("t-{i}"))).collect();
        let named: Vec<(u64, &str)> = threads.iter().map(|(i, n)| (*i, n.as_str())).collect();
        let (img, interp) = target((3, 11), &named);
        let mem = img.mem();
        let mut cache = ThreadNameCache::default();
        cache.start_sample(threads.iter().map(|&(i, _)| (interp, i)));
        // The first entry (the main thread in a real process): one key decoded.
        assert_eq!(
            cache.name(&mem, &img.o, key(interp, 1), || None).as_deref(),
            Some("t-1")
        );
        assert_eq!(cache.lookups[&interp].decoded, 1);
        assert_eq!(
            cache.name(&mem, &img.o, key(interp, 5), || None).as_deref(),
            Some("t-5")
        );
        assert_eq!(cache.lookups[&interp].decoded, 5);
        // An ident `_active` does not hold decodes the rest, once.
        assert_eq!(cache.name(&mem, &img.o, key(interp, 99), || None), None);
        assert_eq!(cache.lookups[&interp].decoded, 20);
        assert_eq!(
            cache
                .name(&mem, &img.o, key(interp, 20), || None)
                .as_deref(),
            Some("t-20")
        );
    }

    #[test]
    fn unknown_names_are_retried_soon_then_less_often() {
        let (img, interp) = target((2, 7), &[(1, "MainThread")]);
        let mem = img.mem();
        let mut cache = ThreadNameCache::default();
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut ask = |at: Instant| {
            cache.start_sample([(interp, 5)]);
            assert_eq!(
                cache.name_at(at, &mem, &img.o, key(interp, 5), || None),
                None
            );
            cache.lookups[&interp].at
        };
        assert_eq!(ask(t0), t0);
        // Due after FIRST_RETRY, then after twice as long each time.
        assert_eq!(ask(ms(10)), t0);
        assert_eq!(ask(ms(20)), ms(20));
        assert_eq!(ask(ms(59)), ms(20));
        assert_eq!(ask(ms(60)), ms(60));
        assert_eq!(ask(ms(139)), ms(60));
        assert_eq!(ask(ms(140)), ms(140));
        // The wait stops growing at RETRY_UNKNOWN.
        assert_eq!(Retry::wait(0), FIRST_RETRY);
        assert_eq!(Retry::wait(3), FIRST_RETRY * 8);
        assert_eq!(Retry::wait(6), RETRY_UNKNOWN);
        assert_eq!(Retry::wait(u32::MAX), RETRY_UNKNOWN);
        // A read made since it fell due (for another thread) serves it without a new one.
        let mut late = ms(140 + 160 + 1);
        cache.start_sample([(interp, 5), (interp, 6)]);
        assert_eq!(
            cache.name_at(late, &mem, &img.o, key(interp, 6), || None),
            None
        );
        late += Duration::from_millis(1);
        assert_eq!(
            cache.name_at(late, &mem, &img.o, key(interp, 5), || None),
            None
        );
        assert_eq!(cache.lookups[&interp].at, ms(301));
    }
}
