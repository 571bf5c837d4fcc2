//! Who started whom, for `--subprocesses`: each process seen under the profiled root, with
//! its parent and command line, so a profile can show children under their parents as
//! py-spy does. Read from /proc when a process is first seen: a child often exits long
//! before the profile is written, and its parent may exit before it (the kernel then
//! re-parents it to init or a subreaper, which is no process of the tree).

use std::collections::BTreeMap;

use super::proc;
use crate::model::ProcessNode;

/// Longest command line kept per process, in characters (a shell loop's `-c` script can be
/// kilobytes; a frame name is no place for it).
const MAX_COMMAND_LINE: usize = 200;
/// Most ancestors followed from a process up to the root: a tree deeper than this is cut.
const MAX_DEPTH: usize = 64;
/// Most processes remembered: past it, new processes are shown without their place in the
/// tree (a fork bomb under `-s` must not grow the profiler without bound).
const MAX_PROCESSES: usize = 65_536;

/// The process tree under `root`, built as processes are seen.
#[derive(Debug)]
pub struct Lineage {
    root: u32,
    nodes: BTreeMap<u32, ProcessNode>,
}

impl Lineage {
    pub fn new(root: u32) -> Self {
        let mut lineage = Lineage {
            root,
            nodes: BTreeMap::new(),
        };
        lineage.insert(root, None);
        lineage
    }

    /// Place `pid` in the tree (once per process; later calls are a map lookup). Its
    /// ancestors up to the root are placed with it; a process whose chain does not lead to
    /// the root (a parent in between exited, or it was read too late) goes directly under
    /// the root.
    pub fn observe(&mut self, pid: u32) {
        if self.nodes.contains_key(&pid) || self.nodes.len() >= MAX_PROCESSES {
            return;
        }
        let mut chain = vec![pid];
        let mut reaches_root = false;
        let mut current = pid;
        while chain.len() <= MAX_DEPTH {
            let Some(parent) = proc::parent(current) else {
                break;
            };
            if parent == self.root || self.nodes.contains_key(&parent) {
                chain.push(parent);
                reaches_root = true;
                break;
            }
            if parent <= 1 || chain.contains(&parent) {
                break;
            }
            chain.push(parent);
            current = parent;
        }
        if !reaches_root {
            self.insert(pid, Some(self.root));
            return;
        }
        // chain: pid, its parent, ..., a known process. Insert from the top down.
        for pair in chain.windows(2).rev() {
            let (child, parent) = (pair[0], pair[1]);
            if !self.nodes.contains_key(&child) && self.nodes.len() < MAX_PROCESSES {
                self.insert(child, Some(parent));
            }
        }
    }

    fn insert(&mut self, pid: u32, parent: Option<u32>) {
        let command_line = proc::cmdline(pid)
            .ok()
            .filter(|args| !args.is_empty())
            .map(|args| bounded(&args.join(" ")))
            .or_else(|| proc::comm(pid).ok().map(|comm| format!("[{comm}]")))
            .unwrap_or_else(|| "?".to_string());
        self.nodes.insert(
            pid,
            ProcessNode {
                parent,
                command_line,
            },
        );
    }

    /// The tree, for `ProfileMeta::processes`.
    pub fn into_nodes(self) -> BTreeMap<u32, ProcessNode> {
        self.nodes
    }
}

/// `text` cut to `MAX_COMMAND_LINE` characters, marked with `...` where cut.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_COMMAND_LINE) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// `pid` and its ancestors in `nodes`, root first (bounded, safe against a cycle in a
/// damaged table).
pub fn ancestry(nodes: &BTreeMap<u32, ProcessNode>, pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut current = pid;
    while let Some(parent) = nodes.get(&current).and_then(|n| n.parent) {
        if out.len() > MAX_DEPTH || out.contains(&parent) {
            break;
        }
        out.push(parent);
        current = parent;
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn places_a_grandchild_under_its_parent_and_the_root() {
        // this test process -> sh -> sleep
        let mut sh = Command::new("sh")
            .args(["-c", "sleep 5 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(sh.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleep: u32 = line.trim().parse().unwrap();
        // `$!` is known right after the fork, before the child has exec'd `sleep`.
        for _ in 0..200 {
            if proc::cmdline(sleep).is_ok_and(|args| args.first().is_some_and(|a| a == "sleep")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let me = std::process::id();
        let mut lineage = Lineage::new(me);
        lineage.observe(sleep);
        let nodes = lineage.into_nodes();
        assert_eq!(ancestry(&nodes, sleep), vec![me, sh.id(), sleep]);
        assert_eq!(nodes[&sleep].command_line, "sleep 5");
        assert!(nodes[&sh.id()].command_line.starts_with("sh -c sleep 5"));
        assert_eq!(nodes[&me].parent, None);
        let _ = Command::new("kill").arg(sleep.to_string()).status();
        let _ = sh.wait();
    }

    #[test]
    fn a_process_outside_the_tree_goes_under_the_root() {
        let mut lineage = Lineage::new(std::process::id());
        lineage.observe(1); // init: its chain never reaches us
        let nodes = lineage.into_nodes();
        assert_eq!(nodes[&1].parent, Some(std::process::id()));
    }

    #[test]
    fn command_lines_are_bounded_and_ancestry_survives_cycles() {
        let long = "x".repeat(1000);
        assert_eq!(bounded(&long).chars().count(), MAX_COMMAND_LINE + 3);
        assert_eq!(bounded("python3 a.py"), "python3 a.py");
        let mut nodes = BTreeMap::new();
        let node = |parent| ProcessNode {
            parent: Some(parent),
            command_line: String::new(),
        };
        nodes.insert(1, node(2));
        nodes.insert(2, node(1));
        assert_eq!(ancestry(&nodes, 1), vec![2, 1]);
        assert_eq!(ancestry(&nodes, 9), vec![9]);
    }
}
