//! The per-file index of a snapshot or archive: zstd-compressed JSON Lines.
//!
//! One entry a file, sorted by path so two indexes diff in one merge pass.
//! "Sorted by path" means component by component, which is byte order with
//! `/` ranked below every other byte ([`cmp_paths`]); that is the order of a
//! depth-first walk that sorts each directory, so a walk and an index merge
//! without buffering. Both reading and writing stream: memory stays flat.
//!
//! Paths and symlink targets are bytes on Unix. When one is not UTF-8, `path`
//! (or `target`, `link`) holds a lossy version for people and `jq`, and
//! `path_b64` (`target_b64`, `link_b64`) the exact bytes in base64.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Exit, Result};
use crate::hash::Sha256Digest;
use crate::xattrs::Xattrs;

/// What an index entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Dir,
    Symlink,
    /// A further name of a file seen earlier in the same index (`link` names it).
    Hardlink,
    Fifo,
    Char,
    Block,
}

/// Files from this size up carry per-block digests in an archive's index
/// ([`Blocks`]), so the next incremental archive can tell which blocks
/// changed by reading the new file alone.
pub const BIG_FILE: u64 = 16 << 20;

/// The block size of [`Blocks`]: 10 rewrites of 512 KiB in a big file
/// cost about 10 x 9 blocks, where 1 MiB blocks would cost about 3 times that.
pub const BLOCK: u64 = 64 << 10;

/// The digest of each block of a file's content (the last may be short), in
/// an archive's index: `"blocks": {"size": 65536, "sha256": "<base64 of the
/// 32-byte digests, one after the other>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocks {
    pub size: u64,
    pub digests: Vec<Sha256Digest>,
}

impl Blocks {
    /// The digests of `content` in blocks of `size`.
    pub fn of(content: &[u8], size: u64) -> Blocks {
        Blocks {
            size,
            digests: content
                .chunks(size as usize)
                .map(Sha256Digest::of)
                .collect(),
        }
    }

    fn to_wire(&self) -> WireBlocks {
        let mut raw = Vec::with_capacity(self.digests.len() * 32);
        for d in &self.digests {
            raw.extend_from_slice(&d.0);
        }
        WireBlocks {
            size: self.size,
            sha256: Some(B64.encode(raw)),
            pages: None,
        }
    }

    /// The wire form naming pages written into `dir`.
    fn to_pages(&self, dir: &Path) -> io::Result<WireBlocks> {
        Ok(WireBlocks {
            size: self.size,
            sha256: None,
            pages: Some(crate::blockpages::write(dir, &self.digests)?),
        })
    }

    /// The digests of a wire form. Pages are read from `pages` (the index's
    /// `.blocks` folder); a page missing or damaged, or no folder to read
    /// them from, gives None: no digests rather than wrong ones.
    fn from_wire(
        w: WireBlocks,
        file_size: u64,
        pages: Option<&Path>,
    ) -> std::result::Result<Option<Blocks>, String> {
        let raw = match (w.sha256, w.pages) {
            (Some(inline), None) => B64
                .decode(inline)
                .map_err(|e| format!("blocks.sha256 is not base64: {e}"))?,
            (None, Some(names)) => {
                for n in &names {
                    crate::blockpages::check_name(n)?;
                }
                let read = pages.and_then(|dir| crate::blockpages::read(dir, &names));
                match read {
                    Some(digests) => digests.iter().flat_map(|d| d.0).collect(),
                    None => return Ok(None),
                }
            }
            _ => return Err("blocks: give either sha256 or pages".into()),
        };
        if w.size == 0 || raw.len() % 32 != 0 {
            return Err("blocks: a block size of 0, or digests that are not 32 bytes each".into());
        }
        if (raw.len() / 32) as u64 != file_size.div_ceil(w.size) {
            return Err(format!(
                "blocks: {} digests for {file_size} bytes in blocks of {}",
                raw.len() / 32,
                w.size
            ));
        }
        let digests = raw
            .chunks(32)
            .map(|c| Sha256Digest(c.try_into().expect("32 bytes")))
            .collect();
        Ok(Some(Blocks {
            size: w.size,
            digests,
        }))
    }
}

