//! Giving snapshot entries their source's metadata: owner (as root), mode,
//! and times to the nanosecond. Owner goes first because chown clears the
//! set-uid bits that chmod then puts back.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Mode, Timespec, Timestamps, fchmod, futimens, utimensat};

fn timestamps(m: &Metadata) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: m.atime(),
            tv_nsec: m.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: m.mtime(),
            tv_nsec: m.mtime_nsec() as _,
        },
    }
}

/// Permission bits of a mode.
pub fn perm_bits(m: &Metadata) -> u32 {
    m.mode() & 0o7777
}

/// Modification time in nanoseconds since the epoch.
pub fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}

/// Applies owner (when `as_root`), mode and times to an open file.
pub fn apply_to_file(f: &File, m: &Metadata, as_root: bool) -> io::Result<()> {
    if as_root {
        std::os::unix::fs::fchown(f, Some(m.uid()), Some(m.gid()))?;
    }
    fchmod(f, Mode::from_raw_mode(perm_bits(m)))?;
    futimens(f, &timestamps(m))?;
    Ok(())
}

/// Applies owner, mode and times to a path without following a final symlink
/// (a symlink's mode can't be set on Linux and is skipped).
pub fn apply_to_path(path: &Path, m: &Metadata, as_root: bool) -> io::Result<()> {
    let is_link = m.file_type().is_symlink();
    if as_root {
        std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))?;
    }
    if !is_link {
        rustix::fs::chmod(path, Mode::from_raw_mode(perm_bits(m)))?;
    }
    utimensat(CWD, path, &timestamps(m), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mode and nanosecond mtime are copied, on files and on paths.
    #[test]
    fn mode_and_times_are_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, "x").unwrap();
        let ts = Timestamps {
            last_access: Timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 5,
            },
            last_modification: Timespec {
                tv_sec: 1_500_000_000,
                tv_nsec: 123_456_789,
            },
        };
        utimensat(CWD, &src, &ts, AtFlags::empty()).unwrap();
        rustix::fs::chmod(&src, Mode::from_raw_mode(0o751)).unwrap();
        let m = std::fs::metadata(&src).unwrap();
        let dst = dir.path().join("dst");
        let f = File::create(&dst).unwrap();
        apply_to_file(&f, &m, false).unwrap();
        let d = std::fs::metadata(&dst).unwrap();
        assert_eq!(perm_bits(&d), 0o751);
        assert_eq!(mtime_ns(&d), 1_500_000_000_123_456_789);
        let other = dir.path().join("other");
        std::fs::write(&other, "y").unwrap();
        apply_to_path(&other, &m, false).unwrap();
        assert_eq!(mtime_ns(&std::fs::metadata(&other).unwrap()), mtime_ns(&m));
    }
}
