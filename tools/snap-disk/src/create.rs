//! `snap-disk create`: one snapshot by the method the image calls for, its
//! record published last, and the `--before` guard around a risky command.

use std::fs;
use std::path::Path;

use chrono::Utc;
use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::id::{check_name, free_id};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Record};
use snap_shared::size::human_bytes;

use crate::cli::{CreateArgs, Method};
use crate::disk::{Context, Disk};
use crate::image::{self, ImageInfo};
use crate::internal;
use crate::live;
use crate::overlay;
use crate::record::base_record;
use crate::savevm::Vm;
use crate::source::{Settle, endpoints, how_to_read};

/// The block size of a new disk's `blocks` snapshots (see docs/disk.md for the measurement).
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;

pub fn run(ctx: &Context, args: &CreateArgs, report: &Reporter) -> Result<Exit> {
    if let Some(domain) = &args.libvirt.domain {
        return run_domain(ctx, args, domain, report);
    }
    match &args.image {
        Some(image) => run_one(ctx, args, image, report),
        None => run_all(ctx, args, report),
    }
}

/// `--domain NAME [--target DEV] [SNAPSHOT]`: the image is the domain's
/// disk, and the one operand is the snapshot's name.
fn run_domain(ctx: &Context, args: &CreateArgs, domain: &str, report: &Reporter) -> Result<Exit> {
    if args.name.is_some() {
        return Err(Error::usage(
            "--domain",
            "takes the image from the domain: give only the snapshot's name",
        ));
    }
    let virsh = crate::libvirt::Virsh {
        uri: args.libvirt.connect.clone().or_else(|| {
            ctx.disks
                .iter()
                .find(|d| d.domain.as_deref() == Some(domain))
                .and_then(|d| d.connect.clone())
        }),
    };
    let image = crate::domains::image_of(virsh, domain, args.target.as_deref())?;
    let args = CreateArgs {
        image: Some(image.clone()),
        name: args
            .image
            .as_ref()
            .map(|n| n.to_string_lossy().into_owned()),
        ..args.clone()
    };
    run_one(ctx, &args, &image, report)
}

/// `--all`: every disk of the config, in its order. A disk that fails is
/// reported and the rest still run; the exit is the first failure's.
fn run_all(ctx: &Context, args: &CreateArgs, report: &Reporter) -> Result<Exit> {
    if ctx.disks.is_empty() {
        report.note("no disks in the config: nothing to snapshot");
        return Ok(Exit::Ok);
    }
    let mut exit = Exit::Ok;
    for entry in &ctx.disks {
        let what = match (&entry.image, &entry.domain) {
            (Some(i), _) => i.clone(),
            (None, Some(d)) => format!("domain {d}"),
            (None, None) => String::new(),
        };
        let image = match (&entry.image, &entry.domain) {
            (Some(i), _) => Ok(snap_shared::config::expand_tilde(i)),
            (None, Some(d)) => {
                let virsh = crate::libvirt::Virsh {
                    uri: entry.connect.clone(),
                };
                crate::domains::image_of(virsh, d, entry.target.as_deref())
            }
            (None, None) => Err(Error::internal("config", "a disk entry with no image")),
        };
        let this = match image.and_then(|image| run_one(ctx, args, &image, report)) {
            Ok(exit) => exit,
            Err(mut e) => {
                // Most errors name the image already; the rest get it here.
                if !e.context.contains(&what) {
                    e.context = format!("disk {what}: {}", e.context);
                }
                report.failed(&e);
                e.exit
            }
        };
        if exit == Exit::Ok {
            exit = this;
        }
    }
    Ok(exit)
}

fn run_one(ctx: &Context, args: &CreateArgs, image: &Path, report: &Reporter) -> Result<Exit> {
    let lock = ctx.lock(true)?;
    let (disk, rec) = take(ctx, args, image, None, report)?;
    drop(lock);
    match &args.before {
        Some(cmd) => crate::guard::guard(ctx, &disk, &rec, cmd, args.rollback_on_failure, report),
        None => Ok(Exit::Ok),
    }
}

