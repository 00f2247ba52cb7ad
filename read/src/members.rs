//! The members of any tar, as GNU tar extracts them.
//!
//! [`crate::tarfmt`] reads the headers and the extension headers before
//! them. What is decided here, so that every reader of tars (restore,
//! import, verify, cat) sees the same members:
//! - PAX `mtime`, to the nanosecond and before 1970, and `uid`, `gid`,
//!   `uname`, `gname` over the header's;
//! - sparse files: old GNU (type `S`) and PAX sparse in the three versions
//!   GNU tar writes (0.0, 0.1 and 1.0, which is also what bsdtar writes),
//!   read as their real content under their real name, not as
//!   `GNUSparseFile.0/NAME` holding a sparse map;
//! - the types GNU tar gives to what a header says: a regular member whose
//!   name ends in `/` is a folder (v7 and old BSD tars), `D` (a folder of an
//!   incremental dump) is a folder, `V` (a volume label) is no file at all,
//!   an unknown type is a regular file ("extracted as normal file"), and `M`
//!   (a multi-volume continuation) and `N` (old GNU long names) cannot be
//!   restored from this archive alone;
//! - extended attributes and ACLs: GNU tar's and star's `SCHILY.xattr.NAME`
//!   (the value as it is), libarchive's `LIBARCHIVE.xattr.NAME` (the name
//!   URL-encoded, the value base64), `SCHILY.acl.access` and
//!   `SCHILY.acl.default` (ACL text), and a Solaris `A` header's POSIX ACL.
//!
//! A member's [`Read`] gives its real content: holes of sparse files come as
//! zeros, which the restore target turns back into holes.

use std::io::{self, Read};

use base64::Engine;

use snap_shared::index::Entry;
use snap_shared::index::EntryType;

use crate::refused::Refused;
use crate::tarfmt::pax::{self, Records, decimal};
use crate::tarfmt::{Archive, Data, Raw};

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
    /// Owner names, where the archive has them.
    pub user: Vec<u8>,
    pub group: Vec<u8>,
    /// Nanoseconds since 1970 (tars reach past the year 2262 of an i64).
    pub mtime_ns: i128,
    pub rdev: u64,
    /// Stored as a sparse file (old GNU or PAX).
    pub sparse: bool,
    /// An unknown type byte, restored as a regular file.
    pub unknown_type: Option<u8>,
    /// Extended attributes by name (without the ACLs).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// ACLs in their text form (`user::rw-,group::r--,…`), access and default.
    pub acl_access: Option<Vec<u8>>,
    pub acl_default: Option<Vec<u8>>,
    /// An NFSv4 ACL's text (`SCHILY.acl.ace`), which Linux cannot apply.
    pub acl_nfs4: Option<Vec<u8>>,
    /// A Solaris `A` header's data: an octal type, a NUL, the ACL text.
    pub solaris_acl: Option<Vec<u8>>,
    /// What the archive says that GNU tar warns about and extracts anyway.
    pub warnings: Vec<String>,
    content: Content<'a, R>,
}

enum Content<'a, R: Read + 'a> {
    Plain(Data<'a, R>),
    Sparse(Expand<Data<'a, R>>),
}

impl<R: Read> Read for Member<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.content {
            Content::Plain(e) => e.read(buf),
            Content::Sparse(e) => e.read(buf),
        }
    }
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A tar over `stream`, to read with [`members`] and end with [`finish`].
pub fn archive<R: Read>(stream: R) -> Archive<R> {
    Archive::new(stream)
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
pub fn finish<R: Read>(archive: Archive<R>) -> io::Result<()> {
    if archive.cut_short() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the archive ends without its end-of-archive blocks: it was cut short",
        ));
    }
    let mut rest = archive.into_inner();
    io::copy(&mut (&mut rest).take(TRAILING_MAX), &mut io::sink())?;
    Ok(())
}

/// The members of a tar, one at a time.
pub struct Members<'a, R: Read + 'a> {
    archive: &'a Archive<R>,
}

/// Reads the members of `archive`.
pub fn members<R: Read>(archive: &mut Archive<R>) -> io::Result<Members<'_, R>> {
    Ok(Members { archive })
}

impl<'a, R: Read> Iterator for Members<'a, R> {
    type Item = io::Result<Member<'a, R>>;

