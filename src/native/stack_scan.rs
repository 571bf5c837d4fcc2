//! The last resort of the unwinder for a frame it has no rule for (hand-written assembly
//! without unwind information, such as OpenBLAS's kernels): scan the stack upward from the
//! frame's stack pointer for the first word that is a return address (into executable code,
//! right after a call: `return_address`), as debuggers and perf do. Everything above the
//! stack pointer belongs to live frames, so the first such word is most likely the frame's
//! own return address. A leftover one from an earlier, deeper call can lie in the frame's
//! uninitialised locals (OpenBLAS's kernels keep ~28 KiB of them), so a candidate after a
//! direct call must also have called the function the frame is in (`call_can_reach`);
//! an indirect call cannot be checked that way. The scan is bounded and only used where the
//! rules gave nothing trustworthy.

use super::return_address::{direct_call_target, stub_target};
use crate::model::Addr;
use crate::process::memory::RemoteMemory;
use crate::process::regs::StackCopy;

/// Stack words looked at by one scan: 64 KiB. OpenBLAS's Haswell dgemm kernel keeps ~28 KiB
/// of packed matrix on the stack below its return address (`sub $0x7080,%rsp`, then aligned
/// down to a page); words of floating-point data are rarely inside a module's code, and each
/// candidate that is costs a cached check.
pub const MAX_SCAN_WORDS: usize = 8192;

/// The first word at or above `sp` (within the copy and `MAX_SCAN_WORDS`) that
/// `is_return_address` accepts: (where it lies, its value).
pub fn find_return_address(
    stack: &StackCopy,
    sp: Addr,
    mut is_return_address: impl FnMut(Addr) -> bool,
) -> Option<(Addr, Addr)> {
    (0..MAX_SCAN_WORDS as Addr)
        .map(|i| sp.saturating_add(i * 8))
        .map_while(|slot| stack.read_u64(slot).map(|value| (slot, value)))
        .find(|&(_, value)| is_return_address(value))
}

/// The most bytes a function's code is taken to span, from its entry to any of its
/// instructions (for `call_can_reach`).
const MAX_FUNCTION_BYTES: Addr = 1 << 20;

/// Whether the call right before `ret` can have called the function holding `callee_pc`: an
/// indirect call can have; a direct call must go (itself, or through a jump stub such as a PLT
/// entry) to an entry at most `MAX_FUNCTION_BYTES` below `callee_pc`.
pub fn call_can_reach(mem: &dyn RemoteMemory, ret: Addr, callee_pc: Addr) -> bool {
    let Some(target) = direct_call_target(mem, ret) else {
        return true;
    };
    let entry = stub_target(mem, target).unwrap_or(target);
    entry <= callee_pc && callee_pc - entry < MAX_FUNCTION_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(base: Addr, words: &[u64]) -> StackCopy {
        StackCopy {
            base,
            bytes: words.iter().flat_map(|w| w.to_ne_bytes()).collect(),
            unread: Vec::new(),
        }
    }

    #[test]
    fn finds_the_first_return_address_above_the_stack_pointer() {
        let stack = copy(0x1000, &[7, 0x7f00, 0x4321, 0x4444, 0x4555]);
        let code = |a: Addr| (0x4000..0x5000).contains(&a);
        assert_eq!(
            find_return_address(&stack, 0x1000, code),
            Some((0x1010, 0x4321))
        );
        assert_eq!(
            find_return_address(&stack, 0x1018, code),
            Some((0x1018, 0x4444))
        );
        // Nothing within the copy.
        assert_eq!(find_return_address(&stack, 0x1000, |_| false), None);
        assert_eq!(find_return_address(&stack, 0x2000, code), None);
    }
}
