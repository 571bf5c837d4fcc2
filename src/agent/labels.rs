//! Service inference: the labels the fleet agent attaches to each profiled process (service
//! name and where it came from, container id, executable), decided once per process.
//!
//! Every input here is controlled by the target (its environment, its command line, the
//! cgroup names a container runtime chose), so each reader is bounded, never panics on
//! garbage, and every name it returns is cleaned by `clean_name`.

use std::borrow::Cow;
use std::io::Read;

use crate::process::cgroup::{self, container_id, systemd_unit};
use crate::process::proc;

/// Where a process's service name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSource {
    Environment,
    SystemdUnit,
    Container,
    CommandLine,
    Executable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLabels {
    pub service_name: String,
    pub source: ServiceSource,
    pub container_id: Option<String>,
    /// executable's file name (from /proc/PID/exe's target file name, else comm)
    pub process: String,
}

/// The longest service or process name we return, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// How much of `/proc/PID/environ` is scanned: a process can carry megabytes of environment,
/// and the variables we look for are set by whoever started it, near the front.
const MAX_ENVIRON: usize = 1 << 20;
/// How much of `/proc/PID/cmdline` is read: only the first few arguments matter.
const MAX_CMDLINE: usize = 64 << 10;
/// Arguments looked at when skipping interpreter options.
const MAX_ARGS: usize = 256;
/// Length of a container id's short form (as `docker ps` shows it).
const SHORT_ID_LEN: usize = 12;
/// Names when nothing better is known (a kernel thread, an unreadable exe and comm).
const UNKNOWN: &str = "unknown";

/// Pure: infer from the raw contents of /proc/PID/environ (NUL-separated), /proc/PID/cgroup, /proc/PID/cmdline (NUL-separated) and the exe file name.
pub fn infer(environ: &[u8], cgroup: &str, cmdline: &[u8], exe_name: &str) -> ProcessLabels {
    let container_id = container_id(cgroup);
    let process = clean_name(exe_name).unwrap_or_else(|| UNKNOWN.to_string());
    let named = |source: ServiceSource| move |raw: String| (raw, source);
    let (service_name, source) = from_environment(environ)
        .map(named(ServiceSource::Environment))
        .or_else(|| systemd_unit(cgroup).map(named(ServiceSource::SystemdUnit)))
        .or_else(|| {
            let short = container_id.as_deref()?.get(..SHORT_ID_LEN)?;
            Some((format!("container:{short}"), ServiceSource::Container))
        })
        .or_else(|| from_command_line(cmdline).map(named(ServiceSource::CommandLine)))
        .and_then(|(raw, source)| Some((clean_name(&raw)?, source)))
        .unwrap_or_else(|| (format!("python:{process}"), ServiceSource::Executable));
    ProcessLabels {
        service_name,
        source,
        container_id,
        process,
    }
}

/// Reads those files for a live pid (environ needs root; a read failure is treated as empty) and calls `infer`.
pub fn for_process(pid: u32) -> ProcessLabels {
    let environ = read_bounded(pid, "environ", MAX_ENVIRON);
    let cgroup = cgroup::read(pid);
    let cmdline = read_bounded(pid, "cmdline", MAX_CMDLINE);
    let exe = proc::exe(pid)
        .ok()
        .and_then(|path| exe_file_name(&path.to_string_lossy()).map(str::to_string))
        .or_else(|| proc::comm(pid).ok())
        .unwrap_or_default();
    infer(&environ, &cgroup, &cmdline, &exe)
}

/// At most `max` bytes of `/proc/PID/<what>`; empty when it cannot be read (a process that
/// exited, or `environ` without root), since a missing label is better than no profile.
fn read_bounded(pid: u32, what: &str, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/{what}"))
        .and_then(|file| file.take(max as u64).read_to_end(&mut buf));
    if read.is_err() {
        buf.clear();
    }
    buf
}

