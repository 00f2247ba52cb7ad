//! `snap-restore restore disks/<disk>/<name> --to IMAGE`: a `blocks` disk
//! snapshot from the store or any destination, into a raw image file.
//!
//! An existing image is compared with the snapshot's block map first, and
//! only the blocks that differ are fetched and written, so bringing back a
//! small change from a bucket costs a small download. Fetched blocks are kept
//! (checked) in `.<image>.snap-restore/` beside the image until the restore is
//! done: a restore killed at any moment, rerun, fetches only what it lacks
//! and compares again. Nothing is written before every block needed was
//! fetched and checked, and never while a process has the image open.

use std::fs;
use std::path::{Path, PathBuf};

use snap_cli::{Reporter, Tally};
use snap_shared::blockdiff;
use snap_shared::blockstore::{decode_block, read_block};
use snap_shared::crypt::Decrypt;
use snap_shared::disks::block_rel;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::hash::Sha256Digest;
use snap_shared::record::{DiskSnapshotRecord, Extra, OutcomeRecord, SCHEMA};
use snap_shared::size::human_bytes;

use crate::loc::Loc;
use crate::source::Source;
use crate::trust::{Signed, Trust};

/// `disks/<disk>/<name>` as the user wrote it, split.
pub fn parse_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("disks/")?;
    let (disk, snap) = rest.split_once('/')?;
    let ok = |s: &str| snap_shared::id::check_name(s).is_ok();
    (ok(disk) && ok(snap)).then_some((disk, snap))
}

/// A file of the disk's folder at the source.
pub fn loc(source: &Source, disk: &str, rel: &str) -> Loc {
    match source {
        Source::Store(s) => Loc::Path(s.root.join("disks").join(disk).join(rel)),
        Source::Folder(p) => Loc::Path(p.join("disks").join(disk).join(rel)),
        Source::Bucket(d) => Loc::Object(d.clone(), format!("disks/{disk}/{rel}")),
    }
}

fn cache_dir(image: &Path) -> PathBuf {
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    fsutil::parent_of(image).join(format!(".{name}.snap-restore"))
}

/// Restores `disks/<disk>/<snap>` into the image file `to` (created if missing).
pub fn restore(
    source: &Source,
    disk: &str,
    snap: &str,
    to: &Path,
    (dec, trust): (&Decrypt, &Trust),
    report: &Reporter,
) -> Result<OutcomeRecord> {
    let (rec, rec_loc) = read_record(source, disk, snap)?;
    if rec.method != "blocks" {
        return Err(Error::usage(
            rec_loc.show(),
            format!(
                "a {} snapshot lives in its image; use snap-disk restore",
                rec.method
            ),
        ));
    }
    let signed = trusted(&rec, &rec_loc, trust)?;
    signed.warn(&format!("disks/{disk}/{snap}"), report);
    refuse_foreign_image(to)?;
    let cache = cache_dir(to);
    fsutil::create_private_dir(&cache).map_err(|e| Error::io(&cache, e))?;
    let map = cache.join("map.zst");
    // The map kept by an earlier run is checked as a fetched one is.
    let kept = fs::read(&map)
        .ok()
        .filter(|b| check_map(&rec, b, "").is_ok());
    if kept.is_none() {
        let at = loc(source, disk, &format!("{snap}.map.zst"));
        let bytes = at.read_all()?;
        check_map(&rec, &bytes, &at.show())?;
        fsutil::write_atomic(&map, 0o600, true, |f| std::io::Write::write_all(f, &bytes))
            .map_err(|e| Error::io(&map, e))?;
    }
    if !to.exists() {
        fs::File::create(to).map_err(|e| Error::io(to, e).with_exit(Exit::CantCreate))?;
    }
    let total = rec.virtual_size;
    let progress = |done: u64| report.tally(|| Tally::bytes("comparing", done, Some(total)));
    let (header, diffs) = blockdiff::compare(to, &map, &progress)?;
    let fetched = std::cell::Cell::new(0u64);
    let fetch = |d: &Sha256Digest| -> Result<Vec<u8>> {
        let kept = cache.join(d.to_hex());
        if kept.exists() {
            return read_block(&kept, d, dec, header.block_size);
        }
        let at = loc(source, disk, &format!("blocks/{}", block_rel(d)));
        let raw = at.read_all()?;
        let data = decode_block(&raw, d, dec, header.block_size, &at.show())?;
        fetched.set(fetched.get() + raw.len() as u64);
        fsutil::write_atomic(&kept, 0o600, true, |f| std::io::Write::write_all(f, &raw))
            .map_err(|e| Error::io(&kept, e))?;
        Ok(data)
    };
    blockdiff::check_blocks(&diffs, &fetch)?;
    let written: u64 = diffs.iter().map(|d| header.len_of(d.index)).sum();
    let progress = |done: u64| report.tally(|| Tally::bytes("writing", done, Some(written)));
    blockdiff::apply(to, &header, &diffs, &fetch, &progress)?;
    fsutil::remove_tree(&cache).map_err(|e| Error::io(&cache, e))?;
    report.note(&format!(
        "{} is disks/{disk}/{snap}: {} of {} blocks rewritten, {} fetched",
        to.display(),
        diffs.len(),
        header.block_count(),
        human_bytes(fetched.get())
    ));
    let mut extra = Extra::new();
    extra.insert("fetched".into(), fetched.get().into());
    extra.insert("signed_by".into(), signed.json());
    Ok(OutcomeRecord {
        schema: SCHEMA.into(),
        what: format!("disks/{disk}/{snap}"),
        to: Some(to.display().to_string()),
        files: 1,
        bytes: written,
        errors: 0,
        extra,
    })
}

