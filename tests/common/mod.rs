//! Shared helpers for integration tests: the interpreters to test against, running test
//! scripts and the profiler with time limits, reading `# LINE:tag` markers, and parsing
//! the profiler's outputs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long a test script may take to print its "ready" line (interpreters start slowly
/// when the machine is busy with other tests).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one `pyspy-bpf` run that should take a couple of seconds.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// One interpreter to test against.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// "2.7", "3.11", ...
    pub series: String,
    /// Full version, "3.11.2".
    pub version: String,
    /// "static", "shared" or "system".
    pub flavour: String,
    pub path: PathBuf,
}

impl Interpreter {
    /// Whether `code` (a Python expression) is true in this interpreter, started as tests
    /// start it (isolated).
    pub fn evaluates_true(&self, code: &str) -> bool {
        Command::new(&self.path)
            .args([
                self.isolation_flag(),
                "-c",
                &format!("import sys; sys.exit(0 if ({code}) else 1)"),
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Whether `threading` is imported before the script runs (a `.pth` file in `site` may
    /// import it, as in pyenv's 3.11.7 here): the main thread is then named `MainThread`,
    /// not after the OS thread.
    pub fn imports_threading_at_startup(&self) -> bool {
        self.evaluates_true("'threading' in sys.modules")
    }

    pub fn label(&self) -> String {
        format!(
            "{} {} ({})",
            self.version,
            self.flavour,
            self.path.display()
        )
    }

    pub fn is_py2(&self) -> bool {
        self.series.starts_with("2.")
    }

    /// (major, minor), from `series`.
    pub fn major_minor(&self) -> (u32, u32) {
        let mut it = self
            .series
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// Python 3.11+ reports qualified names (`Worker.run`); older versions the plain name.
    pub fn has_qualnames(&self) -> bool {
        self.major_minor() >= (3, 11)
    }

    /// The name a profiler should show for a function: `qualified` on 3.11+, else `plain`.
    pub fn func_name(&self, qualified: &str, plain: &str) -> String {
        if self.has_qualnames() {
            qualified
        } else {
            plain
        }
        .to_string()
    }

    /// The flag that isolates the interpreter from the user's site-packages and environment.
    pub fn isolation_flag(&self) -> &'static str {
        if self.is_py2() {
            "-sE"
        } else {
            "-I"
        }
    }

    /// The command line (interpreter, flag, script, args) that runs `script`.
    pub fn argv(&self, script: &Path, args: &[&str]) -> Vec<String> {
        let mut v = vec![
            self.path.display().to_string(),
            self.isolation_flag().to_string(),
        ];
        v.push(script.display().to_string());
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// The module code object's first line (`co_firstlineno`) of `script` (a path, or a file
    /// in tests/scripts), as this interpreter compiles it: 1 on 3.10+, the first statement's
    /// line before.
    pub fn module_first_line(&self, script: impl AsRef<Path>) -> Result<u32> {
        let script = scripts_dir().join(script.as_ref());
        let code = "import io, sys; f = sys.argv[1]; \
                    print(compile(io.open(f, 'rb').read(), f, 'exec').co_firstlineno)";
        let out = Command::new(&self.path)
            .args([self.isolation_flag(), "-c", code])
            .arg(&script)
            .output()
            .with_context(|| format!("run {}", self.label()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim().parse().with_context(|| {
            format!(
                "co_firstlineno of {}: {text:?} {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Start `script` (a file in tests/scripts) with `args`, isolated from user site-packages.
    /// stdout and stderr are inherited; see [`Interpreter::start`] to wait for "ready".
    pub fn spawn(&self, script: &str, args: &[&str]) -> ChildGuard {
        let mut cmd = Command::new(&self.path);
        cmd.arg(self.isolation_flag());
        cmd.arg(scripts_dir().join(script));
        cmd.args(args);
        ChildGuard(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", self.label())),
        )
    }

    /// Start `script` (a path, or a file name in tests/scripts) with `args`; stdout and
    /// stderr are captured so that [`Running::wait_ready`] can wait for the "ready" line.
    pub fn start(&self, script: impl AsRef<Path>, args: &[&str]) -> Result<Running> {
        let script = scripts_dir().join(script.as_ref());
        let argv = self.argv(&script, args);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", argv.join(" ")))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let sink = stderr_text.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut stderr = stderr;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                *sink.lock().unwrap() = String::from_utf8_lossy(&buf).into_owned();
            }
        });
        Ok(Running {
            guard: ChildGuard(child),
            lines,
            stderr: stderr_text,
            argv,
        })
    }
}

pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("scripts")
}

/// Interpreters from `$PYTHONS_DIR/index.tsv` (written by tools/pythons/provision) plus the
/// system's own `/usr/bin/python3`. In CI (`CI=true`) an empty list is an error, never a skip.
/// `PYSPY_TEST_ONLY=3.11,2.7` restricts the list to those series (for local debugging).
pub fn interpreters() -> Vec<Interpreter> {
    let dir = std::env::var("PYTHONS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/pythons")
        });
    let mut found = Vec::new();
    if let Ok(index) = std::fs::read_to_string(dir.join("index.tsv")) {
        for line in index
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() >= 4 {
                found.push(Interpreter {
                    series: cols[0].to_string(),
                    path: PathBuf::from(cols[1]),
                    flavour: cols[2].to_string(),
                    version: cols[3].to_string(),
                });
            }
        }
    }
    if let Some(system) = system_python() {
        found.push(system);
    }
    found.extend(pyenv_pythons());
    if let Ok(only) = std::env::var("PYSPY_TEST_ONLY") {
        found.retain(|i| only.split(',').any(|s| s == i.series || s == i.flavour));
    }
    if found.is_empty() && std::env::var("CI").is_ok() {
        panic!("no interpreters found: run tools/pythons/provision (CI must not skip these tests)");
    }
    found
}

/// The interpreters pyenv built on this machine's image (`$PYENV_ROOT` or ~/.pyenv,
/// `versions/X.Y.Z/bin/pythonX.Y`, shared libpython), flavour `pyenv`.
fn pyenv_pythons() -> Vec<Interpreter> {
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".pyenv")
        });
    let Ok(entries) = std::fs::read_dir(root.join("versions")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let version = entry.file_name().to_string_lossy().into_owned();
        let parts: Vec<&str> = version.split('.').collect();
        if parts.len() != 3 || !parts.iter().all(|p| p.parse::<u32>().is_ok()) {
            continue; // a virtualenv or a free-threaded/dev build
        }
        let series = format!("{}.{}", parts[0], parts[1]);
        let path = entry.path().join("bin").join(format!("python{series}"));
        if !path.exists() {
            continue;
        }
        found.push(Interpreter {
            series,
            path,
            flavour: "pyenv".to_string(),
            version,
        });
    }
    found.sort_by(|a, b| a.version.cmp(&b.version));
    found
}

fn system_python() -> Option<Interpreter> {
    let path = PathBuf::from("/usr/bin/python3");
    let out = Command::new(&path)
        .args([
            "-I",
            "-c",
            "import sys; print('%d.%d %d.%d.%d' % (sys.version_info[:2] + sys.version_info[:3]))",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut parts = text.split_whitespace();
    Some(Interpreter {
        series: parts.next()?.to_string(),
        version: parts.next()?.to_string(),
        flavour: "system".to_string(),
        path,
    })
}

/// Runs `check` for every interpreter, a few at a time (`PYSPY_TEST_JOBS`, default 3), and
/// panics at the end listing every interpreter that failed, so one run shows all of them.
pub fn for_each_interpreter<F>(test: &str, check: F)
where
    F: Fn(&Interpreter) -> Result<()> + Sync,
{
    let interps = interpreters();
    if interps.is_empty() {
        eprintln!(
            "{test}: no interpreters provisioned; nothing to check (run tools/pythons/provision)"
        );
        return;
    }
    let jobs = std::env::var("PYSPY_TEST_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(3usize)
        .max(1);
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(interps.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(interp) = interps.get(i) else { break };
                let started = Instant::now();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(interp)));
                let message = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("{e:#}")),
                    Err(panic) => Some(format!(
                        "panicked: {}",
                        panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("?")
                    )),
                };
                eprintln!(
                    "{test}: {} {} ({:.1} s)",
                    interp.label(),
                    if message.is_none() { "ok" } else { "FAILED" },
                    started.elapsed().as_secs_f64()
                );
                if let Some(m) = message {
                    failures
                        .lock()
                        .unwrap()
                        .push((i, format!("--- {}:\n{m}", interp.label())));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        failures.sort();
        let list: Vec<String> = failures.into_iter().map(|(_, m)| m).collect();
        panic!(
            "{test}: {} of {} interpreters failed:\n{}",
            list.len(),
            interps.len(),
            list.join("\n")
        );
    }
}

/// Kills and reaps the child when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test script started by [`Interpreter::start`]; killed and reaped when dropped.
pub struct Running {
    pub guard: ChildGuard,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    pub argv: Vec<String>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Waits for the script's "ready" line and returns what follows "ready" on it (trimmed).
    pub fn wait_ready(&self) -> Result<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("ready") {
                        return Ok(rest.trim().to_string());
                    }
                }
                Err(_) => bail!(
                    "`{}` did not print \"ready\" within {:?}; its stderr:\n{}",
                    self.argv.join(" "),
                    READY_TIMEOUT,
                    self.stderr()
                ),
            }
        }
    }

    /// What the script wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// Waits for the child in a background thread (so it is reaped as soon as it exits, as a
