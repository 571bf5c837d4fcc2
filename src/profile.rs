//! A profile as data: interned frames with their identity, per-sample labels (process,
//! thread), a time window, what a sample is worth (type, unit, period), and optionally the
//! samples in time order.
//!
//! `Profile` knows nothing about where the frames came from, nor how they will be shown:
//! presentation (`--nolineno`, `-F`, `--full-filenames`, `-t`, `--subprocesses` roots) is
//! applied when a profile is written (`frames::present`), so one recorded profile can be
//! written any way, read back, merged and compared.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

// (Kept in `model`, below the samplers and `process::lineage` that make them.)
pub use crate::model::{unix_ns, ProcessNode};

/// What a frame of a profile stands for. Outputs label and colour frames by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum FrameKind {
    /// A process root frame of a presented profile; `name` is formatted, e.g. `python3 (1234)`.
    Process,
    /// A thread root frame of a presented profile; `name` is formatted, e.g.
    /// `thread "MainThread" (1234)`.
    Thread,
    /// A Python function; `filename` and `line` where known.
    Python,
    /// A native (user-space machine code) function; `filename` is the module or source file.
    Native,
    /// A kernel function.
    Kernel,
    /// A marker saying the stack stops early and why; `name` is shown as given.
    Truncated,
    /// What a thread off the CPU was waiting for (`gil_wait`); `name` is shown as given.
    Wait,
}

impl FrameKind {
    /// The name used in files this project writes and reads back (pprof system names).
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Process => "process",
            FrameKind::Thread => "thread",
            FrameKind::Python => "python",
            FrameKind::Native => "native",
            FrameKind::Kernel => "kernel",
            FrameKind::Truncated => "truncated",
            FrameKind::Wait => "wait",
        }
    }

    pub fn from_name(name: &str) -> Option<FrameKind> {
        Some(match name {
            "process" => FrameKind::Process,
            "thread" => FrameKind::Thread,
            "python" => FrameKind::Python,
            "native" => FrameKind::Native,
            "kernel" => FrameKind::Kernel,
            "truncated" => FrameKind::Truncated,
            "wait" => FrameKind::Wait,
            _ => return None,
        })
    }
}

/// One frame of a profile stack.
///
/// In a recorded profile a frame has its identity: a Python frame's full file name, current
/// line and first line; a native frame's module and offset in it. A presented profile
/// (`frames::present`) keeps only what is shown, so frames that look alike merge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ProfileFrame {
    pub kind: FrameKind,
    pub name: String,
    /// Python: the source file. Native: the module's file name (`libc.so.6`).
    pub filename: Option<String>,
    /// Python: the line of the current instruction (0 when unknown).
    pub line: Option<u32>,
    /// Python: the function's first line.
    pub first_line: Option<u32>,
    /// Native: where the function starts (an unnamed address: the instruction), as an offset
    /// in its module's file.
    pub address: Option<u64>,
}

impl ProfileFrame {
    pub fn new(kind: FrameKind, name: impl Into<String>) -> Self {
        ProfileFrame {
            kind,
            name: name.into(),
            filename: None,
            line: None,
            first_line: None,
            address: None,
        }
    }

    /// A Python frame; pass `line: None` for `--nolineno`.
    pub fn python(name: impl Into<String>, filename: impl Into<String>, line: Option<u32>) -> Self {
        ProfileFrame {
            kind: FrameKind::Python,
            name: name.into(),
            filename: Some(filename.into()),
            line,
            first_line: None,
            address: None,
        }
    }
}

/// Who a sample belongs to. Interned per profile: a thread's samples share one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SampleLabels {
    /// 0 when unknown (a profile read back from a file without labels).
    pub pid: u32,
    /// The OS thread id, when known.
    pub tid: Option<u32>,
    /// The `pthread_t` / `thread_id` CPython stores for the thread; names the thread when its
    /// OS tid is unknown. 0 when unknown.
    pub thread_ident: u64,
    /// The `threading` name (or the OS thread name) when known.
    pub thread_name: Option<String>,
    /// The process's name (its `comm`); empty when unknown.
    pub process: String,
    /// Whether the thread held the GIL at the sample (Python threads whose GIL state was read;
    /// pprof's `gil` label).
    pub gil: Option<bool>,
}

