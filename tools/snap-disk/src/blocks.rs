//! The `blocks` method: an image cut into fixed blocks, each stored once.
//!
//! - snapshot: read the blocks a plan names (an image file's data, found by
//!   SEEK_DATA; or a live disk's changed blocks, see `live`), drop zero
//!   blocks, hash the rest, store the blocks the store lacks, write the map;
//! - restore in place: compare the image with the map, check the blocks that
//!   differ, rewrite only those (a hole is punched for a zero block). It is
//!   idempotent, so a restore killed at any moment is finished by running it again;
//! - write out: the whole snapshot as a new sparse file, or a stream (export);
//! - verify: every block of a map is there and hashes right;
//! - gc: remove blocks no map refers to.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Result};
use snap_shared::hash::Sha256Digest;

use snap_shared::blockmap::{Dense, MapHeader, MapReader, MapWriter};
use snap_shared::blockpipe::{self, Holes, Job, Source, is_zero};
use snap_shared::blockstore::{BlockStore, read_block, read_stored, verify_map};
use snap_shared::disks::block_path;

/// What a snapshot read and stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapStats {
    /// Non-zero blocks in the map.
    pub blocks: u64,
    /// Blocks this snapshot stored (the store lacked them).
    pub new_blocks: u64,
    /// Stored (compressed) bytes this snapshot added.
    pub new_bytes: u64,
    /// Stored bytes of all the blocks the snapshot refers to.
    pub stored_bytes: u64,
    /// Image bytes read (holes are not read).
    pub read_bytes: u64,
}

/// The outcome of one block on a worker.
struct Stored {
    index: u64,
    digest: Option<Sha256Digest>,
    new: u64,
    stored: u64,
    read: u64,
}

/// What a snapshot does with one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Read it from the source.
    Read,
    /// It has not changed since the parent snapshot, which stored it as this block.
    Same(Sha256Digest),
}

/// The plan for an image file: every block that is not wholly a hole is read.
pub fn plan_file(file: &File, header: MapHeader) -> impl Iterator<Item = (u64, Take)> + Send + '_ {
    let mut holes = Holes::new(file);
    (0..header.block_count()).filter_map(move |index| {
        let start = index * header.block_size;
        let end = start + header.len_of(index);
        (!holes.is_hole(start, end)).then_some((index, Take::Read))
    })
}

/// Snapshots the blocks `plan` names (in increasing order; the others are
/// zeros) from `source` into `store`, writing the map to `map`.
pub fn snapshot(
    source: &(impl Source + ?Sized),
    what: &str,
    header: MapHeader,
    plan: impl Iterator<Item = (u64, Take)> + Send,
    store: &BlockStore,
    map: &mut MapWriter<File>,
    progress: &dyn Fn(u64),
) -> Result<SnapStats> {
    let jobs = plan.map(|(index, take)| {
        Ok(Job {
            offset: index * header.block_size,
            len: match take {
                Take::Read => header.len_of(index) as usize,
                Take::Same(_) => 0,
            },
            with: (index, take),
        })
    });
    let mut stats = SnapStats::default();
    let work = |(index, take): (u64, Take), data: Vec<u8>| match take {
        Take::Read => store_block(store, index, &data),
        Take::Same(digest) => {
            let stored = store.stored_len(&digest).ok_or_else(|| {
                Error::data(
                    store.path(&digest).display().to_string(),
                    "missing: the parent snapshot's block is gone",
                )
                .with_hint("run `snap-disk verify` on the disk")
            })?;
            Ok(Stored {
                index,
                digest: Some(digest),
                new: 0,
                stored,
                read: 0,
            })
        }
    };
    blockpipe::run(source, what, jobs, work, |s: Stored| {
        stats.read_bytes += s.read;
        progress((s.index + 1) * header.block_size);
        let Some(d) = s.digest else { return Ok(()) };
        stats.blocks += 1;
        stats.new_blocks += u64::from(s.new > 0);
        stats.new_bytes += s.new;
        stats.stored_bytes += s.stored;
        map.push(s.index, &d)
            .map_err(|e| Error::io_ctx("writing the block map", e))
    })?;
    Ok(stats)
}

