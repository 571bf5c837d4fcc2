//! The merge of a thread's native stack with its Python stack (`--native`): each native frame
//! of the eval loop is replaced by the Python frames that call of the eval loop runs; every
//! other native frame (C extensions, libc) stays where it is. Pure: no I/O.
//!
//! Python frames come in groups, one per C call of the eval loop (`Walk::entry` marks each
//! group's root-most frame). Groups and eval-loop frames are paired from the root when both
//! stacks are complete, from the leaf when either was cut short. What does not pair is kept
//! as it is and the stack is marked with `Frame::Unknown(Reason::NativeMismatch)`: nothing is
//! invented. A native stack that ends before the root without the unwinder noticing (code
//! with no usable unwind information: it found fewer eval-loop frames than there are Python
//! groups, and its last frame is no thread's or program's first) is cut short too: its frames
//! stay on the leaf side, the Python groups it did not reach on the caller side, and
//! `Truncated(NativeIncomplete)` between them. A native frame never becomes the root of a
//! stack that has Python callers.

use crate::model::{Frame, NativeFrame, Reason};

/// One native frame, leaf first, and whether its address is inside the eval loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSlot {
    pub frame: NativeFrame,
    pub eval: bool,
}

/// The functions a complete native stack ends in: a program's or a thread's first frame.
const NATIVE_ROOTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
];

/// Whether the root-most native frame is a program's or a thread's first.
fn reaches_root(native: &[NativeSlot]) -> bool {
    native
        .last()
        .is_some_and(|s| NATIVE_ROOTS.contains(&s.frame.name.as_str()))
}

/// The merged stack, leaf first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub frames: Vec<Frame>,
    /// The counts of eval-loop frames and Python groups differed on complete stacks.
    pub mismatch: bool,
}

/// Split leaf-first Python frames into groups at the entry flags (`entry[i]` ends a group).
/// A trailing non-Python frame (the walk's `Truncated` marker) joins the root-most group.
pub fn python_groups(python: &[Frame], entry: &[bool]) -> (Vec<Vec<Frame>>, bool) {
    let mut groups: Vec<Vec<Frame>> = Vec::new();
    let mut current = Vec::new();
    let mut complete = true;
    let mut i = 0;
    for frame in python {
        match frame {
            Frame::Python(_) => {
                current.push(frame.clone());
                if entry.get(i).copied().unwrap_or(true) {
                    groups.push(std::mem::take(&mut current));
                }
                i += 1;
            }
            other => {
                complete = false;
                current.push(other.clone());
            }
        }
    }
    if !current.is_empty() {
        match groups.last_mut() {
            Some(last) if current.iter().all(|f| !matches!(f, Frame::Python(_))) => {
                last.extend(current)
            }
            _ => groups.push(current),
        }
    }
    (groups, complete)
}

