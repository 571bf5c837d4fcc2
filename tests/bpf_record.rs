//! `record` with the BPF sampler, as root: `--all` sees every process on the host under its
//! own `name (pid)` root, Python ones with their Python functions, including a process that
//! starts halfway through; `--mode bpf --pid` records only that process.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The BPF tests count on-CPU samples: run them one at a time so they do not starve each
/// other of CPU on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn require_root() -> bool {
    bpf_test_can_run("bpf_record")
}

/// Pick up to `n` interpreters of different series (static flavour), newest first.
fn distinct_series(n: usize) -> Vec<Interpreter> {
    let mut out: Vec<Interpreter> = Vec::new();
    for i in interpreters().into_iter().rev() {
        if i.flavour == "static" && !out.iter().any(|o| o.series == i.series) {
            out.push(i);
        }
    }
    out.truncate(n);
    out
}

#[test]
fn record_all_shows_every_process_under_its_own_root() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pythons = distinct_series(4);
    assert!(
        pythons.len() >= 3,
        "need three interpreter series, have {}",
        pythons.len()
    );
    let (early, late) = pythons.split_at(3);
    let running: Vec<Running> = early
        .iter()
        .map(|i| i.start("busy.py", &[]).unwrap())
        .collect();
    for r in &running {
        r.wait_ready().unwrap();
    }
    // A busy process that is not Python.
    let native = ChildGuard(
        Command::new("dd")
            .args(["if=/dev/zero", "of=/dev/null", "bs=1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = TempDir::new("bpf-all");
    let out = dir.join("all.txt");
    let out_s = out.display().to_string();
    let mut profiler = pyspy_bpf()
        .args(["record", "--all", "-f", "raw", "-d", "4", "-o", &out_s])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Halfway through, a new Python process starts (the 4th series, or another 3.x).
    std::thread::sleep(Duration::from_millis(1500));
    let late_interp = late.first().unwrap_or(&early[0]).clone();
    let late_run = late_interp.start("busy.py", &[]).unwrap();
    late_run.wait_ready().unwrap();
    let status = profiler.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut profiler.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "record --all failed: {stderr}");
    let stacks = read_raw(&out).unwrap();
    let leaf = format!("level_b (busy.py:{})", line_of("busy.py", "busy"));
    let mut failures = Vec::new();
    for (r, what) in running
        .iter()
        .map(|r| (r, "running from the start"))
        .chain([(&late_run, "started halfway")])
    {
        let root_suffix = format!(" ({})", r.pid());
        let mine: Vec<&RawStack> = stacks
            .iter()
            .filter(|s| s.root().is_some_and(|root| root.ends_with(&root_suffix)))
            .collect();
        let with_leaf = mine
            .iter()
            .filter(|s| s.leaf() == Some(leaf.as_str()))
            .map(|s| s.count)
            .sum::<u64>();
        let all: u64 = mine.iter().map(|s| s.count).sum();
        // On-CPU samples depend on how busy the machine is: ask for a few, mostly in the loop.
        if with_leaf < 3 || with_leaf * 2 < all {
            failures.push(format!(
                "pid {} ({what}): {with_leaf} samples end in {leaf}",
                r.pid()
            ));
        }
    }
    let dd_root = format!("dd ({})", native.pid());
    let dd_samples: u64 = stacks
        .iter()
        .filter(|s| s.root() == Some(dd_root.as_str()))
        .map(|s| s.count)
        .sum();
    if dd_samples < 5 {
        failures.push(format!("{dd_root}: only {dd_samples} samples"));
    }
    assert!(
        failures.is_empty(),
        "{}\n{stderr}\n{}",
        failures.join("\n"),
        summary(&stacks)
    );
}

#[test]
fn record_pid_in_bpf_mode_records_only_that_process() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pythons = distinct_series(2);
    let target = pythons[0].start("busy.py", &[]).unwrap();
    target.wait_ready().unwrap();
    // Another busy Python process running the same script must not leak into the profile.
    let other = pythons.last().unwrap().start("busy.py", &[]).unwrap();
    other.wait_ready().unwrap();
    let dir = TempDir::new("bpf-pid");
    let out = dir.join("pid.txt");
    let out_s = out.display().to_string();
    let pid = target.pid().to_string();
    let outcome = pyspy(&[
        "record", "--mode", "bpf", "-t", "-f", "raw", "-d", "2", "-o", &out_s, "--pid", &pid,
    ])
    .unwrap()
    .ok()
    .unwrap();
    assert!(
        outcome.stderr.contains("BPF"),
        "not in BPF mode:\n{}",
        outcome.describe()
    );
    let stacks = read_raw(&out).unwrap();
    assert!(
        total(&stacks) >= 5,
        "too few samples:\n{}",
        summary(&stacks)
    );
    // With -t every stack starts at a thread root whose tid is a thread of the target.
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| format!("({})", e.unwrap().file_name().to_string_lossy()))
        .collect();
    for s in &stacks {
        let root = s.root().unwrap_or("");
        assert!(
            tids.iter().any(|t| root.ends_with(t.as_str())),
            "stack of another thread or process: {root}\n{}",
            summary(&stacks)
        );
    }
}

