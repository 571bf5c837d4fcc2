//! A sink's on-disk backlog: the deliveries it could not send yet, oldest first, bounded in
//! bytes (past the bound the oldest are dropped, and the caller counts and logs them). It
//! lives in a private directory (`STATE_DIR/backlog/SINK`, see `safe_fs::Dir::private`), so it
//! survives a restart of the agent: what a stopped agent still owed is sent by the next one.
//!
//! Each delivery is one file, `SEQ.win` (20 digits, so names sort as numbers): a JSON line
//! with the delivery's metadata, then its body. Files are written whole (temporary file,
//! fsync, rename), so a crash leaves the old state or the new one.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;

use crate::agent::delivery::Delivery;
use crate::safe_fs::{Dir, SafeFsError};

/// The largest backlog file read back: anything bigger is not one we wrote.
const MAX_FILE: u64 = 256 << 20;

pub struct Backlog {
    dir: Dir,
    /// (sequence number, file size), oldest first.
    files: VecDeque<(u64, u64)>,
    bytes: u64,
    max_bytes: u64,
    next_seq: u64,
}

/// What `push` had to drop to stay within the bound: (deliveries, bytes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub files: u64,
    pub bytes: u64,
}

impl Backlog {
    /// Opens (creating) `state_dir/backlog/name`, picking up what an earlier run left.
    pub fn open(state_dir: &Path, name: &str, max_bytes: u64) -> Result<Backlog, SafeFsError> {
        let dir = Dir::private(Path::new("/"), &state_dir.join("backlog").join(name))?;
        let mut files: Vec<(u64, u64)> = dir
            .regular_files()?
            .into_iter()
            .filter_map(|(name, size)| Some((parse_name(&name)?, size)))
            .collect();
        files.sort_unstable();
        let bytes = files.iter().map(|(_, s)| s).sum();
        let next_seq = files.last().map_or(0, |(seq, _)| seq + 1);
        Ok(Backlog {
            dir,
            files: files.into(),
            bytes,
            max_bytes,
            next_seq,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `delivery` as the newest, then drops the oldest while over the bound (the new one
    /// too, if it alone is bigger than the bound).
    pub fn push(&mut self, delivery: &Delivery) -> Result<Dropped, SafeFsError> {
        let mut header = serde_json::to_vec(delivery).unwrap_or_default();
        header.push(b'\n');
        let seq = self.next_seq;
        self.next_seq += 1;
        let name = file_name(seq);
        let mut file = self.dir.create_temp("backlog", 0o600)?;
        let written = file
            .file()
            .write_all(&header)
            .and_then(|()| file.file().write_all(&delivery.body));
        if let Err(error) = written {
            return Err(SafeFsError::Io {
                path: file.path(),
                error,
            });
        }
        file.rename_onto(name.as_ref())?;
        let size = (header.len() + delivery.body.len()) as u64;
        self.files.push_back((seq, size));
        self.bytes += size;
        let mut dropped = Dropped::default();
        while self.bytes > self.max_bytes {
            let Some((seq, size)) = self.files.pop_front() else {
                break;
            };
            let _ = self.dir.remove(&file_name(seq));
            self.bytes -= size;
            dropped.files += 1;
            dropped.bytes += size;
        }
        Ok(dropped)
    }

    /// The oldest delivery, read back; `Err` when its file is damaged (it is then removed:
    /// `pop` is not needed).
    pub fn oldest(&mut self) -> Option<Result<Delivery, String>> {
        let &(seq, _) = self.files.front()?;
        let read = self.read(seq);
        if read.is_err() {
            self.pop();
        }
        Some(read)
    }

    /// Removes the oldest delivery (sent, or given up).
    pub fn pop(&mut self) {
        if let Some((seq, size)) = self.files.pop_front() {
            let _ = self.dir.remove(&file_name(seq));
            self.bytes -= size;
        }
    }

    fn read(&self, seq: u64) -> Result<Delivery, String> {
        let name = file_name(seq);
        let file = self.dir.open_regular(&name).map_err(|e| e.to_string())?;
        let mut data = Vec::new();
        file.take(MAX_FILE + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("{}: {e}", self.dir.path().join(&name).display()))?;
        if data.len() as u64 > MAX_FILE {
            return Err(format!("{name}: larger than {MAX_FILE} bytes"));
        }
        let newline = data
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("{name}: no header"))?;
        let mut delivery: Delivery = serde_json::from_slice(&data[..newline])
            .map_err(|e| format!("{name}: damaged header: {e}"))?;
        delivery.body = data[newline + 1..].to_vec();
        Ok(delivery)
    }
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.win")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".win")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(n: u8, size: usize) -> Delivery {
        Delivery {
            window_start_unix_ns: u64::from(n),
            window_end_unix_ns: u64::from(n) + 1,
            service: format!("s{n}"),
            target: "/ingest?x=1".into(),
            content_type: "application/octet-stream".into(),
            body: vec![n; size],
        }
    }

    fn state_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pyspy-bpf-backlog-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        dir
    }

    #[test]
    fn oldest_first_bounded_and_kept_across_opens() {
        let dir = state_dir();
        let mut b = Backlog::open(&dir, "sink", 10_000).unwrap();
        for n in 0..5 {
            assert_eq!(b.push(&delivery(n, 1000)).unwrap(), Dropped::default());
        }
        // Reopened (a restarted agent): the same deliveries, oldest first.
        drop(b);
        let mut b = Backlog::open(&dir, "sink", 10_000).unwrap();
        assert_eq!(b.len(), 5);
        let first = b.oldest().unwrap().unwrap();
        assert_eq!(first, delivery(0, 1000));
        b.pop();
        assert_eq!(b.oldest().unwrap().unwrap().service, "s1");
        // Past the bound, the oldest go.
        let dropped = b.push(&delivery(9, 8000)).unwrap();
        assert!(dropped.files == 3, "{dropped:?}");
        assert!(b.bytes() <= 10_000);
        assert_eq!(b.oldest().unwrap().unwrap().service, "s4");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_dropped_not_fatal() {
        let dir = state_dir();
        let mut b = Backlog::open(&dir, "sink", 10_000).unwrap();
        b.push(&delivery(1, 10)).unwrap();
        b.push(&delivery(2, 10)).unwrap();
        let path = dir.join("backlog/sink").join(file_name(0));
        std::fs::write(&path, b"garbage without a header").unwrap();
        assert!(b.oldest().unwrap().is_err());
        assert_eq!(b.oldest().unwrap().unwrap().service, "s2");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
