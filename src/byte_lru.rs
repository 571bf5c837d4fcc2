//! A cache bounded by the bytes its values hold (not by their count), evicting the least
//! recently used first. A host-wide profiler meets thousands of files and processes over a
//! long run: its caches (ELF images, unwind sections, symbols, open files) must stay within
//! a memory budget however many it sees, and count what they evict.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

/// A map whose values' sizes (given at insertion) sum to at most `max_bytes`; inserting past
/// the bound evicts the least recently used entries (a `get` counts as a use). A value larger
/// than the whole bound is not kept at all.
pub struct ByteLru<K, V> {
    entries: HashMap<K, Slot<V>>,
    /// Use tick -> key, oldest first.
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
    evicted: u64,
}

struct Slot<V> {
    value: V,
    bytes: usize,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V> ByteLru<K, V> {
    pub fn new(max_bytes: usize) -> Self {
        ByteLru {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_bytes,
            evicted: 0,
        }
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.get_mut(key).map(|v| &*v)
    }

    /// As `get`, to change the value in place (its size stays as given at insertion).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let tick = self.next_tick();
        let slot = self.entries.get_mut(key)?;
        self.order.remove(&slot.tick);
        slot.tick = tick;
        self.order.insert(tick, key.clone());
        Some(&mut slot.value)
    }

    /// The value of `key`, leaving its place in the order alone.
    pub fn peek_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|slot| &mut slot.value)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Keep `value` (costing `bytes`) under `key`, replacing an earlier value; returns what was
    /// evicted to make room (oldest first), so that the caller can release what they own.
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> Vec<(K, V)> {
        self.remove(&key);
        if bytes > self.max_bytes {
            self.evicted += 1;
            return vec![(key, value)];
        }
        let mut out = Vec::new();
        while self.bytes + bytes > self.max_bytes {
            match self.pop_oldest() {
                Some(old) => out.push(old),
                None => break,
            }
        }
        self.evicted += out.len() as u64;
        let tick = self.next_tick();
        self.order.insert(tick, key.clone());
        self.entries.insert(key, Slot { value, bytes, tick });
        self.bytes += bytes;
        out
    }

    /// Drop `key` (not counted as an eviction: the caller knows it is no longer needed).
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.entries.remove(key)?;
        self.order.remove(&slot.tick);
        self.bytes -= slot.bytes;
        Some(slot.value)
    }

    /// Drop every entry for which `keep` is false (not counted as evictions).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) -> Vec<(K, V)> {
        let gone: Vec<K> = self
            .entries
            .iter()
            .filter(|(k, slot)| !keep(k, &slot.value))
            .map(|(k, _)| k.clone())
            .collect();
        gone.into_iter()
            .filter_map(|k| self.remove(&k).map(|v| (k, v)))
            .collect()
    }

    fn pop_oldest(&mut self) -> Option<(K, V)> {
        let (_, key) = self.order.pop_first()?;
        let slot = self.entries.remove(&key)?;
        self.bytes -= slot.bytes;
        Some((key, slot.value))
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the values kept now (at most `max_bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries evicted to respect the bound so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// Named eviction counters of the process-wide caches, printed at the end of a run.
pub struct EvictionCounter {
    pub name: &'static str,
    count: AtomicU64,
}

impl EvictionCounter {
    pub const fn new(name: &'static str) -> Self {
        EvictionCounter {
            name,
            count: AtomicU64::new(0),
        }
    }

    pub fn add(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The process-wide caches' eviction counters, one list.
pub mod evictions {
    use super::EvictionCounter;

    /// Parsed ELF images (`process::elf`).
    pub static ELF_IMAGES: EvictionCounter = EvictionCounter::new("elf_images");
    /// Unwind sections of module files (`native::unwind`).
    pub static UNWIND_MODULES: EvictionCounter = EvictionCounter::new("unwind_modules");
    /// Files blazesym holds open and mapped (`native::symbolize`).
    pub static SYMBOL_FILES: EvictionCounter = EvictionCounter::new("symbol_files");
    /// Resolved native and kernel symbols (`native::symbolize`).
    pub static SYMBOLS: EvictionCounter = EvictionCounter::new("symbols");

    /// The non-zero counters by name.
    pub fn nonzero() -> Vec<(&'static str, u64)> {
        [&ELF_IMAGES, &UNWIND_MODULES, &SYMBOL_FILES, &SYMBOLS]
            .into_iter()
            .map(|c| (c.name, c.get()))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut c = ByteLru::new(100);
        assert!(c.insert("a", 1, 40).is_empty());
        assert!(c.insert("b", 2, 40).is_empty());
        // "a" used: "b" is now the oldest.
        assert_eq!(c.get(&"a"), Some(&1));
        let evicted = c.insert("c", 3, 40);
        assert_eq!(evicted, vec![("b", 2)]);
        assert!(c.contains(&"a") && c.contains(&"c") && !c.contains(&"b"));
        // Room for a large one: both older entries go, oldest first.
        let evicted = c.insert("d", 4, 90);
        assert_eq!(evicted, vec![("a", 1), ("c", 3)]);
        assert_eq!(c.evicted(), 3);
        assert_eq!((c.len(), c.bytes()), (1, 90));
    }

    #[test]
    fn the_bound_holds_in_bytes_not_in_count() {
        let mut c = ByteLru::new(10_000);
        for i in 0..5_000u32 {
            // Sizes from 1 to 997 bytes.
            c.insert(i, i, (i as usize * 7919) % 997 + 1);
            assert!(c.bytes() <= 10_000, "{} bytes after {i}", c.bytes());
        }
        let kept: usize = (0..5_000u32)
            .filter(|i| c.contains(i))
            .map(|i| (i as usize * 7919) % 997 + 1)
            .sum();
        assert_eq!(kept, c.bytes());
        // The newest entry is always kept, and what is kept is a suffix of the insertions.
        assert!(c.contains(&4_999));
        let oldest_kept = (0..5_000u32).find(|i| c.contains(i)).unwrap();
        assert!((oldest_kept..5_000).all(|i| c.contains(&i)));
        assert_eq!(c.evicted() as usize + c.len(), 5_000);
    }

    #[test]
    fn replacing_removing_and_oversized_values() {
        let mut c = ByteLru::new(100);
        c.insert("a", 1, 60);
        // Replacing a key frees its old size first: nothing is evicted.
        assert!(c.insert("a", 2, 70).is_empty());
        assert_eq!((c.bytes(), c.get(&"a")), (70, Some(&2)));
        assert_eq!(c.remove(&"a"), Some(2));
        assert_eq!((c.bytes(), c.len()), (0, 0));
        // Larger than the whole bound: handed back, not kept, counted.
        assert_eq!(c.insert("big", 9, 101), vec![("big", 9)]);
        assert!(c.is_empty());
        assert_eq!(c.evicted(), 1);
        c.insert("x", 1, 10);
        c.insert("y", 2, 10);
        let gone = c.retain(|k, _| *k == "y");
        assert_eq!(gone, vec![("x", 1)]);
        assert_eq!((c.bytes(), c.evicted()), (10, 1));
    }
}