/// The key of `SampleLabels::gil` as a label of exported profiles (pprof), and its values:
/// `released` for a thread running without the GIL (in C code that released it, or waiting to
/// take it back). Neither value contains the other, so pprof's `-tagfocus=gil=held` (a regular
/// expression) picks one of them.
pub const GIL_KEY: &str = "gil";

pub fn gil_label(held: bool) -> &'static str {
    match held {
        true => "held",
        false => "released",
    }
}

impl SampleLabels {
    /// True for the labels of a profile that has none (a presented or collapsed profile).
    pub fn is_empty(&self) -> bool {
        *self == SampleLabels::default()
    }
}

/// What the profile measures. Profiles of different kinds are not comparable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum SampleKind {
    /// Time on a CPU, sampled by a timer: each sample stands for one sampling period.
    #[default]
    Cpu,
    /// Wall-clock time: running and waiting threads alike.
    Wall,
}

impl SampleKind {
    /// The pprof sample type name.
    pub fn name(self) -> &'static str {
        match self {
            SampleKind::Cpu => "cpu",
            SampleKind::Wall => "wall",
        }
    }

    pub fn from_name(name: &str) -> Option<SampleKind> {
        match name {
            "cpu" => Some(SampleKind::Cpu),
            "wall" => Some(SampleKind::Wall),
            _ => None,
        }
    }
}

/// What a sample's weight counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum WeightUnit {
    /// A sample count: each is worth `period_ns` of the profile's kind.
    #[default]
    Samples,
    /// Nanoseconds (off-CPU and wall samples, weighted by how long they stand for).
    Nanoseconds,
}

/// Facts about a whole recording: its window, what a sample is worth, and what outputs print
/// (title, errors).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProfileMeta {
    /// Shown as the flame graph title and the speedscope file name; usually the command line.
    pub title: String,
    /// Sampling rate in Hz; 0 when unknown (speedscope weights are then plain counts).
    pub rate_hz: u32,
    /// What one unit of weight measures.
    pub kind: SampleKind,
    pub unit: WeightUnit,
    /// Nanoseconds one sample stands for (1e9 / rate); 0 when unknown.
    pub period_ns: u64,
    /// When the recording started, in nanoseconds since the Unix epoch; 0 when unknown.
    pub start_unix_ns: u64,
    /// Wall-clock length of the recording.
    pub duration_secs: f64,
    /// Samples that could not be taken or decoded at all (not in the profile).
    pub errors: u64,
    /// Labels of the whole profile (`service_name=api`, `env=prod`), in order.
    pub labels: Vec<(String, String)>,
    /// `--subprocesses`: the processes seen under the profiled one, with who started them
    /// (src/process/lineage.rs); empty otherwise. Processes are shown under their parents.
    pub processes: BTreeMap<u32, ProcessNode>,
}

impl ProfileMeta {
    /// A CPU profile sampled at `rate_hz`, starting now.
    pub fn cpu(title: impl Into<String>, rate_hz: u32) -> Self {
        ProfileMeta {
            title: title.into(),
            rate_hz,
            kind: SampleKind::Cpu,
            unit: WeightUnit::Samples,
            period_ns: period_ns(rate_hz),
            start_unix_ns: unix_ns(SystemTime::now()),
            ..ProfileMeta::default()
        }
    }
}

impl ProfileMeta {
    /// A wall-clock profile (BPF `--idle`): on-CPU samples at `rate_hz`, each weighing one
    /// period, and off-CPU samples weighing the time away, in nanoseconds; starting now.
    pub fn wall(title: impl Into<String>, rate_hz: u32) -> Self {
        ProfileMeta {
            kind: SampleKind::Wall,
            unit: WeightUnit::Nanoseconds,
            ..ProfileMeta::cpu(title, rate_hz)
        }
    }

    /// What the text outputs (collapsed stacks, flame graph, speedscope) count for `counts`:
    /// samples, or for a profile weighted in nanoseconds, microseconds (whole numbers, as
    /// collapsed stacks need, and fine enough for stretches of at least a microsecond).
    pub fn shown_value(&self, counts: Counts) -> u64 {
        match self.unit {
            WeightUnit::Samples => counts.samples,
            WeightUnit::Nanoseconds => counts.weight.saturating_add(500) / 1000,
        }
    }

    /// The unit of [`shown_value`](Self::shown_value), for people: `samples` or `μs`.
    pub fn shown_unit(&self) -> &'static str {
        match self.unit {
            WeightUnit::Samples => "samples",
            WeightUnit::Nanoseconds => "μs",
        }
    }
}

