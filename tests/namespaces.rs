//! Python processes in a PID namespace of their own (`unshare --pid`, the mechanism of every
//! Docker / Kubernetes container), profiled from the host by their HOST pid in every mode:
//! `record` (user space, BPF, `--all`, `--native` both ways), `dump` and `top`. Their thread
//! states hold the namespace's thread ids; everything shown must use the host's. Also a
//! container root made with `pivot_root`, where the interpreter's path exists only inside
//! the namespace (files must be read through `/proc/PID/root`). Needs root (`unshare`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::*;
use serde::Deserialize;

/// A script started under `unshare --fork --pid --mount-proc`: the interpreter is pid 1 of
/// its namespace; `host_pid` is its pid on the host. Killed (with its namespace) on drop.
struct NsTarget {
    unshare: ChildGuard,
    host_pid: u32,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    _root: Option<TempDir>,
}

impl NsTarget {
    /// `script` (in tests/scripts) under `interp` in a new PID namespace.
    fn start(interp: &Interpreter, script: &str, args: &[&str]) -> Result<NsTarget> {
        let mut cmd = Command::new("unshare");
        cmd.args(["--fork", "--kill-child", "--pid", "--mount-proc"])
            .args(interp.argv(&scripts_dir().join(script), args));
        NsTarget::spawn(cmd, None)
    }

    /// `busy.py` in a container-like root: a new mount and PID namespace whose root (after
    /// `pivot_root`, or `chroot` inside the new mount namespace) holds the interpreter's provisioned root at `/opt/py` — a path that does
    /// not exist on the host — and the test scripts at `/mnt`. (The provisioned binaries
    /// name their loader and libraries by their host paths, so the root is mounted there too;
    /// the executable itself is started as `/opt/py/...`.) After a `chroot` (not a pivot) the
    /// maps name files relative to the mount namespace's root, not the process's: paths that
    /// do not lead to the file under `/proc/PID/root`.
    fn start_in_root(interp: &Interpreter, root_change: RootChange) -> Result<NsTarget> {
        let provisioned = interp
            .path
            .ancestors()
            .nth(3)
            .context("interpreter path has no root")?
            .to_path_buf();
        let exe_in_root = Path::new("/opt/py").join(
            interp
                .path
                .strip_prefix(&provisioned)
                .context("interpreter outside its root")?,
        );
        ensure!(
            !exe_in_root.exists(),
            "{} exists on the host: the test would not tell",
            exe_in_root.display()
        );
        let dir = TempDir::new("nsroot");
        let root = dir.join("root");
        let same_path = root.join(provisioned.strip_prefix("/").unwrap_or(&provisioned));
        for d in [
            root.join("opt/py"),
            root.join("mnt"),
            root.join("old"),
            same_path.clone(),
        ] {
            std::fs::create_dir_all(&d).with_context(|| format!("mkdir {}", d.display()))?;
        }
        let q = |p: &Path| format!("'{}'", p.display());
        let enter = match root_change {
            RootChange::Pivot => "cd {r}; pivot_root . old; exec",
            RootChange::Chroot => "exec chroot {r}",
        };
        let script = format!(
            "set -e; mount --bind {r} {r}; mount --bind {p} {r}/opt/py; mount --bind {p} {same}; \
             mount --bind {scripts} {r}/mnt; {enter} {exe} {flag} /mnt/busy.py",
            enter = enter.replace("{r}", &q(&root)),
            r = q(&root),
            p = q(&provisioned),
            same = q(&same_path),
            scripts = q(&scripts_dir()),
            exe = exe_in_root.display(),
            flag = interp.isolation_flag(),
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--fork",
            "--kill-child",
            "--pid",
            "--mount",
            "--mount-proc",
            "sh",
            "-c",
            &script,
        ]);
        NsTarget::spawn(cmd, Some(dir))
    }

    fn spawn(mut cmd: Command, root: Option<TempDir>) -> Result<NsTarget> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawn unshare")?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let mut stderr = child.stderr.take().context("piped stderr")?;
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
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            *sink.lock().unwrap() = s;
        });
        let unshare = ChildGuard(child);
        // `unshare --fork` forks once: the interpreter (pid 1 inside) is its child.
        let deadline = Instant::now() + READY_TIMEOUT;
        let host_pid = loop {
            if let Some(pid) = children_of(unshare.pid())
                .into_iter()
                .find(|&p| ns_pids(p).is_some_and(|ids| ids.len() > 1 && ids.last() == Some(&1)))
            {
                break pid;
            }
            ensure!(
                Instant::now() < deadline,
                "no process in a new PID namespace under unshare {}",
                unshare.pid()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(NsTarget {
            unshare,
            host_pid,
            lines,
            stderr: stderr_text,
            _root: root,
        })
    }

    /// Waits for the script's "ready" line and returns what follows it.
    fn wait_ready(&self) -> Result<String> {
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
                    "pid {} (in its namespace) did not print \"ready\"; stderr:\n{}",
                    self.host_pid,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Host tid of each thread, by its tid inside the namespace.
    fn host_tids(&self) -> HashMap<u32, u32> {
        let mut out = HashMap::new();
        let Ok(dir) = std::fs::read_dir(format!("/proc/{}/task", self.host_pid)) else {
            return out;
        };
        for tid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
            let status =
                std::fs::read_to_string(format!("/proc/{}/task/{tid}/status", self.host_pid))
                    .unwrap_or_default();
            if let Some(inner) = parse_nspid(&status).and_then(|ids| ids.last().copied()) {
                out.insert(inner, tid);
            }
        }
        out
    }
}

