//! `-f chrometrace` of a real two-thread program: a track per thread named after it, each
//! thread's function on its own track, begin/end events balanced and in time order (what
//! Perfetto and chrome://tracing need).

mod common;

use std::collections::HashMap;

use common::{bpf_test_can_run, interpreters, pyspy, root_test_can_run, scripts_dir, TempDir};

fn check(mode: &str) {
    if !root_test_can_run("chrometrace", "BPF and reading another process need root") {
        return;
    }
    let python = interpreters()
        .into_iter()
        .find(|i| i.series == "3.11" || i.flavour == "system")
        .expect("an interpreter (tools/pythons/provision)");
    let dir = TempDir::new(&format!("chrometrace-{mode}"));
    let out = dir.join("trace.json");
    let script = scripts_dir().join("two_workers.py");
    let (out_s, script_s, py) = (
        out.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
        python.path.to_string_lossy().into_owned(),
    );
    pyspy(&[
        "record",
        "--mode",
        mode,
        "-f",
        "chrometrace",
        "-o",
        &out_s,
        "--",
        &py,
        &script_s,
        "2",
    ])
    .and_then(|o| o.ok())
    .expect("record -f chrometrace");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents");

    // Thread names from the metadata events: tid -> name.
    let names: HashMap<u64, String> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // A thread's track by its name; else, by the function only it runs, a track named by the
    // thread's OS name: a thread sampled before `threading` registered it is named by its OS
    // name until its name is looked up again (after 20 ms); a track carries the latest name
    // its thread had, so this is only for a thread all of whose samples fell before that.
    let tid_of = |thread: &str, function: &str| {
        let by_name = names
            .iter()
            .find(|(_, n)| n.starts_with(&format!("thread \"{thread}\"")))
            .map(|(t, _)| *t);
        by_name.unwrap_or_else(|| {
            let runs = |tid: u64| {
                events.iter().any(|e| {
                    e["tid"] == tid
                        && e["ph"] == "B"
                        && e["name"].as_str().is_some_and(|n| n.starts_with(function))
                })
            };
            let (tid, name) = names.iter().find(|(t, _)| runs(**t)).unwrap_or_else(|| {
                panic!("no track named {thread} or running {function}: {names:?}")
            });
            assert!(
                name.starts_with("thread \"python"),
                "{thread}'s track is named {name}"
            );
            *tid
        })
    };
    for (thread, function, other) in [
        ("alpha", "alpha_work", "beta_work"),
        ("beta", "beta_work", "alpha_work"),
    ] {
        let tid = tid_of(thread, function);
        let track: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["tid"] == tid && e["ph"] != "M")
            .collect();
        let begins = |name: &str| {
            track
                .iter()
                .filter(|e| e["ph"] == "B" && e["name"].as_str().unwrap().starts_with(name))
                .count()
        };
        assert!(begins(function) >= 1, "{function} on {thread}'s track");
        assert_eq!(begins(other), 0, "{other} must not be on {thread}'s track");
        // Balanced and ordered: a stack of open frames, timestamps never going back.
        let mut open: Vec<&str> = Vec::new();
        let mut last = f64::MIN;
        for e in &track {
            let ts = e["ts"].as_f64().unwrap();
            assert!(ts >= last, "time goes back on {thread}'s track");
            last = ts;
            let name = e["name"].as_str().unwrap();
            match e["ph"].as_str().unwrap() {
                "B" => open.push(name),
                "E" => assert_eq!(open.pop(), Some(name), "unbalanced end on {thread}'s track"),
                ph => panic!("unexpected phase {ph}"),
            }
        }
        assert!(
            open.is_empty(),
            "frames left open on {thread}'s track: {open:?}"
        );
    }
}

#[test]
fn chrometrace_of_a_bpf_recording() {
    check("bpf");
}

#[test]
fn chrometrace_of_a_userspace_recording() {
    check("userspace");
}

