//! asyncio tasks of a 3.14+ process, read from outside it: each thread's task list (and the
//! interpreter's, which holds the tasks of threads that ended), each task's name, its
//! coroutine chain (the coroutine it runs, what that awaits, and so on) and the tasks that
//! await it (`awaited_by`). Offsets come from `asyncio_layout`; frames resolve through the
//! process's `CodeCache`. Lists, chains and sets are bounded and cycle-checked: a task
//! whose memory is garbage gives a short chain and a reason, never a hang.

use std::collections::{HashMap, HashSet};

use super::asyncio_layout::AsyncLayout;
use super::code::CodeCache;
use super::objects::{read_int, type_flags, TPFLAGS_LONG_SUBCLASS, TPFLAGS_UNICODE_SUBCLASS};
use super::offsets::PyOffsets;
use super::strings::{is_object_addr, read_py_string};
use super::walk::read_struct;
use crate::model::{Addr, Frame, NativeFrame, RawPyFrame, Reason, StackTrace};
use crate::process::memory::RemoteMemory;

/// Most tasks read from one process (all lists together).
pub const MAX_TASKS: usize = 10_000;
/// Deepest coroutine chain followed (coroutines awaiting coroutines).
const MAX_CHAIN: usize = 256;
/// Most tasks one task stack goes up through (a task, its awaiter, that one's awaiter...).
const MAX_TASK_HOPS: usize = 64;
/// Largest `awaited_by` set read (table slots).
const MAX_SET_SLOTS: u64 = 1 << 16;
/// Longest task name kept (characters).
const MAX_NAME_CHARS: usize = 256;

/// One task list to read: a thread's (with its OS tid) or the interpreter's.
#[derive(Debug, Clone, Copy)]
pub struct TaskList {
    /// Address of the list's head `llist_node`.
    pub head: Addr,
    /// The thread that owns the list (`None` for the interpreter's list).
    pub tid: Option<u32>,
    /// The task the thread is running now (`asyncio_running_task`), 0 if none.
    pub running: Addr,
}

impl TaskList {
    /// The list of the thread state at `tstate` (OS thread `tid`).
    pub fn of_thread(
        mem: &dyn RemoteMemory,
        l: &AsyncLayout,
        tstate: Addr,
        tid: Option<u32>,
    ) -> TaskList {
        let loop_addr = mem.read_u64(tstate.wrapping_add(l.tstate_running_loop));
        let running = match loop_addr {
            Ok(lp) if lp != 0 => mem
                .read_u64(tstate.wrapping_add(l.tstate_running_task))
                .unwrap_or(0),
            _ => 0,
        };
        TaskList {
            head: tstate.wrapping_add(l.tstate_tasks_head),
            tid,
            running,
        }
    }

    /// The interpreter's list (tasks whose thread has ended).
    pub fn of_interpreter(l: &AsyncLayout, interp: Addr) -> TaskList {
        TaskList {
            head: interp.wrapping_add(l.interp_tasks_head),
            tid: None,
            running: 0,
        }
    }
}

/// One asyncio task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncTask {
    /// The task object's address (what `asyncio ps` calls its id).
    pub addr: Addr,
    /// `Task.get_name()`; `<unknown>` with a reason when it could not be read.
    pub name: String,
    /// The thread whose list holds it (`None`: the interpreter's list).
    pub tid: Option<u32>,
    /// Whether its thread is running it right now.
    pub running: bool,
    /// Its coroutine chain, leaf (innermost await) first; a trailing `Frame::Truncated`
    /// says why the chain stopped early.
    pub coroutine: Vec<Frame>,
    /// The tasks (or futures that are not tasks) that await it.
    pub awaited_by: Vec<Awaiter>,
}

/// Something that awaits a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Awaiter {
    pub addr: Addr,
    /// A task (its chain is that task's own), not a bare future.
    pub is_task: bool,
}

