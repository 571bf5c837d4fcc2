//! `--native`: mixed native + Python stacks in user-space mode, unwound with `.eh_frame`
//! (Debian's interpreters have no frame pointers), on every provisioned interpreter.

mod common;

use anyhow::{bail, ensure, Result};
use common::*;

/// Record `script` with `record --native -f raw` for `seconds`; the stacks, root first.
fn record_native(interp: &Interpreter, script: &str, seconds: &str) -> Result<Vec<RawStack>> {
    record_native_with(interp, script, seconds, &["--mode", "userspace"])
}

/// The samplers `--native` is checked with: user space (pauses the thread) and, as root, BPF
/// (walks the Python frames in the sample, no pause).
fn native_modes() -> Vec<&'static str> {
    if is_root() {
        vec!["userspace", "bpf"]
    } else {
        vec!["userspace"]
    }
}

/// As [`record_native`], with `extra` options for `record`.
fn record_native_with(
    interp: &Interpreter,
    script: &str,
    seconds: &str,
    extra: &[&str],
) -> Result<Vec<RawStack>> {
    let dir = TempDir::new("native");
    let target = interp.start(script, &[])?;
    target.wait_ready()?;
    let pid = target.pid().to_string();
    let out = dir.join("out.txt");
    let out_s = out.display().to_string();
    let mut args = vec![
        "record",
        "--native",
        "--native-all",
        "-r",
        "100",
        "-d",
        seconds,
        "-f",
        "raw",
        "-o",
        &out_s,
        "--pid",
        &pid,
    ];
    args.extend_from_slice(extra);
    pyspy(&args)?.ok()?;
    read_raw(&out)
}

#[test]
fn python_calls_c_calls_python_in_true_order() {
    for_each_interpreter("python_calls_c_calls_python_in_true_order", |interp| {
        for mode in native_modes() {
            let stacks = record_native_with(interp, "native_qsort.py", "2", &["--mode", mode])?;
            let in_callback =
                |s: &RawStack| position(s, |f| f.starts_with("py_compare (")).is_some();
            let ordered = |s: &RawStack| {
                let caller = position(s, |f| f.starts_with("sort_with_qsort ("));
                let qsort = position(s, |f| f.starts_with("qsort") && f.contains("(libc"));
                let callback = position(s, |f| f.starts_with("py_compare ("));
                matches!((caller, qsort, callback), (Some(a), Some(b), Some(c)) if a < b && b < c)
            };
            let total = count(&stacks, in_callback);
            let good = count(&stacks, |s| in_callback(s) && ordered(s));
            ensure!(
                total >= 10,
                "{mode}: too few samples in the callback: {}",
                summary(&stacks)
            );
            ensure!(
            good * 100 >= total * 90,
            "{mode}: {good} of {total} callback samples show caller -> qsort (libc) -> callback: {}",
            summary(&stacks)
        );
        }
        Ok(())
    });
}

/// Without `--native-all`, a stack with Python frames shows no frame of the interpreter
/// itself (the eval loop, calls and trampolines, start-up): the Python frames are its root,
/// libc's qsort stays between the caller and its callback.
#[test]
fn interpreter_frames_are_hidden_unless_native_all() {
    for_each_interpreter(
        "interpreter_frames_are_hidden_unless_native_all",
        |interp| {
            for mode in native_modes() {
                let dir = TempDir::new("native-hidden");
                let target = interp.start("native_qsort.py", &[])?;
                target.wait_ready()?;
                let (pid, out) = (target.pid().to_string(), dir.join("out.txt"));
                let out_s = out.display().to_string();
                pyspy(&[
                    "record", "--native", "--mode", mode, "-r", "100", "-d", "2", "-f", "raw",
                    "-o", &out_s, "--pid", &pid,
                ])?
                .ok()?;
                let stacks = read_raw(&out)?;
                let in_callback =
                    |s: &RawStack| position(s, |f| f.starts_with("py_compare (")).is_some();
                let interpreter = |f: &str| f.contains(" (python") || f.contains(" (libpython");
                // A Python frame: `function (file.py:LINE)`.
                let python_root = |s: &RawStack| {
                    s.root()
                        .and_then(|r| r.strip_suffix(')'))
                        .and_then(|r| r.rsplit_once(':'))
                        .is_some_and(|(_, l)| {
                            !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())
                        })
                };
                let total = count(&stacks, in_callback);
                let clean = count(&stacks, |s| {
                    in_callback(s)
                        && python_root(s)
                        && !s.frames.iter().any(|f| interpreter(f))
                        && position(s, |f| f.starts_with("qsort") && f.contains("(libc")).is_some()
                });
                ensure!(
                    total >= 10,
                    "{mode}: too few samples in the callback: {}",
                    summary(&stacks)
                );
                ensure!(
                    clean * 100 >= total * 90,
                    "{mode}: {clean} of {total} callback samples are rooted in Python, show qsort \
                 and no interpreter frame: {}",
                    summary(&stacks)
                );
            }
            Ok(())
        },
    );
}

