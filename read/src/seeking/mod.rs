//! Reading a seekable archive frame by frame.
//!
//! snap-pack writes its tar.zst as independent zstd frames with the zstd
//! seekable format's table at the end ([`snap_shared::seekable`]), and the
//! index records where each member starts in the tar stream. This module
//! reads such an archive in two ways:
//! - **some members only** (`restore --path`, `cat`): only the frames
//!   holding them are read, by range (pread on a folder, ranged GETs on a
//!   bucket, several at once), through age's seekable STREAM chunks when the
//!   archive is encrypted;
//! - **the whole tar** (verify, whole restores): the file is read once, in
//!   order, so its sha256 is taken as before, while its frames are decoded
//!   on every core.
//!
//! Either way, decoded frames arrive in order as a [`FrameStream`]. A damaged
//! frame is an error only for what is read from it, so the members of the
//! other frames still come back.

mod layout;
mod pipeline;

use snap_shared::fsutil::read_full;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
pub use layout::Layout;
use pipeline::Pipeline;
pub use pipeline::{FrameStream, whole};

use snap_shared::crypt::{Decrypt, decrypting_reader};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::seekable::{read_seek_table, table_size};

use crate::damage::is_damage;
use crate::loc::Loc;
use crate::source::Item;

/// Compressed bytes asked for in one ranged read at most: long runs of
/// frames are split so that several requests run at once.
const PIECE: u64 = 8 << 20;
/// Compressed bytes fetched before they are decoded, per batch.
const BATCH: u64 = 32 << 20;
/// What a [`Ranged`] reads at once unless told (age reads its header a
/// few bytes at a time, and its last chunk with `read_to_end`).
const WINDOW: u64 = 64 << 10;
/// The end of an archive read first: a seek table of 8,000 frames (16 GiB
/// of tar), or age's last sealed chunk and the table in it.
const TAIL: u64 = 80 << 10;
/// age's plaintext chunk, and the same chunk encrypted (with its tag).
const AGE_CHUNK: u64 = 64 << 10;
const AGE_SEALED: u64 = AGE_CHUNK + 16;

/// A file or object read at any offset, a window at a time: what age's
/// seekable reader reads an encrypted archive through.
pub struct Ranged {
    loc: Loc,
    size: u64,
    pos: u64,
    window: Bytes,
    window_at: u64,
    /// The end of the file, read first and kept: tables and age's last chunk are there.
    tail: Bytes,
    tail_at: u64,
    /// How much the next fetch should take, when a caller knows (once).
    ahead: Arc<AtomicU64>,
}

impl Ranged {
    pub fn new(loc: Loc, size: u64) -> Ranged {
        Ranged {
            loc,
            size,
            pos: 0,
            window: Bytes::new(),
            window_at: 0,
            tail: Bytes::new(),
            tail_at: size,
            ahead: Arc::default(),
        }
    }
}

/// A snap error as an I/O error that [`crate::damage::corrupt`] turns back
/// into the right exit: an unreachable destination stays unreachable.
fn to_io(e: Error) -> io::Error {
    let kind = match e.exit {
        Exit::Unavailable | Exit::TempFail => io::ErrorKind::ConnectionAborted,
        Exit::NoInput => io::ErrorKind::NotFound,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e.to_string())
}

