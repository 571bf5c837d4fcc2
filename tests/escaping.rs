//! Names chosen by a hostile target (an escape sequence, CR, LF and BEL in a function's and a
//! thread's name) are printed escaped wherever they reach a terminal (`dump`'s text, `top`'s
//! plain-text and full-screen views), and stay exact in JSON and well-formed in collapsed
//! stacks.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;

/// The names escapes.py gives its thread and function.
const EVIL: &str = "evil\x1b[31m\r\n\x07name";
/// How they must look on a terminal.
const ESCAPED: &str = "evil\\x1b[31m\\r\\n\\x07name";

/// No raw control character of the evil name reached the output.
fn ensure_no_raw_controls(what: &str, text: &str) -> Result<()> {
    for (c, name) in [('\x1b', "ESC"), ('\r', "CR"), ('\x07', "BEL")] {
        ensure!(
            !text.contains(c),
            "{what}: a raw {name} reached the output:\n{}",
            text.escape_debug()
        );
    }
    Ok(())
}

/// escapes.py uses `code.replace` (3.8+).
fn runs_escapes_py(interp: &Interpreter) -> bool {
    interp.major_minor() >= (3, 8)
}

#[test]
fn dump_escapes_names_in_text_and_keeps_them_exact_in_json() {
    let line = line_of("escapes.py", "spin");
    for_each_interpreter("dump_escapes_names", |interp| {
        if !runs_escapes_py(interp) {
            return Ok(());
        }
        let target = interp.start("escapes.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();

        let text = pyspy(&["dump", "--pid", &pid])?.ok()?;
        ensure_no_raw_controls("dump", &text.stdout)?;
        let frame = format!("    {ESCAPED} (");
        let frame_line = text
            .stdout
            .lines()
            .find(|l| l.starts_with(&frame))
            .with_context(|| format!("no frame line `{frame}...`:\n{}", text.stdout))?;
        ensure!(
            frame_line.ends_with(&format!("escapes.py:{line})")),
            "the escaped frame is not one line: {frame_line:?}"
        );
        ensure!(
            text.stdout
                .lines()
                .any(|l| l.starts_with("Thread ") && l.ends_with(&format!("\"{ESCAPED}\""))),
            "no thread line named {ESCAPED}:\n{}",
            text.stdout
        );

        let json = pyspy(&["dump", "--pid", &pid, "--json"])?.ok()?;
        let value: serde_json::Value = serde_json::from_str(&json.stdout)
            .with_context(|| format!("dump --json is not JSON:\n{}", json.stdout))?;
        let threads = value.as_array().context("an array of threads")?;
        let evil = threads
            .iter()
            .find(|t| t["thread_name"] == EVIL)
            .with_context(|| format!("no thread named EVIL exactly in JSON:\n{}", json.stdout))?;
        ensure!(
            evil["frames"][0]["name"] == EVIL,
            "the leaf function is not EVIL exactly: {}",
            evil["frames"][0]
        );
        Ok(())
    });
}

/// Collapsed stacks (`-t`: a thread root frame too) keep one stack per line: the names'
/// control characters become spaces there, and the file parses.
#[test]
fn record_keeps_collapsed_stacks_one_per_line() {
    let interp = interpreters().into_iter().find(runs_escapes_py);
    let Some(interp) = interp else {
        eprintln!("record_keeps_collapsed_stacks_one_per_line: no Python 3.8+");
        return;
    };
    let target = interp.start("escapes.py", &[]).unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid().to_string();
    let dir = TempDir::new("escapes-record");
    let out = dir.join("x.txt");
    let out_s = out.display().to_string();
    let run = pyspy(&[
        "record", "-t", "-f", "raw", "-d", "1", "-o", &out_s, "--pid", &pid,
    ])
    .unwrap()
    .ok()
    .unwrap();
    ensure_no_raw_controls("record's messages", &run.stderr).unwrap();
    let stacks = read_raw(&out).with_context(|| run.describe()).unwrap();
    let leaf = format!(
        "evil [31m   name (escapes.py:{})",
        line_of("escapes.py", "spin")
    );
    let evil: Vec<&RawStack> = stacks
        .iter()
        .filter(|s| s.leaf() == Some(leaf.as_str()))
        .collect();
    assert!(
        !evil.is_empty(),
        "no stack ends in {leaf:?}:\n{}",
        summary(&stacks)
    );
    assert!(
        evil.iter().all(|s| s
            .root()
            .is_some_and(|r| r.starts_with("thread \"evil [31m   name\""))),
        "{}",
        summary(&stacks)
    );
}

/// Runs `pyspy-bpf ARGS` (or, with `pty`, inside `script` so that it gets a terminal), ends
/// it with SIGTERM after `after`, and returns its stdout.
fn output_until_sigterm(args: &[&str], after: Duration, pty: bool) -> Result<String> {
    let bin = env!("CARGO_BIN_EXE_pyspy-bpf");
    let mut cmd = if pty {
        let line: Vec<String> = std::iter::once(bin)
            .chain(args.iter().copied())
            .map(|a| format!("'{a}'"))
            .collect();
        // A fresh pty has no size: give it one, then become the profiler (exec keeps the pid).
        let shell = format!("stty cols 160 rows 40; exec {}", line.join(" "));
        let mut c = Command::new("script");
        c.args(["-qfec", &shell, "/dev/null"]).env("TERM", "xterm");
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });
    std::thread::sleep(after);
    // Under `script`, the profiler is its child: signal that one.
    let target = if pty {
        let script = child.id();
        std::fs::read_to_string(format!("/proc/{script}/task/{script}/children"))?
            .split_whitespace()
            .next()
            .context("script has no child")?
            .to_string()
    } else {
        child.id().to_string()
    };
    Command::new("kill").args(["-TERM", &target]).status()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!("pyspy-bpf did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait()?;
    let stdout = reader.join().unwrap_or_default();
    ensure!(
        status.success(),
        "exit {status}:\n{}",
        stdout.escape_debug()
    );
    Ok(stdout)
}

#[test]
fn top_escapes_names_in_both_views() {
    let interp = interpreters().into_iter().find(runs_escapes_py);
    let Some(interp) = interp else {
        eprintln!("top_escapes_names_in_both_views: no Python 3.8+");
        return;
    };
    let target = interp.start("escapes.py", &[]).unwrap();
    target.wait_ready().unwrap();
    let pid = target.pid().to_string();
    let args = ["top", "--delay", "0.5", "--pid", &pid];

    let text = output_until_sigterm(&args, Duration::from_millis(2500), false).unwrap();
    ensure_no_raw_controls("top (plain text)", &text).unwrap();
    assert!(
        text.lines().any(|l| l.contains(&format!("  {ESCAPED} ("))),
        "no row for {ESCAPED}:\n{text}"
    );

    // The full-screen view draws with escape sequences of its own: check that the name's own
    // sequence (ESC right after "evil") and BEL never appear, and its escaped form does.
    let screen = output_until_sigterm(&args, Duration::from_millis(2500), true).unwrap();
    assert!(
        !screen.contains("evil\x1b") && !screen.contains('\x07'),
        "a raw control character of the name reached the terminal:\n{}",
        screen.escape_debug()
    );
    assert!(
        screen.contains(ESCAPED),
        "the escaped name is not on the screen:\n{}",
        screen.escape_debug()
    );
}
