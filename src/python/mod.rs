//! All CPython knowledge: finding the interpreter in a process and its version (`attach`),
//! the offsets table (`offsets`, `debug_offsets`), thread states (`threads`), where a thread
//! waiting for the GIL sleeps (`gil_wait`), frame chains (`walk`), code objects and line
//! numbers (`code`, `linetable`), strings (`strings`), dicts, ints and attributes (`objects`), `threading`'s thread names (`thread_names`),
//! bounded reprs (`repr`) and frame locals (`locals`) for `dump --locals`, asyncio tasks
//! (`asyncio`, located by `asyncio_layout`) for `--async`.

pub mod asyncio;
pub mod asyncio_layout;
pub mod attach;
pub mod code;
pub mod debug_offsets;
pub mod gil_wait;
pub mod linetable;
pub mod locals;
pub mod objects;
pub mod offsets;
pub mod repr;
pub mod state;
pub mod strings;
pub mod thread_names;
pub mod threads;
pub mod walk;

pub use attach::AttachError;
pub use state::{PythonProcess, StackOptions};
