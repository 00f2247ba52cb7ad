//! Faults the surroundings give a run: a filesystem that fills up, a drive
//! that is unplugged. From the k-th point on, the state-changing syscalls
//! that touch a folder fail with the error the kernel would give
//! (`ENOSPC`, `EIO`) instead of running, as they would from that moment.
//!
//! A full filesystem refuses what needs new blocks or inodes (writes,
//! `fallocate`, new folders, links and symlinks) and still lets a run
//! remove, rename, truncate and flush, so a tool can clean up. An unplugged
//! drive refuses everything. Reads are not traced, so an unplugged drive
//! still reads; the checks after the run hold the tool to what it wrote.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::trace::{Stop, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The filesystem holding the world is full (`ENOSPC`).
    Full,
    /// The drive is gone (`EIO` on everything under it).
    Unplugged,
}

impl Fault {
    pub fn errno(self) -> i32 {
        match self {
            Fault::Full => libc::ENOSPC,
            Fault::Unplugged => libc::EIO,
        }
    }

    /// What the tool's one line must say: the kernel's words for the error.
    pub fn words(self) -> &'static str {
        match self {
            Fault::Full => "No space left on device",
            Fault::Unplugged => "Input/output error",
        }
    }

    /// The exit codes docs/design.md gives these: 74 (I/O), 73 (cannot create output).
    pub fn exit_codes(self) -> &'static [i32] {
        &[73, 74]
    }

    /// Whether this fault refuses `syscall`.
    fn refuses(self, syscall: &str) -> bool {
        const NEEDS_SPACE: &[&str] = &[
            "write",
            "pwrite64",
            "writev",
            "pwritev",
            "pwritev2",
            "copy_file_range",
            "fallocate",
            "mkdir",
            "mkdirat",
            "link",
            "linkat",
            "symlink",
            "symlinkat",
        ];
        match self {
            Fault::Full => NEEDS_SPACE.contains(&syscall),
            Fault::Unplugged => true,
        }
    }
}

/// An observer that makes the run's syscalls under `under` fail from point `from` on.
pub struct Injector {
    fault: Fault,
    from: u64,
    under: PathBuf,
    seen: u64,
    /// Each refused syscall and the path it touched.
    pub refused: Vec<String>,
}

impl Injector {
    pub fn new(fault: Fault, from: u64, under: &Path) -> Injector {
        Injector {
            fault,
            from,
            under: under.to_path_buf(),
            seen: 0,
            refused: Vec::new(),
        }
    }

    pub fn observe(&mut self, stop: &Stop) -> Verdict {
        self.seen += 1;
        if self.seen < self.from || !self.fault.refuses(stop.syscall) {
            return None;
        }
        let hit = touched(stop)
            .into_iter()
            .find(|p| p.starts_with(&self.under))?;
        let rel = hit.strip_prefix(&self.under).unwrap_or(&hit);
        self.refused
            .push(format!("{} {}", stop.syscall, rel.display()));
        Some(self.fault.errno())
    }
}

/// The paths a syscall changes, as absolute paths.
fn touched(stop: &Stop) -> Vec<PathBuf> {
    let a = stop.args;
    let at = |dirfd: u64, path: u64| resolve(stop.pid, Some(dirfd as i32), path);
    let cwd = |path: u64| resolve(stop.pid, None, path);
    let fd = |fd: u64| std::fs::read_link(format!("/proc/{}/fd/{}", stop.pid, fd as i32)).ok();
    let found = match stop.syscall {
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" | "fsync" | "fdatasync"
        | "syncfs" | "ftruncate" | "fallocate" => vec![fd(a[0])],
        "copy_file_range" => vec![fd(a[2])],
        "rename" | "link" => vec![cwd(a[0]), cwd(a[1])],
        "renameat" | "renameat2" | "linkat" => vec![at(a[0], a[1]), at(a[2], a[3])],
        "symlink" => vec![cwd(a[1])],
        "symlinkat" => vec![at(a[1], a[2])],
        "mkdir" | "unlink" | "rmdir" | "truncate" => vec![cwd(a[0])],
        "mkdirat" | "unlinkat" => vec![at(a[0], a[1])],
        _ => vec![],
    };
    found.into_iter().flatten().collect()
}

/// A path argument of a traced process, made absolute from its cwd or `dirfd`.
fn resolve(pid: i32, dirfd: Option<i32>, addr: u64) -> Option<PathBuf> {
    let raw = read_c_string(pid, addr)?;
    let path = Path::new(OsStr::from_bytes(&raw));
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    let base = match dirfd {
        None | Some(libc::AT_FDCWD) => format!("/proc/{pid}/cwd"),
        Some(fd) => format!("/proc/{pid}/fd/{fd}"),
    };
    Some(std::fs::read_link(base).ok()?.join(path))
}

/// A NUL-ended string from a traced process's memory (at most 4 KiB: PATH_MAX).
fn read_c_string(pid: i32, addr: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Reads may stop at the end of a mapped page: ask for what is left of it.
    let to_page_end = 4096 - (addr as usize % 4096);
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: to_page_end,
    };
    // SAFETY: reads another process's memory into our own buffer of the given length.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    if !buf.contains(&0) {
        // The name goes on past the page: read the whole 4 KiB.
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 4096,
        };
        buf.resize(4096, 0);
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: 4096,
        };
        // SAFETY: as above.
        let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
        buf.truncate(n.max(0) as usize);
    }
    let end = buf.iter().position(|&b| b == 0)?;
    buf.truncate(end);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::run_observed;
    use std::process::Command;
    use std::time::Duration;

    /// Runs `script` in `dir` with `inj` refusing its syscalls.
    fn run_with(script: &str, dir: &Path, inj: &mut Injector) -> crate::trace::Traced {
        run_observed(
            Command::new("sh").args(["-c", script]).current_dir(dir),
            None,
            Duration::from_secs(20),
            &mut |s| inj.observe(s),
        )
        .unwrap()
    }

    /// A full disk from the 2nd point on: the first write lands, the second
    /// fails with ENOSPC, a removal still runs; writes elsewhere are untouched.
    #[test]
    fn full_disk_refuses_writes_under_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("old"), "x").unwrap();
        let script = "echo a > full/a; echo b > full/b || echo refused > elsewhere; rm full/old";
        let mut inj = Injector::new(Fault::Full, 2, &full);
        let t = run_with(script, dir.path(), &mut inj);
        assert_eq!(t.failed, 1, "{t:?}");
        assert_eq!(std::fs::read_to_string(full.join("a")).unwrap(), "a\n");
        assert_eq!(std::fs::read_to_string(full.join("b")).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("elsewhere")).unwrap(),
            "refused\n"
        );
        assert!(!full.join("old").exists());
    }

    /// An unplugged drive refuses removals and renames too, by their relative names.
    #[test]
    fn unplugged_drive_refuses_everything_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let drive = dir.path().join("drive");
        std::fs::create_dir(&drive).unwrap();
        std::fs::write(drive.join("old"), "x").unwrap();
        let script = "cd drive && rm old; mv old new; mkdir d; echo done > ../outside";
        let mut inj = Injector::new(Fault::Unplugged, 1, &drive);
        let t = run_with(script, dir.path(), &mut inj);
        assert!(t.failed >= 3, "{t:?}");
        assert!(drive.join("old").exists());
        assert!(!drive.join("d").exists());
        assert!(dir.path().join("outside").exists());
    }
}
