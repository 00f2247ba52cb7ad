//! Reading indexes for restore, verify and diff: opening encrypted ones,
//! looking entries up in path order, and choosing entries with `--path`.

use std::cmp::Ordering;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use snap_shared::crypt::{Decrypt, decrypting_reader};

use snap_shared::error::{Error, Result};
use snap_shared::hash::Sha256Digest;
use snap_shared::index::{Entry, EntryType, IndexReader, check_relative_path, cmp_paths};

use crate::loc::Loc;

/// An index, and the sha256 its archive's record gives for its stored
/// bytes (`index_sha256`; none for a store's snapshots and for archives of
/// before it was recorded): an index is never used before its bytes are
/// found to be the ones the record names, so a swapped or damaged index is
/// damage (65), not a partial restore.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexLoc {
    pub loc: Loc,
    pub sha256: Option<String>,
}

impl IndexLoc {
    /// The same index, read without the check (verify checks it itself, names
    /// a mismatch and goes on to name what else is wrong).
    pub fn unchecked(&self) -> IndexLoc {
        IndexLoc {
            loc: self.loc.clone(),
            sha256: None,
        }
    }

    pub fn show(&self) -> String {
        self.loc.show()
    }
}

/// Opens an index file, decrypting it when its name ends in `.age`, once
/// its bytes match the record's sha256.
pub fn open_index(index: &IndexLoc, dec: &Decrypt) -> Result<IndexReader> {
    let loc = &index.loc;
    let what = loc.show();
    let encrypted = loc.name().ends_with(".age");
    if let (Loc::Path(p), false) = (loc, encrypted) {
        let Some(want) = &index.sha256 else {
            return IndexReader::open(p);
        };
        // One pass to check, then the same open file read again: memory
        // stays flat, and the bytes read are the bytes checked.
        let mut file = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
        let (_, got) = snap_shared::hash::hash_read(&mut file, &mut vec![0; 256 << 10])
            .map_err(|e| crate::damage::corrupt(loc, e))?;
        check_sha(loc, &got.to_hex(), want)?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(p, e))?;
        return IndexReader::from_reader(Box::new(file), p);
    }
    let (stored_sha, bytes) = kept(loc, || {
        let mut stored = Vec::new();
        loc.open()?
            .read_to_end(&mut stored)
            .map_err(|e| crate::damage::corrupt(loc, e))?;
        let sha = Sha256Digest::from_hasher(Sha256::new_with_prefix(&stored)).to_hex();
        if let Some(want) = &index.sha256 {
            // Before decrypting: a foreign index is named as such, not as a
            // wrong key.
            check_sha(loc, &sha, want)?;
        }
        let plain = match encrypted {
            false => stored,
            true => {
                let mut plain = Vec::new();
                decrypting_reader(dec, &what, std::io::Cursor::new(stored))?
                    .read_to_end(&mut plain)
                    .map_err(|e| crate::damage::corrupt(loc, e))?;
                plain
            }
        };
        Ok((sha, bytes::Bytes::from(plain)))
    })?;
    if let Some(want) = &index.sha256 {
        check_sha(loc, &stored_sha, want)?;
    }
    IndexReader::from_reader(Box::new(std::io::Cursor::new(bytes)), Path::new(&what))
}

/// An index whose bytes are not the ones its record names: damage (65).
fn check_sha(loc: &Loc, got: &str, want: &str) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(Error::data(
        loc.show(),
        format!(
            "sha256 {got}, the record says {want}: this index is damaged or not this archive's"
        ),
    )
    .with_hint(
        "snap-restore verify names everything else that is wrong; restore from another copy",
    ))
}

/// Indexes fetched from a bucket or decrypted, kept for the rest of the
/// run: a restore from a chain reads one index up to four times, and each
/// read would be a request or a decryption (scrypt takes a second). Each is
/// kept with the sha256 of its stored bytes, checked at every use.
static KEPT: Mutex<Vec<(String, (String, bytes::Bytes))>> = Mutex::new(Vec::new());
/// At most this much is kept; older indexes are dropped first.
const KEEP_BYTES: usize = 128 << 20;

type Kept = (String, bytes::Bytes);

/// The bytes of `loc` from the kept ones, or from `fetch` (then kept).
fn kept(loc: &Loc, fetch: impl FnOnce() -> Result<Kept>) -> Result<Kept> {
    let key = loc.show();
    let lock = || KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, b)) = lock().iter().find(|(k, _)| *k == key) {
        return Ok(b.clone());
    }
    let got = fetch()?;
    let mut kept = lock();
    kept.push((key, got.clone()));
    while kept.iter().map(|(_, (_, b))| b.len()).sum::<usize>() > KEEP_BYTES && kept.len() > 1 {
        kept.remove(0);
    }
    Ok(got)
}

/// An index read in path order, answering lookups of increasing paths.
pub struct Cursor {
    reader: IndexReader,
    current: Option<Entry>,
}

impl Cursor {
    pub fn new(mut reader: IndexReader) -> Result<Cursor> {
        let current = reader.next_entry()?;
        Ok(Cursor { reader, current })
    }

