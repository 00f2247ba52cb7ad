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

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};

use snap_shared::crypt::{Decrypt, decrypting_reader};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::seekable::{Frame, read_seek_table, table_size};

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

/// Where each frame is in the compressed stream and in the tar stream.
#[derive(Debug)]
pub struct Layout {
    pub frames: Vec<Frame>,
    /// Where each frame starts in the compressed stream, then where the last ends.
    comp_at: Vec<u64>,
    /// The same in the tar stream.
    tar_at: Vec<u64>,
}

impl Layout {
    pub fn new(frames: Vec<Frame>) -> Layout {
        let sums = |f: fn(&Frame) -> u32| {
            let mut at = vec![0u64];
            for fr in &frames {
                at.push(at.last().expect("one") + u64::from(f(fr)));
            }
            at
        };
        let (comp_at, tar_at) = (sums(|f| f.compressed), sums(|f| f.tar));
        Layout {
            frames,
            comp_at,
            tar_at,
        }
    }

    /// The length of the tar stream.
    pub fn tar_len(&self) -> u64 {
        *self.tar_at.last().expect("one")
    }

    /// The length of the compressed frames (the table not counted).
    pub fn comp_len(&self) -> u64 {
        *self.comp_at.last().expect("one")
    }

    /// The frames holding the tar bytes `span` (none for an empty span).
    pub fn covering(&self, span: Range<u64>) -> Range<usize> {
        if span.is_empty() {
            return 0..0;
        }
        let ends = &self.tar_at[1..];
        let first = ends.partition_point(|&end| end <= span.start);
        let last = ends.partition_point(|&end| end < span.end);
        first..(last + 1).min(self.frames.len())
    }

    /// The compressed bytes of the frames `frames`.
    pub fn comp(&self, frames: Range<usize>) -> Range<u64> {
        self.comp_at[frames.start]..self.comp_at[frames.end]
    }
}

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

/// Reads until `buf` is full or the stream ends; how much was read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
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

/// One decoded frame.
struct Decoded {
    index: usize,
    tar_at: u64,
    tar_len: u64,
    /// The tar bytes, or why they could not be had.
    data: std::result::Result<Vec<u8>, String>,
}

/// A frame to decode, and where its result goes.
type Work = (usize, Bytes, Sender<Decoded>);

/// Frames decoded on every core and handed on in order: the reader pushes
/// each frame with a slot for its result, workers fill the slots, and the
/// [`FrameStream`] takes the slots in the order they were pushed. The
/// queues are short, so memory stays bounded, and when the stream is
/// dropped the reader's next push fails and everything stops.
struct Pipeline {
    work: Sender<Work>,
    order: Sender<io::Result<Receiver<Decoded>>>,
    /// Buffers of compressed frames, back from the workers.
    spare: Pool,
}

/// Buffers used again rather than allocated: a frame's few MiB, fresh
/// each time, cost more in page faults than the decoding.
#[derive(Clone)]
struct Pool(Sender<Vec<u8>>, Receiver<Vec<u8>>);

impl Pool {
    fn new(n: usize) -> Pool {
        let (tx, rx) = bounded(n);
        Pool(tx, rx)
    }

    /// A buffer of `len` bytes.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self.1.try_recv().unwrap_or_default();
        v.resize(len, 0);
        v
    }

    /// An empty buffer with room for `len` bytes.
    fn take_empty(&self, len: usize) -> Vec<u8> {
        let mut v = self.1.try_recv().unwrap_or_default();
        v.clear();
        v.reserve(len);
        v
    }

    fn give(&self, v: Vec<u8>) {
        let _ = self.0.try_send(v);
    }
}

impl Pipeline {
    fn start(layout: Arc<Layout>) -> (Pipeline, FrameStream) {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (work, queue) = bounded::<Work>(threads);
        // Room for every buffer in flight, so none is dropped and made again.
        let (spare, decoded) = (Pool::new(16 * threads), Pool::new(16 * threads));
        for _ in 0..threads {
            let (queue, layout) = (queue.clone(), layout.clone());
            let (spare, decoded) = (spare.clone(), decoded.clone());
            std::thread::spawn(move || {
                let mut zstd = zstd::bulk::Decompressor::new().ok();
                for (index, bytes, slot) in queue {
                    let d = decode(&layout, index, &bytes, zstd.as_mut(), &decoded);
                    if let Ok(b) = bytes.try_into_mut() {
                        spare.give(b.into());
                    }
                    let _ = slot.send(d);
                }
            });
        }
        let (order, slots) = bounded(2 * threads);
        let stream = FrameStream {
            slots,
            cur: None,
            at: 0,
            pool: decoded,
        };
        (Pipeline { work, order, spare }, stream)
    }

    /// Queues a frame; false when nobody reads the stream any more.
    fn push(&self, index: usize, bytes: Bytes) -> bool {
        let (slot, result) = bounded(1);
        self.order.send(Ok(result)).is_ok() && self.work.send((index, bytes, slot)).is_ok()
    }

