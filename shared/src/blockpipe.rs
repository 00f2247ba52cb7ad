//! Reading an image block by block on every core, in order.
//!
//! One thread reads blocks (never the holes: SEEK_DATA tells where data is),
//! one worker per core hashes, compares or compresses them, and the caller
//! receives the results in block order. The channels are bounded, so at most
//! a few blocks per worker are in memory whatever the image's size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};

/// Answers "is this range all hole?" for a file, with few lseek calls when
/// asked in increasing order.
pub struct Holes<'a> {
    file: &'a File,
    /// `(from, next data at or after from)`; `u64::MAX` when no data follows.
    cached: Option<(u64, u64)>,
    supported: bool,
}

impl<'a> Holes<'a> {
    pub fn new(file: &'a File) -> Self {
        Holes {
            file,
            cached: None,
            supported: true,
        }
    }

    /// True when `[start, end)` holds no data (reads as zeros without reading).
    pub fn is_hole(&mut self, start: u64, end: u64) -> bool {
        if !self.supported {
            return false;
        }
        let next = match self.cached {
            Some((from, next)) if from <= start && next >= start => next,
            _ => match self.next_data(start) {
                Some(n) => n,
                None => return false,
            },
        };
        self.cached = Some((start, next));
        next >= end
    }

    fn next_data(&mut self, from: u64) -> Option<u64> {
        match rustix::fs::seek(self.file, rustix::fs::SeekFrom::Data(from)) {
            Ok(n) => Some(n),
            Err(rustix::io::Errno::NXIO) => Some(u64::MAX),
            Err(_) => {
                self.supported = false;
                None
            }
        }
    }
}

/// True when every byte is zero (checked a page at a time, vectorized).
pub fn is_zero(data: &[u8]) -> bool {
    data.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
}

/// Reads a whole range at `offset`; bytes past the end of the file read as zeros.
pub fn read_block(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// Where blocks are read from: an image file, or a disk a running VM holds
/// (read through NBD by snap-disk).
pub trait Source: Sync {
    /// `len` bytes at `offset`; bytes past the end read as zeros.
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

impl Source for File {
    fn read_range(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        read_block(self, offset, len)
    }
}

/// One block to read: where, how long, and what the worker needs with it.
pub struct Job<J> {
    pub offset: u64,
    pub len: usize,
    pub with: J,
}

/// Reads each job's bytes from `file`, runs `work` on them on every core, and
/// hands the results to `sink` in job order. The first error stops everything.
/// A job of length 0 reads nothing: the worker gets an empty buffer.
pub fn run<J, T>(
    file: &(impl Source + ?Sized),
    what: &str,
    jobs: impl Iterator<Item = Result<Job<J>>> + Send,
    work: impl Fn(J, Vec<u8>) -> Result<T> + Sync,
    mut sink: impl FnMut(T) -> Result<()>,
) -> Result<()>
where
    J: Send,
    T: Send,
{
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (job_tx, job_rx) = crossbeam_channel::bounded::<(u64, J, Vec<u8>)>(workers * 2);
    let (res_tx, res_rx) = crossbeam_channel::bounded::<(u64, Result<T>)>(workers * 4);
    std::thread::scope(|s| {
        let reader_res = res_tx.clone();
        s.spawn(move || {
            for (seq, job) in (0u64..).zip(jobs) {
                let item = job.and_then(|j| {
                    let bytes = match j.len {
                        0 => Ok(Vec::new()),
                        n => file.read_range(j.offset, n),
                    };
                    bytes
                        .map(|b| (j.with, b))
                        .map_err(|e| Error::io_ctx(what.to_string(), e))
                });
                let sent = match item {
                    Ok((with, buf)) => job_tx.send((seq, with, buf)).is_ok(),
                    Err(e) => {
                        let _ = reader_res.send((seq, Err(e)));
                        false
                    }
                };
                if !sent {
                    break;
                }
            }
        });
        for _ in 0..workers {
            let (rx, tx, work) = (job_rx.clone(), res_tx.clone(), &work);
            s.spawn(move || {
                for (seq, with, buf) in rx {
                    if tx.send((seq, work(with, buf))).is_err() {
                        break;
                    }
                }
            });
        }
        drop((job_rx, res_tx));
        let out = deliver_in_order(&res_rx, &mut sink);
        drop(res_rx); // ends the reader and workers when we stopped early
        out
    })
}

fn deliver_in_order<T>(
    results: &crossbeam_channel::Receiver<(u64, Result<T>)>,
    sink: &mut impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    for (seq, res) in results {
        // An error is reported at once: nothing after it would be used.
        waiting.insert(seq, res?);
        while let Some(t) = waiting.remove(&next) {
            sink(t)?;
            next += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Results arrive in job order even though workers finish out of order.
    #[test]
    fn results_in_order() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&(0..=255u8).collect::<Vec<_>>()).unwrap();
        let jobs = (0..64u64).map(|i| {
            Ok(Job {
                offset: i * 4,
                len: 4,
                with: i,
            })
        });
        let mut got = Vec::new();
        run(
            &f,
            "t",
            jobs,
            |i, b| {
                std::thread::sleep(std::time::Duration::from_micros(64 - i));
                Ok((i, b[0]))
            },
            |r| {
                got.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, (0..64).map(|i| (i, (i * 4) as u8)).collect::<Vec<_>>());
    }

    /// A worker's error ends the run with that error.
    #[test]
    fn error_stops_the_run() {
        let f = tempfile::tempfile().unwrap();
        let jobs = (0..1000u64).map(|i| {
            Ok(Job {
                offset: 0,
                len: 1,
                with: i,
            })
        });
        let err = run(
            &f,
            "t",
            jobs,
            |i, _| {
                if i == 10 {
                    Err(Error::data("b", "bad"))
                } else {
                    Ok(i)
                }
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(err.cause, "bad");
    }

    /// Holes are found without reading; data ranges are not holes.
    #[test]
    fn finds_holes() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sparse");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_at(b"x", 4 << 20).unwrap();
        f.sync_all().unwrap();
        let f = File::open(&p).unwrap();
        let mut h = Holes::new(&f);
        assert!(h.is_hole(0, 1 << 20));
        assert!(!h.is_hole(4 << 20, 5 << 20));
        assert!(h.is_hole(6 << 20, 8 << 20));
        assert!(is_zero(&[0u8; 10000]));
        assert!(!is_zero(&[0, 0, 1]));
    }
}
