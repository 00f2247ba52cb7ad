//! Differencing VHDX images (Hyper-V checkpoints, disks made from a parent),
//! which QEMU cannot open, read through the `vhdx-core` crate.
//!
//! vhdx-core (pure Rust, no unsafe, bounded memory) reads dynamic, fixed and
//! differencing files, replays a dirty log, and serves a child's absent
//! blocks and sectors from a parent reader; it was checked here against
//! qemu-img on dynamic files and against files whose every block state the
//! tests write by hand. It does not find the parent, so this module reads
//! the parent locator (MS-VHDX 2.6.2.6): the parent is `relative_path` from
//! the child's folder, else the file name of `absolute_win32_path` or
//! `volume_path` beside the child; and its DataWriteGuid must equal the
//! child's `parent_linkage`, since a parent written after the child was
//! made no longer holds what the child's absent blocks mean.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use snap_shared::blockpipe::Source;
use snap_shared::error::{Error, Result};
use vhdx_core::metadata::{GUID_PARENT_LOCATOR, parse_metadata};
use vhdx_core::region::parse_region_table;

/// Parents deeper than this are refused (a loop, or a hostile file).
const MAX_CHAIN: usize = 16;

/// What a VHDX file says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub virtual_size: u64,
    /// For a differencing file: the parent's path and the linkage it must have.
    pub parent: Option<(PathBuf, String)>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::data(path.display().to_string(), what)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

/// Reads the headers, region table and metadata of `path`.
pub fn info(path: &Path) -> Result<Info> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = vec![0u8; 320 << 10];
    file.read_exact_at(&mut head, 0)
        .map_err(|_| bad(path, "too short for a VHDX"))?;
    let regions = parse_region_table(&head, 192 << 10, len)
        .or_else(|_| parse_region_table(&head, 256 << 10, len))
        .map_err(|e| bad(path, format!("VHDX region table: {e}")))?;
    let md = regions.metadata;
    if md.length > 16 << 20 {
        return Err(bad(path, "VHDX metadata region over 16 MiB"));
    }
    let mut region = vec![0u8; md.length as usize];
    file.read_exact_at(&mut region, md.file_offset)
        .map_err(|e| Error::io(path, e))?;
    let meta = parse_metadata(&region, 0, md.length)
        .map_err(|e| bad(path, format!("VHDX metadata: {e}")))?;
    let parent = match meta.has_parent {
        false => None,
        true => Some(locate_parent(path, &region)?),
    };
    Ok(Info {
        virtual_size: meta.virtual_disk_size,
        parent,
    })
}

/// The metadata item with `guid`, from the metadata table.
fn item<'a>(region: &'a [u8], guid: &[u8; 16]) -> Option<&'a [u8]> {
    let count = le16(region, 10) as usize;
    (0..count.min(2047)).find_map(|i| {
        let e = region.get(32 + 32 * i..64 + 32 * i)?;
        if &e[..16] != guid {
            return None;
        }
        let (off, len) = (le32(e, 16) as usize, le32(e, 20) as usize);
        region.get(off..off.checked_add(len)?)
    })
}

/// The parent locator's key/value pairs (UTF-16 strings).
fn locator_pairs(loc: &[u8]) -> Option<Vec<(String, String)>> {
    let count = le16(loc.get(..20)?, 18) as usize;
    let text = |off: usize, len: usize| -> Option<String> {
        let raw = loc.get(off..off.checked_add(len)?)?;
        let units: Vec<u16> = raw.chunks_exact(2).map(|c| le16(c, 0)).collect();
        String::from_utf16(&units).ok()
    };
    (0..count.min(256))
        .map(|i| {
            let e = loc.get(20 + 12 * i..32 + 12 * i)?;
            let (ko, vo) = (le32(e, 0) as usize, le32(e, 4) as usize);
            let (kl, vl) = (le16(e, 8) as usize, le16(e, 10) as usize);
            Some((text(ko, kl)?, text(vo, vl)?))
        })
        .collect()
}

