//! Wall-clock profiles in BPF mode (`record --idle`, as root): the sched_switch program records
//! the time threads spend off the CPU, so a thread sleeping in `time.sleep` and one blocked
//! reading a pipe show their share of wall time, within 10 percentage points of what the
//! workload measured itself (tests/scripts/wall_split.py), on every interpreter and with both
//! loops of the BPF Python walk; `--all --idle` does the same host-wide; the profile says it is
//! a wall profile (pprof `wall`/`nanoseconds`), and `diff` refuses to compare it with a CPU
//! profile.

mod common;

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use common::*;

/// Seconds the workload runs after it says ready.
const WORKLOAD_SECS: &str = "2.5";
/// How far the profile's share of a thread's wall time in its wait may be from the workload's
/// own measure.
const TOLERANCE: f64 = 0.10;

/// These tests measure workloads whose split depends on getting the CPU when they want: one
/// test at a time (and at most two interpreters at once) on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn jobs() {
    if std::env::var_os("PYSPY_TEST_JOBS").is_none() {
        std::env::set_var("PYSPY_TEST_JOBS", "2");
    }
}

/// `NAME FRACTION` lines written by wall_split.py.
fn read_truth(path: &Path) -> Result<Vec<(String, f64)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the workload wrote no {}", path.display()))?;
    text.lines()
        .map(|l| {
            let (name, fraction) = l
                .split_once(' ')
                .ok_or_else(|| anyhow!("bad truth line {l:?}"))?;
            Ok((name.to_string(), fraction.parse()?))
        })
        .collect()
}

/// (time in `wait_fn`, all time) of thread `name`'s stacks, in the profile's unit; with
/// `process_root`, only stacks under it (--all).
fn thread_split(
    stacks: &[RawStack],
    process_root: Option<&str>,
    name: &str,
    wait_fn: &str,
) -> (u64, u64) {
    // The thread by its tid: its first samples may carry its OS name instead of `name`.
    // `threading` registers a new thread a moment after it starts, and a thread it does not
    // know yet is looked up again after `thread_names::FIRST_RETRY` (20 ms).
    let named = format!("thread \"{name}\" (");
    let thread_frames = |s: &RawStack| -> Vec<String> {
        let candidates = s.frames.iter().take(2);
        candidates
            .filter(|f| f.starts_with("thread \""))
            .cloned()
            .collect()
    };
    let tids: std::collections::HashSet<String> = stacks
        .iter()
        .flat_map(thread_frames)
        .filter_map(|f| f.strip_prefix(&named).map(|tid| format!(" ({tid}")))
        .collect();
    let mine: Vec<&RawStack> = stacks
        .iter()
        .filter(|s| match process_root {
            Some(root) => s.frames.first().is_some_and(|f| f == root),
            None => true,
        })
        .filter(|s| {
            thread_frames(s)
                .iter()
                .any(|f| tids.iter().any(|tid| f.ends_with(tid.as_str())))
        })
        .collect();
    let wait = format!("{wait_fn} (wall_split.py:");
    let waiting = count(mine.iter().copied(), |s| {
        s.frames.iter().any(|f| f.starts_with(&wait))
    });
    (waiting, count(mine.iter().copied(), |_| true))
}

/// Each thread's share of wall time in its wait against the workload's own; its total must
/// also be most of the time it ran (microseconds of wall time, not a CPU profile's samples).
fn check_split(
    stacks: &[RawStack],
    process_root: Option<&str>,
    truth: &[(String, f64)],
    lived_us: f64,
) -> Result<String> {
    let mut seen = Vec::new();
    for (name, wait_fn) in [("sleeper", "nap"), ("reader", "wait_pipe")] {
        let want = truth
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| anyhow!("no truth for {name}"))?;
        let (waiting, all) = thread_split(stacks, process_root, name, wait_fn);
        let got = waiting as f64 / all.max(1) as f64;
        if (got - want).abs() > TOLERANCE || (all as f64) < lived_us * 0.6 {
            bail!(
                "thread {name}: {:.1}% of {} µs in {wait_fn}, the workload measured {:.1}% (of ~{:.0} µs)\n{}",
                got * 100.0,
                all,
                want * 100.0,
                lived_us,
                summary(stacks)
            );
        }
        seen.push(format!(
            "{name} {:.1}% (truth {:.1}%)",
            got * 100.0,
            want * 100.0
        ));
    }
    Ok(seen.join(", "))
}

