//! Copying a file's bytes while hashing them, leaving holes for blocks of
//! zeros, and telling a failed read (the archive's) from a failed write.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use snap_shared::hash::Sha256Digest;

/// The content being restored, remembering whether a read failed (the
/// archive's fault) rather than a write (the target's).
pub(super) struct Source<'r> {
    pub(super) inner: &'r mut dyn Read,
    pub(super) failed: bool,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.inner.read(buf);
        // Asked only for bytes still due, so an end is an early end.
        self.failed = !matches!(got, Ok(n) if n > 0);
        got
    }
}

/// The same error again, with its errno (one failed flush fails each file of the batch).
pub(super) fn copy_of(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Size and sha256 of a whole file.
pub fn hash_file(f: impl io::Read, buf: &mut [u8]) -> io::Result<(u64, Sha256Digest)> {
    snap_shared::hash::hash_read(f, buf)
}

/// Copies exactly `size` bytes, hashing them; a short source is an error.
pub fn copy_hashed(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    size: u64,
    buf: &mut [u8],
) -> io::Result<Sha256Digest> {
    let mut hasher = Sha256::new();
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the data ended early",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(Sha256Digest::from_hasher(hasher))
}
