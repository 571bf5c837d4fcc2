//! Snapshot tests: attaching to a real interpreter and reading its stacks, recorded through
//! `RecordingMemory` and `RecordingFacts` and committed under tests/fixtures/snapshots/, is
//! replayed through the same code with `ReplayMemory` and `RecordedFacts`, and must give the
//! same interpreter and stacks. That code is `PythonProcess::attach_to` (the interpreter's
//! binary found by the executable's entry point or by the maps, its version, the offsets
//! with `_Py_DebugOffsets`, the interpreter list), then what the BPF sampler does per sampled
//! thread: `read_thread_list` (thread states, their OS thread ids) and
//! `thread_stack_with_entries` (frames, code objects, the GIL); then what the user-space
//! sampler and `dump` do, `read_now` (every thread, whether the OS says it runs, its
//! `threading` name found through `sys.modules`). No live process is needed to replay.
//!
//! A replay serves exactly the reads and answers that were recorded, so a change in what
//! attaching or reading asks (which fields, in how many reads) needs the fixtures
//! regenerated (needs the provisioned and pyenv interpreters, root):
//! `PYSPY_WRITE_SNAPSHOTS=1 cargo test --release --test snapshot`

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pyspy_bpf::model::{Frame, StackTrace};
use pyspy_bpf::process::facts::{LiveProcess, RecordedFacts, RecordingFacts};
use pyspy_bpf::process::memory::{ProcessMemory, RecordingMemory, ReplayMemory, Snapshot};
use pyspy_bpf::process::pause::Paused;
use pyspy_bpf::process::{ProcessFacts, RemoteMemory};
use pyspy_bpf::python::state::{StackExtras, StackOptions};
use pyspy_bpf::python::PythonProcess;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshots")
}

fn target_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot_target.py")
}

/// One thread as read: frames as `func (file:line)`, leaf first, and which of them the eval
/// loop was entered at (`Walk::entry`).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Thread {
    tid: Option<u32>,
    owns_gil: bool,
    frames: Vec<String>,
    entry: Vec<bool>,
}

impl Thread {
    fn of(trace: &StackTrace, entry: Vec<bool>) -> Thread {
        let frames = trace
            .frames
            .iter()
            .map(|frame| match frame {
                Frame::Python(f) => {
                    let file = f.filename.rsplit('/').next().unwrap_or("").to_string();
                    format!("{} ({}:{})", f.function, file, f.line)
                }
                other => format!("{other:?}"),
            })
            .collect();
        Thread {
            tid: trace.tid,
            // Asked for (`gil: true` below): read, held or not.
            owns_gil: trace.owns_gil.expect("the GIL was asked for"),
            frames,
            entry,
        }
    }
}

/// One thread as `read_now` gives it: its name and whether it ran, and its frames.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct NamedThread {
    tid: Option<u32>,
    name: Option<String>,
    active: bool,
    frames: Vec<String>,
}

