//! `pyspy-bpf record` against real interpreters: every provisioned version and flavour plus
//! the system python3. Checks the raw (collapsed) stacks root first, with exact lines, the
//! thread and process roots, the line/file options, idle and GIL filtering, and that the
//! flamegraph and speedscope outputs name the functions.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::*;

/// These tests pin the user-space sampler: it samples by wall-clock timer and sees idle
/// threads, so its counts do not depend on how loaded the machine is. The BPF sampler (the
/// default where it can run) has its own tests in tests/bpf_record.rs.
const MODE: &str = "userspace";
/// How long each recording of a running pid lasts (`-d`).
const SECONDS: &str = "2";
/// A recording must hold at least this many samples of a busy thread to be judged.
const MIN_SAMPLES: u64 = 10;

/// busy.py's stack, root first, as `record` shows it by default (base file name, line).
fn busy_stack() -> Vec<String> {
    vec![
        format!("<module> (busy.py:{})", line_of("busy.py", "call_main")),
        format!("main (busy.py:{})", line_of("busy.py", "call_a")),
        format!("level_a (busy.py:{})", line_of("busy.py", "call_b")),
        format!("level_b (busy.py:{})", line_of("busy.py", "busy")),
    ]
}

/// `record -f raw -o FILE ARGS...`, which must succeed; returns the parsed stacks.
fn record_raw(dir: &TempDir, name: &str, args: &[&str]) -> Result<Vec<RawStack>> {
    let out = dir.join(name);
    let out_str = out.display().to_string();
    let mut argv = vec!["record", "--mode", MODE, "-f", "raw", "-o", &out_str];
    argv.extend_from_slice(args);
    let outcome = pyspy(&argv)?.ok()?;
    let stacks = read_raw(&out).with_context(|| outcome.describe())?;
    Ok(stacks)
}

/// `record ARGS --pid PID -d SECONDS` into a raw profile.
fn record_pid(dir: &TempDir, name: &str, pid: u32, args: &[&str]) -> Result<Vec<RawStack>> {
    let pid = pid.to_string();
    let mut argv: Vec<&str> = args.to_vec();
    argv.extend_from_slice(&["-d", SECONDS, "--pid", &pid]);
    record_raw(dir, name, &argv)
}

/// The heaviest stack must be exactly `expected` (root first), with enough samples.
fn expect_heaviest(stacks: &[RawStack], expected: &[String], what: &str) -> Result<()> {
    ensure!(
        total(stacks) >= MIN_SAMPLES,
        "{what}: only {} samples:\n{}",
        total(stacks),
        summary(stacks)
    );
    let top = heaviest(stacks)
        .map(|s| s.frames.clone())
        .unwrap_or_default();
    ensure!(
        top == expected,
        "{what}: heaviest stack is\n  {}\nexpected\n  {}\n{}",
        top.join(";"),
        expected.join(";"),
        summary(stacks)
    );
    Ok(())
}

/// Runs each closure on its own thread and joins the errors of all of them.
fn all_of(checks: Vec<Box<dyn FnOnce() -> Result<()> + Send + '_>>) -> Result<()> {
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = checks.into_iter().map(|c| s.spawn(c)).collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(_) => Some("check panicked".to_string()),
            })
            .collect()
    });
    ensure!(errors.is_empty(), "{}", errors.join("\n"));
    Ok(())
}

#[test]
fn record_pid_raw() {
    for_each_interpreter("record_pid_raw", |interp| {
        let dir = TempDir::new("record");
        let child = interp.start("busy.py", &[])?;
        child.wait_ready()?;
        let stacks = record_pid(&dir, "busy.txt", child.pid(), &[])?;
        expect_heaviest(&stacks, &busy_stack(), "record --pid")?;
        let leaf = busy_stack().pop().unwrap_or_default();
        let in_loop: u64 = stacks
            .iter()
            .filter(|s| s.leaf() == Some(leaf.as_str()))
            .map(|s| s.count)
            .sum();
        ensure!(
            in_loop * 10 >= total(&stacks) * 9,
            "only {in_loop} samples end in `{leaf}`:\n{}",
            summary(&stacks)
        );
        Ok(())
    });
}

