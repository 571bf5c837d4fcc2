//! The aggregate of sampled stacks: interned frames and a count per distinct stack.
//!
//! `Profile` is what every output reads. It knows nothing about where the frames came
//! from; labels and formats live in `output/`.

use std::collections::HashMap;

use serde::Serialize;

/// What a frame of a profile stands for. Outputs label and colour frames by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum FrameKind {
    /// A process root frame; `name` is already formatted, e.g. `python3 (1234)`.
    Process,
    /// A thread frame; `name` is already formatted, e.g. `thread 1234 "MainThread"`.
    Thread,
    /// A Python function; `filename` and `line` where known.
    Python,
    /// A native (user-space machine code) function; `filename` is the module or source file.
    Native,
    /// A kernel function.
    Kernel,
    /// A marker saying the stack stops early and why; `name` is shown as given.
    Truncated,
}

/// One frame of a profile stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ProfileFrame {
    pub kind: FrameKind,
    pub name: String,
    pub filename: Option<String>,
    pub line: Option<u32>,
}

impl ProfileFrame {
    pub fn new(kind: FrameKind, name: impl Into<String>) -> Self {
        ProfileFrame {
            kind,
            name: name.into(),
            filename: None,
            line: None,
        }
    }

    /// A Python frame; pass `line: None` for `--nolineno`.
    pub fn python(name: impl Into<String>, filename: impl Into<String>, line: Option<u32>) -> Self {
        ProfileFrame {
            kind: FrameKind::Python,
            name: name.into(),
            filename: Some(filename.into()),
            line,
        }
    }
}

/// Facts about a whole recording that outputs may print (title, subtitle, units).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProfileMeta {
    /// Shown as the flame graph title and the speedscope file name; usually the command line.
    pub title: String,
    /// Sampling rate in Hz; 0 when unknown (speedscope weights are then plain counts).
    pub rate_hz: u32,
    /// Wall-clock length of the recording.
    pub duration_secs: f64,
    /// Samples that could not be taken or decoded at all (not in the profile).
    pub errors: u64,
}

/// Name given to the frame that stands in for an empty stack passed to [`Profile::add`].
pub const EMPTY_STACK: &str = "[empty stack]";

/// Distinct stacks and their sample counts, over a table of interned frames.
///
/// Frame ids are indexes into [`Profile::frames`], assigned in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    frames: Vec<ProfileFrame>,
    index: HashMap<ProfileFrame, u32>,
    /// Root first.
    stacks: HashMap<Vec<u32>, u64>,
    total: u64,
    /// Reused by `add` so a known stack costs no allocation.
    scratch: Vec<u32>,
}

impl Profile {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `count` samples of the stack `root_first` (outermost frame first).
    ///
    /// A count of 0 records nothing. An empty stack is recorded as one `Truncated` frame
    /// named [`EMPTY_STACK`], so no sample disappears silently. Known frames and stacks are
    /// looked up by reference: adding a stack already seen does not allocate.
    pub fn add(&mut self, root_first: &[ProfileFrame], count: u64) {
        if count == 0 {
            return;
        }
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        if root_first.is_empty() {
            ids.push(self.intern(&ProfileFrame::new(FrameKind::Truncated, EMPTY_STACK)));
        } else {
            ids.extend(root_first.iter().map(|f| self.intern(f)));
        }
        self.add_ids(&ids, count);
        self.scratch = ids;
    }

    /// Adds every stack of `other` to this profile.
    pub fn merge(&mut self, other: &Profile) {
        let map: Vec<u32> = other.frames.iter().map(|f| self.intern(f)).collect();
        let mut ids = Vec::new();
        for (stack, count) in &other.stacks {
            ids.clear();
            ids.extend(stack.iter().map(|&id| map[id as usize]));
            self.add_ids(&ids, *count);
        }
    }

    /// Sum of all counts.
    pub fn total_samples(&self) -> u64 {
        self.total
    }

    /// The interned frames; a stack's ids index this slice.
    pub fn frames(&self) -> &[ProfileFrame] {
        &self.frames
    }

    /// Number of distinct stacks.
    pub fn num_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Distinct stacks (frame ids, root first) with their counts, sorted by ids so output
    /// is stable for a given order of `add` calls.
    pub fn stacks(&self) -> impl Iterator<Item = (&[u32], u64)> {
        let mut v: Vec<(&[u32], u64)> = self
            .stacks
            .iter()
            .map(|(k, &c)| (k.as_slice(), c))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }

    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    fn intern(&mut self, frame: &ProfileFrame) -> u32 {
        if let Some(&id) = self.index.get(frame) {
            return id;
        }
        // More than 4 billion distinct frames is not a profile we can hold anyway.
        let id = u32::try_from(self.frames.len()).unwrap_or(u32::MAX);
        self.frames.push(frame.clone());
        self.index.insert(frame.clone(), id);
        id
    }

    fn add_ids(&mut self, ids: &[u32], count: u64) {
        if let Some(c) = self.stacks.get_mut(ids) {
            *c = c.saturating_add(count);
        } else {
            self.stacks.insert(ids.to_vec(), count);
        }
        self.total = self.total.saturating_add(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(name: &str, line: u32) -> ProfileFrame {
        ProfileFrame::python(name, "a.py", Some(line))
    }

    #[test]
    fn interns_frames_and_counts_stacks() {
        let mut p = Profile::new();
        assert!(p.is_empty());
        p.add(&[py("main", 1), py("f", 2)], 3);
        p.add(&[py("main", 1), py("g", 5)], 1);
        p.add(&[py("main", 1), py("f", 2)], 2);
        p.add(&[py("main", 1)], 0);
        assert!(!p.is_empty());
        assert_eq!(p.total_samples(), 6);
        assert_eq!(p.frames().len(), 3);
        assert_eq!(p.num_stacks(), 2);
        let stacks: Vec<_> = p.stacks().map(|(s, c)| (s.to_vec(), c)).collect();
        assert_eq!(stacks, vec![(vec![0, 1], 5), (vec![0, 2], 1)]);
    }

    #[test]
    fn empty_stack_is_a_truncated_frame() {
        let mut p = Profile::new();
        p.add(&[], 4);
        assert_eq!(p.total_samples(), 4);
        assert_eq!(p.frames()[0].kind, FrameKind::Truncated);
        assert_eq!(p.frames()[0].name, EMPTY_STACK);
    }

    #[test]
    fn same_name_different_kind_are_distinct() {
        let mut p = Profile::new();
        p.add(&[ProfileFrame::new(FrameKind::Native, "f")], 1);
        p.add(&[ProfileFrame::new(FrameKind::Kernel, "f")], 1);
        assert_eq!(p.frames().len(), 2);
        assert_eq!(p.num_stacks(), 2);
    }

    #[test]
    fn merge_remaps_ids() {
        let mut a = Profile::new();
        a.add(&[py("x", 1)], 1);
        let mut b = Profile::new();
        b.add(&[py("y", 1)], 2);
        b.add(&[py("x", 1)], 3);
        a.merge(&b);
        assert_eq!(a.total_samples(), 6);
        assert_eq!(a.frames().len(), 2);
        let stacks: Vec<_> = a.stacks().map(|(s, c)| (s.to_vec(), c)).collect();
        assert_eq!(stacks, vec![(vec![0], 4), (vec![1], 2)]);
    }
}
