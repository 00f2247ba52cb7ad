//! `restore`, `export` and `verify`: everything that reads a snapshot back.
//!
//! Nothing rewrites an image a process has open, and nothing rewrites one
//! before the snapshot it relies on is checked: the blocks a restore will
//! write are read and hashed first; a chain or qcow2 file passes `qemu-img
//! check` first. New files (`--to`, exports) are written under a temporary
//! name and appear whole, never over an existing file.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use snap_cli::{Reporter, Tally};
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Extra, OutcomeRecord, Record, SCHEMA};
use snap_shared::size::human_bytes;

use crate::cli::RestoreArgs;
use crate::disk::{Context, Disk};
use crate::image;
use crate::savevm::Vm;
use crate::{internal, overlay};
use snap_shared::blockdiff;
use snap_shared::blockstore::read_block;
use snap_shared::disks::block_path;
use snap_shared::hash::Sha256Digest;

pub fn run(ctx: &Context, args: &RestoreArgs, report: &Reporter) -> Result<Exit> {
    if args.dry_run {
        let _lock = ctx.lock(false)?;
        return crate::preview::run(ctx, args, report);
    }
    let out = restore(ctx, args, report)?;
    RecordWriter::new(io::stdout().lock()).write(&Record::Restored(out))?;
    Ok(Exit::Ok)
}

/// The restore `args` ask for (not a dry run), its `restored` record.
pub fn restore(ctx: &Context, args: &RestoreArgs, report: &Reporter) -> Result<OutcomeRecord> {
    let dec = args.keys.decrypt()?;
    let _lock = ctx.lock(true)?;
    let disk = ctx.disk(&args.disk)?;
    let mut vm = internal::running_vm(ctx, &disk.image, &args.monitor, report)?;
    crate::changing::recover(&disk, vm.as_mut(), report)?;
    let internal = internal::snapshots(&disk, vm.as_mut())?;
    let rec = crate::listing::find(&disk, &args.name, internal.as_deref())?;
    // A snapshot libvirt made is reverted through libvirt, running or not.
    let revert = match crate::domain_snapshots::domain_of(&rec, &args.libvirt) {
        Some(dom) if args.to.is_none() && crate::domain_snapshots::known(&dom, &rec)? => Some(dom),
        _ => None,
    };
    // Any other restore into a running domain's image stops it first, if asked.
    let stopped = match (&revert, &args.to, vm.is_some()) {
        (None, None, false) => stop_domain(ctx, args, &disk, report)?,
        _ => None,
    };
    let restored = restore_and_undo(
        ctx,
        args,
        &disk,
        &rec,
        vm.as_mut(),
        revert.as_ref(),
        &dec,
        report,
    );
    let out = match (restored, &stopped) {
        (Ok(out), _) => out,
        (Err(e), Some(s)) => {
            return Err(match s.left_off() {
                Some(why) => e.with_hint(why),
                None => e,
            });
        }
        (Err(e), None) => return Err(e),
    };
    if let Some(s) = stopped {
        s.start_again(report)?;
    }
    Ok(out)
}

/// When a libvirt domain runs the image: refused (75, naming it), or with
/// `--stop` shut down, to be started again after the restore.
fn stop_domain(
    ctx: &Context,
    args: &RestoreArgs,
    disk: &Disk,
    report: &Reporter,
) -> Result<Option<crate::libvirt::Stopped>> {
    let Some(run) = crate::domains::running(ctx, &args.libvirt, &disk.image)? else {
        return Ok(None);
    };
    if !args.stop {
        return Err(domain_runs_it(disk, &run.dom.name));
    }
    let timeout = std::time::Duration::from_secs(args.timeout);
    crate::libvirt::Stopped::shut_down(&run.dom, timeout, args.force, report).map(Some)
}

/// The refusal of a restore (or its dry run) into an image a libvirt
/// domain runs, without `--stop`: 75, naming the domain.
pub(crate) fn domain_runs_it(disk: &Disk, domain: &str) -> Error {
    Error::new(
        Exit::TempFail,
        format!("restoring {}", disk.image.display()),
        format!("libvirt domain {domain} runs it"),
    )
    .with_hint(format!(
        "shut it down first (virsh shutdown {domain}), or give --stop to have snap-disk shut it down, \
         restore, and start it again; nothing was changed"
    ))
}

