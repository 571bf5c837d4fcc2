//! `pyspy-bpf dump`: print every thread's current stack, as text or JSON, optionally with
//! each frame's local variables (`--locals`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;

use super::signals;
#[cfg(target_os = "linux")]
use super::stack_size::{self, Copier};
use super::DumpArgs;
use crate::escape::printable;
use crate::model::{Frame, StackTrace};
#[cfg(target_os = "linux")]
use crate::native::NativeReader;
use crate::process::details::ProcessDetails;
use crate::python::locals::Local;
use crate::python::repr::ReprLimits;
use crate::python::state::FrameLocals;
use crate::python::{PythonProcess, StackOptions};
use crate::sampler::source::UserspaceSource;
use crate::sampler::{SamplerConfig, UserspaceSampler};

struct ProcessDump {
    pid: u32,
    version: String,
    executable: String,
    cmdline: Vec<String>,
    container_id: Option<String>,
    threads: Vec<ThreadDump>,
}

struct ThreadDump {
    tid: Option<u32>,
    ident: u64,
    name: Option<String>,
    active: bool,
    owns_gil: bool,
    frames: Vec<DumpFrame>,
}

/// A frame, and its locals when `--locals` was given.
struct DumpFrame {
    frame: Frame,
    locals: Option<FrameLocals>,
}

pub fn run(args: DumpArgs) -> anyhow::Result<i32> {
    // A dump takes milliseconds, but may pause the target: SIGINT/SIGTERM/SIGHUP then wait for
    // it to be resumed and the dump printed, rather than end us in the middle.
    let _stop = signals::stop_flag()?;
    if args.async_tasks {
        return super::dump_async::run(&args);
    }
    super::mode::refuse_off_linux(&[("--native", args.native)])?;
    #[cfg(target_os = "linux")]
    let native_stack = stack_size::bytes_for(args.native_stack_size, Copier::Userspace)?;
    let process = attach(args.pid, true)?;
    // FreeBSD reads memory only from a process stopped under ptrace: always paused. A target
    // that cannot be paused fails the reading (`read_once`): its threads are not dumped
    // unpaused, or without native frames, when a pause was asked for.
    let blocking = args.blocking || cfg!(target_os = "freebsd");
    #[allow(unused_mut)] // only Linux adds a native reader
    let mut sampler = UserspaceSampler::new(dump_config(&args, blocking), process);
    #[cfg(target_os = "linux")]
    if args.native {
        sampler = sampler.with_native(NativeReader::new(native_stack));
    }
    let dumps = read_dumps(&mut UserspaceSource::new(sampler))?;
    let text = if args.json {
        serde_json::to_string_pretty(&pyspy_json(&dumps))? + "\n"
    } else {
        dumps
            .iter()
            .map(|d| render_text(d, args.full_filenames))
            .collect()
    };
    print_stdout(&text)?;
    Ok(0)
}
/// The user-space sampler, set to read every thread once: idle ones too, with their locals
/// (`--locals`), the target paused while it is read (`--blocking`, and always with
/// `--native`, which unwinds paused threads).
fn dump_config(args: &DumpArgs, blocking: bool) -> SamplerConfig {
    SamplerConfig {
        // One reading (`read_once`): no timer runs.
        rate_hz: 1,
        stacks: StackOptions {
            include_idle: true,
            gil_only: false,
        },
        subprocesses: args.subprocesses,
        blocking,
        async_tasks: false,
        locals: (args.locals > 0).then(|| ReprLimits::for_detail(args.locals)),
    }
}