#[test]
fn c_extension_work_shows_under_its_python_caller() {
    for_each_interpreter("c_extension_work_shows_under_its_python_caller", |interp| {
        for mode in native_modes() {
            let stacks = record_native_with(interp, "native_zlib.py", "2", &["--mode", mode])?;
            let under_caller = |s: &RawStack| {
                let caller = position(s, |f| f.starts_with("compress_loop ("));
                let deflate = position(s, |f| f.starts_with("deflate"));
                matches!((caller, deflate), (Some(a), Some(b)) if a < b)
            };
            let total = count(&stacks, |s| {
                position(s, |f| f.starts_with("compress_loop (")).is_some()
            });
            let good = count(&stacks, under_caller);
            ensure!(
                total >= 10,
                "{mode}: too few samples in compress_loop: {}",
                summary(&stacks)
            );
            ensure!(
                good * 100 >= total * 50,
                "{mode}: {good} of {total} compress_loop samples show deflate under it: {}",
                summary(&stacks)
            );
        }
        Ok(())
    });
}

/// BPF samples taken in the kernel: their user part starts from the registers saved on entry
/// to the kernel, so the system call's kernel frames sit leafward of libc's read, under the
/// Python caller, and the unwind still reaches the program's root. (The user-space sampler
/// reads kernel frames only for threads that sleep, with `--idle`.)
#[test]
fn kernel_time_shows_under_the_system_call_and_its_caller() {
    if !bpf_test_can_run("kernel_time_shows_under_the_system_call_and_its_caller") {
        return;
    }
    for_each_interpreter(
        "kernel_time_shows_under_the_system_call_and_its_caller",
        |interp| {
            let line = line_of("native_read_zero.py", "read");
            let caller = format!("read_loop (native_read_zero.py:{line})");
            {
                let mode = "bpf";
                let stacks =
                    record_native_with(interp, "native_read_zero.py", "2", &["--mode", mode])?;
                let in_kernel = |s: &RawStack| s.leaf().is_some_and(|f| f.ends_with("_[k]"));
                let kernel_total = count(&stacks, in_kernel);
                let good = count(&stacks, |s| {
                    let py = position(s, |f| *f == caller);
                    // libc's read (libpthread's on older glibc, as 2.7's and 3.9's builds link it).
                    let read = position(s, |f| {
                        f.contains("read") && (f.contains("(libc") || f.contains("(libpthread"))
                    });
                    let kernel = position(s, |f| f.ends_with("_[k]"));
                    in_kernel(s)
                        && rooted(s)
                        && matches!((py, read, kernel), (Some(p), Some(r), Some(k)) if p < r && r < k)
                });
                // ~100 expected in 2 s at 100 Hz on an idle machine; a loaded CI host gave 19.
                // Ten are enough for the order check below to mean something.
                ensure!(
                    kernel_total >= 10,
                    "{mode}: too few samples in the kernel: {}",
                    summary(&stacks)
                );
                ensure!(
                    good * 100 >= kernel_total * 80,
                    "{mode}: {good} of {kernel_total} kernel samples show root -> {caller} -> \
                     libc read -> kernel: {}",
                    summary(&stacks)
                );
            }
            Ok(())
        },
    );
}

