//! `pyspy-bpf record`: sample until the program exits, the duration ends or Ctrl-C, then
//! write the profile. Samples come from the BPF sampler (every CPU; `--all`) or from the
//! user-space sampler (one process tree), chosen by `--mode`.

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
use super::target::{self, child_alive, finish_child, ExitedFirst, StartedChild, Target};
use super::RecordArgs;
#[cfg(target_os = "linux")]
use crate::bpf::BpfSampler;
use crate::frames::{identity_frames_with, sample_labels, FrameOptions};
#[cfg(target_os = "linux")]
use crate::native::NativeReader;
use crate::output;
use crate::process::lineage::Lineage;
use crate::process::pause::Paused;
use crate::profile::{Profile, ProfileMeta};
use crate::python::{PythonProcess, StackOptions};
#[cfg(target_os = "linux")]
use crate::sampler::bpf::{BpfSourceConfig, Scope};
#[cfg(target_os = "linux")]
use crate::sampler::source::BpfSource;
use crate::sampler::source::{RunResult, Source, UserspaceSource};
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
            let Target { process, child } = match target::resolve(&args.target) {
                Ok(target) => target,
                // Nothing to sample: the program's own status stands, as it would have had
                // it run to its end under the profiler.
                Err(e) => match e.downcast_ref::<ExitedFirst>() {
                    Some(early) => {
                        eprintln!("pyspy-bpf: warning: {early}: nothing was recorded");
                        return Ok(early.exit_code());
                    }
                    None => return Err(e),
                },
            };
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
        locals: None,
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
    let title = format!("pyspy-bpf {}", process.cmdline.join(" "));
    #[allow(unused_mut)] // only Linux adds a native reader
    let mut sampler = UserspaceSampler::new(config, process);
    #[cfg(target_os = "linux")]
    if let Some(native) = native {
        sampler = sampler.with_native(native);
    }
    let mut source = UserspaceSource::new(sampler);
    let recorded = record_source(
        args,
        &mut source,
        Recording {
            title,
            view: frame_options(args),
            lineage_root: args.subprocesses.then_some(pid),
            show_processes: args.subprocesses,
        },
        &mut || child_alive(child),
        stop,
        output,
        stats_out,
    )?;
    let untranslated = source.sampler.root().untranslated_tids();
    if untranslated > 0 {
        eprintln!(
            "pyspy-bpf: warning: {untranslated} thread states held a thread id that is no thread of process {pid} in its PID namespace; those threads were recorded without a tid"
        );
    }
    let ticks = source.summary.as_ref().map_or(0, |s| s.ticks);
    if recorded.samples == 0 && ticks > 0 {
        eprintln!(
            "pyspy-bpf: warning: no samples in {ticks} reads of process {pid}: {}",
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
        recorded.result.end.reason == EndReason::TargetExited,
        pid,
    ))
}

#[cfg(target_os = "linux")]
#[allow(clippy::too_many_arguments)]
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
    let what = match process {
        Some(p) => format!("process {} (Python {})", p.pid, p.version()),
        None => "every process".to_string(),
    };
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
    let mut view = frame_options(args);
    view.processes |= args.target.all;
    let title = match process {
        Some(p) => p.cmdline.join(" "),
        None => "--all".to_string(),
    };
    let mut source = BpfSource::new(sampler, config.clone());
    let recorded = record_source(
        args,
        &mut source,
        Recording {
            title: format!("pyspy-bpf {title}"),
            view,
            lineage_root: process.filter(|_| args.subprocesses).map(|p| p.pid),
            show_processes: true,
        },
        &mut || child_alive(child) && process.is_none_or(|p| p.is_same_process()),
        stop,
        output,
        stats_out,
    )?;
    let pid = process.map(|p| p.pid).unwrap_or(0);
    Ok(exit_status(
        args,
        recorded.result.end.reason == EndReason::TargetExited,
        pid,
    ))
}

/// What a recording is, beside its source.
struct Recording {
    title: String,
    /// How the profile is written.
    view: FrameOptions,
    /// `--subprocesses`: the process whose descendants are shown under their parents.
    lineage_root: Option<u32>,
    /// The processes line of the summary.
    show_processes: bool,
}

struct Recorded {
    result: RunResult,
    /// Samples in the profile.
    samples: u64,
}

/// The one recording path: samples of any source into a profile (each at its own time and,
/// in wall-clock mode, weighted by the time it stands for), written with the run's counters.
#[allow(clippy::too_many_arguments)]
fn record_source(
    args: &RecordArgs,
    source: &mut dyn Source,
    recording: Recording,
    target_alive: &mut dyn FnMut() -> bool,
    stop: &AtomicBool,
    output: Output,
    stats_out: Option<Output>,
) -> anyhow::Result<Recorded> {
    let hide_interpreter = hide_interpreter_frames(args);
    let wall = source.wall_clock();
    let mut profile = Profile::with_meta(match wall {
        true => ProfileMeta::wall(recording.title, args.rate),
        false => ProfileMeta::cpu(recording.title, args.rate),
    });
    let period_ns = profile.meta.period_ns;
    let mut lineage = recording.lineage_root.map(Lineage::new);
    let live = std::io::stderr().is_terminal() && !args.hideprogress;
    let result = source.run(
        args.duration.map(Duration::from_secs_f64),
        stop,
        target_alive,
        &mut |sample| {
            if let Some(lineage) = lineage.as_mut() {
                lineage.observe(sample.stack.pid);
            }
            let labels = sample_labels(sample.stack, sample.process.name);
            // Wall-clock: nanoseconds, a running thread's sample standing for one period.
            let weight = match wall {
                true => sample.wall_ns(period_ns),
                false => 1,
            };
            profile.add_sample(
                &identity_frames_with(sample.stack, hide_interpreter),
                &labels,
                Some(sample.time_unix_ns),
                1,
                weight,
            )
        },
        &mut |p| {
            if live {
                eprint!(
                    "\r{} samples, {} processes, {} lost, {} errors, {:.1}s   ",
                    p.samples,
                    p.processes,
                    p.lost,
                    p.errors,
                    p.elapsed.as_secs_f64()
                );
            }
        },
    )?;
    if live {
        eprintln!();
    }
    let stats = &result.stats;
    profile.meta.duration_secs = result.end.elapsed.as_secs_f64();
    profile.meta.errors = stats.python_errors
        + stats
            .counters
            .iter()
            .filter(|(name, _)| name.starts_with("lost."))
            .map(|(_, n)| n)
            .sum::<u64>();
    profile.meta.processes = lineage.map(Lineage::into_nodes).unwrap_or_default();
    write_profile(args, &profile, recording.view, output)?;
    write_stats(stats_out, stats)?;
    print_summary(stats, recording.show_processes);
    Ok(Recorded {
        samples: profile.total_samples(),
        result,
    })
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
