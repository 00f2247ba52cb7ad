//! Who has an image open: the check before anything rewrites or removes one.
//!
//! A running VM holds its disk image open; rewriting the image under it
//! corrupts the guest's filesystem. Two signs are read, neither needing root
//! for the caller's own processes: an open descriptor on the image's inode in
//! `/proc/<pid>/fd` (names the process), and a record lock on the file
//! (qemu takes OFD locks on the images it uses, which also shows a VM in
//! another PID namespace, whose descriptors are not visible).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Exit, Result};

/// A process that has the image open, or a lock on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// None for a lock whose owner is not known (OFD locks show pid -1).
    pub pid: Option<u32>,
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "{} (pid {pid})", self.command),
            None => f.write_str(&self.command),
        }
    }
}

/// The lock QEMU holds on an image it has open, as a holder (microseconds,
/// where [`holders`] scans every process): enough where the only writers
/// that matter are QEMU's, which all lock (a VM, qemu-nbd, libguestfs,
/// qemu-storage-daemon), and qemu-img itself takes the lock before writing.
pub fn lock_holder(image: &Path) -> Option<Holder> {
    has_lock(image).then(|| Holder {
        pid: None,
        command: "a process with a lock on it (a VM's qemu?)".into(),
    })
}

/// Every process other than this one that has `image` open or locked.
pub fn holders(image: &Path) -> Vec<Holder> {
    let Ok(meta) = fs::metadata(image) else {
        return Vec::new();
    };
    let (dev, ino) = (meta.dev(), meta.ino());
    let mut out = open_by(dev, ino);
    if out.is_empty() {
        out.extend(lock_holder(image));
    }
    out
}

/// Fails with exit 75, naming them, when processes have `image` open:
/// `doing` says what was refused ("restoring", "deleting a snapshot inside").
pub fn refuse_if_held(image: &Path, doing: &str) -> Result<()> {
    let found = holders(image);
    if found.is_empty() {
        return Ok(());
    }
    let who: Vec<String> = found.iter().map(|h| h.to_string()).collect();
    Err(Error::new(
        Exit::TempFail,
        format!("{doing} {}", image.display()),
        format!("the image is in use by {}", who.join(", ")),
    )
    .with_hint("stop the VM (or the process) first; nothing was changed"))
}

/// Processes with a descriptor on the inode `(dev, ino)`. Each descriptor
/// is stat'ed relative to its process's open `fd` folder (no path is built
/// or walked per descriptor): on a desktop with thousands of descriptors the
/// scan is most of what a qcow2-internal snapshot costs besides qemu-img.
fn open_by(dev: u64, ino: u64) -> Vec<Holder> {
    use rustix::fs::{AtFlags, Mode, OFlags, openat, statat};
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let fd_dir = format!("/proc/{pid}/fd");
        let Ok(dir) = openat(
            rustix::fs::CWD,
            fd_dir.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
            continue;
        };
        let holds = entries.flatten().any(|e| {
            let name = e.file_name();
            name.to_bytes().first() != Some(&b'.')
                && statat(&dir, name, AtFlags::empty())
                    .is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
        });
        if holds {
            let command = fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            out.push(Holder {
                pid: Some(pid),
                command,
            });
        }
    }
    out
}

/// True when some process holds a record lock (OFD or POSIX, as qemu takes)
/// on any byte of the file: asked of the file itself with `F_OFD_GETLK`,
/// which costs microseconds where reading `/proc/locks` (every lock of the
/// machine) was seen taking 20 ms.
fn has_lock(image: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = fs::File::open(image) else {
        return false;
    };
    // SAFETY: a zeroed flock is a valid argument; the kernel fills it in.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fcntl with F_OFD_GETLK reads and writes the flock we own.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    rc == 0 && lock.l_type != libc::F_UNLCK as libc::c_short
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process with the image open is found, by pid and name.
    #[test]
    fn finds_a_process_with_the_file_open() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("img");
        fs::write(&img, b"x").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(fs::File::open(&img).unwrap())
            .spawn()
            .unwrap();
        // Another test thread that spawns a process at the same moment holds
        // this descriptor too, between its fork and its exec: only the
        // child's own entry counts.
        let pid = child.id();
        let mine = |all: Vec<Holder>| -> Vec<Holder> {
            all.into_iter().filter(|h| h.pid == Some(pid)).collect()
        };
        let found = mine(holders(&img));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].command, "sleep");
        assert!(mine(holders(&img)).is_empty());
    }

    /// A record lock another process holds is found without its descriptor being visible.
    #[test]
    fn finds_a_lock() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("img");
        fs::write(&img, b"x").unwrap();
        assert!(!has_lock(&img));
        // qemu-io takes qemu's OFD locks on the image, as a running VM does.
        let mut vm = std::process::Command::new("qemu-io")
            .args(["-f", "raw", "-c", "sleep 5000"])
            .arg(&img)
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while !has_lock(&img) && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let seen = has_lock(&img);
        vm.kill().unwrap();
        vm.wait().unwrap();
        assert!(seen, "qemu-io's lock was not seen");
    }
}
