//! The per-file check of a pack, on a thread of its own: every byte read
//! from the snapshot tree is hashed and compared with the sha256 the index
//! recorded, so bit rot in the store never travels into an archive.
//!
//! The reading thread feeds the compression workers; hashing there would put
//! the check on their critical path. So the file bytes are read straight into
//! batches (many small files share one, a large file spans several) that go,
//! once copied into the tar, to a hashing thread; the batches come back
//! empty. A mismatch is kept (the first one) and raises a flag the reader
//! looks at after each file, so a pack stops soon after a damaged file and
//! always before anything is published.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use sha2::{Digest, Sha256};

use snap_shared::hash::Sha256Digest;

/// Bytes a batch holds: big enough for large reads, small enough to stay
/// in cache between the read, the copy into the tar and the hash.
const BATCH: usize = 1 << 20;
/// Batches in all (the check's memory: BATCHES x BATCH).
const BATCHES: usize = 4;

/// A file whose bytes are not what the index says.
#[derive(Debug)]
pub struct Mismatch {
    /// The file's path in the snapshot tree, as the index has it.
    pub path: Vec<u8>,
    pub got: Sha256Digest,
    pub want: Sha256Digest,
}

/// Where a file's bytes end in a batch, and what all of them hash to.
struct End {
    at: usize,
    want: Option<Sha256Digest>,
    path: Vec<u8>,
}

struct Batch {
    bytes: Vec<u8>,
    used: usize,
    ends: Vec<End>,
}

/// The reader's end of the check.
pub struct Checker {
    batch: Batch,
    full: Option<Sender<Batch>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Option<Mismatch>>>,
    failed: Arc<AtomicBool>,
}

impl Checker {
    pub fn start() -> Checker {
        let (full, to_hash) = bounded::<Batch>(BATCHES);
        let (give_back, empty) = bounded::<Vec<u8>>(BATCHES);
        for _ in 1..BATCHES {
            give_back
                .send(vec![0; BATCH])
                .expect("room for every batch");
        }
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("pack-check".into())
            .spawn(move || hash_batches(to_hash, give_back, flag))
            .expect("a thread for the per-file check");
        Checker {
            batch: Batch::new(vec![0; BATCH]),
            full: Some(full),
            empty,
            thread: Some(thread),
            failed,
        }
    }

    /// Room for up to `want` more bytes of the current file (at least one
    /// byte when `want` is not 0); a full batch goes to the hash first.
    pub fn space(&mut self, want: u64) -> &mut [u8] {
        if self.batch.used == BATCH {
            self.send();
        }
        let room = BATCH - self.batch.used;
        let n = room.min(usize::try_from(want).unwrap_or(usize::MAX));
        let from = self.batch.used;
        &mut self.batch.bytes[from..from + n]
    }

    /// The `n` bytes just read into [`Checker::space`], now part of the file.
    pub fn filled(&mut self, n: usize) -> &[u8] {
        let from = self.batch.used;
        self.batch.used += n;
        &self.batch.bytes[from..from + n]
    }

    /// The current file ends here; its bytes must hash to `want`.
    pub fn end_file(&mut self, want: Option<Sha256Digest>, path: &[u8]) {
        self.batch.ends.push(End {
            at: self.batch.used,
            want,
            path: path.to_vec(),
        });
    }

    /// True once a file was found damaged: the pack stops.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Hashes what is left and waits for it: the first file that did not
    /// match, if any.
    pub fn finish(mut self) -> Option<Mismatch> {
        self.send();
        self.stop()
    }

    fn stop(&mut self) -> Option<Mismatch> {
        drop(self.full.take());
        let thread = self.thread.take()?;
        match thread.join() {
            Ok(found) => found,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn send(&mut self) {
        let Some(full) = &self.full else { return };
        // The thread only ends when `full` is dropped: a buffer always comes back.
        let bytes = self.empty.recv().unwrap_or_else(|_| vec![0; BATCH]);
        let batch = std::mem::replace(&mut self.batch, Batch::new(bytes));
        let _ = full.send(batch);
    }
}

impl Drop for Checker {
    /// A pack that fails elsewhere still ends the thread.
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

impl Batch {
    fn new(bytes: Vec<u8>) -> Batch {
        Batch {
            bytes,
            used: 0,
            ends: Vec::new(),
        }
    }
}

/// The hashing thread: each batch's bytes, file by file, in order.
fn hash_batches(
    to_hash: Receiver<Batch>,
    give_back: Sender<Vec<u8>>,
    failed: Arc<AtomicBool>,
) -> Option<Mismatch> {
    let mut hasher = Sha256::new();
    let mut first = None;
    for batch in to_hash {
        let mut from = 0;
        for end in batch.ends {
            hasher.update(&batch.bytes[from..end.at]);
            from = end.at;
            let got = Sha256Digest::from_hasher(std::mem::take(&mut hasher));
            if let Some(want) = end.want.filter(|w| *w != got)
                && first.is_none()
            {
                first = Some(Mismatch {
                    path: end.path,
                    got,
                    want,
                });
                failed.store(true, Ordering::Relaxed);
            }
        }
        hasher.update(&batch.bytes[from..batch.used]);
        let _ = give_back.send(batch.bytes);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// Feeds FILES through a checker, `step` bytes a read at most.
    fn check(files: &[(&[u8], Sha256Digest)], step: usize) -> Option<Mismatch> {
        let mut c = Checker::start();
        for (i, (bytes, want)) in files.iter().enumerate() {
            let mut at = 0;
            while at < bytes.len() {
                let space = c.space((bytes.len() - at) as u64);
                let n = space.len().min(step);
                space[..n].copy_from_slice(&bytes[at..at + n]);
                assert_eq!(c.filled(n), &bytes[at..at + n]);
                at += n;
            }
            c.end_file(Some(*want), format!("f{i}").as_bytes());
        }
        c.finish()
    }

    /// Files small and large (spanning batches), empty ones, read in odd
    /// steps: all match; one changed byte is named, the first only.
    #[test]
    fn names_the_first_file_that_differs() {
        let big: Vec<u8> = (0..3 * BATCH + 77).map(|i| (i * 7 % 251) as u8).collect();
        let small = b"hello".to_vec();
        let empty: Vec<u8> = Vec::new();
        let files: Vec<(&[u8], Sha256Digest)> = vec![
            (&small, digest(&small)),
            (&big, digest(&big)),
            (&empty, digest(&empty)),
            (&small, digest(&small)),
        ];
        for step in [1 << 20, 4096, 333_333] {
            assert!(check(&files, step).is_none(), "step {step}");
        }
        let mut rotted = big.clone();
        rotted[BATCH + 5] ^= 1;
        let mut files = files;
        files[1] = (&rotted, digest(&big));
        files[3] = (&small, digest(b"other"));
        let m = check(&files, 4096).expect("a mismatch");
        assert_eq!(m.path, b"f1");
        assert_eq!(m.got, digest(&rotted));
        assert_eq!(m.want, digest(&big));
    }
}
