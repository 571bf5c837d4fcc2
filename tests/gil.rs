//! The GIL, read by the BPF program at each sample, on every interpreter. gil.py runs one
//! thread spinning in Python (it holds the GIL) and one compressing with zlib (which releases
//! it): `record --gil` keeps only the spinner's stacks with `--mode bpf --pid` (by both walk
//! loops: `bpf_loop` and the bounded loop of kernels before 5.17) and host-wide with `--all`,
//! and pprof's `gil` label (`held` / `released`) tells the two threads apart in `go tool pprof`.
//! In wall-clock mode, time spent waiting for the GIL is a `gil_wait` leaf under its caller
//! (gil_wait.py).

mod common;

use anyhow::{ensure, Result};
use common::*;

/// The tests count on-CPU samples of busy threads: one at a time, so that they do not starve
/// each other of CPU on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A recording must hold at least this many samples of the spinning thread to be judged.
const MIN_SAMPLES: u64 = 10;

fn leaf_count(stacks: &[RawStack], leaf: &str) -> u64 {
    count(stacks, |s| s.leaf() == Some(leaf))
}

/// `record ARGS -f raw -o NAME --stats-json NAME.json`: the stacks and the run's counters.
fn record(
    dir: &TempDir,
    name: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Result<(Vec<RawStack>, serde_json::Value)> {
    let out = dir.join(name);
    let stats = dir.join(&format!("{name}.json"));
    let (out_s, stats_s) = (out.display().to_string(), stats.display().to_string());
    let mut cmd = pyspy_bpf();
    cmd.envs(env.iter().copied()).arg("record").args(args);
    cmd.args(["-f", "raw", "-o", &out_s, "--stats-json", &stats_s]);
    run(&mut cmd, RUN_TIMEOUT)?.ok()?;
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)?;
    Ok((read_raw(&out)?, stats))
}

