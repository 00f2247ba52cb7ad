//! Part buffers that come back when their last `Bytes` is dropped.
//!
//! A large upload reads its file in parts of 16 MiB or more. A fresh
//! buffer per part costs the kernel a page fault and a zeroed page for
//! every 4 KiB, and the allocator an munmap when the part is sent: a
//! quarter of the reader's CPU in a profile of 1 GiB sent over SFTP,
//! hashing aside. The pool hands back the
//! buffers of parts already sent instead. It never waits for one: when
//! none is back yet (the destination still holds every part it was given,
//! as a bucket's parallel uploads do), it makes another, so it cannot
//! stall an upload.

use std::sync::mpsc::{Receiver, Sender, channel};

use bytes::Bytes;

/// Buffers of one size, reused once their parts are dropped.
pub(crate) struct Pool {
    size: usize,
    home: Sender<Vec<u8>>,
    back: Receiver<Vec<u8>>,
}

/// A buffer lent out as `Bytes`; dropping it sends it home.
struct Lent {
    buf: Vec<u8>,
    home: Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // The pool may be gone (the file was read to its end): then the
        // buffer is simply freed.
        let _ = self.home.send(std::mem::take(&mut self.buf));
    }
}

impl Pool {
    pub(crate) fn new(size: usize) -> Pool {
        let (home, back) = channel();
        Pool { size, home, back }
    }

    /// A buffer of the pool's size: one handed back, or a new one.
    pub(crate) fn take(&self) -> Vec<u8> {
        match self.back.try_recv() {
            Ok(mut buf) => {
                buf.resize(self.size, 0);
                buf
            }
            Err(_) => vec![0u8; self.size],
        }
    }

    /// `buf` as `Bytes` that return it to the pool when the last clone or
    /// slice of it is dropped.
    pub(crate) fn lend(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent {
            buf,
            home: self.home.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer whose every slice was dropped is handed out again, at the
    /// pool's size even after it was cut short.
    #[test]
    fn dropped_parts_are_reused() {
        let pool = Pool::new(1024);
        let mut buf = pool.take();
        buf.truncate(10);
        let at = buf.as_ptr();
        let part = pool.lend(buf);
        let slice = part.slice(2..4);
        drop(part);
        let other = pool.take();
        assert_ne!(other.as_ptr(), at, "lent while a slice lives");
        drop(slice);
        let again = pool.take();
        assert_eq!((again.as_ptr(), again.len()), (at, 1024));
        drop(other);
    }
}
