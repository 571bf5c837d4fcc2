//! `pyspy-bpf record`: sample until the program exits, the duration ends or Ctrl-C, then
//! write the profile. Samples come from the BPF sampler (every CPU; `--all`) or from the
//! user-space sampler (one process tree), chosen by `--mode`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::mode;
#[cfg(target_os = "linux")]
use super::mode::Chosen;
use super::output_file::Output;
use super::signals;
#[cfg(target_os = "linux")]
use super::stack_size::{self, Copier};
use super::target::{self, child_alive, finish_child, StartedChild, Target};
use super::RecordArgs;
#[cfg(target_os = "linux")]
use crate::bpf::BpfSampler;
use crate::frames::{identity_frames_with, sample_labels, FrameOptions};
#[cfg(target_os = "linux")]
use crate::native::NativeReader;
use crate::output;
use crate::process::lineage::Lineage;
use crate::process::pause::Paused;
use crate::process::proc;
use crate::profile::{unix_ns, Profile, ProfileMeta};
use crate::python::{PythonProcess, StackOptions};
#[cfg(target_os = "linux")]
use crate::sampler::bpf::{self as bpf_source, BpfSourceConfig, Scope};
use crate::sampler::stats::Stats;
use crate::sampler::{EndReason, SamplerConfig, UserspaceSampler};

/// Exit status when the process given by `--pid` exited before the recording was done.
const EXIT_TARGET_GONE: i32 = 2;

pub fn run(mut args: RecordArgs) -> anyhow::Result<i32> {
    args.format = output_format(args.format_flag, args.output.as_deref());
    // Off Linux only the user-space sampler exists: BPF-only options fail before anything
    // starts.
    mode::refuse_off_linux(&[
        ("--all", args.target.all),
        ("--mode bpf", args.mode == mode::ModeArg::Bpf),
        ("--native", args.native),
        ("--python-only", args.python_only),
        ("--event", !mode::is_default_event(&args.event)),
    ])?;
    // Checked before anything starts: a bad size must not leave a started program behind.
    #[cfg(target_os = "linux")]
    let native_stack = match args.native {
        true => Some(stack_size::bytes_for(
            args.native_stack_size,
            native_copier(&args),
        )?),
        false => None,
    };
    // Where the profile goes, claimed before anything starts: a place that cannot be written
    // fails now, not once the recording is done (and before a `-- cmd` is started).
    let output = Output::claim(args.output.as_deref(), &args.target, args.format)?;
    let stats_out = args
        .stats_json
        .as_deref()
        .map(Output::explicit)
        .transpose()?;
    let stop = signals::stop_flag()?;
    // Attach first, whatever the sampler: a pid that is not Python is an error either way.
    let (process, mut child) = match args.target.all {
        true => (None, None),
        false => {
            let Target { process, child } = target::resolve(&args.target)?;
            (Some(process), child)
        }
    };
    #[cfg(not(target_os = "linux"))]
    let result = match process {
        Some(process) => record_userspace(&args, process, &mut child, &stop, output, stats_out),
        None => anyhow::bail!("--all needs Linux (the BPF sampler)"),
    };
    #[cfg(target_os = "linux")]
    let result = record_chosen(
        &args,
        process,
        native_stack,
        &mut child,
        &stop,
        output,
        stats_out,
    );
    // `record -- CMD` ends with the program's own status, as a CI step that profiles a failing
    // test run must fail; a program we stopped (duration, Ctrl-C) does not count.
    let program_status = child.as_mut().and_then(StartedChild::exit_code);
    finish_child(&mut child);
    match (result, program_status) {
        (Ok(0), Some(code)) if code != 0 => {
            eprintln!("pyspy-bpf: the program exited with status {code}");
            Ok(code)
        }
        (result, _) => result,
    }
}

