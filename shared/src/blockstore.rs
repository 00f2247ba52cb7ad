//! The content-addressed block store of one disk.
//!
//! A block is stored once, under the sha256 of its uncompressed bytes, as a
//! zstd frame (level 3), then age-encrypted when the disk is. Writers never
//! replace a block: a name that exists holds those bytes. Reading a block
//! checks its sha256, so a damaged block is found before it reaches an image.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::blockmap::MapReader;
use crate::crypt::{self, Decrypt, Encrypt};
use crate::error::{Error, Exit, Result};
use crate::hash::Sha256Digest;

use crate::disks::block_path;

/// The zstd level of blocks: zstd's default, as fast as `zstd -3`.
pub const LEVEL: i32 = 3;

pub struct BlockStore {
    dir: PathBuf,
    encrypt: Option<Mutex<Encrypt>>,
    /// Blocks being stored right now: two workers that meet the same new
    /// block store it once, and it counts as new once.
    claimed: Mutex<HashSet<Sha256Digest>>,
    /// Other disks' block folders (plain disks only): a block one of them
    /// holds is hard-linked, not stored again.
    siblings: Vec<PathBuf>,
}

impl BlockStore {
    /// Opens (creating) the block folder with its 256 fan-out folders.
    pub fn open(dir: &Path, encrypt: Option<Encrypt>) -> io::Result<BlockStore> {
        for n in 0..256 {
            let sub = dir.join(format!("{n:02x}"));
            if !sub.is_dir() {
                fs::create_dir_all(&sub)?;
            }
        }
        Ok(BlockStore {
            dir: dir.to_path_buf(),
            encrypt: encrypt.map(Mutex::new),
            claimed: Mutex::new(HashSet::new()),
            siblings: Vec::new(),
        })
    }

    /// Shares blocks with other disks' block folders: a new block that one of
    /// them already holds becomes a hard link to it (same bytes, no new
    /// space). Removing it from either disk later only drops a link.
    pub fn share_with(mut self, siblings: Vec<PathBuf>) -> BlockStore {
        if self.encrypt.is_none() {
            self.siblings = siblings;
        }
        self
    }

    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        block_path(&self.dir, digest)
    }

    /// The stored size of a block, if it is there.
    pub fn stored_len(&self, digest: &Sha256Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }

    /// Stores `data` under `digest` unless it is already there; returns the
    /// bytes written (0 when it was there). Not flushed: the caller syncs the
    /// filesystem once before publishing anything that refers to the block.
    pub fn put(&self, digest: &Sha256Digest, data: &[u8]) -> io::Result<u64> {
        let path = self.path(digest);
        if path.exists() {
            return Ok(0);
        }
        let fresh = self
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*digest);
        if !fresh {
            return Ok(0);
        }
        let written = match self.link_from_sibling(&path, digest) {
            true => Ok(0),
            false => self.write_new(&path, digest, data),
        };
        // Once renamed, `exists` answers for it: the set holds only blocks in flight.
        self.claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        written
    }

    /// Hard-links the block from another disk that holds it; false when none
    /// does (or the link fails, as across filesystems).
    fn link_from_sibling(&self, path: &Path, digest: &Sha256Digest) -> bool {
        self.siblings
            .iter()
            .map(|dir| block_path(dir, digest))
            .any(|there| there.exists() && fs::hard_link(&there, path).is_ok())
    }

    /// Encodes and writes one block under a temporary name, then renames it.
    fn write_new(&self, path: &Path, digest: &Sha256Digest, data: &[u8]) -> io::Result<u64> {
        let bytes = self.encode(data)?;
        let tmp = path.with_file_name(format!(".{}.{}.tmp", digest, std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(bytes.len() as u64)
    }

    /// A block as stored: zstd, then age when the disk is encrypted.
    pub fn encode(&self, data: &[u8]) -> io::Result<Vec<u8>> {
        let z = zstd::bulk::compress(data, LEVEL)?;
        let Some(enc) = &self.encrypt else {
            return Ok(z);
        };
        let enc = enc.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(z.len() + 256);
        let mut w = crypt::encrypting_writer(&enc, &mut out)?;
        w.write_all(&z)?;
        w.finish()?;
        Ok(out)
    }
}

/// Reads and checks the block `digest` from `path`; `max` bounds its size.
pub fn read_block(path: &Path, digest: &Sha256Digest, dec: &Decrypt, max: u64) -> Result<Vec<u8>> {
    let raw = read_stored(path)?;
    decode_block(&raw, digest, dec, max, &path.display().to_string())
}

/// A block's stored bytes; a missing block is a data error (the snapshot is damaged).
pub fn read_stored(path: &Path) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                Error::data(path.display().to_string(), "the block is missing")
                    .with_hint("the snapshot is damaged; `snap-disk verify` lists what is missing")
            }
            _ => Error::io(path, e),
        })?;
    Ok(raw)
}

/// What [`verify_map`] found.
#[derive(Debug, Default)]
pub struct MapCheck {
    /// Distinct blocks read.
    pub blocks: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// One line per missing or damaged block.
    pub bad: Vec<String>,
}

