//! Who has an image open: the check before anything rewrites or removes one.
//!
//! A running VM holds its disk image open; rewriting the image under it
//! corrupts the guest's filesystem. Two signs are read, neither needing root
//! for the caller's own processes: an open descriptor on the image's inode in
//! `/proc/<pid>/fd` (names the process), and a lock on the inode in
//! `/proc/locks` (qemu takes OFD locks on the images it uses, which also shows
//! a VM in another PID namespace, whose descriptors are not visible).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

/// Every process other than this one that has `image` open or locked.
pub fn holders(image: &Path) -> Vec<Holder> {
    let Ok(meta) = fs::metadata(image) else {
        return Vec::new();
    };
    let (dev, ino) = (meta.dev(), meta.ino());
    let mut out = open_by(dev, ino);
    if out.is_empty()
        && let Ok(locks) = fs::read_to_string("/proc/locks")
        && locked(&locks, dev, ino)
    {
        out.push(Holder {
            pid: None,
            command: "a process with a lock on it (a VM's qemu?)".into(),
        });
    }
    out
}

/// Processes with a descriptor on the inode `(dev, ino)`.
fn open_by(dev: u64, ino: u64) -> Vec<Holder> {
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
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| fs::metadata(fd.path()).is_ok_and(|m| m.dev() == dev && m.ino() == ino));
        if holds {
            let command = fs::read_to_string(p.path().join("comm"))
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

/// True when `/proc/locks` text has a lock on the inode `(dev, ino)`.
fn locked(locks: &str, dev: u64, ino: u64) -> bool {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    locks.lines().any(|line| {
        // `1: OFDLCK ADVISORY  READ  -1 fd:00:1234 100 101`; blocked waiters start with `->`.
        line.split_whitespace().any(|field| field == want)
    })
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
        let found = holders(&img);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, Some(child.id()));
        assert_eq!(found[0].command, "sleep");
        assert!(holders(&img).is_empty());
    }

    /// A lock line for the inode counts; other inodes do not.
    #[test]
    fn reads_proc_locks() {
        let dev = rustix::fs::makedev(0xfd, 0);
        let text = "1: OFDLCK ADVISORY  READ  -1 fd:00:1234 100 101\n";
        assert!(locked(text, dev, 1234));
        assert!(!locked(text, dev, 123));
    }
}