/// Linux: record with the sampler `--mode` picks (BPF, or user space).
#[cfg(target_os = "linux")]
fn record_chosen(
    args: &RecordArgs,
    process: Option<PythonProcess>,
    native_stack: Option<usize>,
    child: &mut Option<StartedChild>,
    stop: &AtomicBool,
    output: Output,
    stats_out: Option<Output>,
) -> anyhow::Result<i32> {
    let root = process.as_ref().map(|p| p.pid);
    let bpf_config = BpfSourceConfig {
        rate_hz: args.rate,
        event: args.event,
        scope: match root {
            None => Scope::All,
            Some(pid) if args.subprocesses => Scope::Tree(pid),
            Some(pid) => Scope::Pid(pid),
        },
        // Wall-clock time with --all covers Python processes: the time others spend off the CPU
        // is not recorded, so their share would be only their CPU time.
        python_only: args.python_only || (args.idle && root.is_none()),
        gil_only: args.gil,
        // (The CPUs' idle task is no thread's time.)
        include_idle: false,
        kernel_stacks: true,
        // pprof and chrometrace carry thread names whatever the presentation.
        thread_names: args.threads
            || matches!(
                args.format,
                crate::output::Format::Pprof | crate::output::Format::Chrometrace
            ),
        native: native_stack,
        off_cpu_min_ns: args.idle.then_some(args.offcpu_min),
    };
    let args = &args;
    // `--native` runs in both samplers, and in both the native and Python parts of a stack are
    // from one instant (BPF walks the Python frames at the sample; user space pauses the
    // thread); `auto` prefers BPF, which does not pause the target.
    let userspace_only = if args.async_tasks {
        Some("--async")
    } else if args.blocking {
        Some("--blocking")
    } else if args.native && native_copier(args) == Copier::Userspace {
        Some("--native-stack-size above what a BPF sample holds")
    } else {
        None
    };
    let chosen = mode::choose(args.mode, args.target.all, userspace_only, &bpf_config);
    chosen.and_then(|chosen| match (chosen, process) {
        (Chosen::Bpf(sampler), process) => record_bpf(
            args,
            sampler,
            &bpf_config,
            process.as_ref(),
            child,
            stop,
            output,
            stats_out,
        ),
        (Chosen::Userspace, Some(process)) => {
            // `auto` may have fallen back from BPF: the user-space default then, not BPF's.
            let native_stack = match args.native {
                true => Some(stack_size::bytes_for(
                    args.native_stack_size,
                    Copier::Userspace,
                )?),
                false => None,
            };
            let native = native_stack.map(NativeReader::new);
            record_userspace(args, process, native, child, stop, output, stats_out)
        }
        (Chosen::Userspace, None) => anyhow::bail!("--all needs the BPF sampler"),
    })
}

