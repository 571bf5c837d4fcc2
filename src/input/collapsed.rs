//! Collapsed stacks read back: `root;frame;...;leaf COUNT` per line, as this project's `raw`
//! format, py-spy's `raw` and flamegraph.pl's input write them.
//!
//! Frames come back from their labels (`output::frame_label`): `name (file:line)` is a Python
//! frame when the file is Python source, else a native one with its module; `name_[k]` a
//! kernel frame; `<truncated: ...>`, `<unknown frame: ...>` and `[empty stack]` markers;
//! a root `thread "NAME" (TID)` a thread frame and a root `NAME (PID)` a process frame. The
//! file is streamed line by line, each line bounded in length, and what is kept of it (the
//! distinct stacks and frames) is bounded too (`Kept`): a file of any size that repeats its
//! stacks is read whole, one whose distinct content outgrows the bounds is an error.

use std::io::{BufRead, BufReader, Read};

use anyhow::{bail, Context};

use crate::profile::{FrameKind, Profile, ProfileFrame, ProfileMeta, EMPTY_STACK};

/// A longer line is not a stack (4096 frames of 256 bytes fit).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Bounds on what is kept from one file.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Distinct stacks.
    pub stacks: usize,
    /// Distinct frames.
    pub frames: usize,
    /// Frame ids held by the distinct stacks together (4 bytes each).
    pub stack_frames: usize,
    /// Bytes of frame names and file names.
    pub frame_bytes: usize,
}

/// The bounds `read` keeps to: a few hundred MiB at most, far above any recording's.
pub const LIMITS: Limits = Limits {
    stacks: 1 << 21,
    frames: 1 << 21,
    stack_frames: 1 << 25,
    frame_bytes: 256 << 20,
};

/// What the profile read so far keeps, against `Limits`.
#[derive(Default)]
struct Kept {
    stacks: usize,
    frames: usize,
    stack_frames: usize,
    frame_bytes: usize,
}

impl Kept {
    /// Counts what the last line added to `profile` (a stack of `depth` frames, if new).
    fn update(&mut self, profile: &Profile, depth: usize, limits: &Limits) -> Result<(), String> {
        if profile.num_stacks() > self.stacks {
            self.stacks = profile.num_stacks();
            self.stack_frames += depth;
        }
        for f in &profile.frames()[self.frames..] {
            self.frame_bytes += f.name.len() + f.filename.as_ref().map_or(0, String::len);
        }
        self.frames = profile.frames().len();
        let over = |what: &str, n: usize, max: usize| {
            (n > max).then(|| format!("more than {max} {what} (the most read from one file)"))
        };
        over("distinct stacks", self.stacks, limits.stacks)
            .or_else(|| over("distinct frames", self.frames, limits.frames))
            .or_else(|| {
                over(
                    "frames in distinct stacks",
                    self.stack_frames,
                    limits.stack_frames,
                )
            })
            .or_else(|| over("bytes of frame names", self.frame_bytes, limits.frame_bytes))
            .map_or(Ok(()), Err)
    }
}

/// Reads collapsed stacks from `input` into a profile titled `title`.
pub fn read(input: impl Read, title: &str) -> anyhow::Result<Profile> {
    read_within(input, title, &LIMITS)
}

/// `read`, keeping to `limits`.
pub fn read_within(input: impl Read, title: &str, limits: &Limits) -> anyhow::Result<Profile> {
    let mut reader = BufReader::new(input);
    let mut profile = Profile::with_meta(ProfileMeta {
        title: title.to_string(),
        ..ProfileMeta::default()
    });
    let mut line = Vec::new();
    let mut frames = Vec::new();
    let mut number = 0u64;
    let mut kept = Kept::default();
    loop {
        line.clear();
        number += 1;
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("line {number}: cannot read"))?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES {
            bail!("line {number}: longer than {MAX_LINE_BYTES} bytes");
        }
        let text = std::str::from_utf8(&line)
            .map_err(|_| anyhow::anyhow!("line {number}: not UTF-8 text"))?
            .trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let (stack, count) = split_count(text)
            .ok_or_else(|| anyhow::anyhow!("line {number}: no sample count at the end"))?;
        frames.clear();
        let labels: Vec<&str> = stack.split(';').collect();
        for (i, label) in labels.iter().enumerate() {
            frames.push(parse_frame(label, i == 0));
        }
        if frames.len() == 1 && frames[0].name == EMPTY_STACK {
            frames.clear();
        }
        profile.add(&frames, count);
        kept.update(&profile, frames.len().max(1), limits)
            .map_err(|e| anyhow::anyhow!("line {number}: {e}"))?;
    }
    if profile.is_empty() {
        bail!("no stacks in it");
    }
    Ok(profile)
}

/// `stack COUNT` -> (stack, count); None when the last word is not a count.
fn split_count(text: &str) -> Option<(&str, u64)> {
    let (stack, count) = text.trim_end().rsplit_once(' ')?;
    let count: u64 = count.parse().ok()?;
    let stack = stack.trim_end();
    (!stack.is_empty()).then_some((stack, count))
}