/// Every task of `lists`, in list order, at most `MAX_TASKS`; `Err` only if no list could be
/// read at all. A list that breaks off (a node that cannot be read, a cycle) keeps the tasks
/// read before.
pub fn read_tasks(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    l: &AsyncLayout,
    codes: &mut CodeCache,
    lists: &[TaskList],
) -> Vec<AsyncTask> {
    let mut seen = HashSet::new();
    let mut tasks = Vec::new();
    for list in lists {
        for addr in list_tasks(mem, l, list.head, &mut seen) {
            if tasks.len() >= MAX_TASKS {
                return tasks;
            }
            tasks.push(read_task(mem, o, l, codes, addr, list));
        }
    }
    tasks
}

/// The tasks as stacks for a profile (`record --async`): one per task that awaits no other
/// task (where the work waits), leaf first: its coroutine chain, a `<task NAME>` marker
/// frame, then the chain of the task awaiting it and that task's marker, and so on up to a
/// task nobody awaits, so that in a flame graph every task sits under the tasks awaiting it.
/// A task awaited by several tasks goes under the first one its `awaited_by` names.
pub fn task_stacks(pid: u32, tasks: &[AsyncTask]) -> Vec<StackTrace> {
    let by_addr: HashMap<Addr, &AsyncTask> = tasks.iter().map(|t| (t.addr, t)).collect();
    let awaits_a_task: HashSet<Addr> = tasks
        .iter()
        .flat_map(|t| t.awaited_by.iter().map(|a| a.addr))
        .collect();
    let mut out = Vec::new();
    for leaf in tasks.iter().filter(|t| !awaits_a_task.contains(&t.addr)) {
        let mut frames = Vec::new();
        let mut seen = HashSet::new();
        let mut task = Some(leaf);
        while let Some(t) = task {
            if !seen.insert(t.addr) {
                frames.push(Frame::Truncated(Reason::Cycle));
                break;
            }
            if seen.len() > MAX_TASK_HOPS {
                frames.push(Frame::Truncated(Reason::DepthLimit));
                break;
            }
            frames.extend(t.coroutine.iter().cloned());
            frames.push(task_marker(&t.name));
            task = t
                .awaited_by
                .first()
                .and_then(|a| by_addr.get(&a.addr).copied());
        }
        out.push(StackTrace {
            pid,
            tid: leaf.tid,
            thread_name: None,
            thread_ident: 0,
            active: leaf.running,
            owns_gil: None,
            frames,
        });
    }
    out
}

/// The frame standing for a task in a task stack: `<task NAME>`. It is carried as a native
/// frame without a module, which every output shows by its name alone.
fn task_marker(name: &str) -> Frame {
    Frame::Native(NativeFrame {
        name: format!("<task {name}>"),
        module: String::new(),
        offset: None,
    })
}

/// The task addresses of the circular list at `head`, skipping any seen before.
fn list_tasks(
    mem: &dyn RemoteMemory,
    l: &AsyncLayout,
    head: Addr,
    seen: &mut HashSet<Addr>,
) -> Vec<Addr> {
    let mut out = Vec::new();
    let mut node = head;
    let mut visited = HashSet::new();
    for _ in 0..MAX_TASKS {
        let Ok(next) = mem.read_u64(node.wrapping_add(l.llist_next)) else {
            break;
        };
        // The list is circular: back at the head is its end. A null, misaligned or
        // revisited node is garbage (the list changed under us).
        if next == head || !is_object_addr(next) || !visited.insert(next) {
            break;
        }
        let task = next.wrapping_sub(l.task_node);
        if seen.insert(task) {
            out.push(task);
        }
        node = next;
    }
    out
}

