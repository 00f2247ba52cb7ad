//! Bringing an image back to a block map in place: find the blocks that
//! differ, check the ones that will be written, write only those.
//!
//! Used by snap-disk (blocks from the store) and snap-restore (blocks from a
//! destination): the caller says how to get a block, already checked against
//! its sha256. Comparing is idempotent, so a restore killed at any moment is
//! finished by running it again; nothing is written before every block it
//! needs has been fetched and checked once.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::blockmap::{Dense, MapHeader, MapReader};
use crate::blockpipe::{self, Holes, Job, is_zero};
use crate::error::{Error, Result};
use crate::hash::Sha256Digest;

/// Gets a block's bytes, checked against its sha256.
pub type Fetch<'a> = dyn Fn(&Sha256Digest) -> Result<Vec<u8>> + 'a;

/// A block of the image that differs from the snapshot, and what it must become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diff {
    pub index: u64,
    /// None: the block must read as zeros.
    pub want: Option<Sha256Digest>,
}

/// The blocks where `image` differs from the map (reads only what it must:
/// a hole where the map has zeros is equal without a read).
pub fn compare(image: &Path, map: &Path, progress: &dyn Fn(u64)) -> Result<(MapHeader, Vec<Diff>)> {
    let reader = MapReader::open(map)?;
    let header = reader.header;
    let file = File::open(image).map_err(|e| Error::io(image, e))?;
    let len = file.metadata().map_err(|e| Error::io(image, e))?.len();
    let mut holes = Holes::new(&file);
    let mut diffs = Vec::new();
    let mut dense = Dense::new(reader);
    // Blocks decided without a read go straight to `diffs` through this list;
    // the rest are compared on the workers.
    let mut decided: Vec<Diff> = Vec::new();
    let mut map_error = None;
    let jobs = std::iter::from_fn(|| {
        loop {
            let (index, want) = match dense.next()? {
                Ok(e) => e,
                Err(e) => {
                    map_error = Some(e);
                    return None;
                }
            };
            let start = index * header.block_size;
            let end = start + header.len_of(index);
            let past_end = start >= len;
            if past_end || holes.is_hole(start, end.min(len)) {
                if want.is_some() {
                    decided.push(Diff { index, want });
                }
                continue;
            }
            return Some(Ok(Job {
                offset: start,
                len: (end - start) as usize,
                with: (index, want),
            }));
        }
    });
    let work =
        |(index, want): (u64, Option<Sha256Digest>), data: Vec<u8>| -> Result<Option<Diff>> {
            let same = match want {
                None => is_zero(&data),
                Some(d) => Sha256Digest::of(&data) == d,
            };
            Ok((!same).then_some(Diff { index, want }))
        };
    let mut compared = 0u64;
    blockpipe::run(&file, &image.display().to_string(), jobs, work, |d| {
        compared += 1;
        progress(compared * header.block_size);
        diffs.extend(d);
        Ok(())
    })?;
    if let Some(e) = map_error {
        return Err(e);
    }
    diffs.extend(decided);
    diffs.sort_by_key(|d| d.index);
    Ok((header, diffs))
}

/// The blocks where the image, as the map `now` says it is, differs from
/// the map `target`: nothing of the image is read. `now` must be a map of
/// the image as it is (a restore's undo snapshot, just taken under the store
/// lock), with the same block size.
pub fn compare_maps(now: &Path, target: &Path) -> Result<(MapHeader, Vec<Diff>)> {
    let current = MapReader::open(now)?;
    let wanted = MapReader::open(target)?;
    let header = wanted.header;
    if current.header.block_size != header.block_size {
        return Err(Error::internal(
            format!("comparing {} with {}", now.display(), target.display()),
            "the maps have different block sizes",
        ));
    }
    let mut current = Dense::new(current);
    let mut diffs = Vec::new();
    for entry in Dense::new(wanted) {
        let (index, want) = entry?;
        let have = match current.next() {
            Some(e) => e?.1,
            None => None,
        };
        if have != want {
            diffs.push(Diff { index, want });
        }
    }
    // What the image has past the target's end is cut off by the caller.
    for rest in current {
        rest?;
    }
    Ok((header, diffs))
}

/// Fetches (and so checks) every block `diffs` will write, once each, before
/// the image is touched.
pub fn check_blocks(diffs: &[Diff], fetch: &Fetch) -> Result<()> {
    let mut seen = HashSet::new();
    for d in diffs.iter().filter_map(|d| d.want) {
        if seen.insert(d) {
            fetch(&d)?;
        }
    }
    Ok(())
}

/// Rewrites the blocks of `image` listed in `diffs`, sets its length, and flushes it.
pub fn apply(
    image: &Path,
    header: &MapHeader,
    diffs: &[Diff],
    fetch: &Fetch,
    progress: &dyn Fn(u64),
) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(|e| Error::io(image, e))?;
    let io_err = |e| Error::io(image, e);
    let len = file.metadata().map_err(io_err)?.len();
    if len < header.virtual_size {
        file.set_len(header.virtual_size).map_err(io_err)?;
    }
    for (n, d) in diffs.iter().enumerate() {
        let offset = d.index * header.block_size;
        let size = header.len_of(d.index);
        match d.want {
            Some(digest) => {
                let data = fetch(&digest)?;
                file.write_all_at(&data, offset).map_err(io_err)?;
            }
            None => crate::fsutil::zero_range(&file, offset, size).map_err(io_err)?,
        }
        progress((n as u64 + 1) * header.block_size);
    }
    if len > header.virtual_size {
        file.set_len(header.virtual_size).map_err(io_err)?;
    }
    file.sync_all().map_err(io_err)
}
