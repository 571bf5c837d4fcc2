//! A paused thread's user registers (ptrace) and a copy of the top of its stack, for the
//! native unwinder. The thread must be in a ptrace stop (`pause::Paused`); the stack is copied
//! page by page, so a copy ends where the stack mapping ends instead of failing whole.

use std::ops::Range;

use super::memory::RemoteMemory;
use crate::model::Addr;

/// The registers the unwinder starts from (x86-64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRegs {
    pub ip: Addr,
    pub sp: Addr,
    pub bp: Addr,
}

/// The bytes of a thread's stack from `sp` upwards, as far as they could be read.
#[derive(Debug, Clone, Default)]
pub struct StackCopy {
    /// Address of `bytes[0]` (the stack pointer at the time of the copy).
    pub base: Addr,
    pub bytes: Vec<u8>,
    /// Ranges inside the copy that could not be read (their bytes are no data).
    pub unread: Vec<Range<Addr>>,
}

impl StackCopy {
    /// The 8 bytes at `addr`, if they are inside the copy and were read.
    pub fn read_u64(&self, addr: Addr) -> Option<u64> {
        let end = addr.checked_add(8)?;
        if self.unread.iter().any(|r| addr < r.end && r.start < end) {
            return None;
        }
        let at = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let b = self.bytes.get(at..at.checked_add(8)?)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }
}

const PAGE: u64 = 4096;
/// Bytes reserved up front for a stack copy.
const PREALLOCATE: usize = 256 * 1024;

/// Copy up to `max_len` bytes of stack from `sp` up, one page at a time: a single large read
/// is all-or-nothing, and the main thread's stack often ends a few KiB above `sp`.
pub fn copy_stack(mem: &dyn RemoteMemory, sp: Addr, max_len: usize) -> StackCopy {
    // Most stacks end well before a large `max_len`: grow the buffer as pages are read.
    let mut copy = StackCopy {
        base: sp,
        bytes: Vec::with_capacity(max_len.min(PREALLOCATE)),
        unread: Vec::new(),
    };
    let mut at = sp;
    while copy.bytes.len() < max_len {
        let page_end = (at / PAGE + 1) * PAGE;
        let len = ((page_end - at) as usize).min(max_len - copy.bytes.len());
        let old = copy.bytes.len();
        copy.bytes.resize(old + len, 0);
        if mem.read_into(at, &mut copy.bytes[old..]).is_err() {
            copy.bytes.truncate(old);
            break;
        }
        at += len as u64;
    }
    copy
}

/// A ptrace-stopped thread: where it is, and the system call it was in when it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub regs: UserRegs,
    /// The system call number when the thread stopped inside one (a blocking call it will
    /// restart when resumed), `None` when it stopped in user code.
    pub syscall: Option<u64>,
}

/// The user registers of thread `tid`, which must be ptrace-stopped by us.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub fn stopped(tid: u32) -> std::io::Result<Stopped> {
    // SAFETY: `user_regs_struct` is plain integers, so all-zero is a valid value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: PTRACE_GETREGS writes exactly one `user_regs_struct` to the pointer we pass,
    // which points to a local of that type that outlives the call.
    let rc = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid as libc::pid_t,
            0usize,
            &mut regs as *mut libc::user_regs_struct,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Stopped {
        regs: UserRegs {
            ip: regs.rip,
            sp: regs.rsp,
            bp: regs.rbp,
        },
        // -1 outside a system call; the call's number from entry until it returns to user space.
        syscall: i64::try_from(regs.orig_rax)
            .is_ok()
            .then_some(regs.orig_rax),
    })
}

/// Native unwinding is x86-64 only for now.
#[cfg(not(target_arch = "x86_64"))]
pub fn stopped(_tid: u32) -> std::io::Result<Stopped> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "native unwinding supports x86-64 only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::ProcessMemory;

    #[test]
    fn copies_own_stack_up_to_its_end() {
        let here = 0u64;
        let sp = &here as *const u64 as u64;
        let mem = ProcessMemory::new(std::process::id());
        let copy = copy_stack(&mem, sp, 64 * 1024);
        assert!(copy.bytes.len() >= 8, "{}", copy.bytes.len());
        assert_eq!(copy.read_u64(sp), Some(0));
        assert_eq!(copy.read_u64(sp - 8), None);
        assert_eq!(copy.read_u64(sp + copy.bytes.len() as u64 - 4), None);
    }
}
