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
}

/// Bytes of a frame the BPF program reads at once (`PY_FRAME_READ`): every frame field must
/// end within them.
pub const PY_FRAME_READ: u32 = 128;

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
        }
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
