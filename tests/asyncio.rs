//! `dump --async` and `record --async` against real interpreters: on every 3.14+
//! interpreter, three named tasks awaiting each other (tests/scripts/async_tasks.py) show
//! their names, coroutine chains (functions, files, exact lines) and awaited-by links, and
//! agree with what the interpreter's own `python -m asyncio pstree PID` prints for the same
//! process; `record --async` puts each task's chain under the tasks awaiting it. Older
//! versions refuse `--async` in one line with a non-zero exit.

mod common;

use std::collections::HashMap;

use anyhow::{bail, ensure, Context, Result};
use common::*;
use serde::Deserialize;

const SCRIPT: &str = "async_tasks.py";

#[derive(Debug, Deserialize)]
struct ProcessJson {
    pid: u32,
    python_version: String,
    tasks: Vec<TaskJson>,
}

#[derive(Debug, Deserialize)]
struct TaskJson {
    id: u64,
    name: String,
    thread_id: Option<u32>,
    coroutine_stack: Vec<FrameJson>,
    awaited_by: Vec<AwaiterJson>,
}

#[derive(Debug, Deserialize)]
struct FrameJson {
    name: String,
    filename: String,
    line: i64,
    kind: String,
}

#[derive(Debug, Deserialize)]
struct AwaiterJson {
    id: u64,
    name: Option<String>,
    is_task: bool,
}

impl FrameJson {
    fn label(&self) -> String {
        format!("{} {}:{}", self.name, self.filename, self.line)
    }
}

fn is_async_series(interp: &Interpreter) -> bool {
    !interp.is_py2() && interp.major_minor() >= (3, 14)
}

#[test]
fn dump_async_shows_three_tasks_awaiting_each_other() {
    for_each_interpreter(
        "dump_async_shows_three_tasks_awaiting_each_other",
        |interp| {
            if !is_async_series(interp) {
                return Ok(());
            }
            let running = interp.start(SCRIPT, &[])?;
            running.wait_ready()?;
            let pid = running.pid();
            let out = pyspy(&["dump", "--pid", &pid.to_string(), "--async", "--json"])?.ok()?;
            let processes: Vec<ProcessJson> = serde_json::from_str(&out.stdout)
                .with_context(|| format!("parse dump --async --json:\n{}", out.stdout))?;
            ensure!(
                processes.len() == 1,
                "one process expected:\n{}",
                out.stdout
            );
            let p = &processes[0];
            ensure!(p.pid == pid, "pid {} != {pid}", p.pid);
            ensure!(
                p.python_version == interp.version,
                "version {} != {}",
                p.python_version,
                interp.version
            );
            check_tasks(p, pid).with_context(|| format!("dump --async --json:\n{}", out.stdout))?;

            // The text form names the same tasks and frames.
            let text = pyspy(&["dump", "--pid", &pid.to_string(), "--async"])?.ok()?;
            for needle in [
                "\"inner\" (thread",
                "  awaited by task",
                &format!(
                    "inner_work (async_tasks.py:{})",
                    line_of(SCRIPT, "inner_work")
                ),
            ] {
                ensure!(
                    text.stdout.contains(needle),
                    "no {needle:?} in:\n{}",
                    text.stdout
                );
            }

            compare_with_pstree(interp, pid, p)
        },
    );
}

/// The chains and links the script sets up, exactly.
fn check_tasks(p: &ProcessJson, pid: u32) -> Result<()> {
    let by_name: HashMap<&str, &TaskJson> = p.tasks.iter().map(|t| (&*t.name, t)).collect();
    let mut names: Vec<&str> = by_name.keys().copied().collect();
    names.sort_unstable();
    ensure!(
        names == ["Task-1", "inner", "middle", "outer"],
        "task names: {names:?}"
    );
    let script_frame = |f: &FrameJson, function: &str, tag: &str| {
        f.kind == "python"
            && f.name == function
            && f.filename.ends_with(&format!("/{SCRIPT}"))
            && f.line == line_of(SCRIPT, tag) as i64
    };
    // Leaf first, as thread stacks.
    let expected: [(&str, &[(&str, &str)]); 4] = [
        ("Task-1", &[("main", "main")]),
        ("outer", &[("outer_work", "outer_work")]),
        ("middle", &[("middle_work", "middle_work")]),
        (
            "inner",
            &[("inner_leaf", "inner_leaf"), ("inner_work", "inner_work")],
        ),
    ];
    for (name, frames) in expected {
        let t = by_name[name];
        ensure!(t.thread_id == Some(pid), "{name}: thread {:?}", t.thread_id);
        let mut stack: Vec<&FrameJson> = t.coroutine_stack.iter().collect();
        if name == "inner" {
            // `asyncio.sleep` is itself a coroutine: the leaf, in asyncio's own file.
            let sleep = stack.first().context("inner: empty chain")?;
            ensure!(
                sleep.name == "sleep" && sleep.filename.ends_with("/asyncio/tasks.py"),
                "inner's leaf is {}",
                sleep.label()
            );
            stack.remove(0);
        }
        let labels: Vec<String> = stack.iter().map(|f| f.label()).collect();
        ensure!(
            stack.len() == frames.len()
                && stack
                    .iter()
                    .zip(frames)
                    .all(|(f, (function, tag))| script_frame(f, function, tag)),
            "{name}: chain {labels:?}, expected {frames:?}"
        );
    }
    for (task, awaiter) in [
        ("outer", "Task-1"),
        ("middle", "outer"),
        ("inner", "middle"),
    ] {
        let links = &by_name[task].awaited_by;
        ensure!(
            links.len() == 1
                && links[0].id == by_name[awaiter].id
                && links[0].is_task
                && links[0].name.as_deref() == Some(awaiter),
            "{task} should be awaited by {awaiter} only: {links:?}"
        );
    }
    ensure!(
        by_name["Task-1"].awaited_by.is_empty(),
        "Task-1 is awaited by nobody"
    );
    Ok(())
}