impl Read for Ranged {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.tail_at {
            let from = (self.pos - self.tail_at) as usize;
            let n = buf.len().min(self.tail.len() - from);
            buf[..n].copy_from_slice(&self.tail[from..from + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        let end = self.window_at + self.window.len() as u64;
        if self.pos < self.window_at || self.pos >= end {
            let want = match self.ahead.swap(0, Ordering::Relaxed) {
                0 => WINDOW,
                n => n,
            };
            let want = want.max(buf.len() as u64);
            let range = self.pos..self.tail_at.min(self.pos + want);
            self.window = self
                .loc
                .read_ranges(std::slice::from_ref(&range))
                .map_err(to_io)?
                .remove(0);
            self.window_at = self.pos;
        }
        let from = (self.pos - self.window_at) as usize;
        let n = buf.len().min(self.window.len() - from);
        buf[..n].copy_from_slice(&self.window[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Ranged {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// How the compressed stream is read at random.
enum Access {
    Plain(Loc),
    /// Through age's seekable reader; `ahead` tells its [`Ranged`] how much
    /// ciphertext the next read will need, so a run of frames is one request.
    Age {
        reader: Box<age::stream::StreamReader<Ranged>>,
        ahead: Arc<AtomicU64>,
    },
}

impl Access {
    /// The compressed bytes of each of `ranges`, in order. A range that
    /// cannot be had is an error of its own (a chunk that fails age's
    /// authentication); an error that ends the reading (the destination
    /// gone) is the outer one.
    fn read(&mut self, ranges: &[Range<u64>]) -> io::Result<Vec<io::Result<Bytes>>> {
        match self {
            Access::Plain(loc) => match loc.read_ranges(ranges).map_err(to_io) {
                Ok(all) => Ok(all.into_iter().map(Ok).collect()),
                Err(e) if is_damage(&e) => Ok(ranges.iter().map(|_| Err(copy(&e))).collect()),
                Err(e) => Err(e),
            },
            Access::Age { reader, ahead } => ranges
                .iter()
                .map(|r| {
                    let chunks = (r.end - 1) / AGE_CHUNK - r.start / AGE_CHUNK + 1;
                    ahead.store(chunks * AGE_SEALED, Ordering::Relaxed);
                    let mut buf = vec![0; (r.end - r.start) as usize];
                    let read = reader
                        .seek(SeekFrom::Start(r.start))
                        .and_then(|_| reader.read_exact(&mut buf));
                    match read {
                        Ok(()) => Ok(Ok(Bytes::from(buf))),
                        Err(e) if is_damage(&e) => Ok(Err(e)),
                        Err(e) => Err(e),
                    }
                })
                .collect(),
        }
    }
}

/// The same error again (io::Error is not Clone).
fn copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// An archive opened for reading by frames.
pub struct Seekable {
    pub layout: Arc<Layout>,
    access: Access,
}

impl Seekable {
    /// Opens `loc` by its seek table; `None` when it has none (an archive
    /// made before snap-pack wrote frames, a foreign one, or an armored age
    /// file, which cannot be read at random).
    pub fn open(loc: &Loc, dec: &Decrypt) -> Result<Option<Seekable>> {
        let bad = |e| crate::damage::corrupt(loc, e);
        // One read of the end gives the size, a plain archive's seek table,
        // and an encrypted one's last chunks, which hold its table.
        let (tail, size) = loc.read_tail(TAIL)?;
        let mut raw = Ranged::new(loc.clone(), size);
        raw.tail_at = size - tail.len() as u64;
        raw.tail = tail;
        if let Some(layout) = table_of(&mut raw).map_err(bad)? {
            return Ok(Some(Seekable {
                layout: Arc::new(layout),
                access: Access::Plain(loc.clone()),
            }));
        }
        // Enough for the magic, and for an age header of a few recipients.
        raw.ahead.store(4 << 10, Ordering::Relaxed);
        raw.seek(SeekFrom::Start(0)).expect("in range");
        let mut head = [0u8; 64];
        let n = read_full(&mut raw, &mut head).map_err(bad)?;
        raw.seek(SeekFrom::Start(0)).expect("in range");
        if !head[..n].starts_with(b"age-encryption.org/v1") {
            return Ok(None);
        }
        let ahead = raw.ahead.clone();
        let mut reader = decrypting_reader(dec, &loc.show(), raw)?;
        let Some(layout) = table_of(&mut reader).map_err(bad)? else {
            return Ok(None);
        };
        Ok(Some(Seekable {
            layout: Arc::new(layout),
            access: Access::Age {
                reader: Box::new(reader),
                ahead,
            },
        }))
    }

    /// Decodes the frames `wanted` (in increasing order), fetched in batches
    /// of ranged reads on this thread's helper and decoded on every core.
    pub fn frames(self, wanted: Vec<usize>) -> FrameStream {
        let layout = self.layout.clone();
        let (pipe, stream) = Pipeline::start(layout.clone());
        let mut access = self.access;
        std::thread::spawn(move || {
            for batch in plan(&layout, &wanted) {
                let ranges: Vec<Range<u64>> =
                    batch.iter().map(|run| layout.comp(run.clone())).collect();
                let bytes = match access.read(&ranges) {
                    Ok(b) => b,
                    Err(e) => return pipe.fail(e),
                };
                for (run, got) in batch.into_iter().zip(bytes) {
                    let pushed = match got {
                        Ok(b) => cut(&layout, run, b)
                            .into_iter()
                            .all(|(i, frame)| pipe.push(i, frame)),
                        Err(e) => run.into_iter().all(|i| pipe.push_damaged(&layout, i, &e)),
                    };
                    if !pushed {
                        return;
                    }
                }
            }
        });
        stream
    }
}

/// The archive of `item` opened by frames, when its record says snap-pack
/// wrote it seekable (older records: `None`, and the archive streams).
pub fn of_item(item: &Item, dec: &Decrypt) -> Result<Option<Seekable>> {
    let framed = item
        .archive()
        .and_then(|a| a.extra.get("frames"))
        .and_then(serde_json::Value::as_u64)
        .is_some_and(|n| n > 0);
    match framed && !item.is_imported() {
        true => Seekable::open(&item.data(), dec),
        false => Ok(None),
    }
}

/// Reads with `read` the member at the stream's position, which the index
/// says is `path`. An error means this member cannot be had (a damaged
/// frame, or an index that does not match the archive), not that the
/// stream is over.
pub fn with_member<T>(
    stream: &mut FrameStream,
    path: &[u8],
    read: impl FnOnce(&mut dyn Read) -> T,
) -> io::Result<T> {
    let mut tar = crate::members::archive(stream);
    let mut members = crate::members::members(&mut tar)?;
    let mut member = members.next().unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends where its index puts it",
        ))
    })?;
    if member.path != path {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the index places it where the archive holds another member",
        ));
    }
    Ok(read(&mut member))
}

/// The layout from the seek table at the end of a stream, checked against
/// the stream's length; `None` when there is no table.
fn table_of(r: &mut (impl Read + Seek)) -> io::Result<Option<Layout>> {
    let len = r.seek(SeekFrom::End(0))?;
    if len < 9 {
        return Ok(None);
    }
    let mut footer = [0u8; 9];
    r.seek(SeekFrom::End(-9))?;
    r.read_exact(&mut footer)?;
    let Some(size) = table_size(&footer).filter(|&s| s <= len) else {
        return Ok(None);
    };
    let mut table = vec![0u8; size as usize];
    r.seek(SeekFrom::End(-(size as i64)))?;
    r.read_exact(&mut table)?;
    let Some(frames) = read_seek_table(&table) else {
        return Ok(None);
    };
    let layout = Layout::new(frames);
    if layout.comp_len() + size != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "its seek table lists {} compressed bytes, but {} are there before it",
                layout.comp_len(),
                len - size
            ),
        ));
    }
    Ok(Some(layout))
}

