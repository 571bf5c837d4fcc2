//! Long host-wide runs, as root: `record --all` (BPF) while a few hundred short-lived Python
//! processes of several interpreters start and exit must drop the state of those that exited
//! (its end-of-run line says how many were attached, dropped and are still live) and must not
//! keep a descriptor per process seen. No timing is asserted: `bench/soak.sh` measures memory
//! over hours.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A few tenths of a second of Python work (2.7 and 3.x alike).
const SHORT_LIVED: &str = "import time\n\
def work(n):\n    s = 0\n    for i in range(n):\n        s += i * i\n    return s\n\
end = time.time() + 0.1\n\
while time.time() < end:\n    work(2000)\n";

/// Processes to start, at most this many at once.
const PROCESSES: usize = 300;
const CONCURRENT: usize = 8;
/// Descriptors the profiler may hold at the end beyond those it held after starting (files
/// of processes that started on the host meanwhile and still run).
const FD_SLACK: usize = 16;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// [attached, of them Python, dropped after exit, live at the end], from `--stats-json`.
fn process_counts(stats: &Path) -> [u64; 4] {
    let stats = RunStats::read(stats).expect("the --stats-json file");
    [
        stats.processes_attached,
        stats.python_attached,
        stats.processes_dropped,
        stats.processes_live,
    ]
}

#[test]
fn record_all_drops_exited_processes_and_does_not_keep_their_files() {
    if !bpf_test_can_run("long_run") {
        return;
    }
    // Several interpreter series, static and shared builds (a shared one maps libpython).
    let mut pythons: Vec<Interpreter> = Vec::new();
    for i in interpreters().into_iter().rev() {
        if i.flavour != "system"
            && !pythons
                .iter()
                .any(|p| p.series == i.series && p.flavour == i.flavour)
            && pythons.len() < 6
        {
            pythons.push(i);
        }
    }
    assert!(
        pythons
            .iter()
            .map(|p| &p.series)
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 3,
        "need three interpreter series, have {pythons:?}"
    );
    let dir = TempDir::new("long-run");
    let out = dir.join("all.txt");
    let out_s = out.display().to_string();
    let stats = dir.join("all.json");
    let profiler = pyspy_bpf()
        .args([
            "record",
            "--all",
            "-f",
            "raw",
            "-d",
            "22",
            "-o",
            &out_s,
            "--stats-json",
        ])
        .arg(&stats)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pyspy-bpf");
    let profiler = ChildGuard(profiler);
    let pid = profiler.pid();
    // Loaded, attached, its reader running: what it holds before the churn.
    std::thread::sleep(Duration::from_secs(3));
    let fds_start = open_fds(pid);
    assert!(fds_start > 0, "pyspy-bpf exited early");

    let mut running: Vec<Child> = Vec::new();
    let mut started = 0;
    let mut fds_seen = vec![fds_start];
    let mut last_fd_read = Instant::now();
    // Spawning stops well before the recording ends, whatever the host's load.
    let spawn_until = Instant::now() + Duration::from_secs(13);
    while started < PROCESSES && Instant::now() < spawn_until {
        running.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        if running.len() >= CONCURRENT {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let python = &pythons[started % pythons.len()];
        running.push(
            Command::new(&python.path)
                .args(["-c", SHORT_LIVED])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start a short-lived Python"),
        );
        started += 1;
        if last_fd_read.elapsed() >= Duration::from_secs(1) {
            fds_seen.push(open_fds(pid));
            last_fd_read = Instant::now();
        }
    }
    for mut c in running {
        let _ = c.wait();
    }
    // Every short-lived process has exited: give the profiler's once-a-second sweep a few
    // rounds, then read what it still holds.
    std::thread::sleep(Duration::from_secs(3));
    let fds_end = open_fds(pid);
    fds_seen.push(fds_end);

    let mut profiler = profiler;
    let status = profiler.0.wait().expect("wait for pyspy-bpf");
    let mut stderr = String::new();
    if let Some(mut pipe) = profiler.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read stderr");
    }
    assert!(status.success(), "record --all failed: {stderr}");
    assert!(started >= 60, "only {started} processes started");
    let [attached, python, dropped, live] = process_counts(&stats);
    let report = format!(
        "{started} short-lived Pythons started; attached {attached} ({python} Python), \
         dropped {dropped}, live at end {live}; fds after start {fds_start}, during \
         {fds_seen:?}, at end {fds_end}\n{stderr}"
    );
    // Many of ours were seen as Python (a loaded host makes the profiler miss some).
    assert!(python >= 20, "{report}");
    // Every Python process attached has exited by the end: each was dropped (with the other
    // processes of the host that exited meanwhile).
    assert!(dropped >= python, "{report}");
    // What is left is what still runs: not the hundreds seen.
    let host_now = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count() as u64
        })
        .unwrap_or(0);
    assert!(
        live <= host_now + 2,
        "{host_now} processes on the host; {report}"
    );
    // Each process dropped or live was attached once at least.
    assert!(attached >= live + dropped, "{report}");
    // Descriptors do not grow with the processes seen.
    assert!(fds_end <= fds_start + FD_SLACK, "{report}");
    eprintln!("{report}");
    // The short-lived Pythons are in the profile under their own roots.
    let stacks = read_raw(&out).expect("read the profile");
    let roots: std::collections::HashSet<&str> = stacks
        .iter()
        .filter_map(|s| s.root())
        .filter(|r| r.starts_with("python"))
        .collect();
    assert!(roots.len() >= 20, "{} Python roots; {report}", roots.len());
}

/// A parent that starts one short-lived Python child after another (`sys.executable`).
const SPAWNER: &str = "import subprocess, sys, time\n\
child = 'import time\\nend = time.time() + 0.3\\nwhile time.time() < end: sum(range(1000))\\n'\n\
while True:\n    subprocess.Popen([sys.executable, '-c', child]).wait()\n";

/// The user-space sampler with `-s`: children that exit are dropped, not kept for the run.
#[test]
fn subprocesses_that_exit_are_dropped_in_userspace_mode() {
    let mut tried = 0;
    for python in interpreters().into_iter().filter(|i| i.flavour == "static") {
        if !matches!(python.series.as_str(), "2.7" | "3.13") {
            continue;
        }
        tried += 1;
        let parent = ChildGuard(
            Command::new(&python.path)
                .args(["-c", SPAWNER])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the spawner"),
        );
        let pid = parent.pid().to_string();
        let dir = TempDir::new("long-run-s");
        let out = dir.join("s.txt");
        let out_s = out.display().to_string();
        let stats = dir.join("s.json");
        let stats_s = stats.display().to_string();
        let outcome = pyspy(&[
            "record",
            "--mode",
            "userspace",
            "-s",
            "-d",
            "5",
            "-f",
            "raw",
            "-o",
            &out_s,
            "--stats-json",
            &stats_s,
            "--pid",
            &pid,
        ])
        .expect("run pyspy-bpf");
        drop(parent);
        let stderr = &outcome.stderr;
        let [attached, python_attached, dropped, live] = process_counts(&stats);
        // ~0.3 s per child over 5 s: several children came and went; at the end at most the
        // parent and the child running then are attached.
        assert!(
            attached >= 4 && dropped >= 3 && live <= 2 && attached == python_attached,
            "{}: attached {attached}, dropped {dropped}, live {live}: {stderr}",
            python.label()
        );
        assert!(attached >= dropped + live, "{stderr}");
    }
    assert_eq!(tried, 2, "need the static 2.7 and 3.13 interpreters");
}
