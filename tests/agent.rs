//! `pyspy-bpf agent` end to end, as root with the real BPF sampler: windows of a real Python
//! program written to a spool and read back by `go tool pprof` (labels, window times,
//! functions, shares), sent to a Pyroscope-like receiver and to an OTLP receiver that decodes
//! with the `opentelemetry-proto` package, a receiver that is down and comes back, one that
//! fails in every way, SIGTERM's flush, SIGHUP's reload, and bad configs.
//!
//! The agent profiles every Python process on the host: each test looks only at its own
//! workload's pid. They run one at a time (`SERIAL`), so that one agent's cost does not
//! disturb another's timing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{
    flat_percent, go_pprof, interpreters, pyspy_bpf, root_test_can_run, run, scripts_dir,
    Interpreter, TempDir,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn python() -> Interpreter {
    interpreters()
        .into_iter()
        .find(|i| i.series == "3.11")
        .or_else(|| interpreters().into_iter().find(|i| !i.is_py2()))
        .expect("an interpreter (tools/pythons/provision)")
}

/// `two_workers.py SECONDS` with `env`, its pid.
struct Workload(Child);

impl Workload {
    fn start(python: &Interpreter, seconds: u32, env: &[(&str, &str)]) -> Workload {
        let mut cmd = Command::new(&python.path);
        cmd.arg(python.isolation_flag())
            .arg(scripts_dir().join("two_workers.py"))
            .arg(seconds.to_string())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Workload(cmd.spawn().expect("start two_workers.py"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running agent, its stderr collected.
struct Agent {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let mut child = pyspy_bpf()
            .arg("agent")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the agent");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Agent { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log has `needle` (or the agent exited, or `timeout`).
    fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.log().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then its exit status (within `timeout`) and its log.
    fn stop(mut self, timeout: Duration) -> (ExitStatus, String) {
        self.signal(15);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return (status, self.log());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "the agent did not stop within {timeout:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound, then released for the caller).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The agent's metrics as `name{labels} -> value`.
fn metrics(port: u16) -> HashMap<String, f64> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return HashMap::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// `go tool pprof -tags`: tag -> values.
fn tags(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some((tag, _)) = t.split_once(": Total") {
            current = Some(tag.to_string());
            out.entry(tag.to_string()).or_default();
        } else if let (Some(tag), Some((_, value))) = (&current, t.split_once("): ")) {
            out.get_mut(tag).unwrap().push(value.to_string());
        }
    }
    out
}

fn unix_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The spool's files of process `pid`, oldest first, with their window start (ms).
fn spool_files(dir: &Path, pid: u32) -> Vec<(u64, PathBuf)> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let stem = name.strip_suffix(".pb.gz")?;
            let mut parts = stem.rsplitn(3, '-');
            let start: u64 = parts.next()?.parse().ok()?;
            let file_pid: u32 = parts.next()?.parse().ok()?;
            (file_pid == pid).then_some((start, p))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn spool_windows_read_by_go_pprof_with_labels_times_and_shares() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-spool");
    let spool = dir.join("spool");
    let work = Workload::start(&python, 60, &[("PYROSCOPE_APPLICATION_NAME", "checkout")]);
    let port = free_port();
    let started = unix_secs();
    let mut agent = Agent::start(&[
        "--spool",
        spool.to_str().unwrap(),
        "--state-dir",
        dir.join("state").to_str().unwrap(),
        "--interval",
        "2s",
        "--label",
        "env=test",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(7));
    let m = metrics(port);
    assert!(m["pyspy_bpf_samples_total"] > 0.0, "{m:?}");
    assert!(
        m["pyspy_bpf_python_processes_attached_total"] >= 1.0,
        "{m:?}"
    );
    assert!(
        m[r#"pyspy_bpf_sink_exported_total{sink="spool",type="spool"}"#] >= 2.0,
        "{m:?}"
    );
    assert!(m["process_resident_memory_bytes"] > 0.0, "{m:?}");
    let before_stop = spool_files(&spool, work.pid()).len();
    let (status, log) = agent.stop(Duration::from_secs(30));
    let stopped = unix_secs();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("flushing the last window"), "{log}");

    let files = spool_files(&spool, work.pid());
    // SIGTERM wrote the window in progress.
    assert_eq!(files.len(), before_stop + 1, "{files:?}\n{log}");
    assert!(files.len() >= 4, "{files:?}\n{log}");
    // Names say the service; windows follow one another without a gap.
    for (_, path) in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("checkout-"), "{name}");
    }
    for pair in files.windows(2) {
        let gap = pair[1].0 as i64 - pair[0].0 as i64;
        assert!((1500..=3500).contains(&gap), "windows 2 s apart: {files:?}");
    }
    let first_start = files[0].0 as f64 / 1000.0;
    assert!(
        first_start >= started - 1.0 && first_start <= stopped,
        "{first_start} {started}"
    );

    let (_, middle) = &files[1];
    let Some(top) = go_pprof(&["-top"], middle) else {
        return;
    };
    assert!(top.contains("Type: cpu"), "{top}");
    // Shares over every window (go tool pprof merges the files): one 2 s window holds ~40
    // samples at 19 Hz, and two threads taking turns at the GIL can split one unevenly.
    let mut merged_args: Vec<String> = vec!["-top".into()];
    merged_args.extend(files.iter().skip(1).map(|(_, f)| f.display().to_string()));
    let last = PathBuf::from(merged_args.pop().unwrap());
    let merged_refs: Vec<&str> = merged_args.iter().map(String::as_str).collect();
    let all = go_pprof(&merged_refs, &last).unwrap();
    let alpha = flat_percent(&all, "alpha_work").unwrap_or_else(|| panic!("alpha_work in:\n{all}"));
    let beta = flat_percent(&all, "beta_work").unwrap_or_else(|| panic!("beta_work in:\n{all}"));
    assert!(alpha > 20.0 && beta > 20.0 && alpha + beta > 85.0, "{all}");
    // A 2 s window, not the whole run.
    let duration: f64 = top
        .lines()
        .find_map(|l| {
            l.strip_prefix("Duration: ")?
                .split('s')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("Duration in:\n{top}"));
    assert!((1.5..=3.5).contains(&duration), "{top}");
    let tags = tags(&go_pprof(&["-tags"], middle).unwrap());
    let value = |k: &str| tags.get(k).cloned().unwrap_or_default();
    assert_eq!(value("service_name"), vec!["checkout"], "{tags:?}");
    assert_eq!(value("env"), vec!["test"], "{tags:?}");
    assert_eq!(value("pid"), vec![work.pid().to_string()], "{tags:?}");
    assert!(value("python_version")[0].starts_with("3.11"), "{tags:?}");
    assert!(value("process")[0].starts_with("python3"), "{tags:?}");
    let threads = value("thread_name");
    assert!(
        threads.contains(&"alpha".to_string()) && threads.contains(&"beta".to_string()),
        "{tags:?}"
    );
    assert!(!value("hostname").is_empty(), "{tags:?}");
    // `convert` opens it too.
    let svg = dir.join("w.svg");
    let out = run(
        pyspy_bpf().args([
            "convert",
            middle.to_str().unwrap(),
            "-o",
            svg.to_str().unwrap(),
        ]),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(out.status.success(), "{}", out.describe());
    assert!(std::fs::read_to_string(&svg)
        .unwrap()
        .contains("alpha_work"));
}

#[test]
fn sighup_reloads_labels_and_a_bad_reload_keeps_the_running_config() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-hup");
    let spool = dir.join("spool");
    let config = dir.join("agent.toml");
    let write_config = |env: &str, extra: &str| {
        std::fs::write(
            &config,
            format!(
                "interval = \"2s\"\nstate_dir = \"{}\"\n{extra}\n[labels]\nenv = \"{env}\"\n[[sink]]\ntype = \"spool\"\ndir = \"{}\"\n",
                dir.join("state").display(),
                spool.display()
            ),
        )
        .unwrap()
    };
    write_config("before", "");
    let work = Workload::start(&python, 60, &[]);
    let mut agent = Agent::start(&["--config", config.to_str().unwrap()]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    write_config("after", "");
    agent.signal(1);
    assert!(
        agent.wait_for_log("config reloaded", Duration::from_secs(10)),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(5));
    // A broken file is refused; the agent goes on with what it had.
    write_config("broken", "no_such_key = 1");
    agent.signal(1);
    assert!(
        agent.wait_for_log("config reload refused", Duration::from_secs(10)),
        "{}",
        agent.log()
    );
    assert!(agent.log().contains("no_such_key"), "{}", agent.log());
    std::thread::sleep(Duration::from_secs(3));
    let (status, log) = agent.stop(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let files = spool_files(&spool, work.pid());
    let envs: Vec<String> = files
        .iter()
        .filter_map(|(_, f)| Some(tags(&go_pprof(&["-tags"], f)?).get("env")?.join(",")))
        .collect();
    if envs.is_empty() && Command::new("go").arg("version").output().is_err() {
        return;
    }
    assert_eq!(envs.first().map(String::as_str), Some("before"), "{envs:?}");
    assert_eq!(
        envs.last().map(String::as_str),
        Some("after"),
        "{envs:?}\n{log}"
    );
    assert!(!envs.iter().any(|e| e == "broken"), "{envs:?}");
}

/// Bad configs: one line naming the file and key, exit 1, nothing started, nothing written.
#[test]
fn bad_configs_are_one_line_errors_before_anything_starts() {
    let dir = TempDir::new("agent-config");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "unknown key",
            "rte = 19\n[[sink]]\ntype = \"spool\"\ndir = \"/tmp/x\"\n".into(),
            "rte",
        ),
        (
            "bad url",
            "[[sink]]\ntype = \"pyroscope\"\nurl = \"localhost:4040\"\n".into(),
            "http://",
        ),
        ("no sink", "rate = 19\n".into(), "no sink"),
        (
            "bad sink type",
            "[[sink]]\ntype = \"kafka\"\n".into(),
            "kafka",
        ),
        (
            "bad rate",
            "rate = 0\n[[sink]]\ntype = \"spool\"\ndir = \"/tmp/x\"\n".into(),
            "rate",
        ),
        ("not toml", "rate = = 19\n".into(), "agent.toml"),
    ];
    for (what, text, needle) in cases {
        let config = dir.join("agent.toml");
        std::fs::write(&config, &text).unwrap();
        let out = run(
            pyspy_bpf().args(["agent", "--config", config.to_str().unwrap()]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.describe());
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(
            err.contains("agent.toml") && err.contains(needle),
            "{what}: {err}"
        );
        assert!(!err.contains("sampling"), "{what}: {err}");
    }
    let out = run(
        pyspy_bpf().args(["agent", "--config", "/nonexistent.toml"]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("/nonexistent.toml"),
        "{}",
        out.describe()
    );
}

/// A spool the agent may not trust (a directory another user can write) or cannot create is
/// an error before sampling starts; nothing is written there.
#[test]
fn an_untrusted_or_unwritable_spool_is_refused() {
    if !root_test_can_run("agent", "the checks are about what root may write") {
        return;
    }
    let _serial = serial();
    let dir = TempDir::new("agent-badspool");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (spool, needle) in [
        (shared.join("spool"), "may write"),
        (file.join("spool"), "a-file"),
    ] {
        let out = run(
            pyspy_bpf().args([
                "agent",
                "--spool",
                spool.to_str().unwrap(),
                "--state-dir",
                dir.join("state").to_str().unwrap(),
            ]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", out.describe());
        assert!(
            out.stderr.contains("spool") && out.stderr.contains(needle),
            "{}",
            out.describe()
        );
        assert!(!spool.exists(), "{}", spool.display());
    }
}

/// The systemd unit's capabilities are enough: the agent run as root's uid with only the
/// unit's `CapabilityBoundingSet` (via `setpriv`, as systemd sets it) still records Python
/// stacks.
#[test]
fn the_systemd_units_capabilities_suffice() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/pyspy-bpf-agent.service"),
    )
    .unwrap();
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet in the unit")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    assert!(caps.len() >= 3, "{caps:?}");
    let python = python();
    let dir = TempDir::new("agent-caps");
    let spool = dir.join("spool");
    let work = Workload::start(&python, 60, &[]);
    let mut child = Command::new("setpriv")
        .arg(format!("--bounding-set=-all,{}", caps.join(",")))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_pyspy-bpf"))
        .args([
            "agent",
            "--interval",
            "2s",
            "--spool",
            spool.to_str().unwrap(),
        ])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    std::thread::sleep(Duration::from_secs(7));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let mut log = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut log);
    assert!(status.success(), "{status:?}\n{log}");
    let files = spool_files(&spool, work.pid());
    assert!(files.len() >= 2, "{files:?}\n{log}");
    if let Some(top) = go_pprof(&["-top"], &files[1].1) {
        assert!(
            top.contains("alpha_work") && top.contains("beta_work"),
            "{top}"
        );
    }
}

/// A receiver script (tests/scripts/*_receiver.py) on 127.0.0.1: its port, its output
/// directory, and the control file that chooses how it answers (`ok`, `500`, `hang`,
/// `close`, `400`).
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    control: PathBuf,
}

impl Receiver {
    fn start(python: &Path, script: &str, dir: &Path, port: Option<u16>) -> Receiver {
        let out = dir.join(format!("{script}-out"));
        let control = dir.join(format!("{script}-control"));
        let port_file = dir.join(format!("{script}-port"));
        let _ = std::fs::remove_file(&port_file);
        std::fs::create_dir_all(&out).unwrap();
        let mut cmd = Command::new(python);
        cmd.arg(scripts_dir().join(format!("{script}.py")))
            .arg("--port-file")
            .arg(&port_file)
            .arg("--out")
            .arg(&out)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null());
        if let Some(port) = port {
            cmd.arg("--port").arg(port.to_string());
        }
        let child = cmd.spawn().expect("start the receiver");
        let start = Instant::now();
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{script} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Receiver {
            child,
            port,
            out,
            control,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, behaviour: &str) {
        std::fs::write(&self.control, behaviour).unwrap();
    }

    /// The JSON summaries written so far, in order.
    fn received(&self) -> Vec<serde_json::Value> {
        self.received_named().into_iter().map(|(_, j)| j).collect()
    }

    /// The JSON summaries written so far, in order, with their file stems (`0001`).
    fn received_named(&self) -> Vec<(String, serde_json::Value)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .filter_map(|p| {
                let stem = p.file_stem()?.to_str()?.to_string();
                Some((
                    stem,
                    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?,
                ))
            })
            .collect()
    }

    fn requests_log(&self) -> String {
        std::fs::read_to_string(self.out.join("requests.log")).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python with `opentelemetry-proto` (tests/requirements-otlp.txt), in a venv made once under
/// target/ (.ci/run makes it before the tests).
fn otlp_python() -> PathBuf {
    static MADE: Mutex<()> = Mutex::new(());
    let _lock = MADE.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv-otlp");
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if !ready.exists() {
        let requirements =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/requirements-otlp.txt");
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "-r"])
                .arg(&requirements)
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot make {} with {}",
            venv.display(),
            requirements.display()
        );
        std::fs::write(&ready, "").unwrap();
    }
    python
}

/// The system python3 (the Pyroscope receiver needs only the standard library).
fn plain_python() -> PathBuf {
    PathBuf::from("python3")
}

/// Waits until `done` or `timeout`.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// The Pyroscope receiver's uploads for `pid`: (query, labels, headers, profile path).
fn pyroscope_uploads(r: &Receiver, pid: u32) -> Vec<(serde_json::Value, PathBuf)> {
    r.received_named()
        .into_iter()
        .filter(|(_, j)| j["labels"]["pid"].as_str() == Some(&pid.to_string()))
        .map(|(n, j)| (j, r.out.join(format!("{n}.pb.gz"))))
        .collect()
}

#[test]
fn pyroscope_sink_uploads_labelled_windows_that_go_pprof_reads() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-pyroscope");
    let receiver = Receiver::start(&plain_python(), "pyroscope_receiver", dir.path(), None);
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"2s\"\nstate_dir = \"{}\"\n[labels]\nenv = \"test\"\n[[sink]]\ntype = \"pyroscope\"\nurl = \"{}\"\ntenant = \"team-a\"\nbearer_token_file = \"{}\"\n",
            dir.join("state").display(),
            receiver.url(),
            token.display()
        ),
    )
    .unwrap();
    let work = Workload::start(&python, 60, &[("OTEL_SERVICE_NAME", "payments")]);
    let started = unix_secs();
    let mut agent = Agent::start(&["--config", config.to_str().unwrap()]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(7));
    let (status, log) = agent.stop(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let uploads = pyroscope_uploads(&receiver, work.pid());
    assert!(
        uploads.len() >= 3,
        "{uploads:?}\n{log}\n{}",
        receiver.requests_log()
    );
    for (j, _) in &uploads {
        assert_eq!(j["app"], "payments", "{j}");
        assert_eq!(j["labels"]["env"], "test", "{j}");
        assert!(
            j["labels"]["python_version"]
                .as_str()
                .unwrap()
                .starts_with("3.11"),
            "{j}"
        );
        assert_eq!(j["query"]["format"], "pprof", "{j}");
        assert_eq!(j["query"]["sampleRate"], "19", "{j}");
        assert_eq!(j["headers"]["X-Scope-OrgID"], "team-a", "{j}");
        assert_eq!(j["headers"]["Authorization"], "Bearer s3cret", "{j}");
        let from: f64 = j["query"]["from"].as_str().unwrap().parse().unwrap();
        let until: f64 = j["query"]["until"].as_str().unwrap().parse().unwrap();
        assert!(
            from >= started.floor() - 1.0 && until > from && until - from <= 4.0,
            "{j}"
        );
    }
    // Windows follow one another.
    let froms: Vec<u64> = uploads
        .iter()
        .map(|(j, _)| j["query"]["from"].as_str().unwrap().parse().unwrap())
        .collect();
    for pair in froms.windows(2) {
        assert!((1..=4).contains(&(pair[1] - pair[0])), "{froms:?}");
    }
    // Every upload read by go tool pprof (merged): one 2 s window is too few samples for
    // shares.
    let mut args: Vec<String> = vec!["-top".into()];
    args.extend(uploads.iter().map(|(_, f)| f.display().to_string()));
    let last = PathBuf::from(args.pop().unwrap());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(top) = go_pprof(&refs, &last) else {
        return;
    };
    let alpha = flat_percent(&top, "alpha_work").unwrap_or_else(|| panic!("alpha_work in:\n{top}"));
    let beta = flat_percent(&top, "beta_work").unwrap_or_else(|| panic!("beta_work in:\n{top}"));
    assert!(alpha > 20.0 && beta > 20.0 && alpha + beta > 85.0, "{top}");
}