impl Drop for NsTarget {
    fn drop(&mut self) {
        // `--kill-child` kills the namespace's init when unshare dies; kill it first anyway.
        kill_pid(self.host_pid);
        let _ = self.unshare.0.kill();
        let _ = self.unshare.0.wait();
    }
}

/// How `NsTarget::start_in_root` enters its root.
#[derive(Debug, Clone, Copy)]
enum RootChange {
    /// As container runtimes do: the mount namespace's root is the process's root.
    Pivot,
    /// The process's root is a directory of its mount namespace.
    Chroot,
}

fn parse_nspid(status: &str) -> Option<Vec<u32>> {
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().map(|s| s.parse().ok()).collect()
}

fn ns_pids(pid: u32) -> Option<Vec<u32>> {
    parse_nspid(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

/// New namespaces (and the BPF sampler) need root; CI runs as root and never skips.
fn can_run(test: &str) -> bool {
    root_test_can_run(test, "unshare --pid needs root")
}

/// The frames busy.py must show, leaf first: level_b at its loop, level_a, main.
fn busy_frames() -> [String; 3] {
    let script = scripts_dir().join("busy.py");
    [
        format!("level_b (busy.py:{})", line_of(&script, "busy")),
        format!("level_a (busy.py:{})", line_of(&script, "call_b")),
        format!("main (busy.py:{})", line_of(&script, "call_a")),
    ]
}

/// Whether `stack` holds main -> level_a -> level_b in that order (root first).
fn has_busy_chain(stack: &RawStack) -> bool {
    let [b, a, m] = busy_frames();
    let at = |name: &str| position(stack, |f| f == name);
    matches!((at(&m), at(&a), at(&b)), (Some(x), Some(y), Some(z)) if x < y && y < z)
}

/// `record -f raw ARGS` for `secs` seconds; the stacks and the profiler's stderr.
fn record(args: &[&str], secs: &str) -> Result<(Vec<RawStack>, String)> {
    record_with_stats(args, secs).map(|(stacks, stderr, _)| (stacks, stderr))
}

/// `record`, and the counters it wrote with `--stats-json`.
fn record_with_stats(args: &[&str], secs: &str) -> Result<(Vec<RawStack>, String, RunStats)> {
    let dir = TempDir::new("nsrec");
    let out = dir.join("out.txt");
    let out_s = out.display().to_string();
    let stats = dir.join("stats.json");
    let stats_s = stats.display().to_string();
    let mut all = vec![
        "record",
        "-d",
        secs,
        "-f",
        "raw",
        "-o",
        &out_s,
        "--stats-json",
        &stats_s,
    ];
    all.extend_from_slice(args);
    let outcome = pyspy(&all)?.ok()?;
    let stacks = read_raw(&out).with_context(|| outcome.describe())?;
    let stats = RunStats::read(&stats).with_context(|| outcome.describe())?;
    Ok((stacks, outcome.stderr, stats))
}

/// Most samples show busy.py's call chain with its real lines, and nothing warns.
fn expect_busy(what: &str, stacks: &[RawStack], stderr: &str) -> Result<()> {
    let busy = count(stacks, has_busy_chain);
    let all = total(stacks);
    ensure!(
        all >= 5 && busy * 100 >= all * 80,
        "{what}: {busy} of {all} samples show main -> level_a -> level_b ({:?}):\n{}\n{stderr}",
        busy_frames(),
        summary(stacks)
    );
    ensure!(!stderr.contains("warning"), "{what}: warned:\n{stderr}");
    Ok(())
}

/// `record --mode userspace` and `--mode bpf` by host pid, with `-t`: busy.py's frames and
/// lines, the main thread rooted under its HOST tid (= the host pid), and in BPF mode every
/// Python stack walked in BPF (its threads registered under host tids).
#[test]
fn record_by_host_pid() {
    if !can_run("record_by_host_pid") {
        return;
    }
    for_each_interpreter("record_by_host_pid", |interp| {
        let target = NsTarget::start(interp, "busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.host_pid.to_string();
        let thread_root = format!(" ({pid})");
        for mode in ["userspace", "bpf"] {
            let (stacks, stderr, stats) =
                record_with_stats(&["--mode", mode, "-t", "-p", &pid], "2")?;
            expect_busy(mode, &stacks, &stderr)?;
            let rooted = count(&stacks, |s| {
                has_busy_chain(s)
                    && s.root()
                        .is_some_and(|r| r.starts_with("thread \"") && r.ends_with(&thread_root))
            });
            ensure!(
                rooted == count(&stacks, has_busy_chain),
                "{mode}: busy samples not all under the thread root `thread \"..\"{thread_root}`:\n{}",
                summary(&stacks)
            );
            if mode == "bpf" {
                let (in_bpf, by_user) =
                    (stats.counter("walked_in_bpf"), stats.sum_of("read_late."));
                ensure!(
                    in_bpf > 0 && by_user == 0,
                    "bpf: {in_bpf} stacks walked in BPF, {by_user} read by user space:\n{stats:?}\n{stderr}"
                );
            }
        }
        Ok(())
    });
}

/// `record --native` (BPF and user space) by host pid: native frames from the program's
/// start down to the eval loop, with busy.py's Python frames in their place.
#[test]
fn native_by_host_pid() {
    if !can_run("native_by_host_pid") {
        return;
    }
    for_each_interpreter("native_by_host_pid", |interp| {
        let target = NsTarget::start(interp, "busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.host_pid.to_string();
        for mode in ["bpf", "userspace"] {
            let (stacks, stderr) = record(
                &["--mode", mode, "--native", "--native-all", "-p", &pid],
                "2",
            )?;
            expect_busy(&format!("{mode} --native"), &stacks, &stderr)?;
            let good = count(&stacks, |s| has_busy_chain(s) && rooted(s));
            ensure!(
                good * 100 >= count(&stacks, has_busy_chain) * 80,
                "{mode} --native: only {good} busy samples unwound to the program's start:\n{}",
                summary(&stacks)
            );
        }
        Ok(())
    });
}

/// One process's threads from `dump --json` (py-spy's schema: an array of threads).
#[derive(Debug)]
struct DumpJson {
    pid: u32,
    executable: String,
    threads: Vec<ThreadJson>,
}

#[derive(Debug, Deserialize)]
struct ThreadJson {
    pid: u32,
    #[serde(rename = "os_thread_id")]
    tid: Option<u32>,
    #[serde(rename = "thread_name")]
    name: Option<String>,
    active: bool,
    frames: Vec<FrameJson>,
    process_info: ProcessInfoJson,
}

#[derive(Debug, Deserialize)]
struct ProcessInfoJson {
    executable: String,
}

#[derive(Debug, Deserialize)]
struct FrameJson {
    #[serde(rename = "name")]
    function: String,
    filename: String,
    line: i64,
}

fn dump_json(pid: u32) -> Result<DumpJson> {
    let out = pyspy(&["dump", "--pid", &pid.to_string(), "--json"])?.ok()?;
    let threads: Vec<ThreadJson> =
        serde_json::from_str(&out.stdout).with_context(|| out.describe())?;
    let first = threads
        .first()
        .with_context(|| format!("no threads: {}", out.describe()))?;
    Ok(DumpJson {
        pid: first.pid,
        executable: first.process_info.executable.clone(),
        threads,
    })
}

/// `dump` of threads.py by host pid: every thread under its HOST tid (threads.py reports
/// its namespace ids, translated here through NSpid), the spinning worker active in `spin`,
/// the sleeping main thread idle; the text form shows the same host tids.
#[test]
fn dump_shows_host_tids() {
    if !can_run("dump_shows_host_tids") {
        return;
    }
    for_each_interpreter("dump_shows_host_tids", |interp| {
        let target = NsTarget::start(interp, "threads.py", &[])?;
        let ready = target.wait_ready()?;
        let ids: HashMap<String, (u32, u64)> = serde_json::from_str(&ready)
            .with_context(|| format!("threads.py ready line: {ready:?}"))?;
        let host = target.host_tids();
        let dump = dump_json(target.host_pid)?;
        ensure!(dump.pid == target.host_pid, "dump pid {}", dump.pid);
        let describe = || {
            dump.threads
                .iter()
                .map(|t| {
                    format!(
                        "{:?} tid={:?} active={} {:?}",
                        t.name,
                        t.tid,
                        t.active,
                        t.frames.first().map(|f| &f.function)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        for (name, (inner_tid, _)) in &ids {
            let want = *host
                .get(inner_tid)
                .with_context(|| format!("{name}: no host tid for namespace tid {inner_tid}"))?;
            ensure!(
                want != *inner_tid,
                "{name}: host and namespace tids are equal ({want})"
            );
            let thread = dump
                .threads
                .iter()
                .find(|t| t.name.as_deref() == Some(name.as_str()))
                .with_context(|| format!("no thread {name}:\n{}", describe()))?;
            ensure!(
                thread.tid == Some(want),
                "{name}: tid {:?}, expected host tid {want} (namespace tid {inner_tid}):\n{}",
                thread.tid,
                describe()
            );
            let busy = name == "worker-1";
            ensure!(
                thread.active == busy,
                "{name}: active={}, expected {busy}:\n{}",
                thread.active,
                describe()
            );
        }
        let worker = dump
            .threads
            .iter()
            .find(|t| t.name.as_deref() == Some("worker-1"))
            .context("worker-1")?;
        let spin_line = line_of(scripts_dir().join("threads.py"), "spin") as i64;
        let leaf = worker.frames.first().context("worker-1 has no frames")?;
        ensure!(
            leaf.function == "spin"
                && leaf.filename.ends_with("threads.py")
                && leaf.line == spin_line,
            "worker-1's leaf: {leaf:?}, expected spin (threads.py:{spin_line})"
        );
        let text = pyspy(&["dump", "--pid", &target.host_pid.to_string()])?
            .ok()?
            .stdout;
        let header = format!("Thread {} (active", host[&ids["worker-1"].0]);
        ensure!(text.contains(&header), "no {header:?} in:\n{text}");
        let real = std::fs::canonicalize(&interp.path)?;
        ensure!(
            Path::new(&dump.executable) == real,
            "dump's executable {}, expected {}",
            dump.executable,
            real.display()
        );
        Ok(())
    });
}

/// `top` (text snapshots: stdout is a pipe) by host pid: the header names the host pid and
/// top_busy.py's hot_function leads a snapshot.
#[test]
fn top_by_host_pid() {
    if !can_run("top_by_host_pid") {
        return;
    }
    for_each_interpreter("top_by_host_pid", |interp| {
        let target = NsTarget::start(interp, "top_busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.host_pid;
        let mut top = ChildGuard(
            pyspy_bpf()
                .args(["top", "--pid", &pid.to_string(), "--delay", "0.5"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("spawn top")?,
        );
        let mut stdout = top.0.stdout.take().context("piped")?;
        let text = Arc::new(Mutex::new(String::new()));
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            let mut bytes = Vec::new();
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..n]);
                *sink.lock().unwrap() = String::from_utf8_lossy(&bytes).into_owned();
            }
        });
        // A snapshot whose first row is hot_function: each starts with `--- TIME ---`, its
        // rows follow the column headings.
        let hot_first = |s: &str| {
            s.split("\n--- ").any(|snap| {
                let mut lines = snap.lines();
                lines
                    .find(|l| l.contains("Function (") && l.contains("%Own"))
                    .is_some()
                    && lines
                        .next()
                        .is_some_and(|row| row.contains(" hot_function (top_busy.py:"))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !hot_first(&text.lock().unwrap()) && Instant::now() < deadline {
            ensure!(
                top.0.try_wait()?.is_none(),
                "top ended:\n{}",
                text.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-INT", &top.pid().to_string()])
            .status();
        let out = text.lock().unwrap().clone();
        ensure!(
            hot_first(&out),
            "hot_function never led a snapshot:\n{}",
            clip(&out, 4000)
        );
        let title = format!("pyspy-bpf top: pid {pid} (Python {}", interp.version);
        ensure!(
            out.contains(&title),
            "no header {title:?}:\n{}",
            clip(&out, 2000)
        );
        Ok(())
    });
}

/// `record --all` (BPF): processes in namespaces of their own appear under their host pid
/// (`NAME (PID)` roots) with their Python frames.
#[test]
fn record_all_finds_host_pids() {
    if !can_run("record_all_finds_host_pids") {
        return;
    }
    let interps = interpreters();
    let picked: Vec<&Interpreter> = ["2.7", "3.9", "3.11", "3.13", "3.14", "3.15"]
        .iter()
        .filter_map(|series| interps.iter().find(|i| i.series == *series))
        .take(3)
        .collect();
    assert!(!picked.is_empty() || !in_ci(), "no interpreters");
    let targets: Vec<NsTarget> = picked
        .iter()
        .map(|i| NsTarget::start(i, "busy.py", &[]).expect("start"))
        .collect();
    for t in &targets {
        t.wait_ready().expect("ready");
    }
    let (stacks, stderr) = record(&["--all"], "2").expect("record --all");
    for (interp, t) in picked.iter().zip(&targets) {
        let root = format!(" ({})", t.host_pid);
        let busy = count(&stacks, |s| {
            has_busy_chain(s) && s.root().is_some_and(|r| r.ends_with(&root))
        });
        assert!(
            busy >= 3,
            "{}: {busy} samples of busy.py under a root ending {root:?}:\n{}\n{stderr}",
            interp.label(),
            summary(&stacks)
        );
    }
}

/// A container root: the executable's path (`/opt/py/...`) exists only inside the target's
/// mount namespace. Python frames in every mode, and native frames named from the files read
/// through `/proc/PID/root` (BPF `--native`), with `dump` naming the executable as the target
/// sees it.
#[test]
fn container_root_files_through_proc_root() {
    if !can_run("container_root_files_through_proc_root") {
        return;
    }
    for_each_interpreter("container_root_files_through_proc_root", |interp| {
        if interp.flavour == "system" || interp.flavour == "pyenv" || interp.is_py2() {
            // Py_BytesMain (3.8+) is the native frame checked; the system python has no
            // separate root to mount, and the root built here has the provisioned
            // interpreters' layout (/opt/py/usr/bin), not pyenv's.
            return Ok(());
        }
        for root_change in [RootChange::Pivot, RootChange::Chroot] {
            in_root(interp, root_change)
                .with_context(|| format!("root entered with {root_change:?}"))?;
        }
        Ok(())
    });
}

/// `container_root_files_through_proc_root` for one way of entering the root.
fn in_root(interp: &Interpreter, root_change: RootChange) -> Result<()> {
    {
        let target = NsTarget::start_in_root(interp, root_change)?;
        target.wait_ready()?;
        let pid = target.host_pid.to_string();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
        ensure!(
            exe.to_string_lossy().contains("/opt/py/usr/bin/") && !exe.exists(),
            "the target's executable {} should exist only in its namespace",
            exe.display()
        );
        let dump = dump_json(target.host_pid)?;
        ensure!(
            Path::new(&dump.executable) == exe,
            "dump's executable: {}",
            dump.executable
        );
        let main = dump.threads.first().context("no threads")?;
        let [b, _, _] = busy_frames();
        let leaf = main.frames.first().context("no frames")?;
        ensure!(
            format!(
                "{} ({}:{})",
                leaf.function,
                leaf.filename.replace("/mnt/", ""),
                leaf.line
            ) == b,
            "dump's leaf {leaf:?}, expected {b}"
        );
        for mode in ["userspace", "bpf"] {
            let (stacks, stderr) = record(&["--mode", mode, "-p", &pid], "2")?;
            expect_busy(mode, &stacks, &stderr)?;
        }
        let (stacks, stderr) = record(
            &["--mode", "bpf", "--native", "--native-all", "-p", &pid],
            "2",
        )?;
        expect_busy("bpf --native", &stacks, &stderr)?;
        let named = count(&stacks, |s| {
            has_busy_chain(s)
                && rooted(s)
                && position(s, |f| f.starts_with("Py_BytesMain (")).is_some()
        });
        ensure!(
            named * 100 >= count(&stacks, has_busy_chain) * 80,
            "bpf --native: {named} busy samples rooted with a named Py_BytesMain frame:\n{}",
            summary(&stacks)
        );
    }
    Ok(())
}

/// A user-space `record` of a process whose only thread sleeps: no samples, which it says
/// in a warning with the hint (`--idle`); with `--idle` the sleeping thread is recorded
/// under its host tid at the sleeping line.
#[test]
fn sleeping_target_warns_then_idle_records_it() {
    if !can_run("sleeping_target_warns_then_idle_records_it") {
        return;
    }
    for_each_interpreter("sleeping_target_warns_then_idle_records_it", |interp| {
        let target = NsTarget::start(interp, "sleeper.py", &[])?;
        target.wait_ready()?;
        let pid = target.host_pid;
        // Asleep in time.sleep (not still on its way there) before recording.
        let deadline = Instant::now() + READY_TIMEOUT;
        while proc_state(pid) != Some('S') {
            ensure!(Instant::now() < deadline, "pid {pid} never slept");
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid_s = pid.to_string();
        let (stacks, stderr) = record(&["--mode", "userspace", "-p", &pid_s], "1")?;
        ensure!(
            total(&stacks) == 0,
            "samples of a sleeping process:\n{}",
            summary(&stacks)
        );
        ensure!(
            stderr.contains("warning: no samples in")
                && stderr.contains(&format!("of process {pid}"))
                && stderr.contains("--idle"),
            "no warning with a hint:\n{stderr}"
        );
        let (stacks, stderr) = record(&["--mode", "userspace", "--idle", "-t", "-p", &pid_s], "1")?;
        let leaf = format!(
            "wait_forever (sleeper.py:{})",
            line_of(scripts_dir().join("sleeper.py"), "sleep")
        );
        let good = count(&stacks, |s| {
            s.leaf() == Some(leaf.as_str())
                && s.root().is_some_and(|r| {
                    r.starts_with("thread \"") && r.ends_with(&format!(" ({pid})"))
                })
        });
        ensure!(
            good >= 5 && good == total(&stacks) && !stderr.contains("warning"),
            "--idle: {good} of {} samples at {leaf} under the host tid {pid}:\n{}\n{stderr}",
            total(&stacks),
            summary(&stacks)
        );
        Ok(())
    });
}
