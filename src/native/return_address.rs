//! Whether a value found where a return address should be is one: it points into executable
//! code, right after a call instruction (x86-64). Frame-pointer walks through code built
//! without frame pointers, and unwinds that lost their way, yield values that fail this test
//! (small integers, data symbols, addresses in the middle of an instruction stream); the stack
//! scan of the unwinder uses it to find the caller of a leaf function without unwind info.
//! Verdicts are cached per process and address: code does not change under a mapping.

use std::collections::HashMap;

use crate::model::Addr;
use crate::process::memory::{ProcessMemory, RemoteMemory};

/// Bytes before a return address that a call instruction can occupy (without prefixes, which
/// sit before the opcode and so do not change where the instruction ends).
pub const CALL_BYTES: usize = 7;

/// Verdicts kept per process before its cache is started afresh (~2 MiB).
const MAX_VERDICTS_PER_PROCESS: usize = 64 * 1024;

/// Whether the `CALL_BYTES` bytes ending right before an address end with a call instruction:
/// `call rel32` (E8, 5 bytes) or an indirect `call` (FF /2, 2 to 7 bytes by its ModRM and SIB).
pub fn follows_call(before: &[u8; CALL_BYTES]) -> bool {
    (2..=CALL_BYTES).any(|len| {
        let at = CALL_BYTES - len;
        match before[at] {
            0xe8 => len == 5,
            0xff => {
                let modrm = before[at + 1];
                let sib = before.get(at + 2).copied();
                (modrm >> 3) & 7 == 2 && indirect_call_len(modrm, sib) == Some(len)
            }
            _ => false,
        }
    })
}

/// The length of `FF /2` with this ModRM (and the SIB byte after it, when it has one).
fn indirect_call_len(modrm: u8, sib: Option<u8>) -> Option<usize> {
    let (mode, rm) = (modrm >> 6, modrm & 7);
    Some(match (mode, rm) {
        (3, _) => 2,
        // [SIB]; base 101 means a 32-bit displacement instead of a base register.
        (0, 4) if sib? & 7 == 5 => 7,
        (0, 4) => 3,
        // [rip + disp32]
        (0, 5) => 6,
        (0, _) => 2,
        (1, 4) => 4,
        (1, _) => 3,
        (2, 4) => 7,
        (2, _) => 6,
        _ => return None,
    })
}

/// The target of the call that ends right before `ret`, when it is a direct `call rel32`
/// (`None`: an indirect call, whose target was in a register or memory at the time).
pub fn direct_call_target(mem: &dyn RemoteMemory, ret: Addr) -> Option<Addr> {
    let mut call = [0u8; 5];
    mem.read_into(ret.checked_sub(5)?, &mut call).ok()?;
    let rel = i32::from_le_bytes(call[1..].try_into().ok()?);
    (call[0] == 0xe8).then(|| ret.wrapping_add_signed(i64::from(rel)))
}

/// Where a call to `addr` really goes when `addr` is a jump stub (a PLT entry: `jmp
/// *disp32(%rip)`, after an `endbr64` and with a `bnd` prefix in the variants linkers emit):
/// the address in the slot it jumps through. `None`: not a stub, or unreadable.
pub fn stub_target(mem: &dyn RemoteMemory, addr: Addr) -> Option<Addr> {
    let mut code = [0u8; 11];
    mem.read_into(addr, &mut code).ok()?;
    let endbr = code[..4] == [0xf3, 0x0f, 0x1e, 0xfa];
    let at = if endbr { 4 } else { 0 };
    let at = at + usize::from(code[at] == 0xf2);
    if code[at..at + 2] != [0xff, 0x25] {
        return None;
    }
    let disp = i32::from_le_bytes(code[at + 2..at + 6].try_into().ok()?);
    let next = addr + at as Addr + 6;
    mem.read_u64(next.wrapping_add_signed(i64::from(disp))).ok()
}

/// Cached verdicts, per process.
#[derive(Default)]
pub struct ReturnAddresses {
    verdicts: HashMap<u32, HashMap<Addr, bool>>,
}