/// `python -m asyncio pstree PID` as a tree of (depth, line): each `(T) NAME` line hangs
/// under the frame of the task awaiting it. Checks that every task and frame we show is
/// there, and under the same awaiter and frame.
fn compare_with_pstree(interp: &Interpreter, pid: u32, p: &ProcessJson) -> Result<()> {
    let out = run(
        std::process::Command::new(&interp.path).args([
            "-I",
            "-m",
            "asyncio",
            "pstree",
            &pid.to_string(),
        ]),
        RUN_TIMEOUT,
    )?;
    if !out.status.success() {
        eprintln!(
            "{}: `asyncio pstree` failed here, not compared: {}",
            interp.label(),
            clip(&out.stderr, 500)
        );
        return Ok(());
    }
    // "│   └── (T) outer" / "└──  outer_work /path/file.py:23": depth from the prefix.
    let lines: Vec<(usize, String)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let at = l.find("── ")?;
            let depth = l[..at].chars().count() / 4;
            Some((depth, l[at + "── ".len()..].trim().to_string()))
        })
        .collect();
    let parent = |i: usize| (0..i).rev().find(|&j| lines[j].0 < lines[i].0);
    let by_id: HashMap<u64, &TaskJson> = p.tasks.iter().map(|t| (t.id, t)).collect();
    for t in &p.tasks {
        let Some(at) = lines
            .iter()
            .position(|(_, l)| *l == format!("(T) {}", t.name))
        else {
            bail!("pstree has no task {}:\n{}", t.name, out.stdout);
        };
        // Its chain follows it, outermost first.
        let mut chain = Vec::new();
        let mut i = at;
        while let Some((_, line)) = lines.get(i + 1).filter(|(d, _)| *d == lines[i].0 + 1) {
            if line.starts_with("(T) ") {
                break;
            }
            chain.push(line.clone());
            i += 1;
        }
        let ours: Vec<String> = t.coroutine_stack.iter().rev().map(|f| f.label()).collect();
        ensure!(
            chain == ours,
            "task {}: pstree chain {chain:?}, ours {ours:?}\n{}",
            t.name,
            out.stdout
        );
        // Its awaiter: the frame it hangs under, and the task above that frame.
        match t.awaited_by.first() {
            None => ensure!(parent(at).is_none(), "{} is a root in our view", t.name),
            Some(a) => {
                let awaiter = by_id.get(&a.id).context("awaiter not among the tasks")?;
                let frame = parent(at).context("pstree shows no awaiter")?;
                let task_line = parent(frame).context("pstree shows no awaiting task")?;
                let leaf = awaiter.coroutine_stack.first().context("awaiter chain")?;
                ensure!(
                    lines[task_line].1 == format!("(T) {}", awaiter.name)
                        && lines[frame].1 == leaf.label(),
                    "task {} hangs under {:?} / {:?} in pstree; ours: {} at {}",
                    t.name,
                    lines[task_line].1,
                    lines[frame].1,
                    awaiter.name,
                    leaf.label()
                );
            }
        }
    }
    Ok(())
}

