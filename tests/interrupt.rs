//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during `record` end the recording and write the
//! profile collected so far, in both samplers; a started `-- command` is killed and reaped;
//! `top` ends the same way.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;

fn interrupt_after(args: &[&str], after: Duration) -> Result<(std::process::ExitStatus, String)> {
    let (status, _, stderr) = signal_after(args, "INT", after)?;
    Ok((status, stderr))
}

/// Runs `pyspy-bpf ARGS`, sends it SIG`signal` after `after`, and returns its exit status,
/// stdout and stderr.
fn signal_after(
    args: &[&str],
    signal: &str,
    after: Duration,
) -> Result<(std::process::ExitStatus, String, String)> {
    let mut child = pyspy_bpf()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(after);
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            anyhow::bail!(
                "pyspy-bpf did not end after SIG{signal}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn ctrl_c_writes_the_profile_collected_so_far() {
    let leaf = format!("level_b (busy.py:{})", line_of("busy.py", "busy"));
    for_each_interpreter("ctrl_c", |interp| {
        let target = interp.start("busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        let dir = TempDir::new("ctrl-c");
        let modes: &[&str] = if is_root() {
            &["userspace", "bpf"]
        } else {
            &["userspace"]
        };
        for mode in modes {
            let out = dir.join(&format!("{mode}.txt"));
            let out_s = out.display().to_string();
            let args = [
                "record", "--mode", mode, "-f", "raw", "-d", "60", "-o", &out_s, "--pid", &pid,
            ];
            let (status, stderr) = interrupt_after(&args, Duration::from_millis(1500))?;
            ensure!(
                status.success(),
                "{mode}: exit {status} after Ctrl-C:\n{stderr}"
            );
            ensure!(!stderr.contains("panicked"), "{mode}: panicked:\n{stderr}");
            let stacks =
                read_raw(&out).with_context(|| format!("{mode}: no profile:\n{stderr}"))?;
            let at_leaf: u64 = stacks
                .iter()
                .filter(|s| s.leaf() == Some(leaf.as_str()))
                .map(|s| s.count)
                .sum();
            ensure!(
                at_leaf >= 3,
                "{mode}: {at_leaf} samples in {leaf}:\n{}",
                summary(&stacks)
            );
        }
        Ok(())
    });
}

/// The modes a test can run here: BPF needs root.
fn modes() -> &'static [&'static str] {
    if is_root() {
        &["userspace", "bpf"]
    } else {
        &["userspace"]
    }
}

/// Samples ending in busy.py's loop.
fn samples_at_busy_leaf(stacks: &[RawStack]) -> u64 {
    let leaf = format!("level_b (busy.py:{})", line_of("busy.py", "busy"));
    stacks
        .iter()
        .filter(|s| s.leaf() == Some(leaf.as_str()))
        .map(|s| s.count)
        .sum()
}

/// SIGTERM (`kill`, service managers) and SIGHUP (a closed terminal) end a recording like
/// Ctrl-C: exit 0 and the profile collected so far, in both samplers. The signals do not
/// depend on the interpreter: one is enough.
#[test]
fn sigterm_and_sighup_write_the_profile_collected_so_far() {
    let Some(interp) = interpreters().into_iter().next() else {
        eprintln!("sigterm_and_sighup: no interpreters");
        return;
    };
    let target = interp.start("busy.py", &[]).unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid().to_string();
    let dir = TempDir::new("sigterm");
    let mut errors = Vec::new();
    for signal in ["TERM", "HUP"] {
        for mode in modes() {
            let out = dir.join(&format!("{signal}-{mode}.txt"));
            let out_s = out.display().to_string();
            let args = [
                "record", "--mode", mode, "-f", "raw", "-d", "60", "-o", &out_s, "--pid", &pid,
            ];
            let result = signal_after(&args, signal, Duration::from_millis(1500)).and_then(
                |(status, _, stderr)| {
                    ensure!(status.success(), "exit {status}:\n{stderr}");
                    ensure!(!stderr.contains("panicked"), "panicked:\n{stderr}");
                    let stacks =
                        read_raw(&out).with_context(|| format!("no profile:\n{stderr}"))?;
                    let n = samples_at_busy_leaf(&stacks);
                    ensure!(n >= 3, "{n} samples in level_b:\n{}", summary(&stacks));
                    Ok(())
                },
            );
            if let Err(e) = result {
                errors.push(format!("SIG{signal} {mode}: {e:#}"));
            }
        }
    }
    assert!(
        proc_state(target.pid()).is_some(),
        "the --pid target must outlive the profiler"
    );
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

/// SIGTERM to `record -- COMMAND`: the profile is written with the command's functions, and
/// the command is killed and reaped, as on Ctrl-C.
#[test]
fn sigterm_with_a_started_command_writes_the_profile_and_reaps_it() {
    let Some(interp) = interpreters().into_iter().next() else {
        eprintln!("sigterm_with_a_started_command: no interpreters");
        return;
    };
    let dir = TempDir::new("sigterm-cmd");
    let busy = interp.argv(&scripts_dir().join("busy.py"), &[]);
    let mut errors = Vec::new();
    for mode in modes() {
        let out = dir.join(&format!("{mode}.txt"));
        let out_s = out.display().to_string();
        let pidfile = dir.join(&format!("{mode}.pid"));
        let mut args: Vec<String> = ["record", "--mode", mode, "-f", "raw", "-o", &out_s, "--"]
            .map(String::from)
            .to_vec();
        args.extend(command_with_pidfile(&pidfile, &busy));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = signal_after(&args, "TERM", Duration::from_millis(2500)).and_then(
            |(status, _, stderr)| {
                ensure!(status.success(), "exit {status}:\n{stderr}");
                let stacks = read_raw(&out).with_context(|| format!("no profile:\n{stderr}"))?;
                let n = samples_at_busy_leaf(&stacks);
                ensure!(n >= 3, "{n} samples in level_b:\n{}", summary(&stacks));
                ensure_started_command_gone(&pidfile, &stderr)
            },
        );
        if let Err(e) = result {
            errors.push(format!("{mode}: {e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

/// `timeout 3 pyspy-bpf record -- COMMAND` (SIGTERM from timeout): a complete profile with the
/// command's functions, and no command left running.
#[test]
fn timeout_leaves_a_complete_profile() {
    let Some(interp) = interpreters().into_iter().next() else {
        eprintln!("timeout_leaves_a_complete_profile: no interpreters");
        return;
    };
    let dir = TempDir::new("timeout");
    let out = dir.join("profile.txt");
    let pidfile = dir.join("pid");
    let busy = interp.argv(&scripts_dir().join("busy.py"), &[]);
    let mut cmd = std::process::Command::new("timeout");
    cmd.arg("3")
        .arg(env!("CARGO_BIN_EXE_pyspy-bpf"))
        .args(["record", "-f", "raw", "-o"])
        .arg(&out)
        .arg("--")
        .args(command_with_pidfile(&pidfile, &busy));
    let result = run(&mut cmd, RUN_TIMEOUT).unwrap();
    // timeout(1) exits 124 when it had to send its signal.
    assert_eq!(result.status.code(), Some(124), "{}", result.describe());
    assert!(!result.stderr.contains("panicked"), "{}", result.describe());
    assert!(
        result.stderr.contains("pyspy-bpf: wrote"),
        "{}",
        result.describe()
    );
    let stacks = read_raw(&out).with_context(|| result.describe()).unwrap();
    let n = samples_at_busy_leaf(&stacks);
    assert!(n >= 3, "{n} samples in level_b:\n{}", summary(&stacks));
    ensure_started_command_gone(&pidfile, &result.describe()).unwrap();
}

/// SIGTERM to `top -- COMMAND` (plain-text snapshots, stdout is not a terminal): exit 0 after
/// showing the command's functions, and the command killed and reaped.
#[test]
fn sigterm_ends_top_and_reaps_its_command() {
    let Some(interp) = interpreters().into_iter().next() else {
        eprintln!("sigterm_ends_top: no interpreters");
        return;
    };
    let dir = TempDir::new("top-sigterm");
    let pidfile = dir.join("pid");
    let busy = interp.argv(&scripts_dir().join("busy.py"), &[]);
    let mut args: Vec<String> = ["top", "--delay", "0.5", "--"].map(String::from).to_vec();
    args.extend(command_with_pidfile(&pidfile, &busy));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stdout, stderr) =
        signal_after(&args, "TERM", Duration::from_millis(2500)).unwrap();
    assert!(status.success(), "exit {status}:\n{stderr}");
    assert!(
        stdout.contains("level_b"),
        "no level_b in top's snapshots:\n{stdout}\n{stderr}"
    );
    ensure_started_command_gone(&pidfile, &stderr).unwrap();
}

/// The terminal closing under `record` (an ssh session dropped: the pty hangs up, SIGHUP,
/// then every write to it fails): the profile is still written. `record` runs under
/// `script`, which owns the pty; killing `script` hangs it up.
#[test]
fn terminal_hangup_writes_the_profile() {
    let Some(interp) = interpreters().into_iter().next() else {
        eprintln!("terminal_hangup: no interpreters");
        return;
    };
    let target = interp.start("busy.py", &[]).unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid().to_string();
    let dir = TempDir::new("hangup");
    let out = dir.join("profile.txt");
    let line = format!(
        "stty cols 120 rows 30; exec '{}' record -f raw -d 60 -o '{}' --pid {pid}",
        env!("CARGO_BIN_EXE_pyspy-bpf"),
        out.display()
    );
    let script = ChildGuard(
        std::process::Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start script"),
    );
    // `record` prints its progress line to the terminal meanwhile.
    std::thread::sleep(Duration::from_millis(2500));
    let profiler: u32 =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", script.pid()))
            .expect("script's children")
            .split_whitespace()
            .next()
            .expect("script runs the profiler")
            .parse()
            .expect("a pid");
    assert_eq!(comm(profiler).as_deref(), Some("pyspy-bpf"));
    drop(script); // SIGKILL: the pty's master closes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while proc_state(profiler).is_some_and(|s| s != 'Z') {
        assert!(
            Instant::now() < deadline,
            "the profiler did not end after the hangup"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stacks = read_raw(&out).expect("no profile after the hangup");
    let n = samples_at_busy_leaf(&stacks);
    assert!(n >= 3, "{n} samples in level_b:\n{}", summary(&stacks));
}