    /// The next member, `None` at the end of the archive.
    fn next(&mut self) -> Option<io::Result<Member<'a, R>>> {
        match self.archive.next_raw() {
            Ok(Some((raw, data))) => Some(member(raw, data)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

fn member<'a, R: Read>(raw: Raw, data: Data<'a, R>) -> io::Result<Member<'a, R>> {
    let Raw {
        header: h,
        pax,
        mut name,
        link,
        solaris_acl,
        data_len,
    } = raw;
    let (mut what, unknown_type) = what_of(h.kind, &name);
    let id = |key: &str, header: u64| -> io::Result<u32> {
        let v = pax.number(key)?.unwrap_or(header);
        u32::try_from(v).map_err(|_| bad(format!("{key} {v} is out of range")))
    };
    let uid = id("uid", h.uid)?;
    let gid = id("gid", h.gid)?;
    let mut warnings = Vec::new();
    let mut no_time = None;
    let header_time = h.mtime * 1_000_000_000;
    let mtime_ns = match pax.get("mtime") {
        Some(v) => match pax::time(v) {
            Some((t, junk)) => {
                if junk {
                    warnings.push(format!(
                        "its PAX mtime {:?} has bytes after the time; {} is used, as GNU tar does",
                        String::from_utf8_lossy(v),
                        seconds(t)
                    ));
                }
                t
            }
            None => {
                no_time = Some(format!(
                    "has a PAX mtime {:?} that is not a time (GNU tar extracts it with the header's time and fails)",
                    String::from_utf8_lossy(v)
                ));
                header_time
            }
        },
        None => header_time,
    };
    if let Some(why) = no_time {
        what = What::Cannot(why);
    }
    let device =
        |key: &str, header: u64| -> io::Result<u64> { Ok(pax.number(key)?.unwrap_or(header)) };
    let rdev = rustix::fs::makedev(
        device("SCHILY.devmajor", h.devmajor)? as u32,
        device("SCHILY.devminor", h.devminor)? as u32,
    );
    let owner = |key: &str, header: &[u8]| pax.get(key).unwrap_or(header).to_vec();
    let user = owner("uname", &h.uname);
    let group = owner("gname", &h.gname);
    let xattrs = xattrs_of(&pax)?;
    let text = |key: &str| pax.get(key).map(<[u8]>::to_vec);
    let (acl_access, acl_default) = (text("SCHILY.acl.access"), text("SCHILY.acl.default"));
    let acl_nfs4 = text("SCHILY.acl.ace");
    if let Some(real) = pax.get("GNU.sparse.name") {
        name = crate::tarfmt::header::cut(real).to_vec();
    }
    let form = match &h.sparse {
        Some(s) => Some(Form::InRecords {
            real: s.real,
            map: s.map.clone(),
        }),
        None => sparse_map(&pax)?,
    };
    let (content, size, sparse) = match form {
        Some(form) => {
            let (expand, real) = expand(data, data_len, form)?;
            (Content::Sparse(expand), real, true)
        }
        None => (Content::Plain(data), data_len, false),
    };
    Ok(Member {
        path: name,
        link,
        what,
        size,
        mode: h.mode,
        uid,
        gid,
        user,
        group,
        mtime_ns,
        rdev,
        sparse,
        unknown_type,
        xattrs,
        acl_access,
        acl_default,
        acl_nfs4,
        solaris_acl,
        warnings,
        content,
    })
}

/// Nanoseconds since 1970 as `SECONDS.FRACTION`.
fn seconds(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    format!("{sign}{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// Extended attributes from a member's PAX records, by name.
fn xattrs_of(pax: &Records) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut xattrs = Vec::new();
    for (key, value) in &pax.keys {
        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            xattrs.push((name.to_vec(), value.clone()));
        } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
            let name = url_decode(name).ok_or_else(|| {
                bad(format!(
                    "PAX record {} has a name that is not URL-encoded",
                    String::from_utf8_lossy(key)
                ))
            })?;
            let value = LENIENT.decode(value.trim_ascii_end()).map_err(|_| {
                bad(format!(
                    "PAX record {} is not base64",
                    String::from_utf8_lossy(key)
                ))
            })?;
            xattrs.push((name, value));
        }
    }
    // libarchive writes both forms of one attribute: one value per name.
    xattrs.sort();
    xattrs.dedup_by(|a, b| a.0 == b.0);
    Ok(xattrs)
}