/// Refuses an image a process holds, and one that is not raw (a qcow2's
/// bytes are not its disk's bytes: rewriting them by a raw map would ruin it).
fn refuse_foreign_image(to: &Path) -> Result<()> {
    let Ok(mut f) = fs::File::open(to) else {
        return Ok(());
    };
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut f, &mut head).unwrap_or(0);
    if let Some(fmt) = snap_shared::disks::sniff_format(&head[..n]) {
        return Err(Error::usage(
            to.display().to_string(),
            format!("is a {fmt} image; a blocks snapshot restores into a raw image"),
        )
        .with_hint("restore to a new .raw file, then qemu-img convert it"));
    }
    snap_shared::holders::refuse_if_held(to, "restoring")
}

/// Every disk snapshot record at the source (`disks/<disk>/<name>.json`), by disk then time.
pub fn records(source: &Source) -> Result<Vec<DiskSnapshotRecord>> {
    let mut out = match source {
        Source::Bucket(d) => in_bucket(source, d)?,
        Source::Store(s) => in_folder(&s.root)?,
        Source::Folder(p) => in_folder(p)?,
    };
    out.sort_by(|a, b| a.disk.cmp(&b.disk).then(a.created.cmp(&b.created)));
    Ok(out)
}

/// A store or a destination folder: the same layout as the store's.
fn in_folder(root: &Path) -> Result<Vec<DiskSnapshotRecord>> {
    let root = snap_shared::store::Store::new(root);
    let mut out = Vec::new();
    for disk in snap_shared::disks::disk_names(&root)? {
        out.extend(snap_shared::disks::DiskDir::new(&root, &disk).snapshots()?);
    }
    Ok(out)
}

/// A bucket: the records found by listing `disks/`.
fn in_bucket(source: &Source, dest: &snap_dest::Dest) -> Result<Vec<DiskSnapshotRecord>> {
    let mut out = Vec::new();
    for (key, _) in dest.list("disks")? {
        let mut parts = key.strip_prefix("disks/").unwrap_or("").split('/');
        if let (Some(disk), Some(file), None) = (parts.next(), parts.next(), parts.next())
            && let Some(name) = file.strip_suffix(".json")
            && name != "disk"
            && snap_shared::id::check_name(name).is_ok()
        {
            let at = loc(source, disk, &format!("{name}.json"));
            out.push(
                serde_json::from_slice(&at.read_all()?).map_err(|e| Error::data(at.show(), e))?,
            );
        }
    }
    Ok(out)
}

