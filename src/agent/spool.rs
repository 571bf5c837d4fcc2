//! The spool sink: gzipped pprof files in a directory, each written whole (temporary file,
//! fsync, rename), the oldest deleted once the directory holds more than its cap. Only files
//! the spool names (`*.pb.gz`) count and are deleted; anything else in the directory is left
//! alone.
//!
//! The spool keeps no list of its files: at a 15 s interval a host writes thousands of small
//! files an hour, and a 1 GiB cap holds millions of them, so a list would grow the agent for
//! days. It keeps only the total size; past the cap it reads the directory once, keeping
//! just enough of the oldest files to free `slack` bytes, deletes those, and so goes below the
//! cap by the slack, which makes the next scan many windows away.

use std::collections::BinaryHeap;
use std::io::Write;
use std::path::Path;

use crate::agent::delivery::Delivery;
use crate::agent::sink::{SendError, Transport};
use crate::safe_fs::{Dir, FileEntry};

/// Most bytes freed below the cap by one clean-up (also at most a tenth of the cap): bounds
/// the list a clean-up holds (at ~400 bytes a file, 40K names) and how often one runs.
const MAX_SLACK: u64 = 16 << 20;
/// Most numbered alternatives tried for a file name that is taken.
const MAX_NAME_TRIES: u32 = 1000;

pub struct Spool {
    dir: Dir,
    max_bytes: u64,
    /// Size of our files in the directory (re-counted at each clean-up).
    bytes: u64,
    /// Files deleted to stay under the cap.
    pub deleted: u64,
}

/// One of our files, ordered oldest first (then by name, for files of one instant).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Spooled {
    modified_ns: u128,
    name: String,
    size: u64,
}

fn is_ours(file: &FileEntry<'_>) -> bool {
    file.name.ends_with(".pb.gz") && !file.name.starts_with('.')
}