/// Hashes a stream in blocks of [`BLOCK`], whatever sizes it comes in.
#[derive(Default)]
pub struct BlockHasher {
    hasher: sha2::Sha256,
    filled: u64,
    digests: Vec<Sha256Digest>,
}

impl BlockHasher {
    pub fn update(&mut self, mut bytes: &[u8]) {
        use sha2::Digest;
        while !bytes.is_empty() {
            let take = ((BLOCK - self.filled) as usize).min(bytes.len());
            self.hasher.update(&bytes[..take]);
            self.filled += take as u64;
            bytes = &bytes[take..];
            if self.filled == BLOCK {
                let done = std::mem::take(&mut self.hasher);
                self.digests.push(Sha256Digest::from_hasher(done));
                self.filled = 0;
            }
        }
    }

    /// Hashes one block at a block boundary (a short one only at the end)
    /// and returns its digest: what [`BlockHasher::update`] would record,
    /// for a caller that compares it too, without hashing the bytes twice.
    pub fn block(&mut self, bytes: &[u8]) -> Sha256Digest {
        if self.filled != 0 || bytes.len() as u64 > BLOCK {
            self.update(bytes);
            return Sha256Digest::of(bytes);
        }
        let digest = Sha256Digest::of(bytes);
        self.digests.push(digest);
        digest
    }

    pub fn finish(mut self) -> Blocks {
        if self.filled > 0 {
            self.digests.push(Sha256Digest::from_hasher(self.hasher));
        }
        Blocks {
            size: BLOCK,
            digests: self.digests,
        }
    }
}

/// One run of changed blocks an incremental archive carries for a big file
/// (the tar member `PATH.snap-blocks/OFFSET`, 16 decimal digits): its
/// offset in the file, its length, and where its tar header starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub offset: u64,
    pub len: u64,
    pub tar_offset: u64,
}

/// The tar member name of a run of `path` at `offset`.
pub fn run_member(path: &[u8], offset: u64) -> Vec<u8> {
    [path, format!(".snap-blocks/{offset:016}").as_bytes()].concat()
}

/// The tar member that holds the new size of `path`, in decimal.
pub fn size_member(path: &[u8]) -> Vec<u8> {
    [path, b".snap-blocks/size"].concat()
}

/// Whether a tar member name is a run or size member, and of which path.
pub fn blocks_member_of(member: &[u8]) -> Option<&[u8]> {
    const MARK: &[u8] = b".snap-blocks/";
    let at = member.windows(MARK.len()).rposition(|w| w == MARK)?;
    let rest = &member[at + MARK.len()..];
    let ok = rest == b"size" || (rest.len() == 16 && rest.iter().all(u8::is_ascii_digit));
    (ok && at > 0).then(|| &member[..at])
}

/// [`Blocks`] as its JSON spells it: the digests inline (base64), or, in
/// the store's snapshot indexes, the names of the pages holding them
/// ([`crate::blockpages`]).
#[derive(Serialize, Deserialize)]
struct WireBlocks {
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pages: Option<Vec<String>>,
}

