//! The one place the reader's offsets (`python::offsets::PyOffsets`, already overridden by
//! `_Py_DebugOffsets` where the interpreter has them) become the BPF program's
//! `pyspy_py_layout`, so the walk in BPF and the walk in `python::walk` use the same numbers.

use crate::bpf::{BpfFrameModel, BpfGil, CodeFields, PyLayout};
use crate::python::offsets::{FrameModel, PyOffsets};
use crate::python::threads::GilLocation;

/// The layout the BPF program walks this version with, or why it cannot (the sample then keeps
/// the user-space read). `gil` is where the process keeps its GIL holder (`Interpreter::gil`).
pub fn layout_for(o: &PyOffsets, gil: GilLocation) -> Result<PyLayout, String> {
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
    let gil = gil_for(o, gil);
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
            gil,
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
            gil,
        },
    };
    if layout.frame_read().is_none() {
        return Err("a frame field lies beyond what the BPF walk reads".into());
    }
    Ok(layout)
}

/// Where the BPF program reads the GIL holder: what `threads::gil_holders` reads, so both
/// agree. A location it cannot read (unknown, or an offset out of range) leaves the GIL to user
/// space, as before.
fn gil_for(o: &PyOffsets, gil: GilLocation) -> BpfGil {
    let small = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok());
    match gil {
        GilLocation::CurrentTstate(addr) => BpfGil::CurrentTstate { addr },
        GilLocation::PerInterpreter => match (
            small(Some(o.tstate_interp)),
            small(o.interp_gil_ptr),
            small(o.gil_locked),
            small(o.gil_last_holder),
        ) {
            (Some(tstate_interp), Some(interp_gil), Some(locked), Some(last_holder)) => {
                BpfGil::PerInterpreter {
                    tstate_interp,
                    interp_gil,
                    locked,
                    last_holder,
                }
            }
            _ => BpfGil::None,
        },
        GilLocation::Unknown => BpfGil::None,
    }
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
            let gil = match o.runtime_tstate_current {
                Some(field) => GilLocation::CurrentTstate(0x1000 + field),
                None if o.interp_gil_ptr.is_some() => GilLocation::PerInterpreter,
                // 2.7 and 3.6: the `_PyThreadState_Current` symbol's address.
                None => GilLocation::CurrentTstate(0x2000),
            };
            let layout = layout_for(&o, gil).unwrap_or_else(|e| panic!("{major}.{minor}: {e}"));
            let expected = match o.frame_model {
                FrameModel::FrameObject => BpfFrameModel::FrameObject,
                FrameModel::CFrame => BpfFrameModel::CFrame,
                FrameModel::CurrentFrame => BpfFrameModel::CurrentFrame,
            };
            assert_eq!(layout.frame_model, expected, "{major}.{minor}");
            assert_eq!(layout.frame_is_entry.is_some(), o.iframe_is_entry.is_some());
            assert!(layout.frame_read().is_some(), "{major}.{minor}");
            assert!(layout.code.read_len().is_some(), "{major}.{minor}");
            // Every version has its GIL holder where the BPF program can read it.
            match (gil, layout.gil) {
                (GilLocation::CurrentTstate(a), BpfGil::CurrentTstate { addr }) => {
                    assert_eq!(a, addr)
                }
                (GilLocation::PerInterpreter, BpfGil::PerInterpreter { .. }) => {}
                other => panic!("{major}.{minor}: {other:?}"),
            }
            assert_eq!(
                layout_for(&o, GilLocation::Unknown).map(|l| l.gil),
                Ok(BpfGil::None)
            );
        }
    }
}
