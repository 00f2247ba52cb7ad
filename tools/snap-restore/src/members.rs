//! The members of any tar, as GNU tar extracts them.
//!
//! The `tar` crate reads headers, checksums, GNU long names, PAX `path`,
//! `linkpath`, `size`, `uid` and `gid`, base-256 numbers and old GNU sparse
//! files (type `S`). What it leaves to its caller lives here, so that every
//! reader of foreign tars (restore, import, verify) sees the same members:
//! - PAX global headers (`g`): their records apply to every later member;
//! - PAX `mtime`, to the nanosecond and before 1970;
//! - PAX sparse files in the three versions GNU tar writes (0.0, 0.1 and 1.0,
//!   which is also what bsdtar writes), read as their real content under their
//!   real name, not as `GNUSparseFile.0/NAME` holding a sparse map;
//! - the types GNU tar gives to what the crate passes through as it is: a
//!   regular member whose name ends in `/` is a folder (v7 and old BSD tars),
//!   `D` (a folder of an incremental dump) is a folder, `V` (a volume label)
//!   is no file at all, an unknown type is a regular file ("extracted as
//!   normal file"), and `M` (a multi-volume continuation) and `N` (old GNU
//!   long names) cannot be restored from this archive alone.
//!
//! A member's [`Read`] gives its real content: holes of sparse files come as
//! zeros, which the restore target turns back into holes.

use std::collections::BTreeMap;
use std::io::{self, Read};

use snap_shared::index::EntryType;

/// What a member is, for a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Something to make: a file, folder, link or special file.
    Entry(EntryType),
    /// A volume label: names the archive, restores nothing (as GNU tar).
    Label,
    /// A member that cannot be restored, and why.
    Cannot(String),
}

/// One member: its metadata as GNU tar would apply it, and its content.
pub struct Member<'a, R: Read + 'a> {
    /// The name as stored (not yet made safe).
    pub path: Vec<u8>,
    /// A symlink's target or a hard link's first name.
    pub link: Vec<u8>,
    pub what: What,
    /// The real size of a file's content (of a sparse file too).
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since 1970 (tars reach past the year 2262 of an i64).
    pub mtime_ns: i128,
    pub rdev: u64,
    /// Stored as a sparse file (old GNU or PAX).
    pub sparse: bool,
    /// An unknown type byte, restored as a regular file.
    pub unknown_type: Option<u8>,
    content: Content<'a, R>,
}

enum Content<'a, R: Read + 'a> {
    Plain(tar::Entry<'a, R>),
    Sparse(Expand<tar::Entry<'a, R>>),
}

impl<R: Read> Read for Member<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.content {
            Content::Plain(e) => e.read(buf),
            Content::Sparse(e) => e.read(buf),
        }
    }
}

/// PAX records, later ones replacing earlier ones of the same key (except
/// the repeated pairs of sparse 0.0, kept in order apart).
#[derive(Default, Clone)]
struct Records {
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
    /// `GNU.sparse.offset` and `GNU.sparse.numbytes` values, in order (sparse 0.0).
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Records {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        if key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes" {
            self.pairs.push((key.to_vec(), value.to_vec()));
        } else {
            self.keys.insert(key.to_vec(), value.to_vec());
        }
    }

    fn get(&self, key: &str) -> Option<&[u8]> {
        self.keys.get(key.as_bytes()).map(Vec::as_slice)
    }

    fn number(&self, key: &str) -> io::Result<Option<u64>> {
        self.get(key).map(|v| decimal(key, v)).transpose()
    }
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn decimal(key: &str, v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad(format!("PAX record {key} is not a number")))
}

/// A PAX time (`[-]SECONDS[.FRACTION]`) in nanoseconds.
fn pax_time(v: &[u8]) -> io::Result<i128> {
    let s = std::str::from_utf8(v).map_err(|_| bad("PAX mtime is not text"))?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !(frac.is_empty() || digits(frac)) {
        return Err(bad(format!("PAX mtime {s:?} is not a time")));
    }
    let secs: i128 = secs.parse().map_err(|_| bad("PAX mtime is out of range"))?;
    let nanos: i128 = format!("{:0<9}", &frac[..frac.len().min(9)])
        .parse()
        .expect("nine digits");
    let total = secs
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(|| bad("PAX mtime is out of range"))?;
    Ok(if neg { -total } else { total })
}

/// A tar stream that remembers whether its last read found the end. The
/// `tar` crate ends its members both at a zero block (the end-of-archive
/// marker every writer puts there) and at the end of the stream; only the
/// second is an archive cut short between two members.
pub struct Tail<R> {
    inner: R,
    at_end: bool,
}

impl<R: Read> Read for Tail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at_end = n == 0 && !buf.is_empty();
        Ok(n)
    }
}