/// One entry of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated, never absolute, never `..`.
    pub path: Vec<u8>,
    pub kind: EntryType,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime: i64,
    pub uid: u32,
    pub gid: u32,
    /// Content digest of files and hard links.
    pub sha256: Option<Sha256Digest>,
    /// Symlink target, as stored in the link.
    pub target: Option<Vec<u8>>,
    /// For hard links: the path of the first name of the group.
    pub link: Option<Vec<u8>>,
    /// Device number of char and block devices.
    pub rdev: Option<u64>,
    /// In an archive's index: where the entry's tar header starts in the
    /// tar stream (the archive holds it); none in a snapshot's index, and
    /// for an incremental archive's entries an older archive holds.
    pub tar_offset: Option<u64>,
    /// Extended attributes, ACLs and capabilities included (crate::xattrs).
    pub xattrs: Xattrs,
    /// In a snapshot's index: the source's inode change time (ns), which
    /// any change of attributes moves, so that the next collect reads them
    /// again only when it moved.
    pub ctime: Option<i64>,
    /// The owner's and group's names where the entry was made, when known.
    pub user: Option<String>,
    pub group: Option<String>,
    /// In an archive's index, for files of [`BIG_FILE`] and more: each
    /// block's digest.
    pub blocks: Option<Blocks>,
    /// In an incremental archive's index: the runs of changed blocks it
    /// carries for a big file instead of the whole file (no `tar_offset`).
    /// The content is the previous version with these runs written over it,
    /// cut or grown to `size`.
    pub delta: Option<Vec<Run>>,
}

impl Entry {
    /// An entry of `kind` at `path` with nothing else known yet (mode 0,
    /// times 0, owner root, no content, no attributes): what every entry made
    /// by hand starts from, with its known fields set over it.
    pub fn new(path: Vec<u8>, kind: EntryType) -> Entry {
        Entry {
            path,
            kind,
            size: 0,
            mode: 0,
            mtime: 0,
            uid: 0,
            gid: 0,
            sha256: None,
            target: None,
            link: None,
            rdev: None,
            tar_offset: None,
            xattrs: Xattrs::default(),
            user: None,
            group: None,
            ctime: None,
            blocks: None,
            delta: None,
        }
    }

    /// The path for display (lossy when it is not UTF-8).
    pub fn display_path(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.path)
    }
}

/// Orders index paths component by component (`a` < `a/b` < `a.txt`).
pub fn cmp_paths(a: &[u8], b: &[u8]) -> Ordering {
    let rank = |c: u8| if c == b'/' { 0u16 } else { c as u16 + 1 };
    match a.iter().zip(b).find(|(x, y)| x != y) {
        Some((&x, &y)) => rank(x).cmp(&rank(y)),
        None => a.len().cmp(&b.len()),
    }
}

/// Checks that an index path is relative and has no `.`, `..` or empty component.
pub fn check_relative_path(path: &[u8]) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    if path.starts_with(b"/") {
        return Err("path is absolute".into());
    }
    if path
        .split(|&c| c == b'/')
        .any(|part| part.is_empty() || part == b"." || part == b"..")
    {
        return Err("path has an empty, '.' or '..' component".into());
    }
    Ok(())
}

fn split_text(bytes: &[u8]) -> (Cow<'_, str>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (Cow::Borrowed(s), None),
        Err(_) => (String::from_utf8_lossy(bytes), Some(B64.encode(bytes))),
    }
}

/// An entry as its JSON line spells it: written borrowing from the
/// [`Entry`], read owning (a `Cow` deserializes owned).
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_b64: Option<String>,
    #[serde(rename = "type")]
    kind: EntryType,
    size: u64,
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_b64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tar_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    xattrs: BTreeMap<Cow<'a, str>, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ctime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<WireBlocks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<Vec<[u64; 3]>>,
}

/// A delta's runs: in order, apart, within the file, on block boundaries.
fn check_runs(runs: &[[u64; 3]], size: u64) -> std::result::Result<Vec<Run>, String> {
    let mut end = 0;
    let mut out = Vec::with_capacity(runs.len());
    for &[offset, len, tar_offset] in runs {
        let fits = offset.checked_add(len).is_some_and(|e| e <= size);
        if offset < end || len == 0 || !fits || offset % BLOCK != 0 {
            return Err(format!(
                "delta: the run at {offset} ({len} bytes) is out of order, empty, past the size or off a block"
            ));
        }
        end = offset + len;
        out.push(Run {
            offset,
            len,
            tar_offset,
        });
    }
    Ok(out)
}