/// Takes one snapshot of `image` as `args` say, under the store lock the
/// caller holds, and writes its record on stdout. `vm` is the running VM's
/// monitor when the caller has it open already (a restore's undo snapshot).
pub(crate) fn take(
    ctx: &Context,
    args: &CreateArgs,
    image: &Path,
    vm: Option<&mut Vm>,
    report: &Reporter,
) -> Result<(Disk, DiskSnapshotRecord)> {
    let info = image::probe(image)?;
    // A running libvirt domain is reached through libvirt; any other VM
    // through the QMP socket the flags or the config name.
    let domain = match vm {
        Some(_) => None,
        None => crate::domains::running(ctx, &args.libvirt, image)?,
    };
    let ends = match domain {
        Some(_) => None,
        None => endpoints(ctx, args, image)?,
    };
    let method = pick_method(args, &info, ends.is_some() || domain.is_some())?;
    if let Some(n) = &args.name {
        check_name(n).map_err(|e| Error::usage(format!("snapshot name {n:?}"), e))?;
        if n == "disk" {
            // `disk.json` holds the disk's settings, beside the records.
            return Err(Error::usage(
                "snapshot name \"disk\"",
                "is reserved; pick another",
            ));
        }
    }
    let disk = ctx.for_create(image, args.disk.as_deref())?;
    let mut own = match (method, &vm, &domain) {
        (Method::Qcow2Internal, None, None) => running_vm(&disk, args, ends.as_ref(), report)?,
        _ => None,
    };
    if let (Method::Qcow2Internal, Some(d)) = (method, &domain)
        && (!args.vm_state || args.vm_state_disk.is_some())
    {
        return Err(Error::usage(
            disk.image.display().to_string(),
            format!(
                "libvirt domain {} runs it: its internal snapshots hold the VM's memory, with \
                 every disk (--vm-state, without --vm-state-disk)",
                d.dom.name
            ),
        )
        .with_hint("add --vm-state, or use --method blocks for a live disk snapshot"));
    }
    let mut vm = match method {
        Method::Qcow2Internal => vm.or(own.as_mut()),
        _ => None,
    };
    // A repair may remove a half-made internal snapshot: read the image again.
    let info = match crate::changing::recover(&disk, vm.as_deref_mut(), report)? {
        true => image::probe(image)?,
        false => info,
    };
    disk.refuse_if_restoring()?;
    let name = match &args.name {
        Some(n) if disk.dir.record_path(n).exists() => {
            return Err(Error::new(
                Exit::CantCreate,
                format!("disk {}", disk.dir.name),
                format!("already has a snapshot named {n}"),
            )
            .with_hint("pick another name, or delete the old one first"));
        }
        Some(n) => n.clone(),
        None => free_id(Utc::now(), |id| disk.dir.record_path(id).exists()),
    };
    let through_libvirt = method == Method::Qcow2Internal && domain.is_some();
    let reading = match vm {
        Some(_) => None,
        None if through_libvirt => None,
        None => Some(how_to_read(
            &disk,
            (&info.format, info.backing.is_some()),
            method,
            (ends, domain.clone()),
            args,
            report,
        )?),
    };
    // A blocks snapshot travels to destinations: its record (which names
    // its map's sha256) is signed, as snap-pack signs an archive's. The key
    // is there before anything is read.
    let signer = match method {
        Method::Blocks => Some(ctx.signer(report)?),
        _ => None,
    };
    let (rec, settle) = match (method, reading) {
        (Method::Blocks, Some(reading)) => crate::blocks_create::create_blocks(
            &ctx.store, &disk, &info, &name, args, reading, report,
        )?,
        (Method::Qcow2Internal, _) if through_libvirt => {
            let d = domain.as_ref().expect("through_libvirt means a domain");
            let desc = args.description.as_deref();
            let rec = crate::domain_snapshots::create(&disk, &info, &name, &d.dom, desc, report)?;
            (rec, Settle::Nothing)
        }
        (Method::Qcow2Internal, _) => {
            let state = args.vm_state.then_some(args.vm_state_disk.as_deref());
            let rec = internal::create(&disk, &info, &name, vm, state, report)?;
            (rec, Settle::Nothing)
        }
        (Method::Overlay, _) => (create_overlay(&disk, &info, &name)?, Settle::Nothing),
        (Method::Blocks, None) => unreachable!("a blocks snapshot always has a reading"),
    };
    let rec = DiskSnapshotRecord {
        description: args.description.clone(),
        tags: args.tags.clone(),
        ..rec
    };
    disk.dir.publish_record(&rec, signer.as_ref())?;
    // Only now may the parent's bitmap or checkpoint go: the new snapshot is the parent.
    if let Err(e) = settle.published() {
        report.warn(&format!("{e}; the next snapshot reads a little more"));
    }
    crate::changing::end(&disk)?;
    ctx.catalog(|c| c.put_disk_snapshot(&rec));
    report.note(&summary(&rec));
    RecordWriter::new(std::io::stdout().lock()).write(&Record::DiskSnapshot(rec.clone()))?;
    Ok((disk, rec))
}

