//! The spool sink: gzipped pprof files in a directory, each written whole (temporary file,
//! fsync, rename), the oldest deleted once the directory holds more than its cap. Only files
//! the spool names (`*.pb.gz`) count and are deleted; anything else in the directory is left
//! alone.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use crate::agent::delivery::Delivery;
use crate::agent::sink::{SendError, Transport};
use crate::safe_fs::Dir;

pub struct Spool {
    dir: Dir,
    max_bytes: u64,
    /// Our files, oldest first: (modification time in ns, name, size).
    files: BTreeSet<(u128, String, u64)>,
    names: HashSet<String>,
    bytes: u64,
    /// Files deleted to stay under the cap.
    pub deleted: u64,
}

impl Spool {
    /// Opens (creating, private) `dir`; says so in one line when `max_bytes` is more than the
    /// disk has free.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, String> {
        let dir = Dir::private(Path::new("/"), dir).map_err(|e| format!("spool directory: {e}"))?;
        let mut files = BTreeSet::new();
        let mut bytes = 0;
        for (name, size) in dir
            .regular_files()
            .map_err(|e| format!("spool directory: {e}"))?
        {
            if !name.ends_with(".pb.gz") || name.starts_with('.') {
                continue;
            }
            let modified = dir
                .open_regular(&name)
                .ok()
                .and_then(|f| f.metadata().ok())
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            bytes += size;
            files.insert((modified, name, size));
        }
        let names = files.iter().map(|(_, n, _)| n.clone()).collect();
        let spool = Spool {
            dir,
            max_bytes,
            files,
            names,
            bytes,
            deleted: 0,
        };
        if let Some(free) = spool.dir.free_bytes() {
            if max_bytes > free.saturating_add(spool.bytes) {
                log::warn!(
                    "spool {}: max_size {} MiB is more than the disk's free space ({} MiB): the disk will fill before the cap; writes that fail are retried, then counted and dropped",
                    spool.dir.path().display(),
                    max_bytes >> 20,
                    free >> 20
                );
            }
        }
        Ok(spool)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn write(&mut self, d: &Delivery) -> Result<(), crate::safe_fs::SafeFsError> {
        let mut file = self.dir.create_temp("spool", 0o600)?;
        if let Err(error) = file.file().write_all(&d.body) {
            return Err(crate::safe_fs::SafeFsError::Io {
                path: file.path(),
                error,
            });
        }
        // The name is the delivery's; one that exists already (two windows in one
        // millisecond) gets a number, never replaces it.
        let name = self.free_name(&d.target);
        file.rename_onto(name.as_ref())?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let size = d.body.len() as u64;
        self.names.insert(name.clone());
        self.files.insert((now, name, size));
        self.bytes += size;
        Ok(())
    }

    fn free_name(&self, wanted: &str) -> String {
        let taken = |name: &str| self.names.contains(name);
        if !taken(wanted) {
            return wanted.to_string();
        }
        let stem = wanted.strip_suffix(".pb.gz").unwrap_or(wanted);
        (1..)
            .map(|n| format!("{stem}-{n}.pb.gz"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| wanted.to_string())
    }

    /// Deletes the oldest files while over the cap.
    fn enforce_cap(&mut self) {
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.files.pop_first() else {
                break;
            };
            let _ = self.dir.remove(&oldest.1);
            self.names.remove(&oldest.1);
            self.bytes -= oldest.2;
            self.deleted += 1;
        }
    }
}

impl Transport for Spool {
    fn send(&mut self, d: &Delivery) -> Result<u64, SendError> {
        match self.write(d) {
            Ok(()) => {
                self.enforce_cap();
                Ok(d.body.len() as u64)
            }
            Err(e) => Err(SendError::Retry(format!("cannot write to the spool: {e}"))),
        }
    }

    fn describe(&self) -> String {
        format!("spool {}", self.dir.path().display())
    }
}
