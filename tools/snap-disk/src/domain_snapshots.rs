//! The qcow2-internal method on a libvirt domain: snapshots with the VM's
//! memory made, reverted and deleted through libvirt, so that `virsh
//! snapshot-list` and snap's records agree. The record names the domain
//! (`"domain"`, and `"libvirt_uri"` when not virsh's default), so a delete
//! or a prune goes through libvirt even while the domain is shut off.

use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::record::DiskSnapshotRecord;
use snap_shared::size::human_bytes;

use crate::cli::{DomainArgs, Method};
use crate::disk::Disk;
use crate::image::{self, ImageInfo};
use crate::libvirt::{Domain, Virsh};
use crate::record::base_record;

/// The domain a snapshot's record says libvirt made it in (reached by
/// `--connect` when given, else the URI the record names).
pub fn domain_of(rec: &DiskSnapshotRecord, flags: &DomainArgs) -> Option<Domain> {
    let name = rec.extra.get("domain")?.as_str()?;
    let uri = flags.connect.clone().or_else(|| {
        rec.extra
            .get("libvirt_uri")
            .and_then(Value::as_str)
            .map(String::from)
    });
    Some(Domain::new(Virsh { uri }, name))
}

/// `virsh snapshot-create-as`: every disk of the running domain, with its
/// memory and devices (libvirt's internal snapshots of a running domain
/// always hold them).
pub fn create(
    disk: &Disk,
    info: &ImageInfo,
    name: &str,
    dom: &Domain,
    description: Option<&str>,
    report: &Reporter,
) -> Result<DiskSnapshotRecord> {
    crate::internal::prepare(disk, info)?;
    let taken = info.snapshots.iter().any(|s| s.name == name)
        || dom.snapshot_names()?.iter().any(|s| s == name);
    if taken {
        return Err(Error::new(
            Exit::CantCreate,
            disk.image.display().to_string(),
            format!("already has an internal snapshot named {name}"),
        ));
    }
    let mut rec = base_record(disk, info, name, Method::Qcow2Internal);
    rec.parent = crate::create::parent_of(disk, Method::Qcow2Internal)?;
    let took = dom.snapshot_create(name, description)?;
    let made = image::probe(&disk.image)?
        .snapshots
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| {
            Error::new(
                Exit::Unavailable,
                format!("domain {}", dom.name),
                format!("libvirt made snapshot {name}, but the image has no internal snapshot by that name"),
            )
        })?;
    let x = &mut rec.extra;
    x.insert("id".into(), Value::from(made.id.clone()));
    x.insert("vm_state_size".into(), Value::from(made.vm_state_size));
    x.insert("vm_clock_ns".into(), Value::from(made.vm_clock_nsec));
    x.insert("consistency".into(), Value::from("vm-state"));
    x.insert("took_ms".into(), Value::from(took.as_secs_f64() * 1000.0));
    x.insert("domain".into(), Value::from(dom.name.clone()));
    if let Some(u) = &dom.virsh.uri {
        x.insert("libvirt_uri".into(), Value::from(u.clone()));
    }
    report.note(&format!(
        "{}: libvirt saved domain {}'s state ({}) with its disks in {:.1} s",
        disk.image.display(),
        dom.name,
        human_bytes(made.vm_state_size),
        took.as_secs_f64()
    ));
    Ok(rec)
}

/// `virsh snapshot-revert`: the domain continues from the memory it held then.
pub fn revert(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    dom: &Domain,
    report: &Reporter,
) -> Result<()> {
    let took = dom.snapshot_revert(&rec.name)?;
    let state = dom.state().unwrap_or_else(|_| "state unknown".into());
    report.note(&format!(
        "{} is back at {} through libvirt ({:.1} s): domain {} is {state}",
        disk.image.display(),
        rec.name,
        took.as_secs_f64(),
        dom.name
    ));
    Ok(())
}

/// Whether libvirt knows `rec` as a snapshot of its domain (not when the
/// domain is gone: the image's snapshot is then deleted without libvirt).
pub fn known(dom: &Domain, rec: &DiskSnapshotRecord) -> Result<bool> {
    match dom.snapshot_names() {
        Ok(names) => Ok(names.contains(&rec.name)),
        Err(e) if e.exit == Exit::NoInput => Ok(false),
        Err(e) => Err(e),
    }
}

/// `virsh snapshot-delete` (online or not), then the record.
pub fn delete(disk: &Disk, rec: &DiskSnapshotRecord, dom: &Domain) -> Result<()> {
    dom.snapshot_delete(&rec.name)?;
    crate::manage::remove_record(&disk.dir, &rec.name)
}
