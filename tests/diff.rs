//! `pyspy-bpf diff` on real recorded profiles: an unchanged pair passes, an injected
//! regression fails naming the function, too few samples is inconclusive, and a corrupt file
//! is a one-line error (to `diff` and to `convert`).

mod common;

use std::path::{Path, PathBuf};

use common::{interpreters, pyspy, scripts_dir, TempDir};

/// One recording at a time: recordings that share the two CPUs here with each other vary from
/// run to run far more than sampling noise (CI once saw two runs of the same program differ by
/// four standard errors), which is what `diff` then rightly calls too noisy to decide.
static RECORDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Records tests/scripts/three_functions.py for `seconds` at `rate` Hz into `out` (raw, or
/// pprof for a `.pb.gz` name).
fn record(out: &Path, rate: u32, seconds: &str, big_slower: &str) {
    let _one_at_a_time = RECORDING.lock().unwrap_or_else(|e| e.into_inner());
    let python = interpreters()
        .into_iter()
        .find(|i| i.series == "3.11" || i.flavour == "system")
        .expect("an interpreter (tools/pythons/provision)");
    let script = scripts_dir().join("three_functions.py");
    let rate = rate.to_string();
    let out_s = out.to_string_lossy().into_owned();
    let format = if out_s.ends_with(".pb.gz") {
        "pprof"
    } else {
        "raw"
    };
    let cmd = ["record", "-r", &rate, "-f", format, "-o", &out_s, "--"];
    let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    args.push("env".into());
    args.push(format!("BIG_SLOWER={big_slower}"));
    args.push(python.path.to_string_lossy().into_owned());
    args.push(script.to_string_lossy().into_owned());
    args.push(seconds.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pyspy(&args).and_then(|o| o.ok()).expect("record");
}

fn diff(base: &Path, head: &Path, extra: &[&str]) -> common::Outcome {
    let (b, h) = (base.to_string_lossy(), head.to_string_lossy());
    let mut args = vec!["diff", &b, &h];
    args.extend_from_slice(extra);
    pyspy(&args)
        .expect("diff ran")
        .no_panic()
        .expect("no panic")
}

/// The functions the table calls REGRESSED.
fn regressed(table: &str) -> Vec<String> {
    table
        .lines()
        .filter(|l| l.trim_end().ends_with("REGRESSED"))
        .map(|l| l.split(" (").next().unwrap_or("").trim().to_string())
        .collect()
}

/// Thresholds a few seconds of samples can decide: a 20% slowdown, 1% family-wise alpha.
const DECIDABLE: [&str; 4] = ["--threshold", "20", "--alpha", "0.01"];

#[test]
fn unchanged_passes_and_a_regression_fails_naming_the_function() {
    let dir = TempDir::new("diff");
    let (base, same, slower) = (
        dir.join("base.txt"),
        dir.join("same.txt"),
        dir.join("slower.txt"),
    );
    record(&base, 1000, "4", "0");
    record(&same, 1000, "4", "0");
    // big() does twice the work: a change no run-to-run variation of this VM hides (two runs of
    // the same program here have differed by 3 percentage points, more than sampling noise).
    record(&slower, 1000, "4", "1.0");

    let o = diff(&base, &same, &DECIDABLE);
    assert_eq!(
        o.status.code(),
        Some(0),
        "unchanged pair:\n{}",
        o.describe()
    );
    assert!(o.stdout.contains("0 regressed"), "{}", o.describe());

    let md = dir.join("report.md");
    let md_s = md.to_string_lossy().into_owned();
    let mut extra = DECIDABLE.to_vec();
    extra.extend(["--markdown", &md_s]);
    let o = diff(&base, &slower, &extra);
    assert_eq!(o.status.code(), Some(1), "regression:\n{}", o.describe());
    assert_eq!(
        regressed(&o.stdout),
        vec!["big".to_string()],
        "{}",
        o.describe()
    );
    let report = std::fs::read_to_string(&md).expect("markdown written");
    assert!(report.contains("1 regressed"), "{report}");
    assert!(report.contains("`big (three_functions.py)`"), "{report}");

    // As JSON, with a directory of runs as each side: with two runs a side the test across runs
    // has the degrees of freedom to decide (one run against two has almost none).
    let runs = dir.join("runs");
    std::fs::create_dir(&runs).unwrap();
    std::fs::copy(&base, runs.join("1.txt")).unwrap();
    std::fs::copy(&same, runs.join("2.txt")).unwrap();
    let slower_runs = dir.join("slower-runs");
    std::fs::create_dir(&slower_runs).unwrap();
    std::fs::copy(&slower, slower_runs.join("1.txt")).unwrap();
    record(&slower_runs.join("2.txt"), 1000, "4", "1.0");
    let mut extra = DECIDABLE.to_vec();
    extra.push("--json");
    let o = diff(&runs, &slower_runs, &extra);
    assert_eq!(o.status.code(), Some(1), "{}", o.describe());
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    assert_eq!(v["regressed"], 1, "{v}");
    assert_eq!(v["base_samples"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["head_samples"].as_array().map(Vec::len), Some(2), "{v}");
    let big = v["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "big")
        .unwrap();
    assert_eq!(big["verdict"], "regressed");
}

#[test]
fn few_samples_are_inconclusive() {
    let dir = TempDir::new("diff-refuse");
    let (a, b) = (dir.join("a.txt"), dir.join("b.txt"));
    record(&a, 50, "1", "0");
    record(&b, 50, "1", "0");

    // ~50 samples a side cannot show anything: inconclusive (3), not a pass.
    let o = diff(&a, &b, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", o.describe());
    assert!(o.stdout.contains("inconclusive"), "{}", o.describe());
}

#[test]
fn pprof_pairs_recorded_at_very_different_rates_are_refused() {
    let dir = TempDir::new("diff-rates");
    let (slow, fast) = (dir.join("slow.pb.gz"), dir.join("fast.pb.gz"));
    record(&slow, 50, "1", "0");
    record(&fast, 1000, "1", "0");
    let o = diff(&slow, &fast, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", o.describe());
    let line = o.error_line().unwrap_or_default().to_string();
    assert!(
        line.contains("different rates") && line.contains("50 Hz"),
        "{}",
        o.describe()
    );
    // --force compares anyway.
    let o = diff(&slow, &fast, &["--force"]);
    assert_ne!(o.status.code(), Some(2), "{}", o.describe());
    // A pprof against a collapsed file of the same recording is fine (the collapsed one has
    // no rate to disagree with).
    let raw = dir.join("fast.txt");
    let (f, r) = (
        fast.to_string_lossy().into_owned(),
        raw.to_string_lossy().into_owned(),
    );
    pyspy(&["convert", &f, "-f", "raw", "-o", &r])
        .and_then(|o| o.ok())
        .expect("convert");
    let o = diff(&fast, &raw, &["--min-samples", "10"]);
    assert_ne!(o.status.code(), Some(2), "{}", o.describe());
    assert_eq!(o.stdout.matches("REGRESSED").count(), 0, "{}", o.describe());
}

#[test]
fn corrupt_missing_and_foreign_files_are_one_line_errors() {
    let dir = TempDir::new("diff-bad");
    let good = dir.join("good.txt");
    std::fs::write(&good, "main (a.py:1);f (a.py:2) 10\n").unwrap();
    let cases: Vec<(PathBuf, &[u8], &str)> = vec![
        (
            dir.join("truncated.txt"),
            b"main (a.py:1);f (a.py:2",
            "no sample count",
        ),
        (
            dir.join("image.png"),
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0",
            "not",
        ),
        (dir.join("empty.txt"), b"", "empty"),
        (
            dir.join("cut.pb.gz"),
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xe3",
            "pprof",
        ),
    ];
    for (path, bytes, says) in &cases {
        std::fs::write(path, bytes).unwrap();
        let o = diff(&good, path, &[]);
        assert_eq!(o.status.code(), Some(2), "{}", o.describe());
        let line = o.error_line().unwrap_or_default();
        assert!(
            line.contains(&*path.to_string_lossy()) && line.contains(says),
            "{}",
            o.describe()
        );
        assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.describe());
    }
    let o = diff(&good, &dir.join("missing.txt"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", o.describe());
}

/// `convert` given a file that is not a profile it can read: a one-line error (exit 1) that
/// names the file and what is wrong with it, and no output file.
#[test]
fn convert_of_corrupt_truncated_and_foreign_files_is_a_one_line_error() {
    use std::io::Write;
    let dir = TempDir::new("convert-bad");
    let gzipped = |bytes: &[u8]| {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.txt",
            b"main (a.py:1);f (a.py:2".to_vec(),
            "no sample count",
        ),
        ("binary.txt", b"\0\x01\x02 junk".to_vec(), "no sample count"),
        ("empty.txt", Vec::new(), "empty"),
        (
            "image.png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0".to_vec(),
            "not",
        ),
        // A gzip stream cut short, and a whole one holding text rather than a profile.
        (
            "cut.pb.gz",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xe3".to_vec(),
            "pprof",
        ),
        (
            "text.pb.gz",
            gzipped(&b"hello, not a profile\n".repeat(20)),
            "not a pprof profile",
        ),
        // Uncompressed protobuf whose first field claims more bytes than the file has.
        ("short.pb", vec![0x0a, 0x05, 1, 2, 3], "truncated"),
    ];
    let out = dir.join("out.txt");
    for (name, bytes, says) in &cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let p = path.to_string_lossy();
        let o = pyspy(&["convert", &p, "-f", "raw", "-o", &out.to_string_lossy()])
            .expect("convert ran")
            .no_panic()
            .expect("no panic");
        assert_eq!(o.status.code(), Some(1), "{name}: {}", o.describe());
        let line = o.error_line().unwrap_or_default();
        assert!(
            line.contains(&*p) && line.contains(says),
            "{name}: {}",
            o.describe()
        );
        assert_eq!(
            o.stderr.trim().lines().count(),
            1,
            "{name}: {}",
            o.describe()
        );
        assert!(!out.exists(), "{name}: {}", o.describe());
    }
}

/// `convert` of a 1 GiB file (sparse: no disk is used) is a one-line error, reached without
/// holding the file in memory: a text file whose first line has no end is stopped at the
/// line bound, a gzip header followed by garbage at the first bad byte, and an uncompressed
/// protobuf by its size. The profiler runs under a 256 MiB address-space limit (`prlimit`),
/// so reading any of them whole would end in "out of memory" rather than in the error about
/// the file's contents.
#[test]
fn convert_of_a_1_gib_file_is_an_error_without_reading_it_whole() {
    let dir = TempDir::new("convert-huge");
    // `head`, then zeros up to 1 GiB: a sparse file, no disk used.
    let sparse = |name: &str, head: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, head).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(1 << 30).unwrap();
        path
    };
    let text = sparse("huge.txt", b"");
    let gzipped = sparse("huge.pb.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03");
    // Uncompressed protobuf (its first byte is a pprof message's first field): refused by
    // its size before a byte of it is read.
    let raw = sparse("huge.pb", b"\x0a");
    let out = dir.join("out.txt");
    let bin = env!("CARGO_BIN_EXE_pyspy-bpf");
    for (input, says) in [
        (&text, "line 1: longer than"),
        (&gzipped, "corrupt deflate stream"),
        (&raw, "larger than 512 MiB uncompressed"),
    ] {
        let o = common::run(
            std::process::Command::new("prlimit")
                .arg(format!("--as={}", 256u64 << 20))
                .arg(bin)
                .args(["convert", input.to_str().unwrap(), "-f", "raw", "-o"])
                .arg(&out),
            std::time::Duration::from_secs(60),
        )
        .expect("prlimit (util-linux) runs");
        assert_eq!(o.status.code(), Some(1), "{}", o.describe());
        let line = o.error_line().unwrap_or_default();
        assert!(
            line.contains(&*input.to_string_lossy()) && line.contains(says),
            "{}",
            o.describe()
        );
        assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.describe());
        assert!(!out.exists(), "{}", o.describe());
    }
}