/// What attaching found and what reading every thread gave, as the BPF sampler reads a
/// sampled thread (`threads`) and as the user-space sampler reads them all (`read_now`).
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Read {
    version: String,
    /// The binary holding the interpreter (the executable, or a libpython).
    binary: PathBuf,
    threads: Vec<Thread>,
    read_now: Vec<NamedThread>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Fixture {
    read: Read,
    /// What the OS said of the process.
    facts: RecordedFacts,
    /// `Snapshot::to_json` text.
    memory: String,
}

/// Attach through `mem` and `os` and read every thread as the BPF sampler does for a
/// sampled one.
fn attach_and_read<M: RemoteMemory, F: ProcessFacts>(mem: M, os: F) -> Read {
    let mut process = PythonProcess::attach_to(mem, os).expect("attach");
    process.read_thread_list().expect("thread list");
    let mut tids: Vec<u32> = process.thread_state_addrs().map(|(tid, _)| tid).collect();
    tids.sort_unstable();
    let want = StackExtras {
        gil: true,
        thread_name: false,
    };
    let threads = tids
        .into_iter()
        .map(|tid| {
            let (trace, entry, _shims) = process
                .thread_stack_with_entries(tid, want)
                .expect("stack")
                .expect("a thread state");
            Thread::of(&trace, entry)
        })
        .collect();
    // Idle threads too: a recording is taken with the target stopped.
    let all = StackOptions {
        include_idle: true,
        gil_only: false,
    };
    let read_now = process
        .read_now(all, None)
        .expect("read_now")
        .into_iter()
        .map(|s| NamedThread {
            tid: s.trace.tid,
            name: s.trace.thread_name.clone(),
            active: s.trace.active,
            frames: Thread::of(&s.trace, Vec::new()).frames,
        })
        .collect();
    Read {
        version: process.version().to_string(),
        binary: process.interpreter.binary.clone(),
        threads,
        read_now,
    }
}

fn record_fixture(interp: &common::Interpreter) -> Fixture {
    let mut child = Command::new(&interp.path)
        .arg(interp.isolation_flag())
        .arg(target_script())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let guard = common::ChildGuard(child);
    let paused = Paused::pause(guard.pid()).expect("pause");
    let mem = RecordingMemory::new(ProcessMemory::new(guard.pid()));
    let os = RecordingFacts::new(LiveProcess::new(guard.pid()));
    let read = attach_and_read(&mem, &os);
    drop(paused);
    Fixture {
        read,
        facts: os.into_recorded(),
        memory: mem.into_snapshot().to_json(),
    }
}

fn replay(fixture: &Fixture) -> Read {
    let mem = ReplayMemory::new(Snapshot::from_json(&fixture.memory).expect("snapshot json"));
    attach_and_read(mem, fixture.facts.clone())
}

/// Line number of the `# LINE:name` marker in the target script.
fn marker_line(name: &str) -> usize {
    let text = std::fs::read_to_string(target_script()).unwrap();
    let marker = format!("# LINE:{name}");
    text.lines()
        .position(|l| l.trim_end().ends_with(&marker))
        .expect("marker")
        + 1
}

/// The fixture itself must hold what the script does, or replaying it proves nothing: its
/// version and binary, one thread with the script's stack at its marked lines.
fn check_recorded(name: &str, fixture: &Fixture) {
    let read = &fixture.read;
    // python3.11-static.json, python3.12-pyenv.json
    let (series, flavour) = name
        .trim_start_matches("python")
        .trim_end_matches(".json")
        .split_once('-')
        .unwrap_or_else(|| panic!("{name}: not pythonX.Y-FLAVOUR.json"));
    assert!(
        read.version.starts_with(&format!("{series}.")),
        "{name}: version {}",
        read.version
    );
    let binary = read.binary.file_name().unwrap().to_string_lossy();
    match flavour {
        "static" => assert_eq!(Some(&read.binary), fixture.facts.exe.as_ref(), "{name}"),
        _ => assert!(binary.starts_with("libpython"), "{name}: binary {binary}"),
    }
    let [thread] = read.threads.as_slice() else {
        panic!("{name}: expected one thread, got {:?}", read.threads);
    };
    assert!(thread.tid.is_some(), "{name}: no tid: {thread:?}");
    let major_minor: Vec<u32> = read
        .version
        .split('.')
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    // Qualified names from 3.11 on (`co_qualname`).
    let method = match major_minor >= vec![3, 11] {
        true => "Holder.method",
        false => "method",
    };
    // read_now: the same thread, named by `threading`, not running (the recording stops it).
    let [now] = read.read_now.as_slice() else {
        panic!(
            "{name}: expected one thread from read_now, got {:?}",
            read.read_now
        );
    };
    assert_eq!(now.tid, thread.tid, "{name}");
    assert_eq!(now.name.as_deref(), Some("snapshot-main"), "{name}");
    assert!(!now.active, "{name}: a stopped thread read as running");
    assert_eq!(now.frames, thread.frames, "{name}");
    let names: Vec<&str> = thread
        .frames
        .iter()
        .map(|f| f.split(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["leaf", "middle", method, "<module>"], "{name}");
    for (frame, marker) in thread.frames.iter().zip(["leaf", "middle", "method"]) {
        let line = format!("(snapshot_target.py:{})", marker_line(marker));
        assert!(
            frame.ends_with(&line),
            "{name}: {frame} should end with {line}"
        );
    }
}

#[test]
fn snapshots_replay_attach_and_stacks() {
    if std::env::var("PYSPY_WRITE_SNAPSHOTS").is_ok() {
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        // pyenv's builds only for the series the provisioned ones do not cover.
        let interpreters = common::interpreters();
        let provisioned = |series: &str| {
            interpreters
                .iter()
                .any(|i| i.series == series && i.flavour == "static")
        };
        for interp in interpreters.iter().filter(|i| match i.flavour.as_str() {
            "static" | "shared" => true,
            "pyenv" => !provisioned(&i.series),
            _ => false,
        }) {
            let fixture = record_fixture(interp);
            let path =
                fixtures_dir().join(format!("python{}-{}.json", interp.series, interp.flavour));
            std::fs::write(&path, serde_json::to_string(&fixture).unwrap()).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let fixture: Fixture =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        check_recorded(&name, &fixture);
        assert_eq!(replay(&fixture), fixture.read, "{name}");
        seen.push(name);
    }
    seen.sort();
    // Every supported series, and both ways of finding the interpreter (the executable by
    // its entry point, a libpython by the maps).
    for want in [
        "python2.7-static.json",
        "python2.7-shared.json",
        "python3.9-static.json",
        "python3.11-static.json",
        "python3.11-shared.json",
        "python3.13-static.json",
        "python3.14-static.json",
        "python3.15-static.json",
    ] {
        assert!(
            seen.iter().any(|s| s == want),
            "no fixture {want}: {seen:?}"
        );
    }
}
