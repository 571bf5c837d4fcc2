//! The command line: clap definitions and dispatch to `record` and `dump`.

/// `eprintln!`/`eprint!` for every verb, ignoring write errors: after SIGHUP the terminal may
/// be gone (writes fail with EIO), and `std`'s versions would panic there, before the profile
/// collected so far is written. (Defined before the modules, so it shadows `std`'s in them.)
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

mod agent;
mod convert;
mod diff;
mod dump;
mod dump_async;
mod mode;
mod numbers;
mod output_file;
mod record;
mod signals;
mod stack_size;
mod target;
mod top;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

#[derive(Debug, Parser)]
#[command(
    name = "pyspy-bpf",
    version,
    about = "Sampling profiler for Python programs (eBPF-assisted on Linux, py-spy compatible command line)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record samples into a flamegraph, speedscope profile or collapsed stacks.
    Record(RecordArgs),
    /// Print the current stack of every thread of a running Python process.
    Dump(DumpArgs),
    /// Live, top-like view of the functions using the most CPU.
    Top(TopArgs),
    /// Compare two profiles (or directories of repeated runs) per function: exit 1 on a
    /// regression bigger than sampling noise and the threshold, 3 when the samples cannot tell.
    Diff(DiffArgs),
    /// Write a recorded profile (pprof or collapsed stacks) in another format.
    Convert(ConvertArgs),
    /// Profile the whole host continuously and ship labelled profiles to Pyroscope, an
    /// OpenTelemetry Collector or a spool directory, every interval, until SIGTERM (Linux).
    Agent(AgentArgs),
    /// Print a shell completion script: `pyspy-bpf completions bash > /etc/bash_completion.d/pyspy-bpf`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML config file (see packaging/agent.toml); the flags below add to it or override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Samples per second per CPU [default: 19].
    #[arg(short, long)]
    pub rate: Option<u32>,
    /// Window length: a profile per process is exported every interval (15s, 1m) [default: 15s].
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,
    /// Perf event that triggers samples (cpu-clock, cycles, or TYPE:CONFIG) [default: cpu-clock].
    #[arg(long)]
    pub event: Option<String>,
    /// Mixed native and Python stacks.
    #[arg(short, long)]
    pub native: bool,
    /// Profile every process, not only Python ones.
    #[arg(long)]
    pub all_processes: bool,
    /// One profile per process (default) or per service.
    #[arg(long, value_enum)]
    pub group_by: Option<agent::GroupBy>,
    /// A label on every profile, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Where undelivered windows wait (STATE_DIR/backlog/SINK) [default: /var/lib/pyspy-bpf].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Write gzipped pprof files to this directory (capped at 1 GiB; set max_size in the config).
    #[arg(long, value_name = "DIR")]
    pub spool: Option<std::path::PathBuf>,
    /// Send to the Pyroscope server at this URL (POST URL/ingest).
    #[arg(long, value_name = "URL")]
    pub pyroscope: Option<String>,
    /// Send OTLP/HTTP profiles to this collector URL (POST URL/v1development/profiles).
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The profile to read: pprof (gzipped or not) or collapsed stacks, told from its content.
    pub input: std::path::PathBuf,
    /// Output format.
    #[arg(short, long, default_value = "flamegraph")]
    pub format: Format,
    /// Output file.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
    /// Aggregate by function, without line numbers.
    #[arg(long)]
    pub nolineno: bool,
    /// Show the first line of each function instead of the current line.
    #[arg(short = 'F', long)]
    pub function: bool,
    /// Show full file paths.
    #[arg(long)]
    pub full_filenames: bool,
    /// A root frame per thread (from the profile's thread labels).
    #[arg(short, long)]
    pub threads: bool,
    /// A root frame per process (from the profile's pid labels).
    #[arg(long)]
    pub processes: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The base profile (pprof or collapsed), or a directory of runs of the same job.
    pub base: std::path::PathBuf,
    /// The profile to check against it, or a directory of runs.
    pub head: std::path::PathBuf,
    /// Compare lines, not functions.
    #[arg(long)]
    pub lines: bool,
    /// Only Python frames count.
    #[arg(long)]
    pub python_only: bool,
    /// Only samples with a frame matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub focus: Option<String>,
    /// Minimum slowdown that counts, in percent of the function's own time relative to the
    /// rest of the program.
    #[arg(long, default_value_t = 5.0, value_parser = numbers::percent)]
    pub threshold: f64,
    /// Minimum change of a function's share that counts, in percentage points.
    #[arg(long, default_value_t = 0.5, value_parser = numbers::percent)]
    pub min_change: f64,
    /// Family-wise false-alarm rate (after correcting for the number of functions).
    #[arg(long, default_value_t = 0.05, value_parser = numbers::probability)]
    pub alpha: f64,
    /// Gate on total (inclusive) shares instead of self shares.
    #[arg(long)]
    pub total: bool,
    /// Fewer samples than this on a side is inconclusive.
    #[arg(long, default_value_t = 200)]
    pub min_samples: u64,
    /// Compare profiles of different kinds or rates anyway.
    #[arg(long)]
    pub force: bool,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write a Markdown report (for a pull-request comment) to FILE.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<std::path::PathBuf>,
    /// Also write a differential flame graph of HEAD (red grew, blue shrank) to FILE.
    #[arg(long, value_name = "FILE")]
    pub flamegraph: Option<std::path::PathBuf>,
    /// Unchanged functions shown in the table.
    #[arg(long, default_value_t = 15)]
    pub limit: usize,
}

