//! Decoding frames on worker threads, handed back in order: the pipeline a
//! seekable read and a whole read share, and the stream of decoded frames
//! it gives.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};

use snap_shared::seekable::read_seek_table;

use super::layout::Layout;

/// One decoded frame.
pub(crate) struct Decoded {
    pub(crate) index: usize,
    pub(crate) tar_at: u64,
    pub(crate) tar_len: u64,
    /// The tar bytes, or why they could not be had.
    pub(crate) data: std::result::Result<Vec<u8>, String>,
}

/// A frame to decode, and where its result goes.
pub(crate) type Work = (usize, Bytes, Sender<Decoded>);

/// Frames decoded on every core and handed on in order: the reader pushes
/// each frame with a slot for its result, workers fill the slots, and the
/// [`FrameStream`] takes the slots in the order they were pushed. The
/// queues are short, so memory stays bounded, and when the stream is
/// dropped the reader's next push fails and everything stops.
pub(crate) struct Pipeline {
    pub(crate) work: Sender<Work>,
    pub(crate) order: Sender<io::Result<Receiver<Decoded>>>,
    /// Buffers of compressed frames, back from the workers.
    pub(crate) spare: Pool,
}

/// Buffers used again rather than allocated: a frame's few MiB, fresh
/// each time, cost more in page faults than the decoding.
#[derive(Clone)]
pub(crate) struct Pool(Sender<Vec<u8>>, Receiver<Vec<u8>>);

impl Pool {
    pub(crate) fn new(n: usize) -> Pool {
        let (tx, rx) = bounded(n);
        Pool(tx, rx)
    }

    /// A buffer of `len` bytes.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self.1.try_recv().unwrap_or_default();
        v.resize(len, 0);
        v
    }

    /// An empty buffer with room for `len` bytes.
    pub(crate) fn take_empty(&self, len: usize) -> Vec<u8> {
        let mut v = self.1.try_recv().unwrap_or_default();
        v.clear();
        v.reserve(len);
        v
    }

    pub(crate) fn give(&self, v: Vec<u8>) {
        let _ = self.0.try_send(v);
    }
}

impl Pipeline {
    pub(crate) fn start(layout: Arc<Layout>) -> (Pipeline, FrameStream) {
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
    pub(crate) fn push(&self, index: usize, bytes: Bytes) -> bool {
        let (slot, result) = bounded(1);
        self.order.send(Ok(result)).is_ok() && self.work.send((index, bytes, slot)).is_ok()
    }

    /// Queues a frame that could not be read, with why.
    pub(crate) fn push_damaged(&self, layout: &Layout, index: usize, e: &io::Error) -> bool {
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
    pub(crate) fn fail(&self, e: io::Error) {
        let _ = self.order.send(Err(e));
    }
}

/// Decodes one frame into a buffer of `pool`, checking its checksum and
/// its size against the table.
pub(crate) fn decode(
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
    pub(crate) slots: Receiver<io::Result<Receiver<Decoded>>>,
    pub(crate) cur: Option<Decoded>,
    /// Bytes of `cur` already read.
    pub(crate) at: u64,
    /// Where the buffers of frames read go back to.
    pub(crate) pool: Pool,
}

impl FrameStream {
    /// Takes the next frame; false at the end.
    pub(crate) fn next_frame(&mut self) -> io::Result<bool> {
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
