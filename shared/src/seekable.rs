//! The zstd seekable format's seek table (facebook/zstd
//! contrib/seekable_format): a skippable frame at the end of a stream of
//! independent zstd frames listing each frame's compressed and decompressed
//! size, so a reader can find and decode any frame alone. snap-pack writes
//! it; snap-restore reads it to fetch only the frames it needs.

/// The skippable frame's magic (the seekable format's variant, 0x184D2A5E).
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// The seek table footer's magic.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// One frame: its compressed size and the tar bytes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub compressed: u32,
    pub tar: u32,
}

/// The seek table as a skippable frame: per frame its compressed and
/// decompressed size, then the footer (count, descriptor with no
/// checksums: each frame carries its own, and the index has every file's
/// sha256), the seekable magic.
pub fn seek_table(frames: &[Frame]) -> Vec<u8> {
    let body = frames.len() * 8 + 9;
    let mut t = Vec::with_capacity(8 + body);
    t.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    t.extend_from_slice(&(body as u32).to_le_bytes());
    for f in frames {
        t.extend_from_slice(&f.compressed.to_le_bytes());
        t.extend_from_slice(&f.tar.to_le_bytes());
    }
    t.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    t.push(0);
    t.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    t
}

/// The whole seek table's size, from the last 9 bytes of a stream (its
/// footer); `None` when they are not a seekable footer.
pub fn table_size(footer: &[u8]) -> Option<u64> {
    let n = footer.len();
    if n < 9 || u32::from_le_bytes(footer[n - 4..].try_into().ok()?) != SEEKABLE_MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(footer[n - 9..n - 5].try_into().ok()?) as u64;
    let width = if footer[n - 5] & 0x80 != 0 { 12 } else { 8 };
    Some(8 + count * width + 9)
}

/// Reads a seek table from the end of a seekable stream (`tail` holds at
/// least the table); `None` when the stream has none.
pub fn read_seek_table(tail: &[u8]) -> Option<Vec<Frame>> {
    let n = tail.len();
    if n < 17 || u32::from_le_bytes(tail[n - 4..].try_into().ok()?) != SEEKABLE_MAGIC {
        return None;
    }
    let descriptor = tail[n - 5];
    let count = u32::from_le_bytes(tail[n - 9..n - 5].try_into().ok()?) as usize;
    let width = if descriptor & 0x80 != 0 { 12 } else { 8 };
    let start = n.checked_sub(9 + count * width + 8)?;
    let magic = u32::from_le_bytes(tail[start..start + 4].try_into().ok()?);
    if magic != SKIPPABLE_MAGIC {
        return None;
    }
    Some(
        tail[start + 8..n - 9]
            .chunks_exact(width)
            .map(|c| Frame {
                compressed: u32::from_le_bytes(c[0..4].try_into().expect("4 bytes")),
                tar: u32::from_le_bytes(c[4..8].try_into().expect("4 bytes")),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table reads back; a stream with no table is not read as one.
    #[test]
    fn table_round_trip() {
        let frames = vec![
            Frame {
                compressed: 10,
                tar: 100,
            },
            Frame {
                compressed: 7,
                tar: 50,
            },
        ];
        let mut stream = b"frames before".to_vec();
        stream.extend(seek_table(&frames));
        assert_eq!(read_seek_table(&stream).unwrap(), frames);
        assert_eq!(table_size(&stream), Some(seek_table(&frames).len() as u64));
        assert_eq!(table_size(b"no footer"), None);
        assert!(read_seek_table(b"no table here at all, none").is_none());
        assert!(read_seek_table(b"short").is_none());
    }
}