/// One listing line per disk snapshot, under a header, for `snap-restore list`.
pub fn table(recs: &[DiskSnapshotRecord]) -> Vec<String> {
    let rows: Vec<[String; 6]> = std::iter::once(
        [
            "DISK SNAPSHOT",
            "HOST",
            "METHOD",
            "CREATED",
            "SIZE",
            "STORED",
        ]
        .map(String::from),
    )
    .chain(recs.iter().map(|r| {
        [
            format!("disks/{}/{}", r.disk, r.name),
            disk_host(r).unwrap_or_default(),
            r.method.clone(),
            r.created.format("%Y-%m-%d %H:%M").to_string(),
            human_bytes(r.virtual_size),
            human_bytes(r.stored_bytes),
        ]
    }))
    .collect();
    let w: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            format!(
                "{:<a$}  {:<b$}  {:<c$}  {:<d$}  {:>e$}  {:>f$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3],
                e = w[4],
                f = w[5]
            )
        })
        .collect()
}

/// The machine that made a disk snapshot (its record's `created_by`).
pub fn disk_host(r: &DiskSnapshotRecord) -> Option<String> {
    r.extra
        .get("created_by")
        .and_then(|c| c.get("host"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// Reads every block of a disk snapshot at the source and checks it against
/// its sha256; returns (blocks checked, stored bytes read, problems).
pub fn verify(
    source: &Source,
    (disk, snap): (&str, &str),
    (dec, trust): (&Decrypt, &Trust),
    report: &Reporter,
) -> Result<(u64, u64, Vec<String>, Signed)> {
    let (rec, rec_loc) = read_record(source, disk, snap)?;
    let signed = trusted(&rec, &rec_loc, trust)?;
    signed.warn(&format!("disks/{disk}/{snap}"), report);
    let map = loc(source, disk, &format!("{snap}.map.zst"));
    let bytes = map.read_all()?;
    check_map(&rec, &bytes, &map.show())?;
    let reader = snap_shared::blockmap::MapReader::new(&bytes[..], map.show())?;
    let check = snap_shared::blockstore::verify_map(reader, dec, |d| {
        let at = loc(source, disk, &format!("blocks/{}", block_rel(d)));
        Ok((at.read_all()?, at.show()))
    })?;
    Ok((check.blocks, check.bytes, check.bad, signed))
}

/// The record of `disks/<disk>/<snap>` at the source, and where it is.
fn read_record(source: &Source, disk: &str, snap: &str) -> Result<(RecordRead, Loc)> {
    let at = loc(source, disk, &format!("{snap}.json"));
    let raw = at.read_all()?;
    let rec: DiskSnapshotRecord =
        serde_json::from_slice(&raw).map_err(|e| Error::data(at.show(), e))?;
    Ok((RecordRead { rec, raw }, at))
}

/// A disk snapshot's record with the bytes its signature covers.
struct RecordRead {
    rec: DiskSnapshotRecord,
    raw: Vec<u8>,
}

impl std::ops::Deref for RecordRead {
    type Target = DiskSnapshotRecord;
    fn deref(&self) -> &DiskSnapshotRecord {
        &self.rec
    }
}

/// Who signed a blocks snapshot's record, or why it is refused.
fn trusted(rec: &RecordRead, at: &Loc, trust: &Trust) -> Result<Signed> {
    let host = rec
        .extra
        .get("created_by")
        .and_then(|c| c.get("host"))
        .and_then(|h| h.as_str());
    let what = format!("disk snapshot disks/{}/{}", rec.disk, rec.name);
    trust.check_record(&what, at, &rec.raw, host)
}

/// The map's bytes against the sha256 its record names (records from before
/// it was recorded name none, and are unsigned too).
fn check_map(rec: &DiskSnapshotRecord, bytes: &[u8], shown: &str) -> Result<()> {
    let Some(want) = rec.extra.get("map_sha256").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let got = Sha256Digest::of(bytes).to_hex();
    if got != want {
        return Err(Error::data(
            shown,
            format!("sha256 {got}, and its record says {want}: not this snapshot's map"),
        ));
    }
    Ok(())
}
