//! The writer stack an archive goes through: tar bytes → compression
//! (zstd as independent frames with a seek table: [`crate::frames`]) →
//! (age encryption) → SHA-256 and byte count → the temporary file.
//!
//! The archive's sha256 is computed here, on the bytes as they go to disk,
//! so it costs no second read of the archive (the `tar | zstd > a &&
//! sha256sum a` pipeline reads it twice).

use std::fs::File;
use std::io::{self, BufWriter, Write};

use sha2::{Digest, Sha256};

use snap_shared::archive::Compression;
use snap_shared::crypt::{Encrypt, encrypting_writer};
use snap_shared::hash::Sha256Digest;
use snap_shared::seekable::Frame;

use crate::frames::FrameWriter;
use snap_shared::tarw::Members;

/// Counts and hashes what passes through.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn finish(self) -> (W, Sha256Digest, u64) {
        (
            self.inner,
            Sha256Digest::from_hasher(self.hasher),
            self.bytes,
        )
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Buffered file output: writes of compressed data come in small pieces.
type Out = Hashing<BufWriter<File>>;

enum Crypt {
    Plain(Out),
    Age(age::stream::StreamWriter<Out>),
}

impl Write for Crypt {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Crypt::Plain(w) => w.write(buf),
            Crypt::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Crypt::Plain(w) => w.flush(),
            Crypt::Age(w) => w.flush(),
        }
    }
}

impl Crypt {
    fn finish(self) -> io::Result<Out> {
        match self {
            Crypt::Plain(w) => Ok(w),
            Crypt::Age(w) => w.finish(),
        }
    }
}

enum Compress {
    /// Independent frames and a seek table (seekable).
    Zstd(FrameWriter<Crypt>),
    Gzip(flate2::write::GzEncoder<Crypt>),
    None(Crypt),
}

impl Write for Compress {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compress::Zstd(w) => w.write(buf),
            Compress::Gzip(w) => w.write(buf),
            Compress::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compress::Zstd(w) => w.flush(),
            Compress::Gzip(w) => w.flush(),
            Compress::None(w) => w.flush(),
        }
    }
}

impl Compress {
    fn finish(self) -> io::Result<(Crypt, Vec<Frame>)> {
        match self {
            Compress::Zstd(w) => w.finish(),
            Compress::Gzip(w) => Ok((w.finish()?, Vec::new())),
            Compress::None(w) => Ok((w, Vec::new())),
        }
    }
}

/// An archive's index file: (age encryption) → SHA-256 → the file. The
/// index is zstd already (snap_shared's IndexWriter writes it).
pub struct IndexSink {
    inner: Crypt,
}

impl IndexSink {
    pub fn new(file: File, encrypt: Option<&Encrypt>) -> io::Result<IndexSink> {
        let out = Hashing::new(BufWriter::with_capacity(1 << 20, file));
        let inner = match encrypt {
            Some(e) => Crypt::Age(encrypting_writer(e, out)?),
            None => Crypt::Plain(out),
        };
        Ok(IndexSink { inner })
    }

    /// Ends the encryption; returns the file and the digest of what it holds.
    pub fn finish(self) -> io::Result<(File, Sha256Digest)> {
        let (buffered, sha256, _) = self.inner.finish()?.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        Ok((file, sha256))
    }
}

impl Write for IndexSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// How to encode an archive.
pub struct Encoding<'a> {
    pub compression: Compression,
    pub level: i32,
    /// zstd worker threads (0: compress on the calling thread).
    pub threads: u32,
    pub encrypt: Option<&'a Encrypt>,
}

/// The archive being written; `write` takes tar bytes.
pub struct Sink {
    inner: BufWriter<Compress>,
}

/// What a finished archive is.
pub struct Written {
    pub file: File,
    pub sha256: Sha256Digest,
    pub bytes: u64,
    /// Its zstd frames, in order (none for gzip or no compression).
    pub frames: Vec<Frame>,
}

impl Sink {
    pub fn new(file: File, enc: &Encoding) -> io::Result<Sink> {
        let out = Hashing::new(BufWriter::with_capacity(1 << 20, file));
        let crypt = match enc.encrypt {
            Some(e) => Crypt::Age(encrypting_writer(e, out)?),
            None => Crypt::Plain(out),
        };
        let compress = match enc.compression {
            Compression::Zstd => Compress::Zstd(FrameWriter::new(crypt, enc.level, enc.threads)?),
            Compression::Gzip => Compress::Gzip(flate2::write::GzEncoder::new(
                crypt,
                flate2::Compression::new(enc.level.clamp(1, 9) as u32),
            )),
            Compression::None => Compress::None(crypt),
        };
        Ok(Sink {
            inner: BufWriter::with_capacity(1 << 20, compress),
        })
    }

    /// Ends every layer in order and returns the file with the digest and size written.
    pub fn finish(self) -> io::Result<Written> {
        let compress = self.inner.into_inner().map_err(|e| e.into_error())?;
        let (crypt, frames) = compress.finish()?;
        let (buffered, sha256, bytes) = crypt.finish()?.finish();
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        Ok(Written {
            file,
            sha256,
            bytes,
            frames,
        })
    }
}

impl Members for Sink {
    /// A frame may end here: everything buffered goes to it first.
    fn member_starts(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        match self.inner.get_mut() {
            Compress::Zstd(w) => w.boundary(),
            _ => Ok(()),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
