//! `pyspy-bpf record`: sample a process (tree) until it exits, the duration ends or Ctrl-C,
//! then write the profile.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{target, RecordArgs};
use crate::frames::{profile_frames, FrameOptions};
use crate::output;
use crate::process::pause::Paused;
use crate::process::proc;
use crate::profile::{Profile, ProfileMeta};
use crate::python::StackOptions;
use crate::sampler::{EndReason, SamplerConfig, UserspaceSampler};

/// Exit status when the process given by `--pid` exited before the recording was done.
const EXIT_TARGET_GONE: i32 = 2;

pub fn run(args: RecordArgs) -> anyhow::Result<i32> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("cannot install the Ctrl-C handler")?;
    }
    let mut target = target::resolve(&args.target)?;
    let pid = target.process.pid;
    if args.blocking {
        // Find out now, not at the first sample, whether we may pause the target.
        drop(Paused::pause(pid)?);
    }
    let config = SamplerConfig {
        rate_hz: args.rate,
        stacks: StackOptions {
            include_idle: args.idle,
            gil_only: args.gil,
        },
        subprocesses: args.subprocesses,
        blocking: args.blocking,
    };
    let frame_opts = FrameOptions {
        no_line_numbers: args.nolineno,
        function_lines: args.function,
        full_filenames: args.full_filenames,
        threads: args.threads,
        processes: args.subprocesses,
    };
    let output_path = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(pid, args.format));
    let duration = args.duration.map(Duration::from_secs_f64);
    let version = target.process.version();
    eprintln!(
        "pyspy-bpf: sampling process {pid} (Python {version}) at {} Hz{}; Ctrl-C to stop",
        args.rate,
        if args.blocking {
            ", pausing it for each sample"
        } else {
            ""
        }
    );

    let mut profile = Profile::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let live_status = std::io::stderr().is_terminal();
    let mut sampler = UserspaceSampler::new(config, target.process);
    let child = &mut target.child;
    let summary = sampler.run(
        duration,
        &stop,
        || match child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        },
        |stacks| {
            for stack in stacks {
                let name = names
                    .entry(stack.pid)
                    .or_insert_with(|| proc::comm(stack.pid).unwrap_or_else(|_| "?".into()));
                profile.add(&profile_frames(stack, name, frame_opts), 1);
            }
        },
        |s| {
            if live_status {
                eprint!(
                    "\r{} samples, {} errors, {:.1}s   ",
                    s.samples,
                    s.errors,
                    s.elapsed.as_secs_f64()
                );
            }
        },
    );
    if live_status {
        eprintln!();
    }
    if let Some(mut child) = target.child.take() {
        // The program outlived the recording (duration or Ctrl-C): stop it.
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    let meta = ProfileMeta {
        title: format!("pyspy-bpf {}", sampler.root().cmdline.join(" ")),
        rate_hz: args.rate,
        duration_secs: summary.elapsed.as_secs_f64(),
        errors: summary.errors,
    };
    let mut file = std::fs::File::create(&output_path)
        .with_context(|| format!("cannot create {}", output_path.display()))?;
    output::write(args.format, &profile, &meta, &mut file)
        .with_context(|| format!("writing {}", output_path.display()))?;
    file.flush()?;
    eprintln!(
        "pyspy-bpf: wrote {} ({} samples in {} reads, {} errors, {} late ticks, {:.1}s)",
        output_path.display(),
        profile.total_samples(),
        summary.ticks,
        summary.errors,
        summary.late,
        summary.elapsed.as_secs_f64()
    );
    if summary.ended == EndReason::TargetExited && args.target.pid.is_some() {
        eprintln!("pyspy-bpf: process {pid} exited during the recording; the profile holds what was collected before");
        return Ok(EXIT_TARGET_GONE);
    }
    Ok(0)
}

fn default_output(pid: u32, format: output::Format) -> PathBuf {
    let name = proc::comm(pid).unwrap_or_else(|_| "python".into());
    PathBuf::from(format!("{name}-{pid}.{}", format.extension()))
}
