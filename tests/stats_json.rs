//! `record --stats-json FILE`: the run's counters as JSON, from both samplers, on a real
//! interpreter: what tests and the agent read instead of scraping stderr.

mod common;

use common::{interpreters, pyspy, root_test_can_run, scripts_dir, Interpreter, Outcome, TempDir};

/// `record --mode MODE -f raw --stats-json` of `python SCRIPT SECONDS` (a test script) into
/// `dir`: the stats as JSON, the raw profile, and how the profiler ran.
fn record_with_stats(
    dir: &TempDir,
    mode: &str,
    python: &Interpreter,
    script: &str,
    seconds: &str,
) -> (serde_json::Value, String, Outcome) {
    let (profile, stats) = (
        dir.join(&format!("{mode}.txt")),
        dir.join(&format!("{mode}.json")),
    );
    let (profile_s, stats_s) = (profile.to_string_lossy(), stats.to_string_lossy());
    let (python_s, script_s) = (
        python.path.to_string_lossy(),
        scripts_dir().join(script).to_string_lossy().into_owned(),
    );
    let args = [
        "record",
        "--mode",
        mode,
        "-f",
        "raw",
        "-o",
        &profile_s,
        "--stats-json",
        &stats_s,
        "--",
        &python_s,
        &script_s,
        seconds,
    ];
    let out = pyspy(&args).and_then(|o| o.ok()).expect("record");
    let v = serde_json::from_slice(&std::fs::read(&stats).expect("stats written")).expect("JSON");
    let raw = std::fs::read_to_string(&profile).expect("profile written");
    (v, raw, out)
}

/// The interpreter these tests record: 3.11 (provisioned, else the system's).
fn python_311() -> Interpreter {
    interpreters()
        .into_iter()
        .find(|i| i.series == "3.11" || i.flavour == "system")
        .expect("an interpreter (tools/pythons/provision)")
}

#[test]
fn both_samplers_write_their_counters() {
    if !root_test_can_run("stats_json", "BPF and reading another process need root") {
        return;
    }
    let python = python_311();
    let dir = TempDir::new("stats-json");
    for mode in ["bpf", "userspace"] {
        let (v, raw, out) = record_with_stats(&dir, mode, &python, "two_workers.py", "2");
        let raw_total: u64 = raw
            .lines()
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(v["sampler"], mode, "{v}");
        assert_eq!(
            v["samples"].as_u64(),
            Some(raw_total),
            "samples = the profile's: {v}"
        );
        assert!(raw_total > 50, "{v}\n{}", out.describe());
        assert_eq!(v["processes_attached"], 1, "{v}");
        assert_eq!(v["python_attached"], 1, "{v}");
        assert_eq!(v["ended"], "target_exited", "{v}");
        assert!(v["frames_rejected"].is_object(), "{v}");
        match mode {
            "bpf" => {
                // A single target is registered before the loop: every Python stack is
                // walked in BPF at its sample.
                let walked = v["counters"]["walked_in_bpf"].as_u64().unwrap();
                assert!(walked * 10 >= raw_total * 9, "{v}");
                // Loss counters are there even when nothing was lost.
                for name in ["lost.ringbuf_full", "lost.queue_full", "lost.stale_python"] {
                    assert!(v["counters"][name].is_u64(), "no {name}: {v}");
                }
                assert!(v["counters"]["late_ticks"].is_null(), "{v}");
            }
            _ => {
                assert!(v["counters"]["reads"].as_u64().unwrap() > 50, "{v}");
                assert!(v["counters"]["late_ticks"].is_u64(), "{v}");
                let counters = v["counters"].as_object().unwrap();
                assert!(!counters.keys().any(|k| k.starts_with("lost.")), "{v}");
            }
        }
    }
}

/// A target that execs a program that is not Python keeps its pid and start time: the BPF
/// sampler must see that the pid now runs another program (its samples are native ones, not
/// failed reads of a Python process that is no longer there).
#[test]
fn a_python_target_that_execs_another_program_is_not_read_as_python_after() {
    if !root_test_can_run("stats_json", "BPF and reading another process need root") {
        return;
    }
    let python = python_311();
    let dir = TempDir::new("stats-json-exec");
    let (v, raw, out) = record_with_stats(&dir, "bpf", &python, "exec_shell.py", "1.5");
    let count = |python: bool| -> u64 {
        raw.lines()
            .filter(|l| l.contains("exec_shell.py") == python)
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let context = format!("{v}\n{}", out.describe());
    assert!(count(true) > 50, "the Python part: {context}");
    assert!(count(false) > 20, "the shell's samples: {context}");
    assert_eq!(v["python_errors"], 0, "the shell read as Python: {context}");
    // The Python program, and the program it became.
    assert_eq!(v["processes_attached"], 2, "{context}");
    assert_eq!(v["python_attached"], 1, "{context}");
}
