//! Copying a file into the snapshot while hashing it: one read per byte.
//!
//! Holes are found with SEEK_DATA/SEEK_HOLE and skipped, so a sparse file
//! stays sparse (the digest still covers its zeros). Whether the file held
//! still while it was read is the caller's check (`Ctx::copy_still` in work.rs).
//!
//! A big changed file on a store that shares extents (btrfs, XFS with
//! reflink, bcachefs) starts as a clone of the previous snapshot's copy
//! (FICLONE, made by the caller); [`update_clone`] then writes only the
//! blocks that differ, so the new snapshot costs about the change and the
//! older one keeps its bytes.

use snap_shared::fsutil::read_full;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};

use rustix::fs::{SeekFrom, seek};
use sha2::{Digest, Sha256};

use snap_shared::hash::Sha256Digest;
use snap_shared::index::{BIG_FILE, BLOCK, BlockHasher, Blocks};

const BUF: usize = 256 * 1024;
/// Write-back of a copy is started every this many bytes.
const FLUSH_EVERY: u64 = 8 << 20;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// What a copy produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub bytes: u64,
    pub sha256: Sha256Digest,
    /// The size read differs from the size the walk saw.
    pub changed: bool,
    /// Bytes written into the store (less than `bytes` over a clone).
    pub written: u64,
    /// A big file's block digests, for the index (what pack compares with).
    pub blocks: Option<Blocks>,
}

/// The digests a copy makes as it reads: the whole file's, and a big file's
/// blocks. For a big file the whole file's digest is made on a second
/// thread while this one makes the blocks', so the two take the time of one.
struct Hashes {
    whole: Whole,
    blocks: Option<BlockHasher>,
}

/// The whole file's digest: here, or on its own thread fed the bytes.
enum Whole {
    Here(Sha256),
    Thread {
        feed: std::sync::mpsc::SyncSender<Vec<u8>>,
        done: std::thread::JoinHandle<Sha256Digest>,
    },
}

