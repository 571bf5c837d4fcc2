//! Files the profiler creates on its own account (a default output name, the kernel symbol
//! cache, later the agent's spool): never through a symlink, never over an existing file,
//! always relative to a directory held open, and private data only in a directory that no
//! other user can change.
//!
//! The profiler runs as root in directories, and with environments (`sudo -E`, a shared
//! `HOME`), that other users may control. Opening a path by name twice, or following a link
//! at a name someone else could plant, would let them choose which file root writes. So:
//! - a directory is opened once (`Dir`) and every file is created relative to it
//!   (`openat` and friends), with `O_CREAT | O_EXCL | O_NOFOLLOW`;
//! - a file is replaced only by renaming a file we just created onto it (`NewFile::rename_onto`);
//! - a private directory (`Dir::private`) is walked one component at a time from `/`, each
//!   checked to belong to root or to us and not be writable by others.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

pub use crate::safe_name::{safe_name, MAX_SAFE_NAME};

/// Why a file or directory was not used or not created.
#[derive(Debug, thiserror::Error)]
pub enum SafeFsError {
    /// The path is not one we may trust with private data; `why` says which part and why.
    #[error("{path}: {why}")]
    Untrusted { path: PathBuf, why: String },
    /// (Not a `#[source]`: the message already holds it.)
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Every name tried for a new file existed already.
    #[error("{dir}: {stem}{ext} and {tries} other names taken")]
    NamesTaken {
        dir: PathBuf,
        stem: String,
        ext: String,
        tries: usize,
    },
}

impl SafeFsError {
    fn io(path: impl Into<PathBuf>, errno: Errno) -> SafeFsError {
        SafeFsError::Io {
            path: path.into(),
            error: errno.into(),
        }
    }

    fn untrusted(path: impl Into<PathBuf>, why: impl Into<String>) -> SafeFsError {
        SafeFsError::Untrusted {
            path: path.into(),
            why: why.into(),
        }
    }

    /// Whether the error is only that the path does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, SafeFsError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// How many symlinks `Dir::private` follows before giving up (as the kernel's `ELOOP`).
const MAX_SYMLINKS: usize = 40;
/// How many numbered names `Dir::create_unique` tries after the plain one.
const MAX_NUMBERED: usize = 1000;
/// The effective user id: the owner of what we create, the only user besides root whose
/// directories we trust.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A regular file seen by `Dir::visit_regular_files`.
#[derive(Debug)]
pub struct FileEntry<'a> {
    pub name: &'a str,
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 before it).
    pub modified_ns: u128,
}

/// A directory held open: every file is created, opened, renamed and removed relative to
/// it, so renaming or replacing the directory's path afterwards changes nothing.
#[derive(Debug)]
pub struct Dir {
    /// Shared with the `NewFile`s created in it.
    fd: Arc<OwnedFd>,
    /// The path it was opened by, for messages.
    path: PathBuf,
}

impl Dir {
    /// The current directory: where the user chose to run us.
    pub fn current() -> Result<Dir, SafeFsError> {
        let path = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let fd = rustix::fs::openat(rustix::fs::CWD, ".", dir_flags(), Mode::empty())
            .map_err(|e| SafeFsError::io(&path, e))?;
        Ok(Dir {
            fd: Arc::new(fd),
            path,
        })
    }

    /// A directory the user named (the directory of `-o PATH`), symlinks followed: it is the
    /// user's choice.
    pub fn open(path: &Path) -> Result<Dir, SafeFsError> {
        let fd = rustix::fs::openat(rustix::fs::CWD, path, dir_flags(), Mode::empty())
            .map_err(|e| SafeFsError::io(path, e))?;
        Ok(Dir {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        })
    }