/// A tar over `stream`, to read with [`members`] and end with [`finish`].
pub fn archive<R: Read>(stream: R) -> tar::Archive<Tail<R>> {
    tar::Archive::new(Tail {
        inner: stream,
        at_end: false,
    })
}

/// How far past its end-of-archive blocks a tar stream is read. GNU tar
/// stops in the record that holds them (10 KiB by default); snap reads on so
/// that a compressed stream's own checksum, after that padding, is checked,
/// but not for ever: a stream of zeros (`/dev/zero`) has no end.
pub const TRAILING_MAX: u64 = 16 << 20;

/// After the last member: fails if the stream ended where a header was due
/// (no end-of-archive block: the archive was cut short), else reads the
/// stream to its end (at most [`TRAILING_MAX`] more bytes), so a compressed
/// stream's own checksum is checked.
pub fn finish<R: Read>(archive: tar::Archive<Tail<R>>) -> io::Result<()> {
    let mut rest = archive.into_inner();
    if rest.at_end {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends without its end-of-archive blocks: it was cut short",
        ));
    }
    io::copy(&mut (&mut rest).take(TRAILING_MAX), &mut io::sink())?;
    Ok(())
}

/// The members of a tar, one at a time.
pub struct Members<'a, R: Read + 'a> {
    entries: tar::Entries<'a, R>,
    globals: Records,
}

/// Reads the members of `archive`.
pub fn members<R: Read>(archive: &mut tar::Archive<R>) -> io::Result<Members<'_, R>> {
    Ok(Members {
        entries: archive.entries()?,
        globals: Records::default(),
    })
}

/// PAX headers larger than this are refused rather than held in memory.
const MAX_PAX: u64 = 16 << 20;

fn records_of<R: Read>(entry: &mut tar::Entry<'_, R>, into: &mut Records) -> io::Result<()> {
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            into.add(ext.key_bytes(), ext.value_bytes());
        }
    }
    Ok(())
}

impl<'a, R: Read> Iterator for Members<'a, R> {
    type Item = io::Result<Member<'a, R>>;

    /// The next member, `None` at the end of the archive.
    fn next(&mut self) -> Option<io::Result<Member<'a, R>>> {
        loop {
            let mut entry = match self.entries.next()? {
                Ok(e) => e,
                Err(e) => return Some(Err(explain(e))),
            };
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                if entry.size() > MAX_PAX {
                    return Some(Err(bad("a PAX global header is larger than 16 MiB")));
                }
                if let Err(e) = records_of(&mut entry, &mut self.globals) {
                    return Some(Err(e));
                }
                continue;
            }
            return Some(self.member(entry));
        }
    }
}

impl<'a, R: Read> Members<'a, R> {
    fn member(&self, mut entry: tar::Entry<'a, R>) -> io::Result<Member<'a, R>> {
        let mut local = Records::default();
        records_of(&mut entry, &mut local)?;
        // A key of the member's own header wins over a global one.
        let mut pax = self.globals.clone();
        pax.keys.append(&mut local.keys);
        if !local.pairs.is_empty() {
            pax.pairs = local.pairs;
        }
        let h = entry.header();
        let mut path = entry.path_bytes().into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let (what, unknown_type) = what_of(h.entry_type(), &path);
        let id = |key: &str, header: io::Result<u64>| -> io::Result<u32> {
            let v = match pax.number(key)? {
                Some(v) => v,
                None => header.unwrap_or(0),
            };
            u32::try_from(v).map_err(|_| bad(format!("{key} {v} is out of range")))
        };
        let uid = id("uid", h.uid())?;
        let gid = id("gid", h.gid())?;
        let mtime_ns = match pax.get("mtime") {
            Some(v) => pax_time(v)?,
            // Base-256 times before 1970 read as two's complement.
            None => h.mtime().unwrap_or(0) as i64 as i128 * 1_000_000_000,
        };
        let rdev = rustix::fs::makedev(
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        );
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let gnu_sparse = h.entry_type() == tar::EntryType::GNUSparse;
        if let Some(name) = pax.get("GNU.sparse.name") {
            path = name.to_vec();
        }
        let (content, size, sparse) = match sparse_map(&pax)? {
            Some(form) => {
                let (expand, real) = expand(entry, form)?;
                (Content::Sparse(expand), real, true)
            }
            None => {
                let size = entry.size();
                (Content::Plain(entry), size, gnu_sparse)
            }
        };
        Ok(Member {
            path,
            link,
            what,
            size,
            mode,
            uid,
            gid,
            mtime_ns,
            rdev,
            sparse,
            unknown_type,
            content,
        })
    }
}

/// The `tar` crate's words for an archive that stops early, in ours.
fn explain(e: io::Error) -> io::Error {
    let text = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof
        || text == "failed to read entire block"
        || text == "unexpected EOF during skip"
    {
        return io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends inside a member: it was cut short",
        );
    }
    e
}

