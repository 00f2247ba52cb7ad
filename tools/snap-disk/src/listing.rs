//! `list` and `show`: every snapshot of a disk, whoever made it.
//!
//! A disk's records are merged with the internal snapshots its qcow2 image
//! holds, as the running VM sees them when it runs (else as the file says).
//! A line starts as `qemu-img snapshot -l` does (ID, TAG, VM SIZE, DATE, VM
//! CLOCK), then says what snap adds: the method, the disk's size, what the
//! snapshot stores and the ratio, the description and tags.

use std::io;

use chrono::{DateTime, Utc};
use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::disks::disk_names;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Record};
use snap_shared::size::human_bytes;

use crate::cli::{Method, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::image::{self, InternalSnapshot};
use crate::internal;

pub fn list(
    ctx: &Context,
    operand: Option<&str>,
    monitor: &MonitorArgs,
    report: &Reporter,
) -> Result<Exit> {
    let disks = match operand {
        Some(o) => vec![ctx.disk(o)?],
        None if monitor.qmp.is_some() => {
            return Err(Error::usage("--qmp", "names one VM: give the disk too"));
        }
        None => disk_names(&ctx.store)?
            .iter()
            .map(|n| ctx.existing(n))
            .collect::<Result<Vec<_>>>()?,
    };
    let mut out = RecordWriter::new(io::stdout().lock());
    for disk in &disks {
        let mut vm = internal::running_vm(ctx, &disk.image, monitor, report)?;
        let recs = merged_with_sizes(disk, internal::snapshots(disk, vm.as_mut())?.as_deref())?;
        report.note(&format!(
            "{} ({}): {} snapshots",
            disk.dir.name,
            disk.image.display(),
            recs.len()
        ));
        if !recs.is_empty() {
            report.note(&format!("  {HEADER}"));
        }
        for rec in &recs {
            report.note(&format!("  {}", line(rec)));
            out.write(&Record::DiskSnapshot(rec.clone()))?;
        }
    }
    Ok(Exit::Ok)
}

/// The disk's records, with the qcow2 image's internal snapshots (`internal`,
/// None for another format) merged in: each internal one's ID, VM state size
/// and VM clock go into its record; a record whose snapshot is gone from the
/// image says `"state": "missing"`, and a snapshot in the image with no record
/// (made by qemu-img, savevm or virsh) appears as `"state": "image-only"`.
pub fn merged(
    disk: &Disk,
    internal: Option<&[InternalSnapshot]>,
) -> Result<Vec<DiskSnapshotRecord>> {
    merge(disk, internal, false)
}

/// [`merged`], with each internal snapshot's `owned_bytes` read from the
/// image's tables (what list, show and a prune's estimates give).
pub fn merged_with_sizes(
    disk: &Disk,
    internal: Option<&[InternalSnapshot]>,
) -> Result<Vec<DiskSnapshotRecord>> {
    merge(disk, internal, true)
}

fn merge(
    disk: &Disk,
    internal: Option<&[InternalSnapshot]>,
    sizes: bool,
) -> Result<Vec<DiskSnapshotRecord>> {
    let mut recs = disk.dir.snapshots()?;
    let owned = match internal {
        Some(i) if sizes && !i.is_empty() => crate::owned::owned(&disk.image).unwrap_or_default(),
        _ => Default::default(),
    };
    let internal = internal.unwrap_or_default();
    for rec in recs.iter_mut().filter(|r| r.method == "qcow2-internal") {
        match internal.iter().find(|s| s.name == rec.name) {
            Some(s) => describe(rec, s, owned.get(&s.id)),
            None => {
                rec.extra.insert("state".into(), Value::from("missing"));
            }
        }
    }
    for snap in internal {
        let known = recs
            .iter()
            .any(|r| r.method == "qcow2-internal" && r.name == snap.name);
        if !known {
            recs.push(image_only(disk, snap, owned.get(&snap.id))?);
        }
    }
    recs.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(recs)
}

/// The snapshot `key` of the disk: a record by name, or an internal
/// snapshot of the image by tag or ID (made by snap-disk or not).
pub fn find(
    disk: &Disk,
    key: &str,
    internal: Option<&[InternalSnapshot]>,
) -> Result<DiskSnapshotRecord> {
    find_in(merged(disk, internal)?, disk, key)
}

fn find_in(all: Vec<DiskSnapshotRecord>, disk: &Disk, key: &str) -> Result<DiskSnapshotRecord> {
    let by_name = all.iter().find(|r| r.name == key);
    let by_id = || {
        all.iter()
            .find(|r| r.extra.get("id").and_then(Value::as_str) == Some(key))
    };
    match by_name.or_else(by_id) {
        Some(r) => Ok(r.clone()),
        None => disk.dir.record(key),
    }
}

/// Puts what the image says of `snap` into its record: the snapshot
/// table's fields, and the bytes it holds alone (`owned_bytes`, where the
/// image's tables could be read).
fn describe(rec: &mut DiskSnapshotRecord, snap: &InternalSnapshot, owned: Option<&u64>) {
    let x = &mut rec.extra;
    x.insert("id".into(), Value::from(snap.id.clone()));
    x.insert("vm_state_size".into(), Value::from(snap.vm_state_size));
    x.insert("vm_clock_ns".into(), Value::from(snap.vm_clock_nsec));
    if let Some(o) = owned {
        x.insert("owned_bytes".into(), Value::from(*o));
    }
}

/// The record of an internal snapshot that was made without snap-disk.
fn image_only(
    disk: &Disk,
    snap: &InternalSnapshot,
    owned: Option<&u64>,
) -> Result<DiskSnapshotRecord> {
    let info = image::probe(&disk.image)?;
    let mut rec = crate::record::base_record(disk, &info, &snap.name, Method::Qcow2Internal);
    rec.created =
        DateTime::<Utc>::from_timestamp(snap.date_sec, snap.date_nsec).unwrap_or_default();
    rec.extra.remove("created_by"); // not made by snap-disk: by whom is not known
    rec.extra.insert("state".into(), Value::from("image-only"));
    describe(&mut rec, snap, owned);
    Ok(rec)
}

const HEADER: &str = "ID   TAG                        VM SIZE  DATE                 VM CLOCK        METHOD           SIZE     STORED   RATIO";

/// One listing line, in [`HEADER`]'s columns, then description, tags, state.
fn line(rec: &DiskSnapshotRecord) -> String {
    let num = |k: &str| rec.extra.get(k).and_then(Value::as_u64);
    let id = rec.extra.get("id").and_then(Value::as_str).unwrap_or("-");
    let vm_size = match num("vm_state_size") {
        Some(n) => human_bytes(n),
        None => "-".into(),
    };
    let clock = num("vm_clock_ns").map_or("-".into(), vm_clock);
    let (stored, ratio) = match stored(rec) {
        Some(s) => (human_bytes(s), percent(s, rec.virtual_size)),
        None => ("?".into(), "?".into()),
    };
    let mut s = format!(
        "{id:<4} {:<26} {vm_size:>8}  {}  {clock:<14}  {:<15} {:>8} {stored:>8} {ratio:>6}",
        rec.name,
        rec.created.format("%Y-%m-%d %H:%M:%S"),
        rec.method,
        human_bytes(rec.virtual_size),
    );
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
    s.trim_end().to_string()
}

/// What the snapshot stores, where that is known: a blocks snapshot's
/// compressed blocks, an overlay's frozen file, an internal snapshot's
/// clusters of its own and its VM state.
fn stored(rec: &DiskSnapshotRecord) -> Option<u64> {
    match rec.method.as_str() {
        "blocks" | "overlay" => Some(rec.stored_bytes),
        _ => rec.extra.get("owned_bytes").and_then(Value::as_u64),
    }
}

/// The guest's clock as `qemu-img snapshot -l` prints it: HHHH:MM:SS.mmm.
fn vm_clock(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ms / 1000;
    format!(
        "{:04}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

fn percent(part: u64, whole: u64) -> String {
    match whole {
        0 => "-".into(),
        w => format!("{:.1}%", part as f64 * 100.0 / w as f64),
    }
}

pub fn show(
    ctx: &Context,
    operand: &str,
    name: &str,
    monitor: &MonitorArgs,
    report: &Reporter,
) -> Result<Exit> {
    let disk = ctx.disk(operand)?;
    let mut vm = internal::running_vm(ctx, &disk.image, monitor, report)?;
    let inside = internal::snapshots(&disk, vm.as_mut())?;
    let rec = find_in(merged_with_sizes(&disk, inside.as_deref())?, &disk, name)?;
    let mut lines = vec![
        format!("Snapshot: {}", rec.name),
        format!("  Disk: {} ({})", rec.disk, rec.image),
        format!("  Created: {}", rec.created.format("%Y-%m-%d %H:%M:%S UTC")),
        format!("  Method: {} ({} image)", rec.method, rec.format),
    ];
    let num = |k: &str| rec.extra.get(k).and_then(Value::as_u64);
    if let Some(id) = rec.extra.get("id").and_then(Value::as_str) {
        lines.push(format!("  ID: {id}"));
    }
    if let Some(d) = &rec.description {
        lines.push(format!("  Description: {d}"));
    }
    if !rec.tags.is_empty() {
        lines.push(format!("  Tags: {}", rec.tags.join(", ")));
    }
    lines.push(format!("  Disk size: {}", human_bytes(rec.virtual_size)));
    match num("vm_state_size") {
        Some(0) => lines.push("  VM state: none (disk only)".into()),
        Some(n) => lines.push(format!(
            "  VM state: {} (VM clock {})",
            human_bytes(n),
            vm_clock(num("vm_clock_ns").unwrap_or(0))
        )),
        None => {}
    }
    if rec.method == "blocks" {
        lines.push(format!("  Blocks: {} (non-zero)", rec.blocks));
        lines.push(format!(
            "  New in this snapshot: {}",
            human_bytes(rec.new_bytes)
        ));
    }
    lines.push(match stored(&rec) {
        Some(s) => format!(
            "  Stored: {} ({} of the disk size)",
            human_bytes(s),
            percent(s, rec.virtual_size)
        ),
        None => "  Stored: not known (the image's tables could not be read)".into(),
    });
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
    } else if rec.method == "qcow2-internal" {
        lines.push("  Created by: not snap-disk (qemu-img, savevm or virsh)".into());
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
