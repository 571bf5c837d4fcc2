//! Output formats. Each format is one file that reads a `&Profile`: the stack formats
//! (flame graph, speedscope, collapsed) read the profile as presented with the user's options
//! (`frames::present`, applied here), so one recorded profile can be written any way.
//!
//! Every format labels frames through [`frame_label`]:
//!
//! | kind        | label                                                        |
//! |-------------|--------------------------------------------------------------|
//! | `Python`    | `name (file:line)`, `name (file)` when `line` is `None`      |
//! | `Native`    | same as Python; just `name` when there is no `filename`     |
//! | `Kernel`    | `name_[k]` (inferno's and perf's suffix for kernel frames)   |
//! | `Process`, `Thread`, `Truncated` | `name` as given (already formatted upstream) |
//!
//! For `Native` frames `filename` is whatever the symbolizer put there (a module basename or
//! a source file); shortening paths is the caller's job, for Python and native frames alike.
//! An empty name is shown as `[unknown]`.

pub mod chrometrace;
pub mod collapsed;
pub mod flamegraph;
pub mod pprof;
pub mod speedscope;

use std::fmt;
use std::io::{BufWriter, Write};
use std::str::FromStr;

use anyhow::Context;

use crate::frames::{present, present_timed, FrameOptions};
use crate::profile::{FrameKind, Profile, ProfileFrame};

/// Shown for a frame whose name is empty.
pub const UNKNOWN_NAME: &str = "[unknown]";

/// The human-readable label of a frame, before any format-specific escaping.
pub fn frame_label(frame: &ProfileFrame) -> String {
    let name = if frame.name.is_empty() {
        UNKNOWN_NAME
    } else {
        frame.name.as_str()
    };
    match frame.kind {
        FrameKind::Python | FrameKind::Native => match (&frame.filename, frame.line) {
            (Some(file), Some(line)) => format!("{name} ({file}:{line})"),
            (Some(file), None) => format!("{name} ({file})"),
            (None, _) => name.to_string(),
        },
        FrameKind::Kernel => format!("{name}_[k]"),
        FrameKind::Process | FrameKind::Thread | FrameKind::Truncated | FrameKind::Wait => {
            name.to_string()
        }
    }
}

/// An output format, named on the command line as `flamegraph`, `speedscope` or `raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// An interactive SVG flame graph (inferno).
    #[default]
    Flamegraph,
    /// A speedscope JSON file, one sampled profile per thread.
    Speedscope,
    /// Collapsed stacks, `frame;frame;frame count` per line, as py-spy's `raw` format.
    Raw,
    /// A gzipped pprof `profile.proto` with labels (`go tool pprof`, Pyroscope).
    Pprof,
    /// A Chrome trace (Trace Event Format): per-thread tracks in time order (Perfetto).
    Chrometrace,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Flamegraph,
        Format::Speedscope,
        Format::Raw,
        Format::Pprof,
        Format::Chrometrace,
    ];

    /// The format an output file's name implies (`-o profile.json` without `-f`): `.svg`,
    /// `.json` (speedscope, as py-spy writes it; `.trace.json` is a Chrome trace), `.txt` /
    /// `.collapsed` / `.folded`, `.pb.gz` / `.pprof` / `.pb`. `None` for anything else.
    pub fn from_file_name(name: &str) -> Option<Format> {
        let name = name.to_ascii_lowercase();
        let ends = |suffixes: &[&str]| suffixes.iter().any(|s| name.ends_with(s));
        if ends(&[".trace.json", ".chrometrace.json"]) {
            Some(Format::Chrometrace)
        } else if ends(&[".svg"]) {
            Some(Format::Flamegraph)
        } else if ends(&[".json", ".speedscope"]) {
            Some(Format::Speedscope)
        } else if ends(&[".txt", ".collapsed", ".folded"]) {
            Some(Format::Raw)
        } else if ends(&[".pb.gz", ".pprof", ".pb"]) {
            Some(Format::Pprof)
        } else {
            None
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Flamegraph => "flamegraph",
            Format::Speedscope => "speedscope",
            Format::Raw => "raw",
            Format::Pprof => "pprof",
            Format::Chrometrace => "chrometrace",
        }
    }

    /// The extension of a default output file name, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Flamegraph => "svg",
            Format::Speedscope => "json",
            Format::Raw => "txt",
            Format::Pprof => "pb.gz",
            Format::Chrometrace => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Returned by `Format::from_str` for a name that is not a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format {0:?} (expected flamegraph, speedscope, raw, pprof or chrometrace)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Accepts the names of [`Format::name`], case-insensitively, and `collapsed` for `raw`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "flamegraph" => Ok(Format::Flamegraph),
            "speedscope" => Ok(Format::Speedscope),
            "raw" | "collapsed" => Ok(Format::Raw),
            "pprof" => Ok(Format::Pprof),
            "chrometrace" => Ok(Format::Chrometrace),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