/// [`split_text`] of an optional field: the text and its base64 twin.
fn split_optional(bytes: Option<&[u8]>) -> (Option<Cow<'_, str>>, Option<String>) {
    match bytes {
        Some(t) => {
            let (a, b) = split_text(t);
            (Some(a), b)
        }
        None => (None, None),
    }
}

/// [`join_text`] of an optional field.
fn join_optional(
    text: Option<Cow<'_, str>>,
    b64: Option<String>,
    field: &str,
) -> std::result::Result<Option<Vec<u8>>, String> {
    text.map(|t| join_text(t.into_owned(), b64, field))
        .transpose()
}

fn join_text(
    text: String,
    b64: Option<String>,
    field: &str,
) -> std::result::Result<Vec<u8>, String> {
    match b64 {
        None => Ok(text.into_bytes()),
        Some(b) => B64
            .decode(b)
            .map_err(|e| format!("{field}_b64 is not base64: {e}")),
    }
}

impl Entry {
    /// The entry as one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        self.wire_json(self.blocks.as_ref().map(Blocks::to_wire))
    }

    /// [`Entry::to_json`], its block digests as pages written into `pages`
    /// (a snapshot index's `.blocks` folder).
    pub fn to_json_paged(&self, pages: &Path) -> io::Result<String> {
        let blocks = self
            .blocks
            .as_ref()
            .map(|b| b.to_pages(pages))
            .transpose()?;
        Ok(self.wire_json(blocks))
    }

    fn wire_json(&self, blocks: Option<WireBlocks>) -> String {
        let (path, path_b64) = split_text(&self.path);
        let (target, target_b64) = split_optional(self.target.as_deref());
        let (link, link_b64) = split_optional(self.link.as_deref());
        let out = Wire {
            path,
            path_b64,
            kind: self.kind,
            size: self.size,
            mode: self.mode,
            mtime: self.mtime,
            uid: self.uid,
            gid: self.gid,
            sha256: self.sha256.map(|d| d.to_hex()),
            target,
            target_b64,
            link,
            link_b64,
            rdev: self.rdev,
            tar_offset: self.tar_offset,
            user: self.user.as_deref().map(Cow::Borrowed),
            group: self.group.as_deref().map(Cow::Borrowed),
            xattrs: self
                .xattrs
                .iter()
                .map(|(n, v)| (Cow::Borrowed(n.as_str()), B64.encode(v)))
                .collect(),
            ctime: self.ctime,
            blocks,
            delta: self.delta.as_ref().map(|runs| {
                runs.iter()
                    .map(|r| [r.offset, r.len, r.tar_offset])
                    .collect()
            }),
        };
        serde_json::to_string(&out).expect("an index entry always serializes")
    }

    /// Parses one JSON line; the error says what is wrong with it.
    pub fn from_json(line: &str) -> std::result::Result<Entry, String> {
        Self::from_json_in(line, None)
    }

    /// [`Entry::from_json`] of a line whose block digests may be pages in
    /// the folder `pages`.
    pub fn from_json_in(line: &str, pages: Option<&Path>) -> std::result::Result<Entry, String> {
        let raw: Wire = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let path = join_text(raw.path.into_owned(), raw.path_b64, "path")?;
        check_relative_path(&path)
            .map_err(|e| format!("bad path {:?}: {e}", String::from_utf8_lossy(&path)))?;
        let target = join_optional(raw.target, raw.target_b64, "target")?;
        let link = join_optional(raw.link, raw.link_b64, "link")?;
        let sha256 = raw.sha256.map(|s| s.parse::<Sha256Digest>()).transpose()?;
        let xattrs = raw
            .xattrs
            .into_iter()
            .map(|(n, v)| match B64.decode(&v) {
                Ok(v) => Ok((n.into_owned(), v)),
                Err(e) => Err(format!("xattr {n:?} is not base64: {e}")),
            })
            .collect::<std::result::Result<Xattrs, String>>()?;
        let entry = Entry {
            path,
            kind: raw.kind,
            size: raw.size,
            mode: raw.mode,
            mtime: raw.mtime,
            uid: raw.uid,
            gid: raw.gid,
            sha256,
            target,
            link,
            rdev: raw.rdev,
            tar_offset: raw.tar_offset,
            xattrs,
            user: raw.user.map(Cow::into_owned),
            group: raw.group.map(Cow::into_owned),
            ctime: raw.ctime,
            blocks: match raw.blocks {
                Some(b) => Blocks::from_wire(b, raw.size, pages)?,
                None => None,
            },
            delta: raw
                .delta
                .map(|runs| check_runs(&runs, raw.size))
                .transpose()?,
        };
        entry.check_fields()?;
        Ok(entry)
    }

    fn check_fields(&self) -> std::result::Result<(), String> {
        match self.kind {
            EntryType::Symlink if self.target.is_none() => Err("symlink without target".into()),
            EntryType::Hardlink if self.link.is_none() => Err("hardlink without link".into()),
            EntryType::Char | EntryType::Block if self.rdev.is_none() => {
                Err("device without rdev".into())
            }
            _ => Ok(()),
        }
    }
}

