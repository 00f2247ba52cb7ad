//! SHA-256 digests as the index and the records write them (lowercase hex).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

/// 128 random bits from /dev/urandom, as hex: a secret for one run (a
/// web session's token, a helper server's password).
pub fn random_token() -> crate::error::Result<String> {
    let ctx = |e| crate::error::Error::io_ctx("/dev/urandom", e);
    let mut b = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(ctx)?,
        &mut b,
    )
    .map_err(ctx)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Size and sha256 of everything `f` reads, through `buf`.
pub fn hash_read(
    mut f: impl std::io::Read,
    buf: &mut [u8],
) -> std::io::Result<(u64, Sha256Digest)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, Sha256Digest::from_hasher(hasher)))
}

impl Sha256Digest {
    /// The digest of `data`, in one call.
    pub fn of(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    /// Finishes a running hasher.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Sha256Digest(hasher.finalize().into())
    }

    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(DIGITS[(b >> 4) as usize] as char);
            out.push(DIGITS[(b & 15) as usize] as char);
        }
        out
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(format!("sha256 {s:?} is not 64 hex digits"));
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(h), Some(l)) => out[i] = h << 4 | l,
                _ => return Err(format!("sha256 {s:?} is not lowercase hex")),
            }
        }
        Ok(Sha256Digest(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest of "abc" is the FIPS 180-2 test vector and round-trips through hex.
    #[test]
    fn known_vector_round_trips() {
        let d = Sha256Digest::of(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(d.to_hex(), hex);
        assert_eq!(hex.parse::<Sha256Digest>().unwrap(), d);
        assert!("BA78".parse::<Sha256Digest>().is_err());
        assert!(hex.to_uppercase().parse::<Sha256Digest>().is_err());
    }
}
