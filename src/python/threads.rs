//! Interpreters and thread states of a process, the OS thread id of each, and which thread
//! holds the GIL. Every list read from the target is bounded and cycle-checked.

use std::collections::{HashMap, HashSet};

use super::offsets::PyOffsets;
use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory};

/// More interpreters or threads than this means we are reading garbage.
const MAX_INTERPRETERS: usize = 256;
const MAX_THREADS: usize = 16_384;

/// One `PyThreadState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadState {
    pub addr: Addr,
    pub interp: Addr,
    /// `thread_id`: the thread's `pthread_t`.
    pub ident: u64,
    /// `native_thread_id` where the version has it.
    pub native_tid: Option<u32>,
}

/// Follow a `next`-linked list from `head`, bounded and cycle-safe.
fn linked_list(
    mem: &dyn RemoteMemory,
    head: Addr,
    next_offset: u64,
    max: usize,
) -> Result<Vec<Addr>, MemoryError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut at = head;
    while at != 0 && out.len() < max && seen.insert(at) {
        out.push(at);
        at = mem.read_u64(at + next_offset)?;
    }
    Ok(out)
}

/// Every interpreter (the main one and subinterpreters), starting from the list head.
pub fn interpreters(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    head: Addr,
) -> Result<Vec<Addr>, MemoryError> {
    linked_list(mem, head, o.interp_next, MAX_INTERPRETERS)
}

/// Every thread state of one interpreter. Each thread state's `next`, `thread_id` and
/// `native_thread_id` come from one read of the span that holds them: three reads per thread
/// made the first look at a process with many threads cost more than the rest of attaching
/// to it.
pub fn thread_states(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    interp: Addr,
) -> Result<Vec<ThreadState>, MemoryError> {
    let fields = [
        Some(o.tstate_next),
        Some(o.tstate_thread_id),
        o.tstate_native_thread_id,
    ];
    let first = fields.iter().flatten().copied().min().unwrap_or(0);
    let end = fields.iter().flatten().copied().max().unwrap_or(0) + 8;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut at = mem.read_u64(interp + o.interp_tstate_head)?;
    while at != 0 && out.len() < MAX_THREADS && seen.insert(at) {
        let fields = match mem.read_bytes(at + first, (end - first) as usize) {
            Ok(span) => TstateFields::Span { first, span },
            // A recording made by field-by-field reads (a snapshot fixture) holds only the
            // fields; in a live process the field reads fail as the span did.
            Err(_) => TstateFields::Memory(mem),
        };
        let thread = ThreadState {
            addr: at,
            interp,
            ident: fields.u64_at(at, o.tstate_thread_id)?,
            native_tid: match o.tstate_native_thread_id {
                Some(off) => Some(fields.u64_at(at, off)? as u32).filter(|&t| t != 0),
                None => None,
            },
        };
        at = fields.u64_at(at, o.tstate_next)?;
        out.push(thread);
    }
    Ok(out)
}

/// Where `thread_states` takes a thread state's fields from.
enum TstateFields<'m> {
    /// One read from offset `first` on.
    Span {
        first: u64,
        span: Vec<u8>,
    },
    Memory(&'m dyn RemoteMemory),
}

impl TstateFields<'_> {
    fn u64_at(&self, tstate: Addr, offset: u64) -> Result<u64, MemoryError> {
        match self {
            TstateFields::Span { first, span } => {
                let at = (offset - first) as usize;
                Ok(span
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_ne_bytes)
                    .unwrap_or(0))
            }
            TstateFields::Memory(mem) => mem.read_u64(tstate + offset),
        }
    }
}

/// Where the "thread state holding the GIL" lives in this version.
#[derive(Debug, Clone, Copy)]
pub enum GilLocation {
    /// 2.7: the `_PyThreadState_Current` variable; 3.8–3.11: `_PyRuntime.gilstate.tstate_current`.
    CurrentTstate(Addr),
    /// 3.12+: each interpreter's `ceval.gil` (`last_holder` counts only while `locked`).
    PerInterpreter,
    Unknown,
}

/// Thread states holding a GIL right now (one per GIL); `None` when this process's GIL holder
/// cannot be known (no location for it). A GIL that could not be read has no holder.
pub fn gil_holders(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    at: GilLocation,
    interps: &[Addr],
) -> Option<Vec<Addr>> {
    match at {
        GilLocation::CurrentTstate(var) => Some(
            mem.read_u64(var)
                .ok()
                .filter(|&t| t != 0)
                .into_iter()
                .collect(),
        ),
        GilLocation::PerInterpreter => {
            let (Some(gil_ptr), Some(holder), Some(locked)) =
                (o.interp_gil_ptr, o.gil_last_holder, o.gil_locked)
            else {
                return None;
            };
            Some(
                interps
                    .iter()
                    .filter_map(|&interp| {
                        let gil = mem.read_u64(interp + gil_ptr).ok().filter(|&g| g != 0)?;
                        let is_locked = mem.read_i32(gil + locked).ok()? != 0;
                        let tstate = mem.read_u64(gil + holder).ok()?;
                        (is_locked && tstate != 0).then_some(tstate)
                    })
                    .collect(),
            )
        }
        GilLocation::Unknown => None,
    }
}

/// Maps `pthread_t` values to OS thread ids without stopping the target, for versions without
/// `native_thread_id`. glibc's `pthread_t` is the address of the thread's `struct pthread`,
/// which holds the kernel tid; rather than hard-coding glibc's layout we find the offset once
/// per process: the one at which every thread's struct holds one of the process's tids.
#[derive(Debug, Default)]
pub struct TidResolver {
    offset: Option<u64>,
    known: HashMap<u64, u32>,
}

