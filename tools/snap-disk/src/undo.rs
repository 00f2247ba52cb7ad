//! Undoable restores: before a restore overwrites an image, a snapshot of
//! what it holds now, as Timeshift and snapper take one, so that restoring
//! the wrong snapshot is one command to undo.
//!
//! The snapshot is `before-restore-TIME`, tagged `pre-restore`, made by the
//! image's own method: an internal snapshot for one (through the running VM,
//! with its memory when the restore loads a VM state), an overlay for an
//! overlay chain, a blocks snapshot for the rest. It is an ordinary snapshot
//! with a record, so retention removes it like any other.

use chrono::Utc;
use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::error::Result;
use snap_shared::id::{free_name, id_for};
use snap_shared::record::DiskSnapshotRecord;

use crate::cli::{CreateArgs, DomainArgs, Keys, Method, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::savevm::Vm;

/// The tag every undo snapshot has.
pub const TAG: &str = "pre-restore";

/// Takes the undo snapshot of `disk` before `target` is restored into it.
pub fn before_restore(
    ctx: &Context,
    disk: &Disk,
    target: &DiskSnapshotRecord,
    vm: Option<&mut Vm>,
    keys: &Keys,
    (monitor, libvirt): (&MonitorArgs, &DomainArgs),
    report: &Reporter,
) -> Result<DiskSnapshotRecord> {
    let method = match target.method.as_str() {
        "qcow2-internal" => Method::Qcow2Internal,
        "overlay" => Method::Overlay,
        _ => Method::Blocks,
    };
    let loads_state = target
        .extra
        .get("vm_state_size")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 0);
    let args = CreateArgs {
        image: Some(disk.image.clone()),
        name: Some(name(disk)),
        disk: Some(disk.dir.name.clone()),
        method: Some(method),
        description: Some(format!("the image before {} was restored", target.name)),
        tags: vec![TAG.to_string()],
        monitor: monitor.clone(),
        libvirt: libvirt.clone(),
        // A load brings back memory too: the undo keeps what it replaces;
        // a running libvirt domain's internal snapshots always hold it.
        vm_state: method == Method::Qcow2Internal
            && ((vm.is_some() && loads_state)
                || (vm.is_none() && crate::domains::running(ctx, libvirt, &disk.image)?.is_some())),
        // An encrypted disk's blocks go to the recipients of the identities
        // the restore was given (it has no recipients of its own).
        identities_as_recipients: match disk.info.as_ref().is_some_and(|i| i.encrypted) {
            true => keys.identities.clone(),
            false => Vec::new(),
        },
        ..Default::default()
    };
    let (_, rec) = crate::create::take(ctx, &args, &disk.image, vm, report)?;
    Ok(rec)
}

/// `before-restore-TIME`, with `-2`, `-3`… when two restores share a second.
fn name(disk: &Disk) -> String {
    let base = format!("before-restore-{}", id_for(Utc::now()));
    free_name(base, |n| disk.dir.record_path(n).exists())
}