/// Writes an index, checking that entries come in [`cmp_paths`] order.
pub struct IndexWriter<W: Write> {
    out: zstd::Encoder<'static, W>,
    last: Option<Vec<u8>>,
    entries: u64,
    /// Where block digests go as pages (a snapshot index), else inline.
    pages: Option<PathBuf>,
}

impl<W: Write> IndexWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut enc = zstd::Encoder::new(out, 3)?;
        // Compress on a zstd worker thread: the caller's thread stays on its own work.
        enc.multithread(1)?;
        Ok(IndexWriter {
            out: enc,
            last: None,
            entries: 0,
            pages: None,
        })
    }

    /// Writes block digests as pages into `dir` ([`crate::blockpages`]).
    pub fn with_pages(mut self, dir: PathBuf) -> Self {
        self.pages = Some(dir);
        self
    }

    /// Appends one entry; an entry out of order is a bug (exit 70).
    pub fn push(&mut self, entry: &Entry) -> Result<()> {
        if let Some(last) = &self.last
            && cmp_paths(last, &entry.path) != Ordering::Less
        {
            return Err(Error::internal(
                "index",
                format!(
                    "entry {:?} does not sort after {:?}",
                    entry.display_path(),
                    String::from_utf8_lossy(last)
                ),
            ));
        }
        let mut line = match &self.pages {
            Some(dir) => entry
                .to_json_paged(dir)
                .map_err(|e| Error::io(dir, e).with_exit(Exit::Io))?,
            None => entry.to_json(),
        };
        line.push('\n');
        self.out
            .write_all(line.as_bytes())
            .map_err(|e| Error::io_ctx("writing index", e).with_exit(Exit::Io))?;
        match &mut self.last {
            Some(last) => {
                last.clear();
                last.extend_from_slice(&entry.path);
            }
            None => self.last = Some(entry.path.clone()),
        }
        self.entries += 1;
        Ok(())
    }

    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Ends the zstd frame and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.finish()
    }
}

/// Reads an index entry by entry, checking order and naming bad lines.
pub struct IndexReader {
    lines: BufReader<zstd::Decoder<'static, BufReader<Box<dyn io::Read + Send>>>>,
    name: PathBuf,
    /// Where the pages of block digests are: `.blocks` beside the index.
    pages: PathBuf,
    line_no: u64,
    last: Option<Vec<u8>>,
    buf: String,
}