    /// Queues a frame that could not be read, with why.
    fn push_damaged(&self, layout: &Layout, index: usize, e: &io::Error) -> bool {
        let (slot, result) = bounded(1);
        let tar = layout.tar_at[index]..layout.tar_at[index + 1];
        let _ = slot.send(Decoded {
            index,
            tar_at: tar.start,
            tar_len: tar.end - tar.start,
            data: Err(format!(
                "zstd frame {index} (tar bytes {}..{}) cannot be read: {e}",
                tar.start, tar.end
            )),
        });
        self.order.send(Ok(result)).is_ok()
    }

    /// Ends the stream with a read error.
    fn fail(&self, e: io::Error) {
        let _ = self.order.send(Err(e));
    }
}

/// Decodes one frame into a buffer of `pool`, checking its checksum and
/// its size against the table.
fn decode(
    layout: &Layout,
    index: usize,
    bytes: &[u8],
    zstd: Option<&mut zstd::bulk::Decompressor<'static>>,
    pool: &Pool,
) -> Decoded {
    let tar = layout.tar_at[index]..layout.tar_at[index + 1];
    let len = (tar.end - tar.start) as usize;
    let mut out = pool.take_empty(len);
    let done = match zstd {
        Some(z) => z.decompress_to_buffer(bytes, &mut out),
        None => zstd::bulk::decompress_to_buffer(bytes, &mut out),
    };
    let data = done
        .map_err(|e| e.to_string())
        .and_then(|n| match n == len {
            true => Ok(out),
            false => Err(format!("holds {n} bytes, not {len}")),
        })
        .map_err(|why| {
            format!(
                "zstd frame {index} (tar bytes {}..{}) is damaged: {why}",
                tar.start, tar.end
            )
        });
    Decoded {
        index,
        tar_at: tar.start,
        tar_len: tar.end - tar.start,
        data,
    }
}

/// Reads the whole compressed stream `plain` in order (so whatever taps it
/// sees every byte, the table too) and decodes its frames on every core.
pub fn whole(layout: Arc<Layout>, mut plain: Box<dyn Read + Send>) -> FrameStream {
    let (pipe, stream) = Pipeline::start(layout.clone());
    std::thread::spawn(move || {
        for (i, frame) in layout.frames.iter().enumerate() {
            let mut buf = pipe.spare.take(frame.compressed as usize);
            if let Err(e) = plain.read_exact(&mut buf) {
                return pipe.fail(e);
            }
            if !pipe.push(i, Bytes::from(buf)) {
                return;
            }
        }
        // The table, read so the tap sees it; nothing may follow it.
        let mut rest = Vec::new();
        let table = plain.read_to_end(&mut rest).and_then(|_| {
            match read_seek_table(&rest).is_some_and(|f| f == layout.frames) {
                true => Ok(()),
                false => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the bytes after the last frame are not its seek table",
                )),
            }
        });
        if let Err(e) = table {
            pipe.fail(e);
        }
    });
    stream
}

/// Decoded frames in order, read as the tar bytes they hold. Between the
/// members asked for there may be gaps (frames not fetched): [`FrameStream::skip_to`]
/// moves to a member's start.
pub struct FrameStream {
    slots: Receiver<io::Result<Receiver<Decoded>>>,
    cur: Option<Decoded>,
    /// Bytes of `cur` already read.
    at: u64,
    /// Where the buffers of frames read go back to.
    pool: Pool,
}

impl FrameStream {
    /// Takes the next frame; false at the end.
    fn next_frame(&mut self) -> io::Result<bool> {
        let slot = match self.slots.recv() {
            Ok(slot) => slot?,
            Err(_) => return Ok(false),
        };
        let d = slot
            .recv()
            .map_err(|_| io::Error::other("a frame decoder stopped"))?;
        if let Some(Decoded { data: Ok(old), .. }) = self.cur.replace(d) {
            self.pool.give(old);
        }
        self.at = 0;
        Ok(true)
    }

    /// Moves forward to tar offset `off`; the frames before it are dropped unread.
    pub fn skip_to(&mut self, off: u64) -> io::Result<()> {
        loop {
            if let Some(c) = &self.cur {
                if off < c.tar_at + self.at {
                    return Err(io::Error::other(format!(
                        "tar offset {off} is behind the frames read"
                    )));
                }
                if off < c.tar_at + c.tar_len {
                    self.at = off - c.tar_at;
                    return Ok(());
                }
            }
            if !self.next_frame()? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the archive's frames end before tar offset {off}"),
                ));
            }
        }
    }
}

impl Read for FrameStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(c) = &self.cur
                && self.at < c.tar_len
            {
                let data = c
                    .data
                    .as_ref()
                    .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why.clone()))?;
                let from = self.at as usize;
                let n = buf.len().min(data.len() - from);
                buf[..n].copy_from_slice(&data[from..from + n]);
                self.at += n as u64;
                return Ok(n);
            }
            let end = self
                .cur
                .as_ref()
                .map(|c| (c.index + 1, c.tar_at + c.tar_len));
            if !self.next_frame()? {
                return Ok(0);
            }
            let c = self.cur.as_ref().expect("just taken");
            if let Some((next, _)) = end
                && c.index != next
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a member runs on past frame {} into one not read", next - 1),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