impl Spool {
    /// Opens (creating, private) `dir`; says so in one line when `max_bytes` is more than the
    /// disk has free.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, String> {
        let dir = Dir::private(Path::new("/"), dir).map_err(|e| format!("spool directory: {e}"))?;
        let mut bytes = 0;
        dir.visit_regular_files(|file| {
            if is_ours(file) {
                bytes += file.size;
            }
        })
        .map_err(|e| format!("spool directory: {e}"))?;
        let spool = Spool {
            dir,
            max_bytes,
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
        let stem = d.target.strip_suffix(".pb.gz").unwrap_or(&d.target);
        let mut placed = file.rename_onto_new(d.target.as_ref())?;
        let mut n = 1;
        while !placed && n <= MAX_NAME_TRIES {
            placed = file.rename_onto_new(format!("{stem}-{n}.pb.gz").as_ref())?;
            n += 1;
        }
        if !placed {
            return Err(crate::safe_fs::SafeFsError::Io {
                path: self.dir.path().join(&d.target),
                error: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{MAX_NAME_TRIES} numbered names taken as well"),
                ),
            });
        }
        self.bytes += d.body.len() as u64;
        Ok(())
    }

    /// Over the cap: deletes the oldest files until the spool is `slack` bytes under it.
    fn enforce_cap(&mut self) {
        if self.bytes <= self.max_bytes {
            return;
        }
        let slack = (self.max_bytes / 10).min(MAX_SLACK);
        let target = self.max_bytes - slack;
        // The oldest files whose sizes add up to what must go, found in one pass with a heap
        // of at most that many bytes' worth of files (its top is the newest of them). What
        // must go is fixed before the pass from the running total: were it re-computed as the
        // pass adds up sizes, files dropped early for a small need could be the oldest.
        let needed = self.bytes - target;
        let mut total = 0u64;
        let mut oldest: BinaryHeap<Spooled> = BinaryHeap::new();
        let mut held = 0u64;
        let scanned = self.dir.visit_regular_files(|file| {
            if !is_ours(file) {
                return;
            }
            total += file.size;
            oldest.push(Spooled {
                modified_ns: file.modified_ns,
                name: file.name.to_string(),
                size: file.size,
            });
            held += file.size;
            // Enough bytes held without the newest of them: it need not go.
            while oldest
                .peek()
                .is_some_and(|newest| held - newest.size >= needed)
            {
                held -= oldest.pop().map_or(0, |f| f.size);
            }
        });
        if let Err(e) = scanned {
            log::warn!(
                "spool {}: cannot read it to keep it under its cap: {e}",
                self.dir.path().display()
            );
            return;
        }
        // Only what is there counts: files removed by someone else are not ours to subtract.
        self.bytes = total;
        for file in oldest.into_sorted_vec() {
            if self.bytes <= target {
                break;
            }
            match self.dir.remove(&file.name) {
                Ok(()) => {
                    self.bytes -= file.size;
                    self.deleted += 1;
                }
                Err(e) if e.is_not_found() => self.bytes -= file.size,
                Err(e) => log::warn!(
                    "spool {}: cannot delete {}: {e}",
                    self.dir.path().display(),
                    file.name
                ),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(name: &str, size: usize) -> Delivery {
        Delivery {
            window_start_unix_ns: 0,
            window_end_unix_ns: 0,
            service: "svc".into(),
            target: name.into(),
            content_type: "application/octet-stream".into(),
            body: vec![7; size],
        }
    }

    fn private_dir(tag: &str) -> std::path::PathBuf {
        let base = std::env::temp_dir().join(format!("pyspy-spool-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        base
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn the_cap_deletes_the_oldest_of_ours_and_nothing_else() {
        let base = private_dir("cap");
        let dir = base.join("spool");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), vec![1; 5000]).unwrap();
        // Cap 10,000 bytes, slack 1,000: files of 1,000 bytes.
        let mut spool = Spool::open(&dir, 10_000).unwrap();
        for i in 0..10 {
            spool
                .send(&delivery(&format!("w{i:02}.pb.gz"), 1000))
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5)); // distinct mtimes
        }
        assert_eq!(spool.bytes(), 10_000);
        assert_eq!(spool.deleted, 0);
        // The 11th goes over: the spool drops to 9,000 bytes (the cap less its slack).
        spool.send(&delivery("w10.pb.gz", 1000)).unwrap();
        assert_eq!(spool.bytes(), 9_000);
        assert_eq!(spool.deleted, 2);
        let left = names(&dir);
        assert!(!left.contains(&"w00.pb.gz".into()) && !left.contains(&"w01.pb.gz".into()));
        assert!(left.contains(&"w02.pb.gz".into()) && left.contains(&"w10.pb.gz".into()));
        assert!(left.contains(&"notes.txt".into()), "{left:?}");
        // A reopened spool counts what is there.
        drop(spool);
        assert_eq!(Spool::open(&dir, 10_000).unwrap().bytes(), 9_000);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_taken_name_gets_a_number_and_replaces_nothing() {
        let base = private_dir("names");
        let dir = base.join("spool");
        let mut spool = Spool::open(&dir, 1 << 30).unwrap();
        spool.send(&delivery("a.pb.gz", 10)).unwrap();
        spool.send(&delivery("a.pb.gz", 20)).unwrap();
        spool.send(&delivery("a.pb.gz", 30)).unwrap();
        assert_eq!(names(&dir), vec!["a-1.pb.gz", "a-2.pb.gz", "a.pb.gz"]);
        assert_eq!(std::fs::metadata(dir.join("a.pb.gz")).unwrap().len(), 10);
        assert_eq!(spool.bytes(), 60);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn many_small_files_past_the_cap_keep_the_newest() {
        // Many small files and a cap exceeded once: exactly the oldest that bring the spool
        // to the cap less its slack go (30,100 - 18,000 bytes: 121 files), the newest stay.
        let base = private_dir("many");
        let dir = base.join("spool");
        let mut spool = Spool::open(&dir, 1 << 30).unwrap();
        for i in 0..300 {
            spool
                .send(&delivery(&format!("f{i:04}.pb.gz"), 100))
                .unwrap();
        }
        spool.max_bytes = 20_000; // 200 files' worth; slack 2,000
        spool.send(&delivery("last.pb.gz", 100)).unwrap();
        assert_eq!(spool.bytes(), 18_000);
        assert_eq!(spool.deleted, 121);
        assert!(names(&dir).contains(&"last.pb.gz".into()));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
