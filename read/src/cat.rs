//! `cat`: one file of a snapshot or an archive to stdout, as `restic dump` does.
//!
//! From a chain of archives the file comes from the newest archive that
//! holds its final content, or is put together from runs of changed blocks
//! (`cat_runs`). From a seekable archive only the frames that
//! hold it are read: a few MiB from a bucket, whatever the archive's size.
//! Older archives and foreign tars are streamed up to the file. The bytes
//! are checked against the index's sha256 as they go out; since stdout
//! cannot be taken back, a mismatch is exit 65 after the last byte, naming
//! the file.

use std::cmp::Ordering;
use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;
use snap_shared::index::{Entry, EntryType, IndexReader, cmp_paths};

use crate::chain::chain_of;
use crate::damage::corrupt;
use crate::indexes::{IndexLoc, open_index};
use crate::loc::Loc;
use crate::members::sanitize;
use crate::members::{archive, members};
use crate::seeking::{self, Seekable};
use crate::source::{Item, Source};
use crate::stream;
use crate::trust::Trust;

/// Writes the file `path` of snapshot or archive `name` to `out`.
pub fn cat(
    source: &Source,
    (name, path, archive_only): (&str, &str, bool),
    (dec, trust, report): (&Decrypt, &Trust, &Reporter),
    out: &mut dyn Write,
) -> Result<()> {
    let item = source.resolve(name, archive_only)?;
    cat_item(&item, path, (dec, trust, report), out)
}

/// [`cat`] of an item already found (a server keeps its listing).
pub fn cat_item(
    item: &Item,
    path: &str,
    (dec, trust, report): (&Decrypt, &Trust, &Reporter),
    out: &mut dyn Write,
) -> Result<()> {
    let item = item.clone();
    let chain = match &item {
        Item::Archive { .. } => chain_of(&item)?,
        _ => Vec::new(),
    };
    trust.check_chain(&chain, report)?;
    let rel = path.trim_matches('/').as_bytes().to_vec();
    let shown = format!("{}:{}", item.name(), path.trim_matches('/'));
    let Some(index) = item.index() else {
        let Item::Foreign { path } = &item else {
            unreachable!("only foreign tars have no index")
        };
        return match from_stream(&Loc::Path(path.clone()), &rel, dec, out, &shown, None)? {
            true => Ok(()),
            false => Err(not_found(&shown, &item)),
        };
    };
    let entry = find(&index, &rel, dec)?.ok_or_else(|| not_found(&shown, &item))?;
    Files { item, chain }.write(&entry, dec, out)
}

/// An item's files, one after another (a folder downloaded whole): its
/// chain found and trusted once, each file then read by the frames that
/// hold it and checked against its sha256.
pub struct Files {
    item: Item,
    chain: Vec<Item>,
}

impl Files {
    /// The chain of `item` (an archive), checked against the trust.
    pub fn open(item: &Item, trust: &Trust, report: &Reporter) -> Result<Files> {
        let chain = match item {
            Item::Archive { .. } => chain_of(item)?,
            _ => Vec::new(),
        };
        trust.check_chain(&chain, report)?;
        Ok(Files {
            item: item.clone(),
            chain,
        })
    }

    /// Writes the content of `entry`, a file of the item's index, to `out`.
    pub fn write(&self, entry: &Entry, dec: &Decrypt, out: &mut dyn Write) -> Result<()> {
        let shown = format!("{}:{}", self.item.name(), entry.display_path());
        check_is_file(entry, &shown)?;
        match &self.item {
            Item::Snapshot { .. } => from_tree(&self.item, entry, out, &shown),
            _ if self.item.is_imported() => from_stream(
                &self.item.data(),
                &entry.path,
                dec,
                out,
                &shown,
                Some(entry),
            )
            .map(|_| ()),
            _ => from_chain(&self.chain, entry, dec, out, &shown),
        }
    }
}

fn not_found(shown: &str, item: &Item) -> Error {
    Error::new(Exit::NoInput, shown, format!("not in {}", item.name()))
        .with_hint("paths are inside the snapshot, e.g. home/me/.bashrc; `snap-restore show` lists what it holds")
}

/// Refuses what is not a regular file, saying what it is.
fn check_is_file(e: &Entry, shown: &str) -> Result<()> {
    let why = match e.kind {
        EntryType::File => return Ok(()),
        EntryType::Dir => "is a folder".to_string(),
        EntryType::Symlink => format!(
            "is a symlink to {}",
            String::from_utf8_lossy(e.target.as_deref().unwrap_or_default())
        ),
        other => format!("is a {other:?}, not a file"),
    };
    Err(Error::usage(shown, why).with_hint("restore it with `snap-restore restore --path`"))
}

/// The entry of `rel` in an index (read up to where it would be).
pub(crate) fn find(index: &IndexLoc, rel: &[u8], dec: &Decrypt) -> Result<Option<Entry>> {
    find_in(&mut open_index(index, dec)?, rel)
}

/// [`find`] in an archive's index, with where the next member the archive
/// carries starts (the index is in tar order): the end of this one.
fn find_with_end(
    index: &IndexLoc,
    rel: &[u8],
    dec: &Decrypt,
) -> Result<Option<(Entry, Option<u64>)>> {
    let mut reader = open_index(index, dec)?;
    let Some(e) = find_in(&mut reader, rel)? else {
        return Ok(None);
    };
    let mut end = None;
    if e.tar_offset.is_some() {
        while let Some(next) = reader.next_entry()? {
            if next.tar_offset.is_some() {
                end = next.tar_offset;
                break;
            }
        }
    }
    Ok(Some((e, end)))
}

