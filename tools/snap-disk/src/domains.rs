//! Which libvirt domain runs an image, and a blocks snapshot read through
//! libvirt's backup job.
//!
//! The domain comes from `--domain`, else the config's disk entry (by the
//! image file, or by the domain's name), else the QEMU process holding the
//! image (libvirt names its guest on QEMU's command line). Only a running
//! domain changes how an image is read: a shut-off one's image is read as
//! any stopped image.

use std::path::{Path, PathBuf};

use snap_shared::config::DiskEntry;
use snap_shared::error::{Error, Result};

use crate::cli::DomainArgs;
use crate::disk::{Context, Disk};
use crate::image::ImageInfo;
use crate::libvirt::{Backup, BeginArgs, Domain, Virsh, domain_holding, domain_with_image};
use crate::live::{self, Since};
use crate::source::{MapTo, Read, Settle, Through, config_entry};
use snap_shared::holders::holders;

/// A running libvirt domain and which of its disks is the image.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) dom: Domain,
    pub(crate) target: Option<String>,
    /// The config asks for a frozen guest at each snapshot.
    pub(crate) freeze: bool,
}

/// The config's entry for a domain, by its name.
fn entry_by_domain<'a>(ctx: &'a Context, name: &str) -> Option<&'a DiskEntry> {
    ctx.disks.iter().find(|d| d.domain.as_deref() == Some(name))
}

/// The libvirt domain that runs `image` now, if one does. A domain named
/// by the flags or the config is asked for its state; one found from the
/// image's holder runs by definition.
pub(crate) fn running(ctx: &Context, flags: &DomainArgs, image: &Path) -> Result<Option<Running>> {
    let by_file = config_entry(ctx, image).filter(|e| e.domain.is_some());
    let named = flags
        .domain
        .clone()
        .or_else(|| by_file.and_then(|e| e.domain.clone()));
    let (name, found_running) = match named {
        Some(n) => (n, false),
        None if !Virsh::installed() => return Ok(None),
        None => {
            // Only a QEMU that libvirt started names its guest so; virsh is
            // asked nothing unless a process holds the image.
            let held = holders(image);
            match domain_holding(&held) {
                Some(n) => (n, true),
                // Only QEMU's lock is seen (it runs as another user): libvirt
                // is asked which running domain has the image.
                None if !held.is_empty() && held.iter().all(|h| h.pid.is_none()) => {
                    let virsh = Virsh {
                        uri: flags.connect.clone(),
                    };
                    match domain_with_image(&virsh, image) {
                        Some(n) => (n, true),
                        None => return Ok(None),
                    }
                }
                None => return Ok(None),
            }
        }
    };
    let entry = by_file.or_else(|| entry_by_domain(ctx, &name));
    let virsh = Virsh {
        uri: flags
            .connect
            .clone()
            .or_else(|| entry.and_then(|e| e.connect.clone())),
    };
    let dom = Domain::new(virsh, &name);
    if !found_running && !dom.is_active()? {
        return Ok(None);
    }
    Ok(Some(Running {
        dom,
        target: entry.and_then(|e| e.target.clone()),
        freeze: entry.is_some_and(|e| e.freeze),
    }))
}

/// The image of a domain's disk (`--domain NAME [--target DEV]`, or a
/// config entry with `domain` and no `image`).
pub(crate) fn image_of(virsh: Virsh, domain: &str, target: Option<&str>) -> Result<PathBuf> {
    let dom = Domain::new(virsh, domain);
    let disk = dom.disk(target, None)?;
    disk.source
        .ok_or_else(|| Error::internal("domain disk", "a disk without an image was chosen"))
}

/// The newest blocks snapshot read through libvirt, whose checkpoint the
/// next one builds on.
fn parent(disk: &Disk) -> Result<Option<live::Parent>> {
    let newest = disk
        .dir
        .snapshots()?
        .into_iter()
        .rev()
        .find(|r| r.method == "blocks" && r.extra.contains_key("checkpoint"));
    Ok(newest.and_then(|r| {
        Some(live::Parent {
            bitmap: r.extra.get("checkpoint")?.as_str()?.to_string(),
            map: disk.dir.map_path(&r.name),
            virtual_size: r.virtual_size,
        })
    }))
}

/// Reads the disk at one point in time through a libvirt backup job: only
/// the blocks changed since the parent's checkpoint when it can.
pub(crate) fn read(
    disk: &Disk,
    run: &Running,
    freeze: bool,
    info: &ImageInfo,
    to: &MapTo<'_>,
) -> Result<Read> {
    let signals = live::SignalGuard::install()?;
    let dd = run.dom.disk(run.target.as_deref(), Some(&disk.image))?;
    let parent = parent(disk)?;
    let args = BeginArgs {
        dom: &run.dom,
        disk: &dd,
        format: &info.format,
        virtual_size: info.virtual_size,
        disk_name: &disk.dir.name,
        snap: to.name,
        parent: parent.as_ref(),
        freeze,
    };
    let (mut backup, checkpoints, notes) = Backup::begin(args)?;
    for n in &notes {
        to.report.note(n);
    }
    if let Since::Everything(why) = &backup.since {
        to.report.note(&format!("reading the whole disk: {why}"));
    }
    let full_read = matches!(backup.since, Since::Everything(_));
    let (export, plan) = backup.plan(to.block_size, parent.as_ref(), &signals.stop)?;
    let what = format!(
        "{} (through libvirt domain {})",
        disk.image.display(),
        run.dom.name
    );
    let stats = to.write(&export, &what, info.virtual_size, plan.into_iter());
    drop(export);
    let stats = match stats {
        Err(_) if signals.stop.requested() => Err(live::interrupted()),
        other => other,
    }?;
    let frozen = backup.frozen;
    backup.finish()?;
    if signals.stop.requested() {
        return Err(live::interrupted());
    }
    let mut names = vec![
        ("domain", run.dom.name.clone()),
        ("target", dd.target.clone()),
    ];
    if let Some(c) = &checkpoints {
        names.push(("checkpoint", c.new.clone()));
    }
    Ok(Read {
        stats,
        virtual_size: info.virtual_size,
        through: Some(Through {
            consistency: match frozen {
                Some(_) => live::APPLICATION,
                None => live::POINT_IN_TIME,
            },
            frozen,
            full_read,
            names,
        }),
        settle: checkpoints.map_or(Settle::Nothing, Settle::Checkpoints),
    })
}