impl Hashes {
    fn new(size: u64) -> Hashes {
        let big = size >= BIG_FILE;
        let whole = match big {
            false => Whole::Here(Sha256::new()),
            true => {
                let (feed, bytes) = std::sync::mpsc::sync_channel::<Vec<u8>>(16);
                let done = std::thread::spawn(move || {
                    let mut h = Sha256::new();
                    for b in bytes {
                        h.update(&b);
                    }
                    Sha256Digest::from_hasher(h)
                });
                Whole::Thread { feed, done }
            }
        };
        Hashes {
            whole,
            blocks: big.then(BlockHasher::default),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match &mut self.whole {
            Whole::Here(h) => h.update(bytes),
            // The thread ends only when the feed is dropped: a send cannot fail before.
            Whole::Thread { feed, .. } => {
                let _ = feed.send(bytes.to_vec());
            }
        }
        if let Some(b) = self.blocks.as_mut() {
            b.update(bytes);
        }
    }

    /// [`Hashes::update`] of one block at a block boundary, returning its
    /// digest (made once, for the blocks and for the caller).
    fn update_block(&mut self, bytes: &[u8]) -> Sha256Digest {
        match &mut self.whole {
            Whole::Here(h) => h.update(bytes),
            Whole::Thread { feed, .. } => {
                let _ = feed.send(bytes.to_vec());
            }
        }
        match self.blocks.as_mut() {
            Some(b) => b.block(bytes),
            None => Sha256Digest::of(bytes),
        }
    }

    /// The digests, the blocks only when the file read is big.
    fn finish(self, bytes: u64) -> (Sha256Digest, Option<Blocks>) {
        let blocks = self.blocks.filter(|_| bytes >= BIG_FILE);
        let whole = match self.whole {
            Whole::Here(h) => Sha256Digest::from_hasher(h),
            Whole::Thread { feed, done } => {
                drop(feed);
                done.join().expect("the hashing thread does not panic")
            }
        };
        (whole, blocks.map(BlockHasher::finish))
    }
}

/// Copies `src` into `dst` (a new, empty file) and hashes it.
pub fn copy_hashed(src: &mut File, dst: &mut File, expected: u64) -> io::Result<Copied> {
    let meta = src.metadata()?;
    let maybe_sparse = meta.blocks() * 512 < meta.size();
    let (bytes, hashes) = if maybe_sparse {
        copy_sparse(src, dst, meta.size())?
    } else {
        copy_dense(src, dst, meta.size())?
    };
    let (sha256, blocks) = hashes.finish(bytes);
    Ok(Copied {
        bytes,
        sha256,
        changed: bytes != expected,
        written: bytes,
        blocks,
    })
}

/// Brings `dst`, a clone of the previous version, to `src`'s bytes: each
/// block is compared and only those that differ are written; the length
/// follows the source. With `known` (the previous version's block digests)
/// a block is compared by its digest and the clone is not read; else by its
/// bytes. Every source byte is hashed, so the digest is the source's.
pub fn update_clone(
    src: &mut File,
    dst: &File,
    expected: u64,
    known: Option<&Blocks>,
) -> io::Result<Copied> {
    let mut hashes = Hashes::new(expected);
    // Digest comparisons go block by block; byte ones a buffer at a time.
    let step = known.map_or(BUF, |b| b.size as usize);
    // Blocks of the size the hasher makes are hashed once, for both.
    let same_blocks = known.is_some_and(|b| b.size == BLOCK);
    let mut buf = vec![0u8; step];
    let mut old = vec![0u8; step];
    let old_len = dst.metadata()?.len();
    let (mut pos, mut written) = (0u64, 0u64);
    loop {
        let n = read_full(src, &mut buf)?;
        if n == 0 {
            break;
        }
        let digest = match same_blocks {
            true => Some(hashes.update_block(&buf[..n])),
            false => {
                hashes.update(&buf[..n]);
                None
            }
        };
        let within = pos + n as u64 <= old_len;
        let same = within
            && match known {
                Some(b) => {
                    let i = (pos / b.size) as usize;
                    let d = digest.unwrap_or_else(|| Sha256Digest::of(&buf[..n]));
                    // The last block of the old version may be short: only equal lengths match.
                    b.digests.get(i) == Some(&d)
                        && (n as u64 == b.size || pos + n as u64 == old_len)
                }
                None => {
                    dst.read_exact_at(&mut old[..n], pos)?;
                    old[..n] == buf[..n]
                }
            };
        if !same {
            dst.write_all_at(&buf[..n], pos)?;
            written += n as u64;
        }
        pos += n as u64;
        if n < step {
            break;
        }
    }
    if pos != old_len {
        dst.set_len(pos)?;
    }
    let (sha256, blocks) = hashes.finish(pos);
    Ok(Copied {
        bytes: pos,
        sha256,
        changed: pos != expected,
        written,
        blocks,
    })
}

/// Hashes a file without copying it (for `--checksum` comparisons).
pub fn hash_file(src: &mut File) -> io::Result<(u64, Sha256Digest)> {
    let (n, h) = copy_dense(src, &mut io::sink(), 0)?;
    Ok((n, h.finish(n).0))
}

/// Where the copy writes: a file (whose write-back is started as it grows) or a sink.
pub trait Dest: Write {
    fn written(&mut self, _from: u64, _to: u64) {}
}

impl Dest for File {
    fn written(&mut self, from: u64, to: u64) {
        snap_shared::fsutil::start_writeback(self, from, to);
    }
}

impl Dest for io::Sink {}

fn copy_dense(src: &mut File, dst: &mut impl Dest, size: u64) -> io::Result<(u64, Hashes)> {
    let mut hasher = Hashes::new(size);
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    let mut flushed = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        total += n as u64;
        if total - flushed >= FLUSH_EVERY {
            dst.written(flushed, total);
            flushed = total;
        }
    }
    Ok((total, hasher))
}

