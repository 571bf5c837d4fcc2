//! Real programs built from PyPI packages, in a venv the test creates with `pip` (Debian's
//! CPython, which has no frame pointers, and numpy's wheel, whose OpenBLAS kernels are
//! hand-written assembly without unwind information):
//! - a short pytest session, recorded as `-- CMD` and under `record --all`, shows no invented
//!   native frames: no data symbol used as a frame, no run of small integers, no native part
//!   deeper than a real one;
//! - `--native` on numpy's matmul puts the BLAS kernel under its Python caller, in BPF and
//!   user-space modes;
//! - a Cython extension (msgpack's `unpackb` with an `object_hook`) and a pybind11 one
//!   (hnswlib's `knn_query` with a `filter`) calling back into Python read, under `record
//!   --native` (both modes) and `dump --native`: Python caller -> the extension's own native
//!   functions -> the Python callback, in that order, in one stack.
//!
//! Without a way to PyPI the tests are skipped with a line saying SKIPPED and why; in CI
//! (`CI` set) they fail instead.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;

/// The interpreter the venv is made from: Debian's, built without frame pointers.
const BASE_PYTHON: &str = "/usr/bin/python3";
/// msgpack and chroma-hnswlib are pinned: the tests name functions of their compiled
/// extensions (Cython's `__pyx_pw_...`, hnswlib's C++ templates), which a new build may rename.
/// Both wheels keep their symbol tables (not stripped), as pybind11's CMake builds do not.
const PACKAGES: &[&str] = &[
    "numpy>=1.26",
    "pytest",
    "msgpack==1.2.4",
    "chroma-hnswlib==0.7.6",
];
/// What the venv must import to be reused.
const IMPORTS: &str = "import numpy, pytest, msgpack._cmsgpack, hnswlib";
/// What pip says when it cannot reach the index (the only reason to skip).
const OFFLINE: &[&str] = &[
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "ProxyError",
    "Could not fetch URL",
    "No matching distribution found",
];
/// Deepest native part of a stack from a Python process without `--native` that is taken
/// for real: the interpreter's own start-up and shutdown stacks are a few dozen frames; the
/// garbage this guards against ran to the kernel's limit of 127.
const MAX_NATIVE_FRAMES: usize = 64;

/// The tests record on-CPU samples of busy targets: one at a time on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// The venv's python, or why the tests cannot run (skipped, failed in CI).
fn venv_python(test: &str) -> Option<PathBuf> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match VENV.get_or_init(create_venv) {
        Ok(python) => Some(python.clone()),
        Err(why) => {
            assert!(!in_ci(), "{test}: CI must reach PyPI: {why}");
            eprintln!("{test}: SKIPPED: {why}");
            None
        }
    }
}

/// Creates (once; reused while it imports its packages) a venv with `PACKAGES` from PyPI.
/// `Err`: PyPI cannot be reached. Any other failure panics.
fn create_venv() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pypi-venv");
    let python = dir.join("bin/python");
    let imports = |python: &Path| {
        run(
            std::process::Command::new(python).args(["-c", IMPORTS]),
            Duration::from_secs(60),
        )
        .is_ok_and(|o| o.status.success())
    };
    if imports(&python) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let made = run(
        std::process::Command::new(BASE_PYTHON)
            .args(["-m", "venv"])
            .arg(&dir),
        Duration::from_secs(120),
    )
    .and_then(Outcome::ok);
    if let Err(e) = made {
        panic!("{BASE_PYTHON} -m venv {}: {e:#}", dir.display());
    }
    let pip = run(
        std::process::Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .args(["--retries", "2", "--timeout", "20"])
            .args(PACKAGES),
        Duration::from_secs(600),
    )
    .unwrap_or_else(|e| panic!("pip install {PACKAGES:?}: {e:#}"));
    if !pip.status.success() {
        let said = format!("{}\n{}", pip.stdout, pip.stderr);
        if OFFLINE.iter().any(|s| said.contains(s)) {
            return Err(format!(
                "pip cannot reach PyPI to install {PACKAGES:?}: {}",
                clip(said.trim(), 600)
            ));
        }
        panic!("pip install {PACKAGES:?} failed:\n{}", clip(&said, 4000));
    }
    assert!(imports(&python), "the venv fails `{IMPORTS}`");
    Ok(python)
}

