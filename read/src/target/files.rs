//! Regular files into the target: written under a temporary name, hashed,
//! staged, and named once a batch is durable (the module doc of target says
//! why); a file already there with the right content counts as restored.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, RenameFlags, Uid, fchmod, fchown, futimens, openat,
    renameat_with, statat, unlinkat,
};

use snap_shared::hash::Sha256Digest;

use super::copy::{Source, copy_hashed, copy_of, hash_file};
use super::{
    BATCH_BYTES, BATCH_FILES, Meta, NAME_MAX, Outcome, PART, Put, Refused, Settled, Staged, Target,
    name_of, os, temp_of, timestamps,
};
use crate::holes::Holes;

impl Target {
    /// Whether a regular file with this content is at `name` (hashing it only when the size matches).
    pub(super) fn same_file(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        size: u64,
        sha: &Sha256Digest,
    ) -> io::Result<bool> {
        let st = match statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || st.st_size as u64 != size
        {
            return Ok(false);
        }
        let fd = openat(
            dir,
            os(name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let (_, digest) = hash_file(File::from(fd), &mut vec![0; 1 << 16])?;
        Ok(digest == *sha)
    }

    /// Writes file `rel` from `content` (exactly `size` bytes), checking `sha`
    /// when given, and stages it: its outcome comes from [`Target::settled`]
    /// once a flush has named it. An error here means it was not staged. A
    /// file already there with that sha256 is not written again.
    pub fn file(
        &mut self,
        rel: &[u8],
        meta: &Meta,
        size: u64,
        sha: Option<&Sha256Digest>,
        content: &mut dyn Read,
        buf: &mut [u8],
    ) -> std::result::Result<(), Refused> {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let Some(sha) = sha
            && self.same_file(&dir, name, size, sha)?
        {
            // Already there (a rerun's work, or a restore over the same
            // tree): nothing is written, its attributes are set again where
            // they differ. The content is read through all the same, for
            // the stream or the writer thread that sends it.
            io::copy(&mut content.take(size), &mut io::sink()).map_err(Refused::Source)?;
            let result = self
                .repair(&dir, rel, meta, Some(meta.mode))
                .map_err(Refused::from);
            self.settled.push(Settled {
                path: rel.to_vec(),
                bytes: size,
                result,
            });
            return Ok(());
        }
        let tmp = temp_of(name);
        let file = File::from(self.create_temp(&dir, &tmp, meta.mode)?);
        let mut source = Source {
            inner: content,
            failed: false,
        };
        let mut holes = Holes::new(&file);
        let written = copy_hashed(&mut source, &mut holes, size, buf)
            .and_then(|d| holes.finish().map(|()| d));
        let digest = match written {
            Ok(d) => d,
            Err(e) => {
                let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
                return Err(match source.failed {
                    true => Refused::Source(e),
                    false => Refused::Io(e),
                });
            }
        };
        self.stage_written((&file, &dir, &tmp), rel, meta, (size, digest), sha)
    }

    /// Stages a file written under `tmp` in `dir` whose bytes hash to
    /// `digest`: refused (its bytes kept as `NAME.snap-damaged`) when `sha`
    /// says otherwise, else given its metadata and staged for naming.
    pub(super) fn stage_written(
        &mut self,
        (file, dir, tmp): (&File, &OwnedFd, &[u8]),
        rel: &[u8],
        meta: &Meta,
        (size, digest): (u64, Sha256Digest),
        sha: Option<&Sha256Digest>,
    ) -> std::result::Result<(), Refused> {
        let name = name_of(rel);
        if let Some(want) = sha
            && *want != digest
        {
            // Keep the bytes: a damaged copy may still be worth something to its owner.
            let damaged = match name.len() + b".snap-damaged".len() <= NAME_MAX {
                true => [name, b".snap-damaged"].concat(),
                false => [&tmp[..tmp.len() - PART.len()], b".snap-damaged"].concat(),
            };
            let _ = renameat_with(dir, os(tmp), dir, os(&damaged), RenameFlags::empty());
            return Err(Refused::Mismatch { got: digest });
        }
        self.apply_new(file, dir, tmp, rel, meta)?;
        self.staged.push(Staged {
            rel: rel.to_vec(),
            size,
            digest,
            meta: meta.clone(),
        });
        self.staged_paths.insert(rel.to_vec());
        self.staged_bytes += size;
        if self.staged.len() >= BATCH_FILES || self.staged_bytes >= BATCH_BYTES {
            self.flush();
        }
        Ok(())
    }

    /// Makes every staged file durable with one `syncfs`, then gives each its
    /// name; their outcomes wait in [`Target::settled`]. A failed `syncfs`
    /// (a disk gone bad) fails the whole batch and names nothing.
    pub fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        self.staged_paths.clear();
        self.staged_bytes = 0;
        let synced = snap_shared::fsutil::syncfs(&self.path);
        for s in staged {
            let result = match &synced {
                Ok(()) => self.name_staged(&s),
                Err(e) => Err(Refused::Io(copy_of(e))),
            };
            self.settled.push(Settled {
                path: s.rel,
                bytes: s.size,
                result,
            });
        }
    }

    /// Outcomes of the files flushed since the last call, and the
    /// attributes of any entry that could not be set.
    pub fn settled(&mut self) -> Vec<Settled> {
        let mut out = std::mem::take(&mut self.settled);
        out.extend(self.attr_failures.drain(..).map(|(path, why)| Settled {
            path,
            bytes: 0,
            result: Err(Refused::Attribute(why)),
        }));
        out
    }

    /// Flushes first when `rel` is staged: what comes next at that name
    /// (another member of the same name, a hard link to it) needs it named.
    pub(super) fn flush_if_staged(&mut self, rel: &[u8]) {
        if self.staged_paths.contains(rel) {
            self.flush();
        }
    }

    /// Gives a staged (and flushed) file its name.
    pub(super) fn name_staged(&mut self, s: &Staged) -> Put {
        let dir = self.parent(&s.rel, false)?;
        let name = name_of(&s.rel);
        match self.publish(&dir, &temp_of(name), name) {
            // Something is there already: the same content is a rerun's work, done.
            Err(Refused::Exists) if self.same_file(&dir, name, s.size, &s.digest)? => {
                Ok(self.repair(&dir, &s.rel, &s.meta, Some(s.meta.mode))?)
            }
            Err(e) => Err(e),
            Ok(()) => Ok(Outcome::Written),
        }
    }

    /// Creates a file's temporary name afresh, with its final mode (the umask is 0
    /// while restoring), replacing a leftover of an interrupted run.
    pub(super) fn create_temp(&self, dir: &OwnedFd, tmp: &[u8], mode: u32) -> io::Result<OwnedFd> {
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(mode & 0o7777);
        match openat(dir, os(tmp), flags, mode) {
            Err(rustix::io::Errno::EXIST) => {
                unlinkat(dir, os(tmp), AtFlags::empty())?;
                Ok(openat(dir, os(tmp), flags, mode)?)
            }
            other => Ok(other?),
        }
    }

    /// Metadata for a file this run created with its final mode (`tmp` in
    /// `dir`): owner only when it differs from ours, then its attributes,
    /// then the mode again when either changed it (chown clears set-id
    /// bits; removing an inherited ACL leaves the group bits at its mask),
    /// and times.
    pub(super) fn apply_new(
        &mut self,
        fd: impl AsFd,
        dir: &OwnedFd,
        tmp: &[u8],
        rel: &[u8],
        meta: &Meta,
    ) -> io::Result<()> {
        let (uid, gid) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let mut chmod = false;
        if self.owners && (meta.uid, meta.gid) != (uid, gid) {
            fchown(
                &fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
            chmod = meta.mode & 0o6000 != 0;
        }
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        if chmod {
            fchmod(&fd, mode)?;
        }
        self.attributes(dir, tmp, rel, meta, &|| Ok(fchmod(&fd, mode)?))?;
        futimens(&fd, &timestamps(meta.mtime_ns))?;
        Ok(())
    }
}
