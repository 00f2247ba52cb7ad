//! Giving snapshot entries their source's metadata: owner (as root), mode,
//! and times to the nanosecond. Owner goes first because chown clears the
//! set-uid bits that chmod then puts back. Everything works on open folders
//! and names, never on long paths.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{
    AtFlags, Gid, Mode, Stat, Timespec, Timestamps, Uid, chmodat, chownat, fchmod, fchown,
    futimens, utimensat,
};

fn timestamps(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn owner(st: &Stat) -> (Option<Uid>, Option<Gid>) {
    // SAFETY-free: from_raw only wraps the number.
    (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
}

/// Permission bits of a mode.
pub fn perm_bits(st: &Stat) -> u32 {
    st.st_mode & 0o7777
}

/// Seconds and nanoseconds as nanoseconds since the epoch.
fn ns(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

/// Modification time in nanoseconds since the epoch.
pub fn mtime_ns(st: &Stat) -> i64 {
    ns(st.st_mtime, st.st_mtime_nsec as i64)
}

/// Inode change time in nanoseconds since the epoch.
pub fn ctime_ns(st: &Stat) -> i64 {
    ns(st.st_ctime, st.st_ctime_nsec as i64)
}

/// Applies owner (when `as_root`), mode and times to an open file or folder.
pub fn apply_to_fd(fd: impl AsFd, st: &Stat, as_root: bool) -> io::Result<()> {
    if as_root {
        let (u, g) = owner(st);
        fchown(&fd, u, g)?;
    }
    fchmod(&fd, Mode::from_raw_mode(perm_bits(st)))?;
    futimens(&fd, &timestamps(st))?;
    Ok(())
}

/// Applies owner, mode and times to `name` in an open folder, without following
/// a symlink (whose mode can't be set on Linux and is skipped).
pub fn apply_at(
    dir: impl AsFd,
    name: &OsStr,
    st: &Stat,
    as_root: bool,
    is_link: bool,
) -> io::Result<()> {
    if as_root {
        let (u, g) = owner(st);
        chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)?;
    }
    if !is_link {
        chmodat(
            &dir,
            name,
            Mode::from_raw_mode(perm_bits(st)),
            AtFlags::empty(),
        )?;
    }
    utimensat(&dir, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{CWD, Mode, OFlags, open, stat};

    /// Mode and nanosecond mtime are copied, on open files and on names.
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
        let st = stat(&src).unwrap();
        let dst = dir.path().join("dst");
        std::fs::write(&dst, "y").unwrap();
        let fd = open(&dst, OFlags::RDONLY, Mode::empty()).unwrap();
        apply_to_fd(&fd, &st, false).unwrap();
        let d = stat(&dst).unwrap();
        assert_eq!(perm_bits(&d), 0o751);
        assert_eq!(mtime_ns(&d), 1_500_000_000_123_456_789);
        std::fs::write(dir.path().join("other"), "z").unwrap();
        let dfd = open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        apply_at(&dfd, OsStr::new("other"), &st, false, false).unwrap();
        assert_eq!(
            mtime_ns(&stat(dir.path().join("other")).unwrap()),
            mtime_ns(&st)
        );
    }
}
