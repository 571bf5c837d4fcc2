//! Reading another process's memory: the `RemoteMemory` trait every walker uses, its
//! `process_vm_readv` implementation, and a recorder/replayer for snapshot tests.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::model::Addr;

/// Hard cap on any single string read from a target (bytes).
pub const MAX_STRING_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MemoryError {
    #[error("cannot read {len} bytes at {addr:#x} in pid {pid}: {kind}")]
    Read {
        pid: u32,
        addr: Addr,
        len: usize,
        kind: std::io::ErrorKind,
    },
    #[error("process {pid} no longer exists")]
    Gone { pid: u32 },
    #[error("permission denied reading memory of pid {pid}: {}", super::access::why_denied(*pid))]
    Permission { pid: u32 },
    #[error("null pointer dereference at {what}")]
    Null { what: &'static str },
    #[error("{what}: length {len} exceeds the limit {max}")]
    TooLong {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("no recorded bytes at {addr:#x} (+{len})")]
    NotRecorded { addr: Addr, len: usize },
}

/// Memory of one target process. Implementations must never panic on any address.
pub trait RemoteMemory {
    /// Fill `buf` from `addr`, all or nothing.
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Several independent reads, each all or nothing, in as few system calls as the
    /// implementation can (`ProcessMemory`: one). Results are in the order of `reads`.
    fn read_many(&self, reads: &mut [(Addr, &mut [u8])]) -> Vec<Result<(), MemoryError>> {
        reads
            .iter_mut()
            .map(|(addr, buf)| self.read_into(*addr, buf))
            .collect()
    }

    fn read_bytes(&self, addr: Addr, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut buf = vec![0u8; len];
        self.read_into(addr, &mut buf)?;
        Ok(buf)
    }

    fn read_u64(&self, addr: Addr) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read_into(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    fn read_u32(&self, addr: Addr) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read_into(addr, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    fn read_i32(&self, addr: Addr) -> Result<i32, MemoryError> {
        Ok(self.read_u32(addr)? as i32)
    }

    fn read_u8(&self, addr: Addr) -> Result<u8, MemoryError> {
        let mut b = [0u8; 1];
        self.read_into(addr, &mut b)?;
        Ok(b[0])
    }

    /// A pointer field: reads the u64 at `addr` and rejects null.
    fn read_ptr(&self, addr: Addr, what: &'static str) -> Result<Addr, MemoryError> {
        match self.read_u64(addr)? {
            0 => Err(MemoryError::Null { what }),
            p => Ok(p),
        }
    }

    /// A NUL-terminated C string of at most `max` bytes (lossy UTF-8). Reads in small chunks
    /// so a string near the end of a mapping still reads.
    fn read_c_string(&self, addr: Addr, max: usize) -> Result<String, MemoryError> {
        let max = max.min(MAX_STRING_BYTES);
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        while out.len() < max {
            // Never cross a page boundary in one read: the next page may be unmapped.
            let here = addr + out.len() as u64;
            let to_page_end = (4096 - (here % 4096)) as usize;
            let n = chunk.len().min(to_page_end).min(max - out.len());
            self.read_into(here, &mut chunk[..n])?;
            if let Some(nul) = chunk[..n].iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl<T: RemoteMemory + ?Sized> RemoteMemory for &T {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        (**self).read_into(addr, buf)
    }
}

/// Live memory of a process (off Linux: `proc::ProcessMemory`, the OS's own way).
#[cfg(not(target_os = "linux"))]
pub use super::proc::ProcessMemory;

/// Live memory of a process, read with `process_vm_readv` (no ptrace stop needed).
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy)]
pub struct ProcessMemory {
    pid: u32,
}

#[cfg(target_os = "linux")]
impl ProcessMemory {
    pub fn new(pid: u32) -> Self {
        ProcessMemory { pid }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

/// Most iovecs one `process_vm_readv` takes (`IOV_MAX` on Linux).
#[cfg(target_os = "linux")]
const MAX_IOVECS: usize = 1024;

#[cfg(target_os = "linux")]
impl RemoteMemory for ProcessMemory {
    /// One `process_vm_readv` for up to `MAX_IOVECS` reads. The kernel never splits an iovec
    /// and stops at the first one it cannot read; the reads after that one are retried one
    /// by one (they may be fine), so each read's result is its own.
    #[allow(unsafe_code)]
    fn read_many(&self, reads: &mut [(Addr, &mut [u8])]) -> Vec<Result<(), MemoryError>> {
        let mut results = Vec::with_capacity(reads.len());
        for chunk in reads.chunks_mut(MAX_IOVECS) {
            let local: Vec<libc::iovec> = chunk
                .iter_mut()
                .map(|(_, buf)| libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                })
                .collect();
            let remote: Vec<libc::iovec> = chunk
                .iter()
                .map(|(addr, buf)| libc::iovec {
                    iov_base: *addr as usize as *mut libc::c_void,
                    iov_len: buf.len(),
                })
                .collect();
            // SAFETY: each local iovec describes exactly one buffer of `chunk`, all owned
            // mutably by us for the whole call and distinct; the remote iovecs are only
            // interpreted by the kernel in the target's address space. `local` and `remote`
            // have the same length, at most IOV_MAX.
            let n = unsafe {
                libc::process_vm_readv(
                    self.pid as libc::pid_t,
                    local.as_ptr(),
                    local.len() as libc::c_ulong,
                    remote.as_ptr(),
                    remote.len() as libc::c_ulong,
                    0,
                )
            };
            let mut done = usize::try_from(n).unwrap_or(0);
            for (addr, buf) in chunk.iter_mut() {
                if done >= buf.len() {
                    done -= buf.len();
                    results.push(Ok(()));
                } else {
                    done = 0;
                    results.push(self.read_into(*addr, buf));
                }
            }
        }
        results
    }

    #[allow(unsafe_code)]
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes exactly `buf`, which we own mutably for the whole call;
        // the remote iovec is only interpreted by the kernel in the target's address space.
        let n =
            unsafe { libc::process_vm_readv(self.pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n == buf.len() as isize {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::ESRCH) => MemoryError::Gone { pid: self.pid },
            Some(libc::EPERM) => MemoryError::Permission { pid: self.pid },
            _ if n >= 0 => MemoryError::Read {
                pid: self.pid,
                addr,
                len: buf.len(),
                kind: std::io::ErrorKind::UnexpectedEof,
            },
            _ => MemoryError::Read {
                pid: self.pid,
                addr,
                len: buf.len(),
                kind: err.kind(),
            },
        })
    }
}

/// Wraps another memory and remembers every successful read, so a walk of a live process
/// can be saved and replayed later by [`ReplayMemory`].
pub struct RecordingMemory<M> {
    inner: M,
    reads: RefCell<BTreeMap<Addr, Vec<u8>>>,
}

impl<M: RemoteMemory> RecordingMemory<M> {
    pub fn new(inner: M) -> Self {
        RecordingMemory {
            inner,
            reads: RefCell::new(BTreeMap::new()),
        }
    }

    /// Everything read so far, as (address, bytes) regions.
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            regions: self.reads.into_inner().into_iter().collect(),
        }
    }
}

impl<M: RemoteMemory> RemoteMemory for RecordingMemory<M> {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read_into(addr, buf)?;
        let mut reads = self.reads.borrow_mut();
        let slot = reads.entry(addr).or_default();
        if slot.len() < buf.len() {
            *slot = buf.to_vec();
        }
        Ok(())
    }
}

