//! What the BPF program needs to walk one Python process's frames itself (`walk_python` in
//! bpf/sampler.bpf.c): the offsets of its CPython version in the program's terms. The
//! conversion from the reader's offsets table lives in `sampler::bpf_layout`, the one place
//! that knows both sides; this module only carries the numbers into the map.

/// How the frame chain hangs off the thread state (`enum pyspy_frame_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpfFrameModel {
    /// <= 3.10: `tstate->frame`, `PyFrameObject` by `f_back`, `int f_lasti`.
    FrameObject,
    /// 3.11, 3.12: `tstate->cframe->current_frame`, `_PyInterpreterFrame` by `previous`.
    CFrame,
    /// 3.13+: `tstate->current_frame`.
    CurrentFrame,
}

/// `struct pyspy_py_layout` (bpf/pyspy.h). Offsets are bytes from the start of the struct
/// named; `None` for a field the version does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyLayout {
    pub frame_model: BpfFrameModel,
    pub tstate_frame: u32,
    pub tstate_thread_id: u32,
    pub cframe_current_frame: u32,
    pub frame_previous: u32,
    pub frame_code: u32,
    pub frame_instr: u32,
    pub frame_owner: Option<u32>,
    pub frame_is_entry: Option<u32>,
    pub owner_cstack: Option<u8>,
    pub owner_interpreter: Option<u8>,
    pub code_tag_mask: u64,
    /// The code object fields the program fingerprints each frame's code object by.
    pub code: CodeFields,
    /// Where the program reads whether the sampled thread holds the GIL.
    pub gil: BpfGil,
}

/// Where a process keeps which thread holds its GIL (`enum pyspy_gil_model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BpfGil {
    /// Not read in BPF: user space reads it after the sample.
    None,
    /// The variable at `addr` (2.7, 3.6: `_PyThreadState_Current`; 3.7-3.11:
    /// `_PyRuntime.gilstate.tstate_current`) holds the thread state holding the GIL.
    CurrentTstate { addr: u64 },
    /// 3.12+: `tstate->interp->ceval.gil` points to the interpreter's `_gil_runtime_state`,
    /// whose `last_holder` holds the GIL while `locked` is set.
    PerInterpreter {
        tstate_interp: u32,
        interp_gil: u32,
        locked: u32,
        last_holder: u32,
    },
}

/// Offsets in the code object of the header fields `pyspy_py_frame.code_id` hashes (the ones
/// `python::code` tells code objects apart by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeFields {
    pub type_: u32,
    /// `co_qualname` where the version has it, else `co_name`.
    pub name: u32,
    pub filename: u32,
    pub linetable: u32,
    pub firstlineno: u32,
}

impl CodeFields {
    /// Bytes of a code object to read: up to the end of the furthest field (read as 8 bytes),
    /// or `None` when one lies beyond what the program reads (it then sends no fingerprints
    /// and user space reads the headers itself).
    pub fn read_len(&self) -> Option<u32> {
        let fields = [
            self.type_,
            self.name,
            self.filename,
            self.linetable,
            self.firstlineno,
        ];
        let end = fields
            .iter()
            .map(|f| f.checked_add(8))
            .collect::<Option<Vec<u32>>>()?
            .into_iter()
            .max()?;
        (end <= PY_CODE_READ).then_some(end)
    }
}

/// Bytes of a frame the BPF program reads at once (`PY_FRAME_READ`): every frame field must
/// end within them.
pub const PY_FRAME_READ: u32 = 128;

/// Bytes of a code object the BPF program reads at most to fingerprint it (`PY_CODE_READ`).
pub const PY_CODE_READ: u32 = 256;

impl PyLayout {
    /// Bytes of a frame to read: up to the end of the furthest field (read as 8 bytes), or
    /// `None` when a field lies beyond what the BPF program can read.
    pub fn frame_read(&self) -> Option<u32> {
        let fields = [
            Some(self.frame_previous),
            Some(self.frame_code),
            Some(self.frame_instr),
            self.frame_owner,
            self.frame_is_entry,
        ];
        let ends: Option<Vec<u32>> = fields.iter().flatten().map(|&f| f.checked_add(8)).collect();
        let end = ends?.into_iter().max()?;
        (end <= PY_FRAME_READ).then_some(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> PyLayout {
        PyLayout {
            frame_model: BpfFrameModel::CurrentFrame,
            tstate_frame: 72,
            tstate_thread_id: 152,
            cframe_current_frame: 0,
            frame_previous: 8,
            frame_code: 0,
            frame_instr: 56,
            frame_owner: Some(70),
            frame_is_entry: None,
            owner_cstack: Some(3),
            owner_interpreter: None,
            code_tag_mask: 0,
            code: CodeFields {
                type_: 8,
                name: 120,
                filename: 112,
                linetable: 136,
                firstlineno: 68,
            },
            gil: BpfGil::None,
        }
    }

    #[test]
    fn code_read_covers_every_field_and_refuses_far_ones() {
        assert_eq!(layout().code.read_len(), Some(144));
        let far = CodeFields {
            linetable: 250,
            ..layout().code
        };
        assert_eq!(far.read_len(), None);
        let overflow = CodeFields {
            name: u32::MAX,
            ..layout().code
        };
        assert_eq!(overflow.read_len(), None);
    }

    #[test]
    fn frame_read_covers_every_field_and_refuses_far_ones() {
        assert_eq!(layout().frame_read(), Some(78));
        let far = PyLayout {
            frame_instr: 121,
            ..layout()
        };
        assert_eq!(far.frame_read(), None);
        let overflow = PyLayout {
            frame_owner: Some(u32::MAX),
            ..layout()
        };
        assert_eq!(overflow.frame_read(), None);
    }
}