/// The undo snapshot (unless asked not to, or finishing a restore), then
/// the restore itself.
#[allow(clippy::too_many_arguments)]
fn restore_and_undo(
    ctx: &Context,
    args: &RestoreArgs,
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    mut vm: Option<&mut Vm>,
    revert: Option<&crate::libvirt::Domain>,
    dec: &Decrypt,
    report: &Reporter,
) -> Result<OutcomeRecord> {
    // A rerun that finishes an interrupted restore: the first run took the
    // undo snapshot, and the image is half restored now.
    let finishing = disk.dir.restoring_marker().exists();
    let undo = match args.to.is_some() || args.no_undo || finishing {
        true => None,
        false => {
            // What would refuse the restore refuses it before the undo is taken.
            match vm.as_deref_mut() {
                Some(vm) if rec.method == "qcow2-internal" => {
                    let snap = vm.find(&rec.name)?;
                    vm.plan_load(&snap).map(drop)?
                }
                _ if revert.is_some() => {}
                _ => disk.refuse_if_in_use("restoring")?,
            }
            let u = crate::undo::before_restore(
                ctx,
                disk,
                rec,
                vm.as_deref_mut(),
                &args.keys,
                (&args.monitor, &args.libvirt),
                report,
            )?;
            Some(u)
        }
    };
    // A blocks undo snapshot's map is the image as it is now.
    let now = undo
        .as_ref()
        .filter(|u| u.method == "blocks" && rec.method == "blocks")
        .map(|u| disk.dir.map_path(&u.name));
    let mut out = match revert {
        Some(dom) => {
            crate::domain_snapshots::revert(disk, rec, dom, report)?;
            outcome(rec, &disk.image, 0)
        }
        None => restore_record(
            disk,
            rec,
            args.to.as_deref(),
            dec,
            vm,
            now.as_deref(),
            report,
        )?,
    };
    let undo = undo.map(|u| u.name);
    if let Some(u) = undo {
        report.note(&format!(
            "the image as it was is snapshot {u}; to undo: snap-disk restore {} {u}",
            disk.dir.name
        ));
        out.extra.insert("undo".into(), u.into());
    }
    Ok(out)
}

pub(crate) use crate::newfile::{Scratch, refuse_existing, write_new};

pub(crate) fn outcome(rec: &DiskSnapshotRecord, to: &Path, bytes: u64) -> OutcomeRecord {
    outcome_of(&format!("{}/{}", rec.disk, rec.name), to, bytes)
}

/// The `restored` record of `what` (`DISK/NAME`) written to `to`.
pub(crate) fn outcome_of(what: &str, to: &Path, bytes: u64) -> OutcomeRecord {
    OutcomeRecord {
        schema: SCHEMA.to_string(),
        what: what.to_string(),
        to: Some(to.display().to_string()),
        files: 1,
        bytes,
        errors: 0,
        extra: Extra::new(),
    }
}

/// Restores `rec` into the image, or into the new file `to`.
pub fn restore_record(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    to: Option<&Path>,
    dec: &Decrypt,
    vm: Option<&mut Vm>,
    now: Option<&Path>,
    report: &Reporter,
) -> Result<OutcomeRecord> {
    if let Some(out) = to {
        let bytes = write_new(disk, rec, out, "raw", dec, report)?;
        report.note(&format!(
            "{}/{} written to {}",
            rec.disk,
            rec.name,
            out.display()
        ));
        return Ok(outcome(rec, out, bytes));
    }
    if rec.method == "qcow2-internal" {
        internal::restore(disk, rec, vm, report)?;
        return Ok(outcome(rec, &disk.image, 0));
    }
    disk.refuse_if_in_use("restoring")?;
    let bytes = match rec.method.as_str() {
        "blocks" => restore_blocks(disk, rec, now, dec, report)?,
        "overlay" => {
            overlay::restore(&disk.image, &frozen_of(rec)?)?;
            report.note(&format!(
                "{} is back at {} (what was written since is gone)",
                disk.image.display(),
                rec.name
            ));
            0
        }
        m => return Err(unknown_method(rec, m)),
    };
    Ok(outcome(rec, &disk.image, bytes))
}

pub(crate) fn unknown_method(rec: &DiskSnapshotRecord, m: &str) -> Error {
    Error::data(
        format!("snapshot {}/{}", rec.disk, rec.name),
        format!("unknown method {m:?}"),
    )
}

/// The frozen file of an overlay snapshot.
pub fn frozen_of(rec: &DiskSnapshotRecord) -> Result<PathBuf> {
    rec.extra
        .get("file")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::data(
                format!("snapshot {}/{}", rec.disk, rec.name),
                "the record has no \"file\"",
            )
        })
}