/// Groups the wanted frames into batches of runs of adjacent frames, each
/// run at most [`PIECE`] compressed bytes (but at least one frame), each
/// batch at most [`BATCH`].
fn plan(layout: &Layout, wanted: &[usize]) -> Vec<Vec<Range<usize>>> {
    let size = |i: usize| u64::from(layout.frames[i].compressed);
    let mut batches: Vec<Vec<Range<usize>>> = vec![Vec::new()];
    let (mut run_bytes, mut batch_bytes) = (0u64, 0u64);
    for &i in wanted {
        let batch = batches.last_mut().expect("one");
        if batch_bytes > 0 && batch_bytes + size(i) > BATCH {
            batches.push(std::iter::once(i..i + 1).collect());
            (run_bytes, batch_bytes) = (size(i), size(i));
            continue;
        }
        match batch.last_mut() {
            Some(run) if run.end == i && run_bytes + size(i) <= PIECE => {
                run.end += 1;
                run_bytes += size(i);
            }
            _ => {
                batch.push(i..i + 1);
                run_bytes = size(i);
            }
        }
        batch_bytes += size(i);
    }
    batches.retain(|b| !b.is_empty());
    batches
}

/// The frames of a run, cut out of its bytes (no copy).
fn cut(layout: &Layout, run: Range<usize>, bytes: Bytes) -> Vec<(usize, Bytes)> {
    let base = layout.comp_at[run.start];
    run.map(|i| {
        let r = layout.comp(i..i + 1);
        (
            i,
            bytes.slice((r.start - base) as usize..(r.end - base) as usize),
        )
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use snap_shared::seekable::Frame;

    use super::*;

    fn layout(sizes: &[(u32, u32)]) -> Layout {
        Layout::new(
            sizes
                .iter()
                .map(|&(compressed, tar)| Frame { compressed, tar })
                .collect(),
        )
    }

    /// A span's frames are those it overlaps, ends excluded.
    #[test]
    fn covering_frames() {
        let l = layout(&[(10, 100), (10, 100), (10, 100)]);
        assert_eq!(l.covering(0..1), 0..1);
        assert_eq!(l.covering(99..101), 0..2);
        assert_eq!(l.covering(100..200), 1..2);
        assert_eq!(l.covering(150..300), 1..3);
        assert_eq!(l.covering(5..5), 0..0);
        assert_eq!(l.comp(1..3), 10..30);
    }

    /// Adjacent frames become one read, split at PIECE, batches at BATCH.
    #[test]
    fn plans_runs_and_batches() {
        let mb = 1 << 20;
        let l = layout(&[(3 * mb, 1); 20]);
        let p = plan(&l, &[0, 1, 2, 3, 7, 8, 19]);
        assert_eq!(p, vec![vec![0..2, 2..4, 7..9, 19..20]]);
        let all: Vec<usize> = (0..20).collect();
        assert_eq!(plan(&l, &all).len(), 2);
        let big = layout(&[(40 * mb, 1), (1, 1)]);
        assert_eq!(plan(&big, &[0, 1]), vec![vec![0..1], vec![1..2]]);
    }
}