fn read_task(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    l: &AsyncLayout,
    codes: &mut CodeCache,
    addr: Addr,
    list: &TaskList,
) -> AsyncTask {
    let fields = read_struct(
        mem,
        addr,
        &[
            l.task_name,
            l.task_coro,
            l.task_awaited_by,
            l.task_awaited_by_is_set,
        ],
    );
    let (name, coroutine, awaited_by) = match fields {
        Ok(f) => {
            let name = task_name(mem, o, f.u64(l.task_name))
                .unwrap_or_else(|why| format!("<unknown: {why}>"));
            let coroutine = coroutine_chain(mem, o, l, codes, f.u64(l.task_coro));
            let awaited_by = awaiters(
                mem,
                l,
                f.u64(l.task_awaited_by),
                f.u8(l.task_awaited_by_is_set) != 0,
            );
            (name, coroutine, awaited_by)
        }
        Err(_) => (
            "<unknown: task unreadable>".to_string(),
            vec![Frame::Truncated(Reason::ReadFailed)],
            Vec::new(),
        ),
    };
    AsyncTask {
        addr,
        name,
        tid: list.tid,
        running: addr == list.running,
        coroutine,
        awaited_by,
    }
}

/// A task's name: a `str`, or an `int` N for the default `Task-N` (3.14 names tasks lazily).
fn task_name(mem: &dyn RemoteMemory, o: &PyOffsets, name: Addr) -> Result<String, String> {
    if !is_object_addr(name) {
        return Err("no name object".into());
    }
    let flags = type_flags(mem, o, name).map_err(|e| e.to_string())?;
    if flags & TPFLAGS_LONG_SUBCLASS != 0 {
        let n = read_int(mem, o, name).map_err(|e| e.to_string())?;
        return Ok(format!("Task-{n}"));
    }
    if flags & TPFLAGS_UNICODE_SUBCLASS == 0 {
        return Err("name is neither str nor int".into());
    }
    let text = read_py_string(mem, o, name).map_err(|e| e.to_string())?;
    Ok(text.chars().take(MAX_NAME_CHARS).collect())
}

/// The coroutine chain starting at `coro`, leaf first: each suspended coroutine's frame, then
/// the coroutine it awaits, while that is a coroutine of the same type (an awaited future or
/// other iterator ends the chain, as it has no frame).
fn coroutine_chain(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    l: &AsyncLayout,
    codes: &mut CodeCache,
    coro: Addr,
) -> Vec<Frame> {
    let (raws, stop) = chain_frames(mem, o, l, coro);
    let mut frames = codes.resolve_all(mem, o, &raws);
    // Read outermost first; shown leaf first, as thread stacks are.
    frames.reverse();
    if let Some(reason) = stop {
        frames.push(Frame::Truncated(reason));
    }
    frames
}

/// The raw frames of the chain at `coro`, outermost first, and why it stopped early.
fn chain_frames(
    mem: &dyn RemoteMemory,
    o: &PyOffsets,
    l: &AsyncLayout,
    mut coro: Addr,
) -> (Vec<RawPyFrame>, Option<Reason>) {
    let (Some(code), Some(instr), Some(owner)) = (o.iframe_code, o.iframe_instr, o.iframe_owner)
    else {
        return (Vec::new(), Some(Reason::BadObject));
    };
    let mut raws = Vec::new();
    let mut seen = HashSet::new();
    let mut coro_type = None;
    while is_object_addr(coro) {
        if raws.len() >= MAX_CHAIN {
            return (raws, Some(Reason::DepthLimit));
        }
        if !seen.insert(coro) {
            return (raws, Some(Reason::Cycle));
        }
        let Ok(gen) = read_struct(mem, coro, &[o.object_type, l.gen_frame_state]) else {
            return (raws, Some(Reason::ReadFailed));
        };
        // An awaited object of another type (a future, a generator-based iterator) has no
        // coroutine frame to show: the chain ends at the coroutine awaiting it.
        let this_type = gen.u64(o.object_type);
        if coro_type.is_some_and(|t| t != this_type) {
            break;
        }
        coro_type = Some(this_type);
        let state = gen.u8(l.gen_frame_state) as i8;
        if state == l.coro.cleared_state {
            break;
        }
        let frame = coro.wrapping_add(l.gen_iframe);
        let Ok(f) = read_struct(mem, frame, &[code, instr, owner, l.frame_stackpointer]) else {
            return (raws, Some(Reason::ReadFailed));
        };
        if f.u8(owner) != l.coro.owner_generator {
            return (raws, Some(Reason::BadObject));
        }
        raws.push(RawPyFrame {
            code_addr: f.u64(code) & !o.executable_tag_mask,
            instr: f.u64(instr),
            code_id: 0,
        });
        if !l.coro.yield_from_states.contains(&state) {
            break;
        }
        // Suspended in an `await`: the awaited object is on the frame's value stack, a
        // `_PyStackRef` whose low bits are tags.
        let sp = f.u64(l.frame_stackpointer) & !o.executable_tag_mask;
        let slot = sp.wrapping_sub(8 * l.coro.awaited_slot);
        if !is_object_addr(sp) || slot <= frame {
            return (raws, Some(Reason::BadObject));
        }
        match mem.read_u64(slot) {
            Ok(awaited) => coro = awaited & !o.executable_tag_mask,
            Err(_) => return (raws, Some(Reason::ReadFailed)),
        }
    }
    (raws, None)
}

