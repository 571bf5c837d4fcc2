//! Snapshot tests: a walk of a real interpreter, recorded through `RecordingMemory` and
//! committed under tests/fixtures/snapshots/, is replayed through the same walker code with
//! `ReplayMemory` and must give the same stacks. No live process is needed to replay.
//!
//! A replay serves exactly the reads that were recorded, so a change in how the walker reads
//! (which fields, in how many reads) needs the fixtures regenerated (needs the provisioned
//! interpreters, root):
//! `PYSPY_WRITE_SNAPSHOTS=1 cargo test --release --test snapshot`

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use pyspy_bpf::model::{Frame, PyVersion};
use pyspy_bpf::process::memory::{
    ProcessMemory, RecordingMemory, RemoteMemory, ReplayMemory, Snapshot,
};
use pyspy_bpf::process::pause::Paused;
use pyspy_bpf::python::attach::{locate, Interpreter, InterpreterRoot};
use pyspy_bpf::python::code::CodeCache;
use pyspy_bpf::python::debug_offsets::{
    apply_debug_offsets, parse_debug_offsets, DEBUG_OFFSETS_READ_LEN,
};
use pyspy_bpf::python::offsets::offsets_for;
use pyspy_bpf::python::threads::{interpreters, thread_states, GilLocation};
use pyspy_bpf::python::walk::walk_thread;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshots")
}

/// Every thread's stack as `func (file:line)` strings, leaf first, read through `mem`.
fn read_stacks(mem: &dyn RemoteMemory, interp: &Interpreter) -> Vec<Vec<String>> {
    let o = &interp.offsets;
    let head = interp
        .interpreters_head(mem)
        .expect("interpreter list head");
    let mut codes = CodeCache::default();
    let mut stacks = Vec::new();
    for i in interpreters(mem, o, head).expect("interpreters") {
        for t in thread_states(mem, o, i).expect("thread states") {
            let walk = walk_thread(mem, o, t.addr);
            assert!(
                walk.truncated.is_none(),
                "walk truncated: {:?}",
                walk.truncated
            );
            let frames = walk
                .frames
                .iter()
                .map(|raw| match codes.resolve(mem, o, *raw) {
                    Frame::Python(f) => {
                        let file = f.filename.rsplit('/').next().unwrap_or("").to_string();
                        format!("{} ({}:{})", f.function, file, f.line)
                    }
                    other => format!("{other:?}"),
                })
                .collect();
            stacks.push(frames);
        }
    }
    stacks
}

/// The offsets for `version`, corrected by the `_Py_DebugOffsets` found in `mem` (3.13+),
/// exactly as attaching to a live process does.
fn offsets_from(
    mem: &dyn RemoteMemory,
    version: PyVersion,
    root: InterpreterRoot,
) -> pyspy_bpf::python::offsets::PyOffsets {
    let mut offsets = offsets_for(version).expect("supported version");
    if let (InterpreterRoot::Runtime(runtime), true) = (root, version >= PyVersion::new(3, 13, 0)) {
        let bytes = mem
            .read_bytes(runtime, DEBUG_OFFSETS_READ_LEN)
            .expect("debug offsets bytes");
        let debug = parse_debug_offsets(&bytes, version).expect("debug offsets parse");
        apply_debug_offsets(&mut offsets, &debug);
    }
    offsets
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Fixture {
    version: (u8, u8, u8),
    /// "runtime" (3.x `_PyRuntime`) or "interp_head" (2.7 variable).
    root_kind: String,
    root_addr: u64,
    expected: Vec<Vec<String>>,
    /// `Snapshot::to_json` text.
    memory: String,
}

fn record_fixture(interp: &common::Interpreter) -> Fixture {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot_target.py");
    let mut child = Command::new(&interp.path)
        .arg(if interp.is_py2() { "-sE" } else { "-I" })
        .arg(&script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let guard = common::ChildGuard(child);
    let located = locate(guard.pid()).expect("locate");
    let paused = Paused::pause(guard.pid()).expect("pause");
    let rec = RecordingMemory::new(ProcessMemory::new(guard.pid()));
    let offsets = offsets_from(&rec, located.version, located.root);
    assert_eq!(offsets, located.offsets);
    let expected = read_stacks(&rec, &located);
    drop(paused);
    let (root_kind, root_addr) = match located.root {
        InterpreterRoot::Runtime(a) => ("runtime", a),
        InterpreterRoot::InterpHeadVar(a) => ("interp_head", a),
    };
    let v = located.version;
    Fixture {
        version: (v.major, v.minor, v.patch),
        root_kind: root_kind.into(),
        root_addr,
        expected,
        memory: rec.into_snapshot().to_json(),
    }
}

fn replay(fixture: &Fixture) -> Vec<Vec<String>> {
    let mem = ReplayMemory::new(Snapshot::from_json(&fixture.memory).expect("snapshot json"));
    let version = PyVersion::new(fixture.version.0, fixture.version.1, fixture.version.2);
    let root = match fixture.root_kind.as_str() {
        "runtime" => InterpreterRoot::Runtime(fixture.root_addr),
        _ => InterpreterRoot::InterpHeadVar(fixture.root_addr),
    };
    let interp = Interpreter {
        pid: 0,
        version,
        offsets: offsets_from(&mem, version, root),
        binary: PathBuf::new(),
        root,
        gil: GilLocation::Unknown,
    };
    read_stacks(&mem, &interp)
}

/// Line number of the `# LINE:name` marker in the target script.
fn marker_line(name: &str) -> usize {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot_target.py");
    let text = std::fs::read_to_string(script).unwrap();
    let marker = format!("# LINE:{name}");
    text.lines()
        .position(|l| l.trim_end().ends_with(&marker))
        .expect("marker")
        + 1
}

#[test]
fn snapshots_replay_to_the_recorded_stacks() {
    if std::env::var("PYSPY_WRITE_SNAPSHOTS").is_ok() {
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        for interp in common::interpreters()
            .iter()
            .filter(|i| i.flavour == "static")
        {
            let fixture = record_fixture(interp);
            let path = fixtures_dir().join(format!("python{}.json", interp.series));
            std::fs::write(&path, serde_json::to_string(&fixture).unwrap()).unwrap();
            eprintln!("wrote {}", path.display());
        }
    }
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures dir") {
        let path = entry.unwrap().path();
        let fixture: Fixture =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // The fixture itself must hold the script's stack, or this test proves nothing.
        let main = fixture
            .expected
            .iter()
            .find(|s| s.iter().any(|f| f.starts_with("leaf ")));
        let main = main.unwrap_or_else(|| panic!("{}: no stack with leaf()", path.display()));
        let method = if fixture.version.0 >= 3 && fixture.version.1 >= 11 {
            "Holder.method"
        } else {
            "method"
        };
        let names: Vec<&str> = main.iter().map(|f| f.split(' ').next().unwrap()).collect();
        assert_eq!(
            names,
            ["leaf", "middle", method, "<module>"],
            "{}",
            path.display()
        );
        let lines: Vec<String> = ["leaf", "middle", "method"]
            .iter()
            .map(|m| format!(":{})", marker_line(m)))
            .collect();
        for (frame, line) in main.iter().zip(&lines) {
            assert!(
                frame.ends_with(line.as_str()),
                "{}: {frame} should end with {line}",
                path.display()
            );
        }
        assert_eq!(replay(&fixture), fixture.expected, "{}", path.display());
        seen += 1;
    }
    assert!(
        seen >= 5,
        "expected snapshot fixtures for every provisioned series, found {seen}"
    );
}