/// Merge leaf-first `native` frames (cut short with `native_truncated`, if so) with the
/// leaf-first Python `groups`; `python_complete` is false when the Python walk stopped early.
pub fn merge(
    native: &[NativeSlot],
    native_truncated: Option<Reason>,
    groups: Vec<Vec<Frame>>,
    python_complete: bool,
) -> Merged {
    let evals: Vec<usize> = (0..native.len()).filter(|&i| native[i].eval).collect();
    let (n, g) = (evals.len(), groups.len());
    let k = n.min(g);
    let incomplete = native_truncated.is_none() && n < g && !reaches_root(native);
    let native_truncated = native_truncated.or(incomplete.then_some(Reason::NativeIncomplete));
    let from_root = native_truncated.is_none() && python_complete;
    // pairs[native index] = group index
    let mut pair_of = vec![None; native.len()];
    let unpaired_groups: Vec<usize>;
    if from_root {
        for j in 0..k {
            pair_of[evals[n - 1 - j]] = Some(g - 1 - j);
        }
        unpaired_groups = (0..g - k).collect();
    } else {
        for j in 0..k {
            pair_of[evals[j]] = Some(j);
        }
        unpaired_groups = (k..g).collect();
    }
    // One eval-loop frame more than groups, the leaf-most one (pairing from the root leaves
    // exactly that one over), is an eval call entering or leaving: it has not linked its
    // Python frame into the thread state yet, or has unlinked it already. That is the true
    // state of the thread at that instant, not a disagreement: the frame stays as the native
    // eval-loop frame it is.
    let entering = n == g + 1;
    let mismatch = from_root && n != g && !entering;
    let mut groups: Vec<Option<Vec<Frame>>> = groups.into_iter().map(Some).collect();
    let mut take = |i: usize| groups[i].take().unwrap_or_default();
    let mut frames = Vec::with_capacity(native.len() + g * 2);
    if mismatch {
        frames.push(Frame::Unknown(Reason::NativeMismatch));
    }
    // Leaf-side groups without an eval frame (complete stacks): they run somewhere leafward of
    // the leaf-most paired eval frame, so they go right before its group.
    let leaf_extra: Vec<usize> = if from_root {
        unpaired_groups.clone()
    } else {
        vec![]
    };
    let leafmost_paired = (0..native.len()).find(|&i| pair_of[i].is_some());
    if leafmost_paired.is_none() {
        for &gi in &leaf_extra {
            frames.extend(take(gi));
        }
    }
    for (i, slot) in native.iter().enumerate() {
        match pair_of[i] {
            Some(gi) => {
                if Some(i) == leafmost_paired {
                    for &x in &leaf_extra {
                        frames.extend(take(x));
                    }
                }
                frames.extend(take(gi));
            }
            None => frames.push(Frame::Native(slot.frame.clone())),
        }
    }
    if let Some(reason) = native_truncated {
        frames.push(Frame::Truncated(reason));
    }
    if !from_root {
        // Root-side groups the native stack did not reach.
        for gi in unpaired_groups {
            frames.extend(take(gi));
        }
    }
    Merged { frames, mismatch }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PyFrame;

    fn py(name: &str) -> Frame {
        Frame::Python(PyFrame {
            function: name.into(),
            filename: "t.py".into(),
            line: 1,
            first_line: 1,
        })
    }

    fn c(name: &str) -> NativeSlot {
        NativeSlot {
            frame: NativeFrame {
                name: name.into(),
                module: "m".into(),
                offset: None,
            },
            eval: name == "eval",
        }
    }

    fn names(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Python(p) => format!("py:{}", p.function),
                Frame::Native(n) => n.name.clone(),
                Frame::Truncated(r) => format!("<trunc {}>", r.as_str()),
                Frame::Kernel(k) => k.clone(),
                Frame::GilWait => "gil_wait".to_string(),
                Frame::Unknown(r) => format!("<unknown {}>", r.as_str()),
            })
            .collect()
    }

    #[test]
    fn one_frame_per_eval_call_replaces_eval_frames_in_place() {
        // <= 3.10: callback <- qsort <- caller <- main, leaf first.
        let native = [
            c("cmp"),
            c("eval"),
            c("call"),
            c("qsort"),
            c("eval"),
            c("main"),
        ];
        let (groups, complete) = python_groups(&[py("callback"), py("caller")], &[true, true]);
        let m = merge(&native, None, groups, complete);
        assert!(!m.mismatch);
        assert_eq!(
            names(&m.frames),
            ["cmp", "py:callback", "call", "qsort", "py:caller", "main"]
        );
    }

    #[test]
    fn several_python_frames_per_eval_call() {
        // 3.11+: one eval call runs a, b (entry); another runs c, d (entry).
        let native = [c("eval"), c("qsort"), c("eval"), c("main")];
        let python = [py("a"), py("b"), py("c"), py("d")];
        let (groups, complete) = python_groups(&python, &[false, true, false, true]);
        assert_eq!(groups.len(), 2);
        let m = merge(&native, None, groups, complete);
        assert_eq!(
            names(&m.frames),
            ["py:a", "py:b", "qsort", "py:c", "py:d", "main"]
        );
    }

    #[test]
    fn an_eval_call_entering_or_leaving_keeps_its_native_frame() {
        // One more eval frame than groups, at the leaf: an eval call that has not linked its
        // Python frame yet (or has unlinked it). Not a mismatch.
        let native = [c("enter"), c("eval"), c("call"), c("eval"), c("main")];
        let (groups, complete) = python_groups(&[py("f")], &[true]);
        let m = merge(&native, None, groups, complete);
        assert!(!m.mismatch);
        assert_eq!(names(&m.frames), ["enter", "eval", "call", "py:f", "main"]);
    }

    #[test]
    fn mismatch_pairs_from_the_root_and_is_marked() {
        // Two more eval frames than groups: no instant looks like that.
        let native = [c("eval"), c("eval"), c("eval"), c("main")];
        let (groups, complete) = python_groups(&[py("f")], &[true]);
        let m = merge(&native, None, groups, complete);
        assert!(m.mismatch);
        assert_eq!(
            names(&m.frames),
            [
                "<unknown native/python mismatch>",
                "eval",
                "eval",
                "py:f",
                "main"
            ]
        );
        // More groups than eval frames: the extra leaf-side group goes leafward of the paired one.
        let native = [c("x"), c("eval"), c("main")];
        let (groups, complete) = python_groups(&[py("g"), py("f")], &[true, true]);
        let m = merge(&native, None, groups, complete);
        assert!(m.mismatch);
        assert_eq!(
            names(&m.frames),
            [
                "<unknown native/python mismatch>",
                "x",
                "py:g",
                "py:f",
                "main"
            ]
        );
    }

    #[test]
    fn truncated_native_stack_pairs_from_the_leaf_and_keeps_the_rest_of_python() {
        let native = [c("cmp"), c("eval"), c("qsort")];
        let (groups, complete) =
            python_groups(&[py("cb"), py("caller"), py("main")], &[true, true, true]);
        let m = merge(&native, Some(Reason::ReadFailed), groups, complete);
        assert!(!m.mismatch);
        assert_eq!(
            names(&m.frames),
            [
                "cmp",
                "py:cb",
                "qsort",
                "<trunc read failed>",
                "py:caller",
                "py:main"
            ]
        );
    }

    #[test]
    fn no_eval_frames_found_on_a_rooted_stack_keeps_python_at_the_leaf() {
        let native = [c("a"), c("main")];
        let (groups, complete) = python_groups(&[py("f")], &[true]);
        let m = merge(&native, None, groups, complete);
        assert!(m.mismatch);
        assert_eq!(
            names(&m.frames),
            ["<unknown native/python mismatch>", "py:f", "a", "main"]
        );
    }

    #[test]
    fn a_native_stack_that_stops_before_the_eval_loop_stays_on_the_leaf_side() {
        // An assembly kernel without unwind information: the unwinder found its frame and
        // nothing it could trust after it. The Python frames are its callers.
        let native = [c("dgemm_kernel")];
        let (groups, complete) = python_groups(&[py("matmul"), py("<module>")], &[false, true]);
        let m = merge(&native, None, groups, complete);
        assert!(!m.mismatch);
        assert_eq!(
            names(&m.frames),
            [
                "dgemm_kernel",
                "<trunc native stack incomplete>",
                "py:matmul",
                "py:<module>"
            ]
        );
        // Stopped between two eval calls: the leaf-side group pairs, the rest is the caller.
        let native = [c("cmp"), c("eval"), c("qsort")];
        let (groups, complete) = python_groups(&[py("cb"), py("caller")], &[true, true]);
        let m = merge(&native, None, groups, complete);
        assert!(!m.mismatch);
        assert_eq!(
            names(&m.frames),
            [
                "cmp",
                "py:cb",
                "qsort",
                "<trunc native stack incomplete>",
                "py:caller"
            ]
        );
    }

    #[test]
    fn python_walk_truncation_joins_the_root_group() {
        let python = [py("a"), py("b"), Frame::Truncated(Reason::DepthLimit)];
        let (groups, complete) = python_groups(&python, &[true, true]);
        assert!(!complete);
        assert_eq!(groups.len(), 2);
        assert_eq!(names(&groups[1]), ["py:b", "<trunc depth limit>"]);
    }
}
