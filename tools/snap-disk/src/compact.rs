//! `compact`: the QCOW2 guide's "convert to a new QCOW2" step, made safe.
//!
//! A qcow2 image never shrinks by itself: clusters the guest freed, and
//! those of deleted snapshots, stay in the file. `qemu-img convert` writes a
//! new file with only what is in use. Here the new file is written beside
//! the image under a temporary name (same cluster size; dirty bitmaps
//! carried with `--bitmaps`), proved equal to the image by `qemu-img
//! compare` and whole by `qemu-img check`, given the image's mode and owner,
//! flushed, and renamed over the image: at every moment the image path holds
//! one whole image. Only while nothing holds the image.
//!
//! `qemu-img convert` drops internal snapshots, so compact refuses while the
//! image has any that were not exported first (`snap-disk export`, noted in
//! the disk's folder, the file still there), naming them, unless
//! `--drop-snapshots`; the records of dropped ones go after the rename.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::size::human_bytes;

use crate::disk::Context;
use crate::image::{self, qemu_img};

pub fn compact(
    ctx: &Context,
    operand: &str,
    drop_snapshots: bool,
    report: &Reporter,
) -> Result<Exit> {
    let _lock = ctx.lock(true)?;
    let disk = ctx.disk(operand)?;
    crate::changing::recover(&disk, None, report)?;
    disk.refuse_if_in_use("compacting")?;
    let shown = disk.image.display().to_string();
    let info = image::probe(&disk.image)?;
    if info.format != "qcow2" {
        return Err(Error::usage(
            &shown,
            format!("is {}; compact rewrites qcow2 images", info.format),
        ));
    }
    if let Some(b) = &info.backing {
        return Err(Error::usage(
            &shown,
            format!(
                "is an overlay on {}: a convert would flatten the chain",
                b.display()
            ),
        )
        .with_hint("`snap-disk commit` folds the chain into one image first"));
    }
    let unexported: Vec<&str> = info
        .snapshots
        .iter()
        .filter(|s| !crate::export::exported(&disk, &s.name, s.date_sec))
        .map(|s| s.name.as_str())
        .collect();
    if !unexported.is_empty() && !drop_snapshots {
        return Err(Error::usage(
            &shown,
            format!(
                "holds internal snapshots a convert would drop: {}",
                unexported.join(", ")
            ),
        )
        .with_hint(
            "export them first (snap-disk export DISK NAME FILE.qcow2), or give --drop-snapshots",
        ));
    }
    let before = allocated(&disk.image)?;
    let tmp = fsutil::temp_name(&disk.image, "compact");
    let _ = fs::remove_file(&tmp);
    let made = write_equal(&disk.image, &tmp);
    if let Err(e) = made {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &disk.image).map_err(|e| Error::io(&disk.image, e))?;
    fsutil::fsync_dir(fsutil::parent_of(&disk.image)).map_err(|e| Error::io(&disk.image, e))?;
    for s in &info.snapshots {
        if disk.dir.record_path(&s.name).exists() {
            crate::manage::remove_record(&disk.dir, &s.name)?;
            ctx.catalog(|c| c.remove("disk-snapshot", &disk.dir.name, &s.name));
        }
    }
    if !info.snapshots.is_empty() {
        report.note(&format!(
            "dropped {} internal snapshot(s): {}",
            info.snapshots.len(),
            info.snapshots
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let after = allocated(&disk.image)?;
    report.note(&format!(
        "{shown}: compacted from {} to {}: {} given back",
        human_bytes(before),
        human_bytes(after),
        human_bytes(before.saturating_sub(after))
    ));
    Ok(Exit::Ok)
}

/// Writes the new image at `tmp` and proves it equal to `img`.
fn write_equal(img: &Path, tmp: &Path) -> Result<()> {
    let cluster = cluster_size(img)?;
    let opts = format!("cluster_size={cluster}");
    let args: [&std::ffi::OsStr; 10] = [
        "convert".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        "--bitmaps".as_ref(),
        "-o".as_ref(),
        opts.as_ref(),
        img.as_os_str(),
        tmp.as_os_str(),
    ];
    qemu_img(&args)?;
    qemu_img(&[
        "compare".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        img.as_os_str(),
        tmp.as_os_str(),
    ])
    .map_err(|e| {
        Error::data(
            format!("compacting {}", img.display()),
            format!(
                "the new image differs from it ({}); the image was left as it was",
                e.cause
            ),
        )
    })?;
    image::check(tmp, "qcow2")?;
    let meta = fs::metadata(img).map_err(|e| Error::io(img, e))?;
    fs::set_permissions(tmp, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::io(tmp, e))?;
    std::os::unix::fs::chown(tmp, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| Error::io(tmp, e))?;
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(tmp, e))
}

/// The image's cluster size, from its header.
fn cluster_size(img: &Path) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    fs::File::open(img)
        .and_then(|f| f.read_exact_at(&mut b, 20))
        .map_err(|e| Error::io(img, e))?;
    Ok(1 << u32::from_be_bytes(b))
}

/// Bytes the file takes on disk.
fn allocated(p: &Path) -> Result<u64> {
    Ok(fs::metadata(p).map_err(|e| Error::io(p, e))?.blocks() * 512)
}
