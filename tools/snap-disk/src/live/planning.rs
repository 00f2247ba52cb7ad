//! Planning what a live snapshot reads: which dirty bitmap tells what changed
//! since the parent (and when none can be trusted, everything), and which
//! blocks are data at all; then the fleecing export as a block source.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use snap_shared::blockmap::{Dense, MapReader};
use snap_shared::blockpipe::Source;
use snap_shared::error::{Error, Result};
use snap_shared::hash::Sha256Digest;

use super::discovery::{Bitmap, Node, bitmap_prefix};
use super::signals::Stop;
use crate::blocks::Take;
use crate::nbd;

/// The parent snapshot, as far as a live snapshot can build on it.
pub struct Parent {
    /// The bitmap that began at the parent's point in time.
    pub bitmap: String,
    pub map: PathBuf,
    pub virtual_size: u64,
}

/// What the run learned about the bitmaps before it starts: the one to read
/// changes from, or why every block is read.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Read only what this bitmap marks dirty.
    Bitmap(String),
    /// Read every allocated block, for this reason.
    Everything(String),
}

/// Settles the disk's bitmaps before a snapshot: a killed run's extra
/// bitmaps are merged into the parent's (or removed when it is unusable),
/// and the parent's bitmap is checked. Returns the QMP actions to run and
/// what the snapshot can read from.
pub fn plan_bitmaps(
    node: &Node,
    disk: &str,
    parent: Option<&Parent>,
    block_size: u64,
) -> (Vec<Value>, Since) {
    let prefix = bitmap_prefix(disk);
    let ours: Vec<&Bitmap> = node
        .bitmaps
        .iter()
        .filter(|b| b.name.starts_with(&prefix))
        .collect();
    let parent_bm = parent.and_then(|p| ours.iter().find(|b| b.name == p.bitmap));
    let others: Vec<&&Bitmap> = ours
        .iter()
        .filter(|b| Some(b.name.as_str()) != parent.map(|p| p.bitmap.as_str()))
        .collect();
    let why_not = match (parent, parent_bm) {
        (None, _) => Some("the disk's first snapshot read through QEMU".to_string()),
        (Some(p), None) => Some(format!(
            "the dirty bitmap {} of the last snapshot is gone (QEMU was restarted with a raw image, or it was removed)",
            p.bitmap
        )),
        (Some(_), Some(b)) if b.inconsistent => Some(format!(
            "the dirty bitmap {} is marked in use: QEMU stopped without saving it",
            b.name
        )),
        (Some(_), Some(b)) if b.granularity != block_size => Some(format!(
            "the dirty bitmap {} tracks {}-byte blocks, not {block_size}",
            b.name, b.granularity
        )),
        // Disabled with no newer bitmap of ours to merge in: writes went unseen.
        (Some(_), Some(b)) if !b.recording && others.is_empty() => Some(format!(
            "the dirty bitmap {} was not recording, and no other bitmap saw the writes",
            b.name
        )),
        (Some(p), Some(_)) if p.virtual_size != node.virtual_size => {
            Some("the disk changed size since the last snapshot".to_string())
        }
        (Some(p), Some(_)) if !p.map.is_file() => {
            Some("the last snapshot's block map is missing".to_string())
        }
        _ => others
            .iter()
            .find(|b| b.inconsistent)
            .map(|b| format!("the dirty bitmap {} is marked in use", b.name)),
    };
    let remove = |name: &str| json!({"type": "block-dirty-bitmap-remove", "data": {"node": node.name, "name": name}});
    let mut actions = Vec::new();
    match (why_not, parent_bm) {
        (None, Some(b)) => {
            if !others.is_empty() {
                let names: Vec<&str> = others.iter().map(|o| o.name.as_str()).collect();
                actions.push(json!({"type": "block-dirty-bitmap-merge",
                    "data": {"node": node.name, "target": b.name, "bitmaps": names}}));
            }
            if !b.recording {
                actions.push(json!({"type": "block-dirty-bitmap-enable",
                    "data": {"node": node.name, "name": b.name}}));
            }
            actions.extend(others.iter().map(|o| remove(&o.name)));
            (actions, Since::Bitmap(b.name.clone()))
        }
        (why, _) => {
            actions.extend(ours.iter().map(|o| remove(&o.name)));
            (actions, Since::Everything(why.unwrap_or_default()))
        }
    }
}