#[test]
fn wall_mode_shows_sleeping_and_blocked_threads_on_every_interpreter() {
    if !bpf_test_can_run("wall") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    jobs();
    let script = scripts_dir().join("wall_split.py");
    for_each_interpreter("wall_mode", |interp| {
        // Both loops of the Python walk (the off-CPU program walks too): bpf_loop, and the
        // bounded loop of kernels before 5.17.
        for bounded in ["0", "1"] {
            let dir = TempDir::new("wall");
            let out = dir.join("wall.txt");
            let truth = dir.join("truth.txt");
            let (out_s, truth_s) = (out.display().to_string(), truth.display().to_string());
            let mut argv: Vec<String> = [
                "record", "--mode", "bpf", "--idle", "-t", "-f", "raw", "-o", &out_s, "--",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            argv.extend(interp.argv(&script, &[WORKLOAD_SECS, &truth_s]));
            let outcome = run(
                pyspy_bpf()
                    .env("PYSPY_BPF_BOUNDED_WALK", bounded)
                    .args(&argv),
                RUN_TIMEOUT,
            )?
            .ok()?;
            if !outcome.stderr.contains("threads off the CPU") {
                bail!("not a wall-clock run:\n{}", outcome.describe());
            }
            let stacks = read_raw(&out)?;
            let truth = read_truth(&truth)?;
            let lived_us = WORKLOAD_SECS.parse::<f64>()? * 1e6;
            let seen = check_split(&stacks, None, &truth, lived_us)
                .with_context(|| format!("bounded walk: {bounded}\n{}", outcome.describe()))?;
            eprintln!("{} (bounded walk: {bounded}): {seen}", interp.label());
        }
        Ok(())
    });
}

/// `--all --idle`: every Python process's threads, on and off the CPU; the workload was
/// running (its threads mostly asleep) before the recording started.
#[test]
fn wall_mode_with_all_covers_python_processes() {
    if !bpf_test_can_run("wall") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let interp = interpreters()
        .into_iter()
        .rev()
        .find(|i| i.flavour == "static")
        .expect("an interpreter");
    let dir = TempDir::new("wall-all");
    let truth = dir.join("truth.txt");
    let target = interp
        .start("wall_split.py", &["4", &truth.display().to_string()])
        .unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid();
    let out = dir.join("all.txt");
    let out_s = out.display().to_string();
    let outcome = pyspy(&[
        "record", "--all", "--idle", "-t", "-d", "2.5", "-f", "raw", "-o", &out_s,
    ])
    .unwrap()
    .ok()
    .unwrap();
    let Running { mut guard, .. } = target;
    guard.0.wait().unwrap();
    let stacks = read_raw(&out).unwrap();
    let root = format!("{} ({pid})", comm(pid).unwrap_or_default());
    let roots: Vec<&str> = stacks.iter().filter_map(|s| s.root()).collect();
    let root = roots
        .iter()
        .find(|r| r.ends_with(&format!("({pid})")))
        .map(|r| r.to_string())
        .unwrap_or(root);
    // Wall time with --all is Python processes' only.
    assert!(
        stacks.iter().all(|s| {
            let r = s.root().unwrap_or("");
            r.contains("python") || r.starts_with("process ") || r.ends_with(&format!("({pid})"))
        }),
        "a process that is not Python in a wall profile:\n{}",
        summary(&stacks)
    );
    let truth = read_truth(&truth).unwrap();
    match check_split(&stacks, Some(&root), &truth, 2.5e6) {
        Ok(seen) => eprintln!("{}: {seen}", interp.label()),
        Err(e) => panic!("{}: {e:#}\n{}", interp.label(), outcome.describe()),
    }
}

/// A wall profile says so (pprof `wall`, `nanoseconds`), and `diff` refuses to compare it with a
/// CPU profile of the same program.
#[test]
fn wall_profiles_say_so_and_diff_refuses_cpu_against_wall() {
    if !bpf_test_can_run("wall") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let interp = interpreters()
        .into_iter()
        .rev()
        .find(|i| i.flavour == "static")
        .expect("an interpreter");
    let dir = TempDir::new("wall-diff");
    let truth = dir.join("truth.txt");
    let target = interp
        .start("wall_split.py", &["30", &truth.display().to_string()])
        .unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid().to_string();
    let record = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let out_s = out.display().to_string();
        let mut args = vec![
            "record", "--mode", "bpf", "-d", "1", "-o", &out_s, "-p", &pid,
        ];
        args.extend(extra);
        pyspy(&args).unwrap().ok().unwrap();
        out
    };
    let cpu = record("cpu.pb.gz", &["-t"]);
    let wall = record("wall.pb.gz", &["-t", "--idle"]);
    let (cpu_s, wall_s) = (cpu.display().to_string(), wall.display().to_string());
    // The sleeper naps ~60% of the time: in the wall profile (converted to collapsed stacks,
    // microseconds), not in the CPU profile.
    let naps = |profile: &str| {
        let raw = dir.join("converted.txt");
        let raw_s = raw.display().to_string();
        pyspy(&["convert", profile, "-f", "raw", "-t", "-o", &raw_s])
            .unwrap()
            .ok()
            .unwrap();
        let stacks = read_raw(&raw).unwrap();
        let _ = std::fs::remove_file(&raw);
        (
            thread_split(&stacks, None, "sleeper", "nap").0,
            summary(&stacks),
        )
    };
    let (wall_naps, wall_summary) = naps(&wall_s);
    assert!(
        wall_naps >= 300_000,
        "{wall_naps} µs in nap, want ~600000\n{wall_summary}"
    );
    let (cpu_naps, cpu_summary) = naps(&cpu_s);
    assert!(
        cpu_naps <= 2,
        "{cpu_naps} CPU samples in nap\n{cpu_summary}"
    );
    if let Some(text) = go_pprof(&["-raw"], &wall) {
        assert!(
            text.contains("wall/nanoseconds"),
            "no wall/nanoseconds sample type:\n{}",
            clip(&text, 2000)
        );
    }
    let refused = pyspy(&["diff", &cpu_s, &wall_s]).unwrap();
    assert!(
        !refused.status.success() && refused.stderr.contains("different things"),
        "{}",
        refused.describe()
    );
    let refused = pyspy(&["diff", &wall_s, &cpu_s]).unwrap();
    assert!(
        !refused.status.success() && refused.stderr.contains("different things"),
        "{}",
        refused.describe()
    );
}

