//! Turning a sampled `StackTrace` into the root-first list of `ProfileFrame`s a profile stores,
//! applying the user's presentation options (line numbers, file names, thread and process roots).

use crate::model::{Frame, StackTrace};
use crate::profile::{FrameKind, ProfileFrame};

#[derive(Debug, Clone, Copy, Default)]
pub struct FrameOptions {
    /// `--nolineno`: aggregate by function, no line.
    pub no_line_numbers: bool,
    /// `-F/--function`: show the function's first line instead of the current line.
    pub function_lines: bool,
    /// `--full-filenames`: absolute paths instead of shortened ones.
    pub full_filenames: bool,
    /// `-t/--threads`: a root frame per thread.
    pub threads: bool,
    /// A root frame per process (`--subprocesses`, `--all`).
    pub processes: bool,
}

/// Root-first frames of one stack. `process_name` is used for the process root frame.
pub fn profile_frames(
    stack: &StackTrace,
    process_name: &str,
    opts: FrameOptions,
) -> Vec<ProfileFrame> {
    let mut out = Vec::with_capacity(stack.frames.len() + 2);
    if opts.processes {
        out.push(ProfileFrame {
            kind: FrameKind::Process,
            name: format!("{process_name} ({})", stack.pid),
            filename: None,
            line: None,
        });
    }
    if opts.threads {
        out.push(ProfileFrame {
            kind: FrameKind::Thread,
            name: thread_label(stack),
            filename: None,
            line: None,
        });
    }
    for frame in stack.frames.iter().rev() {
        out.push(match frame {
            Frame::Python(f) => ProfileFrame {
                kind: FrameKind::Python,
                name: f.function.clone(),
                filename: Some(if opts.full_filenames {
                    f.filename.clone()
                } else {
                    shorten_filename(&f.filename).to_string()
                }),
                line: if opts.no_line_numbers {
                    None
                } else if opts.function_lines {
                    Some(f.first_line)
                } else {
                    Some(f.line)
                },
            },
            Frame::Native(f) => ProfileFrame {
                kind: FrameKind::Native,
                name: f.name.clone(),
                filename: (!f.module.is_empty()).then(|| f.module.clone()),
                line: None,
            },
            Frame::Kernel(name) => ProfileFrame {
                kind: FrameKind::Kernel,
                name: name.clone(),
                filename: None,
                line: None,
            },
            Frame::Truncated(reason) => ProfileFrame {
                kind: FrameKind::Truncated,
                name: format!("<truncated: {}>", reason.as_str()),
                filename: None,
                line: None,
            },
            Frame::Unknown(reason) => ProfileFrame {
                kind: FrameKind::Truncated,
                name: format!("<unknown frame: {}>", reason.as_str()),
                filename: None,
                line: None,
            },
        });
    }
    out
}

/// `thread "NAME" (TID)`, falling back to the pthread id when the OS tid is unknown.
pub fn thread_label(stack: &StackTrace) -> String {
    let name = stack.thread_name.as_deref().unwrap_or("?");
    match stack.tid {
        Some(tid) => format!("thread \"{name}\" ({tid})"),
        None => format!("thread \"{name}\" ({:#x})", stack.thread_ident),
    }
}

/// Shorten a module path the way people read it: the part below `site-packages` /
/// `dist-packages` / the standard library directory, else the file's base name.
pub fn shorten_filename(path: &str) -> &str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(at) = path.rfind(marker) {
            return &path[at + marker.len()..];
        }
    }
    if let Some(at) = path.rfind("/lib/python") {
        // "/lib/python3.11/json/decoder.py" -> "json/decoder.py"
        if let Some(slash) = path[at + "/lib/python".len()..].find('/') {
            return &path[at + "/lib/python".len() + slash + 1..];
        }
    }
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_like_a_reader_would() {
        assert_eq!(
            shorten_filename("/usr/lib/python3.11/threading.py"),
            "threading.py"
        );
        assert_eq!(
            shorten_filename("/usr/lib/python3.11/json/decoder.py"),
            "json/decoder.py"
        );
        assert_eq!(
            shorten_filename("/v/lib/python3.9/site-packages/numpy/core/a.py"),
            "numpy/core/a.py"
        );
        assert_eq!(shorten_filename("/home/me/app/main.py"), "main.py");
        assert_eq!(shorten_filename("<string>"), "<string>");
    }
}
