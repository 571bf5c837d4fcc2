//! Whether an address has `.eh_frame` unwind information, from the binary search table of
//! `.eh_frame_hdr` and the one FDE it points to. framehop does not say when it guessed (for
//! code without an FDE it takes the word at the stack pointer for the leaf, frame pointers
//! above): the unwinder checks a guessed return address harder than one the rules gave.
//! Only the encodings linkers emit for x86-64 are read (a table of 32-bit offsets from the
//! header, FDEs with 32-bit addresses); anything else answers "unknown".

use crate::model::Addr;

/// `.eh_frame_hdr`'s header: version 1, `eh_frame_ptr` pc-relative sdata4, `fde_count` udata4,
/// table entries data-relative sdata4.
const HEADER: [u8; 4] = [1, 0x1b, 0x03, 0x3b];

/// Whether `svma` (an address as linked) is inside an FDE of the module whose
/// `.eh_frame_hdr` (`hdr`, linked at `hdr_svma`) and `.eh_frame` (`eh`, at `eh_svma`) these
/// are. `None`: the sections use encodings this does not read.
pub fn covered(hdr: &[u8], hdr_svma: Addr, eh: &[u8], eh_svma: Addr, svma: Addr) -> Option<bool> {
    if hdr.get(..4)? != HEADER {
        return None;
    }
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            b.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let count = u32_at(hdr, 8)? as usize;
    let entry = |i: usize| -> Option<(Addr, Addr)> {
        let at = 12 + i * 8;
        let start = hdr_svma.wrapping_add_signed(i64::from(u32_at(hdr, at)? as i32));
        let fde = hdr_svma.wrapping_add_signed(i64::from(u32_at(hdr, at + 4)? as i32));
        Some((start, fde))
    };
    // The last entry starting at or below the address.
    let (mut lo, mut hi) = (0, count);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if entry(mid)?.0 <= svma {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return Some(false);
    }
    let (start, fde) = entry(lo - 1)?;
    let at = usize::try_from(fde.checked_sub(eh_svma)?).ok()?;
    // length, CIE pointer, pc_begin (pc-relative sdata4), pc_range (udata4).
    let length = u32_at(eh, at)?;
    if length == 0xffff_ffff {
        return None;
    }
    let begin_field = fde + 8;
    let begin = begin_field.wrapping_add_signed(i64::from(u32_at(eh, at + 8)? as i32));
    if begin != start {
        // Not the encoding read here: the FDE does not say what the table says.
        return None;
    }
    let range = Addr::from(u32_at(eh, at + 12)?);
    Some(svma < start.saturating_add(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with one table entry per (start, fde) and the FDEs it points to, laid out as a
    /// linker does (header at 0x1000, `.eh_frame` at 0x2000).
    fn sections(fdes: &[(Addr, u32)]) -> (Vec<u8>, Vec<u8>) {
        let (hdr_svma, eh_svma) = (0x1000u64, 0x2000u64);
        let mut hdr = HEADER.to_vec();
        hdr.extend(0u32.to_le_bytes());
        hdr.extend((fdes.len() as u32).to_le_bytes());
        let mut eh = Vec::new();
        for &(start, range) in fdes {
            let fde = eh_svma + eh.len() as u64;
            hdr.extend(((start - hdr_svma) as i32).to_le_bytes());
            hdr.extend(((fde - hdr_svma) as i32).to_le_bytes());
            eh.extend(20u32.to_le_bytes());
            eh.extend(0u32.to_le_bytes());
            eh.extend(((start as i64 - (fde + 8) as i64) as i32).to_le_bytes());
            eh.extend(range.to_le_bytes());
            eh.extend([0u8; 8]);
        }
        (hdr, eh)
    }

    #[test]
    fn tells_addresses_inside_an_fde_from_gaps() {
        let (hdr, eh) = sections(&[(0x4000, 0x100), (0x4200, 0x10)]);
        let at = |svma| covered(&hdr, 0x1000, &eh, 0x2000, svma);
        assert_eq!(at(0x3fff), Some(false));
        assert_eq!(at(0x4000), Some(true));
        assert_eq!(at(0x40ff), Some(true));
        // The gap between two FDEs: assembly without unwind information.
        assert_eq!(at(0x4100), Some(false));
        assert_eq!(at(0x420f), Some(true));
        assert_eq!(at(0x4210), Some(false));
    }

    #[test]
    fn other_encodings_are_unknown() {
        let (mut hdr, eh) = sections(&[(0x4000, 0x100)]);
        hdr[3] = 0x1b;
        assert_eq!(covered(&hdr, 0x1000, &eh, 0x2000, 0x4010), None);
    }
}