/// Nanoseconds since the Unix epoch, now.
fn unix_ns_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// A trace's events in time: a `ts` is microseconds since the recording's start
/// (`otherData.start_unix_ns`), so the start must lie between `before` (just before the
/// profiler started) and `after` (just after it exited), and every event of a thread at or after
/// the previous one and inside that window; an end may lie one sampling period (`period_ns`) past
/// it (a thread's last sample stands for one period). The tracks of `spans` (thread names) must
/// each span at least `min_span_us`. Says what is wrong.
fn check_timed(
    v: &serde_json::Value,
    before: u64,
    after: u64,
    period_ns: u64,
    spans: &[&str],
    min_span_us: f64,
) -> Result<(), String> {
    let start = v["otherData"]["start_unix_ns"]
        .as_u64()
        .ok_or("no otherData.start_unix_ns")?;
    if !(before..=after).contains(&start) {
        return Err(format!(
            "the trace starts at {start}, outside the recording ({before}..{after})"
        ));
    }
    // The window in the trace's time base: microseconds since its start.
    let us_since_start = |unix_ns: u64| (unix_ns as i128 - start as i128) as f64 / 1000.0;
    let (lo, hi) = (us_since_start(before), us_since_start(after));
    let slack = period_ns as f64 / 1000.0;
    let events = v["traceEvents"].as_array().ok_or("no traceEvents")?;
    // (pid, tid) -> timestamps, in the order written.
    let mut tracks: HashMap<(u64, u64), Vec<f64>> = HashMap::new();
    for e in events.iter().filter(|e| e["ph"] != "M") {
        let ts = e["ts"].as_f64().ok_or("an event without ts")?;
        let end = if e["ph"] == "E" { slack } else { 0.0 };
        if ts < lo || ts > hi + end {
            return Err(format!(
                "event {e} at {ts} µs lies outside the recording ({lo:.0}..{hi:.0} µs)"
            ));
        }
        let key = (
            e["pid"].as_u64().unwrap_or(0),
            e["tid"].as_u64().unwrap_or(0),
        );
        tracks.entry(key).or_default().push(ts);
    }
    for (track, ts) in &tracks {
        if let Some(w) = ts.windows(2).find(|w| w[1] < w[0]) {
            return Err(format!(
                "time goes back on track {track:?}: {} then {}",
                w[0], w[1]
            ));
        }
    }
    for name in spans {
        let tid = events
            .iter()
            .find(|e| {
                e["ph"] == "M"
                    && e["name"] == "thread_name"
                    && e["args"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&format!("thread \"{name}\"")))
            })
            .and_then(|e| e["tid"].as_u64())
            .ok_or_else(|| format!("no track named {name}"))?;
        let ts: Vec<f64> = tracks
            .iter()
            .filter(|((_, t), _)| *t == tid)
            .flat_map(|(_, ts)| ts.iter().copied())
            .collect();
        let span = ts.iter().copied().fold(f64::MIN, f64::max)
            - ts.iter().copied().fold(f64::MAX, f64::min);
        if ts.is_empty() || span < min_span_us {
            return Err(format!(
                "{name}'s track spans {span:.0} µs of the recording, want at least {min_span_us:.0}"
            ));
        }
    }
    Ok(())
}

/// A wall-clock BPF recording (`record --idle`) of a busy thread and one that naps: each
/// thread's events are in time order and lie inside the recording, in the trace's time base
/// (µs since its start); the off-CPU samples of the napping thread (timed when it left the CPU,
/// delivered when it came back, after later samples of the busy thread) included.
#[test]
fn wall_chrometrace_of_a_bpf_recording_is_timed_within_the_recording() {
    if !bpf_test_can_run("chrometrace") {
        return;
    }
    let python = interpreters()
        .into_iter()
        .find(|i| i.series == "3.11" || i.flavour == "system")
        .expect("an interpreter (tools/pythons/provision)");
    let target = python
        .start("busy_and_napping.py", &["60"])
        .expect("start the workload");
    target.wait_ready().expect("the workload is ready");
    let dir = TempDir::new("chrometrace-wall");
    let out = dir.join("trace.json");
    let (out_s, pid_s) = (out.to_string_lossy().into_owned(), target.pid().to_string());
    let before = unix_ns_now();
    let outcome = pyspy(&[
        "record",
        "--mode",
        "bpf",
        "--idle",
        "--rate",
        "100",
        "-d",
        "1",
        "-f",
        "chrometrace",
        "-o",
        &out_s,
        "-p",
        &pid_s,
    ])
    .and_then(|o| o.ok())
    .expect("record --idle -f chrometrace");
    let after = unix_ns_now();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let begins = |function: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == "B" && e["name"].as_str().unwrap().starts_with(function))
            .count()
    };
    assert!(
        begins("spin (") >= 1 && begins("nap (") >= 1,
        "spin and nap in the trace\n{}",
        outcome.describe()
    );
    // Both threads were recorded over most of the recording's second.
    let period_ns = 10_000_000;
    let spans = ["busy", "napper"];
    if let Err(e) = check_timed(&v, before, after, period_ns, &spans, 500_000.0) {
        panic!("{e}\n{}", outcome.describe());
    }
    // The check sees a trace a second late, or one whose start is a second early.
    let mut late = v.clone();
    for e in late["traceEvents"].as_array_mut().unwrap() {
        if e["ph"] != "M" {
            e["ts"] = (e["ts"].as_f64().unwrap() + 1e6).into();
        }
    }
    assert!(check_timed(&late, before, after, period_ns, &spans, 500_000.0).is_err());
    let mut early = v.clone();
    early["otherData"]["start_unix_ns"] =
        (v["otherData"]["start_unix_ns"].as_u64().unwrap() - 1_000_000_000).into();
    assert!(check_timed(&early, before, after, period_ns, &spans, 500_000.0).is_err());
}
