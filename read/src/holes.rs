//! Writing a restored file with holes where its content is zero.
//!
//! A sparse file (a VM image, a database's preallocated file, what `tar
//! --sparse` stored) must come back sparse, or a restore of a 100 GiB image
//! holding 2 GiB of data fills the disk. Neither snap's archives nor most
//! foreign tars say where the holes were, so the content says it: every
//! whole, aligned block of zeros is skipped rather than written, and the file
//! is given its length at the end, as `cp --sparse=always` and `rsync
//! --sparse` do. The content is the same byte for byte; only the blocks the
//! file occupies differ, and never upward.
//!
//! Write-back of the written ranges starts every few MiB, so the `syncfs`
//! that ends a restore has little left to do.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// The unit of holes: the block size of common Linux filesystems.
const BLOCK: usize = 4096;
static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Start write-back after this many bytes written.
const WRITEBACK_EVERY: u64 = 8 << 20;

pub struct Holes<'a> {
    file: &'a File,
    /// Where the next byte goes.
    pos: u64,
    /// The end of what was written (not skipped) so far.
    data_end: u64,
    /// Bytes of a block not yet whole.
    tail: Vec<u8>,
    /// Where the last write-back started.
    started: u64,
}

impl<'a> Holes<'a> {
    /// Writes into a new, empty `file`.
    pub fn new(file: &'a File) -> Self {
        Holes {
            file,
            pos: 0,
            data_end: 0,
            tail: Vec::with_capacity(BLOCK),
            started: 0,
        }
    }

    /// Writes what is left and gives the file its whole length (a file that
    /// ends in a hole has no byte written there).
    pub fn finish(mut self) -> io::Result<()> {
        let tail = std::mem::take(&mut self.tail);
        if !tail.is_empty() && tail[..] != ZEROS[..tail.len()] {
            self.put(&tail)?;
        } else {
            self.pos += tail.len() as u64;
        }
        if self.pos > self.data_end {
            self.file.set_len(self.pos)?;
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, self.pos)?;
        self.pos += bytes.len() as u64;
        self.data_end = self.pos;
        if self.data_end - self.started >= WRITEBACK_EVERY {
            snap_shared::fsutil::start_writeback(self.file, self.started, self.data_end);
            self.started = self.data_end;
        }
        Ok(())
    }

    /// Whole blocks: runs of zero blocks skipped, runs of others written at once.
    fn blocks(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let zero = |b: &[u8], i: usize| b[i * BLOCK..(i + 1) * BLOCK] == ZEROS;
        while !buf.is_empty() {
            let blocks = buf.len() / BLOCK;
            let first = zero(buf, 0);
            let run = 1 + (1..blocks).take_while(|&i| zero(buf, i) == first).count();
            let (this, rest) = buf.split_at(run * BLOCK);
            if first {
                self.pos += this.len() as u64;
            } else {
                self.put(this)?;
            }
            buf = rest;
        }
        Ok(())
    }
}

impl Write for Holes<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        if !self.tail.is_empty() {
            let take = rest.len().min(BLOCK - self.tail.len());
            self.tail.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.tail.len() < BLOCK {
                return Ok(buf.len());
            }
            let block = std::mem::take(&mut self.tail);
            self.blocks(&block)?;
            self.tail = block;
            self.tail.clear();
        }
        let whole = rest.len() / BLOCK * BLOCK;
        self.blocks(&rest[..whole])?;
        self.tail.extend_from_slice(&rest[whole..]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `bytes` at `offset` (a multiple of 4 KiB): its whole zero
/// blocks as holes (skipped where the range is `fresh`, never written;
/// else punched over what the file holds), the rest written.
pub fn write_at(file: &File, bytes: &[u8], offset: u64, fresh: bool) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zero = |b: &[u8]| b.len() == BLOCK && b == ZEROS;
    let mut at = 0;
    let pieces: Vec<&[u8]> = bytes.chunks(BLOCK).collect();
    let mut i = 0;
    while i < pieces.len() {
        let first = zero(pieces[i]);
        let run = 1 + pieces[i + 1..]
            .iter()
            .take_while(|p| zero(p) == first)
            .count();
        let len: usize = pieces[i..i + run].iter().map(|p| p.len()).sum();
        let pos = offset + at as u64;
        match first {
            true if fresh => {}
            true => snap_shared::fsutil::zero_range(file, pos, len as u64)?,
            false => file.write_all_at(&bytes[at..at + len], pos)?,
        }
        at += len;
        i += run;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn write_in_pieces(content: &[u8], piece: usize) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut h = Holes::new(&file);
        for chunk in content.chunks(piece) {
            h.write_all(chunk).unwrap();
        }
        h.finish().unwrap();
        (dir, file)
    }

    /// Zero blocks become holes however the bytes arrive; the content is unchanged.
    #[test]
    fn zero_blocks_become_holes() {
        let mut content = vec![0u8; 1 << 20];
        content[300_000..300_010].copy_from_slice(b"0123456789");
        content.extend_from_slice(b"end");
        for piece in [1000, 4096, 65_536, 1 << 21] {
            let (_d, file) = write_in_pieces(&content, piece);
            let mut back = Vec::new();
            io::Read::read_to_end(&mut &file, &mut back).unwrap();
            assert!(back == content, "piece {piece}");
            let used = file.metadata().unwrap().blocks() * 512;
            assert!(used <= 3 * BLOCK as u64, "piece {piece}: {used} bytes used");
        }
    }

    /// A file that ends in zeros still has its whole length; an empty one stays empty.
    #[test]
    fn trailing_holes_keep_the_length() {
        let (_d, file) = write_in_pieces(&[0u8; 3 * BLOCK + 5], 7000);
        assert_eq!(file.metadata().unwrap().len(), 3 * BLOCK as u64 + 5);
        assert_eq!(file.metadata().unwrap().blocks(), 0);
        let (_d, file) = write_in_pieces(&[], 10);
        assert_eq!(file.metadata().unwrap().len(), 0);
    }
}
