//! Where a thread waiting for the GIL sleeps: the futex words of the GIL's condition variables
//! and mutexes (3.x), or of its semaphore (2.7). The BPF sampler records the futex word a
//! thread left the CPU on (`RawSample::wait_addr`); one inside these ranges makes that stretch
//! off the CPU a wait for the GIL (`gil_wait` in wall-clock profiles).
//!
//! glibc's `pthread_cond_wait`, `pthread_mutex_lock` and `sem_wait` all sleep in futex(2) on a
//! word inside the object itself, so "inside the GIL's objects" needs no stack and no symbol of
//! `take_gil` (a static function, absent from stripped interpreters).

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::model::Addr;
use crate::process::memory::{MemoryError, RemoteMemory};

use super::offsets::PyOffsets;

/// Bytes of `struct _gil_runtime_state` on x86-64 glibc: interval 8, last_holder 8, locked 4
/// (+4), switch_number 8, cond 48, mutex 40, switch_cond 48, switch_mutex 40 (3.7 to 3.15,
/// `Include/internal/pycore_gil.h`; the free-threaded build's leading `enabled` is not
/// supported).
pub const GIL_STATE_SIZE: u64 = 208;
/// `_gil_runtime_state.locked`, for the sanity check of a computed address.
const GIL_LOCKED: u64 = 16;
/// glibc's `sem_t` on 64-bit targets: 2.7's GIL is a POSIX semaphore (`USE_SEMAPHORES`).
const SEM_T_SIZE: u64 = 32;
/// glibc's `pthread_cond_t` and `pthread_mutex_t` on x86-64 (3.6's GIL is four statics).
const PTHREAD_COND_SIZE: u64 = 48;
const PTHREAD_MUTEX_SIZE: u64 = 40;

/// How a process's GIL objects are found, decided once at attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GilWaitLocation {
    /// 3.7–3.11: `_PyRuntime.ceval.gil`, the one GIL, at this address.
    Runtime(Addr),
    /// 3.12+: each interpreter's `ceval.gil` pointer (`interp_gil_ptr`).
    PerInterpreter,
    /// 3.6: the GIL's condition variables and mutexes are statics of ceval.c (`gil_cond`,
    /// `gil_mutex`, `switch_cond`, `switch_mutex`), found in the symbol table.
    Statics(Vec<Range<Addr>>),
    /// 2.7: `interpreter_lock`, the variable holding the GIL semaphore's address (0 until the
    /// first thread starts).
    LockVar(Addr),
    /// Not known for this interpreter (the reason, for the log).
    Unknown(&'static str),
}

/// 3.6's statics as ranges, from the symbol lookup `sym` (addresses in the target); `None`
/// unless all four are there (a stripped binary has none of them).
pub fn statics_of(sym: impl Fn(&str) -> Option<Addr>) -> Option<Vec<Range<Addr>>> {
    [
        ("gil_cond", PTHREAD_COND_SIZE),
        ("gil_mutex", PTHREAD_MUTEX_SIZE),
        ("switch_cond", PTHREAD_COND_SIZE),
        ("switch_mutex", PTHREAD_MUTEX_SIZE),
    ]
    .iter()
    .map(|&(name, size)| sym(name).map(|a| a..a.wrapping_add(size)))
    .collect()
}

/// 2.7's `interpreter_lock` from the code of `PyEval_ThreadsInitialized` (`return
/// interpreter_lock != 0;`), for a stripped binary whose symbol table is gone: the function
/// (exported) compares that variable with 0 in its first instruction, after an optional
/// `endbr64` and `xor %eax,%eax`. `code` holds the function's first bytes, read at `at`.
/// Recognised forms: `cmpq $0x0,disp32(%rip)` (48 83 3d d32 00) and `mov disp32(%rip),%r64`
/// (48 8b /r with mod 00 rm 101). Anything else is `None`: no guessing.
pub fn lock_var_from_code(code: &[u8], at: Addr) -> Option<Addr> {
    let mut i = 0;
    if code.get(i..i + 4) == Some(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        i += 4; // endbr64
    }
    if code.get(i..i + 2) == Some(&[0x31, 0xc0]) {
        i += 2; // xor %eax,%eax
    }
    let disp = |from: usize| -> Option<i64> {
        let b: [u8; 4] = code.get(from..from + 4)?.try_into().ok()?;
        Some(i64::from(i32::from_le_bytes(b)))
    };
    let (disp, len) = match code.get(i..i + 3)? {
        [0x48, 0x83, 0x3d] if code.get(i + 7) == Some(&0) => (disp(i + 3)?, 8),
        [0x48, 0x8b, modrm] if modrm & 0xc7 == 0x05 => (disp(i + 3)?, 7),
        _ => return None,
    };
    let next = at.checked_add((i + len) as u64)?;
    Some(next.wrapping_add_signed(disp))
}

