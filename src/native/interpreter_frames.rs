//! Which native frames are the interpreter's own machinery (`--native` hides them unless
//! `--native-all`): in a stack with Python frames, the C frames of CPython itself — the eval
//! loop's helpers, `PyObject_Call*`, vectorcall trampolines, start-up (`_start`, `Py_RunMain`)
//! and the unnamed `python3.11+0x...` addresses — only restate what the Python frames say.
//! C extensions, libc and the kernel stay where Python code called them: they are where time
//! goes that Python does not show.

use crate::model::Frame;

/// Whether a module file is CPython itself: its executable (`python3.11`, `python3.13t`,
/// `python2.7`, a provisioned `python3.11-shared`) or its shared library (`libpython3.11.so.1.0`).
pub fn is_interpreter_module(module: &str) -> bool {
    module.starts_with("libpython") || module.starts_with("python")
}

/// Which frames of one stack (leaf first) `--native` leaves out: in a stack with Python
/// frames, the interpreter's own native frames, and every native frame on the root side of
/// the root-most Python frame (the program's or thread's start-up: `_start`,
/// `__libc_start_main`, `start_thread`), which no Python code called. `None`: a stack
/// without Python frames (start-up, shutdown, a thread running no Python) keeps everything;
/// it would be empty otherwise.
pub fn hidden(frames: &[Frame]) -> Option<Vec<bool>> {
    let root_python = frames.iter().rposition(|f| matches!(f, Frame::Python(_)))?;
    Some(
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| match f {
                Frame::Native(n) => i > root_python || is_interpreter_module(&n.module),
                _ => false,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{NativeFrame, PyFrame};

    fn native(name: &str, module: &str) -> Frame {
        Frame::Native(NativeFrame {
            name: name.into(),
            module: module.into(),
            offset: Some(0),
        })
    }

    #[test]
    fn hides_the_interpreter_and_the_start_up_path() {
        let py = Frame::Python(PyFrame {
            function: "matmul".into(),
            filename: "t.py".into(),
            line: 1,
            first_line: 1,
        });
        // Leaf first.
        let stack = [
            Frame::Kernel("do_syscall_64".into()),
            native("memset", "libc.so.6"),
            native("DOUBLE_matmul", "_multiarray_umath.so"),
            native("_PyObject_Call", "python3.11"),
            py.clone(),
            native("_PyEval_EvalFrameDefault", "python3.11"),
            native("__libc_start_main", "libc.so.6"),
        ];
        assert_eq!(
            hidden(&stack),
            Some(vec![false, false, false, true, false, true, true])
        );
        // No Python frame: everything stays.
        assert_eq!(hidden(&stack[..4]), None);
    }

    #[test]
    fn interpreter_modules() {
        for m in [
            "python3.11",
            "python3.13t",
            "python2.7",
            "python3.11-shared",
            "libpython3.11.so.1.0",
            "libpython2.7.so.1.0",
        ] {
            assert!(is_interpreter_module(m), "{m}");
        }
        for m in [
            "libc.so.6",
            "_multiarray_umath.cpython-311-x86_64-linux-gnu.so",
            "libscipy_openblas64_-32a4b2a6.so",
            "_json.cpython-311-x86_64-linux-gnu.so",
            "",
        ] {
            assert!(!is_interpreter_module(m), "{m}");
        }
    }
}
