//! snap's tar reader: the headers of a tar stream and the data after them,
//! read as GNU tar and libarchive read them.
//!
//! Why not the `tar` crate's reader (which snap-pack still uses to write):
//! it splits PAX records at newlines, so GNU tar's `--acls` text and binary
//! `SCHILY.xattr.*` values are "malformed"; it refuses a second GNU long
//! name or PAX header for one member (GNU tar takes the last); and it skips
//! a folder's or a link's size field as data, losing the member after an old
//! tar's folder with size 1. This reader keeps what every writer means:
//! - PAX records by their length (see [`pax`]); repeated extension headers
//!   merge, the later record winning; global headers (`g`) apply to every
//!   later member (but never its name, link or size);
//! - GNU long names (`L`, `K`) cut at their first NUL, the last one winning,
//!   and a PAX `path` or `linkpath` over both;
//! - Solaris ACL headers (`A`) and Solaris extended headers (`X`) belong to
//!   the next member;
//! - symlinks, devices, fifos and folders have no data whatever their size
//!   field says; an old-style hard link's size is no data either, unless
//!   the archive is PAX (libarchive's rule: PAX allows a link with data);
//! - extension headers with no member after them before the end are
//!   ignored, as GNU tar ignores them.

pub mod header;
pub mod pax;

use snap_shared::fsutil::read_full;
use std::cell::RefCell;
use std::io::{self, Read};

use header::{BLOCK, Header};
use pax::Records;

/// Extension headers larger than this are refused rather than held in memory.
pub const MAX_EXTENSION: u64 = 16 << 20;

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the archive ends inside a member: it was cut short",
    )
}

/// A member's header with everything the extension headers before it said.
#[derive(Debug, Clone)]
pub struct Raw {
    pub header: Header,
    /// The global records, then this member's own over them.
    pub pax: Records,
    /// The name: PAX `path`, else a GNU long name, else the header's.
    pub name: Vec<u8>,
    /// The link target, chosen likewise.
    pub link: Vec<u8>,
    /// A Solaris `A` header's text, if one came before.
    pub solaris_acl: Option<Vec<u8>>,
    /// Bytes of data after the header (the stored bytes of a sparse file).
    pub data_len: u64,
}

struct Inner<R> {
    stream: R,
    /// Data of the current member not yet read, and the padding after it.
    left: u64,
    pad: u64,
    /// Which member the data belongs to, so an old member's reader cannot
    /// read a later one's bytes.
    serial: u64,
    globals: Records,
    /// A PAX header was seen: a hard link's size is then its data.
    pax_seen: bool,
    /// The stream ended where a header was due (no end-of-archive block).
    at_end: bool,
    /// An end-of-archive block was read.
    done: bool,
}

/// A tar stream.
pub struct Archive<R> {
    inner: RefCell<Inner<R>>,
}

