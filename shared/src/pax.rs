//! PAX extended header records as POSIX spells them: `LENGTH KEY=VALUE\n`,
//! where LENGTH counts the whole record, its own digits included. snap-pack
//! writes them for attributes; the tests that make odd archives by hand
//! write them too.

/// One record.
pub fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length counts itself, across a change in its number of digits.
    #[test]
    fn lengths_count_themselves() {
        assert_eq!(record("path", b"a"), b"9 path=a\n");
        for n in 0..200 {
            let r = record("k", &vec![b'x'; n]);
            let len: usize = std::str::from_utf8(&r[..r.iter().position(|&b| b == b' ').unwrap()])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, r.len());
        }
    }
}
