//! `pyspy-bpf convert IN -f FORMAT -o OUT`: a recorded profile (pprof or collapsed stacks)
//! written in any output format, with the presentation options `record` has.

use super::output_file::Output;
use super::ConvertArgs;
use crate::frames::FrameOptions;
use crate::output;

pub fn run(args: ConvertArgs) -> anyhow::Result<i32> {
    // Claimed first: a destination that cannot be written fails before the input is read.
    let out = Output::explicit(&args.output)?;
    let profile = crate::input::read_profile(&args.input)?;
    let view = FrameOptions {
        no_line_numbers: args.nolineno,
        function_lines: args.function,
        full_filenames: args.full_filenames,
        threads: args.threads,
        processes: args.processes,
    };
    let path = out.path().to_path_buf();
    out.write(|w| output::write(args.format, &profile, view, w))?;
    eprintln!(
        "pyspy-bpf: wrote {} ({}, {} samples)",
        path.display(),
        args.format,
        profile.total_samples()
    );
    Ok(0)
}