/// The address ranges of the GIL's futex words in one process, read lazily and kept: the GIL
/// does not move once it exists. Until it exists (2.7 before its first thread; an address
/// that fails the sanity check) it is looked for again at most once a second.
#[derive(Debug)]
pub struct GilWaitRanges {
    at: GilWaitLocation,
    found: Vec<Range<Addr>>,
    looked: Option<Instant>,
}

const LOOK_AGAIN: Duration = Duration::from_secs(1);

impl GilWaitRanges {
    pub fn new(at: GilWaitLocation) -> GilWaitRanges {
        GilWaitRanges {
            at,
            found: Vec::new(),
            looked: None,
        }
    }

    /// Whether `addr`, a futex word a thread slept on, belongs to the GIL. `interps` gives the
    /// process's interpreter states (read only for 3.12+, only when the GIL is not known yet).
    pub fn contains(
        &mut self,
        mem: &dyn RemoteMemory,
        o: &PyOffsets,
        addr: Addr,
        interps: impl FnOnce() -> Vec<Addr>,
    ) -> bool {
        if addr == 0 {
            return false;
        }
        if self.found.is_empty() && self.looked.is_none_or(|t| t.elapsed() >= LOOK_AGAIN) {
            self.looked = Some(Instant::now());
            self.found = ranges(mem, o, &self.at, interps).unwrap_or_default();
        }
        self.found.iter().any(|r| r.contains(&addr))
    }
}

