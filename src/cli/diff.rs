//! `pyspy-bpf diff BASE HEAD`: compare two profiles (or two directories of repeated runs) per
//! function and fail a CI step on a real regression. Exit status: 0 no significant
//! regression, 1 a regression, 2 bad input or usage, 3 inconclusive.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use regex::Regex;

use super::output_file::Output;
use super::DiffArgs;
use crate::diff::shares::ShareOptions;
use crate::diff::{compare, report, DiffOptions};
use crate::frames::FrameOptions;
use crate::profile::Profile;

/// Exit status for unreadable or incomparable input (clap uses 2 for usage errors too).
pub const EXIT_BAD_INPUT: i32 = 2;

/// More files than this in a directory of runs is not a directory of runs.
const MAX_RUNS: usize = 1000;

pub fn run(args: DiffArgs) -> anyhow::Result<i32> {
    match diff(&args) {
        Ok(code) => Ok(code),
        Err(e) => {
            let message = format!("{e:#}");
            eprintln!("Error: {}", crate::escape::printable(&message));
            Ok(EXIT_BAD_INPUT)
        }
    }
}

fn diff(args: &DiffArgs) -> anyhow::Result<i32> {
    let focus = args
        .focus
        .as_deref()
        .map(|f| {
            Regex::new(f).with_context(|| format!("--focus {f:?} is not a regular expression"))
        })
        .transpose()?;
    let opts = DiffOptions {
        shares: ShareOptions {
            lines: args.lines,
            python_only: args.python_only,
            focus,
        },
        alpha: args.alpha,
        relative_threshold: args.threshold / 100.0,
        absolute_threshold: args.min_change / 100.0,
        total: args.total,
        force: args.force,
        min_samples: args.min_samples,
    };
    // Claimed before anything is read: a place that cannot be written fails now.
    let markdown = args.markdown.as_deref().map(Output::explicit).transpose()?;
    let flamegraph = args
        .flamegraph
        .as_deref()
        .map(Output::explicit)
        .transpose()?;
    let base = read_side(&args.base)?;
    let head = read_side(&args.head)?;
    let comparison = compare(&base, &head, &opts)?;

    if args.json {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report::json(&comparison))?;
        writeln!(out)?;
    } else {
        report::table(&comparison, args.limit, &mut std::io::stdout().lock())?;
    }
    if let Some(out) = markdown {
        let text = report::markdown(&comparison);
        out.write(|w| Ok(w.write_all(text.as_bytes())?))?;
    }
    if let Some(out) = flamegraph {
        let view = FrameOptions {
            no_line_numbers: !args.lines,
            ..FrameOptions::default()
        };
        let (b, h) = (merged(&base), merged(&head));
        out.write(|w| Ok(report::flamegraph(&b, &h, view, w)?))?;
    }
    Ok(comparison.exit_code())
}

/// One side: a profile file, or every profile file in a directory (one per run).
fn read_side(path: &Path) -> anyhow::Result<Vec<Profile>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![crate::input::read_profile(path)?]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list the directory", path.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        anyhow::bail!("{}: no profile files in the directory", path.display());
    }
    if files.len() > MAX_RUNS {
        anyhow::bail!(
            "{}: {} files; at most {MAX_RUNS} runs a side",
            path.display(),
            files.len()
        );
    }
    files
        .iter()
        .map(|f| crate::input::read_profile(f))
        .collect()
}

/// All runs of a side as one profile (for the flame graph).
fn merged(runs: &[Profile]) -> Profile {
    let mut all = Profile::with_meta(runs.first().map(|p| p.meta.clone()).unwrap_or_default());
    for p in runs {
        all.merge(p);
    }
    all
}