/// Nanoseconds between samples at `rate_hz`; 0 for an unknown rate.
pub fn period_ns(rate_hz: u32) -> u64 {
    match rate_hz {
        0 => 0,
        r => 1_000_000_000 / u64::from(r),
    }
}

/// Name given to the frame that stands in for an empty stack passed to [`Profile::add`].
pub const EMPTY_STACK: &str = "[empty stack]";

/// How many samples a profile keeps in time order (24 bytes each: 12 MiB; an hour of one
/// process at 100 Hz). A longer recording keeps
/// the first ones and says so (`timeline_dropped`); the counts are complete either way.
pub const MAX_TIMELINE: usize = 1 << 19;

/// One sample in time order: when, and which (stack, labels) it counted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedSample {
    /// Nanoseconds since `ProfileMeta::start_unix_ns`.
    pub offset_ns: u64,
    pub stack: u32,
    pub labels: u32,
    /// The sample's weight.
    pub weight: u64,
}

/// The sums of one (stack, labels) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Samples taken.
    pub samples: u64,
    /// Their weight in the profile's unit (equal to `samples` for `WeightUnit::Samples`).
    pub weight: u64,
}

/// One aggregated entry of a profile, as [`Profile::samples`] yields them.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Frame ids, root first.
    pub stack: &'a [u32],
    /// The stack's and the labels' ids (as a [`TimedSample`] names them).
    pub stack_id: u32,
    pub labels_id: u32,
    pub labels: &'a SampleLabels,
    pub counts: Counts,
}

/// Distinct (stack, labels) pairs and their counts over tables of interned frames, stacks and
/// labels.
///
/// Frame ids are indexes into [`Profile::frames`], assigned in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    pub meta: ProfileMeta,
    frames: Vec<ProfileFrame>,
    frame_index: HashMap<ProfileFrame, u32>,
    /// Root first.
    stacks: Vec<Box<[u32]>>,
    stack_index: HashMap<Box<[u32]>, u32>,
    labels: Vec<SampleLabels>,
    label_index: HashMap<SampleLabels, u32>,
    counts: HashMap<(u32, u32), Counts>,
    total: Counts,
    timeline: Vec<TimedSample>,
    /// Samples not kept in `timeline` because it was full.
    timeline_dropped: u64,
    /// Reused by `add` so a known stack costs no allocation.
    scratch: Vec<u32>,
}

impl Profile {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_meta(meta: ProfileMeta) -> Self {
        Profile {
            meta,
            ..Profile::default()
        }
    }

    /// Counts `count` samples of the stack `root_first` (outermost frame first) with no
    /// labels and no time.
    pub fn add(&mut self, root_first: &[ProfileFrame], count: u64) {
        self.add_sample(root_first, &SampleLabels::default(), None, count, count);
    }

    /// Counts `samples` samples of weight `weight` (in the profile's unit) of the stack
    /// `root_first`, belonging to `labels`, taken at `time_unix_ns` (kept in the timeline
    /// when given).
    ///
    /// A count of 0 records nothing. An empty stack is recorded as one `Truncated` frame
    /// named [`EMPTY_STACK`], so no sample disappears silently. Known frames, stacks and
    /// labels are looked up by reference: a sample like one already seen does not allocate.
    pub fn add_sample(
        &mut self,
        root_first: &[ProfileFrame],
        labels: &SampleLabels,
        time_unix_ns: Option<u64>,
        samples: u64,
        weight: u64,
    ) {
        if samples == 0 {
            return;
        }
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        if root_first.is_empty() {
            ids.push(self.intern_frame(&ProfileFrame::new(FrameKind::Truncated, EMPTY_STACK)));
        } else {
            ids.extend(root_first.iter().map(|f| self.intern_frame(f)));
        }
        let stack = self.intern_stack(&ids);
        self.scratch = ids;
        let labels = self.intern_labels(labels);
        self.count(stack, labels, time_unix_ns, samples, weight);
    }