fn padding(len: u64) -> u64 {
    (BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64
}

impl<R: Read> Inner<R> {
    /// Skips what is left of the current member.
    fn skip_rest(&mut self) -> io::Result<()> {
        let n = self.left + self.pad;
        if n > 0 {
            let got = io::copy(&mut (&mut self.stream).take(n), &mut io::sink())?;
            if got < n {
                return Err(cut_short());
            }
        }
        self.left = 0;
        self.pad = 0;
        Ok(())
    }

    /// The next block; `None` at the end of the stream.
    fn block(&mut self) -> io::Result<Option<[u8; BLOCK]>> {
        let mut b = [0u8; BLOCK];
        match read_full(&mut self.stream, &mut b)? {
            0 => Ok(None),
            BLOCK => Ok(Some(b)),
            _ => Err(cut_short()),
        }
    }

    /// The data of an extension header, whole.
    fn extension(&mut self, h: &Header) -> io::Result<Vec<u8>> {
        if h.size > MAX_EXTENSION {
            return Err(bad(format!(
                "an extension header (type {}) is larger than 16 MiB",
                h.kind as char
            )));
        }
        let mut data = vec![0u8; h.size as usize];
        if read_full(&mut self.stream, &mut data)? < data.len() {
            return Err(cut_short());
        }
        let pad = padding(h.size);
        if io::copy(&mut (&mut self.stream).take(pad), &mut io::sink())? < pad {
            return Err(cut_short());
        }
        Ok(data)
    }

    fn next_raw(&mut self) -> io::Result<Option<Raw>> {
        if self.done || self.at_end {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut local = Records::default();
        let mut long_name = None;
        let mut long_link = None;
        let mut solaris_acl = None;
        loop {
            let Some(block) = self.block()? else {
                self.at_end = true;
                return Ok(None);
            };
            if header::is_zero(&block) {
                self.done = true;
                return Ok(None);
            }
            let mut h = header::parse(&block)?;
            match h.kind {
                b'x' | b'X' => {
                    let data = self.extension(&h)?;
                    local.parse(&data)?;
                    self.pax_seen = true;
                }
                b'g' => {
                    let data = self.extension(&h)?;
                    self.globals.parse(&data)?;
                    self.pax_seen = true;
                }
                b'L' => long_name = Some(header::cut(&self.extension(&h)?).to_vec()),
                b'K' => long_link = Some(header::cut(&self.extension(&h)?).to_vec()),
                b'A' => solaris_acl = Some(self.extension(&h)?),
                _ => {
                    if let Some(s) = h.sparse.as_mut() {
                        let mut more = s.extended;
                        while more {
                            let b = self.block()?.ok_or_else(cut_short)?;
                            let (map, next) = header::sparse_extension(&b)?;
                            s.map.extend(map);
                            more = next;
                        }
                    }
                    return self
                        .member(h, local, long_name, long_link, solaris_acl)
                        .map(Some);
                }
            }
        }
    }

    fn member(
        &mut self,
        header: Header,
        local: Records,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        solaris_acl: Option<Vec<u8>>,
    ) -> io::Result<Raw> {
        let mut pax = self.globals.clone();
        for key in ["path", "linkpath", "size"] {
            pax.keys.remove(key.as_bytes());
        }
        pax.keys.extend(local.keys);
        if !local.pairs.is_empty() {
            pax.pairs = local.pairs;
        }
        let chosen = |key: &str, long: Option<Vec<u8>>, field: &[u8]| match pax.get(key) {
            Some(v) => header::cut(v).to_vec(),
            None => long.unwrap_or_else(|| field.to_vec()),
        };
        let name = chosen("path", long_name, &header.name);
        let link = chosen("linkpath", long_link, &header.link);
        let size = pax.number("size")?.unwrap_or(header.size);
        let data_len = match header.kind {
            b'2' | b'3' | b'4' | b'5' | b'6' => 0,
            // A regular member named like a folder is one (v7 and old BSD
            // tars): its size is no data either (libarchive's
            // test_compat_tar_directory).
            b'0' | b'7' if name.ends_with(b"/") => 0,
            b'1' if !self.pax_seen => 0,
            _ => size,
        };
        if data_len.checked_add(BLOCK as u64).is_none() {
            return Err(bad(format!(
                "a member's size {data_len} is past any archive"
            )));
        }
        self.left = data_len;
        self.pad = padding(data_len);
        self.serial += 1;
        Ok(Raw {
            header,
            pax,
            name,
            link,
            solaris_acl,
            data_len,
        })
    }
}

impl<R: Read> Archive<R> {
    pub fn new(stream: R) -> Archive<R> {
        Archive {
            inner: RefCell::new(Inner {
                stream,
                left: 0,
                pad: 0,
                serial: 0,
                globals: Records::default(),
                pax_seen: false,
                at_end: false,
                done: false,
            }),
        }
    }

    /// The next member's header, with a reader of its data; `None` at the
    /// end-of-archive block or at the end of the stream (which
    /// [`Archive::finish`] tells apart). Reading it skips what the member
    /// before left unread.
    pub fn next_raw(&self) -> io::Result<Option<(Raw, Data<'_, R>)>> {
        let mut inner = self.inner.borrow_mut();
        let raw = inner.next_raw()?;
        Ok(raw.map(|r| {
            let data = Data {
                archive: self,
                serial: inner.serial,
            };
            (r, data)
        }))
    }

    /// Whether the stream ended where a header was due.
    pub fn cut_short(&self) -> bool {
        self.inner.borrow().at_end
    }

    /// The stream, positioned after what was read.
    pub fn into_inner(self) -> R {
        self.inner.into_inner().stream
    }
}

/// One member's data: a reader that ends where the member's data does.
pub struct Data<'a, R> {
    archive: &'a Archive<R>,
    serial: u64,
}

impl<R: Read> Read for Data<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut inner = self.archive.inner.borrow_mut();
        if inner.serial != self.serial {
            return Err(io::Error::other(
                "a member's data was read after the next member's header",
            ));
        }
        let want = (buf.len() as u64).min(inner.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = inner.stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(cut_short());
        }
        inner.left -= n as u64;
        Ok(n)
    }
}