#[test]
fn record_command_in_bpf_mode() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let leaf = format!("level_b (busy.py:{})", line_of("busy.py", "busy"));
    for interp in distinct_series(6) {
        let dir = TempDir::new("bpf-cmd");
        let out = dir.join("cmd.txt");
        let out_s = out.display().to_string();
        let mut argv: Vec<String> = ["record", "--mode", "bpf", "-f", "raw", "-o", &out_s, "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(interp.argv(&scripts_dir().join("busy.py"), &["1.5"]));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let outcome = pyspy(&argv).unwrap().ok().unwrap();
        let stacks = read_raw(&out).unwrap();
        let at_leaf: u64 = stacks
            .iter()
            .filter(|s| s.leaf() == Some(leaf.as_str()))
            .map(|s| s.count)
            .sum();
        let all = total(&stacks);
        assert!(
            at_leaf >= 5 && at_leaf * 2 >= all,
            "{}: {at_leaf} samples in {leaf}\n{}\n{}",
            interp.label(),
            summary(&stacks),
            outcome.describe()
        );
    }
}

#[test]
fn record_native_in_bpf_mode_unwinds_to_the_root() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut pythons: Vec<Interpreter> = distinct_series(20)
        .into_iter()
        .filter(|i| !i.is_py2())
        .collect();
    pythons.extend(interpreters().into_iter().filter(|i| i.flavour == "system"));
    assert!(!pythons.is_empty(), "no interpreters");
    let mut failures = Vec::new();
    for interp in &pythons {
        let target = interp.start("busy.py", &[]).unwrap();
        target.wait_ready().unwrap();
        let dir = TempDir::new("bpf-native");
        let out = dir.join("native.txt");
        let out_s = out.display().to_string();
        let pid = target.pid().to_string();
        let outcome = pyspy(&[
            "record",
            "--mode",
            "bpf",
            "--native",
            "--native-all",
            "-f",
            "raw",
            "-d",
            "2",
            "-o",
            &out_s,
            "--pid",
            &pid,
        ])
        .unwrap();
        let Ok(outcome) = outcome.ok() else {
            failures.push(format!("{}: record failed", interp.label()));
            continue;
        };
        let stacks = read_raw(&out).unwrap();
        let python: Vec<&RawStack> = stacks
            .iter()
            .filter(|s| position(s, |f| f.contains("(busy.py:")).is_some())
            .collect();
        let all = count(python.iter().copied(), |_| true);
        let good_root = count(python.iter().copied(), rooted);
        // main -> level_a -> level_b, root first, under the interpreter's own native frames.
        let ordered = count(python.iter().copied(), |s| {
            let main = position(s, |f| f.starts_with("main (busy.py"));
            let a = position(s, |f| f.starts_with("level_a (busy.py"));
            let b = position(s, |f| f.starts_with("level_b (busy.py"));
            let native_below = main.is_some_and(|m| {
                s.frames[..m]
                    .iter()
                    .any(|f| f.contains("(libpython") || f.contains("(python"))
            });
            native_below && matches!((main, a, b), (Some(m), Some(a), Some(b)) if m < a && a < b)
        });
        if all < 20 || good_root * 100 < all * 90 || ordered * 100 < all * 90 {
            failures.push(format!(
                "{}: {all} Python samples, {good_root} reach the native root, {ordered} show \
                 native -> main -> level_a -> level_b\n{}\n{}",
                interp.label(),
                summary(&stacks),
                outcome.describe()
            ));
        } else {
            eprintln!(
                "{}: {good_root} of {all} Python samples reach the root",
                interp.label()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn record_all_native_keeps_native_processes() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let native = ChildGuard(
        Command::new("dd")
            .args(["if=/dev/zero", "of=/dev/null", "bs=1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = TempDir::new("bpf-all-native");
    let out = dir.join("all.txt");
    let out_s = out.display().to_string();
    let outcome = pyspy(&[
        "record",
        "--all",
        "--native",
        "--native-all",
        "-f",
        "raw",
        "-d",
        "2",
        "-o",
        &out_s,
    ])
    .unwrap()
    .ok()
    .unwrap();
    let stacks = read_raw(&out).unwrap();
    let dd_root = format!("dd ({})", native.pid());
    let dd: Vec<&RawStack> = stacks
        .iter()
        .filter(|s| s.root() == Some(dd_root.as_str()))
        .collect();
    let all: u64 = dd.iter().map(|s| s.count).sum();
    // dd's own code or libc's, unwound from its registers to its root (dd is stripped: its
    // _start has no name, libc's __libc_start_main has).
    let with_native: u64 = dd
        .iter()
        .filter(|s| {
            s.frames
                .iter()
                .any(|f| f.contains("(libc") || f.contains("(dd"))
        })
        .map(|s| s.count)
        .sum();
    let to_root: u64 = dd
        .iter()
        .filter(|s| {
            s.frames
                .iter()
                .any(|f| f.starts_with("__libc_start_main ("))
        })
        .map(|s| s.count)
        .sum();
    assert!(
        all >= 5 && with_native * 10 >= all * 9 && to_root * 10 >= all * 9,
        "{dd_root}: {all} samples, {with_native} with native frames, {to_root} reach __libc_start_main\n{}\n{}",
        summary(&stacks),
        outcome.describe()
    );
}

/// `N` from a stderr line "...<label>: N..." (the first number after the label).
fn count_after(stderr: &str, label: &str) -> Option<u64> {
    let at = stderr.find(label)? + label.len();
    stderr[at..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Issue 4's consistency check: the Python frames are walked by the BPF program at the same
/// instant as the native stack is copied, so the eval-loop frames of the native stack and the
/// Python frames pair up in every sample, on a workload that switches function every few
/// microseconds (calls entering and leaving the eval loop all the time).
#[test]
fn bpf_native_python_and_native_frames_agree_in_every_sample() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    for interp in interpreters() {
        let target = interp.start("switching.py", &[]).unwrap();
        target.wait_ready().unwrap();
        let dir = TempDir::new("bpf-consistency");
        let out = dir.join("switching.txt");
        let out_s = out.display().to_string();
        let stats_path = dir.join("switching.json");
        let stats_s = stats_path.display().to_string();
        let pid = target.pid().to_string();
        let outcome = pyspy(&[
            "record",
            "--mode",
            "bpf",
            "--native",
            "--native-all",
            "-r",
            "400",
            "-f",
            "raw",
            "-d",
            "2",
            "-o",
            &out_s,
            "--stats-json",
            &stats_s,
            "--pid",
            &pid,
        ])
        .unwrap();
        let Ok(outcome) = outcome.ok() else {
            failures.push(format!("{}: record failed", interp.label()));
            continue;
        };
        let stacks = read_raw(&out).unwrap();
        let stats = RunStats::read(&stats_path).unwrap();
        let walked = Some(stats.counter("walked_in_bpf"));
        let late = Some(stats.sum_of("read_late."));
        let mismatches = stats.counters.get("native.mismatched").copied();
        // Stacks whose Python part user space read after the sample (before the process was
        // registered with the BPF program) may disagree: they are counted apart.
        let late_mismatches = stats.counter("native.mismatched_read_late");
        let in_fn = |name: &str| -> u64 {
            let frame = format!("{name} (switching.py");
            count(&stacks, |s| {
                position(s, |f| f.starts_with(&frame)).is_some()
            })
        };
        let marked = count(&stacks, |s| {
            position(s, |f| f.contains("mismatch")).is_some()
        });
        let (a, b) = (in_fn("func_a"), in_fn("func_b"));
        let ok = matches!((walked, late, mismatches), (Some(w), Some(l), Some(0)) if w >= 100 && l * 10 <= w)
            && marked == late_mismatches
            && a >= 10
            && b >= 10;
        if ok {
            eprintln!(
                "{}: {} stacks walked in BPF, 0 mismatches ({a} in func_a, {b} in func_b)",
                interp.label(),
                walked.unwrap_or(0)
            );
        } else {
            failures.push(format!(
                "{}: walked in BPF {walked:?}, read late {late:?}, mismatches {mismatches:?} \
                 (+{late_mismatches} late), {marked} marked in the profile, func_a {a}, \
                 func_b {b}\n{}\n{}",
                interp.label(),
                summary(&stacks),
                outcome.describe()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The BPF walk stops at 64 frames and user space continues from where it stopped: a 600-deep
/// recursion comes out whole, in order, from stacks walked in BPF; and a thread other than
/// the main one (registered with the BPF program by its thread id) is walked there too, under
/// its own thread id.
#[test]
fn bpf_walk_continues_deep_stacks_and_follows_threads() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut pythons = distinct_series(20);
    pythons.extend(interpreters().into_iter().filter(|i| i.flavour == "system"));
    let mut failures = Vec::new();
    for interp in &pythons {
        let dir = TempDir::new("bpf-walk");
        // Deep recursion.
        let target = interp.start("deep.py", &[]).unwrap();
        target.wait_ready().unwrap();
        let out = dir.join("deep.txt");
        let out_s = out.display().to_string();
        let pid = target.pid().to_string();
        let stats_path = dir.join("deep.json");
        let stats_s = stats_path.display().to_string();
        let outcome = pyspy(&[
            "record",
            "--mode",
            "bpf",
            "-f",
            "raw",
            "-d",
            "2",
            "-o",
            &out_s,
            "--stats-json",
            &stats_s,
            "--pid",
            &pid,
        ])
        .unwrap();
        drop(target);
        let recurse_line = line_of("deep.py", "recurse");
        let busy_line = line_of("deep.py", "busy");
        let expected: Vec<String> = std::iter::once("<module> (deep.py:".to_string())
            .chain((0..599).map(|_| format!("recurse (deep.py:{recurse_line})")))
            .collect();
        let whole = |s: &RawStack| {
            s.frames.len() == 602
                && s.frames[0].starts_with(&expected[0])
                && s.frames[1..600] == expected[1..600]
                && s.frames[600].starts_with("recurse (deep.py:")
                && s.frames[601] == format!("leaf (deep.py:{busy_line})")
        };
        match outcome.ok() {
            Ok(outcome) => {
                let stacks = read_raw(&out).unwrap();
                let all = total(&stacks);
                let good: u64 = stacks.iter().filter(|s| whole(s)).map(|s| s.count).sum();
                let walked = RunStats::read(&stats_path)
                    .ok()
                    .map(|s| s.counter("walked_in_bpf"));
                if all < 20 || good * 100 < all * 95 || walked.is_none_or(|w| w * 10 < all * 9) {
                    failures.push(format!(
                        "{} deep.py: {good} of {all} stacks whole, {walked:?} walked in BPF\n{}",
                        interp.label(),
                        outcome.describe()
                    ));
                }
            }
            Err(e) => failures.push(format!("{} deep.py: {e}", interp.label())),
        }

        // A busy thread that is not the main thread, under its own thread id.
        let target = interp.start("threads.py", &[]).unwrap();
        let ready = target.wait_ready().unwrap();
        let ids: serde_json::Value =
            serde_json::from_str(ready.trim_start_matches("ready ")).unwrap();
        let worker_tid = ids["worker-1"][0].as_u64().unwrap();
        let out = dir.join("threads.txt");
        let out_s = out.display().to_string();
        let stats_path = dir.join("threads.json");
        let stats_s = stats_path.display().to_string();
        let pid = target.pid().to_string();
        let outcome = pyspy(&[
            "record",
            "--mode",
            "bpf",
            "--threads",
            "-f",
            "raw",
            "-d",
            "2",
            "-o",
            &out_s,
            "--stats-json",
            &stats_s,
            "--pid",
            &pid,
        ])
        .unwrap();
        let spin_line = line_of("threads.py", "spin");
        match outcome.ok() {
            Ok(outcome) => {
                let stacks = read_raw(&out).unwrap();
                let spin = count(&stacks, |s| {
                    s.root()
                        .is_some_and(|r| r.contains(&format!("({worker_tid})")))
                        && s.leaf() == Some(&format!("spin (threads.py:{spin_line})"))
                });
                let walked = RunStats::read(&stats_path)
                    .ok()
                    .map(|s| s.counter("walked_in_bpf"));
                if spin < 20 || walked.is_none_or(|w| w * 10 < spin * 9) {
                    failures.push(format!(
                        "{} threads.py: {spin} samples of spin under thread {worker_tid}, \
                         {walked:?} walked in BPF\n{}\n{}",
                        interp.label(),
                        summary(&stacks),
                        outcome.describe()
                    ));
                }
            }
            Err(e) => failures.push(format!("{} threads.py: {e}", interp.label())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The Python walk in BPF, by both of its loops (bpf_loop, and the bounded loop kernels before
/// 5.17 run, forced with PYSPY_BPF_BOUNDED_WALK=1), on every interpreter: the stacks are
/// busy.py's own, and the code objects are recognised from the fingerprint the program reads
/// (user space reads a code object only the first time it sees it).
#[test]
fn bpf_walk_loops_and_code_fingerprints_on_every_interpreter() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let busy_line = line_of("busy.py", "busy");
    let call_b = line_of("busy.py", "call_b");
    let mut failures = Vec::new();
    for interp in interpreters() {
        let target = interp.start("busy.py", &[]).unwrap();
        target.wait_ready().unwrap();
        let pid = target.pid().to_string();
        for bounded in ["0", "1"] {
            let dir = TempDir::new("bpf-fingerprint");
            let out = dir.join("busy.txt");
            let out_s = out.display().to_string();
            let stats_path = dir.join("busy.json");
            let outcome = run(
                pyspy_bpf()
                    .env("PYSPY_BPF_BOUNDED_WALK", bounded)
                    .env("RUST_LOG", "pyspy_bpf=info")
                    .args([
                        "record",
                        "--mode",
                        "bpf",
                        "-f",
                        "raw",
                        "-d",
                        "1.5",
                        "-o",
                        &out_s,
                        "--pid",
                        &pid,
                        "--stats-json",
                    ])
                    .arg(&stats_path),
                RUN_TIMEOUT,
            )
            .unwrap();
            let label = format!("{} (bounded walk: {bounded})", interp.label());
            let outcome = match outcome.ok() {
                Ok(outcome) => outcome,
                Err(e) => {
                    failures.push(format!("{label}: {e}"));
                    continue;
                }
            };
            let stacks = read_raw(&out).unwrap();
            let all = total(&stacks);
            let leaf = format!("level_b (busy.py:{busy_line})");
            let caller = format!("level_a (busy.py:{call_b})");
            let good = count(&stacks, |s| {
                s.leaf() == Some(&leaf)
                    && s.frames.len() >= 2
                    && s.frames[s.frames.len() - 2] == caller
            });
            let walked = RunStats::read(&stats_path)
                .ok()
                .map(|s| s.counter("walked_in_bpf"));
            let known = count_after(&outcome.stderr, "INFO  pyspy_bpf::sampler::bpf] ");
            let resolved = count_after(&outcome.stderr, " of ");
            let fingerprinted =
                matches!((known, resolved), (Some(k), Some(r)) if r > 0 && k * 10 >= r * 8);
            if all < 30
                || good * 10 < all * 9
                || walked.is_none_or(|w| w * 10 < all * 9)
                || !fingerprinted
            {
                failures.push(format!(
                    "{label}: {good} of {all} stacks end in {caller};{leaf}, {walked:?} walked \
                     in BPF, {known:?} of {resolved:?} frames known by fingerprint\n{}\n{}",
                    summary(&stacks),
                    outcome.describe()
                ));
            } else {
                eprintln!(
                    "{label}: {good} of {all} stacks right, {} of {} frames by fingerprint",
                    known.unwrap_or(0),
                    resolved.unwrap_or(0)
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `--mode bpf -s`: the BPF program follows the target's descendants by their ancestry, so a
/// child started by the target is recorded under its own `name (pid)` root, and an unrelated
/// busy process is not.
#[test]
fn record_subprocesses_in_bpf_mode_follows_children_only() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let interp = distinct_series(1).pop().expect("an interpreter");
    let parent = interp.start("spawner.py", &[]).unwrap();
    let child_pid: u32 = parent.wait_ready().unwrap().parse().unwrap();
    let other = interp.start("busy.py", &[]).unwrap();
    other.wait_ready().unwrap();
    let dir = TempDir::new("bpf-tree");
    let out = dir.join("tree.txt");
    let out_s = out.display().to_string();
    let pid = parent.pid().to_string();
    let outcome = pyspy(&[
        "record", "--mode", "bpf", "-s", "-f", "raw", "-d", "2", "-o", &out_s, "--pid", &pid,
    ])
    .unwrap()
    .ok()
    .unwrap();
    let stacks = read_raw(&out).unwrap();
    // The child sits under its parent: process PARENT:"... spawner.py";process CHILD:"... busy.py".
    let parent_root = format!("process {pid}:\"");
    let child_frame = format!("process {child_pid}:\"");
    let in_child = count(&stacks, |s| {
        s.root()
            .is_some_and(|r| r.starts_with(&parent_root) && r.ends_with("spawner.py\""))
            && s.frames
                .get(1)
                .is_some_and(|f| f.starts_with(&child_frame) && f.ends_with("busy.py\""))
            && s.leaf().is_some_and(|l| l.starts_with("level_b (busy.py:"))
    });
    let other_frame = format!("process {}:", other.pid());
    let leaked = count(&stacks, |s| {
        s.frames.iter().any(|f| f.starts_with(&other_frame))
    });
    assert!(
        in_child >= 20 && leaked == 0,
        "{in_child} samples of the child {child_pid} in level_b, {leaked} of the unrelated \
         process {}\n{}\n{}",
        other.pid(),
        summary(&stacks),
        outcome.describe()
    );
}

/// A pid reused by another process during `record --all` never gets the old process's
/// interpreter, offsets or BPF registration: each sample carries its process's start time, so
/// the new process is attached afresh at its first sample. The old process runs busy.py on
/// one interpreter series, the new one switching.py on another, under the same pid (forced
/// with /proc/sys/kernel/ns_last_pid).
#[test]
fn record_all_tells_a_reused_pid_from_the_old_process() {
    if !require_root() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let series = distinct_series(2);
    assert!(series.len() == 2, "needs two interpreter series");
    let (old_interp, new_interp) = (&series[0], &series[1]);
    let dir = TempDir::new("bpf-reuse");
    let out = dir.join("reuse.txt");
    let out_s = out.display().to_string();
    let mut profiler = pyspy_bpf()
        .args(["record", "--all", "-f", "raw", "-d", "4", "-o", &out_s])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let old = old_interp.start("busy.py", &[]).unwrap();
    old.wait_ready().unwrap();
    let pid = old.pid();
    std::thread::sleep(Duration::from_millis(1200));
    drop(old); // killed and reaped: the pid is free

    // Ask for the same pid: the next fork gets ns_last_pid + 1 (other forks may race us).
    let mut reused = None;
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).unwrap();
        let run = new_interp.start("switching.py", &[]).unwrap();
        if run.pid() == pid {
            reused = Some(run);
            break;
        }
    }
    let Some(new) = reused else {
        let _ = profiler.kill();
        panic!("could not start a process under pid {pid} again");
    };
    new.wait_ready().unwrap();
    let status = profiler.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut profiler.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "record --all failed: {stderr}");
    drop(new);

    let stacks = read_raw(&out).unwrap();
    let root_suffix = format!(" ({pid})");
    let mine: Vec<&RawStack> = stacks
        .iter()
        .filter(|s| s.root().is_some_and(|r| r.ends_with(&root_suffix)))
        .collect();
    let has = |s: &RawStack, file: &str| position(s, |f| f.contains(file)).is_some();
    let old_stacks = count(mine.iter().copied(), |s| has(s, "(busy.py:"));
    let new_stacks = count(mine.iter().copied(), |s| has(s, "(switching.py:"));
    let mixed = count(mine.iter().copied(), |s| {
        has(s, "(busy.py:") && has(s, "(switching.py:")
    });
    // A sample taken while a process starts or dies may not be readable; the rest must be.
    let unreadable = count(mine.iter().copied(), |s| {
        position(s, |f| {
            f.starts_with("<unknown") || f.starts_with("<truncated")
        })
        .is_some()
    });
    let unreadable_lines: Vec<String> = mine
        .iter()
        .filter(|s| s.frames.iter().any(|f| f.starts_with("<")))
        .map(|s| format!("  {} {}", s.count, s.frames.join(";")))
        .collect();
    // Each process under its own name: the new one's root names its own interpreter.
    let new_root_ok = mine
        .iter()
        .filter(|s| has(s, "(switching.py:"))
        .all(|s| s.root().is_some_and(|r| r.contains(&new_interp.series)));
    assert!(
        old_stacks >= 3
            && new_stacks >= 3
            && mixed == 0
            && unreadable * 20 <= old_stacks + new_stacks
            && new_root_ok,
        "pid {pid}: {old_stacks} samples of the old process (busy.py), {new_stacks} of the new \
         one (switching.py), {mixed} mixed, {unreadable} unreadable:\n{}\nnew root names {}: \
         {}\n{stderr}\n{}",
        unreadable_lines.join("\n"),
        new_interp.series,
        new_root_ok,
        summary(&stacks)
    );
}
