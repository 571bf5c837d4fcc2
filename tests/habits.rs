//! py-spy habits that must work with py-spy's meaning: short flags (`-g`, `-i`, `-n`, `-j`),
//! a command without `--`, a hex pid, `--hideprogress`, `completions`, the output format from
//! `-o`'s extension, `record -- CMD` ending with the program's status, the dump header as
//! py-spy prints it, and the exact patch version in the banner.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;

fn python() -> Interpreter {
    interpreters()
        .into_iter()
        .find(|i| i.series == "3.11")
        .or_else(|| interpreters().into_iter().find(|i| !i.is_py2()))
        .expect("an interpreter (tools/pythons/provision)")
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pyspy(&["completions", shell]).and_then(|o| o.ok()).unwrap();
        assert!(
            out.stdout.contains("pyspy-bpf"),
            "{shell}: {}",
            clip(&out.stdout, 400)
        );
        assert!(
            out.stdout.contains("record") && out.stdout.contains("nolineno"),
            "{shell}"
        );
    }
    let bad = pyspy(&["completions", "cmd.exe"]).unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", bad.describe());
}

#[test]
fn short_flags_and_a_command_without_dashes() {
    if !root_test_can_run("habits", "reading another process needs root") {
        return;
    }
    let python = python();
    let dir = TempDir::new("habits-flags");
    let script = scripts_dir().join("two_workers.py");
    let out = dir.join("p.txt");
    // `record python3 app.py` (no `--`), with py-spy's short flags.
    let args = [
        "record",
        "-g",
        "-i",
        "--hideprogress",
        "-r",
        "200",
        "-o",
        out.to_str().unwrap(),
        python.path.to_str().unwrap(),
        "-I",
        script.to_str().unwrap(),
        "2",
    ];
    let run = pyspy(&args).and_then(|o| o.ok()).unwrap();
    // -g: only GIL holders; the two workers take turns holding it.
    let stacks = read_raw(&out).unwrap();
    let total: u64 = stacks.iter().map(|s| s.count).sum();
    let workers: u64 = stacks
        .iter()
        .filter(|s| {
            s.frames
                .iter()
                .any(|f| f.starts_with("alpha_work") || f.starts_with("beta_work"))
        })
        .map(|s| s.count)
        .sum();
    assert!(
        total >= 50 && workers * 10 >= total * 8,
        "{}\n{stacks:?}",
        run.describe()
    );
    // --hideprogress: no live counter line.
    assert!(!run.stderr.contains('\r'), "{}", run.describe());
    for verb in [
        &["top", "-g", "-i", "-n", "--help"][..],
        &["dump", "-j", "-n", "--help"],
    ] {
        let help = pyspy(verb).and_then(|o| o.ok()).unwrap();
        assert!(help.stdout.contains("Usage"), "{verb:?}");
    }
}

#[test]
fn hex_pid_json_short_flag_and_the_dump_header() -> Result<()> {
    if !root_test_can_run("habits", "reading another process needs root") {
        return Ok(());
    }
    let python = python();
    let running = python.start("threads.py", &[])?;
    running.wait_ready()?;
    let hex = format!("{:#x}", running.pid());
    let json = pyspy(&["dump", "-j", "-p", &hex])?.ok()?;
    let value: serde_json::Value = serde_json::from_str(&json.stdout).context("dump -j is JSON")?;
    ensure!(
        value.to_string().contains("spin"),
        "{}",
        clip(&json.stdout, 2000)
    );
    let text = pyspy(&["dump", "--nonblocking", "-p", &running.pid().to_string()])?.ok()?;
    let first = text.stdout.lines().next().unwrap_or("");
    ensure!(
        first.starts_with(&format!("Process {}: ", running.pid())),
        "{}",
        text.stdout
    );
    let second = text.stdout.lines().nth(1).unwrap_or("");
    ensure!(
        second.starts_with(&format!("Python v{} (", python.version)),
        "{}",
        text.stdout
    );
    ensure!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("Thread ") && l.contains("): \"")),
        "{}",
        text.stdout
    );
    // Short file names by default, full ones with --full-filenames.
    ensure!(text.stdout.contains("(threads.py:"), "{}", text.stdout);
    let full = pyspy(&["dump", "--full-filenames", "-p", &running.pid().to_string()])?.ok()?;
    let path = scripts_dir().join("threads.py");
    ensure!(
        full.stdout.contains(&format!("({}:", path.display())),
        "{}",
        full.stdout
    );
    Ok(())
}

/// The banner names the exact patch version, read from the binary (`3.10.13`, not `3.10.0`),
/// on every interpreter found, including builds without `Py_Version` (< 3.11).
#[test]
fn the_version_banner_has_the_patch_version() {
    if !root_test_can_run("habits", "reading another process needs root") {
        return;
    }
    for_each_interpreter("version banner", |python| {
        let running = python.start("threads.py", &[])?;
        running.wait_ready()?;
        let text = pyspy(&["dump", "-p", &running.pid().to_string()])?.ok()?;
        let second = text.stdout.lines().nth(1).unwrap_or("").to_string();
        ensure!(
            second.starts_with(&format!("Python v{} (", python.version)),
            "{second}"
        );
        Ok(())
    });
}

