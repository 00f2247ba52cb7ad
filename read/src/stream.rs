//! Opening an archive's bytes: age decryption and decompression, found by
//! the bytes themselves (magic numbers), not the file name, so a renamed
//! `backup.tar` that is really zstd still opens. The raw file's sha256 is
//! computed as it is read ([`Tap`]), so checking the archive checksum costs no
//! second read.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use snap_shared::crypt::{Decrypt, decrypting_reader, is_age};
use snap_shared::error::{Error, Result};
use snap_shared::hash::Sha256Digest;

use crate::damage::corrupt;
use crate::loc::Loc;
use crate::seeking::{self, Layout};

/// What was read of the raw file: its digest so far.
#[derive(Default)]
pub struct Tap {
    hasher: Sha256,
}

impl Tap {
    pub fn digest(&self) -> Sha256Digest {
        Sha256Digest::from_hasher(self.hasher.clone())
    }
}

struct Tapped<R> {
    inner: R,
    tap: Arc<Mutex<Tap>>,
}

impl<R: Read> Read for Tapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tap
            .lock()
            .expect("the tap is never poisoned")
            .hasher
            .update(&buf[..n]);
        Ok(n)
    }
}

/// An opened archive: the tar bytes, and the tap on the raw file.
pub struct Opened {
    pub tar: Box<dyn Read>,
    pub tap: Arc<Mutex<Tap>>,
    /// `zstd`, `gzip` or `none`.
    pub compression: &'static str,
    pub encrypted: bool,
}

const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Whether a stream starts as zstd: a frame's magic, or a skippable frame's
/// (`0x184D2A5?` little-endian), which zstd (and so `tar --zstd`) passes
/// over; seekable archives and other tools put metadata in those.
fn is_zstd(head: &[u8]) -> bool {
    head.starts_with(ZSTD)
        || (head.len() >= 4 && head[0] & 0xf0 == 0x50 && head[1..4] == [0x2a, 0x4d, 0x18])
}
const GZIP: &[u8] = &[0x1f, 0x8b];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
const BZIP2: &[u8] = b"BZh";

fn peek<R: BufRead>(r: &mut R, what: &Loc) -> Result<Vec<u8>> {
    let head = r.fill_buf().map_err(|e| corrupt(what, e))?;
    Ok(head[..head.len().min(64)].to_vec())
}

/// Opens `path` for reading its tar stream, decrypting with `dec` when it is an age file.
pub fn open(path: &Loc, dec: &Decrypt) -> Result<Opened> {
    open_framed(path, dec, None)
}

/// [`open`], decoding the frames of a seekable archive on every core when
/// its `layout` is known (see [`crate::seeking`]).
pub fn open_framed(path: &Loc, dec: &Decrypt, layout: Option<Arc<Layout>>) -> Result<Opened> {
    let file = path.open()?;
    let tap = Arc::new(Mutex::new(Tap::default()));
    let tapped = Tapped {
        inner: file,
        tap: tap.clone(),
    };
    let mut raw = BufReader::with_capacity(1 << 20, tapped);
    let head = peek(&mut raw, path)?;
    let encrypted = is_age(&head);
    let mut plain: Box<dyn BufRead + Send> = if encrypted {
        let what = path.show();
        Box::new(BufReader::with_capacity(
            1 << 20,
            decrypting_reader(dec, &what, raw)?,
        ))
    } else {
        Box::new(raw)
    };
    let head = peek(&mut plain, path)?;
    let (tar, compression): (Box<dyn Read>, &'static str) = if let Some(layout) = layout
        && head.starts_with(ZSTD)
    {
        (Box::new(seeking::whole(layout, plain)), "zstd")
    } else if is_zstd(&head) {
        let d = zstd::Decoder::with_buffer(plain).map_err(|e| corrupt(path, e))?;
        (Box::new(d), "zstd")
    } else if head.starts_with(GZIP) {
        (
            Box::new(flate2::bufread::MultiGzDecoder::new(plain)),
            "gzip",
        )
    } else if head.starts_with(XZ) || head.starts_with(BZIP2) {
        return Err(Error::usage(
            path.show(),
            "is xz or bzip2 compressed, which snap does not read",
        )
        .with_hint("decompress it first (xz -d / bzip2 -d), then restore the .tar"));
    } else {
        (Box::new(plain), "none")
    };
    Ok(Opened {
        tar,
        tap,
        compression,
        encrypted,
    })
}