fn pick_method(args: &CreateArgs, info: &ImageInfo, live: bool) -> Result<Method> {
    let method = match (args.overlay, args.method) {
        (true, _) => Method::Overlay,
        (_, Some(m)) => m,
        _ if args.vm_state => Method::Qcow2Internal,
        // With a VM's monitor: a blocks snapshot read through QEMU, unless
        // --vm-state or --method qcow2-internal asks for one inside the image.
        _ if live => Method::Blocks,
        _ if info.format == "qcow2" => Method::Qcow2Internal,
        _ => Method::Blocks,
    };
    if args.vm_state && method != Method::Qcow2Internal {
        return Err(Error::usage(
            "--vm-state",
            format!(
                "saves the VM inside a qcow2 image (qcow2-internal), not with {}",
                method.as_str()
            ),
        ));
    }
    if method != Method::Blocks {
        for (set, flag) in [
            (args.freeze, "--freeze"),
            (args.nbd_server.is_some(), "--nbd-server"),
        ] {
            if set {
                return Err(Error::usage(
                    flag,
                    format!(
                        "is for blocks snapshots read through QEMU, not {}",
                        method.as_str()
                    ),
                ));
            }
        }
    }
    Ok(method)
}

/// The running VM an internal snapshot goes through: the image is held and
/// its monitor known (or `--qmp` given). `--require-stopped` never goes
/// through it (the image in use is then refused), and `--vm-state` needs it.
fn running_vm(
    disk: &Disk,
    args: &CreateArgs,
    ends: Option<&live::Endpoints>,
    report: &Reporter,
) -> Result<Option<Vm>> {
    let held = || !snap_shared::holders::holders(&disk.image).is_empty();
    let ends = match ends {
        Some(e) if !args.require_stopped && (args.monitor.qmp.is_some() || held()) => e,
        _ if args.vm_state => {
            return Err(Error::new(
                Exit::Unavailable,
                disk.image.display().to_string(),
                "is not in use by a running VM: there is no VM state to save",
            )
            .with_hint(
                "start the VM (with -qmp unix:SOCKET,server=on,wait=off), or leave out --vm-state",
            ));
        }
        _ => return Ok(None),
    };
    internal::connect(ends, &disk.image, report).map(Some)
}

/// The newest snapshot of the disk made by `method`.
pub(crate) fn parent_of(disk: &Disk, method: Method) -> Result<Option<String>> {
    Ok(disk
        .dir
        .snapshots()?
        .into_iter()
        .rev()
        .find(|r| r.method == method.as_str())
        .map(|r| r.name))
}

fn create_overlay(disk: &Disk, info: &ImageInfo, name: &str) -> Result<DiskSnapshotRecord> {
    disk.ensure_info(DEFAULT_BLOCK_SIZE, false)?;
    let frozen = overlay::create(&disk.image, info, name)?;
    let mut rec = base_record(disk, info, name, Method::Overlay);
    rec.parent = parent_of(disk, Method::Overlay)?;
    rec.stored_bytes = fs::metadata(&frozen).map(|m| m.len()).unwrap_or(0);
    rec.extra
        .insert("file".into(), Value::from(frozen.display().to_string()));
    if let Some(b) = &info.backing {
        rec.extra
            .insert("backing".into(), Value::from(b.display().to_string()));
    }
    Ok(rec)
}

/// One line for people: what the snapshot is and what it cost.
fn summary(rec: &DiskSnapshotRecord) -> String {
    match rec.method.as_str() {
        "blocks" => format!(
            "{}/{}: {} image, {} blocks, {} stored, {} new",
            rec.disk,
            rec.name,
            human_bytes(rec.virtual_size),
            rec.blocks,
            human_bytes(rec.stored_bytes),
            human_bytes(rec.new_bytes)
        ),
        m => format!("{}/{}: {m} snapshot of {}", rec.disk, rec.name, rec.image),
    }
}
