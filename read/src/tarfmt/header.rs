//! One 512-byte tar header, read as GNU tar reads it.
//!
//! The fields of v7, ustar (POSIX), GNU and star headers: names cut at their
//! first NUL, numbers in octal (one leading NUL and leading spaces skipped,
//! as GNU tar does for writers whose previous field overflowed) or in
//! base-256, the checksum summed both unsigned and signed (old Sun tars),
//! and the old GNU sparse map the header carries.

use std::io;

pub const BLOCK: usize = 512;

/// Which family wrote the header: it says where the name's prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// No magic: names are the 100-byte field only.
    V7,
    /// `ustar\0` `00`: a 155-byte prefix before the name.
    Ustar,
    /// `ustar\0` with `tar\0` at the end: a 131-byte prefix (then times).
    Star,
    /// `ustar  \0`: no prefix (the space holds times and the sparse map).
    Gnu,
}

/// A parsed header.
#[derive(Debug, Clone)]
pub struct Header {
    pub family: Family,
    /// The type byte, `\0` read as `0` (a regular file).
    pub kind: u8,
    /// The name with its ustar or star prefix.
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// The size field: bytes of data after the header (for most types).
    pub size: u64,
    /// Seconds since 1970, negative before.
    pub mtime: i128,
    pub uname: Vec<u8>,
    pub gname: Vec<u8>,
    pub devmajor: u64,
    pub devminor: u64,
    /// Old GNU sparse files (type `S`): the map in the header, whether
    /// extension blocks follow, and the real size.
    pub sparse: Option<OldSparse>,
}

/// The part of an old GNU sparse map a header or extension block holds.
#[derive(Debug, Clone, Default)]
pub struct OldSparse {
    pub map: Vec<(u64, u64)>,
    pub extended: bool,
    pub real: u64,
}

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A field up to its first NUL.
pub fn cut(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(i) => &field[..i],
        None => field,
    }
}

/// A numeric field: octal or base-256, as GNU tar's `from_header` reads it.
/// `what` names the field in the error.
pub fn number(field: &[u8], what: &str) -> io::Result<i128> {
    if let Some(&first) = field.first()
        && first & 0x80 != 0
    {
        return Ok(base256(field));
    }
    let mut at = usize::from(field.first() == Some(&0));
    while at < field.len() && field[at].is_ascii_whitespace() {
        at += 1;
    }
    if at == field.len() {
        return Err(bad(format!(
            "a header's {what} is blank where a number is expected"
        )));
    }
    let mut value: i128 = 0;
    while at < field.len() && (b'0'..=b'7').contains(&field[at]) {
        value = value * 8 + i128::from(field[at] - b'0');
        at += 1;
    }
    if at < field.len() && field[at] != 0 && !field[at].is_ascii_whitespace() {
        return Err(bad(format!(
            "a header's {what} holds {:?} where a number is expected",
            String::from_utf8_lossy(cut(field))
        )));
    }
    Ok(value)
}

/// GNU's base-256: the top bit marks it, the next one is the sign, and the
/// rest is a big-endian two's complement number.
fn base256(field: &[u8]) -> i128 {
    let negative = field[0] & 0x40 != 0;
    let mut value: i128 = i128::from(field[0] & 0x3f);
    if negative {
        value -= 0x40;
    }
    for &b in &field[1..] {
        value = value.wrapping_mul(256).wrapping_add(i128::from(b));
    }
    value
}

fn unsigned(field: &[u8], what: &str) -> io::Result<u64> {
    let v = number(field, what)?;
    u64::try_from(v).map_err(|_| bad(format!("a header's {what} {v} is out of range")))
}