impl IndexReader {
    pub fn open(path: &Path) -> Result<IndexReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Self::from_reader(Box::new(file), path)
    }

    /// Reads an index from any stream of its bytes (e.g. one being decrypted);
    /// `name` is what errors call it.
    pub fn from_reader(input: Box<dyn io::Read + Send>, name: &Path) -> Result<IndexReader> {
        let decoder = zstd::Decoder::new(input).map_err(|e| Error::io(name, e))?;
        Ok(IndexReader {
            lines: BufReader::with_capacity(256 * 1024, decoder),
            name: name.to_path_buf(),
            pages: crate::blockpages::dir_of(crate::fsutil::parent_of(name)),
            line_no: 0,
            last: None,
            buf: String::new(),
        })
    }

    fn bad(&self, cause: impl std::fmt::Display) -> Error {
        Error::data(
            format!("index {} line {}", self.name.display(), self.line_no),
            cause,
        )
    }

    /// Reads the next line into `buf`; false at the end.
    fn next_line(&mut self) -> Result<bool> {
        self.buf.clear();
        self.line_no += 1;
        match self.lines.read_line(&mut self.buf) {
            Ok(n) => Ok(n > 0),
            Err(e) => Err(self.bad(format!("unreadable: {}", crate::error::io_cause(&e)))),
        }
    }

    /// The next entry, `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Entry>> {
        if !self.next_line()? {
            return Ok(None);
        }
        let entry =
            Entry::from_json_in(self.buf.trim_end(), Some(&self.pages)).map_err(|e| self.bad(e))?;
        if let Some(last) = &self.last
            && cmp_paths(last, &entry.path) != Ordering::Less
        {
            return Err(self.bad(format!("{:?} is out of order", entry.display_path())));
        }
        self.last = Some(entry.path.clone());
        Ok(Some(entry))
    }
}

impl IndexReader {
    /// The next entry whose JSON line `wanted` accepts, skipping the others
    /// unparsed (a search's prefilter: a line that cannot hold the text it
    /// looks for is not worth parsing). Skipped lines are not checked; the
    /// caller must accept every line that could be a match.
    pub fn next_matching(&mut self, wanted: impl Fn(&str) -> bool) -> Result<Option<Entry>> {
        while self.next_line()? {
            if wanted(&self.buf) {
                let entry = Entry::from_json_in(self.buf.trim_end(), Some(&self.pages))
                    .map_err(|e| self.bad(e))?;
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }
}

impl Iterator for IndexReader {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        self.next_entry().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], kind: EntryType) -> Entry {
        Entry {
            mode: 0o644,
            mtime: 1_700_000_000_123_456_789,
            uid: 1000,
            gid: 1000,
            ..Entry::new(path.to_vec(), kind)
        }
    }