/// Finds the parent file a differencing VHDX names.
fn locate_parent(child: &Path, region: &[u8]) -> Result<(PathBuf, String)> {
    let loc = item(region, &GUID_PARENT_LOCATOR)
        .ok_or_else(|| bad(child, "a differencing VHDX without a parent locator"))?;
    let pairs = locator_pairs(loc).ok_or_else(|| bad(child, "a damaged VHDX parent locator"))?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let linkage = get("parent_linkage")
        .ok_or_else(|| bad(child, "the VHDX parent locator has no parent_linkage"))?;
    let dir = snap_shared::fsutil::parent_of(child);
    let mut tried = Vec::new();
    if let Some(rel) = get("relative_path") {
        tried.push(dir.join(rel.replace('\\', "/")));
    }
    for key in ["absolute_win32_path", "volume_path"] {
        if let Some(name) = get(key).and_then(|p| p.rsplit('\\').next().map(str::to_string)) {
            tried.push(dir.join(name));
        }
    }
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok((p.clone(), linkage)),
        None => Err(Error::new(
            snap_shared::error::Exit::NoInput,
            child.display().to_string(),
            format!(
                "its parent VHDX is not found (looked for {})",
                tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_hint("put the parent beside the child, where its relative path points")),
    }
}

/// The DataWriteGuid of the active header (the valid one with the higher
/// sequence number), as `{XXXXXXXX-…}` text.
fn data_write_guid(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut best: Option<(u64, [u8; 16])> = None;
    for at in [64u64 << 10, 128 << 10] {
        let mut h = vec![0u8; 4096];
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.read_exact(&mut h))
            .map_err(|e| Error::io(path, e))?;
        let stored = le32(&h, 4);
        h[4..8].fill(0);
        if &h[..4] != b"head" || crc32c::crc32c(&h) != stored {
            continue;
        }
        let seq = u64::from_le_bytes(h[8..16].try_into().unwrap());
        if best.is_none_or(|(s, _)| seq > s) {
            best = Some((seq, h[32..48].try_into().unwrap()));
        }
    }
    let (_, g) = best.ok_or_else(|| bad(path, "no valid VHDX header"))?;
    Ok(format!(
        "{{{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{}}}",
        g[3],
        g[2],
        g[1],
        g[0],
        g[5],
        g[4],
        g[7],
        g[6],
        g[8],
        g[9],
        g[10..]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<String>()
    ))
}

/// Opens `path` with its whole parent chain, checking every link.
pub fn open_chain(path: &Path) -> Result<vhdx_core::VhdxReader> {
    open_at(path, 0)
}

fn open_at(path: &Path, depth: usize) -> Result<vhdx_core::VhdxReader> {
    if depth > MAX_CHAIN {
        return Err(bad(
            path,
            format!("a VHDX parent chain deeper than {MAX_CHAIN}"),
        ));
    }
    let me = info(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let opened = match &me.parent {
        None => vhdx_core::VhdxReader::from_backing(vhdx_core::Backing::File(file), None),
        Some((parent, linkage)) => {
            let actual = data_write_guid(parent)?;
            if !actual.eq_ignore_ascii_case(linkage.trim()) {
                return Err(bad(
                    path,
                    format!(
                        "its parent {} was written after it was made (parent_linkage {linkage}, the parent's {actual})",
                        parent.display()
                    ),
                ));
            }
            let up = open_at(parent, depth + 1)?;
            vhdx_core::VhdxReader::from_backing_with_parent(vhdx_core::Backing::File(file), up)
        }
    };
    opened.map_err(|e| bad(path, format!("VHDX: {e}")))
}

/// A VHDX chain as the blocks pipeline's source.
pub struct Chain(Mutex<vhdx_core::VhdxReader>);

impl Chain {
    pub fn open(path: &Path) -> Result<Chain> {
        Ok(Chain(Mutex::new(open_chain(path)?)))
    }
}

impl Source for Chain {
    fn read_range(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let size = r.virtual_disk_size();
        let mut buf = vec![0u8; len];
        let end = (offset + len as u64).min(size);
        if end > offset {
            r.seek(SeekFrom::Start(offset))?;
            r.read_exact(&mut buf[..(end - offset) as usize])?;
        }
        Ok(buf)
    }
}
