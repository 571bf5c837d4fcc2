//! Off Linux: the part of `safe_fs` that `record` uses for its output (a new file under a
//! default name; a temporary file renamed onto `-o PATH`), on `std` alone.
//!
//! What it keeps of `safe_fs.rs`'s promises: a file is created new (`create_new`: never over
//! an existing file, and never through a symlink planted at its name) and replaces a file only
//! by a rename. What it does not: files are reached by path, not relative to a directory held
//! open (no `openat` on Windows), so a directory renamed during a run is not followed. The
//! profiler off Linux reads only the user's own processes, as that user, which is what makes
//! this enough; the Linux version defends a root profiler in directories others control.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::safe_name::{safe_name, MAX_SAFE_NAME};

/// How many numbered names `Dir::create_unique` tries after the plain one.
const MAX_NUMBERED: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{dir}: {stem}{ext} and {tries} other names taken")]
    NamesTaken {
        dir: PathBuf,
        stem: String,
        ext: String,
        tries: usize,
    },
}

impl SafeFsError {
    fn io(path: impl Into<PathBuf>, error: std::io::Error) -> SafeFsError {
        SafeFsError::Io {
            path: path.into(),
            error,
        }
    }
}

/// A directory, by path.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
}

impl Dir {
    pub fn current() -> Result<Dir, SafeFsError> {
        Dir::open(Path::new("."))
    }

    pub fn open(path: &Path) -> Result<Dir, SafeFsError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(Dir {
                path: path.to_path_buf(),
            }),
            Ok(_) => Err(SafeFsError::io(
                path,
                std::io::Error::other("not a directory"),
            )),
            Err(e) => Err(SafeFsError::io(path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new file named `STEM.EXT`, or `STEM-1.EXT`, ... if taken. `mode` applies on Unix.
    pub fn create_unique(&self, stem: &str, ext: &str, mode: u32) -> Result<NewFile, SafeFsError> {
        let ext = match ext {
            "" => String::new(),
            ext => format!(".{ext}"),
        };
        for n in 0..=MAX_NUMBERED {
            let name = match n {
                0 => format!("{stem}{ext}"),
                n => format!("{stem}-{n}{ext}"),
            };
            let path = self.path.join(&name);
            match create_new(&path, mode) {
                Ok(file) => {
                    return Ok(NewFile {
                        path,
                        file,
                        keep: false,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SafeFsError::io(path, e)),
            }
        }
        Err(SafeFsError::NamesTaken {
            dir: self.path.clone(),
            stem: stem.to_string(),
            ext,
            tries: MAX_NUMBERED,
        })
    }

    /// A new temporary file, `.PREFIX-PID.tmp` (numbered if taken), to be renamed onto its
    /// real name once written, or removed when dropped.
    pub fn create_temp(&self, prefix: &str, mode: u32) -> Result<NewFile, SafeFsError> {
        self.create_unique(&format!(".{prefix}-{}", std::process::id()), "tmp", mode)
    }
}

fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// A file we created, removed when dropped unless kept or renamed.
#[derive(Debug)]
pub struct NewFile {
    path: PathBuf,
    file: File,
    keep: bool,
}

impl NewFile {
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Flush the file and rename it onto `name` in its directory (replacing what is there).
    pub fn rename_onto(&mut self, name: &OsStr) -> Result<(), SafeFsError> {
        let target = self.path.with_file_name(name);
        self.file
            .sync_all()
            .map_err(|e| SafeFsError::io(&self.path, e))?;
        std::fs::rename(&self.path, &target).map_err(|e| SafeFsError::io(&target, e))?;
        self.path = target;
        self.keep = true;
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