/// Whether a raw frame label is a Python frame: `function (file.py:LINE)`.
fn is_python(frame: &str) -> bool {
    frame
        .strip_suffix(')')
        .and_then(|f| f.rsplit_once(':'))
        .is_some_and(|(_, line)| !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()))
}

/// A native frame's symbol: `NAME (module)` -> `NAME`.
fn symbol(frame: &str) -> &str {
    frame.rsplit_once(" (").map_or(frame, |(name, _)| name)
}

/// Names of the data objects (not functions) the interpreter binary defines.
fn data_symbols(python: &Path) -> HashSet<String> {
    let real = std::fs::canonicalize(python).expect("venv python resolves");
    let out = run(
        std::process::Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(&real),
        Duration::from_secs(30),
    )
    .and_then(Outcome::ok)
    .expect("nm (binutils) lists the interpreter's dynamic symbols");
    let data: HashSet<String> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            matches!(kind, "B" | "b" | "D" | "d" | "R" | "r" | "V").then(|| name.to_string())
        })
        .collect();
    assert!(
        data.contains("PyUnicode_Type"),
        "nm found no PyUnicode_Type in {}",
        real.display()
    );
    data
}

/// Every frame of `stacks` that no real stack has, described; `deep`: also the stacks whose
/// native part is deeper than a real one.
fn invented_frames(stacks: &[RawStack], data: &HashSet<String>, deep: bool) -> Vec<String> {
    let mut bad = Vec::new();
    for s in stacks {
        let line = || clip(&s.frames.join(";"), 400);
        if let Some(f) = s.frames.iter().find(|f| data.contains(symbol(f))) {
            bad.push(format!("data symbol {f:?} as a frame: {}", line()));
        }
        let small = |f: &str| {
            f.strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .is_some_and(|v| v < 0x10000)
        };
        if let Some(f) = s.frames.iter().find(|f| small(f)) {
            bad.push(format!("small integer {f:?} as a frame: {}", line()));
        }
        let repeated = s
            .frames
            .windows(8)
            .find(|w| !is_python(&w[0]) && w.iter().all(|f| *f == w[0]));
        if let Some(w) = repeated {
            bad.push(format!("{:?} eight times in a row: {}", w[0], line()));
        }
        let native = s
            .frames
            .iter()
            .filter(|f| !is_python(f) && !f.ends_with("_[k]"))
            .count();
        if deep && native > MAX_NATIVE_FRAMES {
            bad.push(format!("{native} native frames: {}", line()));
        }
    }
    bad
}

fn session_args(python: &Path) -> Vec<String> {
    vec![
        python.display().to_string(),
        "-m".into(),
        "pytest".into(),
        "-q".into(),
        "-p".into(),
        "no:cacheprovider".into(),
        scripts_dir()
            .join("pypi/test_session.py")
            .display()
            .to_string(),
    ]
}

fn ran_the_tests(stacks: &[RawStack]) -> bool {
    count(stacks, |s| {
        s.frames
            .iter()
            .any(|f| f.starts_with("work (test_session.py:"))
    }) > 0
}