/// What to profile: a running process or a command to start.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// PID of a running Python process.
    #[arg(short, long, conflicts_with = "command", value_parser = numbers::pid)]
    pub pid: Option<u32>,
    /// Every process on the machine (Linux: needs the BPF sampler, root or CAP_BPF + CAP_PERFMON).
    #[arg(short, long, conflicts_with_all = ["pid", "command"])]
    pub all: bool,
    /// Program to start and profile: `python3 app.py --flag`, or after `--` (everything from
    /// the program's name on is its own command line).
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Output file (default: a new NAME-PID-TIME.svg/.json/.txt in the current directory).
    #[arg(short, long)]
    pub output: Option<std::path::PathBuf>,
    /// Output format [default: from the -o file's extension (.svg, .json, .txt, .pb.gz,
    /// .trace.json), else flamegraph].
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    pub format_flag: Option<Format>,
    /// The format chosen (`-f`, else from `-o`'s extension), set by `RecordArgs::resolve`.
    #[arg(skip)]
    pub format: Format,
    /// Samples per second.
    #[arg(short, long, default_value_t = 100, value_parser = numbers::rate)]
    pub rate: u32,
    /// Seconds to record (default: until the program exits or Ctrl-C).
    #[arg(short, long, value_parser = numbers::duration)]
    pub duration: Option<f64>,
    /// Include idle threads (not running on a CPU). In BPF mode (and with --all): a
    /// wall-clock profile, time on and off the CPU in nanoseconds.
    #[arg(short, long)]
    pub idle: bool,
    /// With --idle in BPF mode: stretches a thread spends off the CPU shorter than this are
    /// not recorded, e.g. 500us, 1ms, 0.2s (a bare number is milliseconds).
    #[arg(long, value_name = "DURATION", default_value = "1ms", value_parser = numbers::off_cpu_min)]
    pub offcpu_min: u64,
    /// Only record the thread holding the GIL.
    #[arg(short, long)]
    pub gil: bool,
    /// Do not show the live count of samples on stderr.
    #[arg(long)]
    pub hideprogress: bool,
    /// A root frame per thread.
    #[arg(short, long)]
    pub threads: bool,
    /// Also profile the target's child processes, each shown under its parent as
    /// `process PID:"COMMAND LINE"` (as py-spy does).
    #[arg(short, long)]
    pub subprocesses: bool,
    /// Aggregate by function, without line numbers.
    #[arg(long)]
    pub nolineno: bool,
    /// Show the first line of each function instead of the current line.
    #[arg(short = 'F', long)]
    pub function: bool,
    /// Show full file paths.
    #[arg(long)]
    pub full_filenames: bool,
    /// Read without pausing the target (the default; kept for py-spy compatibility).
    #[arg(long, conflicts_with = "blocking")]
    pub nonblocking: bool,
    /// Pause the target during each read for a consistent snapshot (it is always resumed).
    #[arg(long)]
    pub blocking: bool,
    /// Sampler: `bpf` (perf events on every CPU; Linux), `userspace` (a timer reading one
    /// process tree), or `auto` (BPF when available; user space off Linux).
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: mode::ModeArg,
    /// Perf event that triggers BPF samples (Linux): cpu-clock (software, works everywhere),
    /// cycles (needs a hardware PMU), or TYPE:CONFIG.
    #[arg(long, default_value = mode::DEFAULT_EVENT)]
    pub event: mode::EventArg,
    /// Drop samples of processes that are not Python (BPF mode; Linux).
    #[arg(long)]
    pub python_only: bool,
    /// Mixed native + Python stacks (Linux only): C extensions, libc and the interpreter's own
    /// C frames in their true place (unwound with .eh_frame; BPF mode walks the Python frames
    /// in the same sample, user-space mode pauses the target).
    #[arg(short, long)]
    pub native: bool,
    /// With --native: bytes of each thread's stack copied for unwinding, e.g. 64K or 1M
    /// (default 60K in BPF mode, the most it holds; 256K in user space).
    #[arg(long, value_name = "SIZE", requires = "native", value_parser = stack_size::parse)]
    pub native_stack_size: Option<stack_size::StackSize>,
    /// With --native: keep the interpreter's own C frames (_PyEval_*, PyObject_Call*,
    /// python3.11+0x... addresses), which are hidden by default in stacks with Python frames.
    #[arg(long, requires = "native")]
    pub native_all: bool,
    /// Also write the run's counters (samples, errors by name, processes, lost samples) as
    /// JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<std::path::PathBuf>,
    /// Record asyncio tasks instead of threads (Python 3.14+): each task's coroutine chain
    /// under the tasks awaiting it, with `<task NAME>` frames (user-space sampler).
    #[arg(long = "async", conflicts_with_all = ["native", "gil", "blocking", "all"])]
    pub async_tasks: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// PID of a running Python process.
    #[arg(short, long, value_parser = numbers::pid)]
    pub pid: u32,
    /// Print JSON instead of text (py-spy's schema: an array of threads).
    #[arg(short, long)]
    pub json: bool,
    /// Pause the target while reading it.
    #[arg(long)]
    pub blocking: bool,
    /// Read without pausing the target (the default; kept for py-spy compatibility).
    #[arg(long, conflicts_with = "blocking")]
    pub nonblocking: bool,
    /// Show full file paths.
    #[arg(long)]
    pub full_filenames: bool,
    /// Also dump the target's child processes.
    #[arg(short, long)]
    pub subprocesses: bool,
    /// Show each frame's local variables (`-ll`: longer strings and ints, and the first items
    /// of small containers).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub locals: u8,
    /// Mixed native + Python stacks (Linux only; unwound with .eh_frame; pauses the target).
    #[arg(short, long, conflicts_with = "locals")]
    pub native: bool,
    /// With --native: bytes of each thread's stack copied for unwinding, e.g. 64K or 1M
    /// (default 256K).
    #[arg(long, value_name = "SIZE", requires = "native", value_parser = stack_size::parse)]
    pub native_stack_size: Option<stack_size::StackSize>,
    /// Show asyncio tasks instead of threads: each task's name, coroutine chain and the
    /// tasks awaiting it (Python 3.14+).
    #[arg(long = "async", conflicts_with_all = ["native", "locals", "blocking"])]
    pub async_tasks: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Samples per second.
    #[arg(short, long, default_value_t = 100, value_parser = numbers::rate)]
    pub rate: u32,
    /// Include idle threads (not running on a CPU).
    #[arg(short, long)]
    pub idle: bool,
    /// Only sample the thread holding the GIL.
    #[arg(short, long)]
    pub gil: bool,
    /// Show full file paths.
    #[arg(long)]
    pub full_filenames: bool,
    /// Also sample the target's child processes (adds a PID column).
    #[arg(short, long)]
    pub subprocesses: bool,
    /// Read without pausing the target (the default; kept for py-spy compatibility).
    #[arg(long, conflicts_with = "blocking")]
    pub nonblocking: bool,
    /// Pause the target during each read for a consistent snapshot (it is always resumed).
    #[arg(long)]
    pub blocking: bool,
    /// Seconds between refreshes of the display.
    #[arg(long, default_value_t = 1.0, value_parser = numbers::delay)]
    pub delay: f64,
    /// Sampler for --pid / -- COMMAND: `bpf`, `userspace`, or `auto` (BPF when available; --all
    /// is always BPF; off Linux only user space).
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: mode::ModeArg,
    /// Include native (C) frames, merged with the Python ones (Linux only; pauses the target
    /// per sample).
    #[arg(short, long, conflicts_with = "all")]
    pub native: bool,
    /// With --native: bytes of each thread's stack copied for unwinding, e.g. 64K or 1M
    /// (default 256K).
    #[arg(long, value_name = "SIZE", requires = "native", value_parser = stack_size::parse)]
    pub native_stack_size: Option<stack_size::StackSize>,
}

/// Run the parsed command; the exit code to use on success.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Dump(args) => dump::run(args),
        Command::Top(args) => top::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "pyspy-bpf", &mut script);
            // A closed pipe (`completions bash | head`) is the reader's choice.
            use std::io::Write as _;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&script).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(0),
            }
        }
    }
}
