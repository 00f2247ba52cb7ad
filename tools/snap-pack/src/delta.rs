//! Big files in an incremental archive: only the blocks that changed.
//!
//! A file of [`BIG_FILE`] or more whose base archive recorded its block
//! digests is read once, block by block ([`BLOCK`]); each block whose
//! digest differs from the base's (or that lies past the base's end) joins
//! a run, and each run is an ordinary tar member `PATH.snap-blocks/OFFSET`
//! (16 decimal digits; split at [`RUN_MAX`]), followed by the member
//! `PATH.snap-blocks/size` holding the new size. `dd` puts the runs into a
//! copy of the previous version and `truncate` gives it its size
//! (docs/recovery.md); snap-restore does the same along the chain. The whole
//! file's sha256 is still checked against the snapshot's index.

use std::fs::File;
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use snap_shared::hash::Sha256Digest;
use snap_shared::index::{BLOCK, Blocks, Entry, EntryType, Run, run_member, size_member};

use crate::sink::Sink;
use snap_shared::tarw::TarWriter;

/// The longest run one member holds: a restore or `dd` handles it in one piece.
pub const RUN_MAX: usize = 8 << 20;

/// What went wrong with a delta: reading the snapshot's file, or writing the tar.
pub enum Fail {
    Read(io::Error),
    Write(io::Error),
    /// The snapshot's file is not what its index says.
    Changed(String),
}

/// What a delta put in the archive.
pub struct Delta {
    pub runs: Vec<Run>,
    pub blocks: Blocks,
    /// Bytes of the runs.
    pub carried: u64,
}

/// Writes the runs of `file` (the snapshot's copy of `entry`) that differ
/// from `base`, and the size member. When the snapshot's index has the
/// file's block digests (snap-collect made them as it copied the file), the
/// changed blocks are known without reading: only they are read, each
/// checked against its digest, so the archive never carries bytes the
/// snapshot did not record. Otherwise the whole file is read and hashed.
pub fn write(
    file: &mut File,
    entry: &Entry,
    base: &Blocks,
    tar: &mut TarWriter<Sink>,
) -> Result<Delta, Fail> {
    if let Some(own) = entry.blocks.as_ref().filter(|b| b.size == BLOCK) {
        return write_known(file, entry, own, base, tar);
    }
    let size = entry.size;
    let mut whole = Sha256::new();
    let mut digests = Vec::with_capacity(size.div_ceil(BLOCK) as usize);
    let mut out = Out::new(tar, entry);
    let mut buf = vec![0u8; BLOCK as usize];
    let mut pos = 0u64;
    while pos < size {
        let want = (size - pos).min(BLOCK) as usize;
        match file.read_exact(&mut buf[..want]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Fail::Changed("it ended early".into()));
            }
            Err(e) => return Err(Fail::Read(e)),
        }
        let block = &buf[..want];
        whole.update(block);
        let digest = Sha256Digest::of(block);
        let index = (pos / BLOCK) as usize;
        if base.digests.get(index) == Some(&digest) {
            out.flush()?;
        } else {
            if out.run.is_empty() {
                out.run_at = pos;
            }
            out.run.extend_from_slice(block);
            if out.run.len() >= RUN_MAX {
                out.flush()?;
            }
        }
        digests.push(digest);
        pos += want as u64;
    }
    out.flush()?;
    let got = Sha256Digest::from_hasher(whole);
    if entry.sha256 != Some(got) {
        let want = entry.sha256.map_or("none".into(), |d| d.to_hex());
        return Err(Fail::Changed(format!(
            "sha256 {got}, the index says {want}"
        )));
    }
    out.member(&size_member(&entry.path), format!("{size}\n").as_bytes())?;
    Ok(Delta {
        runs: out.runs,
        blocks: Blocks {
            size: BLOCK,
            digests,
        },
        carried: out.carried,
    })
}

/// [`write`] when the snapshot's index has the file's block digests.
fn write_known(
    file: &File,
    entry: &Entry,
    own: &Blocks,
    base: &Blocks,
    tar: &mut TarWriter<Sink>,
) -> Result<Delta, Fail> {
    use std::os::unix::fs::FileExt;
    let size = entry.size;
    let mut out = Out::new(tar, entry);
    let mut buf = vec![0u8; BLOCK as usize];
    for (i, digest) in own.digests.iter().enumerate() {
        if base.digests.get(i) == Some(digest) {
            out.flush()?;
            continue;
        }
        let pos = i as u64 * BLOCK;
        let want = (size - pos).min(BLOCK) as usize;
        match file.read_exact_at(&mut buf[..want], pos) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(Fail::Changed("it ended early".into()));
            }
            Err(e) => return Err(Fail::Read(e)),
        }
        let got = Sha256Digest::of(&buf[..want]);
        if got != *digest {
            return Err(Fail::Changed(format!(
                "block {i}: sha256 {got}, the index says {digest}"
            )));
        }
        if out.run.is_empty() {
            out.run_at = pos;
        }
        out.run.extend_from_slice(&buf[..want]);
        if out.run.len() >= RUN_MAX {
            out.flush()?;
        }
    }
    out.flush()?;
    out.member(&size_member(&entry.path), format!("{size}\n").as_bytes())?;
    Ok(Delta {
        runs: out.runs,
        blocks: own.clone(),
        carried: out.carried,
    })
}

/// The runs as they are written.
struct Out<'a> {
    tar: &'a mut TarWriter<Sink>,
    entry: &'a Entry,
    runs: Vec<Run>,
    run: Vec<u8>,
    run_at: u64,
    carried: u64,
}

impl<'a> Out<'a> {
    fn new(tar: &'a mut TarWriter<Sink>, entry: &'a Entry) -> Out<'a> {
        Out {
            tar,
            entry,
            runs: Vec::new(),
            run: Vec::new(),
            run_at: 0,
            carried: 0,
        }
    }

    /// Writes the run gathered so far, if any.
    fn flush(&mut self) -> Result<(), Fail> {
        if self.run.is_empty() {
            return Ok(());
        }
        let run = std::mem::take(&mut self.run);
        let tar_offset = self.tar.written();
        self.member(&run_member(&self.entry.path, self.run_at), &run)?;
        self.runs.push(Run {
            offset: self.run_at,
            len: run.len() as u64,
            tar_offset,
        });
        self.carried += run.len() as u64;
        Ok(())
    }

    /// One tar member, owned and timed as the file it belongs to.
    fn member(&mut self, name: &[u8], bytes: &[u8]) -> Result<(), Fail> {
        let e = self.entry;
        let member = Entry {
            size: bytes.len() as u64,
            mode: 0o600,
            mtime: e.mtime,
            uid: e.uid,
            gid: e.gid,
            user: e.user.clone(),
            group: e.group.clone(),
            ..Entry::new(name.to_vec(), EntryType::File)
        };
        self.tar
            .header(&member)
            .and_then(|()| self.tar.data(bytes))
            .and_then(|()| self.tar.end_data(bytes.len() as u64))
            .map_err(Fail::Write)
    }
}