#[test]
fn a_pytest_session_started_by_record_shows_no_invented_native_frames() {
    const TEST: &str = "pytest session (-- CMD)";
    if !bpf_test_can_run(TEST) {
        return;
    }
    let Some(python) = venv_python(TEST) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = data_symbols(&python);
    let dir = TempDir::new("pypi-session");
    let out = dir.join("out.txt");
    // (Several runs: the start-up samples that showed garbage are a few per run.)
    for _ in 0..3 {
        let mut args = vec!["record", "-r", "250", "-f", "raw", "-o"];
        let out_s = out.display().to_string();
        args.push(&out_s);
        args.push("--");
        let cmd = session_args(&python);
        args.extend(cmd.iter().map(String::as_str));
        pyspy(&args)
            .and_then(Outcome::ok)
            .expect("record -- pytest");
        let stacks = read_raw(&out).expect("raw profile");
        assert!(ran_the_tests(&stacks), "{}", summary(&stacks));
        let bad = invented_frames(&stacks, &data, true);
        assert!(
            bad.is_empty(),
            "{} invented frames:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }
}

#[test]
fn a_pytest_session_under_record_all_shows_no_invented_native_frames() {
    const TEST: &str = "pytest session (--all)";
    if !bpf_test_can_run(TEST) {
        return;
    }
    let Some(python) = venv_python(TEST) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = data_symbols(&python);
    let dir = TempDir::new("pypi-all");
    let out = dir.join("out.txt");
    let out_s = out.display().to_string();
    let recorder = std::thread::spawn(move || {
        pyspy(&[
            "record", "--all", "-r", "250", "-d", "7", "-f", "raw", "-o", &out_s,
        ])
        .and_then(Outcome::ok)
    });
    // (Loading the BPF program takes a moment; the session then runs for about two seconds.)
    std::thread::sleep(Duration::from_millis(2500));
    let cmd = session_args(&python);
    let mut session = std::process::Command::new(&cmd[0]);
    session.args(&cmd[1..]);
    let child = ChildGuard(
        session
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start pytest"),
    );
    let pid = child.pid();
    let mut child = child;
    let status = child.0.wait().expect("wait for pytest");
    assert!(status.success(), "pytest failed: {status}");
    recorder
        .join()
        .expect("recorder thread")
        .expect("record --all");
    let stacks = read_raw(&out).expect("raw profile");
    let own: Vec<RawStack> = stacks
        .iter()
        .filter(|s| s.root().is_some_and(|r| r.ends_with(&format!(" ({pid})"))))
        .cloned()
        .collect();
    assert!(
        ran_the_tests(&own),
        "pid {pid}: {}\nall: {}",
        summary(&own),
        summary(&stacks)
    );
    // Every process's stacks: no data symbol of the interpreter, no small integers; the
    // session's own: no native part deeper than a real one.
    let mut bad = invented_frames(&stacks, &data, false);
    bad.extend(invented_frames(&own, &data, true));
    assert!(
        bad.is_empty(),
        "{} invented frames:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// `record --native` of numpy's matmul (OpenBLAS from numpy's wheel, one thread): the
/// stacks, root first.
fn record_matmul(python: &Path, mode: &str, coretype: Option<&str>) -> Vec<RawStack> {
    let dir = TempDir::new("pypi-matmul");
    let out = dir.join("out.txt");
    let out_s = out.display().to_string();
    let script = scripts_dir().join("pypi/np_matmul.py");
    let mut cmd = pyspy_bpf();
    cmd.args([
        "record", "--native", "--mode", mode, "-r", "100", "-f", "raw", "-o",
    ])
    .arg(&out_s)
    .arg("--")
    .arg(python)
    .arg(&script)
    .arg("4")
    .env("OPENBLAS_NUM_THREADS", "1");
    if let Some(core) = coretype {
        cmd.env("OPENBLAS_CORETYPE", core);
    }
    run(&mut cmd, RUN_TIMEOUT)
        .and_then(Outcome::ok)
        .expect("record --native numpy");
    read_raw(&out).expect("raw profile")
}

/// In at least 95% of the samples in `matmul`, the stack reads `<module> -> matmul -> ... ->
/// an OpenBLAS function`, with no marker of a cut or a mismatch anywhere.
fn check_matmul(what: &str, stacks: &[RawStack]) -> Result<(), String> {
    let at = |s: &RawStack, p: &dyn Fn(&str) -> bool| s.frames.iter().position(|f| p(f));
    let in_matmul = |s: &RawStack| at(s, &|f| f.starts_with("matmul (np_matmul.py:")).is_some();
    let good = |s: &RawStack| {
        let matmul = at(s, &|f| f.starts_with("matmul (np_matmul.py:"));
        let blas = s.frames.iter().rposition(|f| f.contains("openblas"));
        let marked = s
            .frames
            .iter()
            .any(|f| f.starts_with("<truncated") || f.starts_with("<unknown"));
        matches!((matmul, blas), (Some(m), Some(b)) if m > 0 && b > m) && !marked
    };
    let total = count(stacks, in_matmul);
    let shaped = count(stacks, |s| in_matmul(s) && good(s));
    // (BPF samples count CPU time: on a loaded 2-CPU host the target gets a third of one.)
    if total < 40 || shaped * 100 < total * 95 {
        return Err(format!(
            "{what}: {shaped} of {total} matmul samples read <caller> -> matmul -> ... -> \
             OpenBLAS with no marker: {}",
            summary(stacks)
        ));
    }
    eprintln!("{what}: {shaped} of {total} matmul samples in shape");
    Ok(())
}

#[test]
fn numpy_matmul_under_native_puts_blas_under_its_python_caller() {
    const TEST: &str = "numpy matmul --native";
    let Some(python) = venv_python(TEST) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = data_symbols(&python);
    let modes: &[&str] = if is_root() {
        &["bpf", "userspace"]
    } else {
        assert!(!in_ci(), "{TEST}: CI must run this test as root");
        eprintln!("{TEST}: BPF mode SKIPPED: not root");
        &["userspace"]
    };
    let mut failures = Vec::new();
    // The host's own kernel (chosen by OpenBLAS for this CPU), and the Haswell one, whose
    // hand-written assembly has no unwind information and keeps ~32 KiB on the stack.
    for coretype in [None, Some("Haswell")] {
        for &mode in modes {
            let what = format!("{mode}, OPENBLAS_CORETYPE={}", coretype.unwrap_or("(host)"));
            let stacks = record_matmul(&python, mode, coretype);
            if let Err(e) = check_matmul(&what, &stacks) {
                failures.push(e);
            }
            let bad = invented_frames(&stacks, &data, false);
            if !bad.is_empty() {
                failures.push(format!("{what}: invented frames:\n{}", bad.join("\n")));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A compiled extension from PyPI calling back into Python, as a script in tests/scripts/pypi
/// runs it: `<module> -> main -> CALLER -> the extension's functions -> CALLBACK`. The
/// script's `# LINE:CALLER` marks the caller's call into the extension, `# LINE:CALLBACK` the
/// callback's busy line (its lines from its `def` to there are the ones samples land on).
struct Callback {
    what: &'static str,
    script: &'static str,
    caller: &'static str,
    callback: &'static str,
    /// The extension's file name, up to the ABI tag: `(MODULE...)` ends its frames.
    module: &'static str,
    /// A part of each of the extension's functions between caller and callback, caller side
    /// first (others may sit between them).
    native: &'static [&'static str],
}

/// Cython: `__pyx_pw_` is the Python-visible wrapper, `__pyx_pf_` the function's body, and
/// `unpack_execute` (msgpack's C, compiled into the module) calls the hook.
const MSGPACK: Callback = Callback {
    what: "msgpack (Cython): unpackb -> object_hook",
    script: "msgpack_hook.py",
    caller: "decode",
    callback: "hook",
    module: "_cmsgpack.cpython-",
    native: &[
        "__pyx_pw_7msgpack_9_cmsgpack_3unpackb",
        "__pyx_pf_7msgpack_9_cmsgpack_2unpackb",
        "unpack_execute",
    ],
};

/// pybind11: its dispatcher, the bound method, hnswlib's search, and the functor that calls
/// the `std::function` pybind11 made of the Python filter.
const HNSWLIB: Callback = Callback {
    what: "hnswlib (pybind11): knn_query -> filter",
    script: "hnsw_filter.py",
    caller: "query",
    callback: "allowed",
    module: "hnswlib.cpython-",
    native: &[
        "pybind11::cpp_function::dispatcher(",
        "Index<float, float>::knnQuery_return_numpy(",
        "hnswlib::HierarchicalNSW<float>::searchKnn(",
        "hnswlib::HierarchicalNSW<float>::searchBaseLayerST<",
        "CustomFilterFunctor::operator()(unsigned long)",
    ],
};

impl Callback {
    fn path(&self) -> PathBuf {
        Path::new("pypi").join(self.script)
    }

    /// `CALLER (SCRIPT:LINE)`: the caller's frame at its call into the extension.
    fn caller_frame(&self) -> String {
        let line = line_of(self.path(), self.caller);
        format!("{} ({}:{line})", self.caller, self.script)
    }

    /// Whether `frame` is the callback's (any line).
    fn in_callback(&self, frame: &str) -> bool {
        frame.starts_with(&format!("{} ({}:", self.callback, self.script))
    }

    /// Whether `frame` is the callback's, on one of the lines of its body up to the marker.
    fn is_callback(&self, frame: &str) -> bool {
        let body = def_line(self.path(), self.callback) + 1..=line_of(self.path(), self.callback);
        body.map(|line| format!("{} ({}:{line})", self.callback, self.script))
            .any(|f| f == frame)
    }

    fn is_extension(&self, frame: &str) -> bool {
        frame
            .rsplit_once(" (")
            .is_some_and(|(_, module)| module.starts_with(self.module))
    }

    /// Whether `frames` (root first) read CALLER -> the extension's functions in order ->
    /// CALLBACK, with no Python frame and no marker between. `record`: also nothing but the
    /// extension's frames between (record hides the interpreter's), and the Python frames
    /// are exactly `<module> -> main -> CALLER -> CALLBACK`, with no marker anywhere.
    fn shaped(&self, frames: &[&str], record: bool) -> bool {
        let caller = self.caller_frame();
        let (Some(c), Some(k)) = (
            frames.iter().position(|f| *f == caller),
            frames.iter().rposition(|f| self.is_callback(f)),
        ) else {
            return false;
        };
        if k <= c {
            return false;
        }
        let between = &frames[c + 1..k];
        let mut at = 0;
        for want in self.native {
            let found = between[at..]
                .iter()
                .position(|f| self.is_extension(f) && symbol(f).contains(want));
            match found {
                Some(i) => at += i + 1,
                None => return false,
            }
        }
        if between.iter().any(|f| is_python(f) || f.starts_with('<')) {
            return false;
        }
        if !record {
            return true;
        }
        let script = |f: &str| format!("{f} ({}:", self.script);
        let python: Vec<&str> = frames.iter().copied().filter(|f| is_python(f)).collect();
        between.iter().all(|f| self.is_extension(f))
            && !frames.iter().any(|f| f.starts_with('<') && !is_python(f))
            && python.len() == 4
            && python[0].starts_with(&script("<module>"))
            && python[1].starts_with(&script("main"))
    }
}

/// `record --native` of a callback script, 4 seconds: the stacks, root first.
fn record_callback(python: &Path, cb: &Callback, mode: &str) -> Vec<RawStack> {
    let dir = TempDir::new("pypi-callback");
    let out = dir.join("out.txt");
    let mut cmd = pyspy_bpf();
    cmd.args([
        "record", "--native", "--mode", mode, "-r", "100", "-f", "raw", "-o",
    ])
    .arg(&out)
    .arg("--")
    .arg(python)
    .arg(scripts_dir().join(cb.path()))
    .arg("4");
    run(&mut cmd, RUN_TIMEOUT)
        .and_then(Outcome::ok)
        .unwrap_or_else(|e| panic!("record --native {}: {e:#}", cb.script));
    read_raw(&out).expect("raw profile")
}

/// In at least 90% of the samples in the callback (and at least 40 of them), the stack reads
/// `<module> -> main -> CALLER -> the extension -> CALLBACK` with nothing else between and no
/// marker.
fn check_callback_record(what: &str, cb: &Callback, stacks: &[RawStack]) -> Result<(), String> {
    fn frames(s: &RawStack) -> Vec<&str> {
        s.frames.iter().map(String::as_str).collect()
    }
    let in_callback = |s: &RawStack| s.frames.iter().any(|f| cb.in_callback(f));
    let total = count(stacks, in_callback);
    let shaped = count(stacks, |s| in_callback(s) && cb.shaped(&frames(s), true));
    // (BPF samples count CPU time: on a loaded 2-CPU host the target gets a third of one.)
    if total < 40 || shaped * 100 < total * 90 {
        return Err(format!(
            "{what}: {shaped} of {total} samples in {} read <module> -> main -> {} -> {} -> {}: {}",
            cb.callback,
            cb.caller_frame(),
            cb.native.join(" -> "),
            cb.callback,
            summary(stacks)
        ));
    }
    eprintln!(
        "{what}: {shaped} of {total} samples in {} in shape",
        cb.callback
    );
    Ok(())
}

/// Each thread's frames in `dump --native` text, root first.
fn dumped_threads(text: &str) -> Vec<Vec<&str>> {
    let mut threads: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("Thread ") {
            threads.push(Vec::new());
        } else if let (Some(frames), Some(frame)) = (threads.last_mut(), line.strip_prefix("    "))
        {
            frames.push(frame.trim());
        }
    }
    for frames in &mut threads {
        frames.reverse();
    }
    threads
}

/// `dump --native` of the running script: one of five dumps (the script spends nearly all
/// its time in the callback) reads CALLER -> the extension -> CALLBACK.
fn check_callback_dump(python: &Path, cb: &Callback) -> Result<(), String> {
    let interp = Interpreter {
        series: String::new(),
        version: String::new(),
        flavour: "venv".into(),
        path: python.to_path_buf(),
    };
    let target = interp
        .start(cb.path(), &["60"])
        .map_err(|e| format!("{e:#}"))?;
    target.wait_ready().map_err(|e| format!("{e:#}"))?;
    let pid = target.pid().to_string();
    let mut last = String::new();
    for _ in 0..5 {
        let out = pyspy(&["dump", "--native", "--pid", &pid])
            .and_then(Outcome::ok)
            .map_err(|e| format!("dump --native {}: {e:#}", cb.script))?;
        let threads = dumped_threads(&out.stdout);
        if threads.iter().any(|frames| cb.shaped(frames, false)) {
            return Ok(());
        }
        last = out.stdout;
    }
    Err(format!(
        "dump --native, {}: 5 dumps without {} -> {} -> {}; the last:\n{last}",
        cb.what,
        cb.caller_frame(),
        cb.native.join(" -> "),
        cb.callback
    ))
}

#[test]
fn cython_and_pybind11_extensions_sit_between_python_caller_and_callback() {
    const TEST: &str = "Cython and pybind11 callbacks --native";
    let Some(python) = venv_python(TEST) else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let modes: &[&str] = if is_root() {
        &["bpf", "userspace"]
    } else {
        assert!(!in_ci(), "{TEST}: CI must run this test as root");
        eprintln!("{TEST}: BPF mode SKIPPED: not root");
        &["userspace"]
    };
    let mut failures = Vec::new();
    for cb in [&MSGPACK, &HNSWLIB] {
        for &mode in modes {
            let what = format!("record --native --mode {mode}, {}", cb.what);
            let stacks = record_callback(&python, cb, mode);
            if let Err(e) = check_callback_record(&what, cb, &stacks) {
                failures.push(e);
            }
        }
        if let Err(e) = check_callback_dump(&python, cb) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
