//! `pyspy-bpf top` against real interpreters: the full-screen view driven through tmux (keys,
//! resize, quit restores the terminal), plain-text snapshots when stdout is a pipe, `-s`, and a
//! target that exits while `top` watches it.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::*;

const SCRIPT: &str = "top_busy.py";
/// How long to wait for the view to show something it should show.
const SHOW_TIMEOUT: Duration = Duration::from_secs(30);

/// The first table row of a screen or snapshot, trimmed: the line after the column headings
/// (the one naming `Function (`).
fn first_row(screen: &str) -> Option<&str> {
    let mut lines = screen.lines();
    lines.find(|l| l.contains("Function (") && l.contains("%Own"))?;
    lines.next().map(str::trim)
}

fn starts_with_hot(row: &str) -> bool {
    row.contains("% ") && row.contains(" hot_function (top_busy.py")
}

/// A tmux server of our own (`tmux -L NAME`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        Tmux {
            socket: format!(
                "pyspy-top-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .context("run tmux")?;
        ensure!(
            out.status.success(),
            "tmux {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn screen(&self) -> Result<String> {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }

    /// A tmux format variable of the pane, e.g. `alternate_on`.
    fn var(&self, name: &str) -> Result<String> {
        Ok(self
            .run(&[
                "display-message",
                "-p",
                "-t",
                "top",
                &format!("#{{{name}}}"),
            ])?
            .trim()
            .to_string())
    }

    fn keys(&self, keys: &str) -> Result<()> {
        self.run(&["send-keys", "-t", "top", keys]).map(drop)
    }

    /// Polls the screen until `ok` holds; the error shows the last screen.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + SHOW_TIMEOUT;
        loop {
            let screen = self.screen()?;
            if ok(&screen) {
                return Ok(screen);
            }
            // The shell got past top (and `stty`): nothing else will show up.
            if screen.contains("stty-done") {
                bail!("top exited while waiting for {what}; the screen:\n{screen}");
            }
            if Instant::now() > deadline {
                bail!("waited {SHOW_TIMEOUT:?} for {what}; the screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Drives the full-screen view in a 120x40 tmux pane: default sort, `2`, `L`, a resize to
/// 20x5 and back, and `q`, after which the alternate screen must be left, the cursor shown,
/// the tty out of raw mode (`stty -a` run by the same shell), and the target still running.
#[test]
fn full_screen_view_in_tmux() {
    if !have_tmux() {
        assert!(
            !in_ci(),
            "tmux is not installed (CI must not skip this test)"
        );
        eprintln!("tmux is not installed; skipping");
        return;
    }
    for_each_interpreter("top_tmux", |interp| {
        let target = interp.start(SCRIPT, &[])?;
        target.wait_ready()?;
        let pid = target.pid();
        let tmux = Tmux::new(&interp.series);
        let shell = format!(
            "'{}' top --pid {pid}; echo \"top exited with status $?\"; stty -a; echo stty-done; sleep 600",
            env!("CARGO_BIN_EXE_pyspy-bpf")
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "40",
            &shell,
        ])?;
        let title = format!("pyspy-bpf top: pid {pid} (Python {}", interp.version);
        tmux.wait_for("the header", |s| {
            s.contains(&title) && s.contains("Function (file:line)")
        })?;
        ensure!(
            tmux.var("alternate_on")? == "1",
            "top runs outside the alternate screen"
        );

        // Default sort: %Own, largest first.
        let screen = tmux.wait_for("hot_function first by %Own", |s| {
            first_row(s).is_some_and(starts_with_hot)
        })?;
        ensure!(
            screen.contains("sort: %Own (largest first)") && screen.contains("%Own▼"),
            "no %Own sort indicator:\n{screen}"
        );

        // `2`: %Total, where <module> (or main) covers every sample.
        tmux.keys("2")?;
        tmux.wait_for("the %Total sort", |s| {
            s.contains("sort: %Total (largest first)")
                && s.contains("%Total▼")
                && !s.contains("%Own▼")
                && first_row(s).is_some_and(|r| {
                    r.contains(" <module> (top_busy.py:") || r.contains(" main (top_busy.py:")
                })
        })?;

        // `L`: one row per function, no line numbers.
        tmux.keys("L")?;
        tmux.wait_for("rows without line numbers", |s| {
            s.contains("Function (file)")
                && s.contains(" hot_function (top_busy.py)")
                && !s.contains("top_busy.py:")
        })?;

        // A tiny terminal shows what fits (the sorted column and the names), and survives.
        tmux.run(&["resize-window", "-t", "top", "-x", "20", "-y", "5"])?;
        tmux.wait_for("the 20x5 view", |s| {
            s.lines().count() <= 5 && s.contains("%Total▼") && s.contains("pyspy-bpf")
        })?;
        std::thread::sleep(Duration::from_millis(1500));
        ensure!(
            tmux.var("alternate_on")? == "1",
            "top left the alternate screen after a resize to 20x5:\n{}",
            tmux.screen()?
        );
        tmux.run(&["resize-window", "-t", "top", "-x", "120", "-y", "40"])?;
        tmux.wait_for("the full view again", |s| {
            s.contains(&title) && s.contains(" hot_function (top_busy.py)")
        })?;

        tmux.keys("q")?;
        let screen = tmux.wait_for("top to exit and `stty -a` to report", |s| {
            s.contains("top exited with status") && s.contains("stty-done")
        })?;
        ensure!(
            screen.contains("top exited with status 0"),
            "top failed:\n{screen}"
        );
        ensure!(
            tmux.var("alternate_on")? == "0",
            "the alternate screen is still on after quitting:\n{screen}"
        );
        ensure!(
            tmux.var("cursor_flag")? == "1",
            "the cursor is still hidden after quitting"
        );
        ensure!(
            !screen.contains("pyspy-bpf top:") && !screen.contains("%Own"),
            "the view is still on the screen after quitting:\n{screen}"
        );
        // `stty -a` ran on the tty top had: canonical mode and echo are back on.
        let flags: Vec<&str> = screen.split_whitespace().collect();
        ensure!(
            flags.contains(&"icanon") && flags.contains(&"echo"),
            "the terminal is still in raw mode after quitting:\n{screen}"
        );
        ensure!(
            proc_state(pid).is_some_and(|s| s != 'Z'),
            "quitting top must not stop the process it watched"
        );
        Ok(())
    });
}

/// Runs `pyspy-bpf ARGS` with stdout piped until it has printed `snapshots` complete
/// snapshots, then sends SIGINT (Ctrl-C), which must end it with status 0. Returns stdout.
fn run_then_interrupt(args: &[String], wanted: usize) -> Result<String> {
    let mut child = pyspy_bpf()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn pyspy-bpf top")?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let so_far = Arc::new(Mutex::new(String::new()));
    let sink = so_far.clone();
    let out = std::thread::spawn(move || {
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
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // The snapshot after the last wanted one has started: the wanted ones are complete.
    let deadline = Instant::now() + SHOW_TIMEOUT;
    while snapshots(&so_far.lock().unwrap()).len() <= wanted
        && Instant::now() < deadline
        && child.try_wait()?.is_none()
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = out.join();
    let stdout = so_far.lock().unwrap().clone();
    let stderr = err.join().unwrap_or_default();
    let described = || {
        format!(
            "$ pyspy-bpf {}\n[stdout]\n{}\n[stderr]\n{}",
            args.join(" "),
            clip(&stdout, 3000),
            clip(&stderr, 3000)
        )
    };
    match status {
        None => bail!("did not end within 10 s of SIGINT\n{}", described()),
        Some(s) if !s.success() => bail!("ended with {s} after SIGINT\n{}", described()),
        Some(_) if stderr.contains("panicked") => bail!("panicked\n{}", described()),
        Some(_) => Ok(stdout),
    }
}

/// The snapshots of text mode: each starts with a `--- TIME ---` line.
fn snapshots(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("--- ") && line.ends_with(" ---") {
            out.push(String::new());
        }
        if let Some(current) = out.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    out
}

/// Seconds from an OwnTime/TotalTime cell: `4.25s`, `2:03.50`, `1:02:03`.
fn parse_secs(cell: &str) -> Option<f64> {
    if let Some(secs) = cell.strip_suffix('s') {
        return secs.parse().ok();
    }
    cell.split(':').try_fold(0.0, |acc, part| {
        Some(acc * 60.0 + part.parse::<f64>().ok()?)
    })
}

/// The label of the row with the largest OwnTime (cumulative) in a text snapshot.
fn most_own_time(snapshot: &str) -> Option<String> {
    let mut lines = snapshot.lines();
    lines.find(|l| l.contains("Function (") && l.contains("%Own"))?;
    lines
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((parse_secs(cols.get(2)?)?, cols.get(4..)?.join(" ")))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, label)| label)
}

/// hot_function leads: first by %Own in most snapshots (a single short interval on a busy
/// machine may differ), and first by cumulative OwnTime in the last one.
fn expect_hot_first(text: &str, min_snapshots: usize) -> Result<()> {
    let snaps = snapshots(text);
    ensure!(
        snaps.len() >= min_snapshots,
        "expected at least {min_snapshots} snapshots, got {}:\n{}",
        snaps.len(),
        clip(text, 4000)
    );
    let with_rows: Vec<&String> = snaps
        .iter()
        .filter(|s| first_row(s).is_some_and(|r| !r.starts_with('(')))
        .collect();
    ensure!(
        !with_rows.is_empty(),
        "no snapshot has rows:\n{}",
        clip(text, 4000)
    );
    let hot_first = with_rows
        .iter()
        .filter(|s| first_row(s).is_some_and(starts_with_hot))
        .count();
    ensure!(
        hot_first * 2 > with_rows.len(),
        "hot_function is first in only {hot_first} of {} snapshots:\n{}",
        with_rows.len(),
        clip(text, 6000)
    );
    let last = with_rows[with_rows.len() - 1];
    let top = most_own_time(last).unwrap_or_default();
    ensure!(
        top.starts_with("hot_function (top_busy.py:"),
        "the most OwnTime is {top:?}, not hot_function's:\n{last}"
    );
    Ok(())
}

/// stdout is a pipe: snapshots every --delay, hot_function first; Ctrl-C ends it with 0. Under
/// `--mode auto` (as root) `top --pid` runs on the BPF sampler, `--mode userspace` on the timer.
#[test]
fn text_snapshots_when_not_a_terminal() {
    for_each_interpreter("top_text", |interp| {
        let target = interp.start(SCRIPT, &[])?;
        target.wait_ready()?;
        let pid = target.pid();
        for (mode, sampler) in [("auto", "bpf"), ("userspace", "userspace")] {
            let args: Vec<String> = [
                "top",
                "--pid",
                &pid.to_string(),
                "--delay",
                "0.5",
                "--mode",
                mode,
            ]
            .map(String::from)
            .to_vec();
            let out = run_then_interrupt(&args, 4)?;
            expect_hot_first(&out, 4)?;
            let title = format!("pyspy-bpf top: pid {pid} (Python {}", interp.version);
            ensure!(out.contains(&title), "no header {title:?}:\n{out}");
            ensure!(
                out.contains(&format!("{sampler} sampling at 100 Hz")),
                "--mode {mode}: not the {sampler} sampler:\n{out}"
            );
            ensure!(
                out.contains("   %Own  %Total   OwnTime  TotalTime  Function (file:line)"),
                "no column headings:\n{out}"
            );
        }
        Ok(())
    });
}

/// `-s`: a PID column, and the child's busy function first with the child's pid.
#[test]
fn subprocesses_get_a_pid_column() {
    for_each_interpreter("top_subprocesses", |interp| {
        let parent = interp.start("spawner.py", &[])?;
        let child_pid: u32 = parent
            .wait_ready()?
            .parse()
            .context("spawner.py ready line")?;
        let args: Vec<String> = [
            "top",
            "-s",
            "--pid",
            &parent.pid().to_string(),
            "--delay",
            "0.5",
        ]
        .map(String::from)
        .to_vec();
        let out = run_then_interrupt(&args, 4)?;
        let snaps = snapshots(&out);
        let last = snaps.iter().rev().nth(1).or(snaps.last());
        let Some(last) = last else {
            bail!("no snapshots:\n{out}")
        };
        ensure!(
            last.contains("    PID    %Own  %Total"),
            "no PID column:\n{last}"
        );
        let row = first_row(last).unwrap_or_default();
        ensure!(
            row.starts_with(&format!("{child_pid} ")) && row.contains(" level_b (busy.py:"),
            "expected the child's level_b first:\n{last}"
        );
        Ok(())
    });
}

/// The target exits while `top` (text mode) watches: `top` prints a last snapshot saying so
/// and ends by itself, with status 2 for `--pid` (as `record`) and 0 for a program it started
/// (sampled with BPF, as `--pid` is).
#[test]
fn target_exit_ends_text_mode() {
    for_each_interpreter("top_exit", |interp| {
        let target = interp.start(SCRIPT, &["4"])?;
        target.wait_ready()?;
        // Reap it as soon as it exits, as a real parent would.
        let pid = reap_in_background(target);
        let outcome = run(
            pyspy_bpf().args(["top", "--pid", &pid.to_string(), "--delay", "0.5"]),
            RUN_TIMEOUT,
        )?
        .no_panic()?;
        ensure!(
            outcome.status.code() == Some(2),
            "expected status 2 when the --pid target exits:\n{}",
            outcome.describe()
        );
        ensure!(
            outcome
                .stderr
                .contains(&format!("pyspy-bpf: process {pid} exited")),
            "no exit message on stderr:\n{}",
            outcome.describe()
        );
        let snaps = snapshots(&outcome.stdout);
        let last = snaps.last().map(String::as_str).unwrap_or_default();
        ensure!(
            last.contains(&format!("-- process {pid} exited")),
            "the last snapshot does not say the process exited:\n{}",
            outcome.describe()
        );
        expect_hot_first(&outcome.stdout, 2).with_context(|| outcome.describe())?;

        // A program top started itself: its exit is the normal end, status 0.
        let script = scripts_dir().join(SCRIPT);
        let mut cmd = pyspy_bpf();
        cmd.args(["top", "--delay", "0.5", "--"])
            .args(interp.argv(&script, &["1.5"]));
        let outcome = run(&mut cmd, RUN_TIMEOUT)?.ok()?;
        ensure!(
            outcome.stderr.contains(" exited"),
            "no exit message on stderr:\n{}",
            outcome.describe()
        );
        ensure!(
            outcome.stdout.contains(" hot_function (top_busy.py:"),
            "hot_function not shown:\n{}",
            outcome.describe()
        );
        // `top -- CMD` samples with BPF too (`--mode auto`, as root).
        ensure!(
            outcome.stdout.contains("bpf sampling at 100 Hz"),
            "`top -- CMD` is not on the BPF sampler:\n{}",
            outcome.describe()
        );
        Ok(())
    });
}

/// `top --idle` with BPF is wall-clock time: a thread that sleeps in time.sleep (nap) for a
/// measured share of its time shows about that share of the wall time, %Total of `nap`.
#[test]
fn idle_with_bpf_shows_shares_of_wall_time() {
    if !bpf_test_can_run("top --idle") {
        return;
    }
    let interp = interpreters()
        .into_iter()
        .find(|i| i.flavour == "system")
        .or_else(|| interpreters().into_iter().next())
        .expect("an interpreter");
    let dir = TempDir::new("top-idle");
    let truth = dir.join("truth.txt");
    let target = interp
        .start("top_idle.py", &[&truth.display().to_string()])
        .unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid().to_string();
    let args: Vec<String> = [
        "top", "--pid", &pid, "--idle", "--mode", "bpf", "--delay", "1",
    ]
    .map(String::from)
    .to_vec();
    let out = run_then_interrupt(&args, 4).unwrap();
    assert!(out.contains("bpf sampling"), "not the BPF sampler:\n{out}");
    let want: f64 = std::fs::read_to_string(&truth)
        .expect("the workload's own measurement")
        .trim()
        .parse()
        .unwrap();
    // The last complete snapshot: nap's share of the wall time of the interval.
    let snaps = snapshots(&out);
    let last = &snaps[snaps.len() - 2];
    let nap: f64 = last
        .lines()
        .find(|l| l.contains(" nap (top_idle.py:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)?
                .trim_end_matches('%')
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no nap row:\n{out}"));
    assert!(
        (nap - want * 100.0).abs() < 12.0,
        "nap has {nap}% of the wall time, the workload measured {:.1}%:\n{last}",
        want * 100.0
    );
}

/// `top --all` (BPF, root): every process, a PID column, and a busy Python program's hot
/// function listed with that program's pid.
#[test]
fn all_processes_with_bpf() {
    if !bpf_test_can_run("top --all") {
        return;
    }
    let interp = interpreters()
        .into_iter()
        .find(|i| i.flavour == "system")
        .or_else(|| interpreters().into_iter().next())
        .expect("an interpreter");
    let target = interp.start(SCRIPT, &[]).unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid();
    let args: Vec<String> = ["top", "--all", "--delay", "1"].map(String::from).to_vec();
    let out = run_then_interrupt(&args, 3).unwrap();
    assert!(
        out.contains("pyspy-bpf top: every process, bpf sampling"),
        "no --all header:\n{out}"
    );
    assert!(
        out.contains("    PID    %Own  %Total"),
        "no PID column:\n{out}"
    );
    let hot = out.lines().any(|l| {
        l.trim_start().starts_with(&format!("{pid} ")) && l.contains("hot_function (top_busy.py:")
    });
    assert!(hot, "no hot_function row for pid {pid}:\n{out}");
}

/// `top --native`: native rows (functions of the interpreter binary) beside the Python ones.
#[test]
fn native_rows() {
    if !is_root() {
        assert!(!in_ci(), "CI must run these tests as root");
        return;
    }
    let interp = interpreters()
        .into_iter()
        .find(|i| i.flavour == "system")
        .or_else(|| interpreters().into_iter().next())
        .expect("an interpreter");
    let target = interp.start(SCRIPT, &[]).unwrap();
    target.wait_ready().unwrap();
    let args: Vec<String> = [
        "top",
        "--native",
        "--pid",
        &target.pid().to_string(),
        "--delay",
        "0.5",
    ]
    .map(String::from)
    .to_vec();
    let out = run_then_interrupt(&args, 3).unwrap();
    assert!(
        out.contains("hot_function (top_busy.py:"),
        "no Python rows:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" (python3") || l.contains(" (libpython")),
        "no native rows of the interpreter:\n{out}"
    );
}
