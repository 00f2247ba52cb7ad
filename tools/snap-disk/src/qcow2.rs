//! The `qcow2-internal` method: snapshots inside the qcow2 file, made and
//! applied by `qemu-img snapshot`. snap-disk adds what qemu does not keep (a
//! description, tags, who made it) as a record in the store.

use std::path::Path;

use snap_shared::error::{Error, Exit, Result};

use crate::image::{self, qemu_img};

/// `qemu-img snapshot -c NAME IMAGE`.
pub fn create(img: &Path, name: &str) -> Result<()> {
    snapshot_op("-c", img, name)
}

/// `qemu-img snapshot -a NAME IMAGE`, after checking the image. QEMU
/// refuses to revert an image that has persistent dirty bitmaps, since they
/// would no longer say what changed: the ones blocks snapshots keep
/// (`snap-disk-…`) are removed first, so the next blocks snapshot reads
/// the whole image.
pub fn apply(img: &Path, name: &str) -> Result<()> {
    require(img, name)?;
    image::check(img, "qcow2")?;
    for b in bitmaps(img)?
        .iter()
        .filter(|b| b.starts_with(crate::live::OURS))
    {
        qemu_img(&[
            "bitmap".as_ref(),
            "--remove".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            img.as_os_str(),
            b.as_ref(),
        ])?;
    }
    snapshot_op("-a", img, name)
}

/// The names of the image's persistent dirty bitmaps.
pub fn bitmaps(img: &Path) -> Result<Vec<String>> {
    let out = qemu_img(&[
        "info".as_ref(),
        "-U".as_ref(),
        "--output=json".as_ref(),
        img.as_os_str(),
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::internal(format!("qemu-img info {}", img.display()), e))?;
    let list = &v["format-specific"]["data"]["bitmaps"];
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str().map(str::to_string))
        .collect())
}

/// `qemu-img snapshot -d NAME IMAGE`.
pub fn delete(img: &Path, name: &str) -> Result<()> {
    snapshot_op("-d", img, name)
}

/// The names of the image's internal snapshots.
pub fn names(img: &Path) -> Result<Vec<String>> {
    Ok(image::probe(img)?
        .snapshots
        .into_iter()
        .map(|s| s.name)
        .collect())
}

/// Fails with a no-input error when the image has no internal snapshot `name`.
pub fn require(img: &Path, name: &str) -> Result<()> {
    if names(img)?.iter().any(|n| n == name) {
        return Ok(());
    }
    Err(Error::new(
        Exit::NoInput,
        img.display().to_string(),
        format!("has no internal snapshot named {name}"),
    )
    .with_hint("`snap-disk list` shows which snapshots the image has"))
}

fn snapshot_op(op: &str, img: &Path, name: &str) -> Result<()> {
    qemu_img(&[
        "snapshot".as_ref(),
        op.as_ref(),
        name.as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        img.as_os_str(),
    ])
    .map(drop)
}
