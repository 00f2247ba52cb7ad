//! Where an external drive named by UUID or label is mounted.
//!
//! udev links `/dev/disk/by-uuid/<UUID>` and `/dev/disk/by-label/<LABEL>` to
//! the partition; `/proc/self/mountinfo` says where that partition is
//! mounted. Matching by device number first (and by source path second, for
//! filesystems like btrfs whose mountinfo device is anonymous) finds the
//! drive wherever the desktop or fstab put it. A drive that is not plugged in,
//! or plugged in but not mounted, is "absent": the caller exits 75.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::location::DriveKey;

/// The mount point of the drive, or why it is absent.
pub fn find_mount(key: &DriveKey) -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    find_mount_in(Path::new("/dev/disk"), &mountinfo, key)
}

/// [`find_mount`] with the udev folder and the mountinfo text given (for tests).
pub fn find_mount_in(disk_dir: &Path, mountinfo: &str, key: &DriveKey) -> Result<PathBuf, String> {
    let link =
        device_link(disk_dir, key).ok_or_else(|| format!("no drive with {key} is plugged in"))?;
    let device = device_of(&link);
    let number = std::fs::metadata(&device)
        .ok()
        .filter(|m| m.file_type().is_block_device())
        .map(|m| (libc::major(m.rdev()), libc::minor(m.rdev())));
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let matches = |m: &&Mount| number.is_some_and(|n| m.device == n) || m.source == device;
    let found: Vec<&Mount> = mounts.iter().filter(matches).collect();
    // A bind mount of a folder of the drive is not the drive's root.
    found
        .iter()
        .find(|m| m.root == "/")
        .or(found.first())
        .map(|m| m.point.clone())
        .ok_or_else(|| {
            format!(
                "the drive with {key} is plugged in ({}) but not mounted",
                device.display()
            )
        })
}

/// `by-uuid/<uuid>` (any case, since vfat UUIDs are upper case) or `by-label/<label>`.
fn device_link(disk_dir: &Path, key: &DriveKey) -> Option<PathBuf> {
    let (dir, wanted) = match key {
        DriveKey::Uuid(u) => (disk_dir.join("by-uuid"), u.clone()),
        DriveKey::Label(l) => (disk_dir.join("by-label"), udev_escape(l)),
    };
    let exact = dir.join(&wanted);
    if exact.symlink_metadata().is_ok() {
        return Some(exact);
    }
    std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
        let name = e.file_name();
        (name.to_string_lossy().eq_ignore_ascii_case(&wanted)).then(|| e.path())
    })
}

/// The device a udev link points at (`../../sdb1` → `/dev/sdb1`), even
/// when the device node cannot be resolved on this filesystem.
fn device_of(link: &Path) -> PathBuf {
    if let Ok(p) = std::fs::canonicalize(link) {
        return p;
    }
    let Ok(target) = std::fs::read_link(link) else {
        return link.to_path_buf();
    };
    let mut out = snap_shared::fsutil::parent_of(link).to_path_buf();
    for c in target.components() {
        match c {
            std::path::Component::RootDir => out = PathBuf::from("/"),
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// udev's link-name escaping: bytes outside a safe set become `\xNN`.
fn udev_escape(label: &str) -> String {
    let mut out = String::new();
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// One line of mountinfo: `id parent major:minor root point opts … - fstype source superopts`.
struct Mount {
    device: (u32, u32),
    root: String,
    point: PathBuf,
    source: PathBuf,
}

impl Mount {
    fn parse(line: &str) -> Option<Mount> {
        let fields: Vec<&str> = line.split(' ').collect();
        let (maj, min) = fields.get(2)?.split_once(':')?;
        let dash = fields.iter().position(|f| *f == "-")?;
        Some(Mount {
            device: (maj.parse().ok()?, min.parse().ok()?),
            root: unescape(fields.get(3)?),
            point: PathBuf::from(unescape(fields.get(4)?)),
            source: PathBuf::from(unescape(fields.get(dash + 2)?)),
        })
    }
}

/// mountinfo writes space, tab, newline and backslash as octal `\040` etc.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
90 27 8:17 / /media/me/My\\040T9 rw,nosuid - exfat /dev/sdb1 rw
91 27 8:17 /backups /srv/bind rw - exfat /dev/sdb1 rw
";

    fn disk_dir(links: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (link, target) in links {
            let path = dir.path().join(link);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
        }
        dir
    }

    /// A UUID (any case) and an escaped label both lead to the drive's root mount, not a bind mount.
    #[test]
    fn finds_the_mount_point() {
        let d = disk_dir(&[
            ("by-uuid/2f3a-11c4", "/dev/sdb1"),
            ("by-label/My\\x20T9", "/dev/sdb1"),
        ]);
        let uuid = DriveKey::Uuid("2F3A-11C4".into());
        assert_eq!(
            find_mount_in(d.path(), MOUNTINFO, &uuid).unwrap(),
            Path::new("/media/me/My T9")
        );
        let label = DriveKey::Label("My T9".into());
        assert_eq!(
            find_mount_in(d.path(), MOUNTINFO, &label).unwrap(),
            Path::new("/media/me/My T9")
        );
    }

    /// A drive not plugged in, and one plugged in but not mounted, are absent with different reasons.
    #[test]
    fn absent_drives_say_why() {
        let d = disk_dir(&[("by-uuid/aaaa", "/dev/sdc1")]);
        let missing = find_mount_in(d.path(), MOUNTINFO, &DriveKey::Uuid("bbbb".into()));
        assert_eq!(
            missing.unwrap_err(),
            "no drive with UUID bbbb is plugged in"
        );
        let unmounted = find_mount_in(d.path(), MOUNTINFO, &DriveKey::Uuid("aaaa".into()));
        assert!(
            unmounted
                .unwrap_err()
                .contains("plugged in (/dev/sdc1) but not mounted")
        );
    }

    /// udev's relative links resolve against the link's folder, device node or not.
    #[test]
    fn relative_links_resolve() {
        let d = disk_dir(&[("disk/by-uuid/u", "../../sdz9")]);
        assert_eq!(
            device_of(&d.path().join("disk/by-uuid/u")),
            d.path().join("sdz9")
        );
    }

    /// Octal escapes in mountinfo decode; a lone backslash stays.
    #[test]
    fn unescapes() {
        assert_eq!(unescape("a\\040b\\134c\\x"), "a b\\c\\x");
    }
}