#[test]
fn record_command() {
    let busy = scripts_dir().join("busy.py");
    for_each_interpreter("record_command", |interp| {
        let dir = TempDir::new("command");
        all_of(vec![
            // Runs ~1.5 s and exits by itself: record until it exits, then exit 0.
            Box::new(|| {
                let argv = interp.argv(&busy, &["1.5"]);
                let mut args = vec!["--"];
                args.extend(argv.iter().map(String::as_str));
                let stacks = record_raw(&dir, "until-exit.txt", &args)?;
                expect_heaviest(&stacks, &busy_stack(), "record -- python busy.py 1.5")
            }),
            // Runs forever: -d 1 elapses, the program is stopped, exit 0.
            Box::new(|| {
                let pidfile = dir.join("busy.pid");
                let pidfile_str = pidfile.display().to_string();
                let argv = interp.argv(&busy, &["forever", &pidfile_str]);
                let mut args = vec!["-d", "1", "--"];
                args.extend(argv.iter().map(String::as_str));
                let stacks = record_raw(&dir, "duration.txt", &args);
                let stopped = check_stopped(&pidfile);
                let stacks = stacks?;
                stopped?;
                let leaf = busy_stack().pop().unwrap_or_default();
                ensure!(
                    stacks.iter().any(|s| s.leaf() == Some(leaf.as_str())),
                    "record -d 1 -- python busy.py: no stack ends in `{leaf}`:\n{}",
                    summary(&stacks)
                );
                Ok(())
            }),
        ])
    });
}

