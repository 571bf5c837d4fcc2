//! Where asyncio keeps its tasks in a 3.14+ process: `_Py_AsyncioModuleDebugOffsets`, which
//! CPython's `_asyncio` module puts in an ELF section of its own (`.AsyncioDebug`) for
//! out-of-process tools, plus the coroutine, frame and set fields of `_Py_DebugOffsets` and
//! the version's `CoroModel`. The section is in the `_asyncio` extension module when that is
//! built as one (Debian's 3.14) and in the interpreter binary when it is built in (3.15), so
//! every mapped candidate is searched. Every value read is checked to be plausible before
//! anything follows it.

#[cfg(target_os = "linux")]
use std::collections::HashSet;
use std::path::PathBuf;

use super::attach::{Interpreter, InterpreterRoot};
use super::debug_offsets::{debug_field, parse_debug_offsets, DEBUG_OFFSETS_READ_LEN};
use super::offsets::{coro_model_for, CoroModel};
use crate::model::PyVersion;
#[cfg(target_os = "linux")]
use crate::process::elf::{section_range, ElfImage};
#[cfg(target_os = "linux")]
use crate::process::maps::MapRange;
use crate::process::memory::{MemoryError, RemoteMemory};
#[cfg(target_os = "linux")]
use crate::process::proc;
use crate::process::proc::ProcError;

