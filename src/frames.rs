//! From samples to profile frames, and from a recorded profile to what the user sees.
//!
//! A recorded profile keeps each frame's identity (`identity_frames`) and who each sample
//! belongs to (`sample_labels`); the user's presentation options (line numbers, file names,
//! thread and process roots) are applied only when a profile is written (`present`).

use std::collections::HashMap;

use std::collections::BTreeMap;

use crate::model::{Frame, StackTrace, GIL_WAIT};
#[cfg(target_os = "linux")]
use crate::native::interpreter_frames;
use crate::process::lineage::ancestry;
use crate::profile::{FrameKind, ProcessNode, Profile, ProfileFrame, SampleLabels};

#[derive(Debug, Clone, Copy, Default)]
pub struct FrameOptions {
    /// `--nolineno`: aggregate by function, no line.
    pub no_line_numbers: bool,
    /// `-F/--function`: show the function's first line instead of the current line.
    pub function_lines: bool,
    /// `--full-filenames`: absolute paths instead of shortened ones.
    pub full_filenames: bool,
    /// `-t/--threads`: a root frame per thread.
    pub threads: bool,
    /// A root frame per process (`--subprocesses`, `--all`).
    pub processes: bool,
}

/// Root-first frames of one stack, each with its identity (full file name, line and first
/// line; module and offset).
pub fn identity_frames(stack: &StackTrace) -> Vec<ProfileFrame> {
    identity_frames_with(stack, false)
}

/// `identity_frames`; with `hide_interpreter` (`--native` without `--native-all`), a stack
/// that has Python frames loses the interpreter's own native frames and its start-up path
/// (`native::interpreter_frames::hidden`).
pub fn identity_frames_with(stack: &StackTrace, hide_interpreter: bool) -> Vec<ProfileFrame> {
    #[cfg(target_os = "linux")]
    let hidden = hide_interpreter
        .then(|| interpreter_frames::hidden(&stack.frames))
        .flatten();
    // Native frames (`--native`) are Linux-only: nothing to hide elsewhere.
    #[cfg(not(target_os = "linux"))]
    let hidden: Option<Vec<bool>> = hide_interpreter.then_some(None).flatten();
    let mut out = Vec::with_capacity(stack.frames.len());
    for (i, frame) in stack.frames.iter().enumerate().rev() {
        if is_entry_shim(frame) || hidden.as_ref().is_some_and(|h| h[i]) {
            continue;
        }
        out.push(match frame {
            Frame::Python(f) => ProfileFrame {
                kind: FrameKind::Python,
                name: f.function.clone(),
                filename: Some(f.filename.clone()),
                line: Some(f.line),
                first_line: Some(f.first_line),
                address: None,
            },
            Frame::Native(f) => ProfileFrame {
                kind: FrameKind::Native,
                name: f.name.clone(),
                filename: (!f.module.is_empty()).then(|| f.module.clone()),
                line: None,
                first_line: None,
                address: f.offset,
            },
            Frame::Kernel(name) => ProfileFrame::new(FrameKind::Kernel, name.clone()),
            Frame::Truncated(reason) => ProfileFrame::new(
                FrameKind::Truncated,
                format!("<truncated: {}>", reason.as_str()),
            ),
            Frame::Unknown(reason) => ProfileFrame::new(
                FrameKind::Truncated,
                format!("<unknown frame: {}>", reason.as_str()),
            ),
            Frame::GilWait => ProfileFrame::new(FrameKind::Wait, GIL_WAIT),
        });
    }
    out
}

/// 3.12+'s eval-loop entry frame, caught while it was being pushed: its code object (the
/// interpreter's `interpreter_trampoline`, named `<interpreter trampoline>` in `<shim>`) is
/// set before its owner says it is a C-stack shim, so a read from outside can see it as a
/// Python frame (once in 601 samples of tests/churn.rs on 3.12.1). It is no frame of the
/// program.
fn is_entry_shim(frame: &Frame) -> bool {
    matches!(frame, Frame::Python(f) if f.filename == "<shim>" && f.function == "<interpreter trampoline>")
}

/// Who `stack` belongs to: its process (named `process_name`) and thread.
pub fn sample_labels(stack: &StackTrace, process_name: &str) -> SampleLabels {
    SampleLabels {
        pid: stack.pid,
        tid: stack.tid,
        thread_ident: stack.thread_ident,
        thread_name: stack.thread_name.clone(),
        process: process_name.to_string(),
        gil: stack.owns_gil,
    }
}

