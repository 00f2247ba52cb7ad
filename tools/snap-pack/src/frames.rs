//! Seekable zstd: the tar stream cut into independent zstd frames, each
//! decodable on its own so a reader can start at any of them, compressed on
//! worker threads and written in order, then a seek table in the zstd
//! seekable format's skippable frame (contrib/seekable_format: every
//! frame's compressed and decompressed size). `zstd -d`, `tar --zstd` and
//! any zstd decoder read the file as one stream and skip the table.
//!
//! A frame ends at a tar member boundary once it holds [`TARGET`] bytes of
//! tar, or wherever it reaches [`MAX`]: a large file spans frames.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use snap_shared::seekable::{Frame, seek_table};

/// Tar bytes a frame holds before it ends at the next member boundary.
/// Measured on the bench's corpora against the single multi-threaded zstd
/// frame snap-pack wrote before: 2 MiB frames (4 MiB at most) cost 0.13%
/// in size on tree-small and 0.02% on tree-large, and pack in 0.90x and
/// 1.02x the time; 8/16 MiB frames cost 0.47% on tree-small, and were
/// slower (see the note on writing in pieces).
pub const TARGET: usize = 2 << 20;
/// Tar bytes a frame never exceeds (a large file's data is cut here).
pub const MAX: usize = 2 * TARGET;

/// A frame's tar bytes, numbered, with a buffer for its compressed bytes,
/// on their way to a worker.
type Job = (u64, Vec<u8>, Vec<u8>);
/// A compressed frame: how it went, the tar buffer, the compressed bytes.
type Compressed = (io::Result<()>, Vec<u8>, Vec<u8>);
/// Back from a worker, numbered.
type Done = (u64, Compressed);

/// Writes tar bytes as independent zstd frames. Buffers go round (a fresh
/// 16 MiB buffer for every frame costs more in page faults than the copy).
pub struct FrameWriter<W: Write> {
    out: W,
    /// The context of this thread, when it compresses (no workers).
    own: Option<Squeezer>,
    current: Vec<u8>,
    frames: Vec<Frame>,
    /// Buffers done with, for the next frames.
    spare_tar: Vec<Vec<u8>>,
    spare_out: Vec<Vec<u8>>,
    /// Workers (none: frames are compressed on this thread).
    pool: Option<Pool>,
}

struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// Frames sent and not yet written.
    sent: u64,
    written: u64,
    /// Finished frames waiting for an earlier one.
    waiting: BTreeMap<u64, Compressed>,
    most_in_flight: u64,
}

/// A zstd context kept for every frame it compresses (made once per worker).
struct Squeezer(zstd::bulk::Compressor<'static>);

impl Squeezer {
    fn new(level: i32) -> io::Result<Squeezer> {
        use zstd::zstd_safe::CParameter;
        let mut c = zstd::bulk::Compressor::new(level)?;
        // What `zstd` writes by default, so `zstd -t` and `tar --zstd` check each frame.
        c.set_parameter(CParameter::ChecksumFlag(true))?;
        c.set_parameter(CParameter::ContentSizeFlag(true))?;
        Ok(Squeezer(c))
    }

    /// One independent frame of `tar`, into `out`.
    fn frame(&mut self, tar: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(tar.len()));
        self.0.compress_to_buffer(tar, out).map(|_| ())
    }
}

