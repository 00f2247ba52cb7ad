//! A file put together in place: a big file's version from one archive,
//! then the changed blocks of later archives written over it, and staged
//! like any other file once the chain is done with it. Each block's digest
//! is taken as its bytes are written, so the file is checked against the
//! final index's block digests without reading it again (a block that a
//! size cut is read back); without those digests it is hashed whole.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use rustix::fs::{AtFlags, unlinkat};

use snap_shared::hash::Sha256Digest;
use snap_shared::index::{BLOCK, Blocks};

use super::copy::hash_file;
use super::{Meta, Refused, Target, name_of, os, temp_of};

/// A file being put together under its temporary name.
pub struct Assembly {
    file: File,
    dir: Rc<OwnedFd>,
    tmp: Vec<u8>,
    rel: Vec<u8>,
    /// The digest of each block as written (None: not known).
    digests: Vec<Option<Sha256Digest>>,
    len: u64,
}

impl Assembly {
    /// Copies a whole version in from its start.
    pub fn copy_from(&mut self, from: &mut dyn io::Read) -> io::Result<()> {
        let mut buf = vec![0u8; BLOCK as usize];
        let mut pos = 0u64;
        loop {
            let mut n = 0;
            while n < buf.len() {
                match from.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            self.write_at(&buf[..n], pos)?;
            pos += n as u64;
            if n < buf.len() {
                break;
            }
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` (a block boundary).
    pub fn write_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        let first = (offset / BLOCK) as usize;
        for (k, block) in bytes.chunks(BLOCK as usize).enumerate() {
            let i = first + k;
            if self.digests.len() <= i {
                self.digests.resize(i + 1, None);
            }
            self.digests[i] = match offset % BLOCK {
                0 => Some(Sha256Digest::of(block)),
                _ => None,
            };
        }
        self.len = self.len.max(offset + bytes.len() as u64);
        Ok(())
    }

    /// Cuts or grows the file to `size`; a block the cut shortens is read
    /// back for its digest.
    pub fn set_len(&mut self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        let blocks = size.div_ceil(BLOCK) as usize;
        self.digests.resize(blocks, None);
        let tail = size % BLOCK;
        if size < self.len && tail != 0 {
            let mut last = vec![0u8; tail as usize];
            self.file.read_exact_at(&mut last, size - tail)?;
            self.digests[blocks - 1] = Some(Sha256Digest::of(&last));
        }
        self.len = size;
        Ok(())
    }

    /// Whether every block written matches `want`.
    fn matches(&self, want: &Blocks) -> bool {
        want.size == BLOCK
            && self.digests.len() == want.digests.len()
            && self
                .digests
                .iter()
                .zip(&want.digests)
                .all(|(got, want)| got.as_ref() == Some(want))
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
            digests: Vec::new(),
            len: 0,
        })
    }

    /// Ends an assembly: the file at `size`, checked against `sha` (by
    /// the final block digests `blocks` when every block matches them, else
    /// hashed whole), then staged as [`Target::file`] stages.
    pub fn finish_assembly(
        &mut self,
        mut a: Assembly,
        meta: &Meta,
        (size, sha, blocks): (u64, &Sha256Digest, Option<&Blocks>),
        buf: &mut [u8],
    ) -> std::result::Result<(), Refused> {
        let digest = a.set_len(size).and_then(|()| {
            if blocks.is_some_and(|b| a.matches(b)) {
                return Ok((size, *sha));
            }
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
