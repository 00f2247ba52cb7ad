//! Where a disk's snapshots live in the store, and its settings.
//!
//! ```text
//! disks/<disk>/disk.json            the image it belongs to, its block size, whether blocks are encrypted
//! disks/<disk>/<name>.json          one disk-snapshot record per snapshot (every method)
//! disks/<disk>/<name>.map.zst       the block map of a `blocks` snapshot
//! disks/<disk>/blocks/<aa>/<sha256> one zstd (then age) compressed block, named by the sha256 of its bytes
//! disks/<disk>/.unsynced            present while blocks are written but not yet flushed
//! disks/<disk>/.restoring           present while an in-place restore is rewriting the image
//! ```
//! A snapshot exists when its record exists: the map and the blocks are written
//! and flushed first, the record last. The same layout is used at destinations.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::hash::Sha256Digest;
use crate::record::DiskSnapshotRecord;
use crate::store::{Store, read_names};

/// The settings a disk keeps from its first snapshot on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskInfo {
    /// The image file, absolute.
    pub image: PathBuf,
    /// The block size of `blocks` snapshots.
    pub block_size: u64,
    /// True when blocks are age-encrypted; fixed for the disk, so that an
    /// encrypted snapshot never reuses a plain block.
    #[serde(default)]
    pub encrypted: bool,
}

/// One disk's folder in a store.
#[derive(Debug, Clone)]
pub struct DiskDir {
    pub root: PathBuf,
    pub name: String,
}

impl DiskDir {
    pub fn new(store: &Store, disk: &str) -> DiskDir {
        DiskDir {
            root: disks_dir(store).join(disk),
            name: disk.to_string(),
        }
    }

    pub fn info_path(&self) -> PathBuf {
        self.root.join("disk.json")
    }

    pub fn record_path(&self, snap: &str) -> PathBuf {
        self.root.join(format!("{snap}.json"))
    }

    pub fn map_path(&self, snap: &str) -> PathBuf {
        self.root.join(format!("{snap}.map.zst"))
    }

    pub fn blocks_dir(&self) -> PathBuf {
        self.root.join("blocks")
    }

    pub fn unsynced_marker(&self) -> PathBuf {
        self.root.join(".unsynced")
    }

    pub fn restoring_marker(&self) -> PathBuf {
        self.root.join(".restoring")
    }

