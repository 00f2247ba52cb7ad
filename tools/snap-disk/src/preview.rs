//! `restore --dry-run`: what a restore would do, with nothing changed and
//! no undo snapshot taken. A blocks snapshot is compared with the image as
//! the restore compares it (the file read directly where its layout allows,
//! else through a read-only QEMU export), giving the blocks it would
//! rewrite; an internal or overlay snapshot puts the whole image back. What
//! would refuse the restore refuses the dry run the same way (the image in
//! use: 75; a libvirt domain running it, without --stop: 75).

use std::path::PathBuf;

use snap_cli::{Reporter, Tally};
use snap_shared::error::{Exit, Result};
use snap_shared::record::DiskSnapshotRecord;
use snap_shared::size::human_bytes;

use crate::cli::RestoreArgs;
use crate::disk::{Context, Disk};
use crate::{image, internal};

/// What a restore would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The snapshot, `DISK/NAME`.
    pub what: String,
    /// Where it would be written: the image, or the new file.
    pub to: PathBuf,
    /// For a blocks snapshot restored in place: blocks it would rewrite,
    /// of how many, and their bytes.
    pub blocks: Option<(u64, u64, u64)>,
    /// The domain a restore would stop and start again (--stop).
    pub stops: Option<String>,
    /// What it would do, in words.
    pub says: String,
}

/// The preview of `args`' restore; a refusal is the restore's own.
pub fn preview(ctx: &Context, args: &RestoreArgs, report: &Reporter) -> Result<Preview> {
    let disk = ctx.disk(&args.disk)?;
    let mut vm = internal::running_vm(ctx, &disk.image, &args.monitor, report)?;
    let internal = internal::snapshots(&disk, vm.as_mut())?;
    let rec = crate::listing::find(&disk, &args.name, internal.as_deref())?;
    let what = format!("{}/{}", rec.disk, rec.name);
    if let Some(to) = &args.to {
        crate::restore::refuse_existing(to)?;
        return Ok(Preview {
            says: format!(
                "would write {what} ({}) to the new file {}; the image is not touched",
                human_bytes(rec.virtual_size),
                to.display()
            ),
            what,
            to: to.clone(),
            blocks: None,
            stops: None,
        });
    }
    let stops = match vm.is_some() {
        true => None,
        false => match crate::domains::running(ctx, &args.libvirt, &disk.image)? {
            Some(run) if args.stop => Some(run.dom.name.clone()),
            Some(run) => return Err(crate::restore::domain_runs_it(&disk, &run.dom.name)),
            None => None,
        },
    };
    let (blocks, says) = match rec.method.as_str() {
        "blocks" => {
            if stops.is_none() {
                disk.refuse_if_in_use("restoring")?;
            }
            let (n, total, bytes) = differing(&disk, &rec, report)?;
            let says = match n {
                0 => format!(
                    "{} already matches {what}: nothing would be written",
                    disk.image.display()
                ),
                n => format!(
                    "would rewrite {n} of {total} blocks ({}) of {} to bring it back to {what}",
                    human_bytes(bytes),
                    disk.image.display()
                ),
            };
            (Some((n, total, bytes)), says)
        }
        "qcow2-internal" => (
            None,
            format!(
                "would revert {} to its internal snapshot {}: the whole image{}",
                disk.image.display(),
                rec.name,
                match vm.is_some() {
                    true => ", in the running VM (its memory too, when the snapshot holds it)",
                    false => "",
                }
            ),
        ),
        _ => {
            disk.refuse_if_in_use("restoring")?;
            (
                None,
                format!(
                    "would put {} back at {what}: what was written since is dropped",
                    disk.image.display()
                ),
            )
        }
    };
    let says = match &stops {
        Some(d) => {
            format!("{says}; libvirt domain {d} would be shut down first and started again after")
        }
        None => says,
    };
    Ok(Preview {
        what,
        to: disk.image.clone(),
        blocks,
        stops,
        says,
    })
}

/// The blocks of the image that differ from a blocks snapshot: how many,
/// of how many, and their bytes.
fn differing(disk: &Disk, rec: &DiskSnapshotRecord, report: &Reporter) -> Result<(u64, u64, u64)> {
    let info = image::probe(&disk.image)?;
    let map = disk.dir.map_path(&rec.name);
    let header = snap_shared::blockmap::MapReader::open(&map)?.header;
    let diffs = match info.format.as_str() {
        "raw" => {
            let progress = |done: u64| {
                report.tally(|| Tally::bytes("comparing", done, Some(rec.virtual_size)))
            };
            snap_shared::blockdiff::compare(&disk.image, &map, &progress)?.1
        }
        format => {
            let progress = |what: &str, done: u64, of: u64| {
                report.tally(|| Tally::bytes(what, done, Some(of)))
            };
            crate::inplace::differences(&disk.image, format, &map, &progress)?
        }
    };
    let bytes = diffs.iter().map(|d| header.len_of(d.index)).sum();
    Ok((diffs.len() as u64, header.block_count(), bytes))
}

/// `restore --dry-run`: the preview, said, and as a record on stdout.
pub fn run(ctx: &Context, args: &RestoreArgs, report: &Reporter) -> Result<Exit> {
    let p = preview(ctx, args, report)?;
    report.note(&p.says);
    let mut out = crate::restore::outcome_of(&p.what, &p.to, 0);
    out.extra.insert("dry_run".into(), true.into());
    if let Some((n, total, bytes)) = p.blocks {
        out.extra.insert("blocks".into(), n.into());
        out.extra.insert("of_blocks".into(), total.into());
        out.extra.insert("would_write".into(), bytes.into());
    }
    snap_shared::jsonl::RecordWriter::new(std::io::stdout().lock())
        .write(&snap_shared::record::Record::Restored(out))?;
    Ok(Exit::Ok)
}