    /// Adds every sample of `other` (its timeline included) to this profile. The meta data
    /// stays this profile's.
    pub fn merge(&mut self, other: &Profile) {
        let frames: Vec<u32> = other.frames.iter().map(|f| self.intern_frame(f)).collect();
        let mut ids = Vec::new();
        let stacks: Vec<u32> = other
            .stacks
            .iter()
            .map(|s| {
                ids.clear();
                ids.extend(s.iter().map(|&id| frames[id as usize]));
                self.intern_stack(&ids)
            })
            .collect();
        let labels: Vec<u32> = other.labels.iter().map(|l| self.intern_labels(l)).collect();
        let mut keys: Vec<_> = other.counts.iter().collect();
        keys.sort_unstable_by_key(|(k, _)| **k);
        for (&(s, l), c) in keys {
            let key = (stacks[s as usize], labels[l as usize]);
            let entry = self.counts.entry(key).or_default();
            add_counts(entry, *c);
            add_counts(&mut self.total, *c);
        }
        let shift = other.meta.start_unix_ns as i128 - self.meta.start_unix_ns as i128;
        for t in &other.timeline {
            let offset = (t.offset_ns as i128 + shift).max(0) as u64;
            self.push_timed(TimedSample {
                offset_ns: offset,
                stack: stacks[t.stack as usize],
                labels: labels[t.labels as usize],
                weight: t.weight,
            });
        }
        self.timeline_dropped = self.timeline_dropped.saturating_add(other.timeline_dropped);
    }

    /// Sum of all sample counts.
    pub fn total_samples(&self) -> u64 {
        self.total.samples
    }

    /// Sum of all weights, in the profile's unit.
    pub fn total_weight(&self) -> u64 {
        self.total.weight
    }

    /// The interned frames; a stack's ids index this slice.
    pub fn frames(&self) -> &[ProfileFrame] {
        &self.frames
    }

    /// An interned stack, root first (ids from [`TimedSample::stack`]).
    pub fn stack(&self, id: u32) -> &[u32] {
        self.stacks.get(id as usize).map_or(&[], |s| s)
    }

    /// Interned labels (ids from [`TimedSample::labels`]).
    pub fn labels(&self, id: u32) -> &SampleLabels {
        static NONE: SampleLabels = SampleLabels {
            pid: 0,
            tid: None,
            thread_ident: 0,
            thread_name: None,
            process: String::new(),
            gil: None,
        };
        self.labels.get(id as usize).unwrap_or(&NONE)
    }

    /// Number of distinct stacks.
    pub fn num_stacks(&self) -> usize {
        self.stacks.len()
    }

    /// Distinct stacks (frame ids, root first) with their sample counts summed over labels,
    /// sorted by ids so output is stable for a given order of `add` calls.
    pub fn stacks(&self) -> impl Iterator<Item = (&[u32], u64)> {
        let mut per_stack: Vec<u64> = vec![0; self.stacks.len()];
        for (&(s, _), c) in &self.counts {
            per_stack[s as usize] = per_stack[s as usize].saturating_add(c.samples);
        }
        let mut v: Vec<(&[u32], u64)> = self
            .stacks
            .iter()
            .zip(per_stack)
            .filter(|(_, c)| *c > 0)
            .map(|(s, c)| (&s[..], c))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }

    /// Distinct stacks with their weight in the profile's unit (`meta.unit`: samples, or
    /// nanoseconds), summed over labels, sorted by ids; stacks of weight 0 are left out.
    pub fn weighted_stacks(&self) -> impl Iterator<Item = (&[u32], u64)> {
        let mut per_stack: Vec<u64> = vec![0; self.stacks.len()];
        for (&(s, _), c) in &self.counts {
            per_stack[s as usize] = per_stack[s as usize].saturating_add(c.weight);
        }
        let mut v: Vec<(&[u32], u64)> = self
            .stacks
            .iter()
            .zip(per_stack)
            .filter(|(_, w)| *w > 0)
            .map(|(s, w)| (&s[..], w))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }

    /// Distinct stacks with what the text outputs show for them ([`ProfileMeta::shown_value`]:
    /// samples, or microseconds of a profile weighted in nanoseconds), summed over labels,
    /// sorted by ids; stacks that round to 0 are left out.
    pub fn shown_stacks(&self) -> impl Iterator<Item = (&[u32], u64)> {
        let mut per_stack: Vec<Counts> = vec![Counts::default(); self.stacks.len()];
        for (&(s, _), c) in &self.counts {
            add_counts(&mut per_stack[s as usize], *c);
        }
        let mut v: Vec<(&[u32], u64)> = self
            .stacks
            .iter()
            .zip(per_stack)
            .map(|(s, c)| (&s[..], self.meta.shown_value(c)))
            .filter(|(_, v)| *v > 0)
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v.into_iter()
    }