/// Whether a block is all zeros (an end-of-archive marker).
pub fn is_zero(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Checks the checksum and reads the fields of a header block that is not
/// all zeros.
pub fn parse(block: &[u8; BLOCK]) -> io::Result<Header> {
    let recorded = number(&block[148..156], "checksum")
        .map_err(|_| bad("a header's checksum is not a number: this is not a tar header"))?;
    let (mut plain, mut signed): (i128, i128) = (0, 0);
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        plain += i128::from(b);
        signed += i128::from(b as i8);
    }
    if recorded != plain && recorded != signed {
        return Err(bad(
            "a header's checksum does not match: the archive is damaged or this is not a tar",
        ));
    }
    let family = match (&block[257..263], &block[263..265]) {
        (b"ustar ", b" \0") => Family::Gnu,
        (b"ustar\0", _) if &block[508..512] == b"tar\0" => Family::Star,
        (b"ustar\0", _) => Family::Ustar,
        _ => Family::V7,
    };
    let kind = match block[156] {
        0 => b'0',
        k => k,
    };
    let mut name = cut(&block[..100]).to_vec();
    let prefix = match family {
        Family::Ustar => cut(&block[345..500]),
        Family::Star => cut(&block[345..476]),
        Family::Gnu | Family::V7 => &[][..],
    };
    if !prefix.is_empty() {
        let mut full = prefix.to_vec();
        full.push(b'/');
        full.extend_from_slice(&name);
        name = full;
    }
    let named = family != Family::V7;
    let devices = named && matches!(kind, b'3' | b'4');
    let sparse = match (family, kind) {
        (Family::Gnu, b'S') => Some(old_sparse(block)?),
        _ => None,
    };
    Ok(Header {
        family,
        kind,
        name,
        link: cut(&block[157..257]).to_vec(),
        mode: (number(&block[100..108], "mode")? & 0o7777) as u32,
        uid: unsigned(&block[108..116], "uid")?,
        gid: unsigned(&block[116..124], "gid")?,
        size: unsigned(&block[124..136], "size")?,
        mtime: number(&block[136..148], "mtime")?,
        uname: if named {
            cut(&block[265..297]).to_vec()
        } else {
            Vec::new()
        },
        gname: if named {
            cut(&block[297..329]).to_vec()
        } else {
            Vec::new()
        },
        devmajor: if devices {
            unsigned(&block[329..337], "devmajor")?
        } else {
            0
        },
        devminor: if devices {
            unsigned(&block[337..345], "devminor")?
        } else {
            0
        },
        sparse,
    })
}

/// Reads `count` map entries of 24 bytes from `at`, stopping at an empty one.
fn sparse_entries(block: &[u8], count: usize) -> io::Result<Vec<(u64, u64)>> {
    let mut map = Vec::new();
    for i in 0..count {
        let e = &block[i * 24..i * 24 + 24];
        if e[0] == 0 {
            break;
        }
        map.push((
            unsigned(&e[..12], "sparse offset")?,
            unsigned(&e[12..], "sparse size")?,
        ));
    }
    Ok(map)
}

/// The old GNU sparse map in a header: four entries, the extension flag and
/// the real size.
fn old_sparse(block: &[u8; BLOCK]) -> io::Result<OldSparse> {
    Ok(OldSparse {
        map: sparse_entries(&block[386..482], 4)?,
        extended: block[482] != 0,
        real: unsigned(&block[483..495], "sparse real size")?,
    })
}

/// One old GNU sparse extension block: 21 entries and the flag for another.
pub fn sparse_extension(block: &[u8; BLOCK]) -> io::Result<(Vec<(u64, u64)>, bool)> {
    Ok((sparse_entries(&block[..504], 21)?, block[504] != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Octal with leading spaces or one leading NUL, base-256 both signs,
    /// and text where a number belongs refused.
    #[test]
    fn numbers_as_gnu_tar_reads_them() {
        assert_eq!(number(b"0000644\0", "mode").unwrap(), 0o644);
        assert_eq!(number(b"   644 \0", "mode").unwrap(), 0o644);
        assert_eq!(number(b"\x0000000000012", "size").unwrap(), 0o12);
        assert_eq!(number(b"\0\0\0\0\0\0\0\0", "uid").unwrap(), 0);
        assert!(number(b"        ", "uid").is_err());
        assert!(number(b"12x4567\0", "mode").is_err());
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 5;
        big[10] = 1;
        assert_eq!(number(&big, "size").unwrap(), 261);
        assert_eq!(number(&[0xff; 12], "mtime").unwrap(), -1);
    }
}
