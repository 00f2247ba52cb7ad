//! Writer threads for restores from archives.
//!
//! A tar stream is read by one thread, but writing 100,000 small files is
//! mostly kernel work (create, write, metadata, rename) that need not wait for
//! the next file to be decompressed. The reading thread hands each small
//! file's bytes to a writer thread, which checks them against the sha256,
//! writes, stages and names them through its own [`Target`] (same rules:
//! nothing outside the target, nothing replaced without `--overwrite`, no
//! name before the bytes are durable). Each writer reports a file when its
//! batch is flushed, and flushes what is left when the queue closes. A large file
//! goes as a stream of chunks through a short channel of its own, so its
//! hashing and writing overlap the decompression of the next chunk. Memory
//! stays bounded: at most `QUEUE` files of at most `SMALL` bytes, plus
//! `CHUNKS` chunks of a large file, wait.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use snap_shared::hash::Sha256Digest;

use crate::target::{Meta, Settled, Target};

/// Files up to this size go to the writer threads.
pub const SMALL: u64 = 1 << 20;
/// Files waiting for a writer.
const QUEUE: usize = 32;

/// Chunks of a large file waiting for its writer.
pub const CHUNKS: usize = 8;

pub struct Job {
    pub path: Vec<u8>,
    pub meta: Meta,
    pub sha: Option<Sha256Digest>,
    pub size: u64,
    pub data: Data,
}

/// A file's bytes: whole, or as chunks still coming.
pub enum Data {
    Bytes(Vec<u8>),
    /// Chunks still coming; an error ends the file (its source broke).
    Chunks(Receiver<std::io::Result<Vec<u8>>>),
}

/// Reads the chunks of a streamed file as they arrive.
struct ChunkReader {
    chunks: Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(next) => (self.current, self.at) = (next?, 0),
                // The sender stopped early: the archive ended or broke.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

pub struct Writers {
    jobs: Option<Sender<Job>>,
    done: Receiver<Settled>,
    handles: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writers into `like`'s folder, with its rules.
    pub fn start(like: &Target, n: usize) -> std::io::Result<Writers> {
        let (dir, overwrite, policy) = (&like.path, like.overwrites(), like.policy());
        let (jobs, queue) = bounded::<Job>(QUEUE);
        let (report, done) = unbounded();
        let mut handles = Vec::new();
        // Opened here so a target that can't be opened is an error now, not in a thread.
        drop(Target::open(dir, overwrite)?);
        for _ in 0..n {
            let dir = dir.to_path_buf();
            let (queue, report): (Receiver<Job>, Sender<Settled>) = (queue.clone(), report.clone());
            let implicit = like.implicit();
            let home = like.home();
            handles.push(std::thread::spawn(move || {
                let Ok(mut target) = Target::open(&dir, overwrite) else {
                    return;
                };
                target.set_policy(policy);
                target.set_implicit(implicit);
                target.set_home(home);
                let mut buf = vec![0u8; 1 << 20];
                for job in queue {
                    let size = job.size;
                    let sha = job.sha.as_ref();
                    let result = match job.data {
                        Data::Bytes(b) => {
                            target.file(&job.path, &job.meta, size, sha, &mut &b[..], &mut buf)
                        }
                        Data::Chunks(rx) => {
                            let mut r = ChunkReader {
                                chunks: rx,
                                current: Vec::new(),
                                at: 0,
                            };
                            target.file(&job.path, &job.meta, size, sha, &mut r, &mut buf)
                        }
                    };
                    if let Err(refused) = result {
                        let _ = report.send(Settled {
                            path: job.path,
                            bytes: size,
                            result: Err(refused),
                        });
                    }
                    for s in target.settled() {
                        let _ = report.send(s);
                    }
                }
                target.flush();
                for s in target.settled() {
                    let _ = report.send(s);
                }
            }));
        }
        Ok(Writers {
            jobs: Some(jobs),
            done,
            handles,
        })
    }

    /// Queues a file (waits while the queue is full).
    pub fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // The writers only stop when the queue closes, so this cannot fail.
            let _ = jobs.send(job);
        }
    }

    /// What has been written so far.
    pub fn finished(&self) -> Vec<Settled> {
        self.done.try_iter().collect()
    }

    /// Waits for every queued file to be written; returns what is left to count.
    pub fn finish(mut self) -> Vec<Settled> {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.done.try_iter().collect()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