    /// The disk's settings, if it has any snapshot yet.
    pub fn info(&self) -> Result<Option<DiskInfo>> {
        let path = self.info_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::data(path.display().to_string(), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    pub fn write_info(&self, info: &DiskInfo) -> Result<()> {
        fsutil::create_private_dir(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let path = self.info_path();
        let json = serde_json::to_vec_pretty(info).expect("disk info serializes");
        fsutil::write_atomic(&path, 0o600, true, |f| io::Write::write_all(f, &json))
            .map_err(|e| Error::io(&path, e))
    }

    /// The names of this disk's snapshots, from their record files alone.
    pub fn snapshot_names(&self) -> Result<Vec<String>> {
        Ok(read_names(&self.root)?
            .into_iter()
            .filter_map(|name| {
                let snap = name.strip_suffix(".json")?;
                (snap != "disk" && !snap.starts_with('.')).then(|| snap.to_string())
            })
            .collect())
    }

    /// Every snapshot record of this disk, oldest first.
    pub fn snapshots(&self) -> Result<Vec<DiskSnapshotRecord>> {
        let mut out = self
            .snapshot_names()?
            .iter()
            .map(|snap| self.record(snap))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The record of snapshot `snap`, or a no-input error naming it.
    pub fn record(&self, snap: &str) -> Result<DiskSnapshotRecord> {
        let path = self.record_path(snap);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::new(
                crate::error::Exit::NoInput,
                format!("disk {}", self.name),
                format!("no snapshot named {snap}"),
            )
            .with_hint(format!(
                "`snap-disk list {}` shows its snapshots",
                self.name
            )),
            _ => Error::io(&path, e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::data(path.display().to_string(), e))
    }

    /// `<name>.json.sig`: the signature of a blocks snapshot's record.
    pub fn sig_path(&self, snap: &str) -> PathBuf {
        self.root
            .join(format!("{snap}.json{}", crate::sign::SIG_SUFFIX))
    }

    /// Publishes a snapshot record under its name (never replacing one),
    /// signed by `signer` when given: the signature goes first, so that the
    /// record is never there unsigned.
    pub fn publish_record(
        &self,
        rec: &DiskSnapshotRecord,
        signer: Option<&crate::sign::Signer>,
    ) -> Result<()> {
        let path = self.record_path(&rec.name);
        let json = serde_json::to_vec_pretty(rec).expect("records serialize");
        if let Some(signer) = signer {
            let sig = self.sig_path(&rec.name);
            let text = signer.sign(&json)?;
            fsutil::write_atomic(&sig, 0o600, true, |f| {
                io::Write::write_all(f, text.as_bytes())
            })
            .map_err(|e| Error::io(&sig, e))?;
        }
        fsutil::write_atomic(&path, 0o600, false, |f| io::Write::write_all(f, &json))
            .map_err(|e| Error::io(&path, e))
    }
}

/// `<store>/disks`.
pub fn disks_dir(store: &Store) -> PathBuf {
    store.root.join("disks")
}

/// The names of the disks that have a folder (with its `disk.json`) in the store, sorted.
pub fn disk_names(store: &Store) -> Result<Vec<String>> {
    let dir = disks_dir(store);
    let mut names: Vec<String> = read_names(&dir)?
        .into_iter()
        .filter(|n| !n.starts_with('.') && dir.join(n).join("disk.json").exists())
        .collect();
    names.sort();
    Ok(names)
}

/// The path of a block under a blocks folder: `<aa>/<sha256 hex>`.
pub fn block_rel(digest: &Sha256Digest) -> String {
    let hex = digest.to_hex();
    format!("{}/{hex}", &hex[..2])
}

/// The block path under `blocks`.
pub fn block_path(blocks: &Path, digest: &Sha256Digest) -> PathBuf {
    blocks.join(block_rel(digest))
}

/// The format an image's first bytes announce, for the formats qemu knows by
/// magic (those snap-disk takes, and those it refuses by name rather than
/// read as raw).
pub fn sniff_format(head: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"KDMV", "vmdk"),
        (b"# Disk DescriptorFile", "vmdk"),
        (b"vhdxfile", "vhdx"),
        (b"conectix", "vpc"),
        (b"WithoutFreeSpace", "parallels"),
        (b"WithouFreSpacExt", "parallels"),
        (b"QED\0", "qed"),
        (b"Bochs Virtual HD Image", "bochs"),
        (b"#!/bin/sh\n#V2.0 Format\n", "cloop"),
        (b"LUKS\xba\xbe", "luks"),
    ];
    if head.len() >= 68 && head[64..68] == [0x7f, 0x10, 0xda, 0xbe] {
        return Some("vdi");
    }
    if head.starts_with(b"QFI\xfb") {
        // Version 1 is the old qcow format, which snap-disk does not take.
        return match head.get(4..8) {
            Some([0, 0, 0, 1]) => Some("qcow"),
            _ => Some("qcow2"),
        };
    }
    MAGICS
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, f)| *f)
}

/// The format an image's last 512 bytes announce: an Apple disk image
/// (`koly`). A fixed VHD's footer is there too, but QEMU reads such a file
/// as raw unless told otherwise, and so does snap-disk: its bytes, footer
/// included, are restored as they were.
pub fn sniff_tail(tail: &[u8]) -> Option<&'static str> {
    tail.starts_with(b"koly").then_some("dmg")
}

/// The formats snap-disk snapshots and restores (through qemu-img for all
/// but raw); an image of any other format is refused by name, never read as
/// raw.
pub const TAKEN_FORMATS: &[&str] = &["raw", "qcow2", "vmdk", "vhdx", "vpc", "vdi"];