fn find_in(reader: &mut IndexReader, rel: &[u8]) -> Result<Option<Entry>> {
    while let Some(e) = reader.next_entry()? {
        match cmp_paths(&e.path, rel) {
            Ordering::Less => continue,
            Ordering::Equal => return Ok(Some(e)),
            Ordering::Greater => break,
        }
    }
    Ok(None)
}

/// From a snapshot's tree, never through a symlink.
fn from_tree(item: &Item, e: &Entry, out: &mut dyn Write, shown: &str) -> Result<()> {
    use rustix::fs::OFlags;
    let tree = item.data();
    let tree = tree.path().expect("trees are local");
    let root = snap_shared::fsutil::open_root(tree).map_err(|err| Error::io(tree, err))?;
    let fd = snap_shared::fsutil::open_beneath(&root, &e.path, OFlags::RDONLY | OFlags::CLOEXEC)
        .map_err(|err| Error::io_ctx(shown, err))?;
    let mut file = std::fs::File::from(fd);
    copy_checked(&mut file, e.size, e.sha256, out, shown, &item.data())
}

/// From the archive of the chain that holds the final content.
fn from_chain(
    chain: &[Item],
    fin: &Entry,
    dec: &Decrypt,
    out: &mut dyn Write,
    shown: &str,
) -> Result<()> {
    if let Some(mut put_together) = crate::cat_runs::assembled(chain, fin, dec, shown)? {
        let data = chain.last().map(Item::data).expect("a chain");
        return copy_checked(&mut put_together, fin.size, fin.sha256, out, shown, &data);
    }
    for link in chain.iter().rev() {
        let own = link.index().expect("archives have an index");
        let Some((e, end)) = find_with_end(&own, &fin.path, dec)? else {
            continue;
        };
        if e.sha256 != fin.sha256 {
            continue;
        }
        match seeking::of_item(link, dec)? {
            Some(s) => match e.tar_offset {
                Some(at) => return by_frames(link, s, (at, end), fin, out, shown),
                // An older archive of the chain holds it.
                None => continue,
            },
            None => {
                if from_stream(&link.data(), &fin.path, dec, out, shown, Some(fin))? {
                    return Ok(());
                }
            }
        }
    }
    let named = chain.last().map(Item::name).unwrap_or_default();
    Err(Error::data(
        shown,
        format!("no archive of the chain of {named} holds its content"),
    ))
}

/// Reads only the frames holding the member at tar offset `at`.
fn by_frames(
    link: &Item,
    archive: Seekable,
    (at, end): (u64, Option<u64>),
    e: &Entry,
    out: &mut dyn Write,
    shown: &str,
) -> Result<()> {
    let data = link.data();
    let end = end.unwrap_or(archive.layout.tar_len());
    let frames = archive.layout.covering(at..end).collect();
    let mut stream = archive.frames(frames);
    stream.skip_to(at).map_err(|err| corrupt(&data, err))?;
    seeking::with_member(&mut stream, &e.path, |m| {
        copy_checked(m, e.size, e.sha256, out, shown, &data)
    })
    .map_err(|err| damaged(shown, err))?
}

/// A member that cannot be read: damaged data, named by the file.
fn damaged(shown: &str, err: std::io::Error) -> Error {
    let data = crate::damage::is_damage(&err);
    let e = Error::io_ctx(shown, err);
    match data {
        true => e.with_exit(Exit::Data),
        false => e,
    }
}

/// Streams a tar up to the member `rel` and writes it; false when the
/// archive has no such file.
fn from_stream(
    loc: &Loc,
    rel: &[u8],
    dec: &Decrypt,
    out: &mut dyn Write,
    shown: &str,
    entry: Option<&Entry>,
) -> Result<bool> {
    let mut stripped = false;
    let sha = entry.and_then(|e| e.sha256);
    stream_to_member(
        loc,
        dec,
        &mut |path| sanitize(path, &mut stripped).ok().flatten().as_deref() == Some(rel),
        &mut |m, size| copy_checked(m, size, sha, out, shown, loc),
    )
}

/// Streams the archive at `loc` up to the first member whose path `wanted`
/// accepts, and hands it to `read` with its size; false when there is none.
pub(crate) fn stream_to_member(
    loc: &Loc,
    dec: &Decrypt,
    wanted: &mut dyn FnMut(&[u8]) -> bool,
    read: &mut dyn FnMut(&mut dyn Read, u64) -> Result<()>,
) -> Result<bool> {
    let opened = stream::open(loc, dec)?;
    let mut tar = archive(opened.tar);
    for member in members(&mut tar).map_err(|e| corrupt(loc, e))? {
        let mut m = member.map_err(|e| corrupt(loc, e))?;
        if wanted(&m.path) {
            let size = m.size;
            read(&mut m, size)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Copies exactly `size` bytes to `out`, checking their sha256 where the index has one.
fn copy_checked(
    src: &mut dyn Read,
    size: u64,
    sha: Option<Sha256Digest>,
    out: &mut dyn Write,
    shown: &str,
    data: &Loc,
) -> Result<()> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => return Err(Error::data(shown, format!("{} ends early", data.show()))),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(damaged(shown, err)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|err| Error::io_ctx("stdout", err))?;
        left -= n as u64;
    }
    out.flush().map_err(|err| Error::io_ctx("stdout", err))?;
    let got = Sha256Digest::from_hasher(hasher);
    match sha {
        Some(want) if want != got => Err(Error::data(
            shown,
            format!(
                "content does not match its sha256 (got {got}, the index says {want}); what was written is damaged"
            ),
        )),
        _ => Ok(()),
    }
}
