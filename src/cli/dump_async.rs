//! `pyspy-bpf dump --async`: every asyncio task of a 3.14+ process (and with `-s` its
//! children), with its name, thread, coroutine chain (leaf first, as thread stacks are
//! printed) and the tasks that await it, each with its own chain; as text or JSON.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Context;

use super::dump::{bare_frame_json, frame_text, print_stdout};
use super::DumpArgs;
use crate::escape::printable;
use crate::model::Addr;
use crate::process::proc;
use crate::python::asyncio::AsyncTask;

struct ProcessTasks {
    pid: u32,
    version: String,
    executable: String,
    cmdline: Vec<String>,
    tasks: Vec<AsyncTask>,
}

pub fn run(args: &DumpArgs) -> anyhow::Result<i32> {
    let mut pids = vec![args.pid];
    if args.subprocesses {
        pids.extend(proc::descendants(args.pid));
    }
    let mut dumps = Vec::new();
    for (i, &pid) in pids.iter().enumerate() {
        let read = super::dump::attach(pid, i == 0).and_then(|mut p| {
            let tasks = p
                .async_tasks()
                .with_context(|| format!("asyncio tasks of process {pid}"))?;
            Ok((p, tasks))
        });
        let (process, tasks) = match read {
            Ok(read) => read,
            // The root must have tasks to show; children that cannot are skipped.
            Err(e) if i > 0 => {
                log::debug!("subprocess {pid}: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        dumps.push(ProcessTasks {
            pid,
            version: process.version().to_string(),
            executable: process.executable.display().to_string(),
            cmdline: process.cmdline.clone(),
            tasks,
        });
    }
    let text = if args.json {
        serde_json::to_string_pretty(&json(&dumps))? + "\n"
    } else {
        dumps
            .iter()
            .map(|d| render_text(d, args.full_filenames))
            .collect()
    };
    print_stdout(&text)?;
    Ok(0)
}

/// `[{pid, python_version, executable, command_line, tasks: [{id, name, thread_id,
/// running, coroutine_stack: [frame], awaited_by: [{id, name, is_task}]}]}]`, frames in
/// `dump --json`'s frame schema, leaf first; `id` is the task object's address.
fn json(dumps: &[ProcessTasks]) -> serde_json::Value {
    let processes = dumps.iter().map(|d| {
        let names: HashMap<Addr, &str> = d.tasks.iter().map(|t| (t.addr, &*t.name)).collect();
        let tasks: Vec<serde_json::Value> = d
            .tasks
            .iter()
            .map(|t| {
                serde_json::json!({
                    "id": t.addr,
                    "name": t.name,
                    "thread_id": t.tid,
                    "running": t.running,
                    "coroutine_stack": t.coroutine.iter().map(bare_frame_json).collect::<Vec<_>>(),
                    "awaited_by": t.awaited_by.iter().map(|a| serde_json::json!({
                        "id": a.addr,
                        "name": names.get(&a.addr),
                        "is_task": a.is_task,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "pid": d.pid,
            "python_version": d.version,
            "executable": d.executable,
            "command_line": d.cmdline.join(" "),
            "tasks": tasks,
        })
    });
    serde_json::Value::Array(processes.collect())
}

/// The text form: a block per task, its chain indented, then each awaiter with its chain.
/// Names from the target are escaped (`printable`).
fn render_text(d: &ProcessTasks, full_filenames: bool) -> String {
    let mut out = String::new();
    super::dump::write_header(&mut out, d.pid, &d.cmdline, &d.version, &d.executable);
    if d.tasks.is_empty() {
        let _ = writeln!(out, "\nNo asyncio tasks.");
    }
    let by_addr: HashMap<Addr, &AsyncTask> = d.tasks.iter().map(|t| (t.addr, t)).collect();
    for t in &d.tasks {
        let thread = match t.tid {
            Some(tid) => format!("thread {tid}"),
            None => "no thread".to_string(),
        };
        let running = if t.running { ", running" } else { "" };
        let _ = writeln!(
            out,
            "\nTask {:#x} \"{}\" ({thread}{running})",
            t.addr,
            printable(&t.name)
        );
        for f in &t.coroutine {
            let _ = writeln!(out, "    {}", frame_text(f, full_filenames));
        }
        for a in &t.awaited_by {
            match by_addr.get(&a.addr) {
                Some(awaiter) => {
                    let _ = writeln!(
                        out,
                        "  awaited by task {:#x} \"{}\"",
                        a.addr,
                        printable(&awaiter.name)
                    );
                    for f in &awaiter.coroutine {
                        let _ = writeln!(out, "    {}", frame_text(f, full_filenames));
                    }
                }
                None if a.is_task => {
                    let _ = writeln!(
                        out,
                        "  awaited by task {:#x} (not in any task list)",
                        a.addr
                    );
                }
                None => {
                    let _ = writeln!(out, "  awaited by future {:#x}", a.addr);
                }
            }
        }
    }
    out
}