/// real parent would) and returns its pid.
pub fn reap_in_background(running: Running) -> u32 {
    let pid = running.pid();
    std::thread::spawn(move || {
        let mut running = running;
        let _ = running.guard.0.wait();
    });
    pid
}

/// The built `pyspy-bpf` binary.
pub fn pyspy_bpf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pyspy-bpf"))
}

/// The result of a command run by [`run`].
pub struct Outcome {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// Error unless the command exited 0; the error shows the command and its output.
    pub fn ok(self) -> Result<Outcome> {
        if !self.status.success() {
            bail!("command failed ({}):\n{}", self.status, self.describe());
        }
        self.no_panic()
    }

    /// Error if the command panicked.
    pub fn no_panic(self) -> Result<Outcome> {
        if self.stderr.contains("panicked") {
            bail!("command panicked:\n{}", self.describe());
        }
        Ok(self)
    }

    pub fn describe(&self) -> String {
        format!(
            "$ {}\n[{} after {:.1} s]\n[stdout]\n{}\n[stderr]\n{}",
            self.cmdline,
            self.status,
            self.elapsed.as_secs_f64(),
            clip(&self.stdout, 4000),
            clip(&self.stderr, 4000)
        )
    }

    /// The first stderr line that starts with "Error:".
    pub fn error_line(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find(|l| l.trim_start().starts_with("Error:"))
    }
}