    /// Every (stack, labels) pair with its counts, sorted by stack then labels.
    pub fn samples(&self) -> Vec<Entry<'_>> {
        let mut v: Vec<Entry<'_>> = self
            .counts
            .iter()
            .map(|(&(s, l), &counts)| Entry {
                stack: &self.stacks[s as usize],
                stack_id: s,
                labels_id: l,
                labels: &self.labels[l as usize],
                counts,
            })
            .collect();
        v.sort_unstable_by(|a, b| a.stack.cmp(b.stack).then_with(|| a.labels.cmp(b.labels)));
        v
    }

    /// The samples in the order they were added (which, for a recording, is time order within
    /// each thread), at most [`MAX_TIMELINE`].
    pub fn timeline(&self) -> &[TimedSample] {
        &self.timeline
    }

    /// Samples counted but not kept in the timeline because it was full.
    pub fn timeline_dropped(&self) -> u64 {
        self.timeline_dropped
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Counts for an interned (stack, labels) pair; `frames::present` builds on this.
    pub(crate) fn add_interned(
        &mut self,
        stack: &[u32],
        labels: &SampleLabels,
        time_offset_ns: Option<u64>,
        counts: Counts,
    ) {
        let stack = self.intern_stack(stack);
        let labels = self.intern_labels(labels);
        let time = time_offset_ns.map(|o| self.meta.start_unix_ns.saturating_add(o));
        self.count(stack, labels, time, counts.samples, counts.weight);
    }

    /// Appends a sample to the timeline only (its counts are already in the profile):
    /// `stack` and `labels` are ids of this profile.
    pub(crate) fn push_timeline(&mut self, stack: u32, labels: u32, offset_ns: u64, weight: u64) {
        self.push_timed(TimedSample {
            offset_ns,
            stack,
            labels,
            weight,
        });
    }

    /// Samples left out of the timeline, to be counted as such by a copy of it.
    pub(crate) fn add_timeline_dropped(&mut self, n: u64) {
        self.timeline_dropped += n;
    }

    pub(crate) fn intern_frame(&mut self, frame: &ProfileFrame) -> u32 {
        if let Some(&id) = self.frame_index.get(frame) {
            return id;
        }
        // More than 4 billion distinct frames is not a profile we can hold anyway.
        let id = u32::try_from(self.frames.len()).unwrap_or(u32::MAX);
        self.frames.push(frame.clone());
        self.frame_index.insert(frame.clone(), id);
        id
    }

    pub(crate) fn intern_stack(&mut self, ids: &[u32]) -> u32 {
        if let Some(&id) = self.stack_index.get(ids) {
            return id;
        }
        let id = u32::try_from(self.stacks.len()).unwrap_or(u32::MAX);
        let stack: Box<[u32]> = ids.into();
        self.stacks.push(stack.clone());
        self.stack_index.insert(stack, id);
        id
    }

    pub(crate) fn intern_labels(&mut self, labels: &SampleLabels) -> u32 {
        if let Some(&id) = self.label_index.get(labels) {
            return id;
        }
        let id = u32::try_from(self.labels.len()).unwrap_or(u32::MAX);
        self.labels.push(labels.clone());
        self.label_index.insert(labels.clone(), id);
        id
    }

    fn count(&mut self, stack: u32, labels: u32, time: Option<u64>, samples: u64, weight: u64) {
        let counts = Counts { samples, weight };
        add_counts(self.counts.entry((stack, labels)).or_default(), counts);
        add_counts(&mut self.total, counts);
        if let Some(t) = time {
            self.push_timed(TimedSample {
                offset_ns: t.saturating_sub(self.meta.start_unix_ns),
                stack,
                labels,
                weight,
            });
        }
    }

    fn push_timed(&mut self, t: TimedSample) {
        if self.timeline.len() < MAX_TIMELINE {
            self.timeline.push(t);
        } else {
            self.timeline_dropped += 1;
        }
    }

    /// The recording's end, from its start and duration.
    pub fn end_unix_ns(&self) -> u64 {
        let d = Duration::try_from_secs_f64(self.meta.duration_secs).unwrap_or_default();
        self.meta
            .start_unix_ns
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

fn add_counts(into: &mut Counts, c: Counts) {
    into.samples = into.samples.saturating_add(c.samples);
    into.weight = into.weight.saturating_add(c.weight);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(name: &str, line: u32) -> ProfileFrame {
        ProfileFrame::python(name, "a.py", Some(line))
    }

    fn thread(pid: u32, tid: u32) -> SampleLabels {
        SampleLabels {
            pid,
            tid: Some(tid),
            thread_ident: 0,
            thread_name: Some("MainThread".into()),
            process: "python3".into(),
            gil: None,
        }
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
        assert!(p.timeline().is_empty());
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
    fn labels_split_samples_but_not_stacks() {
        let mut p = Profile::with_meta(ProfileMeta {
            start_unix_ns: 1_000,
            ..ProfileMeta::default()
        });
        p.add_sample(&[py("main", 1)], &thread(7, 7), Some(1_500), 1, 1);
        p.add_sample(&[py("main", 1)], &thread(7, 8), Some(1_700), 1, 1);
        p.add_sample(&[py("main", 1)], &thread(7, 7), Some(1_900), 2, 2);
        assert_eq!(p.num_stacks(), 1);
        assert_eq!(p.stacks().collect::<Vec<_>>(), vec![(&[0u32][..], 4)]);
        let entries = p.samples();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].labels.tid, Some(7));
        assert_eq!(entries[0].counts.samples, 3);
        assert_eq!(entries[1].labels.tid, Some(8));
        let offsets: Vec<u64> = p.timeline().iter().map(|t| t.offset_ns).collect();
        assert_eq!(offsets, vec![500, 700, 900]);
        assert_eq!(p.labels(p.timeline()[1].labels).tid, Some(8));
    }

    #[test]
    fn wall_profiles_show_microseconds() {
        let mut p = Profile::with_meta(ProfileMeta::wall("t", 100));
        assert_eq!(
            (p.meta.kind, p.meta.unit),
            (SampleKind::Wall, WeightUnit::Nanoseconds)
        );
        assert_eq!(p.meta.period_ns, 10_000_000);
        let none = SampleLabels::default();
        // Two on-CPU samples (a period each) and one stretch off the CPU, of one stack.
        p.add_sample(&[py("f", 1)], &none, None, 1, 10_000_000);
        p.add_sample(&[py("f", 1)], &none, None, 1, 10_000_000);
        p.add_sample(&[py("f", 1)], &none, None, 1, 2_500_400);
        p.add_sample(&[py("g", 1)], &none, None, 1, 400);
        let shown: Vec<u64> = p.shown_stacks().map(|(_, v)| v).collect();
        // g's 0.4 µs rounds to nothing shown.
        assert_eq!(shown, [22_500]);
        assert_eq!(p.meta.shown_unit(), "μs");
        let mut cpu = Profile::with_meta(ProfileMeta::cpu("t", 100));
        cpu.add_sample(&[py("f", 1)], &none, None, 3, 3);
        assert_eq!(cpu.shown_stacks().map(|(_, v)| v).collect::<Vec<_>>(), [3]);
        assert_eq!(cpu.meta.shown_unit(), "samples");
    }

    #[test]
    fn timeline_is_bounded() {
        let mut p = Profile::new();
        for i in 0..(MAX_TIMELINE as u64 + 5) {
            p.add_sample(&[py("f", 1)], &SampleLabels::default(), Some(i), 1, 1);
        }
        assert_eq!(p.timeline().len(), MAX_TIMELINE);
        assert_eq!(p.timeline_dropped(), 5);
        assert_eq!(p.total_samples(), MAX_TIMELINE as u64 + 5);
    }

    #[test]
    fn merge_remaps_ids_labels_and_times() {
        let mut a = Profile::with_meta(ProfileMeta {
            start_unix_ns: 100,
            ..ProfileMeta::default()
        });
        a.add(&[py("x", 1)], 1);
        let mut b = Profile::with_meta(ProfileMeta {
            start_unix_ns: 200,
            ..ProfileMeta::default()
        });
        b.add(&[py("y", 1)], 2);
        b.add_sample(&[py("x", 1)], &thread(3, 4), Some(250), 3, 3);
        a.merge(&b);
        assert_eq!(a.total_samples(), 6);
        assert_eq!(a.frames().len(), 2);
        let stacks: Vec<_> = a.stacks().map(|(s, c)| (s.to_vec(), c)).collect();
        assert_eq!(stacks, vec![(vec![0], 4), (vec![1], 2)]);
        assert_eq!(a.samples().len(), 3);
        assert_eq!(a.timeline().len(), 1);
        assert_eq!(a.timeline()[0].offset_ns, 150);
        assert_eq!(a.labels(a.timeline()[0].labels).pid, 3);
    }
}