/// The section `GENERATE_DEBUG_SECTION(AsyncioDebug, ...)` creates on Linux.
#[cfg(target_os = "linux")]
const SECTION: &str = ".AsyncioDebug";
/// `sizeof(struct _Py_AsyncioModuleDebugOffsets)` in 3.14 and 3.15: 13 `uint64_t`s.
const SECTION_WORDS: usize = 13;
/// Largest plausible `sizeof(TaskObj)` (about 200 bytes in a default build).
const MAX_TASK_SIZE: u64 = 4096;
/// Largest plausible offset of a field in a thread state or interpreter state.
const MAX_STATE_OFFSET: u64 = 1 << 20;
/// Largest plausible offset of a coroutine, frame or set field we read.
const MAX_OBJECT_OFFSET: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum AsyncioError {
    #[error("Python {version} has no asyncio debug offsets (they are new in Python 3.14): asyncio task stacks need Python 3.14 or newer")]
    Unsupported { version: PyVersion },
    #[error("process {pid} has not loaded asyncio: no AsyncioDebug section in {searched}")]
    NotLoaded { pid: u32, searched: String },
    #[error("AsyncioDebug section of {path}: {why}")]
    Invalid { path: String, why: String },
    #[error("reading the asyncio debug offsets of process {pid}: {source}")]
    Memory { pid: u32, source: MemoryError },
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Threads(#[from] super::state::SampleError),
    /// The section is looked up in ELF files through /proc: Linux only so far.
    #[error("asyncio task stacks are read on Linux only (the AsyncioDebug section is not looked up in Mach-O or PE images yet)")]
    OnlyLinux,
    /// The last search failed a moment ago (this says why); not searched again yet.
    #[error("{0}")]
    Again(String),
}

/// Everything the task reader needs, as offsets checked to be plausible.
#[derive(Debug, Clone)]
pub struct AsyncLayout {
    /// `sizeof(TaskObj)`
    pub task_size: u64,
    /// `TaskObj.task_name`: a `str`, or an `int` N for the default name `Task-N`.
    pub task_name: u64,
    /// `TaskObj.task_awaited_by`: one awaiting task, or a `set` of them.
    pub task_awaited_by: u64,
    /// `TaskObj.task_is_task` (char): a task, not a plain future.
    pub task_is_task: u64,
    /// `TaskObj.task_awaited_by_is_set` (char)
    pub task_awaited_by_is_set: u64,
    /// `TaskObj.task_coro`
    pub task_coro: u64,
    /// `TaskObj.task_node`: the `llist_node` linking the task into its thread's list.
    pub task_node: u64,
    /// `PyInterpreterState.asyncio_tasks_head`: tasks of threads that have ended.
    pub interp_tasks_head: u64,
    /// `_PyThreadStateImpl.asyncio_running_loop`
    pub tstate_running_loop: u64,
    /// `_PyThreadStateImpl.asyncio_running_task`
    pub tstate_running_task: u64,
    /// `_PyThreadStateImpl.asyncio_tasks_head`
    pub tstate_tasks_head: u64,
    /// `PyGenObject.gi_iframe`: the coroutine's own `_PyInterpreterFrame`, inline.
    pub gen_iframe: u64,
    /// `PyGenObject.gi_frame_state` (int8_t)
    pub gen_frame_state: u64,
    /// `_PyInterpreterFrame.stackpointer`
    pub frame_stackpointer: u64,
    /// `PySetObject.used`, `.table`, `.mask`
    pub set_used: u64,
    pub set_table: u64,
    pub set_mask: u64,
    /// `llist_node.next`
    pub llist_next: u64,
    pub coro: CoroModel,
    /// The file whose section this came from (for messages).
    pub source: PathBuf,
}

/// Find and read the asyncio layout of the process `interp` belongs to. An error says why
/// there is none (an older version, asyncio not imported yet, a section that is not sane).
pub fn locate_async_layout(
    mem: &dyn RemoteMemory,
    interp: &Interpreter,
) -> Result<AsyncLayout, AsyncioError> {
    let pid = interp.pid;
    let version = interp.version;
    let coro = coro_model_for(version).ok_or(AsyncioError::Unsupported { version })?;
    let InterpreterRoot::Runtime(runtime) = interp.root else {
        return Err(AsyncioError::Unsupported { version });
    };
    let mem_err = |source| AsyncioError::Memory { pid, source };
    let debug = mem
        .read_bytes(runtime, DEBUG_OFFSETS_READ_LEN)
        .map_err(mem_err)?;
    // Attaching accepted these bytes already; a failure now means the process is going away.
    parse_debug_offsets(&debug, version).map_err(|e| AsyncioError::Invalid {
        path: interp.binary.display().to_string(),
        why: e.to_string(),
    })?;
    let (source, words) = find_section(mem, pid, interp)?;
    let invalid = |why: String| AsyncioError::Invalid {
        path: source.display().to_string(),
        why,
    };
    let field = |section: &str, name: &str| {
        debug_field(&debug, version, section, name)
            .ok_or_else(|| invalid(format!("_Py_DebugOffsets has no {section}.{name}")))
    };
    let layout = AsyncLayout {
        task_size: words[0],
        task_name: words[1],
        task_awaited_by: words[2],
        task_is_task: words[3],
        task_awaited_by_is_set: words[4],
        task_coro: words[5],
        task_node: words[6],
        // words[7] is sizeof(PyInterpreterState), words[9] sizeof(_PyThreadStateImpl).
        interp_tasks_head: words[8],
        tstate_running_loop: words[10],
        tstate_running_task: words[11],
        tstate_tasks_head: words[12],
        gen_iframe: field("gen_object", "gi_iframe")?,
        gen_frame_state: field("gen_object", "gi_frame_state")?,
        frame_stackpointer: field("interpreter_frame", "stackpointer")?,
        set_used: field("set_object", "used")?,
        set_table: field("set_object", "table")?,
        set_mask: field("set_object", "mask")?,
        llist_next: field("llist_node", "next")?,
        coro,
        source: source.clone(),
    };
    check(&layout, &words).map_err(invalid)?;
    Ok(layout)
}

/// Whether the values can be a real build's: each field inside its struct, structs of a
/// plausible size. A section of another layout (a future version) fails here.
fn check(l: &AsyncLayout, words: &[u64; SECTION_WORDS]) -> Result<(), String> {
    if !(64..=MAX_TASK_SIZE).contains(&l.task_size) {
        return Err(format!("implausible sizeof(TaskObj) {}", l.task_size));
    }
    for (name, off, width) in [
        ("task_name", l.task_name, 8),
        ("task_awaited_by", l.task_awaited_by, 8),
        ("task_is_task", l.task_is_task, 1),
        ("task_awaited_by_is_set", l.task_awaited_by_is_set, 1),
        ("task_coro", l.task_coro, 8),
        ("task_node", l.task_node, 16),
    ] {
        if off < 16 || off.saturating_add(width) > l.task_size {
            return Err(format!(
                "{name} at {off} is outside a TaskObj of {}",
                l.task_size
            ));
        }
    }
    for (name, off, size) in [
        ("asyncio_tasks_head", l.interp_tasks_head, words[7]),
        ("asyncio_running_loop", l.tstate_running_loop, words[9]),
        ("asyncio_running_task", l.tstate_running_task, words[9]),
        ("asyncio_tasks_head", l.tstate_tasks_head, words[9]),
    ] {
        if size > MAX_STATE_OFFSET || off.saturating_add(8) > size {
            return Err(format!(
                "{name} at {off} is outside its state of {size} bytes"
            ));
        }
    }
    for (name, off) in [
        ("gi_iframe", l.gen_iframe),
        ("gi_frame_state", l.gen_frame_state),
        ("stackpointer", l.frame_stackpointer),
        ("set used", l.set_used),
        ("set table", l.set_table),
        ("set mask", l.set_mask),
        ("llist next", l.llist_next),
    ] {
        if off > MAX_OBJECT_OFFSET {
            return Err(format!("implausible offset of {name}: {off}"));
        }
    }
    Ok(())
}

/// Off Linux: not looked up yet (see `AsyncioError::OnlyLinux`).
#[cfg(not(target_os = "linux"))]
fn find_section(
    _mem: &dyn RemoteMemory,
    _pid: u32,
    _interp: &Interpreter,
) -> Result<(PathBuf, [u64; SECTION_WORDS]), AsyncioError> {
    Err(AsyncioError::OnlyLinux)
}

/// The words of the `.AsyncioDebug` section in the first mapped file that has one: the
/// interpreter binary, then `_asyncio` extension modules.
#[cfg(target_os = "linux")]
fn find_section(
    mem: &dyn RemoteMemory,
    pid: u32,
    interp: &Interpreter,
) -> Result<(PathBuf, [u64; SECTION_WORDS]), AsyncioError> {
    let maps = proc::maps(pid)?;
    let mut candidates = vec![interp.binary.clone()];
    let mut seen: HashSet<PathBuf> = candidates.iter().cloned().collect();
    for m in &maps {
        let Some(path) = &m.pathname else { continue };
        let is_asyncio = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("_asyncio.") && n.ends_with(".so"));
        if is_asyncio && seen.insert(path.clone()) {
            candidates.push(path.clone());
        }
    }
    for path in &candidates {
        let local = proc::file_in_maps(pid, &maps, path);
        let range = match section_range(&local, SECTION) {
            Ok(Some(range)) => range,
            Ok(None) => continue,
            Err(e) => {
                log::debug!("pid {pid}: {}: {e}", path.display());
                continue;
            }
        };
        let invalid = |why: String| AsyncioError::Invalid {
            path: path.display().to_string(),
            why,
        };
        if range.1 < (SECTION_WORDS * 8) as u64 {
            return Err(invalid(format!(
                "{} bytes, expected {}",
                range.1,
                SECTION_WORDS * 8
            )));
        }
        let mappings: Vec<&MapRange> = maps
            .iter()
            .filter(|m| m.pathname.as_deref() == Some(path.as_path()))
            .collect();
        let image = ElfImage::load(&local, &[], |_| false).map_err(|e| invalid(e.to_string()))?;
        let bias = image
            .load_bias(&mappings)
            .ok_or_else(|| invalid("no mapping matches its load segments".into()))?;
        let bytes = mem
            .read_bytes(range.0.wrapping_add(bias), SECTION_WORDS * 8)
            .map_err(|source| AsyncioError::Memory { pid, source })?;
        let mut words = [0u64; SECTION_WORDS];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        }
        return Ok((path.clone(), words));
    }
    Err(AsyncioError::NotLoaded {
        pid,
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> (AsyncLayout, [u64; SECTION_WORDS]) {
        // The values of Debian's 3.14.10 build.
        let words = [216, 160, 88, 104, 105, 168, 184, 0, 0, 0, 0, 0, 0];
        let mut words = words;
        words[7] = 12000;
        words[8] = 11000;
        words[9] = 2000;
        words[10] = 1000;
        words[11] = 1008;
        words[12] = 1016;
        let l = AsyncLayout {
            task_size: words[0],
            task_name: words[1],
            task_awaited_by: words[2],
            task_is_task: words[3],
            task_awaited_by_is_set: words[4],
            task_coro: words[5],
            task_node: words[6],
            interp_tasks_head: words[8],
            tstate_running_loop: words[10],
            tstate_running_task: words[11],
            tstate_tasks_head: words[12],
            gen_iframe: 80,
            gen_frame_state: 67,
            frame_stackpointer: 64,
            set_used: 24,
            set_table: 40,
            set_mask: 32,
            llist_next: 0,
            coro: coro_model_for(PyVersion::new(3, 14, 0)).unwrap(),
            source: PathBuf::new(),
        };
        (l, words)
    }

    #[test]
    fn a_sane_layout_passes_and_garbage_does_not() {
        let (l, words) = layout();
        assert_eq!(check(&l, &words), Ok(()));
        let mut bad = l.clone();
        bad.task_node = bad.task_size;
        assert!(check(&bad, &words).is_err());
        let mut bad = l.clone();
        bad.task_size = u64::MAX;
        assert!(check(&bad, &words).is_err());
        let mut bad = l.clone();
        bad.gen_iframe = 1 << 40;
        assert!(check(&bad, &words).is_err());
        let mut bad_words = words;
        bad_words[9] = 8;
        assert!(check(&l, &bad_words).is_err());
    }

    #[test]
    fn versions_before_3_14_have_no_coroutine_model() {
        assert!(coro_model_for(PyVersion::new(3, 13, 5)).is_none());
        assert!(coro_model_for(PyVersion::new(3, 14, 10)).is_some());
        assert!(coro_model_for(PyVersion::new(3, 15, 2)).is_some());
    }
}