/// The kind GNU tar extracts a member as.
fn what_of(t: tar::EntryType, path: &[u8]) -> (What, Option<u8>) {
    use tar::EntryType as T;
    let e = |k| (What::Entry(k), None);
    match t {
        T::Regular | T::Continuous if path.ends_with(b"/") => e(EntryType::Dir),
        T::Regular | T::Continuous | T::GNUSparse => e(EntryType::File),
        T::Directory => e(EntryType::Dir),
        T::Symlink => e(EntryType::Symlink),
        T::Link => e(EntryType::Hardlink),
        T::Fifo => e(EntryType::Fifo),
        T::Char => e(EntryType::Char),
        T::Block => e(EntryType::Block),
        other => match other.as_byte() {
            b'D' => e(EntryType::Dir),
            b'V' => (What::Label, None),
            b'M' => (
                What::Cannot(
                    "continues a file from the previous volume of a multi-volume archive".into(),
                ),
                None,
            ),
            b'N' => (
                What::Cannot("holds old GNU long names (type N), which GNU tar refuses too".into()),
                None,
            ),
            b'x' | b'g' | b'L' | b'K' => (
                What::Cannot("an extension header with no member after it".into()),
                None,
            ),
            byte => (What::Entry(EntryType::File), Some(byte)),
        },
    }
}

/// Where a PAX sparse file's map is.
enum Form {
    /// Versions 0.0 and 0.1: the map is in the records.
    InRecords { real: u64, map: Vec<(u64, u64)> },
    /// Version 1.0: the map leads the member's data.
    InData { real: u64 },
}

fn sparse_map(pax: &Records) -> io::Result<Option<Form>> {
    let major = pax.get("GNU.sparse.major");
    if let Some(major) = major {
        let minor = pax.get("GNU.sparse.minor").unwrap_or(b"");
        if major != b"1" || minor != b"0" {
            return Err(bad(format!(
                "PAX sparse format {}.{} is unknown",
                String::from_utf8_lossy(major),
                String::from_utf8_lossy(minor)
            )));
        }
        let real = pax
            .number("GNU.sparse.realsize")?
            .ok_or_else(|| bad("a PAX sparse 1.0 member has no GNU.sparse.realsize"))?;
        return Ok(Some(Form::InData { real }));
    }
    let Some(real) = pax.number("GNU.sparse.size")? else {
        return Ok(None);
    };
    let numbers: Vec<u64> = match pax.get("GNU.sparse.map") {
        Some(list) => list
            .split(|&b| b == b',')
            .map(|n| decimal("GNU.sparse.map", n))
            .collect::<io::Result<_>>()?,
        None => {
            let want = [b"GNU.sparse.offset".as_slice(), b"GNU.sparse.numbytes"];
            let mut out = Vec::new();
            for (i, (k, v)) in pax.pairs.iter().enumerate() {
                if k != want[i % 2] {
                    return Err(bad("PAX sparse 0.0 offsets and sizes are out of order"));
                }
                out.push(decimal("GNU.sparse.offset", v)?);
            }
            out
        }
    };
    if numbers.len() % 2 != 0 {
        return Err(bad("a PAX sparse map has an offset without a size"));
    }
    if let Some(n) = pax.number("GNU.sparse.numblocks")?
        && n != numbers.len() as u64 / 2
    {
        return Err(bad(
            "a PAX sparse map's GNU.sparse.numblocks does not match it",
        ));
    }
    let map = numbers.chunks(2).map(|p| (p[0], p[1])).collect();
    Ok(Some(Form::InRecords { real, map }))
}

/// A sparse file's real content from its stored segments: zeros between them.
struct Expand<R> {
    inner: R,
    map: Vec<(u64, u64)>,
    /// The segment at or after `pos`.
    next: usize,
    pos: u64,
    real: u64,
}

const BLOCK: u64 = 512;

/// A sparse member's reader: its map read (from the data, for 1.0) and checked
/// against the stored size. Returns it with the real size.
fn expand<'a, R: Read>(
    mut inner: tar::Entry<'a, R>,
    form: Form,
) -> io::Result<(Expand<tar::Entry<'a, R>>, u64)> {
    {
        let stored = inner.size();
        let (real, map, lead) = match form {
            Form::InRecords { real, map } => (real, map, 0),
            Form::InData { real } => {
                let (map, lead) = map_from_data(&mut inner, stored)?;
                (real, map, lead)
            }
        };
        check_map(&map, real, stored - lead)?;
        let e = Expand {
            inner,
            map,
            next: 0,
            pos: 0,
            real,
        };
        Ok((e, real))
    }
}