/// One reading of the target (and with `--subprocesses` its Python descendants) through the
/// sample pipeline, as one dump per process: the target first, then its descendants by pid.
/// A failed read of the target is the error; a descendant that cannot be read is left out.
fn read_dumps(source: &mut UserspaceSource) -> anyhow::Result<Vec<ProcessDump>> {
    let root = source.sampler.root().pid;
    let mut by_pid: BTreeMap<u32, ProcessDump> = BTreeMap::new();
    source.read_once(&mut |sample| {
        let process = sample.process;
        by_pid
            .entry(process.pid)
            .or_insert_with(|| ProcessDump {
                pid: process.pid,
                version: process.python.map(|v| v.to_string()).unwrap_or_default(),
                executable: String::new(),
                cmdline: process.details.cmdline.clone(),
                container_id: process.details.container_id.clone(),
                threads: Vec::new(),
            })
            .threads
            .push(thread_dump(sample.stack, sample.locals));
    })?;
    // The target has a header even when it has no thread to show (its interpreter is
    // finalizing).
    if !by_pid.contains_key(&root) {
        let p = source.sampler.root();
        let details = ProcessDetails::read(root);
        by_pid.insert(
            root,
            ProcessDump {
                pid: root,
                version: p.version().to_string(),
                executable: String::new(),
                cmdline: details.cmdline,
                container_id: details.container_id,
                threads: Vec::new(),
            },
        );
    }
    let mut dumps: Vec<ProcessDump> = Vec::with_capacity(by_pid.len());
    dumps.extend(by_pid.remove(&root));
    dumps.extend(by_pid.into_values());
    for d in &mut dumps {
        if let Some(p) = source.sampler.process(d.pid) {
            d.executable = p.executable.display().to_string();
        }
    }
    Ok(dumps)
}

/// One thread of a dump: a sample's stack, each Python frame with its locals when read
/// (they line up with the Python frames the walk read, leaf first).
fn thread_dump(stack: &StackTrace, locals: Option<&[FrameLocals]>) -> ThreadDump {
    let mut frame_locals = locals.unwrap_or_default().iter();
    let frames = stack
        .frames
        .iter()
        .map(|frame| DumpFrame {
            locals: locals.and_then(|_| frame_locals.next().cloned()),
            frame: frame.clone(),
        })
        .collect();
    ThreadDump {
        tid: stack.tid,
        ident: stack.thread_ident,
        name: stack.thread_name.clone(),
        active: stack.active,
        owns_gil: stack.owns_gil == Some(true),
        frames,
    }
}

/// Attach to a process to dump: `--pid` (`root`) as `record --pid` does, waiting a moment for
/// an interpreter that is still starting (`target::attach_pid`); a child as it is now.
pub(super) fn attach(pid: u32, root: bool) -> anyhow::Result<PythonProcess> {
    match root {
        true => super::target::attach_pid(pid),
        false => Ok(PythonProcess::attach(pid)?),
    }
}

/// Write `text` to stdout; a closed pipe (`dump | head`) is the reader's choice, not an error.
pub(super) fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// `dump --json` in py-spy's schema, so that scripts written for py-spy keep working: an
/// array of every thread of every process dumped, each `{pid, thread_id, os_thread_id,
/// thread_name, active, owns_gil, frames, process_info}`, each frame `{name, filename,
/// module, short_filename, line, locals}`. Added keys (which py-spy scripts ignore):
/// `first_line` and `kind` (`python`, `native`, `kernel`, `truncated`, `unknown`) per frame,
/// `type` per local, `locals_error` when a frame's locals could not be read, and
/// `python_version` and `executable` in `process_info`.
fn pyspy_json(dumps: &[ProcessDump]) -> serde_json::Value {
    let threads: Vec<serde_json::Value> = dumps
        .iter()
        .flat_map(|d| {
            let process_info = serde_json::json!({
                "pid": d.pid,
                "command_line": d.cmdline.join(" "),
                "python_version": d.version,
                "executable": d.executable,
                "container_id": d.container_id,
            });
            d.threads.iter().map(move |t| {
                serde_json::json!({
                    "pid": d.pid,
                    "thread_id": t.ident,
                    "os_thread_id": t.tid,
                    "thread_name": t.name,
                    "active": t.active,
                    "owns_gil": t.owns_gil,
                    "frames": t.frames.iter().map(frame_json).collect::<Vec<_>>(),
                    "process_info": process_info.clone(),
                })
            })
        })
        .collect();
    serde_json::Value::Array(threads)
}

fn frame_json(f: &DumpFrame) -> serde_json::Value {
    let mut value = bare_frame_json(&f.frame);
    if let (Some(locals), serde_json::Value::Object(map)) = (&f.locals, &mut value) {
        match locals {
            Ok(locals) => {
                map.insert("locals".into(), serde_json::json!(locals));
            }
            Err(e) => {
                map.insert("locals".into(), serde_json::json!([]));
                map.insert("locals_error".into(), serde_json::json!(e));
            }
        }
    }
    value
}

