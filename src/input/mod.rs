//! Profiles read back from files: the formats this project writes that keep stacks (pprof,
//! collapsed text), so that `diff` and `convert` can work on recorded profiles.
//!
//! Files are untrusted input: their size is bounded or they are streamed, every count and
//! index is checked, and whatever is wrong is a one-line error naming the file.

pub mod collapsed;
pub mod pprof;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};

use crate::profile::Profile;

/// What a file holds, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// gzip (a compressed pprof) or a raw protobuf message.
    Pprof,
    /// Text: collapsed stacks.
    Collapsed,
}

/// Tells the format from the first bytes of a file.
pub fn detect(head: &[u8]) -> Detected {
    match head {
        [0x1f, 0x8b, ..] => Detected::Pprof,
        // A pprof message starts with field 1 (sample_type, length-delimited: 0x0a) in every
        // writer we know; a collapsed file starts with a frame name.
        [0x0a, ..] => Detected::Pprof,
        _ => Detected::Collapsed,
    }
}

/// Reads a profile file of any format this project reads.
pub fn read_profile(path: &Path) -> anyhow::Result<Profile> {
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("{shown}: cannot open"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{shown}: cannot open"))?;
    if meta.is_dir() {
        bail!("{shown}: is a directory, not a profile");
    }
    if !meta.is_file() {
        bail!("{shown}: not a regular file");
    }
    if meta.len() == 0 {
        bail!("{shown}: empty file, not a profile");
    }
    let mut reader = BufReader::new(file);
    let mut head = [0u8; 2];
    let n = read_head(&mut reader, &mut head).with_context(|| format!("{shown}: cannot read"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = std::io::Cursor::new(head[..n].to_vec());
    let detected = detect(&head[..n]);
    // An uncompressed message is read whole before it is decoded: refuse one too large to be
    // by its size, before reading any of it.
    if detected == Detected::Pprof && head[0] != 0x1f && meta.len() > pprof::MAX_MESSAGE_BYTES {
        bail!(
            "{shown}: not a readable pprof profile: larger than {} MiB uncompressed",
            pprof::MAX_MESSAGE_BYTES >> 20
        );
    }
    match detected {
        Detected::Pprof => pprof::read(prefix.chain(reader))
            .with_context(|| format!("{shown}: not a readable pprof profile")),
        Detected::Collapsed => collapsed::read(prefix.chain(reader), &name)
            .with_context(|| format!("{shown}: not a collapsed-stacks profile")),
    }
}

fn read_head(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
