//! `pyspy-bpf dump` against real interpreters: every provisioned version and flavour plus
//! the system python3. Each test checks function names, files, exact line numbers, thread
//! names and ids, and lists every interpreter that failed.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use common::*;
use serde::Deserialize;

/// One process's threads from `dump --json` (py-spy's schema: an array of threads, each
/// with its process's `process_info`).
#[derive(Debug)]
struct DumpJson {
    pid: u32,
    version: String,
    executable: String,
    threads: Vec<ThreadJson>,
}

#[derive(Debug, Deserialize)]
struct ThreadJson {
    pid: u32,
    #[serde(rename = "os_thread_id")]
    tid: Option<u64>,
    #[serde(rename = "thread_id")]
    ident: u64,
    #[serde(rename = "thread_name")]
    name: Option<String>,
    active: bool,
    owns_gil: bool,
    frames: Vec<FrameJson>,
    process_info: ProcessInfoJson,
}

#[derive(Debug, Deserialize)]
struct ProcessInfoJson {
    python_version: String,
    executable: String,
}

#[derive(Debug, Deserialize)]
struct FrameJson {
    #[serde(rename = "name")]
    function: String,
    filename: String,
    line: i64,
    first_line: i64,
}

impl ThreadJson {
    fn label(&self) -> String {
        format!("thread {:?} (tid {:?})", self.name, self.tid)
    }

    fn render(&self) -> String {
        let frames: Vec<String> = self
            .frames
            .iter()
            .map(|f| {
                format!(
                    "    {} ({}:{}) first_line={}",
                    f.function, f.filename, f.line, f.first_line
                )
            })
            .collect();
        format!(
            "{} ident={} active={} owns_gil={}\n{}",
            self.label(),
            self.ident,
            self.active,
            self.owns_gil,
            clip(&frames.join("\n"), 3000)
        )
    }
}

impl DumpJson {
    /// The main thread of a script that never imports `threading`: it has no Python-level
    /// name, so it is named after the OS thread (the process's comm).
    /// (An interpreter whose `site` imports `threading` anyway, as pyenv's 3.11.7 here does
    /// through a `.pth` file, names it `MainThread`.)
    fn unthreaded_main(&self, pid: u32) -> Result<&ThreadJson> {
        let comm = comm(pid).context("comm")?;
        self.thread(&comm).or_else(|_| self.thread("MainThread"))
    }

