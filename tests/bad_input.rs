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
            if let Err(e) = expect_error(
                &mut as_nobody(&bin, &args),
                &["permission", "belongs to root", "nobody", "CAP_SYS_PTRACE"],
            ) {
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
    let mut cmd = as_nobody(
        &bin,
        &["record", "--all", "-f", "raw", "-d", "1", "-o", &out],
    );
    let line = expect_error(&mut cmd, &["CAP_BPF", "CAP_PERFMON"]).unwrap();
    // libbpf's own warnings ("Couldn't load trivial BPF program...") go to the debug log.
    let out = run(&mut cmd, RUN_TIMEOUT).unwrap();
    assert_eq!(
        out.stderr.lines().next(),
        Some(line.as_str()),
        "the error is not the first line:\n{}",
        out.describe()
    );
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
    // (An output path that cannot be written is refused before the command starts: see
    // tests/hostile_files.rs. The errors here come after it started.)
    let mut cases: Vec<(Vec<&str>, &[&str])> = Vec::new();
    if !root_test_can_run(
        "errors_after_starting_a_command_leave_no_child",
        "its errors come from --mode bpf, which needs root",
    ) {
        return;
    }
    {
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
        let result = expect_error(&mut cmd, words)
            .and_then(|line| ensure_started_command_gone(&pidfile, &line));
        if let Err(e) = result {
            errors.push(format!("{args:?}: {e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

/// A kernel thread (kthreadd is pid 2 on a host; containers may not see any): said to be one,
/// by name, not "not found".
#[test]
fn pid_is_a_kernel_thread() {
    let kthread = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p > 1)
        .find(|&p| {
            // PF_KTHREAD in the flags (field 9 of /proc/PID/stat).
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let flags: u64 = s
                        .rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(6)?
                        .parse()
                        .ok()?;
                    Some(flags & 0x0020_0000 != 0)
                })
                .unwrap_or(false)
        });
    let Some(pid) = kthread else {
        eprintln!("pid_is_a_kernel_thread: no kernel thread visible here (a pid namespace)");
        return;
    };
    let name = comm(pid).expect("comm");
    let dir = TempDir::new("kthread");
    let out = dir.join("x.txt").display().to_string();
    let pid = pid.to_string();
    let mut errors = Vec::new();
    for args in [
        vec!["dump", "--pid", &pid],
        vec!["record", "-f", "raw", "-o", &out, "-d", "1", "--pid", &pid],
        vec!["top", "--pid", &pid],
    ] {
        if let Err(e) = expect_error(
            pyspy_bpf().args(&args),
            &[&format!(
                "PID {pid} is a kernel thread ({name}), not a Python process"
            )],
        ) {
            errors.push(format!("{e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// A target traced by another tracer (as by strace or gdb): pausing it (--blocking, --native)
/// says who traces it and that reading without pausing works; and reading without pausing
/// does work.
#[test]
fn pid_traced_by_another_tracer() {
    for_each_interpreter("pid_traced_by_another_tracer", |interp| {
        if interp.is_py2() {
            // tracer.py is Python 3; the target's version does not matter to it.
            return Ok(());
        }
        let target = interp.start("busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        let tracer = interp.start("tracer.py", &[&pid])?;
        tracer.wait_ready()?;
        let tracer_pid = tracer.pid().to_string();
        let dir = TempDir::new("traced");
        let out = dir.join("x.txt").display().to_string();
        let words = [
            "cannot pause".to_string(),
            format!("traced by {tracer_pid} ("),
            "reading without pausing it still works".to_string(),
        ];
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let mut errors = Vec::new();
        for args in [
            vec!["dump", "--blocking", "--pid", &pid],
            vec!["dump", "--native", "--pid", &pid],
            vec![
                "record",
                "--blocking",
                "-f",
                "raw",
                "-o",
                &out,
                "-d",
                "1",
                "--pid",
                &pid,
            ],
        ] {
            if let Err(e) = expect_error(pyspy_bpf().args(&args), &words) {
                errors.push(format!("{e:#}"));
            }
        }
        let dump = pyspy(&["dump", "--pid", &pid])?.ok()?;
        if !dump.stdout.contains("level_b") {
            errors.push(format!(
                "dump without --blocking failed:\n{}",
                dump.describe()
            ));
        }
        ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(())
    });
}

/// The system interpreter, which `nobody` can run (the provisioned ones live under root's
/// home), or None.
fn system_interpreter() -> Option<Interpreter> {
    interpreters().into_iter().find(|i| i.flavour == "system")
}

/// busy.py copied where `nobody` can read it.
fn busy_for_nobody(dir: &TempDir) -> PathBuf {
    let script = dir.join("busy.py");
    std::fs::copy(scripts_dir().join("busy.py"), &script).expect("copy busy.py");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    script
}

/// Root whose capabilities lack CAP_SYS_PTRACE (as in a container that dropped it), reading
/// another user's process: the error says exactly that, and does not tell root to run as
/// root.
#[test]
fn root_without_cap_sys_ptrace() {
    if !is_root() {
        assert!(!in_ci(), "CI must run the tests as root");
        eprintln!("root_without_cap_sys_ptrace: skipped, needs root");
        return;
    }
    let Some(python) = system_interpreter() else {
        assert!(!in_ci(), "CI needs /usr/bin/python3 for this test");
        eprintln!("root_without_cap_sys_ptrace: skipped, no /usr/bin/python3");
        return;
    };
    let dir = TempDir::new("noptrace");
    let (bin, out_dir) = binary_for_nobody(&dir);
    let script = busy_for_nobody(&dir);
    let target = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&python.path)
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .current_dir("/")
        .spawn()
        .expect("start python as nobody");
    let target = ChildGuard(target);
    let pid = target.pid().to_string();
    // Wait until the exec happened: the pid then shows python, owned by nobody.
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while !comm(target.pid()).is_some_and(|c| c.starts_with("python")) {
        assert!(std::time::Instant::now() < deadline, "python did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = out_dir.join("x.txt").display().to_string();
    let mut errors = Vec::new();
    for args in [
        vec!["dump", "--pid", &pid],
        vec!["record", "-f", "raw", "-o", &out, "-d", "1", "--pid", &pid],
    ] {
        let mut cmd = Command::new("setpriv");
        cmd.arg("--bounding-set=-sys_ptrace").arg(&bin).args(&args);
        match expect_error(&mut cmd, &["permission", "root but without CAP_SYS_PTRACE"]) {
            Ok(line)
                if ["run as root,", "run as root or", "needs root"]
                    .iter()
                    .any(|advice| line.contains(advice)) =>
            {
                errors.push(format!("root is told to run as root: {line}"))
            }
            Ok(_) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// `record -- python` as `nobody`, `auto` mode: one line says why the user-space sampler is
/// used (the BPF sampler needs CAP_BPF + CAP_PERFMON), with no libbpf warnings before it, and
/// the recording works.
#[test]
fn fallback_notice_as_nobody() {
    if !is_root() {
        assert!(!in_ci(), "CI must run the tests as root");
        eprintln!("fallback_notice_as_nobody: skipped, needs root to run the profiler as `nobody`");
        return;
    }
    let Some(python) = system_interpreter() else {
        assert!(!in_ci(), "CI needs /usr/bin/python3 for this test");
        eprintln!("fallback_notice_as_nobody: skipped, no /usr/bin/python3");
        return;
    };
    let dir = TempDir::new("nobody-fallback");
    let (bin, out_dir) = binary_for_nobody(&dir);
    let script = busy_for_nobody(&dir).display().to_string();
    let profile = out_dir.join("x.txt");
    let profile_s = profile.display().to_string();
    let python = python.path.display().to_string();
    let out = run(
        &mut as_nobody(
            &bin,
            &[
                "record", "-f", "raw", "-o", &profile_s, "--", &python, &script, "2",
            ],
        ),
        RUN_TIMEOUT,
    )
    .unwrap()
    .ok()
    .unwrap();
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("pyspy-bpf: using the user-space sampler:")
            && first.contains("CAP_BPF")
            && first.contains("CAP_PERFMON"),
        "the first line is not the fall-back notice:\n{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("libbpf"),
        "libbpf's own lines reached stderr:\n{}",
        out.describe()
    );
    let stacks = read_raw(&profile).unwrap();
    assert!(
        stacks
            .iter()
            .any(|s| s.leaf().is_some_and(|l| l.starts_with("level_b (busy.py:"))),
        "{}\n{}",
        summary(&stacks),
        out.describe()
    );
}
