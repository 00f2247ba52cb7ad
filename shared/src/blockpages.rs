//! The block digests of big files in the store's snapshot indexes, kept as
//! content-addressed pages (`sets/<set>/.blocks/<sha256>`, 128 digests of
//! 32 bytes each, 4 KiB) rather than inline.
//!
//! Each snapshot's index names every big file's digests, changed or not,
//! because it stands alone. Inline, that is 0.5 MB per GiB of big files per
//! snapshot: a tree of VM images snapshotted hourly would pay more for its
//! digests than for its changes. As pages, an unchanged file names the pages
//! its parent wrote, and a file changed in a few places writes only the pages
//! whose digests changed. Archive indexes, which travel, keep their digests
//! inline.
//!
//! A page is named by the sha256 of its bytes, so a reader checks it by its
//! name: a page that is missing or damaged leaves that file without digests
//! (snap-collect then compares by bytes, snap-pack reads the whole file), never
//! with wrong ones. Pages are written before the index that names them, and
//! made durable with it (snap-collect's syncfs before the snapshot is named).
//! snap-prune removes the pages no index of the set names any more
//! ([`collect_garbage`]), under the store lock.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hash::Sha256Digest;

/// Digests per page.
pub const PAGE: usize = 128;

/// The pages folder of a set's folder.
pub fn dir_of(set_dir: &Path) -> PathBuf {
    set_dir.join(".blocks")
}

/// Whether `name` can be a page's name (64 lowercase hex digits): never a path.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match ok {
        true => Ok(()),
        false => Err(format!("blocks.pages: {name:?} is not a page name")),
    }
}

/// Writes the pages of `digests` into `dir` (those not there already, or
/// there but damaged) and returns their names in order.
pub fn write(dir: &Path, digests: &[Sha256Digest]) -> io::Result<Vec<String>> {
    crate::fsutil::create_private_dir(dir)?;
    let mut names = Vec::with_capacity(digests.len().div_ceil(PAGE));
    for page in digests.chunks(PAGE) {
        let bytes: Vec<u8> = page.iter().flat_map(|d| d.0).collect();
        let name = Sha256Digest::of(&bytes).to_hex();
        let path = dir.join(&name);
        // A page there already is kept only when it holds these bytes: a
        // damaged one is written again, not named by one more index.
        if fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            let tmp = dir.join(format!(".{name}.tmp"));
            fs::write(&tmp, &bytes)?;
            fs::rename(&tmp, &path)?;
        }
        names.push(name);
    }
    Ok(names)
}

/// The digests the pages `names` in `dir` hold, each page checked against
/// its name; None when one is missing or damaged.
pub fn read(dir: &Path, names: &[String]) -> Option<Vec<Sha256Digest>> {
    let mut digests = Vec::with_capacity(names.len() * PAGE);
    let mut bytes = Vec::with_capacity(PAGE * 32);
    for name in names {
        bytes.clear();
        fs::File::open(dir.join(name))
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .ok()?;
        if bytes.is_empty() || bytes.len() % 32 != 0 || Sha256Digest::of(&bytes).to_hex() != *name {
            return None;
        }
        digests.extend(
            bytes
                .chunks(32)
                .map(|c| Sha256Digest(c.try_into().expect("32 bytes"))),
        );
    }
    Some(digests)
}

/// What [`collect_garbage`] reads of an index line: the pages it names.
#[derive(Deserialize)]
struct Named {
    blocks: Option<NamedPages>,
}

#[derive(Deserialize)]
struct NamedPages {
    pages: Option<Vec<String>>,
}

/// Removes the pages of a set's folder that no index there names (every
/// `*.index.zst`, published or not); the bytes freed. An index that cannot
/// be read keeps every page: nothing is removed then.
pub fn collect_garbage(set_dir: &Path) -> io::Result<u64> {
    let dir = dir_of(set_dir);
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut named = HashSet::new();
    for e in fs::read_dir(set_dir)? {
        let path = e?.path();
        if !path.to_string_lossy().ends_with(".index.zst") {
            continue;
        }
        let Ok(file) = fs::File::open(&path) else {
            return Ok(0);
        };
        let Ok(decoder) = zstd::Decoder::new(file) else {
            return Ok(0);
        };
        for line in io::BufRead::lines(io::BufReader::new(decoder)) {
            let Ok(line) = line else {
                return Ok(0);
            };
            if !line.contains("\"pages\"") {
                continue;
            }
            match serde_json::from_str::<Named>(&line) {
                Ok(n) => named.extend(n.blocks.and_then(|b| b.pages).into_iter().flatten()),
                Err(_) => return Ok(0),
            }
        }
    }
    let mut freed = 0;
    for e in fs::read_dir(&dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !named.contains(&name) {
            // What `du` counts, as snap-prune reports what it frees.
            freed += e.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
            fs::remove_file(e.path())?;
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(n: usize, seed: u8) -> Vec<Sha256Digest> {
        (0..n)
            .map(|i| Sha256Digest::of(&[seed, i as u8, (i >> 8) as u8]))
            .collect()
    }

    /// Pages round-trip; an unchanged run of digests names the same pages,
    /// so a file changed at its end writes one new page.
    #[test]
    fn pages_are_shared_by_content() {
        let t = tempfile::tempdir().unwrap();
        let dir = dir_of(t.path());
        let a = digests(300, 1);
        let names = write(&dir, &a).unwrap();
        assert_eq!(names.len(), 3);
        assert_eq!(read(&dir, &names).unwrap(), a);
        let mut b = a.clone();
        b[299] = Sha256Digest::of(b"changed");
        let again = write(&dir, &b).unwrap();
        assert_eq!(again[..2], names[..2]);
        assert_ne!(again[2], names[2]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 4);
    }

    /// A damaged or missing page gives no digests, never wrong ones.
    #[test]
    fn a_damaged_page_gives_none() {
        let t = tempfile::tempdir().unwrap();
        let dir = dir_of(t.path());
        let names = write(&dir, &digests(10, 2)).unwrap();
        let mut bytes = fs::read(dir.join(&names[0])).unwrap();
        bytes[5] ^= 1;
        fs::write(dir.join(&names[0]), &bytes).unwrap();
        assert!(read(&dir, &names).is_none());
        fs::remove_file(dir.join(&names[0])).unwrap();
        assert!(read(&dir, &names).is_none());
        assert!(check_name("../x").is_err());
        assert!(check_name(&names[0]).is_ok());
    }
}