#[test]
fn record_async_puts_each_task_under_its_awaiters() {
    for_each_interpreter("record_async_puts_each_task_under_its_awaiters", |interp| {
        if !is_async_series(interp) {
            return Ok(());
        }
        let running = interp.start(SCRIPT, &[])?;
        running.wait_ready()?;
        let dir = TempDir::new("record-async");
        let out = dir.join("tasks.txt");
        let pid = running.pid().to_string();
        let run = pyspy(&[
            "record",
            "--async",
            "--pid",
            &pid,
            "-d",
            "1",
            "-r",
            "50",
            "-f",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ])?
        .ok()?;
        let stacks = read_raw(&out)?;
        let line = |tag| line_of(SCRIPT, tag);
        let expected = vec![
            "<task Task-1>".to_string(),
            format!("main ({SCRIPT}:{})", line("main")),
            "<task outer>".to_string(),
            format!("outer_work ({SCRIPT}:{})", line("outer_work")),
            "<task middle>".to_string(),
            format!("middle_work ({SCRIPT}:{})", line("middle_work")),
            "<task inner>".to_string(),
            format!("inner_work ({SCRIPT}:{})", line("inner_work")),
            format!("inner_leaf ({SCRIPT}:{})", line("inner_leaf")),
        ];
        // One stack (the one task that awaits no task), its leaf asyncio's `sleep`.
        ensure!(
            stacks.len() == 1
                && stacks[0].frames.len() == expected.len() + 1
                && stacks[0].frames[..expected.len()] == expected[..]
                && stacks[0]
                    .leaf()
                    .is_some_and(|l| l.starts_with("sleep (asyncio/tasks.py:")),
            "expected {expected:?} + sleep, got:\n{}\n{}",
            summary(&stacks),
            run.describe()
        );
        // Every read of the second sees the tasks (50 Hz: about 50 reads).
        ensure!(
            stacks[0].count >= 20,
            "only {} samples:\n{}",
            stacks[0].count,
            run.describe()
        );

        // BPF cannot read tasks: asked for, it says so.
        let bpf = pyspy(&[
            "record", "--async", "--mode", "bpf", "--pid", &pid, "-d", "1",
        ])?;
        ensure!(
            !bpf.status.success()
                && bpf
                    .stderr
                    .contains("--async is only available in user-space mode"),
            "record --async --mode bpf:\n{}",
            bpf.describe()
        );
        Ok(())
    });
}

#[test]
fn dump_async_refuses_versions_without_asyncio_offsets() {
    for_each_interpreter(
        "dump_async_refuses_versions_without_asyncio_offsets",
        |interp| {
            if is_async_series(interp) {
                return Ok(());
            }
            let running = interp.start("sleeper.py", &[])?;
            running.wait_ready()?;
            let out = pyspy(&["dump", "--pid", &running.pid().to_string(), "--async"])?;
            ensure!(
                !out.status.success(),
                "dump --async succeeded on {}:\n{}",
                interp.version,
                out.describe()
            );
            let errors: Vec<&str> = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            ensure!(
                errors.len() == 1 && errors[0].contains("need Python 3.14 or newer"),
                "expected one line saying 3.14+ is needed:\n{}",
                out.describe()
            );
            ensure!(out.stdout.is_empty(), "printed:\n{}", out.stdout);

            let dir = TempDir::new("record-async-old");
            let file = dir.join("never.txt");
            let pid = running.pid().to_string();
            let record = pyspy(&[
                "record",
                "--async",
                "--pid",
                &pid,
                "-d",
                "1",
                "-f",
                "raw",
                "-o",
                file.to_str().unwrap(),
            ])?;
            ensure!(
                !record.status.success()
                    && record
                        .error_line()
                        .is_some_and(|l| l.contains("need Python 3.14 or newer")),
                "record --async on {}:\n{}",
                interp.version,
                record.describe()
            );
            Ok(())
        },
    );
}

#[test]
fn dump_async_reads_a_task_awaited_by_two() {
    for_each_interpreter("dump_async_reads_a_task_awaited_by_two", |interp| {
        if !is_async_series(interp) {
            return Ok(());
        }
        let running = interp.start("async_shared.py", &[])?;
        running.wait_ready()?;
        let pid = running.pid().to_string();
        let out = pyspy(&["dump", "--pid", &pid, "--async", "--json"])?.ok()?;
        let processes: Vec<ProcessJson> = serde_json::from_str(&out.stdout)
            .with_context(|| format!("parse dump --async --json:\n{}", out.stdout))?;
        let tasks = &processes.first().context("no process")?.tasks;
        let id = |name: &str| tasks.iter().find(|t| t.name == name).map(|t| t.id);
        let shared = tasks
            .iter()
            .find(|t| t.name == "shared")
            .with_context(|| format!("no task \"shared\":\n{}", out.stdout))?;
        let mut awaiters: Vec<Option<u64>> = shared.awaited_by.iter().map(|a| Some(a.id)).collect();
        awaiters.sort_unstable();
        let mut expected = vec![id("waiter-a"), id("waiter-b")];
        expected.sort_unstable();
        ensure!(
            expected.iter().all(Option::is_some) && awaiters == expected,
            "\"shared\" should be awaited by waiter-a and waiter-b (a set):\n{}",
            out.stdout
        );
        ensure!(
            shared
                .coroutine_stack
                .iter()
                .map(|f| &*f.name)
                .collect::<Vec<_>>()
                == ["sleep", "shared_work"],
            "shared's chain:\n{}",
            out.stdout
        );
        Ok(())
    });
}
