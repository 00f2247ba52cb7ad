//! A file put together in place: a big file's version from one archive,
//! then the changed blocks of later archives written over it, hashed whole
//! and staged like any other file once the chain is done with it.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use rustix::fs::{AtFlags, unlinkat};

use snap_shared::hash::Sha256Digest;

use super::copy::hash_file;
use super::{Meta, Refused, Target, name_of, os, temp_of};

/// A file being put together under its temporary name.
pub struct Assembly {
    file: File,
    dir: Rc<OwnedFd>,
    tmp: Vec<u8>,
    rel: Vec<u8>,
}

impl Assembly {
    /// Writes `bytes` at `offset`.
    pub fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)
    }

    /// Cuts or grows the file to `size`.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        self.file.set_len(size)
    }

    /// The file, to copy a whole version into from its start.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }
}

impl Target {
    /// Starts putting `rel` together, with its final mode.
    pub fn assemble(&mut self, rel: &[u8], mode: u32) -> std::result::Result<Assembly, Refused> {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let tmp = temp_of(name_of(rel));
        let file = File::from(self.create_temp(&dir, &tmp, mode).map_err(Refused::Io)?);
        Ok(Assembly {
            file,
            dir,
            tmp,
            rel: rel.to_vec(),
        })
    }

    /// Ends an assembly: the file at `size`, its bytes hashed and checked
    /// against `sha`, then staged as [`Target::file`] stages.
    pub fn finish_assembly(
        &mut self,
        a: Assembly,
        meta: &Meta,
        size: u64,
        sha: &Sha256Digest,
        buf: &mut [u8],
    ) -> std::result::Result<(), Refused> {
        let digest = a.file.set_len(size).and_then(|()| {
            let mut reader = &a.file;
            io::Seek::rewind(&mut reader)?;
            hash_file(reader, buf)
        });
        let (read, digest) = match digest {
            Ok(d) => d,
            Err(e) => {
                self.abandon(a);
                return Err(Refused::Io(e));
            }
        };
        let dir = Rc::clone(&a.dir);
        self.stage_written(
            (&a.file, &dir, &a.tmp),
            &a.rel,
            meta,
            (read, digest),
            Some(sha),
        )
    }

    /// Drops an assembly that cannot be finished (its source was damaged).
    pub fn abandon(&mut self, a: Assembly) {
        let _ = unlinkat(&*a.dir, os(&a.tmp), AtFlags::empty());
    }
}
