//! The qcow2-internal method's verbs: snapshots inside the image, through
//! `qemu-img` while nothing holds it ([`qcow2`]) and through the running
//! VM's monitor while it runs ([`savevm`]), with snap's record beside each.
//! Every change to the image is guarded by an intent ([`changing`]), so a
//! killed run is finished by the next, online or offline.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::holders::holders;
use snap_shared::record::DiskSnapshotRecord;
use snap_shared::size::human_bytes;

use crate::changing::{self, Change};
use crate::cli::{Method, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::image::{self, ImageInfo, InternalSnapshot};
use crate::live::Endpoints;
use crate::qcow2;
use crate::record::base_record;
use crate::savevm::Vm;
use crate::source::monitor_endpoints;

/// The running VM that holds a qcow2 image, when its monitor is known: given
/// with `--qmp`, or in the config's disk entry while a process holds the
/// image. Jobs a killed run left there are finished first, and said.
pub fn running_vm(
    ctx: &Context,
    image: &Path,
    flags: &MonitorArgs,
    report: &Reporter,
) -> Result<Option<Vm>> {
    let Some(ends) = monitor_endpoints(ctx, flags, image)? else {
        return Ok(None);
    };
    if flags.qmp.is_none() && holders(image).is_empty() {
        return Ok(None);
    }
    if !image.exists() || image::probe(image)?.format != "qcow2" {
        return Ok(None);
    }
    connect(&ends, image, report).map(Some)
}

/// Connects to the VM's monitor, saying what a killed run left there.
pub fn connect(ends: &Endpoints, image: &Path, report: &Reporter) -> Result<Vm> {
    let vm = Vm::connect(ends, image)?;
    for l in &vm.leftovers {
        report.warn(&format!("{}: {l}", image.display()));
    }
    Ok(vm)
}

/// The image's internal snapshots: the running VM's view, else the file's;
/// None when the image is not a qcow2 (or is gone: its records still list).
pub fn snapshots(disk: &Disk, vm: Option<&mut Vm>) -> Result<Option<Vec<InternalSnapshot>>> {
    if let Some(vm) = vm {
        return vm.snapshots().map(Some);
    }
    if !disk.image.exists() {
        return Ok(None);
    }
    let info = image::probe(&disk.image)?;
    Ok((info.format == "qcow2").then_some(info.snapshots))
}

/// Makes the internal snapshot `name`: through the VM when it runs (with
/// its state when `state` says where), else with `qemu-img snapshot -c`.
pub fn create(
    disk: &Disk,
    info: &ImageInfo,
    name: &str,
    vm: Option<&mut Vm>,
    state: Option<Option<&Path>>,
    report: &Reporter,
) -> Result<DiskSnapshotRecord> {
    prepare(disk, info)?;
    let mut rec = base_record(disk, info, name, Method::Qcow2Internal);
    let Some(vm) = vm else {
        if info.snapshots.iter().any(|s| s.name == name) {
            return Err(name_taken(disk, name));
        }
        changing::begin(disk, Change::Create(name))?;
        // The record is made while qemu-img runs: it is most of the time.
        let running = qcow2::start_create(&disk.image, name)?;
        let parent = crate::create::parent_of(disk, Method::Qcow2Internal);
        running.finish()?;
        rec.parent = parent?;
        return Ok(rec);
    };
    rec.parent = crate::create::parent_of(disk, Method::Qcow2Internal)?;
    if vm.snapshots()?.iter().any(|s| s.name == name) {
        return Err(name_taken(disk, name));
    }
    changing::begin(disk, Change::Create(name))?;
    let saved = match vm.save(name, state) {
        Ok(s) => s,
        Err(e) => {
            // A job QEMU refused left nothing (the save cleans up after
            // itself); only a monitor that stopped answering leaves the
            // intent for the next run to settle.
            if vm
                .snapshots()
                .is_ok_and(|s| !s.iter().any(|s| s.name == name))
            {
                changing::end(disk)?;
            }
            return Err(e);
        }
    };
    let x = &mut rec.extra;
    x.insert("id".into(), Value::from(saved.snapshot.id.clone()));
    x.insert(
        "vm_state_size".into(),
        Value::from(saved.snapshot.vm_state_size),
    );
    x.insert(
        "vm_clock_ns".into(),
        Value::from(saved.snapshot.vm_clock_nsec),
    );
    let consistency = match state {
        Some(_) => "vm-state",
        None => crate::live::POINT_IN_TIME,
    };
    x.insert("consistency".into(), Value::from(consistency));
    x.insert("took_ms".into(), Value::from(millis(saved.took)));
    if let Some(p) = saved.paused {
        x.insert("paused_ms".into(), Value::from(millis(p)));
    }
    if !saved.others.is_empty() {
        x.insert("other_devices".into(), Value::from(saved.others.clone()));
    }
    report.note(&match saved.paused {
        Some(p) => format!(
            "{}: saved the VM's state ({}) with the disk; the guest was paused {:.1} ms",
            disk.image.display(),
            human_bytes(saved.snapshot.vm_state_size),
            p.as_secs_f64() * 1000.0
        ),
        None => format!(
            "{}: disk-only snapshot through QEMU in {:.1} ms (the guest ran on)",
            disk.image.display(),
            saved.took.as_secs_f64() * 1000.0
        ),
    });
    if !saved.others.is_empty() {
        report.note(&format!(
            "the VM's other disks got the snapshot too: {}",
            saved.others.join(", ")
        ));
    }
    Ok(rec)
}

/// An internal snapshot needs a qcow2 image, and the disk's folder.
pub(crate) fn prepare(disk: &Disk, info: &ImageInfo) -> Result<()> {
    if info.format != "qcow2" {
        return Err(Error::usage(
            disk.image.display().to_string(),
            format!("is {}; internal snapshots need a qcow2 image", info.format),
        )
        .with_hint("use --method blocks (any format) or convert the image to qcow2"));
    }
    disk.ensure_info(crate::create::DEFAULT_BLOCK_SIZE, false)
        .map(drop)
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn name_taken(disk: &Disk, name: &str) -> Error {
    Error::new(
        Exit::CantCreate,
        disk.image.display().to_string(),
        format!("already has an internal snapshot named {name}"),
    )
}

/// Brings the image back to `rec`: loadvm through the VM when it runs
/// (memory and CPUs too, when the snapshot holds them), else `qemu-img
/// snapshot -a` on the stopped image.
pub fn restore(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    vm: Option<&mut Vm>,
    report: &Reporter,
) -> Result<()> {
    let Some(vm) = vm else {
        disk.refuse_if_in_use("restoring")?;
        changing::begin(disk, Change::Apply(&rec.name))?;
        qcow2::apply(&disk.image, &rec.name)?;
        changing::end(disk)?;
        report.note(&format!("{} is back at {}", disk.image.display(), rec.name));
        return Ok(());
    };
    let snap = vm.find(&rec.name)?;
    let plan = vm.plan_load(&snap)?;
    changing::begin(disk, Change::Apply(&rec.name))?;
    let took = match vm.load(plan) {
        Ok(t) => t,
        Err(e) => {
            // QEMU ended the job and said how: nothing is left to settle.
            if vm.status().is_ok() {
                changing::end(disk)?;
            }
            return Err(e);
        }
    };
    changing::end(disk)?;
    let status = vm.status()?;
    report.note(&format!(
        "{} is back at {} ({:.1} ms): the VM continues from the memory it held then ({status})",
        disk.image.display(),
        rec.name,
        took.as_secs_f64() * 1000.0
    ));
    Ok(())
}

/// Removes `rec` from the image (online through the VM when it runs) and
/// then its record.
pub fn delete(disk: &Disk, rec: &DiskSnapshotRecord, vm: Option<&mut Vm>) -> Result<()> {
    match vm {
        None => {
            disk.refuse_if_in_use("deleting a snapshot inside")?;
            changing::begin(disk, Change::Delete(&rec.name))?;
            if qcow2::names(&disk.image)?.contains(&rec.name) {
                qcow2::delete(&disk.image, &rec.name)?;
            }
        }
        Some(vm) => {
            changing::begin(disk, Change::Delete(&rec.name))?;
            if let Some(snap) = vm.snapshots()?.into_iter().find(|s| s.name == rec.name) {
                vm.delete(&snap)?;
            }
        }
    }
    crate::manage::remove_record(&disk.dir, &rec.name)?;
    changing::end(disk)
}
