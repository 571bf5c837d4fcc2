//! Bad input: pids that don't exist, aren't Python, or belong to another user; a process
//! that exits while it is recorded; unusable command lines. Each must give a clear
//! `Error:` line on stderr and a non-zero exit, never a panic.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;

/// Runs `pyspy-bpf ARGS`, which must fail cleanly: non-zero exit, no panic, an `Error:` line
/// that contains each of `words` (case-insensitive). Returns the error line.
fn expect_error(cmd: &mut Command, words: &[&str]) -> Result<String> {
    let out = run(cmd, RUN_TIMEOUT)?.no_panic()?;
    ensure!(
        !out.status.success(),
        "expected a failure, got success:\n{}",
        out.describe()
    );
    let line = out.error_line().with_context(|| {
        format!(
            "no line starting with `Error:` on stderr:\n{}",
            out.describe()
        )
    })?;
    let lower = line.to_lowercase();
    for w in words {
        ensure!(
            lower.contains(&w.to_lowercase()),
            "the error line does not mention {w:?}:\n{}",
            out.describe()
        );
    }
    Ok(line.to_string())
}

/// A pid with no process behind it.
fn unused_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768);
    (2..max)
        .rev()
        .find(|p| !PathBuf::from(format!("/proc/{p}")).exists())
        .expect("a free pid")
}