impl ReturnAddresses {
    /// Whether `addr` is a return address in process `pid`: `in_code` (asked only when the
    /// verdict is not cached) says whether it lies in an executable mapping; the bytes before
    /// it are read from the process.
    pub fn check(&mut self, pid: u32, addr: Addr, in_code: impl FnOnce(Addr) -> bool) -> bool {
        let cache = self.verdicts.entry(pid).or_default();
        if let Some(&known) = cache.get(&addr) {
            return known;
        }
        let verdict = addr >= CALL_BYTES as Addr && in_code(addr) && {
            let mut before = [0u8; CALL_BYTES];
            ProcessMemory::new(pid)
                .read_into(addr - CALL_BYTES as Addr, &mut before)
                .is_ok()
                && follows_call(&before)
        };
        if cache.len() >= MAX_VERDICTS_PER_PROCESS {
            cache.clear();
        }
        cache.insert(addr, verdict);
        verdict
    }

    /// Forget a process (it exited or its pid was reused).
    pub fn forget(&mut self, pid: u32) {
        self.verdicts.remove(&pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tail` placed at the end of the bytes before an address, padded with `pad`.
    fn before(tail: &[u8], pad: u8) -> [u8; CALL_BYTES] {
        let mut b = [pad; CALL_BYTES];
        b[CALL_BYTES - tail.len()..].copy_from_slice(tail);
        b
    }

    #[test]
    fn recognises_the_call_encodings_compilers_emit() {
        for call in [
            &[0xe8, 0x10, 0x20, 0x30, 0x40][..], // call rel32
            &[0xff, 0xd0],                       // call *%rax
            &[0x41, 0xff, 0xd3],                 // call *%r11
            &[0xff, 0x10],                       // call *(%rax)
            &[0xff, 0x50, 0x08],                 // call *0x8(%rax)
            &[0xff, 0x14, 0x24],                 // call *(%rsp)
            &[0xff, 0x54, 0x24, 0x08],           // call *0x8(%rsp)
            &[0xff, 0x15, 1, 2, 3, 4],           // call *disp32(%rip)
            &[0xff, 0x90, 1, 2, 3, 4],           // call *disp32(%rax)
            &[0xff, 0x94, 0xc8, 1, 2, 3, 4],     // call *disp32(%rax,%rcx,8)
            &[0xff, 0x14, 0xc5, 1, 2, 3, 4],     // call *disp32(,%rax,8)
            &[0x3e, 0xff, 0xd0],                 // notrack call *%rax
        ] {
            for pad in [0x00, 0x90, 0xcc] {
                assert!(follows_call(&before(call, pad)), "{call:x?}");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_call() {
        for other in [
            &[0x00; CALL_BYTES][..],
            &[0x48, 0x89, 0xc7],             // mov %rax,%rdi
            &[0xff, 0xe0],                   // jmp *%rax (FF /4)
            &[0xe9, 0x10, 0x20, 0x30, 0x40], // jmp rel32
            &[0xe8, 0x10, 0x20, 0x30],       // E8 four bytes before: not where a call ends
            &[0xff, 0x50],                   // FF /2 with a disp8 missing
            &[0x06, 0x00, 0x00, 0x00],       // a small integer's bytes
        ] {
            assert!(!follows_call(&before(other, 0x00)), "{other:x?}");
        }
    }

    #[test]
    fn checks_a_live_process() {
        let pid = std::process::id();
        let mut check = ReturnAddresses::default();
        // A small integer (unreadable before it) and data (not code) are no return addresses.
        assert!(!check.check(pid, 6, |_| true));
        let data = &MAX_VERDICTS_PER_PROCESS as *const usize as Addr;
        assert!(!check.check(pid, data, |_| false));
        // Bytes ending in a `call rel32` (`in_code` stands in for the executable mapping).
        let mut bytes = [0u8; 16];
        bytes[4] = 0xe8;
        std::hint::black_box(&bytes);
        let after_call = bytes.as_ptr() as Addr + 9;
        assert!(check.check(pid, after_call, |_| true));
        // The verdict is cached: the bytes are not read again.
        bytes[4] = 0;
        std::hint::black_box(&bytes);
        assert!(check.check(pid, after_call, |_| true));
    }
}