/// Base64 with or without its `=` padding (libarchive writes it without).
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// `%XX` escapes decoded (libarchive encodes `%`, `=` and bytes outside
/// printable ASCII in xattr names).
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The kind GNU tar extracts a member as.
fn what_of(kind: u8, path: &[u8]) -> (What, Option<u8>) {
    let e = |k| (What::Entry(k), None);
    match kind {
        b'0' | b'7' if path.ends_with(b"/") => e(EntryType::Dir),
        b'0' | b'7' | b'S' => e(EntryType::File),
        b'5' | b'D' => e(EntryType::Dir),
        b'2' => e(EntryType::Symlink),
        b'1' => e(EntryType::Hardlink),
        b'6' => e(EntryType::Fifo),
        b'3' => e(EntryType::Char),
        b'4' => e(EntryType::Block),
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
        byte => (What::Entry(EntryType::File), Some(byte)),
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
    mut inner: Data<'a, R>,
    stored: u64,
    form: Form,
) -> io::Result<(Expand<Data<'a, R>>, u64)> {
    {
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
    // More stored than the map lists is left unread, as GNU tar leaves it
    // (libarchive's test_read_format_gtar_sparse_skip_entry stores a byte
    // past its map); less is a map that lies.
    if sum > stored {
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
            // A number has at most 20 digits: a longer line is no map (and
            // searching it again for each block would take quadratic time).
            if text.len() - at > 24 {
                return Err(bad(
                    "a PAX sparse 1.0 map holds a line that is not a number",
                ));
            }
            if text.len() as u64 + BLOCK > stored.min(crate::tarfmt::MAX_EXTENSION) {
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

/// A read error inside a member, naming it.
pub fn member_error(rel: &[u8], e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", show(rel)))
}

/// A tar member as an index entry (no sha256 yet) at `rel`, its name already
/// made safe: type, metadata, size, and symlink target, hard link (made safe
/// too) or device. `Ok(None)`: nothing to restore (a volume label); `Err`: a
/// member that cannot be restored, or a hard link whose first name leaves
/// the target.
pub fn entry_of<R: Read>(
    m: &Member<'_, R>,
    rel: Vec<u8>,
    stripped: &mut bool,
) -> std::result::Result<Option<Entry>, Refused> {
    let kind = match &m.what {
        What::Entry(kind) => *kind,
        What::Label => return Ok(None),
        What::Cannot(why) => return Err(Refused::Cannot(why.clone())),
    };
    // Attributes are set by the caller (of_member in attrs.rs), which
    // reports what cannot be kept.
    let mut e = Entry {
        size: if kind == EntryType::File { m.size } else { 0 },
        mode: m.mode,
        // An index holds i64 nanoseconds: years past 2262 stop there.
        mtime: m.mtime_ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        uid: m.uid,
        gid: m.gid,
        user: (!m.user.is_empty())
            .then(|| String::from_utf8(m.user.clone()).ok())
            .flatten(),
        group: (!m.group.is_empty())
            .then(|| String::from_utf8(m.group.clone()).ok())
            .flatten(),
        ..Entry::new(rel, kind)
    };
    match kind {
        EntryType::Symlink => e.target = Some(m.link.clone()),
        EntryType::Hardlink => match sanitize(&m.link, stripped) {
            Ok(Some(first)) => e.link = Some(first),
            Ok(None) | Err(_) => {
                return Err(Refused::Escape(format!(
                    "hard link to {} leaves the target",
                    show(&m.link)
                )));
            }
        },
        EntryType::Char | EntryType::Block => e.rdev = Some(m.rdev),
        EntryType::File | EntryType::Dir | EntryType::Fifo => {}
    }
    Ok(Some(e))
}

/// A tar member name as a path inside the target: leading `/` and `.`
/// components dropped (as GNU tar does), `..` refused. `None`: the root itself.
pub fn sanitize(raw: &[u8], stripped: &mut bool) -> std::result::Result<Option<Vec<u8>>, String> {
    if raw.first() == Some(&b'/') {
        *stripped = true;
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in raw.split(|&c| c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(format!("{} has a `..` component", show(raw))),
            c => out.push(c),
        }
    }
    Ok((!out.is_empty()).then(|| out.join(&b'/')))
}

pub fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse map must lie inside the file, in order, and list no more than is stored.
    #[test]
    fn sparse_maps_are_checked() {
        assert!(check_map(&[(10, 5), (20, 5)], 30, 10).is_ok());
        assert!(check_map(&[(10, 5), (12, 5)], 30, 10).is_err());
        assert!(check_map(&[(10, 25)], 30, 25).is_err());
        assert!(check_map(&[(10, 5)], 30, 4).is_err());
        assert!(
            check_map(&[(10, 5)], 30, 6).is_ok(),
            "a byte past the map is left"
        );
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

    /// Leading slashes and `.` go, `..` is refused, the root alone is nothing.
    #[test]
    fn sanitize_keeps_paths_inside() {
        let mut s = false;
        assert_eq!(
            sanitize(b"/etc/passwd", &mut s).unwrap().unwrap(),
            b"etc/passwd"
        );
        assert!(s);
        assert_eq!(sanitize(b"./a//b/.", &mut s).unwrap().unwrap(), b"a/b");
        assert!(sanitize(b"a/../../x", &mut s).is_err());
        assert_eq!(sanitize(b"./", &mut s).unwrap(), None);
    }
}