#[test]
fn the_output_format_follows_the_file_name() {
    if !root_test_can_run("habits", "reading another process needs root") {
        return;
    }
    let python = python();
    let dir = TempDir::new("habits-ext");
    let script = scripts_dir().join("two_workers.py");
    let record = |name: &str| {
        let out = dir.join(name);
        let run = pyspy(&[
            "record",
            "-r",
            "200",
            "-o",
            out.to_str().unwrap(),
            "--",
            python.path.to_str().unwrap(),
            script.to_str().unwrap(),
            "1",
        ])
        .and_then(|o| o.ok())
        .unwrap();
        (std::fs::read(&out).unwrap(), run.stderr)
    };
    let (json, _) = record("p.json");
    assert!(String::from_utf8_lossy(&json).contains("speedscope.app/file-format-schema.json"));
    let (trace, _) = record("p.trace.json");
    assert!(String::from_utf8_lossy(&trace).contains("\"traceEvents\""));
    let (txt, _) = record("p.txt");
    assert!(String::from_utf8_lossy(&txt).contains("alpha_work"), "raw");
    let (pb, _) = record("p.pb.gz");
    assert_eq!(&pb[..2], &[0x1f, 0x8b]);
    let (svg, stderr) = record("p.svg");
    assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    assert!(!stderr.contains("names no format"), "{stderr}");
    let (other, stderr) = record("p.prof");
    assert!(String::from_utf8_lossy(&other).contains("<svg"));
    assert!(stderr.contains("names no format"), "{stderr}");
}

/// `record -- CMD` ends with the program's own exit status, the profile written.
#[test]
fn record_exits_with_the_programs_status() {
    if !root_test_can_run("habits", "reading another process needs root") {
        return;
    }
    let python = python();
    let dir = TempDir::new("habits-status");
    let out = dir.join("p.txt");
    let code = "import sys, time\nt = time.time() + 1\nwhile time.time() < t: pass\nsys.exit(3)";
    let run = pyspy(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--",
        python.path.to_str().unwrap(),
        "-c",
        code,
    ])
    .unwrap();
    assert_eq!(run.status.code(), Some(3), "{}", run.describe());
    assert!(
        run.stderr.contains("exited with status 3"),
        "{}",
        run.describe()
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    // A program that succeeds, and one we stop (-d), end with 0.
    let ok = pyspy(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--",
        python.path.to_str().unwrap(),
        "-c",
        "pass",
    ])
    .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", ok.describe());
    let stopped = run_for(&[
        "record",
        "-d",
        "1",
        "-o",
        out.to_str().unwrap(),
        "--",
        python.path.to_str().unwrap(),
        "-c",
        "import time; time.sleep(30)",
    ]);
    assert_eq!(stopped, Some(0));
}

/// A program that ends before its interpreter can be found (`python -c pass` is over in a
/// few ms; `sh -c 'exit 7'` never has one) leaves nothing to record: `record -- CMD` says so
/// and ends with the program's own status, as if it had recorded it, and writes no profile.
#[test]
fn record_of_a_program_over_before_its_interpreter_keeps_its_status() {
    let dir = TempDir::new("habits-over-first");
    let out = dir.join("p.txt");
    let run = pyspy(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "exit 7",
    ])
    .unwrap();
    assert_eq!(run.status.code(), Some(7), "{}", run.describe());
    assert!(
        run.stderr
            .contains("sh exited (exit status: 7) before its Python interpreter could be found: nothing was recorded"),
        "{}",
        run.describe()
    );
    assert!(!out.exists(), "no profile: {}", run.describe());
}

fn run_for(args: &[&str]) -> Option<i32> {
    run(pyspy_bpf().args(args), Duration::from_secs(60))
        .ok()?
        .status
        .code()
}

/// speedscope keeps the samples in time order (as py-spy writes it): a program that runs
/// `first` for a second and then `second` shows every `first` sample before the `second` ones.
#[test]
fn speedscope_samples_are_in_time_order() {
    if !root_test_can_run("habits", "reading another process needs root") {
        return;
    }
    let python = python();
    let dir = TempDir::new("habits-speedscope");
    let out = dir.join("p.json");
    let code = "import time\n\
def spin(s):\n    t = time.time() + s\n    while time.time() < t: pass\n\
def first(): spin(1)\n\
def second(): spin(1)\n\
first(); second()\n";
    let run = pyspy(&[
        "record",
        "-r",
        "200",
        "-o",
        out.to_str().unwrap(),
        "--",
        python.path.to_str().unwrap(),
        "-c",
        code,
    ])
    .and_then(|o| o.ok())
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let frames: Vec<String> = v["shared"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap_or("").to_string())
        .collect();
    let p = &v["profiles"][v["activeProfileIndex"].as_u64().unwrap() as usize];
    let order: Vec<char> = p["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            let names: Vec<&str> = s
                .as_array()?
                .iter()
                .map(|id| frames[id.as_u64().unwrap() as usize].as_str())
                .collect();
            if names.contains(&"first") {
                Some('a')
            } else if names.contains(&"second") {
                Some('b')
            } else {
                None
            }
        })
        .collect();
    let firsts = order.iter().filter(|&&c| c == 'a').count();
    let seconds = order.len() - firsts;
    assert!(firsts > 50 && seconds > 50, "{}\n{order:?}", run.describe());
    // In time order: one switch from `first` to `second`, not merged stacks (one entry each).
    let switches = order.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "{order:?}");
    assert_eq!(order[0], 'a');
    let weights = p["weights"].as_array().unwrap();
    assert_eq!(weights.len(), p["samples"].as_array().unwrap().len());
}
