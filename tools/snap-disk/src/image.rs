//! What an image is (format, size, backing file, internal snapshots), and
//! running `qemu-img`, the one tool that reads every VM image format.
//!
//! A raw image needs no qemu-img: its format is "no known magic" and its
//! virtual size is its length. Everything else asks `qemu-img info -U` (the
//! `-U` reads an image a running VM holds, for `list` and `create`).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use snap_shared::error::{Error, Exit, Result};

/// What snap-disk needs to know of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    /// The backing file, absolute, for an overlay.
    pub backing: Option<PathBuf>,
    pub backing_format: Option<String>,
    /// Internal (qcow2) snapshots: names and creation times (unix seconds).
    pub snapshots: Vec<InternalSnapshot>,
}

/// One internal snapshot as the qcow2 snapshot table holds it: what
/// `qemu-img snapshot -l` prints (ID, TAG, VM SIZE, DATE, VM CLOCK).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "QemuSnapshot")]
pub struct InternalSnapshot {
    pub id: String,
    pub name: String,
    pub date_sec: i64,
    pub date_nsec: u32,
    /// The guest's clock when it was taken (0 for a disk-only snapshot).
    pub vm_clock_nsec: u64,
    /// Bytes of saved VM state (RAM, CPU, devices); 0 for a disk-only snapshot.
    pub vm_state_size: u64,
}

impl InternalSnapshot {
    /// Whether the snapshot holds the VM's memory and device state (savevm).
    pub fn has_vm_state(&self) -> bool {
        self.vm_state_size > 0
    }

    /// Whether `key` names it: by tag, or by ID as qemu-img takes it.
    pub fn is(&self, key: &str) -> bool {
        self.name == key || self.id == key
    }
}

/// An element of `qemu-img info`'s `snapshots`, or QMP's `image.snapshots`.
#[derive(Deserialize)]
struct QemuSnapshot {
    id: String,
    name: String,
    #[serde(rename = "date-sec")]
    date_sec: i64,
    #[serde(rename = "date-nsec", default)]
    date_nsec: u32,
    #[serde(rename = "vm-clock-sec", default)]
    vm_clock_sec: u64,
    #[serde(rename = "vm-clock-nsec", default)]
    vm_clock_nsec: u64,
    #[serde(rename = "vm-state-size", default)]
    vm_state_size: u64,
}

impl From<QemuSnapshot> for InternalSnapshot {
    fn from(q: QemuSnapshot) -> Self {
        InternalSnapshot {
            id: q.id,
            name: q.name,
            date_sec: q.date_sec,
            date_nsec: q.date_nsec,
            vm_clock_nsec: q.vm_clock_sec * 1_000_000_000 + q.vm_clock_nsec,
            vm_state_size: q.vm_state_size,
        }
    }
}

#[derive(Deserialize)]
struct QemuInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "full-backing-filename")]
    full_backing: Option<String>,
    #[serde(rename = "backing-filename")]
    backing: Option<String>,
    #[serde(rename = "backing-filename-format")]
    backing_format: Option<String>,
    #[serde(default)]
    snapshots: Vec<InternalSnapshot>,
}

use snap_shared::disks::TAKEN_FORMATS;
pub use snap_shared::disks::sniff_format;

/// Probes an image: raw ones directly, the rest through `qemu-img info`.
pub fn probe(path: &Path) -> Result<ImageInfo> {
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::usage(
            path.display().to_string(),
            "not a regular file (snap-disk snapshots image files)",
        ));
    }
    let n = read_head(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
    let sniffed = sniff_format(&head[..n]).or_else(|| sniff_end(&file, meta.len()));
    if let Some(other) = sniffed.filter(|f| !TAKEN_FORMATS.contains(f)) {
        return Err(not_taken(path, other));
    }
    match sniffed {
        None => Ok(ImageInfo {
            format: "raw".into(),
            virtual_size: meta.len(),
            backing: None,
            backing_format: None,
            snapshots: Vec::new(),
        }),
        Some("qcow2") => match qcow2_header(&mut file) {
            Some(info) => Ok(info),
            None => qemu_info(path),
        },
        // QEMU cannot open a differencing VHDX: its parent comes from the file.
        Some("vhdx") => match crate::vhdx::info(path)? {
            crate::vhdx::Info {
                virtual_size,
                parent: Some((parent, _)),
            } => Ok(ImageInfo {
                format: "vhdx".into(),
                virtual_size,
                backing: Some(parent),
                backing_format: Some("vhdx".into()),
                snapshots: Vec::new(),
            }),
            _ => qemu_info(path),
        },
        Some(_) => qemu_info(path),
    }
}