    /// A big file's block digests round-trip; a list that does not fit the
    /// size is refused.
    #[test]
    fn blocks_round_trip() {
        let content: Vec<u8> = (0..(BLOCK as usize * 2 + 5)).map(|i| i as u8).collect();
        let mut e = entry(b"db", EntryType::File);
        e.size = content.len() as u64;
        e.sha256 = Some(Sha256Digest::of(&content));
        e.blocks = Some(Blocks::of(&content, BLOCK));
        let line = e.to_json();
        let back = Entry::from_json(&line).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.blocks.unwrap().digests.len(), 3);
        let short = line.replace(&format!("\"size\":{}", e.size), "\"size\":10");
        assert!(
            Entry::from_json(&short)
                .unwrap_err()
                .contains("digests for 10 bytes")
        );
    }

    /// Runs round-trip; runs out of order or past the size are refused; a
    /// member name says whose runs it holds.
    #[test]
    fn delta_runs() {
        let mut e = entry(b"db", EntryType::File);
        e.size = 4 * BLOCK + 7;
        e.delta = Some(vec![
            Run {
                offset: 0,
                len: BLOCK,
                tar_offset: 512,
            },
            Run {
                offset: 2 * BLOCK,
                len: 2 * BLOCK + 7,
                tar_offset: 66_560,
            },
        ]);
        let line = e.to_json();
        assert_eq!(Entry::from_json(&line).unwrap(), e);
        let bad = line.replace(
            &format!("[0,{BLOCK},512]"),
            &format!("[{},{BLOCK},512]", 3 * BLOCK),
        );
        assert!(Entry::from_json(&bad).unwrap_err().contains("delta"));
        assert_eq!(
            blocks_member_of(&run_member(b"a/db", 65_536)),
            Some(&b"a/db"[..])
        );
        assert_eq!(
            blocks_member_of(b"a/db.snap-blocks/size"),
            Some(&b"a/db"[..])
        );
        assert_eq!(blocks_member_of(b"a/db.snap-blocks/12"), None);
        assert_eq!(blocks_member_of(b"a/db"), None);
    }

    /// Component order: a directory's children come right after it, before its siblings.
    #[test]
    fn paths_sort_by_component() {
        let mut v: Vec<&[u8]> = vec![b"a.txt", b"a/b", b"a", b"a/b/c", b"a-", b"b"];
        v.sort_by(|x, y| cmp_paths(x, y));
        let want: Vec<&[u8]> = vec![b"a", b"a/b", b"a/b/c", b"a-", b"a.txt", b"b"];
        assert_eq!(v, want);
    }

    /// Relative paths only: absolute, `..`, `.` and empty components are refused.
    #[test]
    fn unsafe_paths_are_refused() {
        assert!(check_relative_path(b"a/b").is_ok());
        assert!(check_relative_path(b"..a/b.").is_ok());
        for bad in [&b"/etc"[..], b"a/../b", b"..", b"a//b", b"./a", b"a/", b""] {
            assert!(check_relative_path(bad).is_err(), "{:?}", bad);
        }
    }

    /// Every field, non-UTF-8 names included, survives a write and a read.
    #[test]
    fn entries_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.index.zst");
        let mut file = entry(b"bin/ok", EntryType::File);
        file.size = 3;
        file.sha256 = Some(Sha256Digest::of(b"abc"));
        let mut odd = entry(b"bin/caf\xe9", EntryType::Symlink);
        odd.target = Some(b"../\xff".to_vec());
        let mut hl = entry(b"bin/ok2", EntryType::Hardlink);
        hl.link = Some(b"bin/ok".to_vec());
        let mut dev = entry(b"dev/null", EntryType::Char);
        dev.rdev = Some(0x103);
        let all = vec![entry(b"bin", EntryType::Dir), odd, file, hl, dev];
        let mut w = IndexWriter::new(File::create(&p).unwrap()).unwrap();
        for e in &all {
            w.push(e).unwrap();
        }
        w.finish().unwrap();
        let back: Vec<Entry> = IndexReader::open(&p).unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(back, all);
    }

    /// A non-UTF-8 name is written lossy in `path` and exact in `path_b64`.
    #[test]
    fn non_utf8_has_b64_twin() {
        let json = entry(b"caf\xe9", EntryType::File).to_json();
        assert!(
            json.contains(r#""path":"caf\ufffd""#) || json.contains("\"path\":\"caf\u{fffd}\""),
            "{json}"
        );
        assert!(json.contains(r#""path_b64":"Y2Fm6Q==""#), "{json}");
    }

    /// The writer refuses entries out of order.
    #[test]
    fn writer_checks_order() {
        let mut w = IndexWriter::new(Vec::new()).unwrap();
        w.push(&entry(b"b", EntryType::File)).unwrap();
        let err = w.push(&entry(b"a", EntryType::File)).unwrap_err();
        assert_eq!(err.exit, Exit::Software);
    }

    /// next_matching parses only the lines its test accepts: a corrupt line
    /// it skips is no error, one it accepts is.
    #[test]
    fn next_matching_skips_unwanted_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.index.zst");
        let (a, b) = (
            entry(b"a/notes.txt", EntryType::File).to_json(),
            entry(b"b/photo.jpg", EntryType::File).to_json(),
        );
        let text = format!("{a}\nnot json at all\n{b}\n");
        std::fs::write(&p, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        let mut r = IndexReader::open(&p).unwrap();
        let got = r.next_matching(|l| l.contains("photo")).unwrap().unwrap();
        assert_eq!(got.path, b"b/photo.jpg");
        assert!(r.next_matching(|_| true).unwrap().is_none());
        let mut r = IndexReader::open(&p).unwrap();
        r.next_matching(|_| true).unwrap();
        assert_eq!(r.next_matching(|_| true).unwrap_err().exit, Exit::Data);
    }

    /// A corrupt line is a data error naming the index and the line.
    #[test]
    fn reader_names_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.index.zst");
        let good = entry(b"a", EntryType::Dir).to_json();
        let text = format!(
            "{good}\n{{\"path\":\"/etc/passwd\",\"type\":\"file\",\"size\":0,\"mode\":0,\"mtime\":0,\"uid\":0,\"gid\":0}}\n"
        );
        std::fs::write(&p, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        let mut r = IndexReader::open(&p).unwrap();
        assert!(r.next_entry().unwrap().is_some());
        let err = r.next_entry().unwrap_err();
        assert_eq!(err.exit, Exit::Data);
        assert!(err.context.ends_with("line 2"), "{err}");
        assert!(err.cause.contains("absolute"), "{err}");
    }
}

/// One difference between two versions of a path, as restic's `diff` marks
/// them: `+` added, `-` removed, `T` another kind, `M` other content
/// (size, digest, link target, device), `U` metadata only (mode, owner,
/// mtime, extended attributes and ACLs).
pub fn change(a: Option<&Entry>, b: Option<&Entry>) -> Option<&'static str> {
    match (a, b) {
        (None, Some(_)) => Some("+"),
        (Some(_), None) => Some("-"),
        (Some(a), Some(b)) if a.kind != b.kind => Some("T"),
        (Some(a), Some(b))
            if a.size != b.size
                || a.sha256 != b.sha256
                || a.target != b.target
                || a.link != b.link
                || a.rdev != b.rdev =>
        {
            Some("M")
        }
        (Some(a), Some(b))
            if (a.mode, a.uid, a.gid, a.mtime) != (b.mode, b.uid, b.gid, b.mtime)
                || a.xattrs != b.xattrs =>
        {
            Some("U")
        }
        _ => None,
    }
}

/// Walks two indexes in one merge pass and calls `seen` with each change,
/// the old entry (none for `+`) and the new one (none for `-`), in path
/// order, until it returns false.
pub fn each_change(
    mut old: IndexReader,
    mut new: IndexReader,
    mut seen: impl FnMut(&'static str, Option<&Entry>, Option<&Entry>) -> Result<bool>,
) -> Result<()> {
    let (mut ea, mut eb) = (old.next_entry()?, new.next_entry()?);
    while ea.is_some() || eb.is_some() {
        let order = match (&ea, &eb) {
            (Some(x), Some(y)) => cmp_paths(&x.path, &y.path),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (a, b) = match order {
            Ordering::Less => (ea.as_ref(), None),
            Ordering::Greater => (None, eb.as_ref()),
            Ordering::Equal => (ea.as_ref(), eb.as_ref()),
        };
        if let Some(mark) = change(a, b)
            && !seen(mark, a, b)?
        {
            return Ok(());
        }
        if order != Ordering::Greater {
            ea = old.next_entry()?;
        }
        if order != Ordering::Less {
            eb = new.next_entry()?;
        }
    }
    Ok(())
}

/// How many entries each kind of change touched between two snapshots: a
/// snapshot record's `changes` (snap-collect counts them against its parent).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    #[serde(rename = "type")]
    pub retyped: u64,
    pub metadata: u64,
}

impl ChangeCounts {
    /// Counts one change, by its mark.
    pub fn add(&mut self, mark: &str) {
        match mark {
            "+" => self.added += 1,
            "-" => self.removed += 1,
            "T" => self.retyped += 1,
            "M" => self.modified += 1,
            _ => self.metadata += 1,
        }
    }

    /// Counts every change between two indexes.
    pub fn between(old: IndexReader, new: IndexReader) -> Result<ChangeCounts> {
        let mut c = ChangeCounts::default();
        each_change(old, new, |mark, _, _| {
            c.add(mark);
            Ok(true)
        })?;
        Ok(c)
    }
}
