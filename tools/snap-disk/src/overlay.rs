//! The `overlay` method: external snapshots as a qcow2 backing chain.
//!
//! A snapshot freezes the image: its file gets a second name in
//! `<image>.snapshots/<name>.qcow2` (a hard link, so instant and on the same
//! filesystem), is made read-only, and the image path becomes a new empty
//! overlay backed by it (`qemu-img create -b … -F …`). The VM's config keeps
//! naming the same path. Every step leaves the image path whole:
//!
//! 1. the new overlay is made under a temporary name, backed by the frozen path;
//! 2. the image is hard-linked to the frozen path (now two names, same bytes);
//! 3. the overlay is renamed over the image path (atomic).
//!
//! Restore makes a new empty overlay on the chosen frozen file and renames it
//! over the image (what was written since the last snapshot is dropped; later
//! snapshots stay, as a branch). Delete first rebases every file backed by the
//! snapshot onto the snapshot's own backing (`qemu-img rebase`, which copies
//! what they need), then removes it. Commit folds the whole chain back into
//! one image (`qemu-img commit`, then the committed-into file takes the path).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;

use crate::image::{self, ImageInfo, qemu_img};

/// `<image>.snapshots`: where frozen files live, beside the image.
pub fn frozen_dir(img: &Path) -> PathBuf {
    let mut s = img.as_os_str().to_owned();
    s.push(".snapshots");
    PathBuf::from(s)
}

pub fn frozen_path(img: &Path, name: &str) -> PathBuf {
    frozen_dir(img).join(format!("{name}.qcow2"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Freezes the image as snapshot `name` and starts a new overlay on it.
pub fn create(img: &Path, info: &ImageInfo, name: &str) -> Result<PathBuf> {
    if info.format != "qcow2" {
        return Err(Error::usage(
            img.display().to_string(),
            format!("is {}, and an overlay snapshot turns the image path into a qcow2 overlay", info.format),
        )
        .with_hint("convert it first (qemu-img convert -O qcow2) and point the VM at the qcow2, or use --method blocks"));
    }
    image::check(img, &info.format)?;
    let dir = frozen_dir(img);
    fsutil::create_private_dir(&dir).map_err(io(&dir))?;
    let frozen = frozen_path(img, name);
    let tmp = fsutil::temp_name(img, "overlay");
    let _ = fs::remove_file(&tmp);
    new_overlay(&tmp, &frozen, info.virtual_size)?;
    let linked = fs::hard_link(img, &frozen).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Error::new(
            Exit::CantCreate,
            frozen.display().to_string(),
            "already exists",
        )
        .with_hint("a snapshot file of that name is left over; pick another name or remove it"),
        _ => Error::io(&frozen, e),
    });
    if let Err(e) = linked {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, img).map_err(io(img))?;
    fsutil::fsync_dir(fsutil::parent_of(img)).map_err(io(img))?;
    fsutil::fsync_dir(&dir).map_err(io(&dir))?;
    set_writable(&frozen, false)?;
    Ok(frozen)
}

/// Makes `path` a new empty qcow2 overlay of `backing` (which need not exist yet).
fn new_overlay(path: &Path, backing: &Path, size: u64) -> Result<()> {
    qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-u".as_ref(),
        "-b".as_ref(),
        backing.as_os_str(),
        "-F".as_ref(),
        "qcow2".as_ref(),
        path.as_os_str(),
        size.to_string().as_ref(),
    ])
    .map(drop)
}

/// Checks a chain from `top` down: every backing file is there and every
/// qcow2 in it passes `qemu-img check`.
pub fn check_chain(top: &Path) -> Result<()> {
    let mut at = top.to_path_buf();
    for _ in 0..1000 {
        if !at.exists() {
            return Err(Error::data(
                at.display().to_string(),
                "a file of the backing chain is missing",
            ));
        }
        let info = image::probe(&at)?;
        image::check(&at, &info.format)?;
        match info.backing {
            Some(b) => at = b,
            None => return Ok(()),
        }
    }
    Err(Error::data(
        top.display().to_string(),
        "the backing chain loops",
    ))
}

/// Points the image at a new empty overlay on `frozen`, after checking its chain.
pub fn restore(img: &Path, frozen: &Path) -> Result<()> {
    check_chain(frozen)?;
    let size = image::probe(frozen)?.virtual_size;
    let tmp = fsutil::temp_name(img, "overlay");
    let _ = fs::remove_file(&tmp);
    new_overlay(&tmp, frozen, size)?;
    fs::rename(&tmp, img).map_err(io(img))?;
    fsutil::fsync_dir(fsutil::parent_of(img)).map_err(io(img))
}

/// Rebases every file in `children` (backed by `frozen`) onto `frozen`'s own
/// backing, copying what they need from it, then removes `frozen`.
pub fn delete(frozen: &Path, children: &[PathBuf]) -> Result<()> {
    let info = image::probe(frozen)?;
    check_chain(frozen)?;
    for child in children {
        rebase(
            child,
            info.backing.as_deref(),
            info.backing_format.as_deref(),
        )?;
    }
    fs::remove_file(frozen).map_err(io(frozen))?;
    fsutil::fsync_dir(fsutil::parent_of(frozen)).map_err(io(frozen))
}

/// `qemu-img rebase` (safe mode: the child keeps reading the same bytes).
fn rebase(child: &Path, onto: Option<&Path>, format: Option<&str>) -> Result<()> {
    let was_writable = writable(child);
    set_writable(child, true)?;
    let onto_s = onto.map(|p| p.as_os_str().to_owned()).unwrap_or_default();
    let mut args: Vec<&std::ffi::OsStr> = vec!["rebase".as_ref(), "-f".as_ref(), "qcow2".as_ref()];
    if let Some(f) = format.filter(|_| onto.is_some()) {
        args.extend([OsStr::new("-F"), OsStr::new(f)]);
    }
    args.extend(["-b".as_ref(), onto_s.as_os_str(), child.as_os_str()]);
    let res = qemu_img(&args);
    if !was_writable {
        set_writable(child, false)?;
    }
    res.map(drop)
}

/// Folds the image's chain of frozen files (those in `ours`) into one file at
/// the image path, top down. `on_each` is told each frozen file before it is
/// changed, so its record goes first.
pub fn commit(
    img: &Path,
    ours: &[PathBuf],
    mut on_each: impl FnMut(&Path) -> Result<()>,
) -> Result<usize> {
    let mut merged = 0;
    loop {
        let info = image::probe(img)?;
        let Some(backing) = info.backing.filter(|b| ours.contains(b)) else {
            return Ok(merged);
        };
        check_chain(img)?;
        on_each(&backing)?;
        commit_one(img, &backing)?;
        merged += 1;
    }
}

/// Commits the image into its backing file, which then takes the image's
/// name. Killed anywhere, a second call finishes it: committing the same
/// data again changes nothing, and the rename is atomic.
pub fn commit_one(img: &Path, backing: &Path) -> Result<()> {
    set_writable(backing, true)?;
    qemu_img(&[
        "commit".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        img.as_os_str(),
    ])?;
    fs::rename(backing, img).map_err(io(img))?;
    fsutil::fsync_dir(fsutil::parent_of(img)).map_err(io(img))
}

fn writable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o200 != 0)
}

/// Adds or removes the owner's write bit (frozen files are read-only).
fn set_writable(path: &Path, on: bool) -> Result<()> {
    let mut perm = fs::metadata(path).map_err(io(path))?.permissions();
    let mode = perm.mode();
    perm.set_mode(if on { mode | 0o200 } else { mode & !0o222 });
    fs::set_permissions(path, perm).map_err(io(path))
}