/// Writes `profile` to `out` in `format`, presented with `view`. Output is buffered here;
/// the caller need not.
///
/// An empty profile is not an error: the flame graph says no samples were collected, the
/// speedscope file has one empty profile, the raw output is empty. Callers that want to warn
/// check [`Profile::is_empty`].
pub fn write(
    format: Format,
    profile: &Profile,
    view: FrameOptions,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut out = BufWriter::new(out);
    let stacks = |format| match format {
        // pprof keeps the profile's identity and labels: the presentation options apply
        // to the views that have no labels.
        Format::Pprof | Format::Chrometrace => None,
        Format::Speedscope => Some(present_timed(profile, view)),
        _ => Some(present(profile, view)),
    };
    match (format, stacks(format)) {
        (Format::Flamegraph, Some(shown)) => flamegraph::write(&shown, &shown.meta, &mut out),
        (Format::Speedscope, Some(shown)) => speedscope::write(&shown, &shown.meta, &mut out),
        (Format::Raw, Some(shown)) => collapsed::write(&shown, &mut out),
        (Format::Chrometrace, _) => chrometrace::write(profile, view, &mut out),
        (_, _) => pprof::write(profile, &mut out),
    }
    .and_then(|()| out.flush())
    .with_context(|| format!("writing the {format} output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        let f = |kind, name: &str, file: Option<&str>, line| ProfileFrame {
            kind,
            name: name.into(),
            filename: file.map(Into::into),
            line,
            first_line: None,
            address: None,
        };
        use FrameKind::*;
        assert_eq!(
            frame_label(&f(Python, "run", Some("app.py"), Some(12))),
            "run (app.py:12)"
        );
        assert_eq!(
            frame_label(&f(Python, "run", Some("app.py"), None)),
            "run (app.py)"
        );
        assert_eq!(
            frame_label(&f(Native, "memcpy", Some("libc.so.6"), None)),
            "memcpy (libc.so.6)"
        );
        assert_eq!(frame_label(&f(Native, "memcpy", None, None)), "memcpy");
        assert_eq!(
            frame_label(&f(Kernel, "do_syscall_64", None, None)),
            "do_syscall_64_[k]"
        );
        assert_eq!(
            frame_label(&f(Thread, "thread 7 \"MainThread\"", None, None)),
            "thread 7 \"MainThread\""
        );
        assert_eq!(
            frame_label(&f(Process, "python3 (7)", None, None)),
            "python3 (7)"
        );
        assert_eq!(
            frame_label(&f(Truncated, "[depth limit]", None, None)),
            "[depth limit]"
        );
        assert_eq!(frame_label(&f(Native, "", None, None)), "[unknown]");
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>(), Ok(f));
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!("collapsed".parse::<Format>(), Ok(Format::Raw));
        assert_eq!("SVG".parse::<Format>(), Err(UnknownFormat("SVG".into())));
        assert_eq!(Format::Flamegraph.extension(), "svg");
        assert_eq!(Format::Speedscope.extension(), "json");
        assert_eq!(Format::Raw.extension(), "txt");
    }

    #[test]
    fn write_every_format_of_an_empty_profile() {
        for f in Format::ALL {
            let mut out = Vec::new();
            write(f, &Profile::new(), FrameOptions::default(), &mut out).unwrap();
            if f != Format::Raw {
                assert!(!out.is_empty(), "{f}");
            }
        }
    }
}