#[test]
fn pid_does_not_exist() {
    let dir = TempDir::new("nopid");
    let pid = unused_pid().to_string();
    let out = dir.join("x.txt").display().to_string();
    let mut errors = Vec::new();
    for args in [
        vec!["dump", "--pid", &pid],
        vec!["dump", "--pid", &pid, "--json"],
        vec!["record", "-f", "raw", "-o", &out, "-d", "1", "--pid", &pid],
    ] {
        if let Err(e) = expect_error(pyspy_bpf().args(&args), &[&pid]) {
            errors.push(format!("{e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn pid_is_not_python() {
    let dir = TempDir::new("notpython");
    let sleep = ChildGuard(
        Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep"),
    );
    // Give exec a moment, so the pid shows `sleep`, not the test binary it was forked from.
    std::thread::sleep(Duration::from_millis(200));
    let pid = sleep.pid().to_string();
    let out = dir.join("x.txt").display().to_string();
    let mut errors = Vec::new();
    for args in [
        vec!["dump", "--pid", &pid],
        vec!["record", "-f", "raw", "-o", &out, "-d", "1", "--pid", &pid],
    ] {
        if let Err(e) = expect_error(pyspy_bpf().args(&args), &["Python"]) {
            errors.push(format!("{e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// A copy of the binary in a directory that `nobody` can reach (target/ may sit under a
/// home directory that only root can enter), and an output directory it can write to.
fn binary_for_nobody(dir: &TempDir) -> (PathBuf, PathBuf) {
    let set_mode = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
    };
    set_mode(dir.path(), 0o755);
    let bin = dir.join("pyspy-bpf");
    std::fs::copy(env!("CARGO_BIN_EXE_pyspy-bpf"), &bin).expect("copy the binary");
    set_mode(&bin, 0o755);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir out");
    set_mode(&out, 0o777);
    (bin, out)
}

fn as_nobody(bin: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(bin)
        .args(args)
        .current_dir("/");
    cmd
}

#[test]
fn permission_denied() {
    if !is_root() {
        assert!(
            !in_ci(),
            "CI must run the tests as root (this test profiles root's processes as nobody)"
        );
        eprintln!("permission_denied: skipped, needs root to run the profiler as `nobody` against root's python");
        return;
    }
    let dir = TempDir::new("nobody");
    let (bin, out_dir) = binary_for_nobody(&dir);
    let out = out_dir.join("x.txt").display().to_string();
    for_each_interpreter("permission_denied", |interp| {
        let child = interp.start("threads.py", &[])?;
        child.wait_ready()?;
        let pid = child.pid().to_string();
        let mut errors = Vec::new();
        for args in [
            vec!["dump", "--pid", &pid],
            vec!["record", "-f", "raw", "-o", &out, "-d", "1", "--pid", &pid],
        ] {
            if let Err(e) = expect_error(&mut as_nobody(&bin, &args), &["permission"]) {
                errors.push(format!("{e:#}"));
            }
        }
        ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(())
    });
}

/// `record --pid` of a process that exits during the recording: a message that it exited,
/// the partial profile still written, a non-zero exit, and no waiting for `-d` to elapse.
#[test]
fn process_exits_while_recording() {
    let leaf = format!("level_b (busy.py:{})", line_of("busy.py", "busy"));
    for_each_interpreter("process_exits_while_recording", |interp| {
        let dir = TempDir::new("exits");
        let child = interp.start("busy.py", &["3"])?;
        child.wait_ready()?;
        let pid = reap_in_background(child).to_string();
        let profile = dir.join("partial.txt");
        let profile_str = profile.display().to_string();
        let out = run(
            pyspy_bpf().args([
                "record",
                "-f",
                "raw",
                "-o",
                &profile_str,
                "-d",
                "60",
                "--pid",
                &pid,
            ]),
            RUN_TIMEOUT,
        )?
        .no_panic()?;
        ensure!(
            !out.status.success(),
            "expected a non-zero exit:\n{}",
            out.describe()
        );
        ensure!(
            out.stderr.to_lowercase().contains("exit"),
            "stderr does not say the process exited:\n{}",
            out.describe()
        );
        ensure!(
            out.elapsed < Duration::from_secs(30),
            "record kept going after the process exited (-d 60):\n{}",
            out.describe()
        );
        let stacks = read_raw(&profile).with_context(|| out.describe())?;
        ensure!(
            stacks.iter().any(|s| s.leaf() == Some(leaf.as_str())),
            "the partial profile has no stack ending in `{leaf}`:\n{}\n{}",
            summary(&stacks),
            out.describe()
        );
        Ok(())
    });
}

#[test]
fn command_that_cannot_start() {
    let dir = TempDir::new("nocommand");
    let out = dir.join("x.txt").display().to_string();
    let line = expect_error(
        pyspy_bpf().args([
            "record",
            "-f",
            "raw",
            "-o",
            &out,
            "--",
            "/nonexistent/python3",
            "x.py",
        ]),
        &[],
    );
    assert!(line.is_ok(), "{:#}", line.unwrap_err());
}

/// Command lines that clap (or the program) must reject: non-zero exit, no panic.
#[test]
fn usage_errors() {
    let mut errors = Vec::new();
    for args in [
        vec!["dump"],
        vec!["dump", "--pid", "not-a-pid"],
        vec!["dump", "--pid", "-5"],
        vec!["record"],
        vec!["record", "-f", "no-such-format", "--pid", "1"],
        vec!["record", "-r", "fast", "--pid", "1"],
        vec!["no-such-subcommand"],
    ] {
        let result = run(pyspy_bpf().args(&args), RUN_TIMEOUT)
            .and_then(|o| o.no_panic())
            .and_then(|o| {
                ensure!(!o.status.success(), "expected a failure:\n{}", o.describe());
                ensure!(
                    !o.stderr.trim().is_empty(),
                    "nothing on stderr:\n{}",
                    o.describe()
                );
                Ok(())
            });
        if let Err(e) = result {
            errors.push(format!("{:?}: {e:#}", args));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// `record --all` without root (or CAP_BPF + CAP_PERFMON): a clear error naming the missing
/// capabilities, not a panic and not a silent fall-back (only BPF can see every process).
#[test]
fn all_without_bpf_privileges() {
    if !is_root() {
        assert!(!in_ci(), "CI must run the tests as root");
        eprintln!(
            "all_without_bpf_privileges: skipped, needs root to run the profiler as `nobody`"
        );
        return;
    }
    let dir = TempDir::new("nobody-all");
    let (bin, out_dir) = binary_for_nobody(&dir);
    let out = out_dir.join("all.txt").display().to_string();
    expect_error(
        &mut as_nobody(
            &bin,
            &["record", "--all", "-f", "raw", "-d", "1", "-o", &out],
        ),
        &["CAP_BPF", "CAP_PERFMON"],
    )
    .unwrap();
}

/// `sh -c 'echo $$ > PIDFILE; exec ARGV'`: the pid of a command the profiler starts is
/// written before the program runs, so a test can check it is gone afterwards.
fn command_with_pidfile(pidfile: &std::path::Path, argv: &[String]) -> Vec<String> {
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

/// The pid in `pidfile`, which must be gone (killed and reaped) now that the profiler exited;
/// `what` describes the profiler's run for the failure message.
fn ensure_child_gone(pidfile: &std::path::Path, what: &str) -> Result<()> {
    let text = std::fs::read_to_string(pidfile)
        .with_context(|| format!("the command never started:\n{what}"))?;
    let pid: u32 = text.trim().parse().context("pidfile")?;
    let state = proc_state(pid);
    if state.is_some() {
        kill_pid(pid);
    }
    ensure!(
        state.is_none(),
        "the started command (pid {pid}) outlived the profiler (state {state:?}):\n{what}"
    );
    Ok(())
}

/// Bad numbers for every numeric option of every verb: rejected by the command line parser
/// (exit 2, a message naming the accepted range) before anything starts: the `-- command`
/// never runs. `nan`, `inf`, negatives and `1e300` used to panic after sampling started.
#[test]
fn numeric_options_are_checked_before_anything_starts() {
    let dir = TempDir::new("numbers");
    let marker = dir.join("started");
    let out = dir.join("x.txt").display().to_string();
    let cmd = [
        "--",
        "sh",
        "-c",
        &format!("touch '{}'; exec sleep 30", marker.display()),
    ];
    let record = |opt: &[&str]| {
        let mut a = vec!["record", "-f", "raw", "-o", &out];
        a.extend_from_slice(opt);
        a.extend_from_slice(&cmd);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let top = |opt: &[&str]| {
        let mut a = vec!["top"];
        a.extend_from_slice(opt);
        a.extend_from_slice(&cmd);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let dump = |opt: &[&str]| {
        let mut a = vec!["dump"];
        a.extend_from_slice(opt);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    // (arguments, words the message must contain)
    let cases: Vec<(Vec<String>, &[&str])> = vec![
        (record(&["-d", "nan"]), &["--duration", "0.01 to 31536000"]),
        (record(&["-d", "inf"]), &["--duration", "0.01 to 31536000"]),
        (record(&["-d=-1"]), &["--duration", "0.01 to 31536000"]),
        (
            record(&["-d", "1e300"]),
            &["--duration", "0.01 to 31536000"],
        ),
        (record(&["-d", "0"]), &["--duration", "0.01 to 31536000"]),
        (record(&["-r", "0"]), &["--rate", "at least 1"]),
        (record(&["-r", "1e9"]), &["--rate", "maximum, 10000"]),
        (record(&["-r", "10001"]), &["--rate", "maximum, 10000"]),
        (
            record(&["-r", "18446744073709551616"]),
            &["--rate", "maximum, 10000"],
        ),
        (record(&["-r", "nan"]), &["--rate", "1 to 10000"]),
        (
            record(&["--native", "--native-stack-size", "1e9"]),
            &["--native-stack-size", "not a size"],
        ),
        (top(&["-r", "0"]), &["--rate", "at least 1"]),
        (top(&["-r", "1e9"]), &["--rate", "maximum, 10000"]),
        (top(&["--delay", "0"]), &["--delay", "0.01 to 86400"]),
        (top(&["--delay", "nan"]), &["--delay", "0.01 to 86400"]),
        (top(&["--delay", "inf"]), &["--delay", "0.01 to 86400"]),
        (top(&["--delay=-1"]), &["--delay", "0.01 to 86400"]),
        (
            top(&["--native", "--native-stack-size", "99999999999999999999"]),
            &["--native-stack-size", "not a size"],
        ),
        (dump(&["--pid", "0"]), &["--pid", "1 to 4194304"]),
        (dump(&["--pid", "99999999"]), &["--pid", "1 to 4194304"]),
        (
            dump(&["--pid", "1", "--native", "--native-stack-size=-1"]),
            &["--native-stack-size"],
        ),
        (
            ["record", "-f", "raw", "-o", &out, "--pid", "0"]
                .map(String::from)
                .to_vec(),
            &["--pid", "1 to 4194304"],
        ),
    ];
    let mut errors = Vec::new();
    for (args, words) in &cases {
        let result = run(pyspy_bpf().args(args), RUN_TIMEOUT)
            .and_then(|o| o.no_panic())
            .and_then(|o| {
                ensure!(
                    o.status.code() == Some(2),
                    "expected a usage error (exit 2):\n{}",
                    o.describe()
                );
                for w in *words {
                    ensure!(o.stderr.contains(w), "no {w:?} in:\n{}", o.describe());
                }
                ensure!(
                    !marker.exists(),
                    "the command was started:\n{}",
                    o.describe()
                );
                Ok(())
            });
        if let Err(e) = result {
            errors.push(format!("{args:?}: {e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

/// An error after the `-- command` was started (an option the chosen sampler lacks, an output
/// file that cannot be created) ends with a clean `Error:` line and kills and reaps the
/// command: no orphan keeps running.
#[test]
fn errors_after_starting_a_command_leave_no_child() {
    let interp = interpreters().into_iter().next();
    let Some(interp) = interp else {
        eprintln!("errors_after_starting_a_command_leave_no_child: no interpreters");
        return;
    };
    let dir = TempDir::new("orphans");
    let busy = interp.argv(&scripts_dir().join("busy.py"), &[]);
    let ok_out = dir.join("x.txt").display().to_string();
    let missing_out = dir.join("no/such/dir/x.txt").display().to_string();
    let mut cases: Vec<(Vec<&str>, &[&str])> = vec![(
        vec!["record", "-f", "raw", "-d", "0.5", "-o", &missing_out],
        &["no/such/dir"],
    )];
    if is_root() {
        cases.push((
            vec![
                "record",
                "--mode",
                "bpf",
                "--blocking",
                "-f",
                "raw",
                "-o",
                &ok_out,
            ],
            &["--blocking"],
        ));
    }
    let mut errors = Vec::new();
    for (i, (args, words)) in cases.iter().enumerate() {
        let pidfile = dir.join(&format!("pid{i}"));
        let mut cmd = pyspy_bpf();
        cmd.args(args)
            .arg("--")
            .args(command_with_pidfile(&pidfile, &busy));
        let result =
            expect_error(&mut cmd, words).and_then(|line| ensure_child_gone(&pidfile, &line));
        if let Err(e) = result {
            errors.push(format!("{args:?}: {e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}