/// Shortens `s` to about `max` bytes for error messages.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n... ({} bytes more)", &s[..cut], s.len() - cut)
}

/// Runs `cmd` to completion with stdin closed, capturing its output; kills it after
/// `timeout` and returns an error then.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Outcome> {
    let cmdline = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {cmdline}"))?;
    let out = read_all_in_background(child.stdout.take().expect("piped stdout"));
    let err = read_all_in_background(child.stderr.take().expect("piped stderr"));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            bail!(
                "timed out after {:?} (killed): $ {cmdline}\n[stderr]\n{}",
                timeout,
                clip(&stderr, 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Outcome {
        cmdline,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    })
}

fn read_all_in_background(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `pyspy-bpf ARGS` with the default time limit.
pub fn pyspy(args: &[&str]) -> Result<Outcome> {
    run(pyspy_bpf().args(args), RUN_TIMEOUT)
}

/// The `# LINE:tag` markers of a script: tag -> 1-based line number.
pub fn markers(script: &Path) -> HashMap<String, u32> {
    let text = std::fs::read_to_string(script)
        .unwrap_or_else(|e| panic!("read {}: {e}", script.display()));
    let mut found = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(pos) = line.find("# LINE:") {
            let tag = line[pos + "# LINE:".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("");
            assert!(
                found.insert(tag.to_string(), i as u32 + 1).is_none(),
                "{}: marker LINE:{tag} appears twice",
                script.display()
            );
        }
    }
    found
}

/// The line of the `# LINE:tag` marker in `script` (a path, or a file in tests/scripts).
pub fn line_of(script: impl AsRef<Path>, tag: &str) -> u32 {
    let path = scripts_dir().join(script.as_ref());
    *markers(&path)
        .get(tag)
        .unwrap_or_else(|| panic!("{}: no marker LINE:{tag}", path.display()))
}

/// The line where `def NAME(` (or `async def NAME(`, or `class NAME`) starts in `script`: the
/// code object's first line for an undecorated function.
pub fn def_line(script: impl AsRef<Path>, name: &str) -> u32 {
    let path = scripts_dir().join(script.as_ref());
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        let l = l.strip_prefix("async ").unwrap_or(l);
        if l.starts_with(&format!("def {name}(")) || l.starts_with(&format!("class {name}")) {
            return i as u32 + 1;
        }
    }
    panic!("{}: no `def {name}(`", path.display())
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("pyspy-bpf-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One line of the raw (collapsed) format: frames root first, and the sample count.
#[derive(Debug, Clone)]
pub struct RawStack {
    pub frames: Vec<String>,
    pub count: u64,
}

impl RawStack {
    pub fn leaf(&self) -> Option<&str> {
        self.frames.last().map(String::as_str)
    }
    pub fn root(&self) -> Option<&str> {
        self.frames.first().map(String::as_str)
    }
}

/// Parses the raw format: `frame;frame;frame COUNT` per line, root first.
pub fn parse_raw(text: &str) -> Result<Vec<RawStack>> {
    let mut stacks = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (stack, count) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow!("raw line {}: no count: {line:?}", i + 1))?;
        let count: u64 = count
            .parse()
            .map_err(|_| anyhow!("raw line {}: bad count: {line:?}", i + 1))?;
        stacks.push(RawStack {
            frames: stack.split(';').map(str::to_string).collect(),
            count,
        });
    }
    Ok(stacks)
}