fn hash_zeros(hasher: &mut Hashes, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Copies only the data regions; holes are left as holes in `dst`.
fn copy_sparse(src: &mut File, dst: &mut File, size: u64) -> io::Result<(u64, Hashes)> {
    let mut hasher = Hashes::new(size);
    let mut buf = vec![0u8; BUF];
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(&*src, SeekFrom::Data(pos)) {
            Ok(d) => d.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(e) => return Err(e.into()),
        };
        hash_zeros(&mut hasher, data - pos);
        pos = data;
        if pos >= size {
            break;
        }
        let hole = match seek(&*src, SeekFrom::Hole(pos)) {
            Ok(h) => h.min(size),
            Err(e) => return Err(e.into()),
        };
        while pos < hole {
            let want = ((hole - pos) as usize).min(BUF);
            let n = src.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                // The file shrank under us: stop at what exists.
                dst.set_len(pos)?;
                return Ok((pos, hasher));
            }
            hasher.update(&buf[..n]);
            dst.write_all_at(&buf[..n], pos)?;
            if (pos + n as u64) / FLUSH_EVERY != pos / FLUSH_EVERY {
                snap_shared::fsutil::start_writeback(
                    dst,
                    pos / FLUSH_EVERY * FLUSH_EVERY,
                    pos + n as u64,
                );
            }
            pos += n as u64;
        }
    }
    dst.set_len(size)?;
    Ok((size, hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense copy is byte-identical and its digest is the content's.
    #[test]
    fn dense_copy_hashes_content() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("a"), &data).unwrap();
        let mut src = File::open(dir.path().join("a")).unwrap();
        let mut dst = File::create(dir.path().join("b")).unwrap();
        let c = copy_hashed(&mut src, &mut dst, data.len() as u64).unwrap();
        assert_eq!(c.sha256, Sha256Digest::of(&data));
        assert!(!c.changed);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), data);
    }

    /// A sparse file stays sparse, reads back equal, and hashes its zeros.
    #[test]
    fn sparse_copy_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sparse");
        let f = File::create(&p).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"tail", 64 << 20).unwrap();
        drop(f);
        let mut src = File::open(&p).unwrap();
        let q = dir.path().join("copy");
        let mut dst = File::create(&q).unwrap();
        let size = (64 << 20) + 4;
        let c = copy_hashed(&mut src, &mut dst, size).unwrap();
        let content = std::fs::read(&p).unwrap();
        assert_eq!(c.sha256, Sha256Digest::of(&content));
        assert_eq!(std::fs::read(&q).unwrap(), content);
        let m = std::fs::metadata(&q).unwrap();
        assert!(
            m.blocks() * 512 < 1 << 20,
            "copy uses {} blocks",
            m.blocks()
        );
    }

    /// `new` as the source and `old` as the clone to update, in `dir`.
    fn source_and_clone(dir: &std::path::Path, new: &[u8], old: &[u8]) -> (File, File) {
        std::fs::write(dir.join("src"), new).unwrap();
        std::fs::write(dir.join("dst"), old).unwrap();
        let src = File::open(dir.join("src")).unwrap();
        let dst = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("dst"))
            .unwrap();
        (src, dst)
    }

    /// Over a clone of an older version, only the blocks that differ are
    /// written; the result is the source's bytes, longer or shorter.
    #[test]
    fn update_clone_writes_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        for (edit, len) in [(1_000_000usize, 3_100_000usize), (10, 2_000_000)] {
            let mut new = old.clone();
            new.resize(len, 7);
            new[edit] ^= 0xff;
            let (mut src, dst) = source_and_clone(dir.path(), &new, &old);
            let c = update_clone(&mut src, &dst, len as u64, None).unwrap();
            assert_eq!(std::fs::read(dir.path().join("dst")).unwrap(), new);
            assert_eq!(c.sha256, Sha256Digest::of(&new));
            assert!(c.written <= 2 * BUF as u64, "wrote {}", c.written);
            // By the old version's digests, without reading the clone.
            let known = Blocks::of(&old, snap_shared::index::BLOCK);
            std::fs::write(dir.path().join("dst"), &old).unwrap();
            let mut src = File::open(dir.path().join("src")).unwrap();
            let c = update_clone(&mut src, &dst, len as u64, Some(&known)).unwrap();
            assert_eq!(std::fs::read(dir.path().join("dst")).unwrap(), new);
            assert!(c.written <= 4 << 16, "wrote {} by digests", c.written);
        }
    }

    /// A big file updated by its old block digests gets the block digests
    /// and sha256 of its new content (each block hashed once, for both).
    #[test]
    fn update_clone_of_a_big_file_records_its_new_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<u8> = (0..BIG_FILE as u32 + 100_000)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut new = old.clone();
        new[5 << 20] ^= 0xff;
        new.extend_from_slice(&[9u8; 70_000]);
        let (mut src, dst) = source_and_clone(dir.path(), &new, &old);
        let known = Blocks::of(&old, BLOCK);
        let c = update_clone(&mut src, &dst, new.len() as u64, Some(&known)).unwrap();
        assert_eq!(std::fs::read(dir.path().join("dst")).unwrap(), new);
        assert_eq!(c.sha256, Sha256Digest::of(&new));
        assert_eq!(c.blocks.unwrap().digests, Blocks::of(&new, BLOCK).digests);
        assert!(c.written <= 4 * BLOCK, "wrote {}", c.written);
    }

    /// A file that is not the size the walk saw is flagged as changed.
    #[test]
    fn size_change_is_flagged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        let mut src = File::open(dir.path().join("a")).unwrap();
        let mut dst = File::create(dir.path().join("b")).unwrap();
        assert!(copy_hashed(&mut src, &mut dst, 3).unwrap().changed);
    }
}