/// One frame from its label.
/// `process PID:"COMMAND LINE"`: a process of a `--subprocesses` tree, at the root or under
/// its parent process (so not only at the root, unlike `NAME (PID)`).
fn is_process_of_tree(label: &str) -> bool {
    label
        .strip_prefix("process ")
        .and_then(|rest| rest.split_once(":\""))
        .is_some_and(|(pid, _)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        && label.ends_with('"')
}

pub fn parse_frame(label: &str, is_root: bool) -> ProfileFrame {
    if let Some(name) = label.strip_suffix("_[k]") {
        return ProfileFrame::new(FrameKind::Kernel, name);
    }
    if label.starts_with("<truncated: ")
        || label.starts_with("<unknown frame: ")
        || label == EMPTY_STACK
    {
        return ProfileFrame::new(FrameKind::Truncated, label);
    }
    if is_process_of_tree(label) {
        return ProfileFrame::new(FrameKind::Process, label);
    }
    if is_root && label.starts_with("thread \"") && label.ends_with(')') {
        return ProfileFrame::new(FrameKind::Thread, label);
    }
    let Some((name, inner)) = label.strip_suffix(')').and_then(|l| l.rsplit_once(" (")) else {
        return ProfileFrame::new(FrameKind::Native, label);
    };
    if is_root && !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit()) {
        return ProfileFrame::new(FrameKind::Process, label);
    }
    let (file, line) = match inner.rsplit_once(':') {
        Some((file, line)) if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) => {
            (file, line.parse().ok())
        }
        _ => (inner, None),
    };
    if is_python_file(file) {
        ProfileFrame::python(name, file, line)
    } else {
        ProfileFrame {
            kind: FrameKind::Native,
            name: name.to_string(),
            filename: Some(file.to_string()),
            line,
            first_line: None,
            address: None,
        }
    }
}

fn is_python_file(file: &str) -> bool {
    file.ends_with(".py")
        || file.ends_with(".pyw")
        || file.ends_with(".pyx")
        || file.starts_with('<')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::{present, FrameOptions};
    use crate::output::collapsed;

    #[test]
    fn frames_come_back_from_their_labels() {
        let f = |l: &str, root| parse_frame(l, root);
        assert_eq!(
            f("run (app.py:12)", false),
            ProfileFrame::python("run", "app.py", Some(12))
        );
        assert_eq!(
            f("run (app.py)", false),
            ProfileFrame::python("run", "app.py", None)
        );
        assert_eq!(f("<module> (<string>:1)", false).kind, FrameKind::Python);
        let native = f("memcpy (libc.so.6)", false);
        assert_eq!(
            (native.kind, native.filename.as_deref()),
            (FrameKind::Native, Some("libc.so.6"))
        );
        assert_eq!(
            f("do_syscall_64_[k]", false),
            ProfileFrame::new(FrameKind::Kernel, "do_syscall_64")
        );
        assert_eq!(
            f("<truncated: depth limit>", false).kind,
            FrameKind::Truncated
        );
        assert_eq!(f("python3 (1234)", true).kind, FrameKind::Process);
        assert_eq!(
            f("process 12:\"python3 -c x\"", false).kind,
            FrameKind::Process
        );
        assert_eq!(f("process x:\"python3\"", false).kind, FrameKind::Native);
        assert_eq!(f("python3 (1234)", false).kind, FrameKind::Native);
        assert_eq!(f("thread \"Main\" (7)", true).kind, FrameKind::Thread);
        assert_eq!(
            f("0x7f00", false),
            ProfileFrame::new(FrameKind::Native, "0x7f00")
        );
    }

    #[test]
    fn round_trip_gives_the_same_lines() {
        let text = "python3 (12);thread \"MainThread\" (12);<module> (app.py:3);f (app.py:7);memcpy (libc.so.6);sys_read_[k] 5\n\
                    python3 (12);thread \"MainThread\" (12);<module> (app.py:3);<truncated: depth limit> 2\n\
                    python3 (12);thread \"worker_1\" (13);g (lib/x.py:9) 11\n";
        let p = read(text.as_bytes(), "t").unwrap();
        assert_eq!(p.total_samples(), 18);
        let again = collapsed::lines(&present(
            &p,
            FrameOptions {
                full_filenames: true,
                ..Default::default()
            },
        ));
        let mut want: Vec<&str> = text.lines().collect();
        want.sort();
        assert_eq!(again, want);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read(&b"no count here\n"[..], "t").is_err());
        assert!(read(&b"\xff\xfe\x00binary 3\n"[..], "t").is_err());
        assert!(read(&b"\n\n"[..], "t").is_err());
        let long = format!("{} 1\n", "a;".repeat(MAX_LINE_BYTES));
        let e = read(long.as_bytes(), "t").unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
        // A PNG's first bytes.
        assert!(read(&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..], "t").is_err());
        // Counts that overflow are refused, not wrapped.
        assert!(read(&b"f (a.py:1) 99999999999999999999999\n"[..], "t").is_err());
    }

    #[test]
    fn distinct_content_is_bounded_repeats_are_not() {
        let limits = Limits {
            stacks: 3,
            frames: 4,
            stack_frames: 100,
            frame_bytes: 1000,
        };
        // Repeats of the same stacks: read whatever their number.
        let repeated = "a (m.py:1);b (m.py:2) 1\n".repeat(10_000);
        let p = read_within(repeated.as_bytes(), "t", &limits).unwrap();
        assert_eq!((p.num_stacks(), p.total_samples()), (1, 10_000));
        // A fourth distinct stack is one too many: the line that adds it is named.
        let stacks = "a 1\nb 1\nc 1\nd 1\n";
        let e = read_within(stacks.as_bytes(), "t", &limits).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "line 4: more than 3 distinct stacks (the most read from one file)"
        );
        // So is a fifth distinct frame, and frame text beyond the byte bound.
        let e = read_within("a;b;c;d;e 1\n".as_bytes(), "t", &limits).unwrap_err();
        assert!(format!("{e:#}").contains("distinct frames"), "{e:#}");
        let long = format!("{} 1\n", "x".repeat(1001));
        let e = read_within(long.as_bytes(), "t", &limits).unwrap_err();
        assert!(format!("{e:#}").contains("bytes of frame names"), "{e:#}");
    }
}