/// Reads and parses a raw profile written by `-o`.
pub fn read_raw(path: &Path) -> Result<Vec<RawStack>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read profile {}", path.display()))?;
    parse_raw(&text).with_context(|| format!("profile {}:\n{}", path.display(), clip(&text, 3000)))
}

/// Index (root first) of the first frame of `stack` for which `pred` holds.
pub fn position(stack: &RawStack, pred: impl Fn(&str) -> bool) -> Option<usize> {
    stack.frames.iter().position(|f| pred(f))
}

/// Samples of the stacks for which `pred` holds.
pub fn count<'a>(
    stacks: impl IntoIterator<Item = &'a RawStack>,
    pred: impl Fn(&RawStack) -> bool,
) -> u64 {
    stacks
        .into_iter()
        .filter(|s| pred(s))
        .map(|s| s.count)
        .sum()
}

/// `--native`: whether the stack starts at a native root, the program's or a thread's first
/// frame (the unwinder got all the way).
pub fn rooted(stack: &RawStack) -> bool {
    stack.root().is_some_and(|r| {
        [
            "_start (",
            "main (",
            "start_thread (",
            "clone3 (",
            "__clone3 (",
        ]
        .iter()
        .any(|p| r.starts_with(p))
    })
}

/// Sum of the counts.
pub fn total(stacks: &[RawStack]) -> u64 {
    stacks.iter().map(|s| s.count).sum()
}

/// The stack with the largest count.
pub fn heaviest(stacks: &[RawStack]) -> Option<&RawStack> {
    stacks.iter().max_by_key(|s| s.count)
}

/// A short rendering of the heaviest stacks, for error messages.
pub fn summary(stacks: &[RawStack]) -> String {
    let mut sorted: Vec<&RawStack> = stacks.iter().collect();
    sorted.sort_by(|a, b| b.count.cmp(&a.count));
    let lines: Vec<String> = sorted
        .iter()
        .take(12)
        .map(|s| format!("  {:>6} {}", s.count, s.frames.join(";")))
        .collect();
    format!(
        "{} stacks, {} samples; heaviest:\n{}",
        stacks.len(),
        total(stacks),
        lines.join("\n")
    )
}

/// True when this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// True in CI (`CI` set), where a test that cannot run must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok()
}