#[test]
fn gil_is_read_in_bpf_on_every_interpreter() {
    if !bpf_test_can_run("gil") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let spin = format!("spin_gil (gil.py:{})", line_of("gil.py", "spin"));
    let compress = format!("compress_loop (gil.py:{})", line_of("gil.py", "compress"));
    for_each_interpreter("gil_is_read_in_bpf_on_every_interpreter", |interp| {
        let dir = TempDir::new("gil");
        let target = interp.start("gil.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();

        // Both threads run: without --gil both are recorded.
        let (stacks, _) = record(
            &dir,
            "all-threads.txt",
            &[],
            &["--mode", "bpf", "-r", "200", "-d", "2", "--pid", &pid],
        )?;
        let (s, c) = (leaf_count(&stacks, &spin), leaf_count(&stacks, &compress));
        ensure!(
            s >= MIN_SAMPLES && c >= MIN_SAMPLES,
            "record (gil.py): {s} samples in `{spin}`, {c} in `{compress}`; expected both busy:\n{}",
            summary(&stacks)
        );

        // --gil in BPF mode, by both walk loops: only the spinner, its GIL read in BPF.
        for bounded in ["0", "1"] {
            let (stacks, stats) = record(
                &dir,
                &format!("bpf-gil-{bounded}.txt"),
                &[("PYSPY_BPF_BOUNDED_WALK", bounded)],
                &[
                    "--mode", "bpf", "--gil", "-r", "200", "-d", "2", "--pid", &pid,
                ],
            )?;
            let (s, c) = (leaf_count(&stacks, &spin), leaf_count(&stacks, &compress));
            let python = stats["python_samples"].as_u64().unwrap_or(0);
            let late = stats["counters"]["gil_read_late"].as_u64();
            let counters = stats["counters"].as_object();
            // Samples the program did not walk (a thread it was not told of yet: gil.py starts
            // its threads while the recording may already run) are read by user space, GIL and
            // all; every sample the program walked has its GIL state from the program.
            let not_walked: u64 = counters
                .into_iter()
                .flatten()
                .filter(|(name, _)| name.starts_with("read_late."))
                .filter_map(|(_, n)| n.as_u64())
                .sum();
            ensure!(
                s >= MIN_SAMPLES && c <= (s / 10).max(2),
                "record --mode bpf --gil (bounded walk: {bounded}): {s} samples in `{spin}`, {c} in \
                 `{compress}`; expected only the spinning thread:\n{}\n{stats}",
                summary(&stacks)
            );
            ensure!(
                late.is_some_and(|late| late <= not_walked && late * 50 <= python),
                "record --mode bpf --gil (bounded walk: {bounded}): gil_read_late {late:?} of \
                 {python} Python samples: {stats}"
            );
        }

        // --all --gil: host-wide, this process's samples are (almost) only the spinner's: the
        // compressor holds the GIL only between its calls (its first sample is read by user
        // space, the rest in BPF).
        let (stacks, _) = record(
            &dir,
            "all-gil.txt",
            &[],
            &["--all", "--gil", "-r", "200", "-d", "3"],
        )?;
        let root = format!("({pid})");
        let ours: Vec<RawStack> = stacks
            .into_iter()
            .filter(|s| s.root().is_some_and(|r| r.ends_with(&root)))
            .collect();
        let (s, c) = (leaf_count(&ours, &spin), leaf_count(&ours, &compress));
        ensure!(
            s >= MIN_SAMPLES && c <= (s / 10).max(2) && s + c == total(&ours),
            "record --all --gil: {s} samples of pid {pid} in `{spin}`, {c} in `{compress}`, {} in \
             all; expected only the spinning thread:\n{}",
            total(&ours),
            summary(&ours)
        );
        Ok(())
    });
}

/// pprof's `gil` label, read by `go tool pprof`: the spinner's samples are `held`, the
/// compressor's `released`, and `-tagfocus` picks either.
#[test]
fn pprof_gil_label_on_every_interpreter() {
    if !bpf_test_can_run("gil") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for_each_interpreter("pprof_gil_label_on_every_interpreter", |interp| {
        let dir = TempDir::new("gil-pprof");
        let target = interp.start("gil.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        let out = dir.join("gil.pb.gz");
        let out_s = out.display().to_string();
        pyspy(&[
            "record", "--mode", "bpf", "-r", "200", "-d", "2", "-f", "pprof", "-o", &out_s,
            "--pid", &pid,
        ])?
        .ok()?;
        let Some(tags) = go_pprof(&["-tags"], &out) else {
            return Ok(());
        };
        ensure!(
            tags.contains("gil:") && tags.contains(": held") && tags.contains(": released"),
            "go tool pprof -tags: no gil label with both values:\n{tags}"
        );
        for (value, owner, other) in [
            ("held", "spin_gil", "compress_loop"),
            ("released", "compress_loop", "spin_gil"),
        ] {
            let top = go_pprof(&["-top", &format!("-tagfocus=gil={value}")], &out).unwrap();
            let mine = flat_percent(&top, owner).unwrap_or(0.0);
            let theirs = flat_percent(&top, other).unwrap_or(0.0);
            // (Percentages of the whole profile, where each thread has about half.) The other
            // thread may show a little: 2.7's GIL is dropped by the spinner every 100 bytecodes
            // and taken back, and a sample on the CPU in that gap finds it released (CI saw
            // spin_gil at 5.4% beside compress_loop's 46.7% on pyenv's 2.7).
            ensure!(
                mine >= 15.0 && theirs <= (mine / 5.0).max(5.0),
                "gil={value}: {owner} {mine}%, {other} {theirs}%; expected {owner} only:\n{top}"
            );
        }
        Ok(())
    });
}

/// Wall-clock mode (`--idle`): time a thread spends off the CPU waiting for the GIL is a
/// `gil_wait` leaf under the Python frame that wanted it. gil_wait.py's two spinners each wait
/// about half of their time for the GIL the other holds; its reader is blocked on a pipe, a
/// wait that is not for the GIL and must never show as one.
#[test]
fn gil_wait_shows_under_its_caller_on_every_interpreter() {
    if !bpf_test_can_run("gil") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let spin = format!("spin (gil_wait.py:{})", line_of("gil_wait.py", "spin"));
    let read = format!("wait_pipe (gil_wait.py:{})", line_of("gil_wait.py", "read"));
    for_each_interpreter("gil_wait_shows_under_its_caller", |interp| {
        let dir = TempDir::new("gil-wait");
        let target = interp.start("gil_wait.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        let (stacks, _) = record(
            &dir,
            "wall.txt",
            &[],
            &["--mode", "bpf", "--idle", "-t", "-d", "2", "--pid", &pid],
        )?;
        let of_thread = |name: &str| -> Vec<RawStack> {
            let root = format!("thread \"{name}\" (");
            stacks
                .iter()
                .filter(|s| s.frames.iter().take(2).any(|f| f.starts_with(&root)))
                .cloned()
                .collect()
        };
        let spinners: Vec<RawStack> = ["spinner-a", "spinner-b"]
            .iter()
            .flat_map(|name| of_thread(name))
            .collect();
        let reader = of_thread("reader");
        let is_wait = |s: &RawStack| s.leaf() == Some("gil_wait");
        let under_spin = |s: &RawStack| {
            is_wait(s) && s.frames.len() >= 2 && s.frames[s.frames.len() - 2] == spin
        };
        let (waiting, all) = (count(&spinners, under_spin), total(&spinners));
        // Two threads share one GIL: together they wait about half of their wall time. Below
        // a quarter, waits are being missed (or given to the wrong frame).
        ensure!(
            all > 0 && waiting * 4 >= all,
            "spinners: {waiting} of {all} µs in gil_wait under `{spin}`; expected about half:\n{}",
            summary(&stacks)
        );
        // Every gil_wait is under a Python frame, never the thread's root alone.
        let orphans = count(&stacks, |s| is_wait(s) && !under_spin(s));
        let reader_waits = count(&reader, is_wait);
        let reading = count(&reader, |s| s.leaf() == Some(read.as_str()));
        ensure!(
            reader_waits == 0 && orphans * 20 <= waiting && reading * 2 >= total(&reader).max(1),
            "reader: {reader_waits} µs in gil_wait, {reading} of {} in `{read}`; {orphans} µs of \
             gil_wait elsewhere than under `{spin}`:\n{}",
            total(&reader),
            summary(&stacks)
        );
        eprintln!(
            "{}: spinners {:.0}% in gil_wait",
            interp.label(),
            waiting as f64 * 100.0 / all as f64
        );
        Ok(())
    });
}