/// Reads a plain qcow2 image's header and snapshot table directly, which
/// costs microseconds where a `qemu-img info` process costs milliseconds (the
/// whole of a qcow2-internal snapshot's time). None when the image has a
/// backing file or any incompatible feature: then qemu-img is asked.
fn qcow2_header(file: &mut File) -> Option<ImageInfo> {
    use std::os::unix::fs::FileExt;
    qcow2_header_from(|buf, at| file.read_exact_at(buf, at).ok())
}

/// [`qcow2_header`] over any positioned reader (the fuzz target reads bytes).
/// Offsets come from the file: every sum is checked, a bad one reads as None.
pub fn qcow2_header_from(
    mut read_at: impl FnMut(&mut [u8], u64) -> Option<()>,
) -> Option<ImageInfo> {
    let mut h = [0u8; 104];
    read_at(&mut h, 0)?;
    let be64 = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let version = be32(&h, 4);
    let backing_offset = be64(&h, 8);
    let incompatible = if version >= 3 { be64(&h, 72) } else { 0 };
    if !(2..=3).contains(&version) || backing_offset != 0 || incompatible != 0 || be32(&h, 32) != 0
    {
        return None;
    }
    let count = be32(&h, 60);
    let mut at = be64(&h, 64);
    let mut snapshots = Vec::new();
    for _ in 0..count.min(65536) {
        let mut e = [0u8; 40];
        read_at(&mut e, at)?;
        let id_len = u16::from_be_bytes([e[12], e[13]]) as usize;
        let name_len = u16::from_be_bytes([e[14], e[15]]) as usize;
        let extra_len = be32(&e, 36) as u64;
        // Version 3 keeps the 64-bit VM state size first in the extra data.
        let mut vm_state_size = u64::from(be32(&e, 32));
        if extra_len >= 8 {
            let mut large = [0u8; 8];
            read_at(&mut large, at.checked_add(40)?)?;
            vm_state_size = u64::from_be_bytes(large);
        }
        let id_at = at.checked_add(40 + extra_len)?;
        let mut id_name = vec![0u8; id_len + name_len];
        read_at(&mut id_name, id_at)?;
        let name = String::from_utf8(id_name.split_off(id_len)).ok()?;
        snapshots.push(InternalSnapshot {
            id: String::from_utf8(id_name).ok()?,
            name,
            date_sec: be32(&e, 16) as i64,
            date_nsec: be32(&e, 20),
            vm_clock_nsec: be64(&e, 24),
            vm_state_size,
        });
        let name_at = id_at.checked_add(id_len as u64)?;
        at = name_at
            .checked_add(name_len as u64)?
            .checked_next_multiple_of(8)?;
    }
    Some(ImageInfo {
        format: "qcow2".into(),
        virtual_size: be64(&h, 24),
        backing: None,
        backing_format: None,
        snapshots,
    })
}

/// An image of a format snap-disk does not take: exit 65, by name.
fn not_taken(path: &Path, format: &str) -> Error {
    Error::data(
        path.display().to_string(),
        format!(
            "is a {format} image, which snap-disk does not take (raw, qcow2, VMDK, VHDX, VHD and VDI); \
             it is never read as raw"
        ),
    )
    .with_hint(format!(
        "convert it first: qemu-img convert -f {format} -O qcow2 {} NEW.qcow2",
        path.display()
    ))
}

/// The format the last 512 bytes of a file announce ([`sniff_tail`]).
fn sniff_end(file: &File, len: u64) -> Option<&'static str> {
    use std::os::unix::fs::FileExt;
    let mut tail = [0u8; 512];
    let at = len.checked_sub(512)?;
    file.read_exact_at(&mut tail, at).ok()?;
    snap_shared::disks::sniff_tail(&tail)
}