/// Whether a test of the BPF sampler can run (as root); outside CI it is skipped with a line
/// saying so, while in CI, which runs as root, not being root fails the test.
pub fn bpf_test_can_run(test: &str) -> bool {
    root_test_can_run(test, "the BPF sampler needs root")
}

/// Whether a test that needs root can run: as root; outside CI it is skipped with a line
/// saying `why`, while in CI, which runs as root, not being root fails the test.
pub fn root_test_can_run(test: &str, why: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!in_ci(), "{test}: CI must run this test as root ({why})");
    eprintln!("{test}: skipped, {why}");
    false
}

/// `sh -c 'echo $$ > PIDFILE; exec ARGV'`: the pid of a command the profiler starts is
/// written before the program runs, so a test can check it is gone afterwards
/// (`ensure_started_command_gone`).
pub fn command_with_pidfile(pidfile: &Path, argv: &[String]) -> Vec<String> {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo $$ > '{}'; exec {}",
            pidfile.display(),
            quoted.join(" ")
        ),
    ]
}

/// The pid in `pidfile` (see `command_with_pidfile`) must be gone, killed and reaped, now
/// that the profiler exited; `what` describes the profiler's run for the failure message.
/// A survivor is killed so the test leaves nothing behind.
pub fn ensure_started_command_gone(pidfile: &Path, what: &str) -> Result<()> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("the command never started:\n{what}"))?;
    let pid: u32 = text.trim().parse().context("pidfile")?;
    let state = proc_state(pid);
    if state.is_some() {
        kill_pid(pid);
    }
    anyhow::ensure!(
        state.is_none(),
        "the started command (pid {pid}) outlived the profiler (state {state:?}):\n{what}"
    );
    Ok(())
}

/// Sends SIGKILL to `pid` (for processes the test did not spawn itself, e.g. grandchildren).
pub fn kill_pid(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The process state letter from /proc/PID/stat (None when the process is gone).
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The process name (comm) of `pid`.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// `go tool pprof ARGS FILE`; in CI a missing `go` fails the test rather than skipping it.
pub fn go_pprof(args: &[&str], file: &Path) -> Option<String> {
    let has_go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_go {
        assert!(
            std::env::var("CI").is_err(),
            "go is not installed (apt-get install golang-go)"
        );
        eprintln!("SKIPPED: go tool pprof not installed (apt-get install golang-go)");
        return None;
    }
    let mut cmd = Command::new("go");
    cmd.args(["tool", "pprof"]).args(args).arg(file);
    // go needs a HOME (its cache), and must not try to reach the network for symbols.
    cmd.env("HOME", std::env::temp_dir())
        .env("PPROF_TMPDIR", std::env::temp_dir());
    let out = run(&mut cmd, Duration::from_secs(120)).expect("go tool pprof ran");
    assert!(out.status.success(), "{}", out.describe());
    Some(out.stdout)
}

/// The flat percentage `go tool pprof -top` gives `function`, if listed.
pub fn flat_percent(top: &str, function: &str) -> Option<f64> {
    top.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() >= 6 && cols[5..].join(" ") == function)
            .then(|| cols[1].trim_end_matches('%').parse().ok())
            .flatten()
    })
}

/// The counters `record --stats-json FILE` writes (src/sampler/stats.rs): what tests read
/// instead of the summary printed on stderr.
#[derive(Debug, serde::Deserialize)]
pub struct RunStats {
    pub sampler: String,
    pub samples: u64,
    pub python_samples: u64,
    pub python_errors: u64,
    pub frames_rejected: std::collections::BTreeMap<String, u64>,
    pub stacks_with_rejected_frames: u64,
    pub processes_attached: u64,
    pub python_attached: u64,
    pub processes_dropped: u64,
    pub processes_live: u64,
    pub counters: std::collections::BTreeMap<String, u64>,
    pub ended: String,
}

impl RunStats {
    pub fn read(path: &Path) -> Result<RunStats> {
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "parse {}: {}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    /// A named counter; absent counts as 0.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The sum of the counters named `PREFIX...` (`read_late.`, `lost.`).
    pub fn sum_of(&self, prefix: &str) -> u64 {
        self.counters
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Rejected Python frames, all reasons together.
    pub fn frames_rejected_total(&self) -> u64 {
        self.frames_rejected.values().sum()
    }
}