    fn thread(&self, name: &str) -> Result<&ThreadJson> {
        let found: Vec<&ThreadJson> = self
            .threads
            .iter()
            .filter(|t| t.name.as_deref() == Some(name))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!("no thread named {name:?}; threads:\n{}", self.render()),
            _ => bail!("{} threads named {name:?}:\n{}", found.len(), self.render()),
        }
    }

    fn render(&self) -> String {
        self.threads
            .iter()
            .map(ThreadJson::render)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An expected frame: function name, file (absolute path), line, and optionally first line.
struct Want {
    function: String,
    filename: PathBuf,
    line: u32,
    first_line: Option<u32>,
}

fn want(function: impl Into<String>, filename: &Path, line: u32) -> Want {
    Want {
        function: function.into(),
        filename: filename.to_path_buf(),
        line,
        first_line: None,
    }
}

impl Want {
    fn first(mut self, first_line: u32) -> Want {
        self.first_line = Some(first_line);
        self
    }
}

/// Checks that the thread's frames (leaf first) start with `expected`, exactly.
fn expect_leaf_frames(thread: &ThreadJson, expected: &[Want]) -> Result<()> {
    for (i, w) in expected.iter().enumerate() {
        let Some(f) = thread.frames.get(i) else {
            bail!(
                "{}: only {} frames, expected at least {}:\n{}",
                thread.label(),
                thread.frames.len(),
                expected.len(),
                thread.render()
            );
        };
        let ok = f.function == w.function
            && Path::new(&f.filename) == w.filename
            && f.line == i64::from(w.line)
            && w.first_line
                .map_or(true, |fl| f.first_line == i64::from(fl));
        ensure!(
            ok,
            "{}: frame {i} (leaf = 0) is {} ({}:{}) first_line={}, expected {} ({}:{}){}; frames:\n{}",
            thread.label(),
            f.function,
            f.filename,
            f.line,
            f.first_line,
            w.function,
            w.filename.display(),
            w.line,
            w.first_line.map(|l| format!(" first_line={l}")).unwrap_or_default(),
            thread.render()
        );
    }
    Ok(())
}

fn dump_json(pid: u32) -> Result<DumpJson> {
    let out = pyspy(&["dump", "--pid", &pid.to_string(), "--json"])?.ok()?;
    let threads: Vec<ThreadJson> = serde_json::from_str(&out.stdout).with_context(|| {
        format!(
            "dump --json output is not the expected JSON:\n{}",
            out.describe()
        )
    })?;
    let first = threads.first().context("dump --json: no threads")?;
    ensure!(
        threads.iter().all(|t| t.pid == first.pid),
        "one process: {}",
        out.stdout
    );
    let dump = DumpJson {
        pid: first.pid,
        version: first.process_info.python_version.clone(),
        executable: first.process_info.executable.clone(),
        threads,
    };
    ensure!(
        dump.pid == pid,
        "dump says pid {}, expected {pid}",
        dump.pid
    );
    Ok(dump)
}

/// The header fields every dump must get right.
fn check_header(dump: &DumpJson, interp: &Interpreter) -> Result<()> {
    ensure!(
        dump.version == interp.version,
        "version {:?}, expected {:?}",
        dump.version,
        interp.version
    );
    let exe = std::fs::canonicalize(&dump.executable)
        .with_context(|| format!("executable {:?} does not exist", dump.executable))?;
    let expected = std::fs::canonicalize(&interp.path)?;
    ensure!(
        exe == expected,
        "executable {:?}, expected {}",
        dump.executable,
        expected.display()
    );
    for t in &dump.threads {
        ensure!(t.tid.is_some(), "{}: tid is null on Linux", t.label());
    }
    Ok(())
}

fn script(name: &str) -> PathBuf {
    scripts_dir().join(name)
}

#[test]
fn dump_exact_lines() {
    let path = script("busy.py");
    for_each_interpreter("dump_exact_lines", |interp| {
        let child = interp.start("busy.py", &[])?;
        child.wait_ready()?;
        let dump = dump_json(child.pid())?;
        check_header(&dump, interp)?;
        ensure!(
            dump.threads.len() == 1,
            "expected one thread:\n{}",
            dump.render()
        );
        let main = dump.unthreaded_main(child.pid())?;
        ensure!(
            main.tid == Some(u64::from(child.pid())),
            "main thread tid {:?}, expected the pid {}",
            main.tid,
            child.pid()
        );
        let expected = [
            want("level_b", &path, line_of("busy.py", "busy"))
                .first(def_line("busy.py", "level_b")),
            want("level_a", &path, line_of("busy.py", "call_b"))
                .first(def_line("busy.py", "level_a")),
            want("main", &path, line_of("busy.py", "call_a")).first(def_line("busy.py", "main")),
            want("<module>", &path, line_of("busy.py", "call_main"))
                .first(interp.module_first_line("busy.py")?),
        ];
        expect_leaf_frames(main, &expected)?;
        ensure!(
            main.frames.len() == expected.len(),
            "extra frames below <module>:\n{}",
            main.render()
        );
        ensure!(
            main.active,
            "the busy main thread is not active:\n{}",
            main.render()
        );
        Ok(())
    });
}

#[test]
fn dump_deep_recursion() {
    let path = script("deep.py");
    for_each_interpreter("dump_deep_recursion", |interp| {
        let child = interp.start("deep.py", &[])?;
        child.wait_ready()?;
        let dump = dump_json(child.pid())?;
        let main = dump.unthreaded_main(child.pid())?;
        let recurse_line = line_of("deep.py", "recurse");
        let mut expected = vec![
            want("leaf", &path, line_of("deep.py", "busy")).first(def_line("deep.py", "leaf")),
            want("recurse", &path, line_of("deep.py", "call_leaf")),
        ];
        for _ in 1..600 {
            expected
                .push(want("recurse", &path, recurse_line).first(def_line("deep.py", "recurse")));
        }
        expected.push(want("<module>", &path, line_of("deep.py", "call_recurse")));
        let recurse_frames = main
            .frames
            .iter()
            .filter(|f| f.function == "recurse")
            .count();
        ensure!(
            recurse_frames >= 600,
            "{recurse_frames} `recurse` frames, expected 600 ({} frames in all)",
            main.frames.len()
        );
        expect_leaf_frames(main, &expected)?;
        ensure!(
            main.frames.len() == expected.len(),
            "{} frames, expected {}",
            main.frames.len(),
            expected.len()
        );
        Ok(())
    });
}

/// The "ready" line of threads.py: thread name -> [native tid, threading ident].
fn thread_ids(ready: &str) -> Result<std::collections::HashMap<String, (u64, u64)>> {
    let map: std::collections::HashMap<String, Vec<u64>> =
        serde_json::from_str(ready).with_context(|| format!("threads.py ready line: {ready:?}"))?;
    Ok(map.into_iter().map(|(k, v)| (k, (v[0], v[1]))).collect())
}

#[test]
fn dump_threads_json() {
    let path = script("threads.py");
    for_each_interpreter("dump_threads_json", |interp| {
        let child = interp.start("threads.py", &[])?;
        let ids = thread_ids(&child.wait_ready()?)?;
        // As in dump_threads_text: the spinner may be taking the GIL back after its "ready".
        let mut dump = dump_json(child.pid())?;
        for _ in 0..5 {
            let holds = dump.thread("worker-1").is_ok_and(|t| t.owns_gil);
            if interp.is_py2() || holds {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            dump = dump_json(child.pid())?;
        }
        check_header(&dump, interp)?;
        ensure!(
            dump.threads.len() == 4,
            "expected 4 threads:\n{}",
            dump.render()
        );
        let cases = [
            ("MainThread", "main_idle", "main_idle", false),
            ("worker-1", "spin", "spin", true),
            ("worker-2", "nap", "nap", false),
            ("worker-3", "blocked", "blocked", false),
        ];
        let mut errors = Vec::new();
        for (name, function, tag, busy) in cases {
            let check = || -> Result<()> {
                let t = dump.thread(name)?;
                let (tid, ident) = ids[name];
                ensure!(
                    t.tid == Some(tid),
                    "{}: tid {:?}, expected {tid}",
                    t.label(),
                    t.tid
                );
                ensure!(
                    t.ident == ident,
                    "{}: ident {}, expected {ident}",
                    t.label(),
                    t.ident
                );
                expect_leaf_frames(
                    t,
                    &[want(function, &path, line_of("threads.py", tag))
                        .first(def_line("threads.py", function))],
                )?;
                ensure!(
                    t.active == busy,
                    "{}: active={}, expected {busy}:\n{}",
                    t.label(),
                    t.active,
                    t.render()
                );
                // Nothing competes for the GIL, so on 3.x the spinning thread never drops it.
                // Python 2.7 drops and retakes it every 100 ticks, so only check the sleepers.
                if !busy || !interp.is_py2() {
                    ensure!(
                        t.owns_gil == busy,
                        "{}: owns_gil={}, expected {busy}:\n{}",
                        t.label(),
                        t.owns_gil,
                        t.render()
                    );
                }
                Ok(())
            };
            if let Err(e) = check() {
                errors.push(format!("{e:#}"));
            }
        }
        let main = dump.thread("MainThread")?;
        if let Err(e) = expect_leaf_frames(
            main,
            &[
                want("main_idle", &path, line_of("threads.py", "main_idle")),
                want("main", &path, line_of("threads.py", "call_main_idle")),
            ],
        ) {
            errors.push(format!("{e:#}"));
        }
        ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(())
    });
}

/// The text format once: `Process PID: CMDLINE`, `Python vX.Y.Z (EXE)`, then per thread
/// `Thread TID (active+gil|active|gil|idle): "NAME"` and its frames, leaf first, indented 4
/// spaces, as py-spy prints them.
#[test]
fn dump_threads_text() {
    for_each_interpreter("dump_threads_text", |interp| {
        let child = interp.start("threads.py", &[])?;
        let ids = thread_ids(&child.wait_ready()?)?;
        let pid = child.pid();
        // The spinner wrote "ready" with os.write, which lets go of the GIL: a dump right
        // after may catch it taking the GIL back. Dump again (a few times) until it holds it.
        let spinner_header = format!("Thread {} (active+gil): ", ids["worker-1"].0);
        let mut out = pyspy(&["dump", "--pid", &pid.to_string()])?.ok()?;
        for _ in 0..5 {
            if interp.is_py2() || out.stdout.contains(&spinner_header) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            out = pyspy(&["dump", "--pid", &pid.to_string()])?.ok()?;
        }
        let text = out.stdout.as_str();
        let lines: Vec<&str> = text.lines().collect();
        let context = || format!("dump output:\n{}", clip(text, 4000));
        ensure!(
            lines.first().is_some_and(
                |l| l.starts_with(&format!("Process {pid}: ")) && l.contains("threads.py")
            ),
            "first line is not `Process {pid}: ... threads.py`; {}",
            context()
        );
        ensure!(
            lines
                .get(1)
                .is_some_and(|l| l.starts_with(&format!("Python v{} (", interp.version))),
            "second line is not `Python v{} (...)`; {}",
            interp.version,
            context()
        );
        for (name, function, tag, state) in [
            ("MainThread", "main_idle", "main_idle", "idle"),
            ("worker-1", "spin", "spin", "active"),
            ("worker-2", "nap", "nap", "idle"),
            ("worker-3", "blocked", "blocked", "idle"),
        ] {
            let tid = ids[name].0;
            let header = lines.iter().position(|l| {
                l.starts_with(&format!("Thread {tid} (")) && l.ends_with(&format!("\"{name}\""))
            });
            let Some(h) = header else {
                bail!("no line `Thread {tid} (...) \"{name}\"`; {}", context());
            };
            let states = lines[h]
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(s, _)| s)
                .unwrap_or("");
            // py-spy's states: active+gil, active, gil (idle, holding it), idle.
            let shown = match states.split('+').next().map(str::trim) {
                Some("gil") => Some("idle"),
                other => other,
            };
            ensure!(
                shown == Some(state),
                "`{}`: expected {state}; {}",
                lines[h],
                context()
            );
            if name == "worker-1" && !interp.is_py2() {
                ensure!(
                    states.contains("gil"),
                    "`{}`: the spinning thread holds the GIL; {}",
                    lines[h],
                    context()
                );
            }
            // Short file names, as py-spy prints them (`--full-filenames` for the path).
            let frame = format!("    {function} (threads.py:{})", line_of("threads.py", tag));
            ensure!(
                lines.get(h + 1) == Some(&frame.as_str()),
                "after `{}` expected `{frame}`; {}",
                lines[h],
                context()
            );
        }
        Ok(())
    });
}

#[test]
fn dump_features() {
    let main_path = script("features.py");
    let async_path = script("features_async.py");
    for_each_interpreter("dump_features", |interp| {
        let child = interp.start("features.py", &[])?;
        child.wait_ready()?;
        let dump = dump_json(child.pid())?;
        let f = |tag| line_of("features.py", tag);
        let a = |tag| line_of("features_async.py", tag);
        let mut cases: Vec<(&str, Vec<Want>)> = vec![
            (
                "method",
                vec![want(
                    interp.func_name("Worker.run", "run"),
                    &main_path,
                    f("method"),
                )
                .first(def_line("features.py", "run"))],
            ),
            (
                "closure",
                vec![
                    want(
                        interp.func_name("outer.<locals>.inner", "inner"),
                        &main_path,
                        f("inner"),
                    )
                    .first(def_line("features.py", "inner")),
                    want("outer", &main_path, f("call_inner")),
                ],
            ),
            (
                "generator",
                vec![
                    want("ticker", &main_path, f("ticker"))
                        .first(def_line("features.py", "ticker")),
                    want("consume", &main_path, f("consume")),
                ],
            ),
            (
                "lambda",
                vec![
                    want("<lambda>", &main_path, f("lambda")).first(f("lambda")),
                    want("lambda_loop", &main_path, f("call_lambda")),
                ],
            ),
            (
                "MainThread",
                vec![want("main_idle", &main_path, f("main_idle"))],
            ),
        ];
        if !interp.is_py2() {
            cases.push((
                "coroutine",
                vec![
                    want("crunch", &async_path, a("crunch"))
                        .first(def_line("features_async.py", "crunch")),
                    want("drive", &async_path, a("await"))
                        .first(def_line("features_async.py", "drive")),
                ],
            ));
        }
        let mut errors = Vec::new();
        for (name, expected) in &cases {
            if let Err(e) = dump
                .thread(name)
                .and_then(|t| expect_leaf_frames(t, expected))
            {
                errors.push(format!("{name}: {e:#}"));
            }
        }
        if !interp.is_py2() {
            // asyncio's own frames sit between drive and the thread's target.
            if let Ok(t) = dump.thread("coroutine") {
                let at = a("asyncio_run");
                if !t
                    .frames
                    .iter()
                    .any(|fr| fr.function == "run_async" && fr.line == i64::from(at))
                {
                    errors.push(format!(
                        "coroutine: no frame run_async (features_async.py:{at}):\n{}",
                        t.render()
                    ));
                }
            }
        }
        ensure!(errors.is_empty(), "{}", errors.join("\n"));
        Ok(())
    });
}

/// Function and thread names with 1-, 2- and 4-byte characters, in a file with a unicode name.
#[test]
fn dump_unicode() {
    for_each_interpreter("dump_unicode", |interp| {
        let source = if interp.is_py2() {
            "unicode_names_py2.py"
        } else {
            "unicode_names.py"
        };
        let dir = TempDir::new("unicode");
        let path = dir.join("名前_é.py");
        std::fs::copy(script(source), &path)?;
        let child = interp.start(&path, &[])?;
        child.wait_ready()?;
        let dump = dump_json(child.pid())?;
        let l = |tag| line_of(source, tag);
        let (astral, bmp, latin1, thread) = if interp.is_py2() {
            ("astral", "bmp", "latin1", "naive")
        } else {
            ("𠀋", "計算", "café", "naïve-線-𠀋")
        };
        let main = dump.thread("MainThread")?;
        expect_leaf_frames(
            main,
            &[
                want(astral, &path, l("astral")).first(def_line(source, astral)),
                want(bmp, &path, l("bmp")).first(def_line(source, bmp)),
                want(latin1, &path, l("latin1")).first(def_line(source, latin1)),
                want("<module>", &path, l("module")),
            ],
        )?;
        let t = dump.thread(thread)?;
        expect_leaf_frames(t, &[want("sleeper", &path, l("sleeper"))])?;
        Ok(())
    });
}

/// `dump -s` reads the target and its Python children in one reading of the sample pipeline:
/// one header per process, the target first, each thread under its own process with its own
/// stack and the process's own command line.
#[test]
fn dump_subprocesses_shows_each_child_after_its_parent() {
    let spawner = script("spawner.py");
    let busy = script("busy.py");
    for_each_interpreter("dump_subprocesses", |interp| {
        let parent = interp.start("spawner.py", &[])?;
        let child: u32 = parent.wait_ready()?.trim().parse()?;
        let pid = parent.pid().to_string();
        let out = pyspy(&["dump", "--pid", &pid, "-s", "--json"])?.ok()?;
        let threads: Vec<serde_json::Value> = serde_json::from_str(&out.stdout)
            .with_context(|| format!("not JSON:\n{}", out.describe()))?;
        let pids: Vec<u64> = threads.iter().filter_map(|t| t["pid"].as_u64()).collect();
        let first_child = pids.iter().position(|&p| p == u64::from(child));
        ensure!(
            pids.first() == Some(&u64::from(parent.pid()))
                && first_child.is_some_and(|at| pids[at..].iter().all(|&p| p == u64::from(child))),
            "the parent's threads, then the child's: pids {pids:?}\n{}",
            out.describe()
        );
        let frames_of = |pid: u32| -> Vec<(String, String, i64)> {
            threads
                .iter()
                .filter(|t| t["pid"].as_u64() == Some(u64::from(pid)))
                .flat_map(|t| t["frames"].as_array().cloned().unwrap_or_default())
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or("").to_string(),
                        f["filename"].as_str().unwrap_or("").to_string(),
                        f["line"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        };
        let has = |frames: &[(String, String, i64)], name: &str, file: &Path, line: u32| {
            frames
                .iter()
                .any(|(n, f, l)| n == name && Path::new(f) == file && *l == i64::from(line))
        };
        let parent_frames = frames_of(parent.pid());
        let child_frames = frames_of(child);
        // (The parent may still be between its "ready" and `wait_child`.)
        ensure!(
            parent_frames
                .iter()
                .any(|(_, f, _)| Path::new(f) == spawner)
                && !parent_frames.iter().any(|(_, f, _)| Path::new(f) == busy)
                && has(&child_frames, "level_b", &busy, line_of("busy.py", "busy"))
                && has(
                    &child_frames,
                    "level_a",
                    &busy,
                    line_of("busy.py", "call_b")
                ),
            "parent frames {parent_frames:?}\nchild frames {child_frames:?}"
        );
        let command_line = |pid: u32| {
            threads
                .iter()
                .find(|t| t["pid"].as_u64() == Some(u64::from(pid)))
                .and_then(|t| t["process_info"]["command_line"].as_str())
                .unwrap_or("")
                .to_string()
        };
        ensure!(
            command_line(parent.pid()).ends_with("spawner.py")
                && command_line(child).ends_with("busy.py"),
            "command lines: parent {:?}, child {:?}",
            command_line(parent.pid()),
            command_line(child)
        );
        // The text form: one header per process, the parent's first.
        let text = pyspy(&["dump", "--pid", &pid, "-s"])?.ok()?;
        let at = |pid: u32| text.stdout.find(&format!("Process {pid}: "));
        ensure!(
            matches!((at(parent.pid()), at(child)), (Some(p), Some(c)) if p < c),
            "headers of parent {} and child {child}:\n{}",
            parent.pid(),
            text.describe()
        );
        Ok(())
    });
}

/// A process in a container's cgroup: its dump names the container (`process_info.container_id`),
/// read from /proc/PID/cgroup when the sampler met the process. The test makes such a cgroup
/// itself, named as docker's systemd driver names them, and moves a Python process into it.
#[test]
fn dump_names_the_container_a_process_runs_in() {
    if !root_test_can_run(
        "dump_container",
        "moving a process into a cgroup needs root",
    ) {
        return;
    }
    const ID: &str = "5e1f0c2a9b8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    let interp = interpreters().pop().expect("an interpreter");
    let running = interp.start("busy.py", &[]).unwrap();
    running.wait_ready().unwrap();
    let cgroup = ScopedCgroup::create(&format!("docker-{ID}.scope"), running.pid());
    let dump = pyspy(&["dump", "--pid", &running.pid().to_string(), "--json"])
        .unwrap()
        .ok()
        .unwrap();
    let threads: Vec<serde_json::Value> = serde_json::from_str(&dump.stdout).unwrap();
    let ids: Vec<&serde_json::Value> = threads
        .iter()
        .map(|t| &t["process_info"]["container_id"])
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| id.as_str() == Some(ID)),
        "container ids {ids:?} (cgroup {}):\n{}",
        cgroup.0.display(),
        dump.describe()
    );
    // A process outside it has none.
    let outside = interp.start("busy.py", &[]).unwrap();
    outside.wait_ready().unwrap();
    let dump = pyspy(&["dump", "--pid", &outside.pid().to_string(), "--json"])
        .unwrap()
        .ok()
        .unwrap();
    let threads: Vec<serde_json::Value> = serde_json::from_str(&dump.stdout).unwrap();
    assert!(
        threads
            .iter()
            .all(|t| t["process_info"]["container_id"].is_null()),
        "{}",
        dump.describe()
    );
    drop(running);
}

/// A cgroup made for a test in the first writable hierarchy (cgroup v2's, else a v1
/// controller's), holding one process; removed when dropped (the process must be gone by
/// then: a cgroup with a process in it cannot be removed, so its process is moved out first).
struct ScopedCgroup(PathBuf);

impl ScopedCgroup {
    fn create(name: &str, pid: u32) -> ScopedCgroup {
        let roots = [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup/pids",
        ];
        let mut tried = Vec::new();
        for root in roots {
            let root = Path::new(root);
            if !root.join("cgroup.procs").exists() {
                continue;
            }
            let dir = root.join(name);
            match std::fs::create_dir(&dir)
                .and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string()))
            {
                Ok(()) => return ScopedCgroup(dir),
                Err(e) => {
                    let _ = std::fs::remove_dir(&dir);
                    tried.push(format!("{}: {e}", dir.display()));
                }
            }
        }
        panic!("no cgroup hierarchy to make a test cgroup in: {tried:?}");
    }
}

impl Drop for ScopedCgroup {
    fn drop(&mut self) {
        let parent = self.0.parent().expect("a cgroup under a hierarchy");
        if let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write(parent.join("cgroup.procs"), pid);
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}