fn worker(level: i32, jobs: Receiver<Job>, done: Sender<Done>) {
    let mut squeezer = Squeezer::new(level);
    for (seq, tar, mut out) in jobs {
        let result = match squeezer.as_mut() {
            Ok(s) => s.frame(&tar, &mut out),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        if done.send((seq, (result, tar, out))).is_err() {
            return;
        }
    }
}

impl<W: Write> FrameWriter<W> {
    /// `threads` workers compress frames (0: this thread does).
    pub fn new(out: W, level: i32, threads: u32) -> io::Result<FrameWriter<W>> {
        let pool = (threads > 0).then(|| {
            let n = threads as usize;
            let (jobs, job_rx) = bounded::<Job>(n);
            let (done_tx, done) = bounded::<Done>(2 * n);
            let workers = (0..n)
                .map(|_| {
                    let (rx, tx) = (job_rx.clone(), done_tx.clone());
                    std::thread::spawn(move || worker(level, rx, tx))
                })
                .collect();
            Pool {
                jobs: Some(jobs),
                done,
                workers,
                sent: 0,
                written: 0,
                waiting: BTreeMap::new(),
                most_in_flight: 2 * n as u64,
            }
        });
        let own = match pool {
            None => Some(Squeezer::new(level)?),
            Some(_) => None,
        };
        Ok(FrameWriter {
            out,
            own,
            current: Vec::with_capacity(MAX),
            frames: Vec::new(),
            spare_tar: Vec::new(),
            spare_out: Vec::new(),
            pool,
        })
    }

    /// A tar member starts here: the frame ends if it holds enough.
    pub fn boundary(&mut self) -> io::Result<()> {
        if self.current.len() >= TARGET {
            self.end_frame()?;
        }
        Ok(())
    }

    /// Ends the current frame (if it holds anything) and sends it on.
    fn end_frame(&mut self) -> io::Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let fresh = self
            .spare_tar
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MAX));
        let tar = std::mem::replace(&mut self.current, fresh);
        let mut out = self.spare_out.pop().unwrap_or_default();
        if let Some(own) = self.own.as_mut() {
            own.frame(&tar, &mut out)?;
            return self.put(tar, out);
        }
        while self
            .pool
            .as_ref()
            .is_some_and(|p| p.sent - p.written >= p.most_in_flight)
        {
            self.receive()?;
        }
        let p = self.pool.as_mut().expect("still there");
        let jobs = p.jobs.as_ref().expect("jobs close only at finish");
        jobs.send((p.sent, tar, out))
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        p.sent += 1;
        Ok(())
    }

    /// Writes one compressed frame, notes it in the table, keeps the buffers.
    fn put(&mut self, mut tar: Vec<u8>, out: Vec<u8>) -> io::Result<()> {
        let too_big = || io::Error::other("a zstd frame over 4 GiB");
        self.frames.push(Frame {
            compressed: u32::try_from(out.len()).map_err(|_| too_big())?,
            tar: u32::try_from(tar.len()).map_err(|_| too_big())?,
        });
        // In pieces, as a stream encoder's output comes: one large write
        // waits on the page cache's dirty limits while the workers starve.
        for piece in out.chunks(256 << 10) {
            self.out.write_all(piece)?;
        }
        tar.clear();
        self.spare_tar.push(tar);
        self.spare_out.push(out);
        Ok(())
    }

    /// Waits for one finished frame, then writes every frame now in order.
    fn receive(&mut self) -> io::Result<()> {
        let p = self.pool.as_mut().expect("only with workers");
        let (seq, frame) = p
            .done
            .recv()
            .map_err(|_| io::Error::other("a compression worker stopped"))?;
        p.waiting.insert(seq, frame);
        loop {
            let p = self.pool.as_mut().expect("only with workers");
            let Some((result, tar, out)) = p.waiting.remove(&p.written) else {
                return Ok(());
            };
            p.written += 1;
            result?;
            self.put(tar, out)?;
        }
    }

    /// Ends the last frame, writes every frame and the seek table; returns
    /// the output and the frames.
    pub fn finish(mut self) -> io::Result<(W, Vec<Frame>)> {
        self.end_frame()?;
        while self.pool.as_ref().is_some_and(|p| p.written < p.sent) {
            self.receive()?;
        }
        if let Some(mut p) = self.pool.take() {
            drop(p.jobs.take());
            for w in p.workers.drain(..) {
                let _ = w.join();
            }
        }
        self.out.write_all(&seek_table(&self.frames))?;
        Ok((self.out, self.frames))
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX - self.current.len();
        let n = buf.len().min(room);
        self.current.extend_from_slice(&buf[..n]);
        if self.current.len() >= MAX {
            self.end_frame()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snap_shared::seekable::read_seek_table;

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"abcdefghij\n"[(i * 7 + i / 13) % 11])
            .collect()
    }

    /// Frames end at boundaries past TARGET and anywhere at MAX; the whole
    /// decodes as one stream to the input; the table matches the frames, and
    /// each frame decodes alone.
    #[test]
    fn frames_decode_alone_and_together() {
        for threads in [0, 2] {
            let mut w = FrameWriter::new(Vec::new(), 3, threads).unwrap();
            let data = text(3 * MAX + 1000);
            w.write_all(&data[..TARGET + 10]).unwrap();
            w.boundary().unwrap();
            w.write_all(&data[TARGET + 10..]).unwrap();
            let (out, frames) = w.finish().unwrap();
            let tars: Vec<usize> = frames.iter().map(|f| f.tar as usize).collect();
            assert_eq!(tars, [TARGET + 10, MAX, MAX, MAX - TARGET - 10 + 1000]);
            assert_eq!(zstd::decode_all(&out[..]).unwrap(), data);
            assert_eq!(read_seek_table(&out).unwrap(), frames);
            let mut at = 0usize;
            let mut tar_at = 0usize;
            for f in &frames {
                let one = zstd::decode_all(&out[at..at + f.compressed as usize]).unwrap();
                assert_eq!(one, data[tar_at..tar_at + f.tar as usize]);
                at += f.compressed as usize;
                tar_at += f.tar as usize;
            }
        }
    }
}