/// What `task_awaited_by` holds: nothing, one awaiter, or a `set` of them.
fn awaiters(mem: &dyn RemoteMemory, l: &AsyncLayout, field: Addr, is_set: bool) -> Vec<Awaiter> {
    if !is_object_addr(field) {
        return Vec::new();
    }
    let addrs = if is_set {
        set_members(mem, l, field)
    } else {
        vec![field]
    };
    addrs
        .into_iter()
        .map(|addr| Awaiter {
            addr,
            is_task: mem
                .read_u8(addr.wrapping_add(l.task_is_task))
                .is_ok_and(|b| b != 0),
        })
        .collect()
}

/// The members of the `set` at `set` (hash table of (key, hash) entries), at most
/// `MAX_SET_SLOTS` slots; empty when the set does not look like one.
fn set_members(mem: &dyn RemoteMemory, l: &AsyncLayout, set: Addr) -> Vec<Addr> {
    let Ok(s) = read_struct(mem, set, &[l.set_used, l.set_table, l.set_mask]) else {
        return Vec::new();
    };
    let (used, table, mask) = (s.u64(l.set_used), s.u64(l.set_table), s.u64(l.set_mask));
    let slots = mask.wrapping_add(1);
    if !slots.is_power_of_two() || slots > MAX_SET_SLOTS || used > slots || !is_object_addr(table) {
        return Vec::new();
    }
    let Ok(bytes) = mem.read_bytes(table, (slots * 16) as usize) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in bytes.chunks_exact(16) {
        let key = u64::from_ne_bytes(entry[..8].try_into().unwrap_or([0; 8]));
        let hash = i64::from_ne_bytes(entry[8..].try_into().unwrap_or([0; 8]));
        // An empty slot has no key; a deleted one holds the dummy key with hash -1.
        if is_object_addr(key) && hash != -1 && !out.contains(&key) {
            out.push(key);
        }
        if out.len() as u64 >= used {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::LocalMemory;

    /// A `LocalMemory` holding a little-endian u64 array starting at `base`.
    fn memory(base: Addr, words: &[u64]) -> LocalMemory {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        LocalMemory { base, bytes }
    }

    fn layout() -> AsyncLayout {
        AsyncLayout {
            task_size: 64,
            task_name: 16,
            task_awaited_by: 24,
            task_is_task: 32,
            task_awaited_by_is_set: 33,
            task_coro: 40,
            task_node: 48,
            interp_tasks_head: 0,
            tstate_running_loop: 0,
            tstate_running_task: 8,
            tstate_tasks_head: 16,
            gen_iframe: 32,
            gen_frame_state: 24,
            frame_stackpointer: 16,
            set_used: 16,
            set_table: 24,
            set_mask: 32,
            llist_next: 0,
            coro: crate::python::offsets::coro_model_for(crate::model::PyVersion::new(3, 14, 0))
                .unwrap(),
            source: Default::default(),
        }
    }

    fn task(addr: Addr, name: &str, awaited_by: &[Addr]) -> AsyncTask {
        AsyncTask {
            addr,
            name: name.into(),
            tid: Some(7),
            running: false,
            coroutine: vec![Frame::Kernel(format!("{name}_work"))],
            awaited_by: awaited_by
                .iter()
                .map(|&addr| Awaiter {
                    addr,
                    is_task: true,
                })
                .collect(),
        }
    }

    fn names(stack: &StackTrace) -> Vec<String> {
        stack
            .frames
            .iter()
            .map(|f| match f {
                Frame::Kernel(n) => n.clone(),
                Frame::Native(n) => n.name.clone(),
                Frame::Truncated(r) => format!("<{}>", r.as_str()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn each_task_stack_goes_up_through_its_awaiters() {
        let tasks = [
            task(1, "main", &[]),
            task(2, "outer", &[1]),
            task(3, "inner", &[2]),
            task(4, "side", &[1]),
        ];
        let stacks = task_stacks(42, &tasks);
        let got: Vec<Vec<String>> = stacks.iter().map(names).collect();
        assert_eq!(
            got,
            vec![
                vec![
                    "inner_work",
                    "<task inner>",
                    "outer_work",
                    "<task outer>",
                    "main_work",
                    "<task main>"
                ],
                vec!["side_work", "<task side>", "main_work", "<task main>"],
            ]
        );
        assert!(stacks.iter().all(|s| s.pid == 42 && s.tid == Some(7)));
    }

    #[test]
    fn awaiters_that_loop_end_the_stack() {
        // a awaits b awaits a (garbage, or a list read mid-change), c awaits a.
        let tasks = [task(1, "a", &[2]), task(2, "b", &[1]), task(3, "c", &[1])];
        let stacks = task_stacks(1, &tasks);
        assert_eq!(stacks.len(), 1);
        assert_eq!(
            names(&stacks[0]),
            vec!["c_work", "<task c>", "a_work", "<task a>", "b_work", "<task b>", "<cycle>"]
        );
    }

    #[test]
    fn a_task_list_that_loops_or_breaks_ends() {
        let l = layout();
        let base = 0x10000;
        // head -> a -> b -> a (a loop that never returns to the head).
        let mut words = vec![0u64; 64];
        let head = base;
        let a = base + 0x40;
        let b = base + 0x80;
        words[0] = a;
        words[8] = b;
        words[16] = a;
        let mem = memory(base, &words);
        let mut seen = HashSet::new();
        let tasks = list_tasks(&mem, &l, head, &mut seen);
        assert_eq!(tasks, vec![a - l.task_node, b - l.task_node]);
        // A null link ends the list too.
        words[16] = 0;
        let mem = memory(base, &words);
        let tasks = list_tasks(&mem, &l, head, &mut HashSet::new());
        assert_eq!(tasks.len(), 2);
        // A proper circle ends at the head.
        words[16] = head;
        let mem = memory(base, &words);
        assert_eq!(list_tasks(&mem, &l, head, &mut HashSet::new()).len(), 2);
    }

    #[test]
    fn a_set_with_garbage_sizes_is_empty() {
        let l = layout();
        let base = 0x20000;
        let mut words = vec![0u64; 32];
        // set at base: used 2, table at base+0x40, mask 3.
        words[2] = 2;
        words[3] = base + 0x40;
        words[4] = 3;
        // Table: (key, hash) x 4; one dummy (hash -1), two members, one empty.
        words[8] = 0x30000;
        words[9] = u64::MAX;
        words[10] = 0x30100;
        words[11] = 7;
        words[14] = 0x30200;
        words[15] = 9;
        let mem = memory(base, &words);
        assert_eq!(set_members(&mem, &l, base), vec![0x30100, 0x30200]);
        words[4] = 1 << 40; // mask
        let mem = memory(base, &words);
        assert!(set_members(&mem, &l, base).is_empty());
        words[4] = 3;
        words[2] = 99; // used > slots
        let mem = memory(base, &words);
        assert!(set_members(&mem, &l, base).is_empty());
    }
}