/// Which blocks to read, from the export's allocation and dirty extents:
/// a block is read when it holds data and (with a parent) is dirty; a clean
/// block is the parent's; the rest are zeros.
pub fn plan_blocks(
    block_size: u64,
    size: u64,
    data: &[nbd::Extent],
    dirty: Option<&[nbd::Extent]>,
    parent: &[Option<Sha256Digest>],
) -> Vec<(u64, Take)> {
    let blocks = size.div_ceil(block_size);
    let has_data = covered(block_size, blocks, data, |f| f & nbd::STATE_HOLE == 0);
    let changed = dirty.map(|d| covered(block_size, blocks, d, |f| f & nbd::STATE_DIRTY != 0));
    (0..blocks)
        .filter_map(|i| {
            let i_us = i as usize;
            match &changed {
                Some(c) if !c[i_us] => parent
                    .get(i_us)
                    .copied()
                    .flatten()
                    .map(|d| (i, Take::Same(d))),
                _ => has_data[i_us].then_some((i, Take::Read)),
            }
        })
        .collect()
}

/// Connects to the NBD export `name` at `socket` and plans the blocks to
/// read: its allocation, and with a parent, the dirty extents of `bitmap`
/// (a `qemu:dirty-bitmap:` context the export carries).
pub(crate) fn plan_export(
    socket: &Path,
    name: &str,
    bitmap: Option<&str>,
    parent: Option<&Parent>,
    block_size: u64,
    stop: &Stop,
) -> Result<(Export, Vec<(u64, Take)>)> {
    let mut meta = vec![nbd::ALLOCATION.to_string()];
    if let Some(b) = bitmap {
        meta.push(nbd::bitmap_context(b));
    }
    let nbd_err = |e: std::io::Error| Error::io_ctx(format!("NBD export {}", socket.display()), e);
    let mut client = nbd::Client::connect(socket, name, &meta).map_err(nbd_err)?;
    let data = client.all_extents(nbd::ALLOCATION).map_err(nbd_err)?;
    let (dirty, parent_map) = match (bitmap, parent) {
        (Some(b), Some(p)) => (
            Some(
                client
                    .all_extents(&nbd::bitmap_context(b))
                    .map_err(nbd_err)?,
            ),
            parent_blocks(&p.map)?,
        ),
        _ => (None, Vec::new()),
    };
    let plan = plan_blocks(
        block_size,
        client.size(),
        &data,
        dirty.as_deref(),
        &parent_map,
    );
    let export = Export {
        client: Mutex::new(client),
        stop: stop.clone(),
    };
    Ok((export, plan))
}

/// For each block, whether some extent whose flags pass `hit` touches it.
pub(crate) fn covered(
    bs: u64,
    blocks: u64,
    extents: &[nbd::Extent],
    hit: impl Fn(u32) -> bool,
) -> Vec<bool> {
    let mut out = vec![false; blocks as usize];
    for e in extents.iter().filter(|e| hit(e.flags) && e.len > 0) {
        let first = e.offset / bs;
        let last = ((e.offset + e.len - 1) / bs).min(blocks.saturating_sub(1));
        for b in first..=last {
            out[b as usize] = true;
        }
    }
    out
}

/// The parent map as one digest (or zeros) per block.
pub fn parent_blocks(map: &Path) -> Result<Vec<Option<Sha256Digest>>> {
    let mut out = Vec::new();
    for entry in Dense::new(MapReader::open(map)?) {
        out.push(entry?.1);
    }
    Ok(out)
}

/// An NBD export read by the block pipeline (one request at a time); a
/// signal makes the next read fail, so the run stops and cleans up.
pub struct Export {
    pub(crate) client: Mutex<nbd::Client>,
    pub(crate) stop: Stop,
}