/// The profile as the user asked to see it: frames shortened to what is shown (and merged
/// where they then look alike), with a process and/or thread root frame made from each
/// sample's labels. The result has no labels and no timeline; its meta data is `profile`'s.
pub fn present(profile: &Profile, opts: FrameOptions) -> Profile {
    present_with(profile, opts, false)
}

/// `present`, keeping the samples' time order: the result's timeline holds each sample of
/// `profile`'s timeline, as its presented stack (for speedscope, which shows it).
pub fn present_timed(profile: &Profile, opts: FrameOptions) -> Profile {
    present_with(profile, opts, true)
}

fn present_with(profile: &Profile, opts: FrameOptions, timed: bool) -> Profile {
    let mut out = Profile::with_meta(profile.meta.clone());
    // (original stack id, original labels id) -> presented stack id.
    let mut presented: HashMap<(u32, u32), u32> = HashMap::new();
    let shown: Vec<u32> = profile
        .frames()
        .iter()
        .map(|f| out.intern_frame(&present_frame(f, opts)))
        .collect();
    let mut roots: HashMap<&SampleLabels, Vec<u32>> = HashMap::new();
    let mut ids = Vec::new();
    let none = SampleLabels::default();
    for e in profile.samples() {
        ids.clear();
        if opts.processes || opts.threads {
            let root = roots.entry(e.labels).or_insert_with(|| {
                root_frames(e.labels, opts, &profile.meta.processes)
                    .iter()
                    .map(|f| out.intern_frame(f))
                    .collect()
            });
            ids.extend_from_slice(root);
        }
        ids.extend(e.stack.iter().map(|&id| shown[id as usize]));
        out.add_interned(&ids, &none, None, e.counts);
        if timed {
            presented.insert((e.stack_id, e.labels_id), out.intern_stack(&ids));
        }
    }
    if timed {
        let none = out.intern_labels(&none);
        for t in profile.timeline() {
            if let Some(&stack) = presented.get(&(t.stack, t.labels)) {
                out.push_timeline(stack, none, t.offset_ns, t.weight);
            }
        }
        out.add_timeline_dropped(profile.timeline_dropped());
    }
    out
}

/// The process and thread root frames of a sample, as the options ask. A process of a
/// recorded tree (`--subprocesses`) sits under its ancestors, each shown as py-spy shows it,
/// `process PID:"COMMAND LINE"`; any other process is `NAME (PID)`.
pub fn root_frames(
    labels: &SampleLabels,
    opts: FrameOptions,
    tree: &BTreeMap<u32, ProcessNode>,
) -> Vec<ProfileFrame> {
    let mut out = Vec::with_capacity(2);
    if opts.processes {
        if tree.contains_key(&labels.pid) {
            out.extend(ancestry(tree, labels.pid).into_iter().map(|pid| {
                let command_line = tree.get(&pid).map_or("?", |n| n.command_line.as_str());
                ProfileFrame::new(
                    FrameKind::Process,
                    format!("process {pid}:\"{command_line}\""),
                )
            }));
        } else {
            let name = if labels.process.is_empty() {
                "?"
            } else {
                &labels.process
            };
            out.push(ProfileFrame::new(
                FrameKind::Process,
                format!("{name} ({})", labels.pid),
            ));
        }
    }
    if opts.threads {
        out.push(ProfileFrame::new(FrameKind::Thread, thread_label(labels)));
    }
    out
}

/// One frame as shown: Python frames with the file name and line the options ask for;
/// native frames without their offset.
pub fn present_frame(f: &ProfileFrame, opts: FrameOptions) -> ProfileFrame {
    match f.kind {
        FrameKind::Python => ProfileFrame {
            kind: FrameKind::Python,
            name: f.name.clone(),
            filename: f.filename.as_deref().map(|file| match opts.full_filenames {
                true => file.to_string(),
                false => shorten_filename(file).to_string(),
            }),
            line: if opts.no_line_numbers {
                None
            } else if opts.function_lines {
                f.first_line.or(f.line)
            } else {
                f.line
            },
            first_line: None,
            address: None,
        },
        _ => ProfileFrame {
            address: None,
            first_line: None,
            ..f.clone()
        },
    }
}