#[test]
fn otlp_sink_requests_decode_with_opentelemetry_proto() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-otlp");
    let receiver = Receiver::start(&otlp_python(), "otlp_receiver", dir.path(), None);
    let work = Workload::start(&python, 60, &[("PYROSCOPE_APPLICATION_NAME", "search")]);
    let mut agent = Agent::start(&[
        "--otlp",
        &receiver.url(),
        "--interval",
        "2s",
        "--label",
        "env=test",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
    ]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(7));
    let (status, log) = agent.stop(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    let requests = receiver.received();
    assert!(requests.len() >= 3, "{log}\n{}", receiver.requests_log());
    let pid = i64::from(work.pid());
    let mut ours = Vec::new();
    for r in &requests {
        assert!(r["errors"].as_array().is_none_or(|e| e.is_empty()), "{r}");
        for (table, ok) in r["dictionary_checks"].as_object().unwrap() {
            assert_eq!(
                ok, true,
                "dictionary table {table}: index 0 is the zero value: {r}"
            );
        }
        for rp in r["resource_profiles"].as_array().unwrap() {
            if rp["resource"]["process.pid"].as_i64() == Some(pid) {
                ours.push(rp.clone());
            }
        }
    }
    assert!(ours.len() >= 3, "{requests:?}");
    let mut alpha = 0i64;
    let mut beta = 0i64;
    let mut total = 0i64;
    let mut held = 0i64;
    for rp in &ours {
        let res = &rp["resource"];
        assert_eq!(res["service.name"], "search", "{res}");
        assert_eq!(res["env"], "test", "{res}");
        assert!(
            res["host.name"].as_str().is_some_and(|h| !h.is_empty()),
            "{res}"
        );
        assert!(
            res["process.executable.name"]
                .as_str()
                .unwrap()
                .starts_with("python3"),
            "{res}"
        );
        assert!(
            res["process.runtime.version"]
                .as_str()
                .unwrap()
                .starts_with("3.11"),
            "{res}"
        );
        for p in rp["profiles"].as_array().unwrap() {
            assert_eq!(
                p["sample_type"],
                serde_json::json!(["cpu", "nanoseconds"]),
                "{p}"
            );
            assert!(p["time_unix_nano"].as_u64().unwrap() > 0, "{p}");
            let duration = p["duration_nano"].as_u64().unwrap() as f64 / 1e9;
            assert!(duration > 0.0 && duration < 4.0, "{p}");
            for s in p["samples"].as_array().unwrap() {
                let frames: Vec<&str> = s["frames"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|f| f.as_str())
                    .collect();
                let value = s["value"].as_i64().unwrap();
                total += value;
                // Leaf first.
                match frames.first() {
                    Some(&"alpha_work") => alpha += value,
                    Some(&"beta_work") => beta += value,
                    _ => {}
                }
                if frames.first().is_some_and(|f| f.ends_with("_work")) {
                    assert_eq!(s["frame_types"][0], "cpython", "{s}");
                    assert!(s["attributes"]["thread.name"].as_str().is_some(), "{s}");
                    // Running Python code: the thread held the GIL (read in BPF at the sample).
                    match s["attributes"]["gil"].as_str() {
                        Some("held") => held += value,
                        Some("released") => {}
                        other => panic!("gil attribute {other:?}: {s}"),
                    }
                    assert!(
                        s["files"][0].as_str().unwrap().ends_with("two_workers.py"),
                        "{s}"
                    );
                }
            }
        }
    }
    let share = |n: i64| 100.0 * n as f64 / total.max(1) as f64;
    assert!(
        share(alpha) > 25.0 && share(beta) > 25.0 && share(alpha + beta) > 85.0,
        "alpha {alpha} beta {beta} of {total}"
    );
    assert!(
        held * 10 >= (alpha + beta) * 8,
        "the workers held the GIL in {held} of {} in their loops",
        alpha + beta
    );
}