/// `-f`, else the format `-o`'s name implies, else a flamegraph (said when `-o` names a file
/// whose extension names no format).
fn output_format(flag: Option<output::Format>, output: Option<&std::path::Path>) -> output::Format {
    if let Some(format) = flag {
        return format;
    }
    let Some(path) = output else {
        return output::Format::Flamegraph;
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output::Format::from_file_name(&name).unwrap_or_else(|| {
        eprintln!(
            "pyspy-bpf: writing a flamegraph (SVG) to {}: its extension names no format (-f flamegraph|speedscope|raw|pprof|chrometrace)",
            path.display()
        );
        output::Format::Flamegraph
    })
}

/// Which sampler copies the stacks for `--native` (as `mode::choose` will pick it): BPF with
/// `--all`, `--mode bpf`, or `auto` unless an option needs user space (`--blocking`, a stack
/// copy larger than a BPF sample holds). If `auto` then cannot start
/// BPF, the user-space sampler checks the size again with its own bounds.
#[cfg(target_os = "linux")]
fn native_copier(args: &RecordArgs) -> Copier {
    let too_big_for_bpf = args
        .native_stack_size
        .is_some_and(|s| s.0 > crate::bpf::MAX_USER_STACK_COPY as u64);
    match args.mode {
        _ if args.target.all => Copier::Bpf,
        mode::ModeArg::Bpf => Copier::Bpf,
        mode::ModeArg::Userspace => Copier::Userspace,
        mode::ModeArg::Auto if args.blocking || too_big_for_bpf => Copier::Userspace,
        mode::ModeArg::Auto => Copier::Bpf,
    }
}

/// `native`: with `--native` (Linux), the reader that unwinds each thread's native stack.
fn record_userspace(
    args: &RecordArgs,
    process: PythonProcess,
    #[cfg(target_os = "linux")] native: Option<NativeReader>,
    child: &mut Option<StartedChild>,
    stop: &AtomicBool,
    output: Output,
    stats_out: Option<Output>,
) -> anyhow::Result<i32> {
    let hide_interpreter = hide_interpreter_frames(args);
    let pid = process.pid;
    if args.async_tasks && !process.has_asyncio_offsets() {
        anyhow::bail!(
            "--async: Python {} has no asyncio debug offsets (they are new in Python 3.14): asyncio task stacks need Python 3.14 or newer",
            process.version()
        );
    }
    if args.blocking || args.native {
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
        async_tasks: args.async_tasks,
    };
    eprintln!(
        "pyspy-bpf: sampling process {pid} (Python {}) at {} Hz in user space{}; Ctrl-C to stop",
        process.version(),
        args.rate,
        if args.async_tasks {
            ", recording its asyncio tasks"
        } else if args.native {
            ", pausing it for each sample to unwind native stacks"
        } else if args.blocking {
            ", pausing it for each sample"
        } else {
            ""
        }
    );
    let title = process.cmdline.join(" ");
    let mut profile = Profile::with_meta(ProfileMeta::cpu(format!("pyspy-bpf {title}"), args.rate));
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut lineage = args.subprocesses.then(|| Lineage::new(pid));
    let live = std::io::stderr().is_terminal() && !args.hideprogress;
    #[allow(unused_mut)] // only Linux adds a native reader
    let mut sampler = UserspaceSampler::new(config, process);
    #[cfg(target_os = "linux")]
    if let Some(native) = native {
        sampler = sampler.with_native(native);
    }
    let summary = sampler.run(
        args.duration.map(Duration::from_secs_f64),
        stop,
        || child_alive(child),
        |stacks| {
            let now = Some(unix_ns(std::time::SystemTime::now()));
            for stack in stacks {
                let name = names.entry(stack.pid).or_insert_with(|| {
                    if let Some(lineage) = lineage.as_mut() {
                        lineage.observe(stack.pid);
                    }
                    proc::comm(stack.pid).unwrap_or_else(|_| "?".into())
                });
                let labels = sample_labels(stack, name);
                profile.add_sample(
                    &identity_frames_with(stack, hide_interpreter),
                    &labels,
                    now,
                    1,
                    1,
                );
            }
        },
        |s| {
            if live {
                eprint!(
                    "\r{} samples, {} errors, {:.1}s   ",
                    s.samples,
                    s.errors,
                    s.elapsed.as_secs_f64()
                );
            }
        },
    );
    if live {
        eprintln!();
    }
    profile.meta.duration_secs = summary.elapsed.as_secs_f64();
    profile.meta.errors = summary.errors;
    profile.meta.processes = lineage.map(Lineage::into_nodes).unwrap_or_default();
    write_profile(args, &profile, frame_options(args), output)?;
    #[cfg(target_os = "linux")]
    let native_stats = sampler.native_stats();
    #[cfg(not(target_os = "linux"))]
    let native_stats = None;
    let stats = Stats::userspace(&summary, native_stats);
    write_stats(stats_out, &stats)?;
    print_summary(&stats, args.subprocesses);
    let untranslated = sampler.root().untranslated_tids();
    if untranslated > 0 {
        eprintln!(
            "pyspy-bpf: warning: {untranslated} thread states held a thread id that is no thread of process {pid} in its PID namespace; those threads were recorded without a tid"
        );
    }
    if profile.total_samples() == 0 && summary.ticks > 0 {
        eprintln!(
            "pyspy-bpf: warning: no samples in {} reads of process {pid}: {}",
            summary.ticks,
            if args.async_tasks {
                "it had no asyncio tasks at any read (or had not imported asyncio)"
            } else if args.gil {
                "no Python thread held the GIL at any read (the program sleeps or waits in C code that released it); without --gil every running thread is recorded"
            } else if args.idle {
                "no Python thread could be read (RUST_LOG=debug says why)"
            } else {
                "none of its Python threads was running on a CPU at any read (the program sleeps or waits); --idle records idle threads too"
            }
        );
    }
    Ok(exit_status(
        args,
        summary.ended == EndReason::TargetExited,
        pid,
    ))
}

#[cfg(target_os = "linux")]
fn record_bpf(
    args: &RecordArgs,
    sampler: BpfSampler,
    config: &BpfSourceConfig,
    process: Option<&PythonProcess>,
    child: &mut Option<StartedChild>,
    stop: &AtomicBool,
    output: Output,
    stats_out: Option<Output>,
) -> anyhow::Result<i32> {
    let hide_interpreter = hide_interpreter_frames(args);
    let what = match process {
        Some(p) => format!("process {} (Python {})", p.pid, p.version()),
        None => "every process".to_string(),
    };
    let wall = config.off_cpu_min_ns.is_some();
    eprintln!(
        "pyspy-bpf: sampling {what} on {} CPUs at {} Hz with BPF ({} event){}; Ctrl-C to stop",
        sampler.cpus().len(),
        args.rate,
        args.event,
        match config.off_cpu_min_ns {
            Some(ns) => format!(
                ", and threads off the CPU for {} µs or more (wall-clock time{})",
                ns / 1000,
                if process.is_none() {
                    " of Python processes"
                } else {
                    ""
                }
            ),
            None => String::new(),
        }
    );
    let mut frame_opts = frame_options(args);
    frame_opts.processes |= args.target.all;
    let title = match process {
        Some(p) => p.cmdline.join(" "),
        None => "--all".to_string(),
    };
    let title = format!("pyspy-bpf {title}");
    let mut profile = Profile::with_meta(match wall {
        true => ProfileMeta::wall(title, args.rate),
        false => ProfileMeta::cpu(title, args.rate),
    });
    let period_ns = profile.meta.period_ns;
    let mut lineage = match process {
        Some(p) if args.subprocesses => Some(Lineage::new(p.pid)),
        _ => None,
    };
    let live = std::io::stderr().is_terminal() && !args.hideprogress;
    let summary = bpf_source::run(
        sampler,
        config,
        args.duration.map(Duration::from_secs_f64),
        stop,
        || child_alive(child) && process.is_none_or(|p| p.is_same_process()),
        |stack, process| {
            if let Some(lineage) = lineage.as_mut() {
                lineage.observe(stack.pid);
            }
            let labels = sample_labels(stack, process.name);
            let now = Some(unix_ns(std::time::SystemTime::now()));
            // Wall-clock: nanoseconds, a running thread's sample standing for one period.
            let weight = match (wall, process.off_cpu_ns) {
                (false, _) => 1,
                (true, 0) => period_ns,
                (true, away) => away,
            };
            profile.add_sample(
                &identity_frames_with(stack, hide_interpreter),
                &labels,
                now,
                1,
                weight,
            )
        },
        |s| {
            if live {
                let lost: u64 = s.lost.iter().map(|(_, n)| n).sum();
                eprint!(
                    "\r{} samples, {} processes, {} lost, {} errors, {:.1}s   ",
                    s.samples,
                    s.processes,
                    lost,
                    s.python_errors,
                    s.elapsed.as_secs_f64()
                );
            }
        },
    )?;
    if live {
        eprintln!();
    }
    profile.meta.duration_secs = summary.elapsed.as_secs_f64();
    profile.meta.errors = summary.python_errors + summary.lost.iter().map(|(_, n)| n).sum::<u64>();
    profile.meta.processes = lineage.map(Lineage::into_nodes).unwrap_or_default();
    write_profile(args, &profile, frame_opts, output)?;
    let stats = Stats::bpf(&summary, args.native);
    write_stats(stats_out, &stats)?;
    print_summary(&stats, true);
    let pid = process.map(|p| p.pid).unwrap_or(0);
    Ok(exit_status(args, summary.target_exited, pid))
}

/// `--native` without `--native-all`: the interpreter's own C frames are left out of stacks
/// that have Python frames (`native::interpreter_frames`).
fn hide_interpreter_frames(args: &RecordArgs) -> bool {
    args.native && !args.native_all
}

fn frame_options(args: &RecordArgs) -> FrameOptions {
    FrameOptions {
        no_line_numbers: args.nolineno,
        function_lines: args.function,
        full_filenames: args.full_filenames,
        threads: args.threads,
        processes: args.subprocesses,
    }
}

fn write_profile(
    args: &RecordArgs,
    profile: &Profile,
    view: FrameOptions,
    destination: Output,
) -> anyhow::Result<()> {
    let path = destination.path().to_path_buf();
    destination.write(|out| output::write(args.format, profile, view, out))?;
    eprintln!("pyspy-bpf: wrote {} ({})", path.display(), args.format);
    Ok(())
}

/// The end-of-run summary on stderr: the counters `--stats-json` writes, as text.
fn print_summary(stats: &Stats, show_processes: bool) {
    for line in stats.summary_lines(show_processes) {
        eprintln!("pyspy-bpf: {line}");
    }
}

/// `--stats-json FILE`: the run's counters.
fn write_stats(destination: Option<Output>, stats: &Stats) -> anyhow::Result<()> {
    let Some(destination) = destination else {
        return Ok(());
    };
    destination.write(|out| {
        serde_json::to_writer_pretty(&mut *out, stats)?;
        Ok(out.write_all(b"\n")?)
    })
}

/// 0, or `EXIT_TARGET_GONE` when the process given by `--pid` exited during the recording
/// (a program we started ending is the normal way for a recording to end).
fn exit_status(args: &RecordArgs, target_exited: bool, pid: u32) -> i32 {
    if target_exited && args.target.pid.is_some() {
        eprintln!("pyspy-bpf: process {pid} exited during the recording; the profile holds what was collected before");
        EXIT_TARGET_GONE
    } else {
        0
    }
}
