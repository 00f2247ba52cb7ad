//! `export`: a snapshot as a standalone image file, in the format its
//! name's whole suffix says (a `.qcow2.gz` is a gzipped qcow2, never a
//! gzipped raw image), optionally encrypted to age recipients as a whole
//! (`NAME.SUFFIX.age`). Every export is made under a temporary name, mode
//! 0600 (a disk image holds everything the VM had), and appears whole; an
//! export of an internal snapshot is noted in the disk's folder, so that
//! `compact` knows it can drop that snapshot.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use snap_cli::Reporter;
use snap_shared::crypt::{self, Encrypt};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Record};
use snap_shared::size::human_bytes;

use crate::cli::{Keys, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::internal;
use crate::restore::{Scratch, outcome, write_new};

/// Where an export goes, and to whom it is encrypted.
pub struct ExportTo<'a> {
    pub out: &'a Path,
    pub recipients: &'a [String],
    pub recipients_files: &'a [PathBuf],
}

/// The suffixes an export knows, longest first, and what each writes: a
/// qemu-img format (`raw` streamed by snap), or an image compressed as a
/// whole (`zst`, `gz`: a raw stream; `qcow2.zst`, `qcow2.gz`).
const EXPORT_SUFFIXES: &[(&str, &str)] = &[
    (".qcow2.zst", "qcow2.zst"),
    (".qcow2.gz", "qcow2.gz"),
    (".qcow2", "qcow2"),
    (".raw.zst", "zst"),
    (".raw.gz", "gz"),
    (".raw", "raw"),
    (".img.zst", "zst"),
    (".img.gz", "gz"),
    (".img", "raw"),
    (".vhdx", "vhdx"),
    (".vdi", "vdi"),
    (".vmdk", "vmdk"),
];

/// What an export writes, by the output's full suffix ([`EXPORT_SUFFIXES`]);
/// `None` for a suffix it does not know: a `.qcow2.gz` is never a gzipped
/// raw image.
pub fn out_format(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    EXPORT_SUFFIXES
        .iter()
        .find(|(suffix, _)| name.ends_with(suffix) && name.len() > suffix.len())
        .map(|(_, format)| *format)
}

pub fn export(
    ctx: &Context,
    operand: &str,
    name: &str,
    to: &ExportTo<'_>,
    keys: &Keys,
    monitor: &MonitorArgs,
    report: &Reporter,
) -> Result<Exit> {
    let out = to.out;
    let rs = crypt::recipients(to.recipients, to.recipients_files)?;
    let sealed = has_age_suffix(out);
    match (rs.is_empty(), sealed) {
        (true, true) => {
            return Err(Error::usage(
                out.display().to_string(),
                "ends in .age: give --recipient or --recipients-file to encrypt it",
            ));
        }
        (false, false) => {
            return Err(Error::usage(
                out.display().to_string(),
                "is encrypted (--recipient): end its name in .age, after the format's suffix",
            ));
        }
        _ => {}
    }
    let plain_name = match sealed {
        true => out.with_extension(""),
        false => out.to_path_buf(),
    };
    let Some(fmt) = out_format(&plain_name) else {
        return Err(Error::usage(
            out.display().to_string(),
            format!(
                "the name says no format an export writes: end it in {}",
                EXPORT_SUFFIXES
                    .iter()
                    .map(|(suffix, _)| *suffix)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let dec = keys.decrypt()?;
    let disk = ctx.disk(operand)?;
    let mut vm = internal::running_vm(ctx, &disk.image, monitor, report)?;
    let internal = internal::snapshots(&disk, vm.as_mut())?;
    let rec = crate::listing::find(&disk, name, internal.as_deref())?;
    let bytes = match rs.is_empty() {
        true => write_new(&disk, &rec, out, fmt, &dec, report)?,
        false => {
            let enc = Encrypt::Recipients(rs);
            sealed_export(&disk, &rec, out, fmt, &enc, &dec, report)?
        }
    };
    if rec.method == "qcow2-internal" {
        note_export(&disk, &rec, out)?;
    }
    let size = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    report.note(&format!(
        "{}/{} exported to {} ({} image, {} file)",
        rec.disk,
        rec.name,
        out.display(),
        human_bytes(rec.virtual_size),
        human_bytes(size)
    ));
    let mut o = outcome(&rec, out, bytes);
    o.extra.insert("format".into(), fmt.into());
    o.extra
        .insert("encryption".into(), sealed.then_some("age").into());
    RecordWriter::new(io::stdout().lock()).write(&Record::Restored(o))?;
    Ok(Exit::Ok)
}

fn has_age_suffix(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("age"))
}

/// The export made plain in a scratch file beside `out` (0600, removed
/// after), then encrypted as one age stream into `out`.
fn sealed_export(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    out: &Path,
    fmt: &str,
    enc: &Encrypt,
    dec: &snap_shared::crypt::Decrypt,
    report: &Reporter,
) -> Result<u64> {
    crate::restore::refuse_existing(out)?;
    let plain = Scratch(fsutil::temp_name(out, "plain"));
    let _ = fs::remove_file(&plain.0);
    let bytes = write_new(disk, rec, &plain.0, fmt, dec, report)?;
    let (tmp, file) = crate::blocks::create_temp(out)?;
    let done = (|| {
        let io_err = |e| Error::io(&tmp, e);
        let mut w = crypt::encrypting_writer(enc, io::BufWriter::new(file)).map_err(io_err)?;
        let mut r = fs::File::open(&plain.0).map_err(|e| Error::io(&plain.0, e))?;
        io::copy(&mut r, &mut w).map_err(io_err)?;
        let file = w
            .finish()
            .map_err(io_err)?
            .into_inner()
            .map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        fsutil::publish_new(&tmp, out).map_err(|e| Error::io(out, e).with_exit(Exit::CantCreate))
    })();
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done.map(|()| bytes)
}

/// The disk's notes of exported internal snapshots, one JSON line each.
pub fn exports_path(disk: &Disk) -> PathBuf {
    disk.dir.root.join("exports.jsonl")
}

/// Notes that the internal snapshot `rec` was exported to `out` (an
/// absolute path): `compact` may then drop it from the image.
fn note_export(disk: &Disk, rec: &DiskSnapshotRecord, out: &Path) -> Result<()> {
    disk.ensure_info(crate::create::DEFAULT_BLOCK_SIZE, false)?;
    let path = exports_path(disk);
    let abs = std::path::absolute(out).unwrap_or(out.to_path_buf());
    let line = json!({
        "name": rec.name,
        "created": rec.created.timestamp(),
        "to": abs.display().to_string(),
    });
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{line}")
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&path, e))
}

/// Whether the internal snapshot `name`, made at `created` (unix seconds),
/// was exported to a file that is still there.
pub fn exported(disk: &Disk, name: &str, created: i64) -> bool {
    let Ok(text) = fs::read_to_string(exports_path(disk)) else {
        return false;
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| {
            v["name"] == name
                && v["created"] == created
                && v["to"].as_str().is_some_and(|p| Path::new(p).is_file())
        })
}
