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
    // Most images have no bitmap: their header says so without a qemu-img run.
    let listed = match has_bitmaps(img) {
        Some(false) => Vec::new(),
        _ => bitmaps(img)?,
    };
    for b in listed.iter().filter(|b| b.starts_with(crate::live::OURS)) {
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

/// Whether the qcow2 header has a bitmaps extension (persistent dirty
/// bitmaps), read from the header's extensions; None when it cannot tell.
pub fn has_bitmaps(img: &Path) -> Option<bool> {
    use std::os::unix::fs::FileExt;
    const BITMAPS: u32 = 0x2385_2875;
    let f = std::fs::File::open(img).ok()?;
    let mut h = [0u8; 104];
    f.read_exact_at(&mut h, 0).ok()?;
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let mut at = match be32(&h, 4) {
        2 => 72u64,
        3 => be32(&h, 100) as u64,
        _ => return None,
    };
    let cluster = 1u64 << be32(&h, 20).min(21);
    while at + 8 <= cluster {
        let mut e = [0u8; 8];
        f.read_exact_at(&mut e, at).ok()?;
        match (be32(&e, 0), be32(&e, 4) as u64) {
            (0, _) => return Some(false),
            (BITMAPS, _) => return Some(true),
            (_, len) => at = at.checked_add(8 + len.next_multiple_of(8))?,
        }
    }
    None
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

    /// The header tells whether an image has persistent bitmaps, as qemu-img info does.
    #[test]
    fn bitmaps_are_seen_in_the_header() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("b.qcow2");
        let run = |args: &[&str]| crate::image::run_ok(&[&["qemu-img"][..], args].concat());
        let s = p.to_str().unwrap();
        run(&["create", "-q", "-f", "qcow2", s, "16M"]);
        assert_eq!(has_bitmaps(&p), Some(false));
        run(&["bitmap", "--add", s, "b0"]);
        assert_eq!(has_bitmaps(&p), Some(true));
        assert_eq!(bitmaps(&p).unwrap(), ["b0"]);
    }

    /// Commas in an image's path are doubled, so they stay in the file name.
    #[test]
    fn image_opts_escape_commas() {
        assert_eq!(
            image_opts("qcow2", Path::new("/vm/a,b.qcow2")),
            "driver=qcow2,file.filename=/vm/a,,b.qcow2"
        );
    }
}
