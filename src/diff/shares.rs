//! Per-function sample counts of one profile: self (the function is the leaf) and total (the
//! function is anywhere on the stack, counted once per stack however often it recurses).
//!
//! A wall-clock profile (weighted in nanoseconds: on-CPU samples weigh one sampling period,
//! off-CPU stretches the time away) is counted by time, not by samples: one long sleep is one
//! sample but most of the wall time. Its counts are nanoseconds, and `Shares::unit` says how
//! many of them make one sample's worth (the sampling period), which the test's binomial noise
//! model counts in.

use std::collections::{HashMap, HashSet};

use regex::Regex;

use crate::frames::shorten_filename;
use crate::profile::{FrameKind, Profile, ProfileFrame, WeightUnit};

/// What a row of the comparison stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    pub kind: FrameKind,
    pub name: String,
    /// Python: the source file; native: the module.
    pub file: Option<String>,
    /// With `--lines`: the line.
    pub line: Option<u32>,
}

impl FunctionKey {
    /// `name (file:line)` with the file shortened as the other outputs show it.
    pub fn label(&self) -> String {
        let file = self.file.as_deref().map(|f| match self.kind {
            FrameKind::Python => shorten_filename(f),
            _ => f,
        });
        match (file, self.line) {
            (Some(f), Some(l)) => format!("{} ({f}:{l})", self.name),
            (Some(f), None) => format!("{} ({f})", self.name),
            (None, _) => match self.kind {
                FrameKind::Kernel => format!("{}_[k]", self.name),
                _ => self.name.clone(),
            },
        }
    }
}

/// How profiles are cut into functions.
#[derive(Debug, Clone, Default)]
pub struct ShareOptions {
    /// Compare lines, not functions.
    pub lines: bool,
    /// Only Python frames count (a stack's leaf is then its innermost Python frame).
    pub python_only: bool,
    /// Only samples with a frame whose label matches.
    pub focus: Option<Regex>,
}

/// One profile's counts, in the profile's unit (samples, or nanoseconds of a wall profile).
#[derive(Debug, Clone, Default)]
pub struct Shares {
    /// Samples (or nanoseconds) considered (after `--focus`).
    pub total: u64,
    pub self_counts: HashMap<FunctionKey, u64>,
    pub total_counts: HashMap<FunctionKey, u64>,
    /// How much of the counts' unit one sample is worth: 1 for a sample count, the sampling
    /// period for nanoseconds (one period of time is as uncertain as one sample: an on-CPU
    /// sample stands for exactly that).
    pub unit: f64,
}

impl Shares {
    /// `n` of the counts' unit in samples' worth.
    pub fn in_samples(&self, n: u64) -> f64 {
        n as f64 / self.unit
    }
}

/// Nanoseconds one sample stands for in a wall profile whose rate is unknown (a file read
/// back without it): the default rate's period, 10 ms.
const UNKNOWN_PERIOD_NS: u64 = 10_000_000;

/// Counts `profile`'s samples per function.
pub fn shares(profile: &Profile, opts: &ShareOptions) -> Shares {
    let frames = profile.frames();
    // Per frame id: its key (None: not counted, e.g. a non-Python frame with --python-only,
    // or a process/thread root), and whether it matches --focus.
    let keys: Vec<Option<FunctionKey>> = frames.iter().map(|f| key_of(f, opts)).collect();
    let focused: Vec<bool> = match &opts.focus {
        Some(re) => frames
            .iter()
            .zip(&keys)
            .map(|(f, k)| {
                re.is_match(&f.name) || k.as_ref().is_some_and(|k| re.is_match(&k.label()))
            })
            .collect(),
        None => vec![true; frames.len()],
    };
    let (stacks, unit): (Vec<(&[u32], u64)>, f64) = match profile.meta.unit {
        WeightUnit::Samples => (profile.stacks().collect(), 1.0),
        WeightUnit::Nanoseconds => {
            let period = match profile.meta.period_ns {
                0 => UNKNOWN_PERIOD_NS,
                p => p,
            };
            (profile.weighted_stacks().collect(), period as f64)
        }
    };
    let mut out = Shares {
        unit,
        ..Shares::default()
    };
    let mut seen: HashSet<&FunctionKey> = HashSet::new();
    for (stack, count) in stacks {
        if opts.focus.is_some() && !stack.iter().any(|&id| focused[id as usize]) {
            continue;
        }
        out.total += count;
        seen.clear();
        for &id in stack {
            if let Some(k) = &keys[id as usize] {
                if seen.insert(k) {
                    *out.total_counts.entry(k.clone()).or_default() += count;
                }
            }
        }
        if let Some(k) = stack
            .iter()
            .rev()
            .find_map(|&id| keys[id as usize].as_ref())
        {
            *out.self_counts.entry(k.clone()).or_default() += count;
        }
    }
    out
}

fn key_of(f: &ProfileFrame, opts: &ShareOptions) -> Option<FunctionKey> {
    match f.kind {
        FrameKind::Process | FrameKind::Thread => None,
        // By the file's short name (as the outputs show it): a checkout of the base branch
        // and one of the pull request live in different directories, and a collapsed file
        // has only the short name anyway.
        FrameKind::Python => Some(FunctionKey {
            kind: f.kind,
            name: f.name.clone(),
            file: f
                .filename
                .as_deref()
                .map(|p| shorten_filename(p).to_string()),
            line: if opts.lines { f.line } else { None },
        }),
        _ if opts.python_only => None,
        _ => Some(FunctionKey {
            kind: f.kind,
            name: f.name.clone(),
            file: f.filename.clone(),
            line: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileFrame;

    fn py(name: &str, line: u32) -> ProfileFrame {
        ProfileFrame::python(name, "/app/a.py", Some(line))
    }

    #[test]
    fn self_and_total_counted_once_per_stack() {
        let mut p = Profile::new();
        p.add(&[py("main", 1), py("f", 2), py("f", 3)], 3); // recursion
        p.add(&[py("main", 1), py("g", 5)], 1);
        p.add(
            &[
                py("main", 1),
                ProfileFrame::new(FrameKind::Native, "memcpy"),
            ],
            2,
        );
        let s = shares(&p, &ShareOptions::default());
        let key = |n: &str| FunctionKey {
            kind: FrameKind::Python,
            name: n.into(),
            file: Some("a.py".into()),
            line: None,
        };
        assert_eq!(s.total, 6);
        assert_eq!(s.total_counts[&key("main")], 6);
        assert_eq!(s.total_counts[&key("f")], 3);
        assert_eq!(s.self_counts[&key("f")], 3);
        assert_eq!(s.self_counts.get(&key("main")), None);
        assert_eq!(key("f").label(), "f (a.py)");

        let python = shares(
            &p,
            &ShareOptions {
                python_only: true,
                ..Default::default()
            },
        );
        assert_eq!(python.self_counts[&key("main")], 2);

        let lines = shares(
            &p,
            &ShareOptions {
                lines: true,
                ..Default::default()
            },
        );
        assert_eq!(lines.self_counts.len(), 3);

        let focus = shares(
            &p,
            &ShareOptions {
                focus: Some(Regex::new("^g$").unwrap()),
                ..Default::default()
            },
        );
        assert_eq!(focus.total, 1);
    }
}