/// Reads every distinct block a map refers to (`read` gives its stored bytes
/// and a name for messages) and checks that it decodes to its sha256. A
/// missing or damaged block is listed; any other error ends the check.
pub fn verify_map<R: Read>(
    map: MapReader<R>,
    dec: &Decrypt,
    read: impl Fn(&Sha256Digest) -> Result<(Vec<u8>, String)>,
) -> Result<MapCheck> {
    let max = map.header.block_size;
    let mut check = MapCheck::default();
    let mut seen = HashSet::new();
    for entry in map {
        let (index, digest) = entry?;
        if !seen.insert(digest) {
            continue;
        }
        check.blocks += 1;
        let decoded = read(&digest).and_then(|(raw, what)| {
            check.bytes += raw.len() as u64;
            decode_block(&raw, &digest, dec, max, &what)
        });
        match decoded {
            Ok(_) => {}
            Err(e) if matches!(e.exit, Exit::Data | Exit::NoInput) => check
                .bad
                .push(format!("block {index}: {}: {}", e.context, e.cause)),
            Err(e) => return Err(e),
        }
    }
    Ok(check)
}

/// Decodes a stored block (age, zstd) and checks it hashes to `digest`.
pub fn decode_block(
    raw: &[u8],
    digest: &Sha256Digest,
    dec: &Decrypt,
    max: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let z;
    let compressed = if crypt::is_age(raw) {
        let mut r = crypt::decrypting_reader(dec, what, raw)?;
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)
            .map_err(|e| Error::data(what.to_string(), format!("cannot decrypt: {e}")))?;
        z = buf;
        &z[..]
    } else {
        raw
    };
    let data = zstd::bulk::decompress(compressed, max as usize)
        .map_err(|e| Error::data(what.to_string(), format!("not a zstd block: {e}")))?;
    if Sha256Digest::of(&data) != *digest {
        return Err(Error::data(
            what.to_string(),
            "the block's contents do not match its sha256",
        )
        .with_hint(
            "the block is damaged; restore from another copy (a destination) of this disk",
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored block reads back; a second put of it writes nothing.
    #[test]
    fn put_then_read() {
        let t = tempfile::tempdir().unwrap();
        let s = BlockStore::open(t.path(), None).unwrap();
        let data = vec![7u8; 5000];
        let d = Sha256Digest::of(&data);
        assert!(s.put(&d, &data).unwrap() > 0);
        assert_eq!(s.put(&d, &data).unwrap(), 0);
        let back = read_block(&s.path(&d), &d, &Decrypt::default(), 5000).unwrap();
        assert_eq!(back, data);
    }

    /// A block whose bytes were changed is refused as data error.
    #[test]
    fn damaged_block_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let s = BlockStore::open(t.path(), None).unwrap();
        let data = vec![1u8; 100];
        let d = Sha256Digest::of(&data);
        s.put(&d, &data).unwrap();
        fs::write(s.path(&d), zstd::bulk::compress(&[2u8; 100], 3).unwrap()).unwrap();
        let err = read_block(&s.path(&d), &d, &Decrypt::default(), 100).unwrap_err();
        assert_eq!(err.exit, crate::error::Exit::Data);
    }

    /// A block another disk holds is hard-linked, and counts as nothing new.
    #[test]
    fn shares_blocks_between_disks() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let a = BlockStore::open(&t.path().join("a"), None).unwrap();
        let b = BlockStore::open(&t.path().join("b"), None)
            .unwrap()
            .share_with(vec![t.path().join("a")]);
        let data = vec![9u8; 4000];
        let d = Sha256Digest::of(&data);
        assert!(a.put(&d, &data).unwrap() > 0);
        assert_eq!(b.put(&d, &data).unwrap(), 0);
        assert_eq!(
            fs::metadata(b.path(&d)).unwrap().ino(),
            fs::metadata(a.path(&d)).unwrap().ino()
        );
        let other = vec![8u8; 4000];
        assert!(b.put(&Sha256Digest::of(&other), &other).unwrap() > 0);
    }

    /// Encrypted blocks are age files and read back with the identity.
    #[test]
    fn encrypted_round_trip() {
        let id = age::x25519::Identity::generate();
        let t = tempfile::tempdir().unwrap();
        let enc = Encrypt::Recipients(vec![Box::new(id.to_public())]);
        let s = BlockStore::open(t.path(), Some(enc)).unwrap();
        let data = vec![3u8; 1000];
        let d = Sha256Digest::of(&data);
        s.put(&d, &data).unwrap();
        assert!(crypt::is_age(&fs::read(s.path(&d)).unwrap()));
        let dec = Decrypt {
            identities: vec![Box::new(id)],
            passphrase: None,
        };
        assert_eq!(read_block(&s.path(&d), &d, &dec, 1000).unwrap(), data);
        assert!(read_block(&s.path(&d), &d, &Decrypt::default(), 1000).is_err());
    }
}