/// A frame in `dump --json`'s frame schema, without locals.
pub(super) fn bare_frame_json(frame: &Frame) -> serde_json::Value {
    let (name, filename, module, line, first_line, kind) = match frame {
        Frame::Python(p) => (
            p.function.clone(),
            p.filename.clone(),
            None,
            p.line,
            Some(p.first_line),
            "python",
        ),
        Frame::Native(n) => (
            n.name.clone(),
            n.module.clone(),
            Some(n.module.clone()),
            0,
            None,
            "native",
        ),
        Frame::Kernel(name) => (
            name.clone(),
            String::new(),
            Some("[kernel]".to_string()),
            0,
            None,
            "kernel",
        ),
        Frame::Truncated(r) => (
            format!("<truncated: {}>", r.as_str()),
            String::new(),
            None,
            0,
            None,
            "truncated",
        ),
        Frame::GilWait => (
            crate::model::GIL_WAIT.to_string(),
            String::new(),
            None,
            0,
            None,
            "wait",
        ),
        Frame::Unknown(r) => (
            format!("<unknown frame: {}>", r.as_str()),
            String::new(),
            None,
            0,
            None,
            "unknown",
        ),
    };
    let short_filename = match kind {
        "python" => Some(crate::frames::shorten_filename(&filename).to_string()),
        _ if !filename.is_empty() => {
            Some(filename.rsplit('/').next().unwrap_or(&filename).to_string())
        }
        _ => None,
    };
    serde_json::json!({
        "name": name,
        "filename": filename,
        "module": module,
        "short_filename": short_filename,
        "line": line,
        "locals": null,
        "first_line": first_line,
        "kind": kind,
    })
}

/// The header of a process's text dump, as py-spy prints it (`dump` and `dump --async`):
/// its command line and interpreter, escaped (`printable`).
pub(super) fn write_header(
    out: &mut String,
    pid: u32,
    cmdline: &[String],
    version: &str,
    executable: &str,
) {
    let _ = writeln!(out, "Process {pid}: {}", printable(&cmdline.join(" ")));
    let _ = writeln!(
        out,
        "Python v{} ({})",
        printable(version),
        printable(executable)
    );
}

/// The text form, for a terminal, as py-spy prints it (short file names unless
/// `full_filenames`): every name and value that comes from the target is escaped
/// (`printable`), so control characters in it cannot drive the terminal.
fn render_text(d: &ProcessDump, full_filenames: bool) -> String {
    let mut out = String::new();
    write_header(&mut out, d.pid, &d.cmdline, &d.version, &d.executable);
    for t in &d.threads {
        let tid = t
            .tid
            .map(|t| t.to_string())
            .unwrap_or_else(|| format!("{:#x}", t.ident));
        // As py-spy prints it.
        let state = match (t.active, t.owns_gil) {
            (true, true) => "active+gil",
            (true, false) => "active",
            (false, true) => "gil",
            (false, false) => "idle",
        };
        let _ = writeln!(
            out,
            "\nThread {tid} ({state}): \"{}\"",
            printable(t.name.as_deref().unwrap_or("?"))
        );
        for DumpFrame { frame: f, locals } in &t.frames {
            let _ = writeln!(out, "    {}", frame_text(f, full_filenames));
            match locals {
                Some(Ok(locals)) => render_locals(&mut out, locals),
                Some(Err(e)) => {
                    let _ = writeln!(out, "        <locals unavailable: {}>", printable(e));
                }
                None => {}
            }
        }
    }
    out
}

/// One frame as a line of text: `function (file:line)`, names escaped.
pub(super) fn frame_text(f: &Frame, full_filenames: bool) -> String {
    match f {
        Frame::Python(f) => format!(
            "{} ({}:{})",
            printable(&f.function),
            printable(match full_filenames {
                true => &f.filename,
                false => crate::frames::shorten_filename(&f.filename),
            }),
            f.line
        ),
        Frame::Native(f) if f.module.is_empty() => format!("{} (native)", printable(&f.name)),
        Frame::Native(f) => format!("{} ({})", printable(&f.name), printable(&f.module)),
        Frame::Kernel(name) => format!("{} (kernel)", printable(name)),
        Frame::Truncated(r) => format!("<truncated: {}>", r.as_str()),
        Frame::Unknown(r) => format!("<unknown frame: {}>", r.as_str()),
        Frame::GilWait => crate::model::GIL_WAIT.to_string(),
    }
}

fn render_locals(out: &mut String, locals: &[Local]) {
    for l in locals {
        let _ = writeln!(
            out,
            "        {} = {}",
            printable(&l.name),
            printable(&l.repr)
        );
    }
}