/// In place: compare, check what will be written, write only the differences.
/// A marker names the snapshot while the image is being rewritten, so that an
/// interrupted restore is finished before the image is used for anything else.
fn restore_blocks(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    now: Option<&Path>,
    dec: &Decrypt,
    report: &Reporter,
) -> Result<u64> {
    let info = image::probe(&disk.image)?;
    let map = disk.dir.map_path(&rec.name);
    // QEMU cannot open a differencing VHDX (its parent comes from the file).
    let qemu_opens = !(info.format == "vhdx" && info.backing.is_some());
    if info.format != "raw" && qemu_opens && crate::daemon::Daemon::available() {
        return restore_through_qemu(disk, rec, &info.format, (&map, now), dec, report);
    }
    if info.format != "raw" {
        return replace_with_converted(disk, rec, &info.format, dec, report);
    }
    let total = rec.virtual_size;
    let progress = |done: u64| report.tally(|| Tally::bytes("comparing", done, Some(total)));
    // The undo snapshot just read the whole image: its map says what the
    // image holds, so the comparison reads nothing more.
    let (header, diffs) = match now {
        Some(now) => blockdiff::compare_maps(now, &map)?,
        None => blockdiff::compare(&disk.image, &map, &progress)?,
    };
    let len_ok = fs::metadata(&disk.image).map(|m| m.len()).unwrap_or(0) == header.virtual_size;
    if diffs.is_empty() && len_ok {
        report.note(&format!(
            "{} already matches {}",
            disk.image.display(),
            rec.name
        ));
        clear_marker(disk)?;
        return Ok(0);
    }
    let blocks_dir = disk.dir.blocks_dir();
    let fetch =
        |d: &Sha256Digest| read_block(&block_path(&blocks_dir, d), d, dec, header.block_size);
    blockdiff::check_blocks(&diffs, &fetch)?;
    let marker = disk.dir.restoring_marker();
    fsutil::write_atomic(&marker, 0o600, true, |f| f.write_all(rec.name.as_bytes()))
        .map_err(|e| Error::io(&marker, e))?;
    let n = diffs.len() as u64;
    let progress =
        |done: u64| report.tally(|| Tally::bytes("writing", done, Some(n * header.block_size)));
    blockdiff::apply(&disk.image, &header, &diffs, &fetch, &progress)?;
    clear_marker(disk)?;
    let bytes: u64 = diffs.iter().map(|d| header.len_of(d.index)).sum();
    report.note(&format!(
        "{} is back at {}: {} of {} blocks rewritten ({})",
        disk.image.display(),
        rec.name,
        n,
        header.block_count(),
        human_bytes(bytes)
    ));
    Ok(bytes)
}

/// In place through QEMU's block layer (the `inplace` module): an image in
/// any format QEMU writes keeps its file and identity, and only the blocks
/// that differ are written.
fn restore_through_qemu(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    format: &str,
    (map, now): (&Path, Option<&Path>),
    dec: &Decrypt,
    report: &Reporter,
) -> Result<u64> {
    let blocks_dir = disk.dir.blocks_dir();
    let size = snap_shared::blockmap::MapReader::open(map)?
        .header
        .block_size;
    let fetch = |d: &Sha256Digest| read_block(&block_path(&blocks_dir, d), d, dec, size);
    let marker = disk.dir.restoring_marker();
    let begin = || {
        fsutil::write_atomic(&marker, 0o600, true, |f| f.write_all(rec.name.as_bytes()))
            .map_err(|e| Error::io(&marker, e))
    };
    let progress =
        |what: &str, done: u64, of: u64| report.tally(|| Tally::bytes(what, done, Some(of)));
    let bytes = crate::inplace::restore(&disk.image, format, map, now, &fetch, &begin, &progress)?;
    clear_marker(disk)?;
    match bytes {
        0 => report.note(&format!(
            "{} already matches {}",
            disk.image.display(),
            rec.name
        )),
        n => report.note(&format!(
            "{} is back at {}: {} rewritten in place through QEMU ({format})",
            disk.image.display(),
            rec.name,
            human_bytes(n)
        )),
    }
    Ok(bytes)
}

fn clear_marker(disk: &Disk) -> Result<()> {
    let marker = disk.dir.restoring_marker();
    match fs::remove_file(&marker) {
        Ok(()) => fsutil::fsync_dir(&disk.dir.root).map_err(|e| Error::io(&disk.dir.root, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(&marker, e)),
    }
}

/// A blocks snapshot of a non-raw image: written out, converted back to the
/// image's format, and renamed over it (the image is replaced whole, at once).
fn replace_with_converted(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    format: &str,
    dec: &Decrypt,
    report: &Reporter,
) -> Result<u64> {
    let tmp = fsutil::temp_name(&disk.image, "restore");
    let _ = fs::remove_file(&tmp);
    let bytes = write_new(disk, rec, &tmp, format, dec, report)?;
    // The image keeps its format and virtual size, or is left as it was.
    let made = image::probe(&tmp);
    let same = made
        .as_ref()
        .is_ok_and(|i| i.format == format && i.virtual_size == rec.virtual_size);
    if !same {
        let _ = fs::remove_file(&tmp);
        let got = match made {
            Ok(i) => format!("a {} image of {} bytes", i.format, i.virtual_size),
            Err(e) => e.cause,
        };
        return Err(Error::new(
            Exit::CantCreate,
            format!("restoring {}", disk.image.display()),
            format!(
                "qemu-img made {got}, where the snapshot is a {format} image of {} bytes; \
                 the image was left as it was",
                rec.virtual_size
            ),
        ));
    }
    fs::rename(&tmp, &disk.image).map_err(|e| Error::io(&disk.image, e))?;
    fsutil::fsync_dir(fsutil::parent_of(&disk.image)).map_err(|e| Error::io(&disk.image, e))?;
    report.note(&format!(
        "{} is back at {} (rewritten whole: it is {format})",
        disk.image.display(),
        rec.name
    ));
    Ok(bytes)
}
