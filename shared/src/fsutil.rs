//! Atomic publication: everything appears under its final name whole or not at all.
//!
//! The recipe (docs/design.md): write under a temporary name in the same directory,
//! fsync, rename, fsync the directory. Publications that must never replace
//! anything use `renameat2(RENAME_NOREPLACE)`, so a bug or a race can't clobber
//! an earlier snapshot.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags, renameat_with};

/// The directory a path lives in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary name beside `path`: hidden, and unique to this process.
pub fn temp_name(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let name = name.unwrap_or_default();
    parent_of(path).join(format!(".{name}.{tag}.{}", std::process::id()))
}

/// Free and total bytes of the filesystem holding `path` (as an unprivileged user sees them).
pub fn free_space(path: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)?;
    Ok((st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize))
}

/// Starts write-back of a byte range of a file being written, without waiting.
/// A large copy ends with a flush (fsync, syncfs); starting write-back as the
/// file grows makes that flush overlap the copy instead of following it, and
/// keeps dirty memory low.
pub fn start_writeback(file: &impl std::os::fd::AsRawFd, from: u64, to: u64) {
    // SAFETY: sync_file_range only reads its integer arguments; a bad fd is an
    // error return, and the call is a hint whose failure changes nothing.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Flushes a directory's entries (new names, renames) to disk.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Flushes every dirty page of the filesystem holding `path` (one call for a whole tree).
pub fn syncfs(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    rustix::fs::syncfs(&f).map_err(io::Error::from)
}

/// Renames `from` to `to`, failing with `AlreadyExists` rather than replacing.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

/// Moves a finished file or tree to its final name, never replacing, and makes it durable.
pub fn publish_new(from: &Path, to: &Path) -> io::Result<()> {
    rename_noreplace(from, to)?;
    fsync_dir(parent_of(to))
}

/// Writes a file atomically: `fill` writes it under a temporary name, then it is
/// fsynced and renamed over `path` (replacing when `replace`), and the directory fsynced.
/// The temporary file is removed on any failure.
pub fn write_atomic(
    path: &Path,
    mode: u32,
    replace: bool,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_name(path, "tmp");
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        fill(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        drop(file);
        if replace {
            fs::rename(&tmp, path)?;
            fsync_dir(parent_of(path))
        } else {
            publish_new(&tmp, path)
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Points the symlink `link` at `target`, atomically replacing what was there.
pub fn replace_symlink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = temp_name(link, "tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    if let Err(e) = fs::rename(&tmp, link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsync_dir(parent_of(link))
}

/// Creates `dir` and its missing parents with mode 0700 (the store is private).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Removes a tree we made, even where it holds read-only directories (a
/// snapshot keeps its sources' modes, `0555` included). A missing tree is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_dirs_writable(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_dirs_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// An atomic write leaves only the final file, with the asked mode.
    #[test]
    fn write_atomic_publishes_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        write_atomic(&p, 0o600, false, |f| f.write_all(b"{}")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{}");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// Without `replace`, an existing file is never overwritten and no temp file stays.
    #[test]
    fn write_atomic_never_replaces_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec.json");
        fs::write(&p, "old").unwrap();
        let err = write_atomic(&p, 0o600, false, |f| f.write_all(b"new")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&p, 0o600, true, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    /// A failing writer leaves nothing behind.
    #[test]
    fn failed_write_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let res = write_atomic(&p, 0o600, false, |_| Err(io::Error::other("boom")));
        assert!(res.is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// A tree with read-only directories is still removed.
    #[test]
    fn remove_tree_handles_read_only_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        fs::write(t.join("a/b/f"), "x").unwrap();
        fs::set_permissions(t.join("a/b"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(t.join("a"), fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
    }

    /// Replacing a symlink swaps it in one step.
    #[test]
    fn symlink_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("latest");
        replace_symlink(Path::new("a"), &link).unwrap();
        replace_symlink(Path::new("b"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("b"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

/// A folder opened as a handle to name things beneath it (`O_PATH`): the
/// `root` of [`open_beneath`], for reading a snapshot's tree.
pub fn open_root(dir: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(dir, flags, Mode::empty())?)
}

/// Opens `rel` (relative, `/`-separated) beneath the folder `root`, through
/// no symlink. A path that fits PATH_MAX is one `openat2` call
/// (`RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`); a longer one (the kernel
/// refuses it in one call, and snapshots keep deeper trees than that), or a
/// kernel without `openat2`, is opened one folder at a time
/// (`O_NOFOLLOW|O_DIRECTORY` on each). `flags` are for the last component.
pub fn open_beneath(
    root: impl std::os::fd::AsFd,
    rel: &[u8],
    flags: rustix::fs::OFlags,
) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags, openat, openat2};
    use rustix::io::Errno;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    // One call when the path fits: the kernel walks it, beneath the folder
    // and through no symlink (a folder at a time costs a call a folder).
    if rel.len() < 4096 {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        let last_flags = flags | OFlags::NOFOLLOW;
        match openat2(
            &root,
            OsStr::from_bytes(rel),
            last_flags,
            Mode::empty(),
            resolve,
        ) {
            Err(Errno::NAMETOOLONG | Errno::NOSYS) => {}
            other => return Ok(other?),
        }
    }
    let comps: Vec<&[u8]> = rel
        .split(|&c| c == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let Some((last, dirs)) = comps.split_last() else {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    };
    let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut at: Option<std::os::fd::OwnedFd> = None;
    for dir in dirs {
        let next = match &at {
            Some(fd) => openat(fd, OsStr::from_bytes(dir), step, Mode::empty()),
            None => openat(&root, OsStr::from_bytes(dir), step, Mode::empty()),
        };
        at = Some(next?);
    }
    let last = OsStr::from_bytes(last);
    Ok(match &at {
        Some(fd) => openat(fd, last, flags | OFlags::NOFOLLOW, Mode::empty())?,
        None => openat(&root, last, flags | OFlags::NOFOLLOW, Mode::empty())?,
    })
}

#[cfg(test)]
mod beneath_tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// A file under a path of over 4096 bytes opens, one folder at a time;
    /// a symlinked folder on the way is not followed.
    #[test]
    fn opens_paths_longer_than_path_max() {
        use rustix::fs::{Mode, OFlags, mkdirat, openat};
        let t = tempfile::tempdir().unwrap();
        let root =
            rustix::fs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let name = "d".repeat(250);
        let mut at =
            rustix::fs::open(t.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut rel = Vec::new();
        for _ in 0..20 {
            mkdirat(&at, name.as_str(), Mode::from_raw_mode(0o755)).unwrap();
            at = openat(
                &at,
                name.as_str(),
                OFlags::PATH | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .unwrap();
            rel.extend_from_slice(name.as_bytes());
            rel.push(b'/');
        }
        let f = openat(
            &at,
            "f",
            OFlags::WRONLY | OFlags::CREATE,
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        drop(f);
        rel.extend_from_slice(b"f");
        assert!(rel.len() > 4096);
        assert!(
            openat(
                &root,
                std::ffi::OsStr::from_bytes(&rel),
                OFlags::RDONLY,
                Mode::empty()
            )
            .is_err()
        );
        open_beneath(&root, &rel, OFlags::RDONLY).unwrap();
        std::os::unix::fs::symlink(t.path().join(&name), t.path().join("link")).unwrap();
        assert!(open_beneath(&root, b"link/f", OFlags::RDONLY).is_err());
    }
}

/// Reads until `buf` is full or the stream ends; how much was read (less
/// than `buf` only at the end). An interrupted read is tried again.
pub fn read_full(r: &mut (impl io::Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Makes a range of a file read as zeros: a punched hole, or written zeros
/// where the filesystem cannot punch.
pub fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    use std::os::unix::fs::FileExt;
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    match fallocate(file, flags, offset, len) {
        Ok(()) => Ok(()),
        Err(_) => file.write_all_at(&vec![0u8; len as usize], offset),
    }
}