/// The program started by `record -d 1 -- ...` must be gone once `record` returned.
fn check_stopped(pidfile: &Path) -> Result<()> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("{} was not written", pidfile.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file says {text:?}"))?;
    for _ in 0..50 {
        match proc_state(pid) {
            None | Some('Z') | Some('X') => return Ok(()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    kill_pid(pid);
    bail!("the recorded program (pid {pid}) still runs 5 s after `record -d 1 -- ...` returned")
}

#[test]
fn record_thread_roots() {
    for_each_interpreter("record_thread_roots", |interp| {
        let dir = TempDir::new("threads");
        let busy = interp.start("busy.py", &[])?;
        let threads = interp.start("threads.py", &[])?;
        busy.wait_ready()?;
        let ids: std::collections::HashMap<String, Vec<u64>> =
            serde_json::from_str(&threads.wait_ready()?)?;
        let (busy_pid, threads_pid) = (busy.pid(), threads.pid());
        all_of(vec![
            Box::new(|| {
                let stacks = record_pid(&dir, "busy.txt", busy_pid, &["-t"])?;
                // busy.py never imports threading: its main thread has only its OS name
                // (unless the interpreter's site imported threading already).
                let name = match interp.imports_threading_at_startup() {
                    true => "MainThread".to_string(),
                    false => comm(busy_pid).unwrap_or_default(),
                };
                let mut expected = vec![format!("thread \"{name}\" ({busy_pid})")];
                expected.extend(busy_stack());
                expect_heaviest(&stacks, &expected, "record -t (busy.py)")
            }),
            Box::new(|| {
                let stacks = record_pid(&dir, "threads.txt", threads_pid, &["-t"])?;
                let root = format!("thread \"worker-1\" ({})", ids["worker-1"][0]);
                let leaf = format!("spin (threads.py:{})", line_of("threads.py", "spin"));
                let top = heaviest(&stacks)
                    .map(|s| s.frames.clone())
                    .unwrap_or_default();
                ensure!(
                    top.first() == Some(&root) && top.last() == Some(&leaf),
                    "record -t (threads.py): heaviest stack should go from `{root}` to `{leaf}`:\n{}",
                    summary(&stacks)
                );
                // The other threads sleep: by default (no --idle) they are not recorded.
                for s in &stacks {
                    let r = s.root().unwrap_or("");
                    ensure!(
                        r.starts_with("thread \""),
                        "stack without a thread root: {}",
                        s.frames.join(";")
                    );
                    ensure!(
                        r == root,
                        "record -t without --idle recorded an idle thread:\n  {} {}\n{}",
                        s.frames.join(";"),
                        s.count,
                        summary(&stacks)
                    );
                }
                Ok(())
            }),
        ])
    });
}

#[test]
fn record_idle_and_gil() {
    for_each_interpreter("record_idle_and_gil", |interp| {
        let dir = TempDir::new("idle");
        let threads = interp.start("threads.py", &[])?;
        let gil = interp.start("gil.py", &[])?;
        let ids: std::collections::HashMap<String, Vec<u64>> =
            serde_json::from_str(&threads.wait_ready()?)?;
        gil.wait_ready()?;
        let (threads_pid, gil_pid) = (threads.pid(), gil.pid());
        let spin = format!("spin_gil (gil.py:{})", line_of("gil.py", "spin"));
        let compress = format!("compress_loop (gil.py:{})", line_of("gil.py", "compress"));
        let count = |stacks: &[RawStack], leaf: &str| -> u64 {
            stacks
                .iter()
                .filter(|s| s.leaf() == Some(leaf))
                .map(|s| s.count)
                .sum()
        };
        all_of(vec![
            // --idle: the sleeping threads are recorded too, each in its own function.
            Box::new(|| {
                let stacks = record_pid(&dir, "idle.txt", threads_pid, &["-t", "--idle"])?;
                for (name, function, tag) in [
                    ("MainThread", "main_idle", "main_idle"),
                    ("worker-1", "spin", "spin"),
                    ("worker-2", "nap", "nap"),
                    ("worker-3", "blocked", "blocked"),
                ] {
                    let root = format!("thread \"{name}\" ({})", ids[name][0]);
                    let leaf = format!("{function} (threads.py:{})", line_of("threads.py", tag));
                    ensure!(
                        stacks
                            .iter()
                            .any(|s| s.root() == Some(root.as_str())
                                && s.leaf() == Some(leaf.as_str())),
                        "record -t --idle: no stack from `{root}` to `{leaf}`:\n{}",
                        summary(&stacks)
                    );
                }
                Ok(())
            }),
            // Default: both busy threads are recorded, the one compressing without the GIL too.
            Box::new(|| {
                let stacks = record_pid(&dir, "nogil.txt", gil_pid, &[])?;
                let (s, c) = (count(&stacks, &spin), count(&stacks, &compress));
                ensure!(
                    s >= MIN_SAMPLES && c >= MIN_SAMPLES,
                    "record (gil.py): {s} samples in `{spin}`, {c} in `{compress}`; expected both busy:\n{}",
                    summary(&stacks)
                );
                Ok(())
            }),
            // --gil: only the thread holding the GIL, so the compressing thread (almost) never.
            Box::new(|| {
                let stacks = record_pid(&dir, "gil.txt", gil_pid, &["--gil"])?;
                let (s, c) = (count(&stacks, &spin), count(&stacks, &compress));
                ensure!(
                    s >= MIN_SAMPLES && c <= (s / 10).max(2),
                    "record --gil (gil.py): {s} samples in `{spin}`, {c} in `{compress}`; expected only the \
                     spinning thread:\n{}",
                    summary(&stacks)
                );
                Ok(())
            }),
        ])
    });
}

#[test]
fn record_line_options() {
    let full = scripts_dir().join("busy.py").display().to_string();
    for_each_interpreter("record_line_options", |interp| {
        let dir = TempDir::new("lines");
        let child = interp.start("busy.py", &[])?;
        child.wait_ready()?;
        let pid = child.pid();
        let dir = &dir;
        let names = ["<module>", "main", "level_a", "level_b"];
        let calls = busy_stack();
        let calls: Vec<u32> = calls
            .iter()
            .map(|f| {
                f.rsplit_once(':')
                    .and_then(|(_, l)| l.trim_end_matches(')').parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        let firsts = [
            interp.module_first_line("busy.py")?,
            def_line("busy.py", "main"),
            def_line("busy.py", "level_a"),
            def_line("busy.py", "level_b"),
        ];
        let full = &full;
        all_of(vec![
            Box::new(move || {
                let stacks = record_pid(&dir, "nolineno.txt", pid, &["--nolineno"])?;
                let expected: Vec<String> =
                    names.iter().map(|n| format!("{n} (busy.py)")).collect();
                expect_heaviest(&stacks, &expected, "record --nolineno")
            }),
            Box::new(move || {
                let stacks = record_pid(&dir, "function.txt", pid, &["-F"])?;
                let expected: Vec<String> = names
                    .iter()
                    .zip(firsts)
                    .map(|(n, l)| format!("{n} (busy.py:{l})"))
                    .collect();
                expect_heaviest(&stacks, &expected, "record -F")
            }),
            Box::new(move || {
                let stacks = record_pid(&dir, "full.txt", pid, &["--full-filenames"])?;
                let expected: Vec<String> = names
                    .iter()
                    .zip(&calls)
                    .map(|(n, l)| format!("{n} ({full}:{l})"))
                    .collect();
                expect_heaviest(&stacks, &expected, "record --full-filenames")
            }),
        ])
    });
}

#[test]
fn record_flamegraph_and_speedscope() {
    for_each_interpreter("record_flamegraph_and_speedscope", |interp| {
        let dir = TempDir::new("formats");
        let child = interp.start("busy.py", &[])?;
        child.wait_ready()?;
        let pid = child.pid().to_string();
        let svg = dir.join("busy.svg");
        let json = dir.join("busy.json");
        let record = |format: &str, out: &Path| -> Result<String> {
            let out_str = out.display().to_string();
            let outcome = pyspy(&[
                "record", "--mode", MODE, "-f", format, "-o", &out_str, "-d", SECONDS, "--pid",
                &pid,
            ])?
            .ok()?;
            std::fs::read_to_string(out)
                .with_context(|| format!("read {}\n{}", out.display(), outcome.describe()))
        };
        all_of(vec![
            Box::new(|| {
                let text = record("flamegraph", &svg)?;
                ensure!(
                    text.contains("<svg"),
                    "flamegraph output is not SVG:\n{}",
                    clip(&text, 2000)
                );
                for f in ["level_b", "level_a", "main"] {
                    ensure!(
                        text.contains(f),
                        "flamegraph does not mention {f}:\n{}",
                        clip(&text, 2000)
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                let text = record("speedscope", &json)?;
                let v: serde_json::Value = serde_json::from_str(&text).with_context(|| {
                    format!("speedscope output is not JSON:\n{}", clip(&text, 2000))
                })?;
                let frames = v["shared"]["frames"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let names: Vec<&str> = frames.iter().filter_map(|f| f["name"].as_str()).collect();
                for f in ["level_b", "level_a", "main"] {
                    ensure!(
                        names.iter().any(|n| n.starts_with(f)),
                        "speedscope shared.frames has no {f}: {names:?}\n{}",
                        clip(&text, 2000)
                    );
                }
                let profiles = v["profiles"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                ensure!(
                    !profiles.is_empty(),
                    "speedscope output has no profiles:\n{}",
                    clip(&text, 2000)
                );
                Ok(())
            }),
        ])
    });
}

/// Kills a process the test did not spawn itself (the grandchild) when dropped.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_pid(self.0);
    }
}

#[test]
fn record_subprocesses() {
    for_each_interpreter("record_subprocesses", |interp| {
        let dir = TempDir::new("subprocesses");
        let parent = interp.start("spawner.py", &[])?;
        let child_pid: u32 = parent
            .wait_ready()?
            .parse()
            .context("spawner.py ready line")?;
        let _child = KillOnDrop(child_pid);
        // As py-spy shows them: the child under its parent, each with its command line.
        let process_frame = |pid: u32| -> Result<String> {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
                .with_context(|| format!("process {pid} is gone"))?;
            let args: Vec<String> = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Ok(format!("process {pid}:\"{}\"", args.join(" ")))
        };
        let mut expected = vec![process_frame(parent.pid())?, process_frame(child_pid)?];
        expected.extend(busy_stack());
        let stacks = record_pid(&dir, "subprocesses.txt", parent.pid(), &["-s"])?;
        expect_heaviest(&stacks, &expected, "record -s (spawner.py -> busy.py)")
    });
}
