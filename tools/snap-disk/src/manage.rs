//! `list`, `show`, `delete`, `commit`, and the block garbage collection
//! that delete (and an interrupted create) leave to do.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::disks::{DiskDir, disk_names};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Record};
use snap_shared::size::human_bytes;

use crate::disk::{Context, Disk};
use crate::garbage::{collect_garbage, remove_if_there};
use crate::image;
use crate::restore::frozen_of;
use crate::{overlay, qcow2};

pub fn list(ctx: &Context, operand: Option<&str>, report: &Reporter) -> Result<Exit> {
    let disks = match operand {
        Some(o) => vec![ctx.existing(o)?],
        None => disk_names(&ctx.store)?
            .iter()
            .map(|n| ctx.existing(n))
            .collect::<Result<Vec<_>>>()?,
    };
    let mut out = RecordWriter::new(io::stdout().lock());
    for disk in &disks {
        let recs = merged(disk)?;
        report.note(&format!(
            "{} ({}): {} snapshots",
            disk.dir.name,
            disk.image.display(),
            recs.len()
        ));
        for rec in &recs {
            report.note(&format!("  {}", line(rec)));
            out.write(&Record::DiskSnapshot(rec.clone()))?;
        }
    }
    Ok(Exit::Ok)
}

/// The disk's records, with the qcow2 image's internal snapshots merged in:
/// a record whose snapshot is gone from the image says `"state": "missing"`,
/// and a snapshot in the image with no record (made by qemu-img or virsh)
/// appears as `"state": "image-only"`.
pub fn merged(disk: &Disk) -> Result<Vec<DiskSnapshotRecord>> {
    let mut recs = disk.dir.snapshots()?;
    let info = image::probe(&disk.image)
        .ok()
        .filter(|i| i.format == "qcow2");
    let internal = info
        .as_ref()
        .map(|i| i.snapshots.clone())
        .unwrap_or_default();
    for rec in recs.iter_mut().filter(|r| r.method == "qcow2-internal") {
        if !internal.iter().any(|s| s.name == rec.name) {
            rec.extra.insert("state".into(), Value::from("missing"));
        }
    }
    for snap in &internal {
        let known = recs
            .iter()
            .any(|r| r.method == "qcow2-internal" && r.name == snap.name);
        if !known {
            if let Some(info) = &info {
                recs.push(image_only(disk, info, &snap.name, snap.date_sec));
            }
        }
    }
    recs.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(recs)
}

/// The record of an internal snapshot that was made without snap-disk.
fn image_only(
    disk: &Disk,
    info: &image::ImageInfo,
    name: &str,
    date_sec: i64,
) -> DiskSnapshotRecord {
    let mut rec = crate::record::base_record(disk, info, name, crate::cli::Method::Qcow2Internal);
    rec.created = DateTime::<Utc>::from_timestamp(date_sec, 0).unwrap_or_default();
    rec.extra.remove("created_by"); // not made by snap-disk: by whom is not known
    rec.extra.insert("state".into(), Value::from("image-only"));
    rec
}

/// One listing line: name, time, method, sizes, description, state.
fn line(rec: &DiskSnapshotRecord) -> String {
    let mut s = format!(
        "{:<24} {}  {:<14}",
        rec.name,
        rec.created.format("%Y-%m-%d %H:%M:%S"),
        rec.method
    );
    if rec.method == "blocks" {
        s.push_str(&format!(
            " {} image, {} stored ({}), {} new",
            human_bytes(rec.virtual_size),
            human_bytes(rec.stored_bytes),
            percent(rec.stored_bytes, rec.virtual_size),
            human_bytes(rec.new_bytes)
        ));
    }
    if let Some(d) = &rec.description {
        s.push_str(&format!("  {d:?}"));
    }
    if !rec.tags.is_empty() {
        s.push_str(&format!("  [{}]", rec.tags.join(",")));
    }
    match rec.extra.get("state").and_then(Value::as_str) {
        Some("missing") => s.push_str("  (MISSING from the image)"),
        Some("image-only") => s.push_str("  (in the image only, not made by snap-disk)"),
        _ => {}
    }
    s
}

