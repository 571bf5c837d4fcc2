//! `--blocking`: the target is paused for each read and always resumed — after a normal
//! recording, and also when the profiler is killed outright in the middle of one.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;

/// User + system CPU ticks the process has used (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The target is running (not stopped or traced) and its CPU time still grows. Both are
/// polled for a few seconds: on a loaded machine the target may get little CPU.
fn assert_running(pid: u32, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let before = cpu_ticks(pid).context("target vanished")?;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let state = proc_state(pid).context("target vanished")?;
        let now = cpu_ticks(pid).context("target vanished")?;
        if !matches!(state, 'T' | 't') && now > before {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{what}: target in state {state}, CPU ticks {before} -> {now} after 5 s"
        );
    }
}

#[test]
fn blocking_record_resumes_the_target() {
    for_each_interpreter("blocking_record_resumes_the_target", |interp| {
        let dir = TempDir::new("blocking");
        let target = interp.start("busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        let out = dir.join("out.txt");
        let out_s = out.display().to_string();
        pyspy(&[
            "record",
            "--blocking",
            "-r",
            "200",
            "-d",
            "1",
            "-f",
            "raw",
            "-o",
            &out_s,
            "--pid",
            &pid,
        ])?
        .ok()?;
        let stacks = read_raw(&out)?;
        ensure!(
            total(&stacks) >= 20,
            "too few samples:\n{}",
            summary(&stacks)
        );
        let leaf = heaviest(&stacks)
            .and_then(|s| s.leaf())
            .unwrap_or("")
            .to_string();
        ensure!(leaf.starts_with("level_b "), "heaviest leaf is {leaf}");
        assert_running(target.pid(), "after a blocking record")
    });
}

#[test]
fn killed_profiler_never_leaves_the_target_stopped() {
    for_each_interpreter(
        "killed_profiler_never_leaves_the_target_stopped",
        |interp| {
            let target = interp.start("busy.py", &[])?;
            target.wait_ready()?;
            let pid = target.pid().to_string();
            // Many pauses a second, then SIGKILL at an arbitrary point: no Drop runs, so only the
            // kernel's ptrace detach can resume the target.
            for attempt in 0..3 {
                let mut profiler = pyspy_bpf()
                    .args([
                        "record",
                        "--blocking",
                        "-r",
                        "1000",
                        "-d",
                        "30",
                        "-f",
                        "raw",
                        "-o",
                        "/dev/null",
                        "--pid",
                        &pid,
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                let started = Instant::now();
                std::thread::sleep(Duration::from_millis(300 + 77 * attempt));
                profiler.kill()?;
                profiler.wait()?;
                ensure!(
                    started.elapsed() < Duration::from_secs(10),
                    "profiler did not die"
                );
                assert_running(target.pid(), &format!("after SIGKILL #{attempt}"))?;
            }
            Ok(())
        },
    );
}