/// How far into `struct pthread` we look for the tid (glibc keeps it at 0x2d0 on x86-64).
const PTHREAD_SCAN_BYTES: usize = 1024;
const GLIBC_TID_OFFSET: u64 = 0x2d0;

impl TidResolver {
    /// The OS tid of each `pthread_t` in `idents`, given the process's current tids.
    pub fn resolve(
        &mut self,
        mem: &dyn RemoteMemory,
        idents: &[u64],
        tids: &[u32],
    ) -> HashMap<u64, u32> {
        let mut out = HashMap::new();
        let missing: Vec<u64> = idents
            .iter()
            .copied()
            .filter(|i| !self.known.contains_key(i))
            .collect();
        if self.offset.is_none() && !missing.is_empty() {
            self.offset = calibrate(mem, &missing, tids);
        }
        for &ident in &missing {
            if let Some(off) = self.offset {
                if let Ok(tid) = mem.read_u32(ident.wrapping_add(off)) {
                    if tids.contains(&tid) {
                        self.known.insert(ident, tid);
                    }
                }
            }
        }
        // A single Python thread in a single-threaded process needs no memory at all.
        if idents.len() == 1 && tids.len() == 1 && !self.known.contains_key(&idents[0]) {
            self.known.insert(idents[0], tids[0]);
        }
        for &ident in idents {
            if let Some(&tid) = self.known.get(&ident) {
                out.insert(ident, tid);
            }
        }
        // Forget threads that ended, so a reused pthread_t is looked up afresh.
        self.known.retain(|_, tid| tids.contains(tid));
        out
    }
}

fn calibrate(mem: &dyn RemoteMemory, idents: &[u64], tids: &[u32]) -> Option<u64> {
    let mut candidates: Option<Vec<u64>> = None;
    for &ident in idents.iter().filter(|&&i| i != 0) {
        let Ok(bytes) = mem.read_bytes(ident, PTHREAD_SCAN_BYTES) else {
            continue;
        };
        let here: Vec<u64> = (0..PTHREAD_SCAN_BYTES - 4)
            .step_by(4)
            .filter(|&off| {
                let v = u32::from_ne_bytes([
                    bytes[off],
                    bytes[off + 1],
                    bytes[off + 2],
                    bytes[off + 3],
                ]);
                tids.contains(&v)
            })
            .map(|off| off as u64)
            .collect();
        candidates = Some(match candidates {
            None => here,
            Some(prev) => prev.into_iter().filter(|o| here.contains(o)).collect(),
        });
    }
    let candidates = candidates?;
    if candidates.contains(&GLIBC_TID_OFFSET) {
        Some(GLIBC_TID_OFFSET)
    } else {
        candidates.first().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PyVersion;
    use crate::process::memory::{LocalMemory, ReplayMemory, Snapshot};
    use crate::python::offsets::offsets_for;

    /// An interpreter at `base` whose list holds two thread states (a second page apart).
    fn two_threads(o: &PyOffsets) -> LocalMemory {
        let base: Addr = 0x10_0000;
        let mut bytes = vec![0u8; 3 * 4096];
        let mut put = |addr: Addr, v: u64| {
            let at = (addr - base) as usize;
            bytes[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        };
        let (t1, t2) = (base + 4096, base + 2 * 4096);
        put(base + o.interp_tstate_head, t1);
        put(t1 + o.tstate_next, t2);
        put(t1 + o.tstate_thread_id, 0x7f00_0000_1000);
        put(t2 + o.tstate_thread_id, 0x7f00_0000_2000);
        if let Some(off) = o.tstate_native_thread_id {
            put(t1 + off, 101);
            put(t2 + off, 102);
        }
        LocalMemory { base, bytes }
    }

    #[test]
    fn thread_states_from_spans_and_from_recorded_fields() {
        for series in [(2, 7), (3, 9), (3, 11), (3, 13)] {
            let o = offsets_for(PyVersion::new(series.0, series.1, 0)).expect("row");
            let mem = two_threads(&o);
            let states = thread_states(&mem, &o, mem.base).unwrap();
            let idents: Vec<u64> = states.iter().map(|t| t.ident).collect();
            assert_eq!(idents, [0x7f00_0000_1000, 0x7f00_0000_2000], "{series:?}");
            let tids: Vec<Option<u32>> = states.iter().map(|t| t.native_tid).collect();
            let want = match o.tstate_native_thread_id {
                Some(_) => [Some(101), Some(102)],
                None => [None, None],
            };
            assert_eq!(tids, want, "{series:?}");
            // Only the fields, as a recording of field-by-field reads holds them.
            let mut regions = vec![(mem.base + o.interp_tstate_head, 8)];
            for t in &states {
                regions.push((t.addr + o.tstate_next, 8));
                regions.push((t.addr + o.tstate_thread_id, 8));
                if let Some(off) = o.tstate_native_thread_id {
                    regions.push((t.addr + off, 8));
                }
            }
            let snapshot = Snapshot {
                regions: regions
                    .into_iter()
                    .map(|(a, n)| (a, mem.read_bytes(a, n).unwrap()))
                    .collect(),
            };
            let replay = ReplayMemory::new(snapshot);
            assert_eq!(thread_states(&replay, &o, mem.base).unwrap(), states);
        }
    }
}
