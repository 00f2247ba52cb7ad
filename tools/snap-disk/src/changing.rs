//! Changes qemu-img makes to a user's qcow2 image, guarded by an intent.
//!
//! `qemu-img snapshot -c/-d` and `qemu-img commit` are not atomic. Killed
//! between two of their writes (found by `cargo xtask crash`), they leave an
//! image whose refcounts disagree with its tables: leaked clusters, and
//! `OFLAG_COPIED` errors that `qemu-img check` calls corruption, after which
//! a guest's write could land in a cluster a snapshot shares. They also leave
//! snap's records out of step: an internal snapshot snap never recorded (so a
//! rerun refuses the name), or an overlay whose record is gone while the
//! image is still backed by it (so a rerun of commit does nothing).
//!
//! So the intent (what, on which snapshot or file) is written and flushed to
//! `disks/<disk>/.changing` before qemu-img starts, and removed once the
//! records are in step. The next snap-disk command on the disk finds it and
//! repairs before anything else: `qemu-img check -r all` (refcounts are
//! rebuilt from the tables; the data is never touched), then the half-made
//! internal snapshot is removed, the record of a removed one dropped, or the
//! interrupted commit finished; then the intent goes.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use snap_cli::Reporter;
use snap_shared::error::{Error, Result};

use crate::disk::Disk;
use crate::image::qemu_img;
use crate::savevm::Vm;

/// What qemu-img is about to do to the image.
pub enum Change<'a> {
    /// `snapshot -c NAME`.
    Create(&'a str),
    /// `snapshot -d NAME`.
    Delete(&'a str),
    /// `snapshot -a NAME` (an in-place restore).
    Apply(&'a str),
    /// `commit` of the image into this backing file, then the rename over it.
    Commit(&'a Path),
}

fn marker(disk: &Disk) -> PathBuf {
    disk.dir.root.join(".changing")
}

/// Writes the intent, flushed, before qemu-img changes the image (the
/// disk's folder is made first, for an image snap-disk did not know).
pub fn begin(disk: &Disk, change: Change) -> Result<()> {
    disk.ensure_info(crate::create::DEFAULT_BLOCK_SIZE, false)?;
    let v = match change {
        Change::Create(n) => json!({"op": "create", "name": n}),
        Change::Delete(n) => json!({"op": "delete", "name": n}),
        Change::Apply(n) => json!({"op": "apply", "name": n}),
        Change::Commit(b) => json!({"op": "commit", "backing": b.display().to_string()}),
    };
    let path = marker(disk);
    snap_shared::fsutil::write_atomic(&path, 0o600, true, |f| {
        std::io::Write::write_all(f, v.to_string().as_bytes())
    })
    .map_err(|e| Error::io(&path, e))
}

/// Removes the intent: the image and the records are in step. The removal
/// is flushed, so a power cut after the command said it was done does not
/// bring the intent back (the power-loss sweep found that after a commit).
pub fn end(disk: &Disk) -> Result<()> {
    let path = marker(disk);
    match fs::remove_file(&path) {
        Ok(()) => {
            snap_shared::fsutil::fsync_dir(&disk.dir.root).map_err(|e| Error::io(&disk.dir.root, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Repairs what an interrupted change left, if one was (then `true`: what
/// was read of the image before is stale); a no-op otherwise. With `vm`,
/// the image is held by a running QEMU and is settled through it.
pub fn recover(disk: &Disk, vm: Option<&mut Vm>, report: &Reporter) -> Result<bool> {
    let path = marker(disk);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(false);
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Error::data(path.display().to_string(), format!("unreadable: {e}")))?;
    let op = v["op"].as_str().unwrap_or_default();
    let name = v["name"].as_str().unwrap_or_default();
    let recorded = !name.is_empty() && disk.dir.record_path(name).exists();
    let image = disk.image.display().to_string();
    if let Some(vm) = vm {
        report.warn(&format!(
            "{image}: a snapshot {op} through its QEMU was interrupted; settling it"
        ));
        settle_online(disk, vm, op, name, recorded, report)?;
        end(disk)?;
        report.note(&format!("{image}: settled"));
        return Ok(true);
    }
    report.warn(&format!(
        "{image}: a `qemu-img {}` on it was interrupted; repairing it",
        if op == "commit" { "commit" } else { "snapshot" }
    ));
    repair(&disk.image)?;
    let inside = !name.is_empty() && crate::qcow2::names(&disk.image)?.iter().any(|n| n == name);
    match op {
        // Made by qemu-img but never recorded: not a snapshot of snap's.
        "create" if inside && !recorded => crate::qcow2::delete(&disk.image, name)?,
        // Gone from the image: its record goes too.
        "delete" if recorded && !inside => crate::manage::remove_record(&disk.dir, name)?,
        "commit" => finish_commit(disk, Path::new(v["backing"].as_str().unwrap_or_default()))?,
        _ => {}
    }
    end(disk)?;
    report.note(&format!("{image}: repaired"));
    Ok(true)
}

/// An interrupted change on a running VM's image: QEMU finished or failed
/// the job itself (the VM's monitor had it dismissed), so what is left is
/// to bring the records in step, as offline.
fn settle_online(
    disk: &Disk,
    vm: &mut Vm,
    op: &str,
    name: &str,
    recorded: bool,
    report: &Reporter,
) -> Result<()> {
    let inside = vm.snapshots()?.into_iter().find(|s| s.name == name);
    match (op, inside) {
        ("create", Some(snap)) if !recorded => {
            vm.delete(&snap)?;
            report.note(&format!(
                "removed snapshot {name}, which the interrupted run made but never recorded"
            ));
        }
        ("delete", None) if recorded => {
            crate::manage::remove_record(&disk.dir, name)?;
            report.note(&format!(
                "snapshot {name} was deleted by the interrupted run; its record is gone now too"
            ));
        }
        ("apply", _) => report.note(&format!(
            "the restore of {name} was interrupted; the VM is {}",
            vm.status()?
        )),
        ("commit", _) => {
            return Err(Error::new(
                snap_shared::error::Exit::TempFail,
                disk.image.display().to_string(),
                "an interrupted commit into it must be finished while the VM is stopped",
            )
            .with_hint("shut the VM down, then run the command again"));
        }
        _ => {}
    }
    Ok(())
}

/// `qemu-img check -r all`: rebuilds refcounts from the tables.
fn repair(img: &Path) -> Result<()> {
    qemu_img(&[
        "check".as_ref(),
        "-q".as_ref(),
        "-r".as_ref(),
        "all".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        img.as_os_str(),
    ])
    .map(drop)
    .map_err(|e| {
        Error::data(format!("{} is damaged", img.display()), e.cause).with_hint(
            "an interrupted qemu-img left it so and `qemu-img check -r all` could not repair it",
        )
    })
}

/// Commits the image into `backing` again (committing the same data twice
/// changes nothing) and renames it over the image, if the image is still
/// backed by it.
fn finish_commit(disk: &Disk, backing: &Path) -> Result<()> {
    let info = crate::image::probe(&disk.image)?;
    if info.backing.as_deref() != Some(backing) {
        return Ok(());
    }
    repair(backing)?;
    crate::overlay::commit_one(&disk.image, backing)
}
