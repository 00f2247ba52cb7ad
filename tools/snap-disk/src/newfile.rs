//! A snapshot written out as a new file, for `restore --to`, `export` and a
//! whole-image restore: raw, zstd or gzip, or any format qemu-img writes,
//! under a temporary name that appears whole, never over an existing file.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use snap_cli::{Reporter, Tally};
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::record::DiskSnapshotRecord;

use crate::blocks;
use crate::disk::Disk;
use crate::image::qemu_img;
use crate::restore::{frozen_of, unknown_method};
use crate::{overlay, qcow2};

/// Writes the snapshot as a new file `out` in `format` (raw, zst, gz, or any
/// qemu-img format), through a temporary name; never over an existing file.
pub(crate) fn write_new(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    out: &Path,
    format: &str,
    dec: &Decrypt,
    report: &Reporter,
) -> Result<u64> {
    refuse_existing(out)?;
    let (tmp, file) = blocks::create_temp(out)?;
    let res = fill(disk, rec, &tmp, file, format, dec, report).and_then(|()| {
        // qemu-img makes its output with the umask's mode: a disk image is private.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&tmp, e))?;
        fsutil::publish_new(&tmp, out).map_err(|e| Error::io(out, e).with_exit(Exit::CantCreate))
    });
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map(|()| rec.virtual_size)
}

/// A new file is never written over an existing one.
pub(crate) fn refuse_existing(out: &Path) -> Result<()> {
    match fs::symlink_metadata(out) {
        Ok(_) => Err(Error::new(
            Exit::CantCreate,
            out.display().to_string(),
            "already exists",
        )
        .with_hint("snap-disk never writes over a file; remove it or pick another name")),
        Err(_) => Ok(()),
    }
}

fn fill(
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    tmp: &Path,
    file: File,
    format: &str,
    dec: &Decrypt,
    report: &Reporter,
) -> Result<()> {
    let total = rec.virtual_size;
    let progress = |done: u64| report.tally(|| Tally::bytes("writing", done, Some(total)));
    let io_err = |e| Error::io(tmp, e);
    match (rec.method.as_str(), format) {
        ("blocks", "raw") => {
            let map = disk.dir.map_path(&rec.name);
            blocks::write_sparse(&map, &disk.dir.blocks_dir(), dec, &file, &progress)?;
            file.sync_all().map_err(io_err)
        }
        ("blocks", "zst" | "gz") => {
            let map = disk.dir.map_path(&rec.name);
            compress_into(file, format, tmp, |w| {
                blocks::write_stream(&map, &disk.dir.blocks_dir(), dec, w, &progress).map(drop)
            })
        }
        (_, "zst" | "gz" | "qcow2.zst" | "qcow2.gz") => {
            // The image first (a raw copy sparse), then compressed as a stream.
            let (image, z) = format.split_once('.').unwrap_or(("raw", format));
            let made = Scratch(fsutil::temp_name(tmp, image));
            let f = File::create(&made.0).map_err(|e| Error::io(&made.0, e))?;
            fill(disk, rec, &made.0, f, image, dec, report)?;
            compress_into(file, z, tmp, |w| {
                let mut r = File::open(&made.0).map_err(|e| Error::io(&made.0, e))?;
                io::copy(&mut r, w)
                    .map(drop)
                    .map_err(|e| Error::io(&made.0, e))
            })
        }
        ("blocks", fmt) => {
            drop(file);
            let raw = Scratch(fsutil::temp_name(tmp, "raw"));
            let f = File::create(&raw.0).map_err(|e| Error::io(&raw.0, e))?;
            let map = disk.dir.map_path(&rec.name);
            blocks::write_sparse(&map, &disk.dir.blocks_dir(), dec, &f, &progress)?;
            drop(f);
            convert(&raw.0, "raw", None, tmp, fmt)
        }
        ("qcow2-internal", fmt) => {
            drop(file);
            qcow2::require(&disk.image, &rec.name)?;
            convert(&disk.image, "qcow2", Some(&rec.name), tmp, fmt)
        }
        ("overlay", fmt) => {
            drop(file);
            let frozen = frozen_of(rec)?;
            overlay::check_chain(&frozen)?;
            convert(&frozen, "qcow2", None, tmp, fmt)
        }
        (m, _) => Err(unknown_method(rec, m)),
    }
}

/// A temporary file removed when dropped.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Runs `write` into a zstd (all cores) or gzip stream over `file`, then flushes it.
fn compress_into(
    file: File,
    format: &str,
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let io_err = |e| Error::io(path, e);
    let buf = BufWriter::with_capacity(1 << 20, file);
    let file = if format == "zst" {
        let mut z = zstd::Encoder::new(buf, 3).map_err(io_err)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        z.multithread(threads).map_err(io_err)?;
        let mut w = z;
        write(&mut w)?;
        w.finish()
            .map_err(io_err)?
            .into_inner()
            .map_err(|e| io_err(e.into_error()))?
    } else {
        let mut g = flate2::write::GzEncoder::new(buf, flate2::Compression::new(3));
        write(&mut g)?;
        g.finish()
            .map_err(io_err)?
            .into_inner()
            .map_err(|e| io_err(e.into_error()))?
    };
    file.sync_all().map_err(io_err)
}

/// `qemu-img convert` (qcow2 output compressed, like `qemu-img convert -c`).
fn convert(src: &Path, src_fmt: &str, snapshot: Option<&str>, out: &Path, fmt: &str) -> Result<()> {
    let _ = fs::remove_file(out);
    let snap = snapshot.map(|s| format!("snapshot.name={s}"));
    let mut args: Vec<&std::ffi::OsStr> = vec!["convert".as_ref(), "-f".as_ref(), src_fmt.as_ref()];
    if let Some(s) = &snap {
        args.extend([OsStr::new("-U"), OsStr::new("-l"), OsStr::new(s)]);
    }
    args.extend([OsStr::new("-O"), OsStr::new(fmt)]);
    match fmt {
        "qcow2" => args.push("-c".as_ref()),
        // What WSL and Hyper-V make: blocks allocated as written.
        "vhdx" => args.extend([OsStr::new("-o"), OsStr::new("subformat=dynamic")]),
        // The size as it is, not rounded to a CHS geometry (qemu-img's
        // default for vpc, which would grow a Windows-made 10 MiB VHD).
        "vpc" => args.extend([
            OsStr::new("-o"),
            OsStr::new("subformat=dynamic,force_size=on"),
        ]),
        _ => {}
    }
    args.extend([src.as_os_str(), out.as_os_str()]);
    qemu_img(&args)?;
    File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(out, e))
}
