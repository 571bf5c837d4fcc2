//! Thread names read from the target's `threading` module, under every provisioned
//! interpreter (static and shared) and the system python3: the main thread ("MainThread",
//! from `threading` itself, not hard-coded), a named thread whose attributes were turned into
//! a real `__dict__` (`vars(t)`), one with a non-ASCII name left in the compact form each
//! version uses (split dict, pre-header values, inline values), and a thread started with
//! `_thread` that `threading` does not know, which falls back to its OS name.

mod common;

use std::collections::HashMap;

use anyhow::{ensure, Context, Result};
use common::*;
use serde::Deserialize;

/// Runs on 2.7 and 3.x. Prints `ready {"name": native tid, ...}` once every thread runs.
const SCRIPT: &str = r#"# -*- coding: utf-8 -*-
import ctypes
import json
import sys
import threading
import time

try:
    import _thread as raw_thread
except ImportError:
    import thread as raw_thread

libc = ctypes.CDLL(None)


def native_id():
    if hasattr(threading, "get_native_id"):
        return threading.get_native_id()
    return libc.syscall(186)  # SYS_gettid on x86_64


ids = {}
lock = threading.Lock()


def park(name):
    with lock:
        ids[name] = native_id()
    while True:
        time.sleep(0.05)


def raw():
    # Not a threading.Thread: only the OS knows a name for it.
    libc.prctl(15, b"raw-comm", 0, 0, 0)  # PR_SET_NAME
    park("raw-comm")


second = b"\xe5\x90\x8d\xe5\x89\x8d-2"  # "名前-2" in UTF-8
if sys.version_info[0] >= 3:
    second = second.decode("utf-8")

for name in ["worker-1", second]:
    t = threading.Thread(target=park, args=(name,), name=name)
    t.daemon = True
    t.start()
    if name == "worker-1":
        vars(t)  # a real __dict__ for this one; the other keeps the compact layout
raw_thread.start_new_thread(raw, ())
while len(ids) < 3:
    time.sleep(0.01)
ids["MainThread"] = native_id()
sys.stdout.write("ready " + json.dumps(ids) + "\n")
sys.stdout.flush()
while True:
    time.sleep(0.05)
"#;

/// `dump --json`: py-spy's schema, an array of threads.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Dump {
    threads: Vec<Thread>,
}

#[derive(Debug, Deserialize)]
struct Thread {
    #[serde(rename = "os_thread_id")]
    tid: Option<u64>,
    #[serde(rename = "thread_name")]
    name: Option<String>,
}

fn check(interp: &Interpreter, dir: &TempDir) -> Result<()> {
    let script = dir.join(&format!("names-{}-{}.py", interp.series, interp.flavour));
    std::fs::write(&script, SCRIPT).context("write the script")?;
    let child = interp.start(&script, &[])?;
    let ids: HashMap<String, u64> =
        serde_json::from_str(&child.wait_ready()?).context("the script's thread ids")?;
    ensure!(
        ids.get("MainThread") == Some(&u64::from(child.pid())),
        "the main thread's tid {:?} is not the pid {}",
        ids.get("MainThread"),
        child.pid()
    );
    let out = pyspy(&["dump", "--pid", &child.pid().to_string(), "--json"])?.ok()?;
    let dump: Dump = serde_json::from_str(&out.stdout)
        .with_context(|| format!("dump --json output:\n{}", clip(&out.stdout, 3000)))?;
    let seen: Vec<String> = dump
        .threads
        .iter()
        .map(|t| format!("tid {:?}: {:?}", t.tid, t.name))
        .collect();
    let mut problems = Vec::new();
    for (name, tid) in &ids {
        let found: Vec<&Thread> = dump
            .threads
            .iter()
            .filter(|t| t.tid == Some(*tid))
            .collect();
        match found.as_slice() {
            [one] if one.name.as_deref() == Some(name.as_str()) => {}
            [one] => problems.push(format!(
                "tid {tid} is named {:?}, expected {name:?}",
                one.name
            )),
            _ => problems.push(format!("{} threads with tid {tid} ({name:?})", found.len())),
        }
    }
    ensure!(
        problems.is_empty(),
        "{}\nthreads in the dump:\n  {}",
        problems.join("\n"),
        seen.join("\n  ")
    );
    Ok(())
}

#[test]
fn thread_names_come_from_threading() {
    let dir = TempDir::new("thread-names");
    for_each_interpreter("thread_names_come_from_threading", |interp| {
        check(interp, &dir)
    });
}
