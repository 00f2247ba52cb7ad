//! PAX extended header records, read by their length as POSIX says:
//! `LENGTH KEY=VALUE\n`, where LENGTH counts the whole record. A value may
//! hold newlines and any byte (GNU tar's `SCHILY.acl.access` text, binary
//! `SCHILY.xattr.*` values); splitting at newlines would break them.

use std::collections::BTreeMap;
use std::io;

fn bad(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Records, later ones replacing earlier ones of the same key (except the
/// repeated pairs of sparse 0.0, kept in order apart).
#[derive(Debug, Default, Clone)]
pub struct Records {
    pub keys: BTreeMap<Vec<u8>, Vec<u8>>,
    /// `GNU.sparse.offset` and `GNU.sparse.numbytes` values, in order (sparse 0.0).
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Records {
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        if key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes" {
            self.pairs.push((key.to_vec(), value.to_vec()));
        } else {
            self.keys.insert(key.to_vec(), value.to_vec());
        }
    }

    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.keys.get(key.as_bytes()).map(Vec::as_slice)
    }

    /// A decimal record (`size`, `uid`…), if there.
    pub fn number(&self, key: &str) -> io::Result<Option<u64>> {
        self.get(key).map(|v| decimal(key, v)).transpose()
    }

    /// Adds every record of an extended header's data. A record whose
    /// length is not a number, runs past the data, does not end in a
    /// newline or has no `=` is refused, as GNU tar and bsdtar refuse it.
    /// NULs after the last record are padding.
    pub fn parse(&mut self, data: &[u8]) -> io::Result<()> {
        let mut at = 0;
        while at < data.len() {
            if data[at..].iter().all(|&b| b == 0) {
                break;
            }
            let rest = &data[at..];
            let space = rest
                .iter()
                .take(20)
                .position(|&b| b == b' ')
                .ok_or_else(|| bad("a PAX record has no length"))?;
            let len = std::str::from_utf8(&rest[..space])
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| bad("a PAX record's length is not a number"))?;
            if len <= space + 1 || len > rest.len() {
                return Err(bad("a PAX record's length runs past its header"));
            }
            if rest[len - 1] != b'\n' {
                return Err(bad("a PAX record does not end where its length says"));
            }
            let body = &rest[space + 1..len - 1];
            let eq = body.iter().position(|&b| b == b'=').ok_or_else(|| {
                bad(format!(
                    "a PAX record has no '=': {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(60)])
                ))
            })?;
            self.add(&body[..eq], &body[eq + 1..]);
            at += len;
        }
        Ok(())
    }
}

pub fn decimal(key: &str, v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| bad(format!("PAX record {key} is not a number")))
}

/// A PAX time (`[-]SECONDS[.FRACTION]`) in nanoseconds, read as GNU tar
/// reads it: the longest leading part that is a time, and whether bytes
/// followed it (GNU tar takes `1234.5x` as 1234.5). `None` when no time
/// leads the value at all, or it is out of range.
pub fn time(v: &[u8]) -> Option<(i128, bool)> {
    let (neg, rest) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let digits = |t: &[u8]| t.iter().take_while(|b| b.is_ascii_digit()).count();
    let whole = digits(rest);
    if whole == 0 {
        return None;
    }
    let secs: i128 = std::str::from_utf8(&rest[..whole]).ok()?.parse().ok()?;
    let mut end = whole;
    let mut nanos: i128 = 0;
    if rest.get(whole) == Some(&b'.') {
        let frac = &rest[whole + 1..];
        let n = digits(frac);
        let kept = std::str::from_utf8(&frac[..n.min(9)]).expect("digits");
        nanos = format!("{kept:0<9}").parse().expect("nine digits");
        end = whole + 1 + n;
    }
    let total = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some((if neg { -total } else { total }, end < rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use snap_shared::pax::record;

    /// A value holding newlines and binary bytes is read by its length.
    #[test]
    fn values_by_length() {
        let acl = b"user::rw-\ngroup::r--\nother::r--\n";
        let mut data = record("SCHILY.acl.access", acl);
        data.extend(record("SCHILY.xattr.a", b"\x00\n"));
        let mut r = Records::default();
        r.parse(&data).unwrap();
        assert_eq!(r.get("SCHILY.acl.access").unwrap(), acl);
        assert_eq!(r.get("SCHILY.xattr.a").unwrap(), b"\x00\n");
    }

    /// A record without `=`, past its data, or not ending in a newline.
    #[test]
    fn malformed_records_are_refused() {
        for bad in [
            &b"12 path_abc\n"[..],
            b"30 path=abc\n",
            b"11 path=ab\0",
            b"x path=a\n",
        ] {
            assert!(Records::default().parse(bad).is_err(), "{bad:?}");
        }
        let mut r = Records::default();
        r.parse(b"11 path=ab\n\0\0\0").unwrap();
        assert_eq!(r.get("path").unwrap(), b"ab");
    }

    /// PAX times: fractions to the nanosecond, before 1970, and what GNU
    /// tar makes of trailing junk (the time before it) and of no time.
    #[test]
    fn times() {
        assert_eq!(
            time(b"1700000000.123456789"),
            Some((1_700_000_000_123_456_789, false))
        );
        assert_eq!(time(b"-1.5"), Some((-1_500_000_000, false)));
        assert_eq!(time(b"7.1234567891"), Some((7_123_456_789, false)));
        assert_eq!(time(b"1234.5x"), Some((1_234_500_000_000, true)));
        assert_eq!(time(b"1e9"), Some((1_000_000_000, true)));
        assert_eq!(time(b"abc"), None);
        assert_eq!(time(b""), None);
        assert_eq!(time(b"999999999999999999999999999999999999999"), None);
    }
}