fn read_head(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// `qemu-img info -U --output=json`.
pub fn qemu_info(path: &Path) -> Result<ImageInfo> {
    let out = qemu_img(&[
        "info".as_ref(),
        "-U".as_ref(),
        "--output=json".as_ref(),
        path.as_os_str(),
    ])?;
    let info: QemuInfo = serde_json::from_str(&out)
        .map_err(|e| Error::internal(format!("qemu-img info {}", path.display()), e))?;
    if !TAKEN_FORMATS.contains(&info.format.as_str()) {
        return Err(not_taken(path, &info.format));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let backing = info
        .full_backing
        .or(info.backing)
        .map(|b| dir.join(b))
        .map(|b| std::path::absolute(&b).unwrap_or(b));
    Ok(ImageInfo {
        format: info.format,
        virtual_size: info.virtual_size,
        backing,
        backing_format: info.backing_format,
        snapshots: info.snapshots,
    })
}

/// Runs qemu-img with `args`; its stdout, or its stderr's last line as the error.
pub fn qemu_img(args: &[&std::ffi::OsStr]) -> Result<String> {
    QemuImg::start(args)?.finish()
}

/// A qemu-img run started, to be finished (waited for) after other work.
pub struct QemuImg {
    what: String,
    child: std::process::Child,
}

impl QemuImg {
    pub fn start(args: &[&std::ffi::OsStr]) -> Result<QemuImg> {
        let what = format!(
            "qemu-img {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let child = Command::new("qemu-img")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::new(Exit::Unavailable, "qemu-img", "not installed")
                        .with_hint("install qemu-utils (Debian, Ubuntu) or qemu-img (Fedora, Arch)")
                }
                _ => Error::io_ctx(what.clone(), e),
            })?;
        Ok(QemuImg { what, child })
    }

    /// Waits for it: its stdout, or its stderr's last line as the error.
    pub fn finish(self) -> Result<String> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| Error::io_ctx(self.what.clone(), e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let cause = err
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .trim()
                .trim_start_matches("qemu-img: ")
                .to_string();
            let exit = match is_lock_conflict(&err) {
                true => Exit::TempFail,
                false => Exit::Io,
            };
            return Err(Error::new(exit, self.what, cause));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Whether qemu-img failed because another process holds the image's lock
/// (`Failed to get "write" lock` / `Is another process using the image?`);
/// "block" in its other messages is not a lock.
fn is_lock_conflict(stderr: &str) -> bool {
    stderr.contains("\" lock") || stderr.contains("another process using the image")
}

/// `qemu-img check`: the image's metadata is consistent (qcow2 and the other
/// formats that have some; raw has none and always passes).
pub fn check(path: &Path, format: &str) -> Result<()> {
    if format == "raw" {
        return Ok(());
    }
    qemu_img(&[
        "check".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        format.as_ref(),
        path.as_os_str(),
    ])
    .map(drop)
    .map_err(|e| {
        Error::data(format!("{} is damaged", path.display()), e.cause)
            .with_hint("nothing was changed; `qemu-img check -r leaks` may repair it")
    })
}

/// Runs a program of the tests (qemu-img, qemu-io) that must succeed.
#[cfg(test)]
pub(crate) fn run_ok(args: &[&str]) {
    let ok = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        ok.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held image is 75 (try again); a full disk whose message says "block" is not.
    #[test]
    fn only_lock_conflicts_are_temporary() {
        let held = "qemu-img: Could not open 'vm.qcow2': Failed to get \"write\" lock\nIs another process using the image [vm.qcow2]?";
        assert!(is_lock_conflict(held));
        for full in [
            "qemu-img: Failed to flush the refcount block cache: No space left on device",
            "qemu-img: Block job failed: No space left on device",
        ] {
            assert!(!is_lock_conflict(full), "{full}");
        }
    }

    /// The formats are told apart by their magic; anything else is raw.
    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff_format(b"QFI\xfb\0\0\0\x03"), Some("qcow2"));
        assert_eq!(sniff_format(b"vhdxfile...."), Some("vhdx"));
        assert_eq!(sniff_format(&[0u8; 512]), None);
        let mut vdi = [0u8; 128];
        vdi[64..68].copy_from_slice(&[0x7f, 0x10, 0xda, 0xbe]);
        assert_eq!(sniff_format(&vdi), Some("vdi"));
    }

    /// The qcow2 header and snapshot table read directly agree with `qemu-img info`.
    #[test]
    fn qcow2_header_matches_qemu_img() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("q.qcow2");
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("qemu-img")
                .args(args)
                .arg(&p)
                .status()
                .unwrap();
            assert!(ok.success());
        };
        std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("100M")
            .status()
            .unwrap();
        for name in ["one", "a-longer-snapshot-name", "3"] {
            run(&["snapshot", "-c", name]);
        }
        let direct = qcow2_header(&mut File::open(&p).unwrap()).unwrap();
        assert_eq!(direct, qemu_info(&p).unwrap());
        assert_eq!(direct.snapshots.len(), 3);
        assert_eq!(direct.virtual_size, 100 << 20);
    }

    /// A file with no known magic is raw, sized by its length, without qemu-img.
    #[test]
    fn raw_without_qemu() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d.img");
        std::fs::write(&p, vec![1u8; 3000]).unwrap();
        let info = probe(&p).unwrap();
        assert_eq!((info.format.as_str(), info.virtual_size), ("raw", 3000));
    }
}
