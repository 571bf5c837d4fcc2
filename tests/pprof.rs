//! `-f pprof` read by the real `go tool pprof` (Debian's golang-go): functions, file:line and
//! shares of a two-thread program, and its labels (`-tags`, `-tagfocus`), with the BPF and the
//! user-space sampler; and a `--native` recording's mappings and addresses.

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

/// A `--native` recording (BPF): the C library's frames have a `Mapping` named after their
/// module and an address inside it, Python frames have neither, and the traces go
/// `<module>` -> `compress_loop` -> zlib's `deflate`, as they ran.
#[test]
fn go_tool_pprof_reads_native_frames_with_mappings_and_addresses() {
    if !common::bpf_test_can_run("pprof --native") {
        return;
    }
    let python = interpreters()
        .into_iter()
        .find(|i| i.series == "3.11" || i.flavour == "system")
        .expect("an interpreter (tools/pythons/provision)");
    let dir = TempDir::new("pprof-native");
    let out = dir.join("native.pb.gz");
    let target = python
        .start("native_zlib.py", &[])
        .expect("start native_zlib.py");
    target.wait_ready().expect("native_zlib.py ready");
    let (pid, out_s) = (target.pid().to_string(), out.to_string_lossy().into_owned());
    pyspy(&[
        "record", "--mode", "bpf", "--native", "-d", "2", "-f", "pprof", "-o", &out_s, "--pid",
        &pid,
    ])
    .and_then(|o| o.ok())
    .expect("record --native -f pprof");
    let Some(raw) = go_pprof(&["-raw"], &out) else {
        return;
    };
    let section = |name: &str| -> Vec<&str> {
        raw.lines()
            .skip_while(|l| *l != name)
            .skip(1)
            .take_while(|l| {
                l.starts_with(' ') || l.chars().next().is_some_and(|c| c.is_ascii_digit())
            })
            .collect()
    };
    // Mappings: `ID: START/LIMIT/OFFSET FILE [FN]...`; zlib's is there, symbolized.
    let mappings = section("Mappings");
    let libz = mappings
        .iter()
        .find(|l| l.contains("libz.so"))
        .unwrap_or_else(|| panic!("no libz mapping in:\n{raw}"));
    let libz_id = libz.split(':').next().unwrap().trim();
    assert!(libz.contains("[FN]"), "{libz}");
    // Locations: `ID: ADDRESS M=MAPPING FUNCTION FILE:LINE ...`.
    let locations = section("Locations");
    let deflate = locations
        .iter()
        .find(|l| l.contains(" deflate ") && l.contains(&format!(" M={libz_id} ")))
        .unwrap_or_else(|| panic!("no deflate location in mapping {libz_id}:\n{raw}"));
    let address = deflate.split_whitespace().nth(1).unwrap();
    assert!(address.starts_with("0x") && address != "0x0", "{deflate}");
    let caller = locations
        .iter()
        .find(|l| l.contains(" compress_loop "))
        .unwrap_or_else(|| panic!("no compress_loop location:\n{raw}"));
    assert!(
        caller.contains(&format!(
            "native_zlib.py:{}",
            line_of("native_zlib.py", "compress")
        )),
        "{caller}"
    );
    assert!(
        !caller.contains(" M="),
        "a Python frame has no mapping: {caller}"
    );

    // Traces (leaf first): deflate under compress_loop under <module>.
    let traces = go_pprof(&["-traces"], &out).unwrap();
    let in_order = traces.split("-----------+").any(|t| {
        let frames: Vec<&str> = t
            .lines()
            .map(|l| l.split_whitespace().last().unwrap_or(""))
            .collect();
        let at = |f: &str| frames.iter().position(|x| *x == f);
        matches!(
            (at("deflate"), at("compress_loop"), at("<module>")),
            (Some(a), Some(b), Some(c)) if a < b && b < c
        )
    });
    assert!(
        in_order,
        "no trace with deflate under compress_loop:\n{traces}"
    );
}
