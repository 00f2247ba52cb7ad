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
use std::sync::mpsc;

use rustix::fs::{AtFlags, unlinkat};

use snap_shared::fsutil::read_full;
use snap_shared::hash::Sha256Digest;
use snap_shared::index::{BLOCK, Blocks};

use super::copy::hash_file;
use super::{Meta, Refused, Target, name_of, os, temp_of};

/// What the copy of a whole version reads at a time (16 blocks), and how
/// many such buffers go round between the reader and the writer.
const CHUNK: usize = 16 * BLOCK as usize;
const BUFFERS: usize = 4;

/// Start write-back after this many bytes copied.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// What one write did: the digest of each block it wrote (None: skipped,
/// another link writes it), and how many bytes it covered.
struct Written {
    digests: Vec<Option<Sha256Digest>>,
    len: u64,
}

/// Writes the blocks of `bytes` (at `offset`, a block boundary) that
/// `keep` takes, hashing each: zero pieces are holes (`fresh`: the range was
/// never written, so they are skipped; else punched), the rest written.
fn write_blocks(
    file: &File,
    bytes: &[u8],
    offset: u64,
    fresh: bool,
    keep: impl Fn(usize) -> bool,
) -> io::Result<Written> {
    let first = (offset / BLOCK) as usize;
    let mut digests = Vec::with_capacity(bytes.len().div_ceil(BLOCK as usize));
    let blocks: Vec<&[u8]> = bytes.chunks(BLOCK as usize).collect();
    let mut k = 0;
    while k < blocks.len() {
        let taken = keep(first + k);
        let run = 1
            + (k + 1..blocks.len())
                .take_while(|&j| keep(first + j) == taken)
                .count();
        if taken {
            let from = k * BLOCK as usize;
            let to = from + blocks[k..k + run].iter().map(|b| b.len()).sum::<usize>();
            crate::holes::write_at(file, &bytes[from..to], offset + from as u64, fresh)?;
            digests.extend(blocks[k..k + run].iter().map(|b| Some(Sha256Digest::of(b))));
        } else {
            digests.extend(std::iter::repeat_n(None, run));
        }
        k += run;
    }
    Ok(Written {
        digests,
        len: bytes.len() as u64,
    })
}

/// A file being put together under its temporary name.
pub struct Assembly {
    file: File,
    dir: Rc<OwnedFd>,
    tmp: Vec<u8>,
    rel: Vec<u8>,
    /// The digest of each block as written (None: not known).
    digests: Vec<Option<Sha256Digest>>,
    len: u64,
    /// The chain link that writes each block last, when known.
    owners: Option<Vec<u16>>,
    /// The link being written.
    link: usize,
}

impl Assembly {
    /// Says which chain link writes each block last (`owners[block]`), so
    /// that each block is written and hashed once, by that link: the start
    /// skips what later runs replace, and a run skips what a later one
    /// replaces. Only for a file whose size never shrinks along the chain
    /// (a cut would have to zero what it drops).
    pub fn set_owners(&mut self, owners: Vec<u16>) {
        self.owners = Some(owners);
    }

    /// The chain link whose bytes are written next.
    pub fn at_link(&mut self, at: usize) {
        self.link = at;
    }

    /// Whether the current link writes block `b`.
    fn keeps(owners: Option<&[u16]>, link: usize, b: usize) -> bool {
        owners.is_none_or(|o| o.get(b).is_none_or(|&x| usize::from(x) == link))
    }

    /// Copies a whole version in from its start (into a new file: zero
    /// blocks stay holes). The bytes are written and each block hashed on a
    /// second thread while this one reads (decoding, on a restore): a whole
    /// big file costs one pass of each, side by side.
    pub fn copy_from(&mut self, from: &mut dyn io::Read) -> io::Result<()> {
        let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize, u64)>(2);
        let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = empty_tx.send(vec![0u8; CHUNK]);
        }
        let (file, owners, link) = (&self.file, self.owners.as_deref(), self.link);
        let (read, written) = std::thread::scope(|s| {
            let worker = s.spawn(move || -> io::Result<Vec<(u64, Written)>> {
                let mut done = Vec::new();
                let mut flushed = 0;
                for (buf, n, pos) in full_rx {
                    let keep = |b| Self::keeps(owners, link, b);
                    done.push((pos, write_blocks(file, &buf[..n], pos, true, keep)?));
                    if pos + n as u64 - flushed >= WRITEBACK_EVERY {
                        snap_shared::fsutil::start_writeback(file, flushed, pos + n as u64);
                        flushed = pos + n as u64;
                    }
                    // The reader may have stopped; then the buffer is not needed.
                    let _ = empty_tx.send(buf);
                }
                Ok(done)
            });
            let read = (|| -> io::Result<u64> {
                let mut pos = 0u64;
                // A worker that failed stops taking buffers; its error is the one returned.
                while let Ok(mut buf) = empty_rx.recv() {
                    let n = read_full(from, &mut buf)?;
                    if n == 0 || full_tx.send((buf, n, pos)).is_err() {
                        break;
                    }
                    pos += n as u64;
                    if n < CHUNK {
                        break;
                    }
                }
                Ok(pos)
            })();
            drop(full_tx);
            let written = worker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (read, written)
        });
        for (pos, w) in written? {
            self.note_written(pos, w);
        }
        let len = read?;
        // Blocks left as holes at the end still count.
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    /// Writes `bytes` at `offset` (a block boundary) over what the file
    /// holds: the blocks this link writes last, or all without owners.
    pub fn write_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        let (owners, link) = (self.owners.as_deref(), self.link);
        // With owners, no earlier link wrote these blocks: they are holes.
        let fresh = owners.is_some();
        let w = write_blocks(&self.file, bytes, offset, fresh, |b| {
            Self::keeps(owners, link, b)
        })?;
        self.note_written(offset, w);
        Ok(())
    }

    /// Records the digests of blocks written from `offset` on.
    fn note_written(&mut self, offset: u64, w: Written) {
        let first = (offset / BLOCK) as usize;
        if self.digests.len() < first + w.digests.len() {
            self.digests.resize(first + w.digests.len(), None);
        }
        for (k, d) in w.digests.into_iter().enumerate() {
            if let Some(d) = d {
                self.digests[first + k] = Some(d);
            }
        }
        self.len = self.len.max(offset + w.len);
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
            owners: None,
            link: 0,
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