fn ranges(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    at: &GilWaitLocation,
    interps: impl FnOnce() -> Vec<Addr>,
) -> Result<Vec<Range<Addr>>, MemoryError> {
    let gil_struct = |gil: Addr| -> Result<Option<Range<Addr>>, MemoryError> {
        // A GIL's `locked` is -1 (not created yet), 0 or 1: anything else is not a GIL.
        let locked = mem.read_i32(gil + GIL_LOCKED)?;
        Ok((-1..=1)
            .contains(&locked)
            .then(|| gil..gil + GIL_STATE_SIZE))
    };
    Ok(match at {
        GilWaitLocation::Runtime(gil) => gil_struct(*gil)?.into_iter().collect(),
        GilWaitLocation::PerInterpreter => {
            let Some(field) = o.interp_gil_ptr else {
                return Ok(Vec::new());
            };
            let mut out: Vec<Range<Addr>> = Vec::new();
            for interp in interps() {
                let gil = mem.read_u64(interp + field)?;
                if gil == 0 {
                    continue;
                }
                if let Some(r) = gil_struct(gil)? {
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
            }
            out
        }
        GilWaitLocation::Statics(ranges) => ranges.clone(),
        GilWaitLocation::LockVar(var) => {
            let sem = mem.read_u64(*var)?;
            // malloc's blocks are 16-byte aligned: anything else is not the semaphore.
            let semaphore = sem..sem + SEM_T_SIZE;
            match sem != 0 && sem % 16 == 0 {
                true => vec![semaphore],
                false => Vec::new(),
            }
        }
        GilWaitLocation::Unknown(_) => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PyVersion;
    use crate::process::memory::LocalMemory;

    /// Zeroed target memory from 0x10000 to 0x30000.
    fn memory() -> LocalMemory {
        LocalMemory {
            base: 0x10_000,
            bytes: vec![0; 0x20_000],
        }
    }

    fn put(mem: &mut LocalMemory, addr: Addr, bytes: &[u8]) {
        let at = (addr - mem.base) as usize;
        mem.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn the_lock_variable_is_read_from_the_code_that_tests_it() {
        // Debian's stripped 2.7: xor %eax,%eax; cmpq $0x0,0x260036(%rip) at 0xf8882.
        let code = [
            0x31, 0xc0, 0x48, 0x83, 0x3d, 0x36, 0x00, 0x26, 0x00, 0x00, 0x0f, 0x95, 0xc0,
        ];
        assert_eq!(lock_var_from_code(&code, 0xf8880), Some(0x3588c0));
        // mov 0x10(%rip),%rax after endbr64.
        let code = [0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x8b, 0x05, 0x10, 0, 0, 0];
        assert_eq!(lock_var_from_code(&code, 0x1000), Some(0x1000 + 11 + 0x10));
        // A negative displacement.
        let code = [0x48, 0x8b, 0x3d, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(lock_var_from_code(&code, 0x2000), Some(0x2000 + 7 - 0x10));
        // Anything else: no guess (3.9's `mov 0x47cd18(%rip),%eax` has no REX.W: 32-bit).
        assert_eq!(
            lock_var_from_code(&[0x8b, 0x05, 0x18, 0xcd, 0x47, 0], 0),
            None
        );
        assert_eq!(
            lock_var_from_code(&[0x48, 0x83, 0x3d, 1, 2, 3, 4, 1], 0),
            None
        );
        assert_eq!(lock_var_from_code(&[0x48, 0x83], 0), None);
        assert_eq!(lock_var_from_code(&[], 0), None);
    }

    #[test]
    fn statics_need_all_four() {
        let all = |n: &str| match n {
            "gil_cond" => Some(0x100),
            "gil_mutex" => Some(0x200),
            "switch_cond" => Some(0x300),
            "switch_mutex" => Some(0x400),
            _ => None,
        };
        let r = statics_of(all).expect("all four");
        assert_eq!(
            r,
            vec![0x100..0x130, 0x200..0x228, 0x300..0x330, 0x400..0x428]
        );
        assert!(statics_of(|n| (n != "switch_mutex").then_some(0x10)).is_none());
    }

    #[test]
    fn a_futex_word_inside_the_gil_is_a_gil_wait() {
        let o = crate::python::offsets::offsets_for(PyVersion::new(3, 12, 0)).expect("3.12 row");
        let field = o.interp_gil_ptr.expect("3.12 has interp_gil_ptr");
        let mut mem = memory();
        let (interp, gil) = (0x10_000u64, 0x20_000u64);
        put(&mut mem, interp + field, &gil.to_ne_bytes());
        put(&mut mem, gil + GIL_LOCKED, &1i32.to_ne_bytes());
        let mut r = GilWaitRanges::new(GilWaitLocation::PerInterpreter);
        // The condition variable (after interval, last_holder, locked, switch_number).
        assert!(r.contains(&mem, &o, gil + 32, || vec![interp]));
        assert!(r.contains(&mem, &o, gil + GIL_STATE_SIZE - 4, || vec![interp]));
        assert!(!r.contains(&mem, &o, gil + GIL_STATE_SIZE, || vec![interp]));
        assert!(!r.contains(&mem, &o, 0, || vec![interp]));

        // Not a GIL (its `locked` is garbage): nothing matches, and it is not kept.
        let mut mem = memory();
        put(&mut mem, interp + field, &gil.to_ne_bytes());
        put(&mut mem, gil + GIL_LOCKED, &77i32.to_ne_bytes());
        let mut r = GilWaitRanges::new(GilWaitLocation::PerInterpreter);
        assert!(!r.contains(&mem, &o, gil + 32, || vec![interp]));

        // 2.7: the semaphore the variable points at, once there is one.
        let mut mem = memory();
        let mut r = GilWaitRanges::new(GilWaitLocation::LockVar(0x15_000));
        assert!(!r.contains(&mem, &o, 0x17_000, Vec::new));
        put(&mut mem, 0x15_000, &0x17_000u64.to_ne_bytes());
        assert!(
            !r.contains(&mem, &o, 0x17_000, Vec::new),
            "looked again at once"
        );
        r.looked = None; // a second later
        assert!(r.contains(&mem, &o, 0x17_000, Vec::new));
        assert!(!r.contains(&mem, &o, 0x17_000 + SEM_T_SIZE, Vec::new));
    }
}