impl Source for Export {
    fn read_range(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        if self.stop.requested() {
            return Err(std::io::Error::other("interrupted by a signal"));
        }
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0; len];
        let end = (offset + len as u64).min(c.size());
        if end > offset {
            c.read(offset, &mut buf[..(end - offset) as usize])?;
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::discovery::bitmap_name;
    use super::*;

    fn node(bitmaps: Vec<Bitmap>) -> Node {
        Node {
            name: "fmt".into(),
            format: "qcow2".into(),
            virtual_size: 8 << 20,
            bitmaps,
            keeps_bitmaps: true,
        }
    }

    fn bm(name: &str) -> Bitmap {
        Bitmap {
            name: name.into(),
            granularity: 1 << 20,
            recording: true,
            persistent: true,
            inconsistent: false,
        }
    }

    fn parent(dir: &Path) -> Parent {
        let map = dir.join("p.map.zst");
        fs::write(&map, b"").unwrap();
        Parent {
            bitmap: bitmap_name("d", "p"),
            map,
            virtual_size: 8 << 20,
        }
    }

    /// A usable parent bitmap means a changed-blocks read, and a killed
    /// run's extra bitmap is merged into it before it is removed.
    #[test]
    fn leftover_bitmap_merges_into_the_parents() {
        let t = tempfile::tempdir().unwrap();
        let mut old = bm(&bitmap_name("d", "p"));
        old.recording = false;
        let n = node(vec![
            old,
            bm(&bitmap_name("d", "killed")),
            bm("someone-elses"),
        ]);
        let (actions, since) = plan_bitmaps(&n, "d", Some(&parent(t.path())), 1 << 20);
        assert_eq!(since, Since::Bitmap(bitmap_name("d", "p")));
        let kinds: Vec<&str> = actions
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "block-dirty-bitmap-merge",
                "block-dirty-bitmap-enable",
                "block-dirty-bitmap-remove"
            ]
        );
        assert_eq!(actions[2]["data"]["name"], bitmap_name("d", "killed"));
    }

    /// A disabled parent bitmap with nothing to merge in missed writes: everything is read.
    #[test]
    fn disabled_bitmap_alone_means_a_full_read() {
        let t = tempfile::tempdir().unwrap();
        let mut b = bm(&bitmap_name("d", "p"));
        b.recording = false;
        let (_, since) = plan_bitmaps(&node(vec![b]), "d", Some(&parent(t.path())), 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("not recording")));
    }

    /// An in-use (inconsistent) bitmap is never trusted: everything is read.
    #[test]
    fn inconsistent_bitmap_means_a_full_read() {
        let t = tempfile::tempdir().unwrap();
        let mut b = bm(&bitmap_name("d", "p"));
        b.inconsistent = true;
        let (actions, since) = plan_bitmaps(&node(vec![b]), "d", Some(&parent(t.path())), 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("in use")));
        assert_eq!(actions.len(), 1, "the bad bitmap is removed");
    }

    /// No parent bitmap (first snapshot, or QEMU restarted on a raw image): a full read.
    #[test]
    fn missing_bitmap_means_a_full_read() {
        let t = tempfile::tempdir().unwrap();
        let (_, since) = plan_bitmaps(&node(vec![]), "d", Some(&parent(t.path())), 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("gone")));
        let (_, since) = plan_bitmaps(&node(vec![]), "d", None, 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("first snapshot")));
    }

    /// Dirty blocks are read, clean ones taken from the parent, holes skipped.
    #[test]
    fn plan_reads_only_dirty_data() {
        let mb = 1u64 << 20;
        let d = |n: u8| Some(Sha256Digest::of(&[n]));
        let parent = vec![d(0), d(1), None, d(3)];
        let data = [
            nbd::Extent {
                offset: 0,
                len: 2 * mb,
                flags: 0,
            },
            nbd::Extent {
                offset: 2 * mb,
                len: mb,
                flags: nbd::STATE_HOLE | nbd::STATE_ZERO,
            },
            nbd::Extent {
                offset: 3 * mb,
                len: mb,
                flags: 0,
            },
        ];
        // Dirty from the middle of block 1 to the middle of block 2 (a hole).
        let dirty = [
            nbd::Extent {
                offset: 0,
                len: mb + mb / 2,
                flags: 0,
            },
            nbd::Extent {
                offset: mb + mb / 2,
                len: mb,
                flags: nbd::STATE_DIRTY,
            },
            nbd::Extent {
                offset: 2 * mb + mb / 2,
                len: mb + mb / 2,
                flags: 0,
            },
        ];
        let plan = plan_blocks(mb, 4 * mb, &data, Some(&dirty), &parent);
        assert_eq!(
            plan,
            [
                (0, Take::Same(d(0).unwrap())),
                (1, Take::Read),
                (3, Take::Same(d(3).unwrap()))
            ]
        );
        let full = plan_blocks(mb, 4 * mb, &data, None, &[]);
        assert_eq!(full, [(0, Take::Read), (1, Take::Read), (3, Take::Read)]);
    }
}