fn percent(part: u64, whole: u64) -> String {
    match whole {
        0 => "-".into(),
        w => format!("{:.1}%", part as f64 * 100.0 / w as f64),
    }
}

pub fn show(ctx: &Context, operand: &str, name: &str, report: &Reporter) -> Result<Exit> {
    let disk = ctx.existing(operand)?;
    let rec = match merged(&disk)?.into_iter().find(|r| r.name == name) {
        Some(r) => r,
        None => disk.dir.record(name)?,
    };
    let mut lines = vec![
        format!("Snapshot: {}", rec.name),
        format!("  Disk: {} ({})", rec.disk, rec.image),
        format!("  Created: {}", rec.created.format("%Y-%m-%d %H:%M:%S UTC")),
        format!("  Method: {} ({} image)", rec.method, rec.format),
    ];
    if let Some(d) = &rec.description {
        lines.push(format!("  Description: {d}"));
    }
    if !rec.tags.is_empty() {
        lines.push(format!("  Tags: {}", rec.tags.join(", ")));
    }
    lines.push(format!("  Disk size: {}", human_bytes(rec.virtual_size)));
    if rec.method == "blocks" {
        lines.push(format!("  Blocks: {} (non-zero)", rec.blocks));
        lines.push(format!(
            "  Stored: {} ({} of the disk size)",
            human_bytes(rec.stored_bytes),
            percent(rec.stored_bytes, rec.virtual_size)
        ));
        lines.push(format!(
            "  New in this snapshot: {}",
            human_bytes(rec.new_bytes)
        ));
    }
    if let Some(p) = &rec.parent {
        lines.push(format!("  Parent: {p}"));
    }
    if let Some(by) = rec.extra.get("created_by") {
        let field = |k: &str| by[k].as_str().unwrap_or("?").to_string();
        lines.push(format!(
            "  Created by: {} on {} ({})",
            field("user"),
            field("host"),
            field("tool")
        ));
    }
    if let Some(f) = rec.extra.get("file").and_then(Value::as_str) {
        lines.push(format!("  File: {f}"));
    }
    for l in lines {
        report.note(&l);
    }
    RecordWriter::new(io::stdout().lock()).write(&Record::DiskSnapshot(rec))?;
    Ok(Exit::Ok)
}

pub fn delete(ctx: &Context, operand: &str, names: &[String], report: &Reporter) -> Result<Exit> {
    let _lock = ctx.lock(false)?;
    let disk = ctx.existing(operand)?;
    let recs: Vec<DiskSnapshotRecord> = names
        .iter()
        .map(|n| disk.dir.record(n))
        .collect::<Result<_>>()?;
    // After the names are read: a delete that was interrupted finishes below.
    crate::changing::recover(&disk, report)?;
    let mut blocks_gone = false;
    for rec in &recs {
        delete_one(&disk, rec)?;
        ctx.catalog(|c| c.remove("disk-snapshot", &rec.disk, &rec.name));
        blocks_gone |= rec.method == "blocks";
        report.note(&format!("deleted {}/{}", rec.disk, rec.name));
    }
    if blocks_gone {
        let (n, bytes) = collect_garbage(&disk.dir)?;
        report.note(&format!(
            "removed {n} blocks no snapshot uses ({} freed)",
            human_bytes(bytes)
        ));
    }
    Ok(Exit::Ok)
}

