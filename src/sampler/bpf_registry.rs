//! What the BPF program knows of the Python processes it walks: each one's layout
//! (`bpf_layout`) and its threads' thread states, registered when user space first reads the
//! process, kept in step with its thread list, and removed when its pid is reused or it exits.

use std::collections::HashMap;

use crate::bpf::BpfSampler;
use crate::model::Addr;
use crate::python::PythonProcess;
use crate::sampler::bpf_layout::layout_for;

/// What the BPF program has been told about each Python process (its layout and threads), so
/// that it walks their frames itself: registered when user space first reads a process,
/// kept in step with its thread list, removed when the pid is reused or the process exits.
#[derive(Default)]
pub struct WalkRegistry {
    /// pid -> the registration of the `Entry` with this serial.
    processes: HashMap<u32, Registered>,
}

struct Registered {
    serial: u64,
    /// `thread_states_generation` of the threads registered; `None`: the layout was refused.
    generation: Option<u64>,
    tids: Vec<u32>,
}

impl WalkRegistry {
    /// Make the BPF program's view of Python process `pid` (entry `serial`) match `process`.
    pub fn sync(&mut self, sampler: &BpfSampler, pid: u32, serial: u64, process: &PythonProcess) {
        if self.processes.get(&pid).is_some_and(|r| r.serial != serial) {
            self.forget(sampler, pid);
        }
        let generation = process.thread_states_generation();
        if generation == 0 {
            return; // no full read yet: no threads to register
        }
        let registered = match self.processes.entry(pid) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let layout = layout_for(&process.interpreter.offsets, process.interpreter.gil)
                    .and_then(|layout| {
                        sampler
                            .set_python_layout(pid, &layout)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = &layout {
                    log::info!("pid {pid}: Python frames are read by user space only: {e}");
                }
                v.insert(Registered {
                    serial,
                    generation: layout.ok().map(|()| u64::MAX),
                    tids: Vec::new(),
                })
            }
        };
        if registered.generation.is_none_or(|g| g == generation) {
            return;
        }
        let now: HashMap<u32, Addr> = process.thread_state_addrs().collect();
        for &tid in registered.tids.iter().filter(|t| !now.contains_key(*t)) {
            sampler.remove_python_thread(pid, tid);
        }
        registered.tids.clear();
        let threads: Vec<(u32, Addr)> = now.into_iter().collect();
        match sampler.set_python_threads(pid, &threads) {
            Ok(()) => registered.tids.extend(threads.iter().map(|&(tid, _)| tid)),
            // One by one then: what fails stays unregistered (its samples are read by user
            // space and counted as py_no_thread).
            Err(e) => {
                log::debug!("{e}");
                for &(tid, tstate) in &threads {
                    match sampler.set_python_thread(pid, tid, tstate) {
                        Ok(()) => registered.tids.push(tid),
                        Err(e) => log::debug!("{e}"),
                    }
                }
            }
        }
        registered.generation = Some(generation);
    }

    /// Pid `pid` is not (or no longer) Python as entry `serial`: drop an older registration.
    pub fn sync_native(&mut self, sampler: &BpfSampler, pid: u32, serial: u64) {
        if self.processes.get(&pid).is_some_and(|r| r.serial != serial) {
            self.forget(sampler, pid);
        }
    }

    pub fn forget(&mut self, sampler: &BpfSampler, pid: u32) {
        if let Some(registered) = self.processes.remove(&pid) {
            sampler.remove_python_layout(pid);
            for tid in registered.tids {
                sampler.remove_python_thread(pid, tid);
            }
        }
    }
}