/// The file name of an exe link's target, without the ` (deleted)` the kernel appends when
/// the binary was replaced on disk (a package upgrade under a running service).
fn exe_file_name(target: &str) -> Option<&str> {
    let target = target.strip_suffix(" (deleted)").unwrap_or(target);
    file_name(target)
}

/// `PYROSCOPE_APPLICATION_NAME`, else `OTEL_SERVICE_NAME`, else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`; each the first occurrence (as `getenv` sees it), non-empty.
fn from_environment(environ: &[u8]) -> Option<String> {
    let mut environ = environ;
    if environ.len() > MAX_ENVIRON {
        // Drop the entry the cut went through: half a value is a wrong name.
        let cut = &environ[..MAX_ENVIRON];
        environ = &cut[..cut.iter().rposition(|&b| b == 0).unwrap_or(0)];
    }
    let (mut pyroscope, mut otel, mut attributes) = (None, None, None);
    for entry in environ.split(|&b| b == 0) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let slot = match &entry[..eq] {
            b"PYROSCOPE_APPLICATION_NAME" => &mut pyroscope,
            b"OTEL_SERVICE_NAME" => &mut otel,
            b"OTEL_RESOURCE_ATTRIBUTES" => &mut attributes,
            _ => continue,
        };
        slot.get_or_insert(&entry[eq + 1..]);
    }
    let non_empty = |value: &[u8]| {
        let value = String::from_utf8_lossy(value).trim().to_string();
        (!value.is_empty()).then_some(value)
    };
    pyroscope
        .and_then(non_empty)
        .or_else(|| otel.and_then(non_empty))
        .or_else(|| attributes.and_then(service_from_attributes))
}