/// Removes one snapshot; a blocks snapshot's blocks are left to [`collect_garbage`].
pub fn delete_one(disk: &Disk, rec: &DiskSnapshotRecord) -> Result<()> {
    match rec.method.as_str() {
        "blocks" => {
            remove_record(&disk.dir, &rec.name)?;
            remove_if_there(&disk.dir.map_path(&rec.name))
        }
        "qcow2-internal" => {
            disk.refuse_if_in_use("deleting a snapshot inside")?;
            crate::changing::begin(disk, crate::changing::Change::Delete(&rec.name))?;
            if qcow2::names(&disk.image)?.contains(&rec.name) {
                qcow2::delete(&disk.image, &rec.name)?;
            }
            remove_record(&disk.dir, &rec.name)?;
            crate::changing::end(disk)
        }
        "overlay" => {
            disk.refuse_if_in_use("deleting a snapshot under")?;
            let frozen = frozen_of(rec)?;
            if frozen.exists() {
                let children = children_of(disk, &frozen)?;
                overlay::delete(&frozen, &children)?;
            }
            remove_record(&disk.dir, &rec.name)
        }
        m => Err(Error::data(
            format!("snapshot {}/{}", rec.disk, rec.name),
            format!("unknown method {m:?}"),
        )),
    }
}

/// The files whose backing file is `frozen`: other snapshots' frozen files and the image.
fn children_of(disk: &Disk, frozen: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = disk
        .dir
        .snapshots()?
        .iter()
        .filter(|r| r.method == "overlay")
        .filter_map(|r| frozen_of(r).ok())
        .filter(|f| f != frozen && f.exists())
        .collect();
    files.push(disk.image.clone());
    let mut out = Vec::new();
    for f in files {
        if image::probe(&f)?.backing.as_deref() == Some(frozen) {
            out.push(f);
        }
    }
    Ok(out)
}

fn remove_record(dir: &DiskDir, name: &str) -> Result<()> {
    remove_if_there(&dir.record_path(name))?;
    remove_if_there(&dir.sig_path(name))?;
    fsutil::fsync_dir(&dir.root).map_err(|e| Error::io(&dir.root, e))
}

pub fn commit(ctx: &Context, operand: &str, report: &Reporter) -> Result<Exit> {
    let _lock = ctx.lock(false)?;
    let disk = ctx.existing(operand)?;
    crate::changing::recover(&disk, report)?;
    disk.refuse_if_in_use("committing")?;
    let recs: Vec<DiskSnapshotRecord> = disk
        .dir
        .snapshots()?
        .into_iter()
        .filter(|r| r.method == "overlay")
        .collect();
    let ours: Vec<PathBuf> = recs.iter().filter_map(|r| frozen_of(r).ok()).collect();
    refuse_branches(&disk, &ours)?;
    let merged = overlay::commit(&disk.image, &ours, |frozen| {
        match recs
            .iter()
            .find(|r| frozen_of(r).ok().as_deref() == Some(frozen))
        {
            Some(r) => {
                report.note(&format!("merging {} into the image", r.name));
                crate::changing::begin(&disk, crate::changing::Change::Commit(frozen))?;
                remove_record(&disk.dir, &r.name)?;
                ctx.catalog(|c| c.remove("disk-snapshot", &r.disk, &r.name));
                Ok(())
            }
            None => Ok(()),
        }
    })?;
    crate::changing::end(&disk)?;
    report.note(&format!(
        "{}: {merged} overlay snapshots folded into one image",
        disk.image.display()
    ));
    Ok(Exit::Ok)
}

/// Commit changes every frozen file of the image's chain: refuse when another
/// snapshot (a branch left by a restore) still needs one of them.
fn refuse_branches(disk: &Disk, ours: &[PathBuf]) -> Result<()> {
    let mut chain = Vec::new();
    let mut at = image::probe(&disk.image)?.backing;
    while let Some(b) = at.filter(|b| ours.contains(b) && !chain.contains(b)) {
        at = image::probe(&b)?.backing;
        chain.push(b);
    }
    for f in ours.iter().filter(|f| !chain.contains(f) && f.exists()) {
        if let Some(b) = image::probe(f)?.backing
            && chain.contains(&b)
        {
            return Err(Error::usage(
                disk.image.display().to_string(),
                format!(
                    "{} is backed by {}, which the commit would change",
                    f.display(),
                    b.display()
                ),
            )
            .with_hint("delete that snapshot first (snap-disk delete), then commit"));
        }
    }
    Ok(())
}
