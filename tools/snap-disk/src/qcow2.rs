//! The `qcow2-internal` method: snapshots inside the qcow2 file, made and
//! applied by `qemu-img snapshot`. snap-disk adds what qemu does not keep (a
//! description, tags, who made it) as a record in the store.

use std::path::Path;

use snap_shared::error::{Error, Exit, Result};

use crate::image::{self, QemuImg, qemu_img};

/// `qemu-img snapshot -c NAME IMAGE`, started: [`QemuImg::finish`] waits.
pub fn start_create(img: &Path, name: &str) -> Result<QemuImg> {
    let opts = image_opts("qcow2", img);
    QemuImg::start(&[
        "snapshot".as_ref(),
        "--image-opts".as_ref(),
        "-c".as_ref(),
        name.as_ref(),
        opts.as_os_str(),
    ])
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

/// `qemu-img snapshot OP NAME` on the image as qcow2. qemu-img 7.2 (Debian
/// 12) takes no `-f` for `snapshot` (8.1 added it), and a probed format is
/// never trusted, so the format is given the way every version takes it:
/// `--image-opts driver=qcow2,file.filename=IMAGE`.
fn snapshot_op(op: &str, img: &Path, name: &str) -> Result<()> {
    qemu_img(&[
        "snapshot".as_ref(),
        "--image-opts".as_ref(),
        op.as_ref(),
        name.as_ref(),
        image_opts("qcow2", img).as_os_str(),
    ])
    .map(drop)
}

/// `driver=FORMAT,file.filename=PATH` for `--image-opts`, with the path's
/// commas doubled as QEMU's option syntax wants.
pub fn image_opts(format: &str, img: &Path) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut opts = format!("driver={format},file.filename=").into_bytes();
    for &b in img.as_os_str().as_bytes() {
        opts.push(b);
        if b == b',' {
            opts.push(b',');
        }
    }
    std::ffi::OsString::from_vec(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commas in an image's path are doubled, so they stay in the file name.
    #[test]
    fn image_opts_escape_commas() {
        assert_eq!(
            image_opts("qcow2", Path::new("/vm/a,b.qcow2")),
            "driver=qcow2,file.filename=/vm/a,,b.qcow2"
        );
    }
}
