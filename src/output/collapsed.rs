//! The collapsed ("raw", folded) format: one line per distinct stack, `root;...;leaf count`.
//!
//! This is py-spy's `raw` output and the input of inferno and Brendan Gregg's flamegraph.pl.
//! Lines are sorted frame by frame, so the output does not depend on the order samples
//! arrived, and stacks whose labels are equal after escaping are merged into one line.
//!
//! Escaping, so that any frame survives the format (see [`escape`]):
//! - `;` (the frame separator) becomes `,`;
//! - control characters (newline, carriage return, tab, ...) become a space;
//! - surrounding whitespace is trimmed, and a label left empty becomes `[unknown]`;
//! - a label whose last space-separated word is a number (`worker 3`) gets that space
//!   replaced by `_` (`worker_3`): otherwise a leaf frame's number would be read as the
//!   sample count and the real count as a differential count.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{frame_label, UNKNOWN_NAME};
use crate::profile::Profile;

/// Makes a frame label safe to place between `;` separators in a collapsed line.
pub fn escape(label: &str) -> String {
    let mapped: String = label
        .chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = mapped.trim();
    if trimmed.is_empty() {
        return UNKNOWN_NAME.to_string();
    }
    match trimmed.rfind(' ') {
        Some(i) if looks_like_count(&trimmed[i + 1..]) => {
            format!("{}_{}", trimmed[..i].trim_end(), &trimmed[i + 1..])
        }
        _ => trimmed.to_string(),
    }
}

/// True for what inferno would parse as a sample count (`12`, `1.5`, `3.`), and a bit more.
fn looks_like_count(word: &str) -> bool {
    word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The escaped label of every interned frame, indexed by frame id.
pub fn labels(profile: &Profile) -> Vec<String> {
    profile
        .frames()
        .iter()
        .map(|f| escape(&frame_label(f)))
        .collect()
}

/// Each distinct stack as `root;...;leaf` with its count, sorted frame by frame (so a
/// frame's callers and callees stay together, as inferno needs) and merged when equal. The
/// count of a profile weighted in nanoseconds (wall-clock) is microseconds
/// ([`crate::profile::ProfileMeta::shown_value`]).
pub fn stacks(profile: &Profile) -> Vec<(String, u64)> {
    let labels = labels(profile);
    let label = |id: &u32| {
        labels
            .get(*id as usize)
            .map_or(UNKNOWN_NAME, String::as_str)
    };
    let mut merged: BTreeMap<Vec<&str>, u64> = BTreeMap::new();
    for (ids, count) in profile.shown_stacks() {
        let c = merged.entry(ids.iter().map(label).collect()).or_insert(0);
        *c = c.saturating_add(count);
    }
    merged
        .into_iter()
        .map(|(frames, count)| (frames.join(";"), count))
        .collect()
}

/// Complete collapsed lines, `root;...;leaf count`, sorted.
pub fn lines(profile: &Profile) -> Vec<String> {
    stacks(profile)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect()
}

/// Writes the collapsed format; an empty profile writes nothing.
pub fn write(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    for (stack, count) in stacks(profile) {
        writeln!(out, "{stack} {count}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FrameKind, ProfileFrame};

    #[test]
    fn escape_rules() {
        assert_eq!(escape("run (a.py:3)"), "run (a.py:3)");
        assert_eq!(escape("a;b"), "a,b");
        assert_eq!(escape("line\nbreak\r\tx"), "line break  x");
        assert_eq!(escape("  padded  "), "padded");
        assert_eq!(escape(""), "[unknown]");
        assert_eq!(escape("\n"), "[unknown]");
        assert_eq!(escape("worker 3"), "worker_3");
        assert_eq!(escape("worker  1.5"), "worker_1.5");
        assert_eq!(escape("thread 12 \"Main\""), "thread 12 \"Main\"");
        assert_eq!(escape("v 1.2.x"), "v 1.2.x");
        assert_eq!(escape("version 1."), "version_1.");
        assert_eq!(escape("12"), "12");
    }

    #[test]
    fn lines_are_sorted_merged_and_escaped() {
        let mut p = Profile::new();
        let thread = ProfileFrame::new(FrameKind::Thread, "thread 1 \"a;b\"");
        let f = ProfileFrame::python("f", "x.py", Some(1));
        let g = ProfileFrame::python("g", "x.py", None);
        let k = ProfileFrame::new(FrameKind::Kernel, "schedule");
        p.add(&[thread.clone(), g.clone(), k.clone()], 2);
        p.add(&[thread.clone(), f.clone()], 5);
        p.add(&[thread.clone(), g.clone()], 1);
        // Differs from the first stack only by a character that escaping replaces.
        p.add(
            &[
                ProfileFrame::new(FrameKind::Thread, "thread 1 \"a,b\""),
                g.clone(),
                k.clone(),
            ],
            3,
        );
        assert_eq!(
            lines(&p),
            vec![
                "thread 1 \"a,b\";f (x.py:1) 5",
                "thread 1 \"a,b\";g (x.py) 1",
                "thread 1 \"a,b\";g (x.py);schedule_[k] 5",
            ]
        );
        let mut out = Vec::new();
        write(&p, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with(" 5\n"));
    }

    #[test]
    fn leaf_ending_in_number_keeps_its_count() {
        let mut p = Profile::new();
        p.add(
            &[ProfileFrame::new(
                FrameKind::Truncated,
                "[truncated at depth 128]",
            )],
            1,
        );
        p.add(&[ProfileFrame::new(FrameKind::Thread, "worker 7")], 4);
        assert_eq!(lines(&p), vec!["[truncated at depth 128] 1", "worker_7 4"]);
    }

    #[test]
    fn sorted_frame_by_frame_not_as_strings() {
        let n = |name: &str| ProfileFrame::new(FrameKind::Native, name);
        let mut p = Profile::new();
        p.add(&[n("a b"), n("y")], 1);
        p.add(&[n("a"), n("x")], 1);
        p.add(&[n("a")], 1);
        // As plain strings "a b;y" would sort between "a" and "a;x", splitting frame "a".
        assert_eq!(lines(&p), vec!["a 1", "a;x 1", "a b;y 1"]);
    }

    #[test]
    fn empty_profile_writes_nothing() {
        let mut out = Vec::new();
        write(&Profile::new(), &mut out).unwrap();
        assert!(out.is_empty());
    }
}