#[test]
fn unwinding_reaches_the_root_without_frame_pointers() {
    for_each_interpreter(
        "unwinding_reaches_the_root_without_frame_pointers",
        |interp| {
            let stacks = record_native(interp, "busy.py", "2")?;
            let total = total(&stacks);
            let good = count(&stacks, rooted);
            ensure!(total >= 50, "too few samples: {}", summary(&stacks));
            ensure!(
                good * 100 >= total * 95,
                "{good} of {total} samples reach the root: {}",
                summary(&stacks)
            );
            // The Python frames sit between the native root and the leaf, in order.
            let py = count(&stacks, |s| {
                let a = position(s, |f| f.starts_with("level_a ("));
                let b = position(s, |f| f.starts_with("level_b ("));
                matches!((a, b), (Some(a), Some(b)) if a < b && a > 0)
            });
            ensure!(
                py * 100 >= total * 90,
                "level_a -> level_b in {py} of {total}: {}",
                summary(&stacks)
            );
            Ok(())
        },
    );
}

#[test]
fn dump_native_shows_mixed_frames() {
    for_each_interpreter("dump_native_shows_mixed_frames", |interp| {
        let target = interp.start("native_qsort.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        // One snapshot: the script spends ~99% of its time inside qsort, the rest between two
        // calls (building the array, with no libc frame). A few dumps, then, before calling
        // a snapshot outside qsort a failure; each one must be a whole, valid dump.
        let mut last = String::new();
        for _ in 0..5 {
            let out = pyspy(&["dump", "--native", "--pid", &pid])?.ok()?;
            let caller = out.stdout.contains("sort_with_qsort (");
            let libc = out.stdout.lines().any(|l| l.contains("(libc"));
            if caller && libc {
                return Ok(());
            }
            last = format!(
                "caller frame: {caller}, libc frame: {libc}\n{}",
                out.describe()
            );
        }
        bail!("5 dumps without sort_with_qsort and a libc frame; the last: {last}")
    });
}

#[test]
fn native_stack_size_bounds_the_copy() {
    for_each_interpreter("native_stack_size_bounds_the_copy", |interp| {
        // ~150 C eval-loop frames: far more than 4 KiB of stack, well within 256 KiB.
        let in_leaf = |s: &RawStack| position(s, |f| f.starts_with("deep_leaf (")).is_some();
        let cut = |s: &RawStack| position(s, |f| f.starts_with("<truncated")).is_some();
        let small = record_native_with(
            interp,
            "native_deep.py",
            "1",
            &["--mode", "userspace", "--native-stack-size", "4K"],
        )?;
        let total = count(&small, in_leaf);
        ensure!(
            total >= 10,
            "4K: too few samples in deep_leaf: {}",
            summary(&small)
        );
        let truncated = count(&small, |s| in_leaf(s) && cut(s) && !rooted(s));
        ensure!(
            truncated == total,
            "4K: only {truncated} of {total} deep_leaf samples are truncated: {}",
            summary(&small)
        );
        // The Python frames the native copy did not reach are still there, root first.
        let python_root = count(&small, |s| {
            in_leaf(s) && s.root().is_some_and(|r| r.starts_with("<module> ("))
        });
        ensure!(
            python_root == total,
            "4K: {python_root} of {total} deep_leaf samples keep <module> at the root: {}",
            summary(&small)
        );
        let full = record_native(interp, "native_deep.py", "1")?;
        let total = count(&full, in_leaf);
        ensure!(
            total >= 10,
            "default: too few samples in deep_leaf: {}",
            summary(&full)
        );
        let whole = count(&full, |s| in_leaf(s) && rooted(s) && !cut(s));
        ensure!(
            whole * 100 >= total * 95,
            "default: {whole} of {total} deep_leaf samples reach the root untruncated: {}",
            summary(&full)
        );
        Ok(())
    });
}

/// A bad `--native-stack-size` is refused before anything starts: a program given after `--`
/// is never run.
#[test]
fn native_stack_size_out_of_range_is_refused() {
    let dir = TempDir::new("stack-size");
    let out = dir.join("out.txt").display().to_string();
    let marker = dir.join("started");
    let marker_s = marker.display().to_string();
    let program = [
        "--",
        "/bin/sh",
        "-c",
        "touch \"$0\"; sleep 30",
        marker_s.as_str(),
    ];
    let mut errors = Vec::new();
    let cases: &[(&[&str], &str)] = &[
        (&["record", "--native", "--native-stack-size", "0"], "4K to"),
        (
            &[
                "record",
                "--native",
                "--mode",
                "userspace",
                "--native-stack-size",
                "0",
            ],
            "4K to 64M",
        ),
        (
            &["record", "--native", "--native-stack-size", "100"],
            "4K to",
        ),
        (
            &["record", "--native", "--native-stack-size", "1024M"],
            "4K to",
        ),
        (
            &[
                "record",
                "--native",
                "--mode",
                "bpf",
                "--native-stack-size",
                "64K",
            ],
            "BPF",
        ),
        (&["top", "--native", "--native-stack-size", "0"], "4K to"),
    ];
    for (args, words) in cases {
        let mut all: Vec<&str> = args.to_vec();
        if args[0] == "record" {
            all.extend(["-f", "raw", "-o", &out, "-d", "1"]);
        }
        all.extend(program);
        let result = pyspy(&all).and_then(|o| o.no_panic()).and_then(|o| {
            ensure!(!o.status.success(), "expected a failure:\n{}", o.describe());
            let line = o.error_line().unwrap_or("");
            ensure!(
                line.contains("--native-stack-size") && line.contains(words),
                "the error line does not name the flag and {words:?}:\n{}",
                o.describe()
            );
            Ok(())
        });
        if let Err(e) = result {
            errors.push(format!("{args:?}: {e:#}"));
        }
        if marker.exists() {
            errors.push(format!("{args:?}: the program was started"));
            let _ = std::fs::remove_file(&marker);
        }
    }
    // Bad syntax and the flag without --native: clap's usage errors.
    for args in [
        vec![
            "dump",
            "--native",
            "--native-stack-size",
            "lots",
            "--pid",
            "1",
        ],
        vec![
            "dump",
            "--native",
            "--native-stack-size",
            "16KB",
            "--pid",
            "1",
        ],
        vec!["dump", "--native-stack-size", "16K", "--pid", "1"],
        vec!["dump", "--native", "--native-stack-size", "0", "--pid", "1"],
    ] {
        let result = pyspy(&args).and_then(|o| o.no_panic()).and_then(|o| {
            ensure!(!o.status.success(), "expected a failure:\n{}", o.describe());
            ensure!(
                o.stderr.contains("native-stack-size"),
                "stderr does not name the flag:\n{}",
                o.describe()
            );
            Ok(())
        });
        if let Err(e) = result {
            errors.push(format!("{args:?}: {e:#}"));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// `dump --native --json` of threads.py: (thread name, its Python leaf function, active).
/// Pausing the target wakes sleeping threads for a moment, so activity (and the kernel stacks
/// of the sleepers) must be read before.
#[test]
fn dump_native_reports_sleepers_idle() {
    let expected = [
        ("MainThread", "main_idle", false),
        ("worker-1", "spin", true),
        ("worker-2", "nap", false),
        ("worker-3", "blocked", false),
    ];
    for_each_interpreter("dump_native_reports_sleepers_idle", |interp| {
        let target = interp.start("threads.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        // Each dump pauses the target once; several dumps give a woken sleeper several chances
        // to be caught running.
        for round in 0..5 {
            let out = pyspy(&["dump", "--native", "--json", "--pid", &pid])?.ok()?;
            let dump: serde_json::Value = serde_json::from_str(&out.stdout)
                .map_err(|e| anyhow::anyhow!("{e}: {}", out.describe()))?;
            let threads = dump.as_array().cloned().unwrap_or_default();
            ensure!(
                threads.len() == expected.len(),
                "round {round}: {} threads: {}",
                threads.len(),
                out.describe()
            );
            for (name, function, active) in expected {
                let thread = threads
                    .iter()
                    .find(|t| t["thread_name"] == name)
                    .ok_or_else(|| anyhow::anyhow!("round {round}: no thread {name}"))?;
                let has_function = thread["frames"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["name"] == function));
                let has_native = thread["frames"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["kind"] == "native"));
                ensure!(
                    has_function && has_native,
                    "round {round}: {name} has no {function} frame or no native frame: {}",
                    out.describe()
                );
                ensure!(
                    thread["active"] == active,
                    "round {round}: {name} active={}, expected {active}: {}",
                    thread["active"],
                    out.describe()
                );
                // As root, a sleeper's kernel wait is its leaf; a busy thread has none.
                let frames = thread["frames"].as_array().cloned().unwrap_or_default();
                let kernel: Vec<bool> = frames.iter().map(|f| f["kind"] == "kernel").collect();
                let leading = kernel.iter().take_while(|&&k| k).count();
                let ok = match (active, is_root()) {
                    (true, _) | (false, false) => !kernel.contains(&true),
                    (false, true) => leading > 0 && !kernel[leading..].contains(&true),
                };
                ensure!(
                    ok,
                    "round {round}: {name}: kernel frames {kernel:?}, expected {}: {}",
                    if active || !is_root() {
                        "none"
                    } else {
                        "leaf-most only"
                    },
                    out.describe()
                );
            }
        }
        Ok(())
    });
}

/// `time.sleep` with `--idle`: the Python caller, then libc's sleep (`clock_nanosleep`; 2.7 and
/// 3.9 sleep in `select`), then, as root, the kernel's wait on the leaf side, in that order.
#[test]
fn sleep_shows_libc_and_kernel_wait_under_its_caller() {
    let root = is_root();
    for_each_interpreter(
        "sleep_shows_libc_and_kernel_wait_under_its_caller",
        |interp| {
            let stacks = record_native_with(
                interp,
                "sleep_loop.py",
                "2",
                &["--mode", "userspace", "--idle"],
            )?;
            let caller = |s: &RawStack| position(s, |f| f.starts_with("nap_loop ("));
            let libc_sleep = |s: &RawStack| {
                position(s, |f| {
                    let name = f.split(" (").next().unwrap_or("");
                    let sleep = [
                        "clock_nanosleep",
                        "__clock_nanosleep",
                        "nanosleep",
                        "__nanosleep",
                        "select",
                        "__select",
                    ];
                    sleep.contains(&name) && f.contains("(libc")
                })
            };
            let is_kernel = |f: &str| f.ends_with("_[k]");
            let first_kernel = |s: &RawStack| position(s, is_kernel);
            // The kernel part is leaf-most and names the wait.
            let kernel_wait = |s: &RawStack, after: usize| {
                first_kernel(s).is_some_and(|k| {
                    k > after
                        && s.frames[k..].iter().all(|f| is_kernel(f))
                        && s.frames[k..].iter().any(|f| {
                            ["nanosleep", "select", "schedule", "poll"]
                                .iter()
                                .any(|w| f.contains(w))
                        })
                })
            };
            let total = count(&stacks, |s| caller(s).is_some());
            let in_order = |s: &RawStack| match (caller(s), libc_sleep(s)) {
                (Some(c), Some(l)) if c < l => !root || kernel_wait(s, l),
                _ => false,
            };
            let good = count(&stacks, in_order);
            ensure!(
                total >= 50,
                "too few samples in nap_loop: {}",
                summary(&stacks)
            );
            ensure!(
                good * 100 >= total * 80,
                "{good} of {total} nap_loop samples show nap_loop -> libc sleep{}: {}",
                if root { " -> kernel wait" } else { "" },
                summary(&stacks)
            );
            if !root {
                // Without root the kernel stack cannot be read: left out, not an error.
                let kernel = count(&stacks, |s| first_kernel(s).is_some());
                ensure!(
                    kernel == 0,
                    "kernel frames without root: {}",
                    summary(&stacks)
                );
            }
            Ok(())
        },
    );
}
