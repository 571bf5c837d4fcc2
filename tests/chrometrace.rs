//! `-f chrometrace` of a real two-thread program: a track per thread named after it, each
//! thread's function on its own track, begin/end events balanced and in time order (what
//! Perfetto and chrome://tracing need).

mod common;

use std::collections::HashMap;

use common::{interpreters, pyspy, root_test_can_run, scripts_dir, TempDir};

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
    let tid_of = |thread: &str| {
        names
            .iter()
            .find(|(_, n)| n.starts_with(&format!("thread \"{thread}\"")))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("no track named {thread}: {names:?}"))
    };
    for (thread, function, other) in [
        ("alpha", "alpha_work", "beta_work"),
        ("beta", "beta_work", "alpha_work"),
    ] {
        let tid = tid_of(thread);
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