/// `thread "NAME" (TID)`, falling back to the pthread id when the OS tid is unknown.
pub fn thread_label(labels: &SampleLabels) -> String {
    let name = labels.thread_name.as_deref().unwrap_or("?");
    match labels.tid {
        Some(tid) => format!("thread \"{name}\" ({tid})"),
        None => format!("thread \"{name}\" ({:#x})", labels.thread_ident),
    }
}

/// Shorten a module path the way people read it: the part below `site-packages` /
/// `dist-packages` / the standard library directory, else the file's base name.
pub fn shorten_filename(path: &str) -> &str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(at) = path.rfind(marker) {
            return &path[at + marker.len()..];
        }
    }
    if let Some(at) = path.rfind("/lib/python") {
        // "/lib/python3.11/json/decoder.py" -> "json/decoder.py"
        if let Some(slash) = path[at + "/lib/python".len()..].find('/') {
            return &path[at + "/lib/python".len() + slash + 1..];
        }
    }
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_like_a_reader_would() {
        assert_eq!(
            shorten_filename("/usr/lib/python3.11/threading.py"),
            "threading.py"
        );
        assert_eq!(
            shorten_filename("/usr/lib/python3.11/json/decoder.py"),
            "json/decoder.py"
        );
        assert_eq!(
            shorten_filename("/v/lib/python3.9/site-packages/numpy/core/a.py"),
            "numpy/core/a.py"
        );
        assert_eq!(shorten_filename("/home/me/app/main.py"), "main.py");
        assert_eq!(shorten_filename("<string>"), "<string>");
    }

    /// Root-first `(frame names as shown, samples)` of every stack of `p`, sorted.
    fn shown(p: &Profile) -> Vec<(Vec<String>, u64)> {
        let show = |f: &ProfileFrame| match (&f.filename, f.line) {
            (Some(file), Some(line)) => format!("{} ({file}:{line})", f.name),
            (Some(file), None) => format!("{} ({file})", f.name),
            _ => f.name.clone(),
        };
        let mut out: Vec<(Vec<String>, u64)> = p
            .stacks()
            .map(|(stack, n)| {
                let names = stack
                    .iter()
                    .map(|&id| show(&p.frames()[id as usize]))
                    .collect();
                (names, n)
            })
            .collect();
        out.sort();
        out
    }

    fn frame(name: &str, line: u32, first_line: u32) -> ProfileFrame {
        ProfileFrame {
            first_line: Some(first_line),
            ..ProfileFrame::python(
                name,
                "/srv/app/lib/python3.11/site-packages/pkg/m.py",
                Some(line),
            )
        }
    }

    fn labels(pid: u32, tid: u32, name: &str) -> SampleLabels {
        SampleLabels {
            pid,
            tid: Some(tid),
            thread_ident: u64::from(tid) << 8,
            thread_name: Some(name.to_string()),
            process: "python3".to_string(),
            gil: None,
        }
    }

    /// Three samples of `work` at two lines, from two threads of pid 10 and one of pid 11 (a
    /// child of 10 in the recorded tree), with a native frame (offset kept) on top of one.
    fn recorded() -> Profile {
        let mut meta = crate::profile::ProfileMeta::cpu("t", 100);
        meta.start_unix_ns = 1_000;
        meta.processes.insert(
            10,
            ProcessNode {
                parent: None,
                command_line: "python3 app.py".into(),
            },
        );
        meta.processes.insert(
            11,
            ProcessNode {
                parent: Some(10),
                command_line: "python3 child.py".into(),
            },
        );
        let mut p = Profile::with_meta(meta);
        let main = frame("main", 3, 1);
        let native = ProfileFrame {
            address: Some(0x1234),
            filename: Some("libz.so.1".into()),
            ..ProfileFrame::new(FrameKind::Native, "deflate")
        };
        let at = |n: u64| Some(1_000 + n);
        p.add_sample(
            &[main.clone(), frame("work", 20, 18)],
            &labels(10, 100, "MainThread"),
            at(1),
            1,
            1,
        );
        p.add_sample(
            &[main.clone(), frame("work", 21, 18)],
            &labels(10, 101, "worker"),
            at(2),
            2,
            2,
        );
        p.add_sample(
            &[main, frame("work", 21, 18), native],
            &labels(11, 110, "MainThread"),
            at(3),
            1,
            1,
        );
        p
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn present_applies_each_option_when_written() {
        let p = recorded();
        // Default: lines as sampled, file names shortened, native offsets dropped; no roots,
        // and labels gone (both threads' line-21 samples are one stack).
        let plain = present(&p, FrameOptions::default());
        assert_eq!(
            shown(&plain),
            vec![
                (strings(&["main (pkg/m.py:3)", "work (pkg/m.py:20)"]), 1),
                (strings(&["main (pkg/m.py:3)", "work (pkg/m.py:21)"]), 2),
                (
                    strings(&[
                        "main (pkg/m.py:3)",
                        "work (pkg/m.py:21)",
                        "deflate (libz.so.1)"
                    ]),
                    1
                ),
            ]
        );
        assert!(plain
            .frames()
            .iter()
            .all(|f| f.address.is_none() && f.first_line.is_none()));
        assert!(plain.samples().iter().all(|e| e.labels.is_empty()));
        assert_eq!(plain.meta.start_unix_ns, 1_000);

        // --nolineno: the two lines of `work` merge.
        let opts = FrameOptions {
            no_line_numbers: true,
            ..Default::default()
        };
        assert_eq!(
            shown(&present(&p, opts)),
            vec![
                (strings(&["main (pkg/m.py)", "work (pkg/m.py)"]), 3),
                (
                    strings(&["main (pkg/m.py)", "work (pkg/m.py)", "deflate (libz.so.1)"]),
                    1
                ),
            ]
        );

        // -F: each function at its first line; merged the same way. --full-filenames.
        let opts = FrameOptions {
            function_lines: true,
            full_filenames: true,
            ..Default::default()
        };
        let file = "/srv/app/lib/python3.11/site-packages/pkg/m.py";
        assert_eq!(
            shown(&present(&p, opts))[0],
            (
                vec![format!("main ({file}:1)"), format!("work ({file}:18)")],
                3
            )
        );

        // -t: a root per thread, by name and tid.
        let opts = FrameOptions {
            threads: true,
            no_line_numbers: true,
            ..Default::default()
        };
        let roots: Vec<(String, u64)> = shown(&present(&p, opts))
            .into_iter()
            .map(|(names, n)| (names[0].clone(), n))
            .collect();
        assert_eq!(
            roots,
            vec![
                ("thread \"MainThread\" (100)".to_string(), 1),
                ("thread \"MainThread\" (110)".to_string(), 1),
                ("thread \"worker\" (101)".to_string(), 2),
            ]
        );

        // --subprocesses: the child under its parent, each by its command line; a process not
        // in the tree by name and pid.
        let opts = FrameOptions {
            processes: true,
            threads: true,
            no_line_numbers: true,
            ..Default::default()
        };
        let got = shown(&present(&p, opts));
        let child = got
            .iter()
            .find(|(names, _)| names.len() == 6)
            .expect("the child's stack");
        assert_eq!(
            child.0[..3],
            strings(&[
                "process 10:\"python3 app.py\"",
                "process 11:\"python3 child.py\"",
                "thread \"MainThread\" (110)"
            ])
        );
        let mut p = recorded();
        p.meta.processes.clear();
        let got = shown(&present(&p, opts));
        assert!(
            got.iter()
                .all(|(names, _)| names[0] == "python3 (10)" || names[0] == "python3 (11)"),
            "{got:?}"
        );
    }

    #[test]
    fn present_timed_keeps_each_sample_in_order_as_shown() {
        let p = recorded();
        let opts = FrameOptions {
            no_line_numbers: true,
            threads: true,
            ..Default::default()
        };
        let timed = present_timed(&p, opts);
        let offsets: Vec<u64> = timed.timeline().iter().map(|t| t.offset_ns).collect();
        assert_eq!(offsets, vec![1, 2, 3]);
        let first_frame = |t: &crate::profile::TimedSample| {
            timed.frames()[timed.stack(t.stack)[0] as usize]
                .name
                .clone()
        };
        let threads: Vec<String> = timed.timeline().iter().map(first_frame).collect();
        assert_eq!(
            threads,
            strings(&[
                "thread \"MainThread\" (100)",
                "thread \"worker\" (101)",
                "thread \"MainThread\" (110)"
            ])
        );
        assert_eq!(timed.total_samples(), p.total_samples());
        // Untimed: no timeline.
        assert!(present(&p, opts).timeline().is_empty());
    }
}
