//! `--native`: mixed native + Python stacks in user-space mode, unwound with `.eh_frame`
//! (Debian's interpreters have no frame pointers), on every provisioned interpreter.

mod common;

use anyhow::{ensure, Result};
use common::*;

/// Record `script` with `record --native -f raw` for `seconds`; the stacks, root first.
fn record_native(interp: &Interpreter, script: &str, seconds: &str) -> Result<Vec<RawStack>> {
    let dir = TempDir::new("native");
    let target = interp.start(script, &[])?;
    target.wait_ready()?;
    let pid = target.pid().to_string();
    let out = dir.join("out.txt");
    let out_s = out.display().to_string();
    pyspy(&[
        "record", "--native", "-r", "100", "-d", seconds, "-f", "raw", "-o", &out_s, "--pid", &pid,
    ])?
    .ok()?;
    read_raw(&out)
}

fn position(stack: &RawStack, pred: impl Fn(&str) -> bool) -> Option<usize> {
    stack.frames.iter().position(|f| pred(f))
}

/// Samples of the stacks for which `pred` holds.
fn count(stacks: &[RawStack], pred: impl Fn(&RawStack) -> bool) -> u64 {
    stacks.iter().filter(|s| pred(s)).map(|s| s.count).sum()
}

#[test]
fn python_calls_c_calls_python_in_true_order() {
    for_each_interpreter("python_calls_c_calls_python_in_true_order", |interp| {
        let stacks = record_native(interp, "native_qsort.py", "2")?;
        let in_callback = |s: &RawStack| position(s, |f| f.starts_with("py_compare (")).is_some();
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
            "too few samples in the callback: {}",
            summary(&stacks)
        );
        ensure!(
            good * 100 >= total * 90,
            "{good} of {total} callback samples show caller -> qsort (libc) -> callback: {}",
            summary(&stacks)
        );
        Ok(())
    });
}

#[test]
fn c_extension_work_shows_under_its_python_caller() {
    for_each_interpreter("c_extension_work_shows_under_its_python_caller", |interp| {
        let stacks = record_native(interp, "native_zlib.py", "2")?;
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
            "too few samples in compress_loop: {}",
            summary(&stacks)
        );
        ensure!(
            good * 100 >= total * 50,
            "{good} of {total} compress_loop samples show deflate under it: {}",
            summary(&stacks)
        );
        Ok(())
    });
}

#[test]
fn unwinding_reaches_the_root_without_frame_pointers() {
    for_each_interpreter(
        "unwinding_reaches_the_root_without_frame_pointers",
        |interp| {
            let stacks = record_native(interp, "busy.py", "2")?;
            let rooted = |s: &RawStack| {
                s.root().is_some_and(|r| {
                    [
                        "_start (",
                        "main (",
                        "start_thread (",
                        "clone3 (",
                        "__clone3 (",
                    ]
                    .iter()
                    .any(|p| r.starts_with(p))
                })
            };
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
        let out = pyspy(&["dump", "--native", "--pid", &pid])?.ok()?;
        ensure!(
            out.stdout.contains("sort_with_qsort ("),
            "{}",
            out.describe()
        );
        ensure!(
            out.stdout.lines().any(|l| l.contains("(libc")),
            "no libc frame: {}",
            out.describe()
        );
        Ok(())
    });
}