/// Segments in order, inside the file, holding exactly the stored bytes.
fn check_map(map: &[(u64, u64)], real: u64, stored: u64) -> io::Result<()> {
    let mut end = 0u64;
    let mut sum = 0u64;
    for &(off, len) in map {
        let stop = off
            .checked_add(len)
            .ok_or_else(|| bad("a sparse map segment overflows"))?;
        if off < end || stop > real {
            return Err(bad("a sparse map's segments overlap or leave the file"));
        }
        end = stop;
        sum += len;
    }
    if sum != stored {
        return Err(bad(format!(
            "a sparse map lists {sum} bytes but the member stores {stored}"
        )));
    }
    Ok(())
}

/// The 1.0 map: decimal lines (count, then offset and size pairs), padded to
/// a block. Returns it and the bytes it took.
fn map_from_data(r: &mut impl Read, stored: u64) -> io::Result<(Vec<(u64, u64)>, u64)> {
    let mut text: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut line = |text: &mut Vec<u8>, r: &mut dyn Read| -> io::Result<u64> {
        loop {
            if let Some(nl) = text[at..].iter().position(|&b| b == b'\n') {
                let n = decimal("the sparse map", &text[at..at + nl])?;
                at += nl + 1;
                return Ok(n);
            }
            if text.len() as u64 + BLOCK > stored.min(MAX_PAX) {
                return Err(bad("a PAX sparse 1.0 map is cut off or too large"));
            }
            let mut block = [0u8; BLOCK as usize];
            r.read_exact(&mut block).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the archive ends inside a sparse map: it was cut short",
                )
            })?;
            text.extend_from_slice(&block);
        }
    };
    let count = line(&mut text, r)?;
    if count > stored / 4 + 1 {
        return Err(bad(
            "a PAX sparse 1.0 map counts more segments than it can hold",
        ));
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let off = line(&mut text, r)?;
        let len = line(&mut text, r)?;
        map.push((off, len));
    }
    Ok((map, text.len() as u64))
}

impl<R: Read> Read for Expand<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos < self.real && !buf.is_empty() {
            let (hole_end, seg_end) = match self.map.get(self.next) {
                Some(&(off, len)) if self.pos >= off + len => {
                    self.next += 1;
                    continue;
                }
                Some(&(off, len)) => (off, off + len),
                None => (self.real, self.real),
            };
            let (n, data) = if self.pos < hole_end {
                ((hole_end - self.pos).min(buf.len() as u64) as usize, false)
            } else {
                ((seg_end - self.pos).min(buf.len() as u64) as usize, true)
            };
            let n = if data {
                let got = self.inner.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the sparse file's data ended early",
                    ));
                }
                got
            } else {
                buf[..n].fill(0);
                n
            };
            self.pos += n as u64;
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PAX times: fractions to the nanosecond, and before 1970.
    #[test]
    fn pax_times() {
        assert_eq!(
            pax_time(b"1700000000.123456789").unwrap(),
            1_700_000_000_123_456_789
        );
        assert_eq!(pax_time(b"5.5").unwrap(), 5_500_000_000);
        assert_eq!(pax_time(b"-1.5").unwrap(), -1_500_000_000);
        assert_eq!(pax_time(b"7.1234567891").unwrap(), 7_123_456_789);
        assert!(pax_time(b"1e9").is_err());
        assert!(pax_time(b"").is_err());
        assert_eq!(
            pax_time(b"10413792000").unwrap(),
            10_413_792_000_000_000_000
        );
        assert!(pax_time(b"999999999999999999999999999999999999999").is_err());
    }

    /// A sparse map must lie inside the file, in order, and hold what is stored.
    #[test]
    fn sparse_maps_are_checked() {
        assert!(check_map(&[(10, 5), (20, 5)], 30, 10).is_ok());
        assert!(check_map(&[(10, 5), (12, 5)], 30, 10).is_err());
        assert!(check_map(&[(10, 25)], 30, 25).is_err());
        assert!(check_map(&[(10, 5)], 30, 6).is_err());
        assert!(check_map(&[(u64::MAX, 5)], 30, 5).is_err());
    }

    /// The 1.0 map is read from the data, a block at a time.
    #[test]
    fn map_in_data() {
        let mut data = b"2\n0\n3\n100\n4\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"abcdefg");
        let mut r = &data[..];
        let (map, lead) = map_from_data(&mut r, data.len() as u64).unwrap();
        assert_eq!(map, vec![(0, 3), (100, 4)]);
        assert_eq!(lead, 512);
        let mut cut = &b"2\n0\n3"[..];
        assert!(map_from_data(&mut cut, 512).is_err());
    }
}
