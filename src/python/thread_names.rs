//! Thread names as `threading` knows them, read from the target's memory without stopping
//! it: `sys.modules["threading"]._active` maps each thread's ident (its `pthread_t`, the
//! same value as `PyThreadState.thread_id`) to its `Thread`, whose `_name` (2.7:
//! `_Thread__name`) is the name. One read of `_active` names every thread of an
//! interpreter; `ThreadNameCache` does it at most once per new thread, and at most once a
//! second while some thread's name is still unknown. Threads `threading` does not know
//! (it is not imported, or C code started the thread) get the OS thread name instead.

use std::collections::{HashMap, HashSet};
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
/// How long a thread may stay unnamed before `threading._active` is read again.
pub const RETRY_UNKNOWN: Duration = Duration::from_secs(1);

/// What `threading` calls each thread of the interpreter at `interp`: ident -> name. Empty
/// when `threading` is not imported. Entries that cannot be read (a thread being torn down
/// while we look) are skipped; only failing to reach `_active` at all is an error.
pub fn read_thread_names(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    interp: Addr,
) -> Result<HashMap<u64, String>, ObjectError> {
    let mut names = HashMap::new();
    let modules_at = interp
        .checked_add(o.interp_modules)
        .ok_or(MemoryError::Null {
            what: "interpreter state",
        })?;
    let modules = mem.read_ptr(modules_at, "sys.modules")?;
    let Some(threading) = dict_get_str(mem, o, modules, "threading")? else {
        return Ok(names);
    };
    let Some(active) = module_attr(mem, o, threading, "_active")? else {
        return Ok(names);
    };
    for (key, thread) in dict_items(mem, o, active)?
        .into_iter()
        .take(MAX_ACTIVE_THREADS)
    {
        let Some(ident) = read_int(mem, o, key).ok().and_then(ident_from_int) else {
            continue;
        };
        let Ok(Some(name)) = instance_attr(mem, o, thread, NAME_ATTRS) else {
            continue;
        };
        if let Ok(name) = read_py_string(mem, o, name) {
            names.insert(ident, name);
        }
    }
    Ok(names)
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
    /// Not known to `threading` (yet): the OS name, or nothing.
    Fallback(Option<String>),
}

/// One read of an interpreter's `threading._active`.
#[derive(Debug)]
struct Lookup {
    at: Instant,
    sample: u64,
    names: HashMap<u64, String>,
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
    /// sample at most, however many new threads it has) or, while this thread is unnamed,
    /// once per `RETRY_UNKNOWN`.
    pub fn name(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        key: ThreadKey,
        fallback: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        let known = match self.names.get(&key) {
            Some(Named::Threading(name)) => return Some(name.clone()),
            Some(Named::Fallback(name)) => Some(name.clone()),
            None => None,
        };
        let now = Instant::now();
        let stale = match (&known, self.lookups.get(&key.interp)) {
            (_, None) => true,
            // A new thread: names read earlier in this same sample are current enough.
            (None, Some(l)) => l.sample != self.sample,
            // Still unnamed: read again once in a while (it may not have registered yet).
            (Some(_), Some(l)) => now.duration_since(l.at) >= RETRY_UNKNOWN,
        };
        if stale {
            let names = read_thread_names(mem, o, key.interp).unwrap_or_else(|e| {
                log::debug!("threading._active of interpreter {:#x}: {e}", key.interp);
                HashMap::new()
            });
            let sample = self.sample;
            let lookup = Lookup {
                at: now,
                sample,
                names,
            };
            self.lookups.insert(key.interp, lookup);
        }
        // The latest read may be newer than this thread's entry (another new thread asked).
        let found = self
            .lookups
            .get(&key.interp)
            .and_then(|l| l.names.get(&key.ident).cloned());
        let named = match (found, known) {
            (Some(name), _) => Named::Threading(name),
            (None, Some(name)) if !stale => return name,
            // New, or retried: (re)read the OS name too, a thread may rename itself.
            (None, _) => Named::Fallback(fallback()),
        };
        let name = match &named {
            Named::Threading(name) => Some(name.clone()),
            Named::Fallback(name) => name.clone(),
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
            let names = read_thread_names(&img.mem(), &img.o, interp).unwrap();
            let want: HashMap<u64, String> =
                threads.iter().map(|&(i, n)| (i, n.to_string())).collect();
            assert_eq!(names, want, "{series:?}");
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
        assert!(read_thread_names(&img.mem(), &o, interp)
            .unwrap()
            .is_empty());
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
        cache.start_sample([(interp, 1), (interp, 2), (interp, 3)]);
        let fallbacks = std::cell::Cell::new(0);
        let fb = || {
            fallbacks.set(fallbacks.get() + 1);
            Some("comm".to_string())
        };
        assert_eq!(
            cache.name(&mem, o, key(interp, 1), fb).as_deref(),
            Some("MainThread")
        );
        let first = cache.lookups[&interp].at;
        assert_eq!(
            cache.name(&mem, o, key(interp, 2), fb).as_deref(),
            Some("worker-1")
        );
        // Not in _active: the OS name, and no second read within this sample.
        assert_eq!(
            cache.name(&mem, o, key(interp, 3), fb).as_deref(),
            Some("comm")
        );
        assert_eq!(cache.lookups[&interp].at, first);
        // Next sample: cached, no read, no fallback call.
        cache.start_sample([(interp, 1), (interp, 2), (interp, 3)]);
        assert_eq!(
            cache.name(&mem, o, key(interp, 3), fb).as_deref(),
            Some("comm")
        );
        assert_eq!(cache.lookups[&interp].at, first);
        assert_eq!(fallbacks.get(), 1);
        // A later read (for another new thread) that names it names it at once.
        cache
            .lookups
            .get_mut(&interp)
            .unwrap()
            .names
            .insert(3, "late".into());
        assert_eq!(
            cache.name(&mem, o, key(interp, 3), fb).as_deref(),
            Some("late")
        );
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
            cache.name(&mem, o, reused, fb).as_deref(),
            Some("MainThread")
        );
        assert!(cache.lookups[&interp].at > first);
    }

    #[test]
    fn unknown_names_are_retried_after_a_while() {
        let (img, interp) = target((2, 7), &[(1, "MainThread")]);
        let mem = img.mem();
        let mut cache = ThreadNameCache::default();
        cache.start_sample([(interp, 5)]);
        assert_eq!(cache.name(&mem, &img.o, key(interp, 5), || None), None);
        let first = cache.lookups[&interp].at;
        cache.start_sample([(interp, 5)]);
        assert_eq!(cache.name(&mem, &img.o, key(interp, 5), || None), None);
        assert_eq!(cache.lookups[&interp].at, first);
        // Pretend the last read was long ago.
        let Some(earlier) = first.checked_sub(RETRY_UNKNOWN) else {
            return;
        };
        cache.lookups.get_mut(&interp).unwrap().at = earlier;
        cache.start_sample([(interp, 5)]);
        let _ = cache.name(&mem, &img.o, key(interp, 5), || None);
        assert!(cache.lookups[&interp].at > earlier);
    }
}
