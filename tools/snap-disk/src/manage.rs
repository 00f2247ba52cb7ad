//! `delete` and `commit`, and the block garbage collection that delete (and
//! an interrupted create) leave to do.

use std::path::{Path, PathBuf};

use snap_cli::Reporter;
use snap_shared::disks::DiskDir;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::record::DiskSnapshotRecord;
use snap_shared::size::human_bytes;

use crate::cli::{DomainArgs, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::garbage::{collect_garbage, remove_if_there};
use crate::image;
use crate::internal;
use crate::listing::find;
use crate::overlay;
use crate::restore::frozen_of;
use crate::savevm::Vm;

pub fn delete(
    ctx: &Context,
    operand: &str,
    names: &[String],
    (monitor, libvirt): (&MonitorArgs, &DomainArgs),
    report: &Reporter,
) -> Result<Exit> {
    let _lock = ctx.lock(true)?;
    let disk = ctx.disk(operand)?;
    let mut vm = internal::running_vm(ctx, &disk.image, monitor, report)?;
    let internal = internal::snapshots(&disk, vm.as_mut())?;
    let recs: Vec<DiskSnapshotRecord> = names
        .iter()
        .map(|n| find(&disk, n, internal.as_deref()))
        .collect::<Result<_>>()?;
    // After the names are read: a delete that was interrupted finishes below.
    crate::changing::recover(&disk, vm.as_mut(), report)?;
    let mut blocks_gone = false;
    for rec in &recs {
        delete_with(&disk, rec, vm.as_mut(), libvirt)?;
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
pub fn delete_one(disk: &Disk, rec: &DiskSnapshotRecord, vm: Option<&mut Vm>) -> Result<()> {
    delete_with(disk, rec, vm, &DomainArgs::default())
}

/// [`delete_one`], with the flags that reach libvirt.
fn delete_with(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    vm: Option<&mut Vm>,
    libvirt: &DomainArgs,
) -> Result<()> {
    match rec.method.as_str() {
        "blocks" => {
            remove_record(&disk.dir, &rec.name)?;
            remove_if_there(&disk.dir.map_path(&rec.name))
        }
        "qcow2-internal" => match crate::domain_snapshots::domain_of(rec, libvirt) {
            Some(dom) if crate::domain_snapshots::known(&dom, rec)? => {
                crate::domain_snapshots::delete(disk, rec, &dom)
            }
            _ => internal::delete(disk, rec, vm),
        },
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

pub(crate) fn remove_record(dir: &DiskDir, name: &str) -> Result<()> {
    remove_if_there(&dir.record_path(name))?;
    remove_if_there(&dir.sig_path(name))?;
    fsutil::fsync_dir(&dir.root).map_err(|e| Error::io(&dir.root, e))
}

pub fn commit(ctx: &Context, operand: &str, report: &Reporter) -> Result<Exit> {
    let _lock = ctx.lock(false)?;
    let disk = ctx.existing(operand)?;
    crate::changing::recover(&disk, None, report)?;
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
