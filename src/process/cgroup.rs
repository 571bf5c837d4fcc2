//! A process's cgroup, as `/proc/PID/cgroup` names it: the container it runs in (its id, as
//! docker, containerd, cri-o and podman name cgroups) and the systemd service it belongs to.
//! Both come from names the target or its runtime chose: every read is bounded and every
//! parse takes garbage without a panic.

use std::io::Read;

/// How much of `/proc/PID/cgroup` is read (one line per v1 hierarchy, a dozen or so).
pub const MAX_CGROUP: usize = 64 << 10;
const MAX_CGROUP_LINES: usize = 64;
/// A cgroup path is a file system path: longer than `PATH_MAX` is not one.
const MAX_CGROUP_PATH: usize = 4096;
/// Length of a container id (a SHA-256 in hex).
pub const CONTAINER_ID_LEN: usize = 64;
/// What a container runtime puts before the id in a cgroup name (`docker-<id>.scope`).
/// `crio-conmon-<id>` (cri-o's monitor, not the container) fails the id check after `crio-`.
const RUNTIME_PREFIXES: &[&str] = &[
    "docker-",
    "cri-containerd-",
    "containerd-",
    "crio-",
    "libpod-",
];
/// At most `MAX_CGROUP` bytes of `/proc/PID/cgroup`; empty when it cannot be read (the
/// process exited; no cgroup file off Linux).
pub fn read(pid: u32) -> String {
    let mut buf = Vec::new();
    let read = std::fs::File::open(format!("/proc/{pid}/cgroup"))
        .and_then(|file| file.take(MAX_CGROUP as u64).read_to_end(&mut buf));
    if read.is_err() {
        buf.clear();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The container id in a cgroup file's contents, if any.
pub fn container_id(cgroup: &str) -> Option<String> {
    cgroup_paths(cgroup)
        .find_map(|path| path.split('/').rev().find_map(container_in_component))
        .map(str::to_string)
}

/// The systemd service unit name (without ".service") from a cgroup file's contents, if any.
pub fn systemd_unit(cgroup: &str) -> Option<String> {
    cgroup_paths(cgroup).find_map(unit_in_path)
}

/// The path of each line, v1 (`N:controllers:path`) or v2 (`0::path`). The path keeps any
/// `:` of its own (containerd's systemd driver writes `...slice:cri-containerd:<id>`).
fn cgroup_paths(cgroup: &str) -> impl Iterator<Item = &str> {
    cgroup
        .lines()
        .take(MAX_CGROUP_LINES)
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .filter(|path| path.len() <= MAX_CGROUP_PATH)
}

/// The container id one cgroup path component names: `<id>` (docker's cgroupfs driver,
/// kubepods), `<runtime>-<id>.scope` (systemd drivers, podman), or `...:<runtime>:<id>`.
fn container_in_component(component: &str) -> Option<&str> {
    if let Some((_, id)) = component.rsplit_once(':') {
        return is_container_id(id).then_some(id);
    }
    let name = component.strip_suffix(".scope").unwrap_or(component);
    let id = RUNTIME_PREFIXES
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    is_container_id(id).then_some(id)
}

fn is_container_id(id: &str) -> bool {
    id.len() == CONTAINER_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The service unit a cgroup path puts the process in: its innermost unit, when that is a
/// `.service` under `system.slice` or a user slice. Only components inside the innermost
/// container count: outside it a unit names the runtime (`containerd.service` holding a
/// kind node's pods), not the process. A `.scope` innermost (a session, a container,
/// the user manager's `init.scope`) means no service.
fn unit_in_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let start = parts
        .iter()
        .rposition(|part| container_in_component(part).is_some())
        .map_or(0, |at| at + 1);
    let inner = &parts[start..];
    let unit_at = inner
        .iter()
        .rposition(|part| part.ends_with(".service") || part.ends_with(".scope"))?;
    let unit = inner[unit_at].strip_suffix(".service")?;
    let in_slice = inner[..unit_at]
        .iter()
        .any(|part| *part == "system.slice" || is_user_slice(part));
    if !in_slice || unit.starts_with("user@") {
        return None;
    }
    // A template instance (`getty@tty1`) is one service however many instances run.
    let name = unit.split('@').next().unwrap_or(unit);
    (!name.is_empty()).then(|| name.to_string())
}

fn is_user_slice(part: &str) -> bool {
    part == "user.slice" || (part.starts_with("user-") && part.ends_with(".slice"))
}
