//! Block maps: what a `blocks` snapshot is.
//!
//! A map is zstd-compressed text: a JSON header line, then one line per
//! non-zero block, `<index> <sha256>`, in index order. Blocks not listed are
//! zeros. Text keeps a map readable with `zstdcat`; order lets every user of a
//! map (restore, export, push, prune) stream it beside the image, so memory
//! stays flat however large the disk is.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hash::Sha256Digest;

/// The format tag in a map's header.
pub const MAP_FORMAT: &str = "snap-disk-map/1";

/// A map's first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapHeader {
    pub block_size: u64,
    pub virtual_size: u64,
}

impl MapHeader {
    /// How many blocks the image has (the last may be short).
    pub fn block_count(&self) -> u64 {
        self.virtual_size.div_ceil(self.block_size)
    }

    /// The length of block `index` (the last one may be short).
    pub fn len_of(&self, index: u64) -> u64 {
        let start = index * self.block_size;
        self.block_size.min(self.virtual_size.saturating_sub(start))
    }
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    format: String,
    block_size: u64,
    virtual_size: u64,
}

/// Writes a map; entries must come in increasing index order.
pub struct MapWriter<W: Write> {
    out: zstd::Encoder<'static, BufWriter<W>>,
    last: Option<u64>,
}

impl<W: Write> MapWriter<W> {
    pub fn new(out: W, header: MapHeader) -> io::Result<Self> {
        let mut out = zstd::Encoder::new(BufWriter::new(out), 3)?;
        let line = HeaderLine {
            format: MAP_FORMAT.to_string(),
            block_size: header.block_size,
            virtual_size: header.virtual_size,
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        Ok(MapWriter { out, last: None })
    }

    pub fn push(&mut self, index: u64, digest: &Sha256Digest) -> io::Result<()> {
        debug_assert!(
            self.last.is_none_or(|l| l < index),
            "map entries out of order"
        );
        self.last = Some(index);
        writeln!(self.out, "{index} {digest}")
    }

    /// Ends the zstd frame and returns the inner writer, flushed.
    pub fn finish(self) -> io::Result<W> {
        let buf = self.out.finish()?;
        buf.into_inner().map_err(|e| e.into_error())
    }
}

/// Reads a map as a stream of `(index, digest)`, checking order and syntax.
pub struct MapReader<R: io::Read> {
    lines: io::Lines<BufReader<zstd::Decoder<'static, BufReader<R>>>>,
    pub header: MapHeader,
    name: String,
    line_no: usize,
    last: Option<u64>,
}

impl MapReader<File> {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        MapReader::new(file, path.display().to_string())
    }
}

impl<R: io::Read> MapReader<R> {
    pub fn new(input: R, name: String) -> Result<Self> {
        let dec = zstd::Decoder::new(input).map_err(|e| Error::io_ctx(name.clone(), e))?;
        let mut lines = BufReader::new(dec).lines();
        let bad = |cause: String| Error::data(format!("{name}: line 1"), cause);
        let first = match lines.next() {
            Some(Ok(l)) => l,
            Some(Err(e)) => return Err(bad(format!("not a block map: {e}"))),
            None => return Err(bad("empty block map".into())),
        };
        let h: HeaderLine = serde_json::from_str(&first)
            .map_err(|e| bad(format!("not a block map header: {e}")))?;
        if h.format != MAP_FORMAT {
            return Err(bad(format!("unknown map format {:?}", h.format)));
        }
        if h.block_size == 0 || h.block_size > 64 << 20 {
            return Err(bad(format!("block size {} is out of range", h.block_size)));
        }
        Ok(MapReader {
            lines,
            header: MapHeader {
                block_size: h.block_size,
                virtual_size: h.virtual_size,
            },
            name,
            line_no: 1,
            last: None,
        })
    }

    fn parse(&mut self, line: &str) -> Result<(u64, Sha256Digest)> {
        let bad = |cause: &str| Error::data(format!("{}: line {}", self.name, self.line_no), cause);
        let (idx, hex) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `<index> <sha256>`"))?;
        let idx: u64 = idx
            .parse()
            .map_err(|_| bad("the block index is not a number"))?;
        let digest: Sha256Digest = hex.parse().map_err(|_| bad("not a sha256"))?;
        if self.last.is_some_and(|l| l >= idx) {
            return Err(bad("block indexes are not increasing"));
        }
        if idx >= self.header.block_count() {
            return Err(bad("block index beyond the image's size"));
        }
        self.last = Some(idx);
        Ok((idx, digest))
    }
}