    /// A directory for private data: `base` (which must exist) then `sub` below it (its
    /// missing components created, mode 0700). `base` must be absolute. Walked from `/` one
    /// component at a time, never following a symlink blindly: every directory on the way
    /// belongs to root or to us and is not writable by group or others (unless it is root's
    /// and sticky, as `/tmp`), a symlink is followed only if root or we own it, and the last
    /// directory is ours and not writable by group or others.
    pub fn private(base: &Path, sub: &Path) -> Result<Dir, SafeFsError> {
        if !base.is_absolute() {
            return Err(SafeFsError::untrusted(base, "not an absolute path"));
        }
        let me = euid();
        let mut walk = Walk {
            fd: open_dir(rustix::fs::CWD, Path::new("/"))?,
            shown: PathBuf::from("/"),
            pending: Vec::new(),
            follows: 0,
        };
        walk.check(me, false)?;
        walk.push_front(base);
        walk.run(me, false)?;
        walk.push_front(sub);
        walk.run(me, true)?;
        if walk.stat()?.st_uid != me {
            return Err(SafeFsError::untrusted(
                &walk.shown,
                format!("owned by uid {}, not by us (uid {me})", walk.stat()?.st_uid),
            ));
        }
        Ok(Dir {
            fd: Arc::new(walk.fd),
            path: walk.shown,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Create `name` in this directory, new: fails if anything (a file, a symlink) is there
    /// already. `mode` is filtered by the umask.
    pub fn create_new(&self, name: &str, mode: u32) -> Result<NewFile, SafeFsError> {
        self.try_create_new(name, mode)
            .map_err(|e| SafeFsError::io(self.path.join(name), e))
    }

    fn try_create_new(&self, name: &str, mode: u32) -> Result<NewFile, Errno> {
        if !is_one_component(name) {
            return Err(Errno::INVAL);
        }
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rustix::fs::openat(
            &*self.fd,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        Ok(NewFile {
            dir: self.fd.clone(),
            dir_path: self.path.clone(),
            name: OsString::from(name),
            file: File::from(fd),
            id: (stat.st_dev, stat.st_ino),
            keep: false,
        })
    }

    /// A new file named `STEM.EXT`, or `STEM-1.EXT`, `STEM-2.EXT`, ... if that exists (`ext`
    /// may be empty): never over an existing file or symlink.
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
            match self.try_create_new(&name, mode) {
                Ok(file) => return Ok(file),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(SafeFsError::io(self.path.join(name), e)),
            }
        }
        Err(SafeFsError::NamesTaken {
            dir: self.path.clone(),
            stem: stem.to_string(),
            ext,
            tries: MAX_NUMBERED,
        })
    }

    /// A new hidden temporary file, `.PREFIX-PID.tmp` (numbered if taken), to be renamed
    /// onto its real name once written (`NewFile::rename_onto`), or removed when dropped.
    pub fn create_temp(&self, prefix: &str, mode: u32) -> Result<NewFile, SafeFsError> {
        self.create_unique(&format!(".{prefix}-{}", std::process::id()), "tmp", mode)
    }

    /// Open `name` for reading if it is private to us: a regular file (not a symlink), owned
    /// by us, that neither group nor others may read or write. `Ok(None)` if it is missing.
    pub fn open_private_file(&self, name: &str) -> Result<Option<File>, SafeFsError> {
        let file = match self.open_regular(name) {
            Ok(file) => file,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let path = self.path.join(name);
        let stat = rustix::fs::fstat(&file).map_err(|e| SafeFsError::io(&path, e))?;
        let me = euid();
        if stat.st_uid != me {
            return Err(SafeFsError::untrusted(
                path,
                format!("owned by uid {}, not by us (uid {me})", stat.st_uid),
            ));
        }
        if stat.st_mode & 0o077 != 0 {
            return Err(SafeFsError::untrusted(
                path,
                format!(
                    "mode {:o}: others may read or write it",
                    stat.st_mode & 0o7777
                ),
            ));
        }
        Ok(Some(file))
    }

    /// The regular files in this directory and their sizes, unsorted (symlinks and anything
    /// else are left out: nobody but us writes here, and what we did not write is not ours).
    pub fn regular_files(&self) -> Result<Vec<(String, u64)>, SafeFsError> {
        let mut files = Vec::new();
        self.visit_regular_files(|file| files.push((file.name.to_string(), file.size)))?;
        Ok(files)
    }

    /// Calls `visit` with each regular file directly in the directory (symlinks and other
    /// kinds are skipped, never followed), one at a time: a directory of millions of files
    /// is read without holding a list of them.
    pub fn visit_regular_files(
        &self,
        mut visit: impl FnMut(&FileEntry<'_>),
    ) -> Result<(), SafeFsError> {
        let fd = rustix::fs::openat(
            &*self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SafeFsError::io(&self.path, e))?;
        let mut dir =
            rustix::fs::Dir::read_from(&fd).map_err(|e| SafeFsError::io(&self.path, e))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| SafeFsError::io(&self.path, e))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            if let Ok(stat) = rustix::fs::statat(&*self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile {
                    visit(&FileEntry {
                        name,
                        size: stat.st_size as u64,
                        modified_ns: (stat.st_mtime as i128 * 1_000_000_000
                            + stat.st_mtime_nsec as i128)
                            .max(0) as u128,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<(), SafeFsError> {
        let path = self.path.join(name);
        if !is_one_component(name) {
            return Err(SafeFsError::io(path, Errno::INVAL));
        }
        rustix::fs::unlinkat(&*self.fd, name, AtFlags::empty())
            .map_err(|e| SafeFsError::io(path, e))
    }

    /// Open the regular file `name` for reading, never through a symlink.
    pub fn open_regular(&self, name: &str) -> Result<File, SafeFsError> {
        let path = self.path.join(name);
        if !is_one_component(name) {
            return Err(SafeFsError::io(path, Errno::INVAL));
        }
        // O_NONBLOCK: a FIFO cannot hold the open; it is refused below (reads of a regular
        // file ignore the flag).
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&*self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return Err(SafeFsError::untrusted(path, "a symlink")),
            Err(e) => return Err(SafeFsError::io(path, e)),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| SafeFsError::io(&path, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(SafeFsError::untrusted(path, "not a regular file"));
        }
        Ok(File::from(fd))
    }

    /// Bytes free for us on the directory's file system.
    pub fn free_bytes(&self) -> Option<u64> {
        let st = rustix::fs::fstatvfs(&*self.fd).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// A file this run created (`Dir::create_new`, `create_unique`, `create_temp`): removed when
/// dropped unless kept or renamed, so a run that fails leaves nothing behind.
#[derive(Debug)]
pub struct NewFile {
    dir: Arc<OwnedFd>,
    dir_path: PathBuf,
    name: OsString,
    file: File,
    /// (device, inode): removal checks the name still holds this file.
    id: (u64, u64),
    keep: bool,
}

impl NewFile {
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Its path, for messages (files are reached through the directory held open, never by
    /// this path).
    pub fn path(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// Keep the file when this is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// Flush the file to disk and rename it onto `name` in the same directory (replacing
    /// what is there, a symlink included, not what it points to): readers of `name` see
    /// the old file or the whole new one. On failure the file stays where it is (and is
    /// removed when dropped, unless kept).
    pub fn rename_onto(&mut self, name: &OsStr) -> Result<(), SafeFsError> {
        let target = self.dir_path.join(name);
        if !is_one_component(name) {
            return Err(SafeFsError::io(target, Errno::INVAL));
        }
        self.file.sync_all().map_err(|error| SafeFsError::Io {
            path: self.path(),
            error,
        })?;
        rustix::fs::renameat(&*self.dir, &self.name, &*self.dir, name)
            .map_err(|e| SafeFsError::io(target, e))?;
        self.name = name.to_os_string();
        self.keep = true;
        Ok(())
    }

    /// `rename_onto`, but never replacing a file that exists (`RENAME_NOREPLACE`): `Ok(false)`
    /// when `name` is taken, and the file stays where it is.
    pub fn rename_onto_new(&mut self, name: &OsStr) -> Result<bool, SafeFsError> {
        let target = self.dir_path.join(name);
        if !is_one_component(name) {
            return Err(SafeFsError::io(target, Errno::INVAL));
        }
        self.file.sync_all().map_err(|error| SafeFsError::Io {
            path: self.path(),
            error,
        })?;
        match rustix::fs::renameat_with(
            &*self.dir,
            &self.name,
            &*self.dir,
            name,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => {
                self.name = name.to_os_string();
                self.keep = true;
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(SafeFsError::io(target, e)),
        }
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Only if the name still holds our file: someone who can write the directory may
        // have replaced it, and what they put there is not ours to remove.
        let ours = rustix::fs::statat(&*self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| (s.st_dev, s.st_ino) == self.id);
        if ours {
            let _ = rustix::fs::unlinkat(&*self.dir, &self.name, AtFlags::empty());
        }
    }
}

/// A single, ordinary file name: not empty, no `/`, not `.` or `..`.
fn is_one_component(name: impl AsRef<OsStr>) -> bool {
    let name = name.as_ref().as_bytes();
    !name.is_empty() && !name.contains(&b'/') && name != b"." && name != b".."
}

/// A directory opened only as a handle to work relative to (no read permission needed).
fn dir_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn open_dir(at: impl AsFd, path: &Path) -> Result<OwnedFd, SafeFsError> {
    rustix::fs::openat(at, path, dir_flags(), Mode::empty()).map_err(|e| SafeFsError::io(path, e))
}

/// `Dir::private`'s walk: the directory reached so far, and the components still to go.
struct Walk {
    fd: OwnedFd,
    /// The path as walked (symlinks replaced by their targets), for messages.
    shown: PathBuf,
    /// Components left, the next one last.
    pending: Vec<OsString>,
    follows: usize,
}

impl Walk {
    fn stat(&self) -> Result<Stat, SafeFsError> {
        rustix::fs::fstat(&self.fd).map_err(|e| SafeFsError::io(&self.shown, e))
    }

    /// Queue `path`'s components to be walked next; an absolute path restarts from `/`.
    fn push_front(&mut self, path: &Path) {
        let mut parts = Vec::new();
        for part in path.components() {
            match part {
                Component::RootDir => {
                    parts.clear();
                    parts.push(OsString::from("/"));
                }
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => parts.push(OsString::from("..")),
                Component::Normal(name) => parts.push(name.to_os_string()),
            }
        }
        self.pending.extend(parts.into_iter().rev());
    }

    /// Walk the pending components, creating missing directories (0700) if `create`.
    fn run(&mut self, me: u32, create: bool) -> Result<(), SafeFsError> {
        while let Some(part) = self.pending.pop() {
            if part == "/" {
                self.fd = open_dir(rustix::fs::CWD, Path::new("/"))?;
                self.shown = PathBuf::from("/");
                self.check(me, false)?;
                continue;
            }
            let next = self.shown.join(&part);
            let flags = dir_flags() | OFlags::NOFOLLOW;
            match rustix::fs::openat(&self.fd, &part, flags, Mode::empty()) {
                Ok(fd) => {
                    self.fd = fd;
                    self.shown = next;
                }
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&self.fd, &part, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(SafeFsError::io(next, e)),
                    }
                    self.pending.push(part); // open (and check) it as any other
                    continue;
                }
                // O_PATH | O_NOFOLLOW opens a symlink itself; O_DIRECTORY then refuses it.
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    self.follow(me, &part, &next)?;
                    continue;
                }
                Err(e) => return Err(SafeFsError::io(next, e)),
            }
            self.check(me, false)?;
        }
        self.check(me, true)
    }

    /// `part` (at `shown`) is not a directory: if it is a symlink that root or we own, queue
    /// its target; anything else is refused.
    fn follow(&mut self, me: u32, part: &OsStr, shown: &Path) -> Result<(), SafeFsError> {
        let stat = rustix::fs::statat(&self.fd, part, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| SafeFsError::io(shown, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
            return Err(SafeFsError::io(shown, Errno::NOTDIR));
        }
        if stat.st_uid != me && stat.st_uid != 0 {
            return Err(SafeFsError::untrusted(
                shown,
                format!("a symlink owned by uid {}, not by root or us", stat.st_uid),
            ));
        }
        self.follows += 1;
        if self.follows > MAX_SYMLINKS {
            return Err(SafeFsError::io(shown, Errno::LOOP));
        }
        let target = rustix::fs::readlinkat(&self.fd, part, Vec::new())
            .map_err(|e| SafeFsError::io(shown, e))?;
        let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
        self.push_front(&target);
        Ok(())
    }

    /// The directory reached: owned by root or us (only us if `last`), and not writable by
    /// group or others (except root's sticky directories, such as `/tmp`, on the way).
    fn check(&self, me: u32, last: bool) -> Result<(), SafeFsError> {
        let stat = self.stat()?;
        let (uid, mode) = (stat.st_uid, stat.st_mode);
        let owner_ok = uid == me || (uid == 0 && !last);
        if !owner_ok {
            return Err(SafeFsError::untrusted(
                &self.shown,
                format!(
                    "owned by uid {uid}, not by {}us (uid {me})",
                    if last { "" } else { "root or " }
                ),
            ));
        }
        let sticky_root = mode & 0o1000 != 0 && uid == 0 && !last;
        if mode & 0o022 != 0 && !sticky_root {
            return Err(SafeFsError::untrusted(
                &self.shown,
                format!("mode {:o}: group or others may write it", mode & 0o7777),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("pyspy-bpf-safefs-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn names_from_untrusted_sources_are_made_safe() {
        let cases = [
            ("python3", Some("python3")),
            ("../../x", Some("x")),
            ("/tmp/evil/y", Some("tmp_evil_y")),
            (".hidden", Some("hidden")),
            ("..", None),
            ("", None),
            ("/", None),
            ("-rf", Some("rf")),
            ("a\nb\x1b[31mc\t", Some("a_b__31mc_")),
            ("gunicorn: worker", Some("gunicorn__worker")),
            ("prä.sent", Some("pr_.sent")),
            ("a/../../b", Some("a_.._.._b")),
        ];
        for (raw, want) in cases {
            assert_eq!(safe_name(raw).as_deref(), want, "{raw:?}");
        }
        let long = safe_name(&"x".repeat(500)).unwrap();
        assert_eq!(long.len(), MAX_SAFE_NAME);
        for raw in ["\u{7f}\u{0}../a", "é€/b", "..\u{0}..c"] {
            let name = safe_name(raw).unwrap();
            assert!(
                name.bytes().all(|b| b.is_ascii_graphic() && b != b'/'),
                "{name:?}"
            );
            assert!(!name.starts_with('.') && !name.starts_with('-'), "{name:?}");
        }
    }

    #[test]
    fn new_files_never_follow_or_replace_what_is_there() {
        let scratch = Scratch::new("new");
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let inside = scratch.0.join("inside");
        std::fs::create_dir(&inside).unwrap();
        std::os::unix::fs::symlink(&victim, inside.join("out.txt")).unwrap();
        std::fs::write(inside.join("out-1.txt"), "an earlier profile").unwrap();
        let dir = Dir::open(&inside).unwrap();
        // A symlink or a file at the name: it is not a new file.
        assert!(dir.create_new("out.txt", 0o644).is_err());
        assert!(dir.create_new("out-1.txt", 0o644).is_err());
        assert!(dir.create_new("../escape", 0o644).is_err());
        assert!(dir.create_new("..", 0o644).is_err());
        let mut created = dir.create_unique("out", "txt", 0o600).unwrap();
        assert_eq!(created.path(), inside.join("out-2.txt"));
        created.file().write_all(b"new").unwrap();
        created.keep();
        drop(created);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(inside.join("out-1.txt")).unwrap(),
            "an earlier profile"
        );
        assert_eq!(
            std::fs::read_to_string(inside.join("out-2.txt")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::metadata(inside.join("out-2.txt")).unwrap().mode() & 0o777,
            0o600
        );
        // Not kept: removed when dropped; a name someone replaced meanwhile is left alone.
        let dropped = dir.create_unique("gone", "", 0o600).unwrap();
        assert!(inside.join("gone").exists());
        drop(dropped);
        assert!(!inside.join("gone").exists());
        let replaced = dir.create_new("swapped", 0o600).unwrap();
        std::fs::remove_file(inside.join("swapped")).unwrap();
        std::fs::write(inside.join("swapped"), "theirs").unwrap();
        drop(replaced);
        assert_eq!(
            std::fs::read_to_string(inside.join("swapped")).unwrap(),
            "theirs"
        );
    }

    #[test]
    fn temporary_files_are_renamed_onto_the_name_not_through_it() {
        let scratch = Scratch::new("temp");
        let victim = scratch.0.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, scratch.0.join("cache")).unwrap();
        let dir = Dir::open(&scratch.0).unwrap();
        let mut temp = dir.create_temp("cache", 0o600).unwrap();
        let temp_path = temp.path();
        let temp_name = temp_path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(temp_name, format!(".cache-{}.tmp", std::process::id()));
        // The temporary name taken: the next one is numbered.
        let second = dir.create_temp("cache", 0o600).unwrap();
        assert_eq!(
            second.path().file_name().unwrap().to_str().unwrap(),
            format!(".cache-{}-1.tmp", std::process::id())
        );
        temp.file().write_all(b"fresh").unwrap();
        temp.rename_onto(OsStr::new("cache")).unwrap();
        drop(temp);
        assert!(!temp_path.exists());
        let cache = scratch.0.join("cache");
        assert!(std::fs::symlink_metadata(&cache).unwrap().is_file());
        assert_eq!(std::fs::read_to_string(&cache).unwrap(), "fresh");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn private_files_are_regular_ours_and_0600() {
        let scratch = Scratch::new("private-file");
        let dir = Dir::open(&scratch.0).unwrap();
        assert!(dir.open_private_file("missing").unwrap().is_none());
        let file = scratch.0.join("good");
        std::fs::write(&file, "data").unwrap();
        chmod(&file, 0o600);
        let mut text = String::new();
        dir.open_private_file("good")
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "data");
        chmod(&file, 0o640);
        assert!(dir.open_private_file("good").is_err());
        chmod(&file, 0o600);
        std::os::unix::fs::symlink(&file, scratch.0.join("link")).unwrap();
        assert!(matches!(
            dir.open_private_file("link"),
            Err(SafeFsError::Untrusted { .. })
        ));
        std::fs::create_dir(scratch.0.join("sub")).unwrap();
        assert!(dir.open_private_file("sub").is_err());
    }

    #[test]
    fn private_directories_are_checked_all_the_way_down() {
        let scratch = Scratch::new("private-dir");
        let base = scratch.0.join("home");
        std::fs::create_dir(&base).unwrap();
        chmod(&base, 0o700);
        // Missing parts are created 0700, and reached again the same way.
        let dir = Dir::private(&base, Path::new(".cache/pyspy-bpf")).unwrap();
        assert_eq!(dir.path(), base.join(".cache/pyspy-bpf"));
        let made = std::fs::metadata(base.join(".cache/pyspy-bpf")).unwrap();
        assert_eq!(made.mode() & 0o777, 0o700);
        Dir::private(&base, Path::new(".cache/pyspy-bpf")).unwrap();
        // The last directory writable by others, or an ancestor writable by group.
        chmod(&base.join(".cache/pyspy-bpf"), 0o777);
        let err = Dir::private(&base, Path::new(".cache/pyspy-bpf")).unwrap_err();
        assert!(err.to_string().contains("777"), "{err}");
        chmod(&base.join(".cache/pyspy-bpf"), 0o700);
        chmod(&base, 0o770);
        assert!(Dir::private(&base, Path::new(".cache/pyspy-bpf")).is_err());
        chmod(&base, 0o700);
        // A relative base, or a base that does not exist, is not created.
        assert!(Dir::private(Path::new("relative"), Path::new("x")).is_err());
        let missing = Dir::private(&scratch.0.join("nohome"), Path::new("x")).unwrap_err();
        assert!(missing.is_not_found(), "{missing}");
        assert!(!scratch.0.join("nohome").exists());
        // A symlink of ours on the way is followed (and its target checked).
        let link = scratch.0.join("home-link");
        std::os::unix::fs::symlink("home", &link).unwrap();
        let via_link = Dir::private(&link, Path::new(".cache/pyspy-bpf")).unwrap();
        assert_eq!(via_link.path(), base.join(".cache/pyspy-bpf"));
        // A symlink as the last part too, but the directory it names must be private.
        std::os::unix::fs::symlink("/tmp", base.join(".cache/tmp-link")).unwrap();
        assert!(Dir::private(&base, Path::new(".cache/tmp-link")).is_err());
        // A file where a directory should be.
        std::fs::write(base.join("file"), "").unwrap();
        assert!(Dir::private(&base, Path::new("file/x")).is_err());
    }

    /// As root: directories and symlinks that another user owns are refused.
    #[test]
    fn private_directories_refuse_what_others_own() {
        if euid() != 0 {
            eprintln!("skipped: needs root to give files to another user");
            return;
        }
        let scratch = Scratch::new("others");
        let nobody = 65534;
        let theirs = scratch.0.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        chmod(&theirs, 0o700);
        std::os::unix::fs::chown(&theirs, Some(nobody), Some(nobody)).unwrap();
        let err = Dir::private(&theirs, Path::new("pyspy-bpf")).unwrap_err();
        assert!(err.to_string().contains("65534"), "{err}");
        assert!(!theirs.join("pyspy-bpf").exists());
        // Ours, but under a directory of theirs.
        std::fs::create_dir(theirs.join("ours")).unwrap();
        chmod(&theirs.join("ours"), 0o700);
        assert!(Dir::private(&theirs.join("ours"), Path::new("")).is_err());
        // Our directory reached through their symlink.
        let ours = scratch.0.join("ours");
        std::fs::create_dir(&ours).unwrap();
        chmod(&ours, 0o700);
        Dir::private(&ours, Path::new("")).unwrap();
        let link = scratch.0.join("their-link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(nobody), Some(nobody)).unwrap();
        let err = Dir::private(&link, Path::new("")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
    }
}
