//! The one place the reader's offsets (`python::offsets::PyOffsets`, already overridden by
//! `_Py_DebugOffsets` where the interpreter has them) become the BPF program's
//! `pyspy_py_layout`, so the walk in BPF and the walk in `python::walk` use the same numbers.

use crate::bpf::{BpfFrameModel, CodeFields, PyLayout};
use crate::python::offsets::{FrameModel, PyOffsets};

/// The layout the BPF program walks this version with, or why it cannot (the sample then keeps
/// the user-space read).
pub fn layout_for(o: &PyOffsets) -> Result<PyLayout, String> {
    let field = |value: Option<u64>, name: &str| -> Result<u32, String> {
        let value =
            value.ok_or_else(|| format!("{name} is unknown for {}.{}", o.series.0, o.series.1))?;
        u32::try_from(value).map_err(|_| format!("{name} offset {value} is out of range"))
    };
    let small = |value: u64, name: &str| field(Some(value), name);
    // The fields `python::code` fingerprints a code object by, in the same order.
    let code = CodeFields {
        type_: small(o.object_type, "object.ob_type")?,
        name: small(o.code_qualname.unwrap_or(o.code_name), "code.co_qualname")?,
        filename: small(o.code_filename, "code.co_filename")?,
        linetable: small(o.code_linetable, "code.co_linetable")?,
        firstlineno: small(o.code_firstlineno, "code.co_firstlineno")?,
    };
    let layout = match o.frame_model {
        FrameModel::FrameObject => PyLayout {
            frame_model: BpfFrameModel::FrameObject,
            tstate_frame: small(o.tstate_frame, "tstate.frame")?,
            tstate_thread_id: small(o.tstate_thread_id, "tstate.thread_id")?,
            cframe_current_frame: 0,
            frame_previous: field(o.frame_back, "frame.f_back")?,
            frame_code: field(o.frame_code, "frame.f_code")?,
            frame_instr: field(o.frame_lasti, "frame.f_lasti")?,
            frame_owner: None,
            frame_is_entry: None,
            owner_cstack: None,
            owner_interpreter: None,
            code_tag_mask: 0,
            code,
        },
        FrameModel::CFrame | FrameModel::CurrentFrame => PyLayout {
            frame_model: if o.frame_model == FrameModel::CFrame {
                BpfFrameModel::CFrame
            } else {
                BpfFrameModel::CurrentFrame
            },
            tstate_frame: small(o.tstate_frame, "tstate.frame")?,
            tstate_thread_id: small(o.tstate_thread_id, "tstate.thread_id")?,
            cframe_current_frame: if o.frame_model == FrameModel::CFrame {
                field(o.cframe_current_frame, "cframe.current_frame")?
            } else {
                0
            },
            frame_previous: field(o.iframe_previous, "frame.previous")?,
            frame_code: field(o.iframe_code, "frame.f_executable")?,
            frame_instr: field(o.iframe_instr, "frame.instr_ptr")?,
            frame_owner: Some(field(o.iframe_owner, "frame.owner")?),
            frame_is_entry: o
                .iframe_is_entry
                .map(|v| field(Some(v), "frame.is_entry"))
                .transpose()?,
            owner_cstack: o.owner_cstack,
            owner_interpreter: o.owner_interpreter,
            code_tag_mask: o.executable_tag_mask,
            code,
        },
    };
    if layout.frame_read().is_none() {
        return Err("a frame field lies beyond what the BPF walk reads".into());
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PyVersion;
    use crate::python::offsets::{offsets_for, SUPPORTED_SERIES};

    #[test]
    fn every_table_row_converts() {
        for &(major, minor) in SUPPORTED_SERIES {
            let o = offsets_for(PyVersion::new(major, minor, 0)).expect("a row");
            let layout = layout_for(&o).unwrap_or_else(|e| panic!("{major}.{minor}: {e}"));
            let expected = match o.frame_model {
                FrameModel::FrameObject => BpfFrameModel::FrameObject,
                FrameModel::CFrame => BpfFrameModel::CFrame,
                FrameModel::CurrentFrame => BpfFrameModel::CurrentFrame,
            };
            assert_eq!(layout.frame_model, expected, "{major}.{minor}");
            assert_eq!(layout.frame_is_entry.is_some(), o.iframe_is_entry.is_some());
            assert!(layout.frame_read().is_some(), "{major}.{minor}");
            assert!(layout.code.read_len().is_some(), "{major}.{minor}");
        }
    }
}
