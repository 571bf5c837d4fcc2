//! Ctrl-C (SIGINT) during `record` ends the recording and writes the profile collected so
//! far, in both samplers.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::*;

fn interrupt_after(args: &[&str], after: Duration) -> Result<(std::process::ExitStatus, String)> {
    let mut child = pyspy_bpf()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(after);
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        ensure!(Instant::now() < deadline, "record did not end after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn ctrl_c_writes_the_profile_collected_so_far() {
    let leaf = format!("level_b (busy.py:{})", line_of("busy.py", "busy"));
    for_each_interpreter("ctrl_c", |interp| {
        let target = interp.start("busy.py", &[])?;
        target.wait_ready()?;
        let pid = target.pid().to_string();
        let dir = TempDir::new("ctrl-c");
        let modes: &[&str] = if is_root() {
            &["userspace", "bpf"]
        } else {
            &["userspace"]
        };
        for mode in modes {
            let out = dir.join(&format!("{mode}.txt"));
            let out_s = out.display().to_string();
            let args = [
                "record", "--mode", mode, "-f", "raw", "-d", "60", "-o", &out_s, "--pid", &pid,
            ];
            let (status, stderr) = interrupt_after(&args, Duration::from_millis(1500))?;
            ensure!(
                status.success(),
                "{mode}: exit {status} after Ctrl-C:\n{stderr}"
            );
            ensure!(!stderr.contains("panicked"), "{mode}: panicked:\n{stderr}");
            let stacks =
                read_raw(&out).with_context(|| format!("{mode}: no profile:\n{stderr}"))?;
            let at_leaf: u64 = stacks
                .iter()
                .filter(|s| s.leaf() == Some(leaf.as_str()))
                .map(|s| s.count)
                .sum();
            ensure!(
                at_leaf >= 3,
                "{mode}: {at_leaf} samples in {leaf}:\n{}",
                summary(&stacks)
            );
        }
        Ok(())
    });
}