    /// Takes the entry at `path`, if there is one; lookups must come in path
    /// order. `skipped` sees each entry passed over on the way.
    pub fn seek(&mut self, path: &[u8], mut skipped: impl FnMut(&Entry)) -> Result<Option<Entry>> {
        while let Some(e) = &self.current {
            match cmp_paths(&e.path, path) {
                Ordering::Less => {
                    skipped(e);
                    self.current = self.reader.next_entry()?;
                }
                Ordering::Equal => {
                    let next = self.reader.next_entry()?;
                    return Ok(std::mem::replace(&mut self.current, next));
                }
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Consumes the rest, showing each entry to `skipped`.
    pub fn drain(&mut self, mut skipped: impl FnMut(&Entry)) -> Result<()> {
        while let Some(e) = &self.current {
            skipped(e);
            self.current = self.reader.next_entry()?;
        }
        Ok(())
    }
}

/// The `--path` selection: entries at or under any of the prefixes (all when none).
#[derive(Debug, Default)]
pub struct Select {
    prefixes: Vec<Vec<u8>>,
    /// Hard links chosen without their group's first name (which holds the
    /// content, in a tree's index and in a tar): first name → the chosen
    /// name its content is written to ([`Select::adopt_orphan_links`]).
    orphans: std::collections::HashMap<Vec<u8>, Vec<u8>>,
}

impl Select {
    /// Parses `--path` values; a leading `/` is dropped, since snapshots keep
    /// sources under their absolute path (`/home/me` is `home/me` inside).
    pub fn new(paths: &[String]) -> Result<Select> {
        let mut prefixes = Vec::new();
        for p in paths {
            let rel = p.trim_start_matches('/').trim_end_matches('/');
            check_relative_path(rel.as_bytes())
                .map_err(|e| Error::usage(format!("--path {p}"), e))?;
            prefixes.push(rel.as_bytes().to_vec());
        }
        Ok(Select {
            prefixes,
            orphans: Default::default(),
        })
    }

    /// Reads `index` for hard links this selection chooses without the
    /// first name of their group, so that `--path` of a second name
    /// restores it (as a file with the group's content; further chosen
    /// names of the group link to it), as `tar -x NAME` does.
    pub fn adopt_orphan_links(&mut self, index: &IndexLoc, dec: &Decrypt) -> Result<()> {
        if self.is_all() {
            return Ok(());
        }
        let mut reader = open_index(index, dec)?;
        while let Some(e) = reader.next_entry()? {
            if let (EntryType::Hardlink, Some(first)) = (e.kind, &e.link)
                && self.wants(&e.path)
                && !self.wants(first)
            {
                self.orphans.entry(first.clone()).or_insert(e.path);
            }
        }
        Ok(())
    }

    /// Where the content of file `path` goes: its own path when chosen, the
    /// chosen name of its hard-link group when only that is, else nowhere.
    pub fn content_dest<'a>(&'a self, path: &'a [u8]) -> Option<&'a [u8]> {
        match self.wants(path) {
            true => Some(path),
            false => self.orphans.get(path).map(Vec::as_slice),
        }
    }

    /// For a chosen hard link to `first`: `None` when it is the name that
    /// took the group's content, else the name to link to.
    pub fn link_target<'a>(&'a self, path: &[u8], first: &'a [u8]) -> Option<&'a [u8]> {
        match self.orphans.get(first) {
            Some(dest) if dest == path => None,
            Some(dest) => Some(dest),
            None => Some(first),
        }
    }

    pub fn is_all(&self) -> bool {
        self.prefixes.is_empty()
    }

    fn under(path: &[u8], prefix: &[u8]) -> bool {
        path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
    }

    /// Whether `path` is chosen.
    pub fn wants(&self, path: &[u8]) -> bool {
        self.is_all() || self.prefixes.iter().any(|p| Self::under(path, p))
    }

    /// Whether `dir` is a folder on the way to something chosen (it gets its metadata too).
    pub fn leads_to(&self, dir: &[u8]) -> bool {
        self.prefixes.iter().any(|p| Self::under(p, dir))
    }

    /// The prefixes no entry matched, for the error that names them.
    pub fn unmatched<'a>(&'a self, matched: &'a [bool]) -> impl Iterator<Item = String> + 'a {
        self.prefixes
            .iter()
            .zip(matched)
            .filter(|(_, m)| !**m)
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
    }

    /// Marks which prefixes `path` matches.
    pub fn mark(&self, path: &[u8], matched: &mut [bool]) {
        for (p, m) in self.prefixes.iter().zip(matched.iter_mut()) {
            if Self::under(path, p) {
                *m = true;
            }
        }
    }

    /// How many prefixes were given.
    pub fn count(&self) -> usize {
        self.prefixes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prefix chooses itself and what is under it, not its namesakes (`a` is not `ab`).
    #[test]
    fn select_matches_whole_components() {
        let s = Select::new(&["/home/me/".into()]).unwrap();
        assert!(s.wants(b"home/me"));
        assert!(s.wants(b"home/me/x"));
        assert!(!s.wants(b"home/meme"));
        assert!(s.leads_to(b"home"));
        assert!(!s.leads_to(b"etc"));
        assert!(Select::new(&["a/../b".into()]).is_err());
    }
}
