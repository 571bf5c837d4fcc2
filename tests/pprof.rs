//! `-f pprof` read by the real `go tool pprof` (Debian's golang-go): functions, file:line and
//! shares of a two-thread program, and its labels (`-tags`, `-tagfocus`), with the BPF and the
//! user-space sampler; and the file read back by `diff`.

mod common;

use common::{
    flat_percent, go_pprof, interpreters, line_of, pyspy, root_test_can_run, scripts_dir, TempDir,
};

fn check(mode: &str) {
    if !root_test_can_run("pprof", "BPF and reading another process need root") {
        return;
    }
    let python = interpreters()
        .into_iter()
        .find(|i| i.series == "3.11" || i.flavour == "system")
        .expect("an interpreter (tools/pythons/provision)");
    let dir = TempDir::new(&format!("pprof-{mode}"));
    let out = dir.join("profile.pb.gz");
    let script = scripts_dir().join("two_workers.py");
    let (out_s, script_s, py) = (
        out.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
        python.path.to_string_lossy().into_owned(),
    );
    pyspy(&[
        "record", "--mode", mode, "-r", "200", "-f", "pprof", "-o", &out_s, "--", &py, &script_s,
        "3",
    ])
    .and_then(|o| o.ok())
    .expect("record -f pprof");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");

    let Some(top) = go_pprof(&["-top"], &out) else {
        return;
    };
    let alpha = flat_percent(&top, "alpha_work").unwrap_or_else(|| panic!("alpha_work in:\n{top}"));
    let beta = flat_percent(&top, "beta_work").unwrap_or_else(|| panic!("beta_work in:\n{top}"));
    // Two threads spinning for the same time: each about half, together nearly all.
    assert!(alpha > 25.0 && beta > 25.0 && alpha + beta > 85.0, "{top}");
    assert!(top.contains("Type: cpu"), "{top}");

    // Lines: the spinning lines of each function, with the script's path.
    let lines = go_pprof(&["-top", "-lines"], &out).unwrap();
    for (func, tag) in [("alpha_work", "alpha"), ("beta_work", "beta")] {
        let want = format!("{func} {}:{}", script_s, line_of("two_workers.py", tag));
        assert!(lines.contains(&want), "{want} in:\n{lines}");
    }

    // Labels: thread names, pids and tids, whether the thread held the GIL (both threads run
    // Python code, so most samples are `held`); focusing on one thread keeps only its function.
    let tags = go_pprof(&["-tags"], &out).unwrap();
    for want in [
        "thread_name:",
        "alpha",
        "beta",
        "tid:",
        "pid:",
        "process:",
        "gil:",
        ": held",
    ] {
        assert!(tags.contains(want), "{want} in:\n{tags}");
    }
    let focused = go_pprof(&["-top", "-tagfocus=thread_name=alpha"], &out).unwrap();
    // (Percentages stay of the whole profile.)
    assert!(
        flat_percent(&focused, "alpha_work").is_some_and(|p| p > 25.0),
        "{focused}"
    );
    assert!(flat_percent(&focused, "beta_work").is_none(), "{focused}");
}

#[test]
fn go_tool_pprof_reads_a_bpf_recording() {
    check("bpf");
}

#[test]
fn go_tool_pprof_reads_a_userspace_recording() {
    check("userspace");
}