/// A set of memory regions captured from a process, serialisable as JSON (hex bytes).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub regions: Vec<(Addr, Vec<u8>)>,
}

impl Snapshot {
    pub fn to_json(&self) -> String {
        let hex: Vec<(String, String)> = self
            .regions
            .iter()
            .map(|(a, b)| {
                (
                    format!("{a:#x}"),
                    b.iter().map(|x| format!("{x:02x}")).collect(),
                )
            })
            .collect();
        serde_json::to_string(&hex).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Snapshot, String> {
        let hex: Vec<(String, String)> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut regions = Vec::with_capacity(hex.len());
        for (a, b) in hex {
            let addr =
                u64::from_str_radix(a.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
            if b.len() % 2 != 0 {
                return Err(format!("odd hex length at {a}"));
            }
            let bytes = (0..b.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&b[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?;
            regions.push((addr, bytes));
        }
        Ok(Snapshot { regions })
    }
}

/// Serves reads from a [`Snapshot`]; a read outside the recorded regions fails like an
/// unmapped address would.
pub struct ReplayMemory {
    regions: BTreeMap<Addr, Vec<u8>>,
}

impl ReplayMemory {
    pub fn new(snapshot: Snapshot) -> Self {
        ReplayMemory {
            regions: snapshot.regions.into_iter().collect(),
        }
    }
}

impl RemoteMemory for ReplayMemory {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let not_recorded = MemoryError::NotRecorded {
            addr,
            len: buf.len(),
        };
        // The region starting at or before `addr` that covers the whole read.
        let (start, bytes) = self
            .regions
            .range(..=addr)
            .next_back()
            .ok_or(not_recorded.clone())?;
        let off = (addr - start) as usize;
        let end = off.checked_add(buf.len()).ok_or(not_recorded.clone())?;
        if end > bytes.len() {
            return Err(not_recorded);
        }
        buf.copy_from_slice(&bytes[off..end]);
        Ok(())
    }
}

/// Local bytes as target memory at a chosen base address; for unit tests of walkers.
pub struct LocalMemory {
    pub base: Addr,
    pub bytes: Vec<u8>,
}

impl RemoteMemory for LocalMemory {
    fn read_into(&self, addr: Addr, buf: &mut [u8]) -> Result<(), MemoryError> {
        let err = MemoryError::NotRecorded {
            addr,
            len: buf.len(),
        };
        let off = addr.checked_sub(self.base).ok_or(err.clone())? as usize;
        let end = off.checked_add(buf.len()).ok_or(err.clone())?;
        let src = self.bytes.get(off..end).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_many_reads_each_on_its_own_in_one_call() {
        let a: [u8; 5] = [1, 2, 3, 4, 5];
        let b: u64 = 0x1122_3344_5566_7788;
        let mem = ProcessMemory::new(std::process::id());
        let (mut x, mut y, mut z, mut w) = ([0u8; 5], [0u8; 8], [0u8; 8], [0u8; 3]);
        let mut reads: Vec<(Addr, &mut [u8])> = vec![
            (a.as_ptr() as Addr, &mut x),
            (8, &mut y), // unmapped: fails alone
            (&b as *const u64 as Addr, &mut z),
            (a.as_ptr() as Addr + 2, &mut w),
        ];
        let results = mem.read_many(&mut reads);
        assert!(results[0].is_ok() && results[1].is_err());
        assert!(results[2].is_ok() && results[3].is_ok());
        assert_eq!(x, a);
        assert_eq!(u64::from_ne_bytes(z), b);
        assert_eq!(w, [3, 4, 5]);
        assert!(mem.read_many(&mut []).is_empty());
    }

    #[test]
    fn replay_serves_recorded_reads_and_rejects_others() {
        let local = LocalMemory {
            base: 0x1000,
            bytes: (0u8..=255).collect(),
        };
        let rec = RecordingMemory::new(&local);
        assert_eq!(
            rec.read_u32(0x1004).unwrap(),
            u32::from_ne_bytes([4, 5, 6, 7])
        );
        let snap = Snapshot::from_json(&rec.into_snapshot().to_json()).unwrap();
        let replay = ReplayMemory::new(snap);
        assert_eq!(
            replay.read_u32(0x1004).unwrap(),
            u32::from_ne_bytes([4, 5, 6, 7])
        );
        assert_eq!(replay.read_u8(0x1006).unwrap(), 6);
        assert!(replay.read_u32(0x1006).is_err());
        assert!(replay.read_u8(0x10).is_err());
    }

    #[test]
    fn c_string_is_capped_and_stops_at_nul() {
        let mut bytes = b"hello\0world".to_vec();
        bytes.extend(std::iter::repeat(b'x').take(100));
        let mem = LocalMemory { base: 0, bytes };
        assert_eq!(mem.read_c_string(0, 100).unwrap(), "hello");
        assert_eq!(mem.read_c_string(6, 8).unwrap(), "worldxxx");
    }

    #[test]
    fn live_read_of_own_memory() {
        let value: u64 = 0xdead_beef_cafe;
        let mem = ProcessMemory::new(std::process::id());
        assert_eq!(mem.read_u64(&value as *const u64 as u64).unwrap(), value);
        assert!(mem.read_u64(8).is_err());
    }
}