/// `service.name` in an `OTEL_RESOURCE_ATTRIBUTES` value (`k=v,k=v`, values percent-encoded).
fn service_from_attributes(value: &[u8]) -> Option<String> {
    String::from_utf8_lossy(value).split(',').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if key.trim() != "service.name" {
            return None;
        }
        let value = percent_decode(value.trim());
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// `%XX` escapes decoded; a `%` not followed by two hex digits is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = bytes
            .get(at + 1..at + 3)
            .filter(|hex| bytes[at] == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `python:<module | script | program>` from the command line, `None` when it is empty.
fn from_command_line(cmdline: &[u8]) -> Option<String> {
    let args = split_args(cmdline);
    // A title set with setproctitle ("gunicorn: worker [app]") names the program first.
    let program = file_name(args.first()?)?.trim_end_matches(':');
    if program.is_empty() {
        return None;
    }
    if !is_python(program) {
        return Some(format!("python:{program}"));
    }
    let target = python_target(&args[1..]);
    Some(format!("python:{}", target.as_deref().unwrap_or(program)))
}

/// The arguments, bounded. A lone argument with spaces is a title written over argv
/// (setproctitle), split at whitespace like the command line it imitates.
fn split_args(cmdline: &[u8]) -> Vec<Cow<'_, str>> {
    let cmdline = &cmdline[..cmdline.len().min(MAX_CMDLINE)];
    let mut args: Vec<Cow<str>> = cmdline
        .split(|&b| b == 0)
        .take(MAX_ARGS)
        .map(String::from_utf8_lossy)
        .collect();
    // The kernel's trailing NUL, or a title's zeroed tail, leaves empty arguments at the end.
    while args.last().is_some_and(|arg| arg.is_empty()) {
        args.pop();
    }
    if let [only] = args.as_slice() {
        if only.contains(' ') {
            let title = only.to_string();
            return title
                .split_whitespace()
                .take(MAX_ARGS)
                .map(|word| Cow::Owned(word.to_string()))
                .collect();
        }
    }
    args
}

/// Whether a program's file name is a CPython interpreter: `python`, `pythonw`, `python3`,
/// `python3.11`, `python2.7`, `python3.13t`, `python3.6m`, `python3.13d`...
fn is_python(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("python") else {
        return false;
    };
    if rest.is_empty() || rest == "w" {
        return true;
    }
    let version_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (version, abi_flags) = rest.split_at(version_end);
    let mut numbers = version.split('.');
    let numbers_ok = numbers.next().is_some_and(is_number)
        && numbers.next().is_none_or(is_number)
        && numbers.next().is_none();
    numbers_ok && abi_flags.len() <= 3 && abi_flags.chars().all(|c| "dmtu".contains(c))
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// What the interpreter runs: `-m`'s module, `-c` (as `-c`), `-` (stdin) or the script's
/// file name without `.py`, skipping interpreter options. `None` for a bare REPL.
fn python_target(args: &[Cow<str>]) -> Option<String> {
    let mut next = 0;
    while let Some(arg) = args.get(next) {
        next += 1;
        if arg == "-" {
            return Some("-".to_string());
        }
        if arg == "--" {
            return args.get(next).and_then(|script| script_name(script));
        }
        if let Some(long) = arg.strip_prefix("--") {
            // The one long option with a separate value.
            if long == "check-hash-based-pycs" {
                next += 1;
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-') else {
            return script_name(arg);
        };
        // Short options cluster (`-uB`, `-um mod`, `-Xdev`): the first that takes a value
        // takes the rest of the argument, or the next argument.
        for (at, flag) in flags.char_indices() {
            let attached = &flags[at + flag.len_utf8()..];
            match flag {
                'm' if attached.is_empty() => {
                    return args
                        .get(next)
                        .filter(|m| !m.is_empty())
                        .map(|m| m.to_string())
                }
                'm' => return Some(attached.to_string()),
                'c' => return Some("-c".to_string()),
                'X' | 'W' => {
                    if attached.is_empty() {
                        next += 1;
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    None
}

/// A script's file name without `.py` (`/srv/app/main.py` -> `main`).
fn script_name(path: &str) -> Option<String> {
    let name = file_name(path)?;
    let name = name.strip_suffix(".py").unwrap_or(name);
    (!name.is_empty()).then(|| name.to_string())
}

/// The last component of a path (`/usr/bin/python3` -> `python3`; `app/` -> `app`).
fn file_name(path: &str) -> Option<&str> {
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// A name fit for a label: surrounding space trimmed, any character that is not printable,
/// non-blank ASCII replaced by `_` (control characters, spaces, U+FFFD from invalid UTF-8),
/// at most `MAX_NAME_LEN` bytes. `None` when nothing is left. Sinks escape their own syntax.
fn clean_name(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .chars()
        .take(MAX_NAME_LEN)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef";
    const UID: &str = "0f3c1a2b-1234-4cde-8f00-123456789abc";

    fn env(vars: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for var in vars {
            out.extend_from_slice(var.as_bytes());
            out.push(0);
        }
        out
    }

    fn argv(args: &[&str]) -> Vec<u8> {
        env(args)
    }

    fn service_of(cmd: &[&str]) -> String {
        let labels = infer(b"", "0::/", &argv(cmd), "python3.11");
        assert_eq!(labels.source, ServiceSource::CommandLine, "{cmd:?}");
        labels.service_name
    }

    // --- rule 1: environment ---

    #[test]
    fn pyroscope_name_beats_otel() {
        let environ = env(&["OTEL_SERVICE_NAME=otel", "PYROSCOPE_APPLICATION_NAME=pyro"]);
        let labels = infer(&environ, "0::/", &argv(&["python3", "x.py"]), "python3");
        assert_eq!(labels.service_name, "pyro");
        assert_eq!(labels.source, ServiceSource::Environment);
    }

    #[test]
    fn otel_service_name_beats_resource_attributes() {
        let environ = env(&[
            "OTEL_RESOURCE_ATTRIBUTES=service.name=attr",
            "OTEL_SERVICE_NAME=otel",
        ]);
        assert_eq!(infer(&environ, "", b"", "p").service_name, "otel");
    }

    #[test]
    fn resource_attributes_service_name() {
        let environ = env(&[
            "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod, service.name = my%20api ,x=y",
        ]);
        let labels = infer(&environ, "", b"", "p");
        assert_eq!(labels.service_name, "my_api");
        assert_eq!(labels.source, ServiceSource::Environment);
        let no_name = env(&["OTEL_RESOURCE_ATTRIBUTES=service.namespace=a,service.name="]);
        assert_eq!(
            infer(&no_name, "", b"", "p").source,
            ServiceSource::Executable
        );
    }

    #[test]
    fn empty_or_lookalike_variables_are_ignored() {
        let environ = env(&[
            "PYROSCOPE_APPLICATION_NAME=",
            "XOTEL_SERVICE_NAME=no",
            "OTEL_SERVICE_NAME_X=no",
            "OTEL_SERVICE_NAME=  ",
            "junk-without-equals",
        ]);
        let labels = infer(&environ, "", &argv(&["python3", "-m", "app"]), "python3");
        assert_eq!(labels.service_name, "python:app");
        assert_eq!(labels.source, ServiceSource::CommandLine);
    }

    #[test]
    fn first_occurrence_wins_like_getenv() {
        let environ = env(&["OTEL_SERVICE_NAME=first", "OTEL_SERVICE_NAME=second"]);
        assert_eq!(infer(&environ, "", b"", "p").service_name, "first");
    }

    #[test]
    fn environment_beats_systemd_and_container_but_container_id_is_kept() {
        let environ = env(&["OTEL_SERVICE_NAME=svc"]);
        let unit = infer(&environ, "0::/system.slice/foo.service\n", b"", "p");
        assert_eq!(
            (unit.service_name.as_str(), unit.source),
            ("svc", ServiceSource::Environment)
        );
        let cgroup = format!("0::/system.slice/docker-{ID}.scope\n");
        let labels = infer(&environ, &cgroup, b"", "p");
        assert_eq!(labels.service_name, "svc");
        assert_eq!(labels.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn environ_scan_is_bounded() {
        let mut environ = vec![b'A'; MAX_ENVIRON + 10];
        environ.extend_from_slice(&env(&["\0OTEL_SERVICE_NAME=late"]));
        assert_eq!(
            infer(&environ, "", b"", "p").source,
            ServiceSource::Executable
        );
        // An entry the cut goes through is dropped, not truncated into a wrong name.
        let mut straddling = env(&["A=b"]);
        straddling.extend_from_slice(b"OTEL_SERVICE_NAME=");
        straddling.resize(MAX_ENVIRON + 5, b'x');
        assert_eq!(
            infer(&straddling, "", b"", "p").source,
            ServiceSource::Executable
        );
    }

    // --- rule 2: systemd ---

    #[test]
    fn system_service() {
        assert_eq!(
            systemd_unit("0::/system.slice/foo.service\n").as_deref(),
            Some("foo")
        );
        let labels = infer(
            b"",
            "0::/system.slice/foo.service\n",
            &argv(&["python3", "a.py"]),
            "p",
        );
        assert_eq!(
            (labels.service_name.as_str(), labels.source),
            ("foo", ServiceSource::SystemdUnit)
        );
        assert_eq!(labels.container_id, None);
    }

    #[test]
    fn user_service_is_the_innermost_not_the_user_manager() {
        let cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/bar.service\n";
        assert_eq!(systemd_unit(cgroup).as_deref(), Some("bar"));
        let manager = "0::/user.slice/user-1000.slice/user@1000.service/init.scope\n";
        assert_eq!(systemd_unit(manager), None);
        let manager_itself = "0::/user.slice/user-1000.slice/user@1000.service\n";
        assert_eq!(systemd_unit(manager_itself), None);
    }

    #[test]
    fn template_instance_is_its_template() {
        assert_eq!(
            systemd_unit("0::/system.slice/foo@1.service").as_deref(),
            Some("foo")
        );
        let getty = "0::/system.slice/system-getty.slice/getty@tty1.service";
        assert_eq!(systemd_unit(getty).as_deref(), Some("getty"));
    }

    #[test]
    fn cgroup_v1_lines() {
        let cgroup =
            "12:pids:/system.slice/foo.service\n1:name=systemd:/system.slice/foo.service\n0::/\n";
        assert_eq!(systemd_unit(cgroup).as_deref(), Some("foo"));
    }

    #[test]
    fn scopes_and_services_outside_slices_are_not_services() {
        assert_eq!(
            systemd_unit("0::/user.slice/user-1000.slice/session-3.scope"),
            None
        );
        assert_eq!(systemd_unit("0::/foo.service"), None);
        assert_eq!(systemd_unit("0::/init.scope"), None);
        assert_eq!(systemd_unit("0::/system.slice/.service"), None);
        assert_eq!(systemd_unit("0::/system.slice/foo.service/sub.scope"), None);
        // A sub-cgroup a service made for itself is still the service.
        assert_eq!(
            systemd_unit("0::/system.slice/foo.service/worker").as_deref(),
            Some("foo")
        );
    }

    #[test]
    fn runtime_service_does_not_name_its_containers() {
        let docker = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(systemd_unit(&docker), None);
        let kind = format!(
            "0::/system.slice/containerd.service/kubepods-besteffort-pod{}.slice:cri-containerd:{ID}\n",
            UID.replace('-', "_")
        );
        assert_eq!(systemd_unit(&kind), None);
        assert_eq!(container_id(&kind).as_deref(), Some(ID));
        let labels = infer(b"", &kind, b"", "p");
        assert_eq!(labels.source, ServiceSource::Container);
    }

    #[test]
    fn systemd_inside_a_container_names_the_service_and_keeps_the_id() {
        let cgroup = format!("0::/system.slice/docker-{ID}.scope/system.slice/nginx.service\n");
        let labels = infer(b"", &cgroup, b"", "p");
        assert_eq!(
            (labels.service_name.as_str(), labels.source),
            ("nginx", ServiceSource::SystemdUnit)
        );
        assert_eq!(labels.container_id.as_deref(), Some(ID));
    }

    // --- rule 3: containers ---

    #[test]
    fn container_layouts() {
        let layouts = [
            format!("12:cpu,cpuacct:/docker/{ID}\n"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
            format!("0::/system.slice/containerd-{ID}.scope\n"),
            format!("0::/system.slice/cri-containerd-{ID}.scope\n"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID}.slice/crio-{ID}.scope\n"),
            format!("0::/machine.slice/libpod-{ID}.scope\n"),
            format!("0::/machine.slice/libpod-{ID}.scope/container\n"),
            format!("0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container\n"),
            format!("11:memory:/kubepods/burstable/pod{UID}/{ID}\n"),
            format!("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{ID}.scope\n", UID.replace('-', "_")),
        ];
        for cgroup in &layouts {
            assert_eq!(container_id(cgroup).as_deref(), Some(ID), "{cgroup}");
            let labels = infer(b"", cgroup, &argv(&["python3", "app.py"]), "python3");
            assert_eq!(
                labels.service_name,
                format!("container:{}", &ID[..12]),
                "{cgroup}"
            );
            assert_eq!(labels.source, ServiceSource::Container, "{cgroup}");
        }
    }

    #[test]
    fn innermost_container_wins() {
        let outer = "a".repeat(64);
        let cgroup = format!("0::/docker/{outer}/docker/{ID}\n");
        assert_eq!(container_id(&cgroup).as_deref(), Some(ID));
    }

    #[test]
    fn not_container_ids() {
        let upper = ID.to_uppercase();
        let cases = [
            format!("0::/kubepods.slice/crio-conmon-{ID}.scope\n"),
            format!("0::/machine.slice/libpod-conmon-{ID}.scope\n"),
            format!("0::/docker/{upper}\n"),
            format!("0::/docker/{}\n", &ID[..63]),
            format!("0::/docker/{ID}0\n"),
            format!("0::/system.slice/docker-{}.scope\n", &ID[..63]),
            format!("0::/kubepods/burstable/pod{UID}\n"),
            "0::/system.slice/docker.service\n".to_string(),
            "garbage without colons".to_string(),
        ];
        for cgroup in &cases {
            assert_eq!(container_id(cgroup), None, "{cgroup}");
        }
        let docker_daemon = infer(b"", "0::/system.slice/docker.service\n", b"", "dockerd");
        assert_eq!(docker_daemon.service_name, "docker");
    }

    #[test]
    fn container_beats_command_line() {
        let cgroup = format!("0::/docker/{ID}\n");
        let labels = infer(b"", &cgroup, &argv(&["python3", "-m", "app"]), "python3");
        assert_eq!(labels.source, ServiceSource::Container);
    }

    // --- rule 4: command line ---

    #[test]
    fn module_and_script() {
        assert_eq!(
            service_of(&["python3", "-m", "app.server"]),
            "python:app.server"
        );
        assert_eq!(
            service_of(&["python3", "/srv/app/main.py", "--x"]),
            "python:main"
        );
        assert_eq!(
            service_of(&["/usr/bin/python3.11", "manage"]),
            "python:manage"
        );
        assert_eq!(service_of(&["python3", "app/"]), "python:app");
    }

    #[test]
    fn interpreter_options_are_skipped() {
        assert_eq!(
            service_of(&["python3", "-u", "-O", "-B", "-E", "main.py"]),
            "python:main"
        );
        assert_eq!(
            service_of(&["python3", "-X", "dev", "-W", "ignore", "main.py"]),
            "python:main"
        );
        assert_eq!(
            service_of(&["python3", "-Xfrozen_modules=off", "-Wd", "main.py"]),
            "python:main"
        );
        assert_eq!(
            service_of(&["python3", "-OO", "-uB", "main.py"]),
            "python:main"
        );
        assert_eq!(
            service_of(&["python3", "--check-hash-based-pycs", "never", "main.py"]),
            "python:main"
        );
        assert_eq!(
            service_of(&["python3", "-I", "--", "-odd.py"]),
            "python:-odd"
        );
        assert_eq!(service_of(&["python3", "-um", "app"]), "python:app");
        assert_eq!(service_of(&["python3", "-mapp.cli"]), "python:app.cli");
    }

    #[test]
    fn code_stdin_and_repl() {
        assert_eq!(service_of(&["python3", "-c", "import x"]), "python:-c");
        assert_eq!(service_of(&["python3", "-uc", "import x"]), "python:-c");
        assert_eq!(service_of(&["python3", "-c", ""]), "python:-c");
        assert_eq!(service_of(&["python3", "-"]), "python:-");
        assert_eq!(service_of(&["python3"]), "python:python3");
        assert_eq!(service_of(&["python3", "-m"]), "python:python3");
        assert_eq!(service_of(&["python3", "-X"]), "python:python3");
    }

    #[test]
    fn interpreter_names() {
        for name in [
            "python",
            "pythonw",
            "python3",
            "python3.11",
            "python2.7",
            "python3.13t",
            "python3.6m",
            "python3.13d",
            "python310",
        ] {
            assert!(is_python(name), "{name}");
        }
        for name in [
            "pythonista",
            "python3-config",
            "python3.",
            "python.3",
            "python3.11.2.1",
            "pypy3",
            "ipython",
            "python3.11-dbgx",
            "gunicorn",
        ] {
            assert!(!is_python(name), "{name}");
        }
    }

    #[test]
    fn other_programs_are_named_by_their_file() {
        assert_eq!(service_of(&["gunicorn", "app:app"]), "python:gunicorn");
        assert_eq!(service_of(&["/venv/bin/celery", "worker"]), "python:celery");
        // A title written over argv by setproctitle.
        assert_eq!(
            service_of(&["gunicorn: worker [app:app]", "", ""]),
            "python:gunicorn"
        );
        assert_eq!(service_of(&["python3 -m app.worker"]), "python:app.worker");
    }

    // --- rule 5: executable ---

    #[test]
    fn empty_command_line_uses_the_executable() {
        for cmdline in [&b""[..], b"\0", b"\0\0\0", b"/\0x"] {
            let labels = infer(b"", "0::/\n", cmdline, "python3.12");
            assert_eq!(labels.service_name, "python:python3.12", "{cmdline:?}");
            assert_eq!(labels.source, ServiceSource::Executable);
            assert_eq!(labels.process, "python3.12");
        }
        let nothing = infer(b"", "", b"", "");
        assert_eq!(
            (nothing.service_name.as_str(), nothing.process.as_str()),
            ("python:unknown", "unknown")
        );
    }

    #[test]
    fn exe_link_names() {
        assert_eq!(exe_file_name("/usr/bin/python3.11"), Some("python3.11"));
        assert_eq!(
            exe_file_name("/usr/bin/python3.11 (deleted)"),
            Some("python3.11")
        );
        assert_eq!(exe_file_name(""), None);
    }

    #[test]
    fn live_process_reads_itself() {
        let labels = for_process(std::process::id());
        assert!(!labels.process.is_empty());
        assert!(labels.service_name.len() <= MAX_NAME_LEN);
        // A pid that cannot exist: everything unreadable, still labels.
        let gone = for_process(u32::MAX);
        assert_eq!(gone.source, ServiceSource::Executable);
    }

    // --- garbage ---

    #[test]
    fn names_are_cleaned_and_bounded() {
        let long = format!("OTEL_SERVICE_NAME={}", "x".repeat(10_000));
        let labels = infer(&env(&[&long]), "", b"", "p");
        assert_eq!(labels.service_name.len(), MAX_NAME_LEN);
        let odd = env(&["OTEL_SERVICE_NAME=a b\tc\x1b[31m\u{e9}"]);
        assert_eq!(infer(&odd, "", b"", "p").service_name, "a_b_c_[31m_");
        let script = argv(&["python3", "/srv/\u{7f}evil\nname.py"]);
        assert_eq!(
            infer(b"", "", &script, "p").service_name,
            "python:_evil_name"
        );
        assert_eq!(infer(b"", "", b"", "bad\nexe").process, "bad_exe");
    }

    #[test]
    fn invalid_utf8_and_huge_inputs_do_not_panic() {
        let junk: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        let cgroup = String::from_utf8_lossy(&junk);
        let labels = infer(&junk, &cgroup, &junk, "\u{fffd}");
        assert!(labels.service_name.len() <= MAX_NAME_LEN);
        assert!(labels.service_name.bytes().all(|b| b.is_ascii_graphic()));
        let invalid = [b'O', b'T', 0xff, 0xfe, b'=', 0xc3, 0, 0xc3];
        infer(&invalid, ":::\n::\n:", &invalid, "");
        let deep = format!("0::/{}", "system.slice/".repeat(1000));
        assert_eq!(systemd_unit(&deep), None);
        let many_args: Vec<u8> = b"python3\0"
            .iter()
            .chain(&b"-u\0".repeat(100_000))
            .copied()
            .collect();
        assert_eq!(
            infer(b"", "", &many_args, "p").service_name,
            "python:python3"
        );
        let bad_percent = env(&["OTEL_RESOURCE_ATTRIBUTES=service.name=%zz%4%\u{e9}%41"]);
        assert_eq!(infer(&bad_percent, "", b"", "p").service_name, "%zz%4%_A");
    }
}