/// A thread asleep since before the recording started (sleeper.py's main thread, in an hour's
/// time.sleep) never leaves or comes back to a CPU during it: user space reads its stack at
/// the start and tells the BPF program it is away, so the whole recording is its wall time.
#[test]
fn wall_mode_counts_threads_asleep_since_before_the_start() {
    if !bpf_test_can_run("wall") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    jobs();
    let leaf = format!(
        "wait_forever (sleeper.py:{})",
        line_of("sleeper.py", "sleep")
    );
    for_each_interpreter("wall_asleep", |interp| {
        let target = interp.start("sleeper.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid();
        // Asleep in time.sleep (not still on its way there) before recording.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while proc_state(pid) != Some('S') {
            if std::time::Instant::now() > deadline {
                bail!("pid {pid} never slept");
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let dir = TempDir::new("wall-asleep");
        let out = dir.join("asleep.txt");
        let out_s = out.display().to_string();
        let pid_s = pid.to_string();
        let outcome = pyspy(&[
            "record", "--mode", "bpf", "--idle", "-d", "1", "-f", "raw", "-o", &out_s, "-p", &pid_s,
        ])?
        .ok()?;
        let stacks = read_raw(&out)?;
        let asleep = count(&stacks, |s| s.leaf() == Some(leaf.as_str()));
        if !(800_000..=1_500_000).contains(&asleep) {
            bail!(
                "{asleep} µs at {leaf}, want the recording's second\n{}\n{}",
                summary(&stacks),
                outcome.describe()
            );
        }
        Ok(())
    });
}

/// `diff` of two wall profiles compares time: `nap` sleeping twice as long per loop is a
/// regression of its share of wall time (1/2 -> 2/3), though its share of the samples (one
/// off-CPU sample per nap) does not change.
#[test]
fn diff_of_wall_profiles_compares_time() {
    if !bpf_test_can_run("wall") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let interp = interpreters()
        .into_iter()
        .rev()
        .find(|i| i.flavour == "static")
        .expect("an interpreter");
    let dir = TempDir::new("wall-diff-time");
    let script = scripts_dir().join("work_and_nap.py");
    let record = |name: &str, nap_ms: &str| {
        let out = dir.join(name);
        let out_s = out.display().to_string();
        let mut args: Vec<String> = ["record", "--mode", "bpf", "--idle", "-r", "1000", "-o"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(out_s.clone());
        args.push("--".into());
        args.extend(interp.argv(&script, &[nap_ms, "4"]));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = pyspy(&args).unwrap();
        assert!(o.status.success(), "{}", o.describe());
        out_s
    };
    let base = record("base.pb.gz", "40");
    let head = record("head.pb.gz", "80");
    // (--min-change 2: the interpreter's start, ~1% of a run, is not what is compared.)
    let o = pyspy(&[
        "diff",
        &base,
        &head,
        "--python-only",
        "--min-change",
        "2",
        "--json",
    ])
    .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    let verdict = |name: &str| {
        v["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["function"] == name)
            .map(|f| f["verdict"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(verdict("nap").as_deref(), Some("regressed"), "{v}");
    assert_ne!(verdict("work").as_deref(), Some("regressed"), "{v}");
    assert_ne!(verdict("other").as_deref(), Some("regressed"), "{v}");
    let o = pyspy(&["diff", &base, &head, "--python-only"]).unwrap();
    assert!(o.stdout.contains("s of wall time"), "{}", o.describe());
}