impl<R: io::Read> Iterator for MapReader<R> {
    type Item = Result<(u64, Sha256Digest)>;

    fn next(&mut self) -> Option<Self::Item> {
        let line = self.lines.next()?;
        self.line_no += 1;
        Some(match line {
            Ok(l) => self.parse(&l),
            Err(e) => Err(Error::data(
                format!("{}: line {}", self.name, self.line_no),
                format!("unreadable: {e}"),
            )),
        })
    }
}

/// Every block index of the image with the digest the map gives it (None: zeros),
/// merging the sparse map with the full range of indexes.
pub struct Dense<R: io::Read> {
    map: std::iter::Peekable<MapReader<R>>,
    next: u64,
    count: u64,
}

impl<R: io::Read> Dense<R> {
    pub fn new(map: MapReader<R>) -> Self {
        let count = map.header.block_count();
        Dense {
            map: map.peekable(),
            next: 0,
            count,
        }
    }
}

impl<R: io::Read> Iterator for Dense<R> {
    type Item = Result<(u64, Option<Sha256Digest>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return match self.map.next() {
                Some(Err(e)) => Some(Err(e)),
                _ => None,
            };
        }
        let index = self.next;
        self.next += 1;
        match self.map.peek() {
            Some(Ok((i, _))) if *i == index => {
                let (_, d) = self.map.next()?.ok()?;
                Some(Ok((index, Some(d))))
            }
            Some(Err(_)) => Some(Err(self.map.next()?.err()?)),
            _ => Some(Ok((index, None))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let h = MapHeader {
            block_size: 4,
            virtual_size: 10,
        };
        let mut w = MapWriter::new(Vec::new(), h).unwrap();
        w.push(1, &Sha256Digest::of(b"a")).unwrap();
        w.push(2, &Sha256Digest::of(b"b")).unwrap();
        w.finish().unwrap()
    }

    /// A written map reads back with its header and entries.
    #[test]
    fn round_trip() {
        let bytes = sample();
        let r = MapReader::new(&bytes[..], "m".into()).unwrap();
        assert_eq!(r.header.block_count(), 3);
        assert_eq!(r.header.len_of(2), 2);
        let got: Vec<_> = r.map(|e| e.unwrap().0).collect();
        assert_eq!(got, vec![1, 2]);
    }

    /// Dense fills the unlisted indexes with zeros (None).
    #[test]
    fn dense_fills_zero_blocks() {
        let bytes = sample();
        let r = MapReader::new(&bytes[..], "m".into()).unwrap();
        let got: Vec<_> = Dense::new(r).map(|e| e.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].1.is_none());
        assert_eq!(got[1].1, Some(Sha256Digest::of(b"a")));
    }

    /// Out-of-order or out-of-range entries are data errors naming the line.
    #[test]
    fn bad_entries_name_the_line() {
        let text = format!(
            "{{\"format\":\"{MAP_FORMAT}\",\"block_size\":4,\"virtual_size\":8}}\n1 {}\n0 {}\n",
            Sha256Digest::of(b"a"),
            Sha256Digest::of(b"b")
        );
        let z = zstd::encode_all(text.as_bytes(), 3).unwrap();
        let r = MapReader::new(&z[..], "m".into()).unwrap();
        let errs: Vec<_> = r.filter_map(|e| e.err()).collect();
        assert!(
            errs[0].render("t").contains("m: line 3"),
            "{}",
            errs[0].render("t")
        );
        let text = format!(
            "{{\"format\":\"{MAP_FORMAT}\",\"block_size\":4,\"virtual_size\":8}}\n5 {}\n",
            Sha256Digest::of(b"a")
        );
        let z = zstd::encode_all(text.as_bytes(), 3).unwrap();
        let mut r = MapReader::new(&z[..], "m".into()).unwrap();
        assert!(r.next().unwrap().is_err());
    }
}