/// Hashes a block read from the image and stores it unless it is zeros or stored already.
fn store_block(store: &BlockStore, index: u64, data: &[u8]) -> Result<Stored> {
    let read = data.len() as u64;
    if is_zero(data) {
        return Ok(Stored {
            index,
            digest: None,
            new: 0,
            stored: 0,
            read,
        });
    }
    let digest = Sha256Digest::of(data);
    let new = store
        .put(&digest, data)
        .map_err(|e| store_error(&store.path(&digest), e))?;
    let stored = match new {
        0 => store.stored_len(&digest).unwrap_or(0),
        n => n,
    };
    Ok(Stored {
        index,
        digest: Some(digest),
        new,
        stored,
        read,
    })
}

fn store_error(path: &Path, e: io::Error) -> Error {
    let full = snap_shared::error::is_disk_full(&e);
    let err = Error::io(path, e);
    match full {
        true => err.with_hint(
            "the store's disk is full; no snapshot was made and earlier ones are intact",
        ),
        false => err,
    }
}

/// Writes the whole snapshot into `out`, a new file: data blocks are written,
/// zero blocks left as holes.
pub fn write_sparse(
    map: &Path,
    blocks: &Path,
    dec: &Decrypt,
    out: &File,
    progress: &dyn Fn(u64),
) -> Result<MapHeader> {
    let reader = MapReader::open(map)?;
    let header = reader.header;
    out.set_len(header.virtual_size)
        .map_err(|e| Error::io_ctx("the new image", e))?;
    for entry in reader {
        let (index, digest) = entry?;
        let data = read_block(
            &block_path(blocks, &digest),
            &digest,
            dec,
            header.block_size,
        )?;
        out.write_all_at(&data, index * header.block_size)
            .map_err(|e| Error::io_ctx("the new image", e))?;
        progress((index + 1) * header.block_size);
    }
    Ok(header)
}

/// Streams the whole snapshot, zeros included, into `out` (a compressor).
pub fn write_stream(
    map: &Path,
    blocks: &Path,
    dec: &Decrypt,
    out: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> Result<MapHeader> {
    let reader = MapReader::open(map)?;
    let header = reader.header;
    let zeros = vec![0u8; header.block_size as usize];
    let io_err = |e| Error::io_ctx("the export", e);
    for entry in Dense::new(reader) {
        let (index, digest) = entry?;
        let len = header.len_of(index) as usize;
        match digest {
            Some(d) => out
                .write_all(&read_block(
                    &block_path(blocks, &d),
                    &d,
                    dec,
                    header.block_size,
                )?)
                .map_err(io_err)?,
            None => out.write_all(&zeros[..len]).map_err(io_err)?,
        }
        progress((index + 1) * header.block_size);
    }
    Ok(header)
}

/// Reads every block of the map from the store and checks its hash (each
/// distinct block once); returns one line per missing or damaged block.
pub fn verify(map: &Path, blocks: &Path, dec: &Decrypt) -> Result<Vec<String>> {
    let check = verify_map(MapReader::open(map)?, dec, |d| {
        let path = block_path(blocks, d);
        Ok((read_stored(&path)?, path.display().to_string()))
    })?;
    Ok(check.bad)
}

/// The digests every map in `maps` refers to.
pub fn referenced(maps: &[std::path::PathBuf]) -> Result<HashSet<Sha256Digest>> {
    let mut set = HashSet::new();
    for m in maps {
        for entry in MapReader::open(m)? {
            set.insert(entry?.1);
        }
    }
    Ok(set)
}

/// Removes the blocks (and leftover temporary files) no map refers to; returns
/// how many blocks went and the bytes they held.
pub fn gc(blocks: &Path, keep: &HashSet<Sha256Digest>) -> Result<(u64, u64)> {
    let (mut count, mut bytes) = (0, 0);
    let Ok(fans) = fs::read_dir(blocks) else {
        return Ok((0, 0));
    };
    for fan in fans.flatten() {
        let Ok(entries) = fs::read_dir(fan.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let wanted = name
                .parse::<Sha256Digest>()
                .is_ok_and(|d| keep.contains(&d));
            if wanted {
                continue;
            }
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(e.path()) {
                Ok(()) => {
                    count += u64::from(!name.starts_with('.'));
                    bytes += size;
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(Error::io(&e.path(), err)),
            }
        }
    }
    Ok((count, bytes))
}

/// Creates a new file for an image under a temporary name beside `out`.
pub fn create_temp(out: &Path) -> Result<(std::path::PathBuf, File)> {
    let tmp = snap_shared::fsutil::temp_name(out, "partial");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e).with_exit(snap_shared::error::Exit::CantCreate))?;
    Ok((tmp, file))
}
