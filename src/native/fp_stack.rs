//! How much of a frame-pointer user stack (`bpf_get_stack`) can be trusted. The kernel follows
//! `rbp` from frame to frame and checks nothing but that each frame is user memory; through
//! code built without frame pointers (Debian's CPython, most libraries) `rbp` is a general
//! register, and the "frames" it yields are whatever its value points at: small integers,
//! data symbols, stale return addresses, a frame that links to itself. The stack is kept up to
//! the first value that is not a return address (`return_address`), and a chain that repeats
//! one address to the depth limit is cut at its first repetition; each cut is a
//! `Frame::Truncated` that says why. The kernel does not hand us the frame addresses
//! themselves, so the chain's own shape (frames moving up the stack) cannot be checked here.

use crate::model::{Addr, Reason};

/// Consecutive copies of one address, reaching the depth limit, that are taken for a frame
/// that links to itself rather than for recursion through one call site.
const LOOP_RUN: usize = 8;

/// How many of `addrs` (leaf first: the instruction pointer, then return addresses) to keep,
/// and why the rest is dropped. `full`: the walk stopped at the depth limit, not at its end.
/// `is_return_address` is asked about each return address in turn until one fails.
pub fn trusted_len(
    addrs: &[Addr],
    full: bool,
    mut is_return_address: impl FnMut(Addr) -> bool,
) -> (usize, Option<Reason>) {
    let mut keep = addrs.len();
    let mut reason = None;
    if full {
        let last = addrs.last().copied();
        let run = addrs.iter().rev().take_while(|&&a| Some(a) == last).count();
        if run >= LOOP_RUN && run < addrs.len() {
            keep = addrs.len() - run + 1;
            reason = Some(Reason::FramePointerLoop);
        }
    }
    // (The first address is where the thread was: the sample's own instruction pointer.)
    match (1..keep).find(|&i| !is_return_address(addrs[i])) {
        Some(i) => (i, Some(Reason::NotReturnAddress)),
        None => (keep, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(a: Addr) -> bool {
        (0x1000..0x9000).contains(&a)
    }

    #[test]
    fn a_good_chain_is_kept_whole() {
        assert_eq!(trusted_len(&[0x1, 0x1100, 0x2200], false, code), (3, None));
        assert_eq!(trusted_len(&[], false, code), (0, None));
    }

    #[test]
    fn stops_at_the_first_value_that_is_no_return_address() {
        // Data symbols, small integers: what the kernel's walk gives through code without
        // frame pointers.
        let (keep, why) = trusted_len(&[0x1100, 0x1200, 0x6, 0x6, 0x1300], false, code);
        assert_eq!((keep, why), (2, Some(Reason::NotReturnAddress)));
    }

    #[test]
    fn a_frame_linking_to_itself_is_cut_at_its_first_repetition() {
        let mut stack = vec![0x1100, 0x1200];
        stack.extend([0x1300; 125]);
        let (keep, why) = trusted_len(&stack, true, code);
        assert_eq!((keep, why), (3, Some(Reason::FramePointerLoop)));
        // Not at the depth limit: a recursion that ended there.
        assert_eq!(trusted_len(&stack[..20], false, code), (20, None));
        // A bad value before the loop is found first.
        stack[1] = 0x6;
        assert_eq!(
            trusted_len(&stack, true, code),
            (1, Some(Reason::NotReturnAddress))
        );
    }
}