/// A receiver that is down for 20 s and then comes back loses no window: what failed waits in
/// the backlog and is sent, oldest first, once it answers again.
#[test]
fn a_receiver_down_for_20_s_loses_no_window() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-down");
    let port = free_port();
    let work = Workload::start(&python, 120, &[]);
    let metrics_port = free_port();
    let mut agent = Agent::start(&[
        "--pyroscope",
        &format!("http://127.0.0.1:{port}"),
        "--interval",
        "2s",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(20));
    let m = metrics(metrics_port);
    let failed = m[r#"pyspy_bpf_sink_failed_total{sink="pyroscope",type="pyroscope"}"#];
    let queued = m[r#"pyspy_bpf_sink_queued{sink="pyroscope",type="pyroscope"}"#];
    assert!(failed >= 2.0 && queued >= 5.0, "{m:?}\n{}", agent.log());
    assert!(
        m[r#"pyspy_bpf_sink_backlog_bytes{sink="pyroscope",type="pyroscope"}"#] > 0.0,
        "{m:?}"
    );
    // The receiver comes up on the port the agent was given.
    let receiver = Receiver::start(
        &plain_python(),
        "pyroscope_receiver",
        dir.path(),
        Some(port),
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            metrics(metrics_port).get(r#"pyspy_bpf_sink_queued{sink="pyroscope",type="pyroscope"}"#)
                == Some(&0.0)
        }),
        "backlog not drained: {:?}\n{}",
        metrics(metrics_port),
        agent.log()
    );
    let (status, log) = agent.stop(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(log.contains("delivering again"), "{log}");
    let m_dropped = log.contains("dropped");
    assert!(!m_dropped, "{log}");
    let mut froms: Vec<u64> = pyroscope_uploads(&receiver, work.pid())
        .iter()
        .map(|(j, _)| j["query"]["from"].as_str().unwrap().parse().unwrap())
        .collect();
    // Sent oldest first.
    assert!(froms.windows(2).all(|p| p[0] <= p[1]), "{froms:?}");
    froms.dedup();
    // 20 s down with 2 s windows: at least 8 windows waited in the backlog.
    assert!(froms.len() >= 8, "{froms:?}");
    // No gap: every window from the first to the last arrived.
    for pair in froms.windows(2) {
        assert!(pair[1] - pair[0] <= 3, "a window is missing: {froms:?}");
    }
}

/// A receiver that answers 500, hangs, or closes the connection is retried and counted; the
/// windows arrive once it answers again.
#[test]
fn failing_receivers_are_retried_and_counted() {
    if !root_test_can_run("agent", "the agent needs root (BPF)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-flaky");
    let receiver = Receiver::start(&plain_python(), "pyroscope_receiver", dir.path(), None);
    let work = Workload::start(&python, 120, &[]);
    let metrics_port = free_port();
    let mut agent = Agent::start(&[
        "--pyroscope",
        &receiver.url(),
        "--interval",
        "2s",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    let failed = || metrics(metrics_port)[r#"pyspy_bpf_sink_failed_total{sink="pyroscope",type="pyroscope"}"#];
    for behaviour in ["500", "close", "hang"] {
        receiver.set(behaviour);
        let before = failed();
        assert!(
            wait_until(Duration::from_secs(60), || failed() > before),
            "{behaviour}: no failed attempt counted\n{}",
            agent.log()
        );
        assert!(
            receiver.requests_log().contains(behaviour),
            "{}",
            receiver.requests_log()
        );
    }
    receiver.set("ok");
    assert!(
        wait_until(Duration::from_secs(90), || {
            metrics(metrics_port).get(r#"pyspy_bpf_sink_queued{sink="pyroscope",type="pyroscope"}"#)
                == Some(&0.0)
        }),
        "not delivered after the receiver recovered: {:?}\n{}",
        metrics(metrics_port),
        agent.log()
    );
    let (status, log) = agent.stop(Duration::from_secs(40));
    assert!(status.success(), "{log}");
    assert!(
        log.contains("HTTP 500") && log.contains("retrying"),
        "{log}"
    );
    let uploads = pyroscope_uploads(&receiver, work.pid());
    assert!(uploads.len() >= 5, "{}", receiver.requests_log());
}

/// Unmounts a tmpfs when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A spool on a full disk: the cap above the free space is said at start; writes that fail
/// are counted and logged, retried, and succeed once there is room again. Nothing is written
/// outside the spool.
#[test]
fn a_full_disk_is_a_counted_logged_degradation() {
    if !root_test_can_run("agent", "the agent needs root (BPF, mount)") {
        return;
    }
    let _serial = serial();
    let python = python();
    let dir = TempDir::new("agent-full");
    let disk = dir.join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mount a 1 MiB tmpfs at {}", disk.display());
    let _mount = Mount(disk.clone());
    let spool = disk.join("spool");
    let work = Workload::start(&python, 120, &[]);
    let metrics_port = free_port();
    let mut agent = Agent::start(&[
        "--spool",
        spool.to_str().unwrap(),
        "--interval",
        "2s",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
    ]);
    assert!(
        agent.wait_for_log("agent: sampling", Duration::from_secs(30)),
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains("more than the disk's free space"),
        "{}",
        agent.log()
    );
    // Fill the disk.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let key = r#"pyspy_bpf_sink_failed_total{sink="spool",type="spool"}"#;
    assert!(
        wait_until(Duration::from_secs(30), || metrics(metrics_port)
            .get(key)
            .is_some_and(|&v| v >= 1.0)),
        "{:?}\n{}",
        metrics(metrics_port),
        agent.log()
    );
    assert!(
        agent.log().contains("No space left on device"),
        "{}",
        agent.log()
    );
    let written_while_full = spool_files(&spool, work.pid()).len();
    std::fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || {
            metrics(metrics_port).get(r#"pyspy_bpf_sink_queued{sink="spool",type="spool"}"#)
                == Some(&0.0)
                && spool_files(&spool, work.pid()).len() > written_while_full + 1
        }),
        "{:?}\n{}",
        metrics(metrics_port),
        agent.log()
    );
    let (status, log) = agent.stop(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    // Only the spool (and no temporary file left behind) on that disk.
    let entries: Vec<String> = std::fs::read_dir(&disk)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["spool"], "{entries:?}");
    let leftovers: Vec<String> = std::fs::read_dir(&spool)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".pb.gz"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
