//! A qemu-storage-daemon of our own, for an image no VM is running.
//!
//! A stopped qcow2 (or vmdk, vdi, vhdx) image is read the way a running one
//! is: QEMU opens it, and the live path reads only its allocated blocks
//! through NBD, with no raw copy of the whole image in the store. The
//! daemon opens the image read-write so that the snapshot's dirty bitmap
//! is kept in a qcow2 image: the VM that runs it next (any QEMU) loads the
//! bitmap and marks what it writes, and the next snapshot reads only that.
//! The daemon is stopped with SIGTERM, its clean exit, which is when QEMU
//! writes persistent bitmaps into the image; it gets the same SIGTERM when
//! snap-disk dies without stopping it (a kill -9), so no daemon outlives its
//! run holding the image's lock.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snap_shared::error::{Error, Exit, Result};

/// The node names the daemon gives the image (never our `snap-disk-`
/// prefix, which marks leftovers to remove).
pub const NODE: &str = "disk";

/// A running qemu-storage-daemon on one image; stopped cleanly when dropped.
pub struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    pub qmp: PathBuf,
}

impl Daemon {
    /// Whether qemu-storage-daemon is installed.
    pub fn available() -> bool {
        Command::new("qemu-storage-daemon")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Opens `image` (of `format`) read-write and waits for the monitor.
    pub fn start(image: &Path, format: &str) -> Result<Daemon> {
        Self::open(image, format, true)
    }

    /// Opens `image` read-only (nothing it does can change the file: a
    /// dry run's comparison), sharing it with other readers.
    pub fn start_read_only(image: &Path, format: &str) -> Result<Daemon> {
        Self::open(image, format, false)
    }

    fn open(image: &Path, format: &str, writable: bool) -> Result<Daemon> {
        let ro = if writable { "" } else { ",read-only=on" };
        let dir = private_dir()?;
        let qmp = dir.join("qmp.sock");
        let ctx = || format!("qemu-storage-daemon on {}", image.display());
        let mut cmd = Command::new("qemu-storage-daemon");
        // A snap-disk killed (-9) takes its daemon with it: SIGTERM, QEMU's
        // clean exit, so the image is closed and its lock freed for the rerun.
        // SAFETY: the closure runs in the child between fork and exec and
        // makes one async-signal-safe system call (prctl).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name={NODE}-file,filename={}{ro}",
                escape(image)
            ))
            .arg("--blockdev")
            .arg(format!(
                "driver={format},node-name={NODE},file={NODE}-file{ro}"
            ))
            .arg("--chardev")
            .arg(format!(
                "socket,path={},server=on,wait=off,id=mon",
                escape(&qmp)
            ))
            .arg("--monitor")
            .arg("chardev=mon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io_ctx(ctx(), e))?;
        let mut d = Daemon {
            child: Some(child),
            dir,
            qmp,
        };
        d.wait_ready().map_err(|e| e.within(ctx()))?;
        Ok(d)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if listening(&self.qmp) {
                return Ok(());
            }
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                self.child = None;
                let cause = err.lines().last().unwrap_or("").trim().to_string();
                let exit = match cause.contains("lock") {
                    true => Exit::TempFail,
                    false => Exit::Io,
                };
                return Err(Error::new(exit, "", format!("exited ({status}): {cause}")));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Error::new(Exit::Io, "", "did not start in 30 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the daemon cleanly, so that it writes its bitmaps into the image.
    pub fn stop(mut self) -> Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let status = child
            .wait()
            .map_err(|e| Error::io_ctx("qemu-storage-daemon", e))?;
        match status.success() {
            true => Ok(()),
            false => Err(Error::new(
                Exit::Io,
                "qemu-storage-daemon",
                format!("did not exit cleanly ({status}); the image's dirty bitmap may be lost"),
            )),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.terminate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new folder only we can enter, short enough for unix socket paths.
pub(crate) fn private_dir() -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!("snap-disk-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// A path inside QEMU's `key=value,…` option syntax, where a comma is doubled.
fn escape(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// Whether a unix socket at `path` is listening, read from /proc/net/unix
/// (flag __SO_ACCEPTCON) rather than by connecting: the monitor takes one
/// client at a time, and a probe connection closed at once could still be
/// the client QEMU was serving when the real one connected, which then
/// read "the socket was closed" (seen in CI under load).
fn listening(path: &Path) -> bool {
    const ACCEPTCON: u32 = 0x0001_0000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7..].join(" ") == want
            && u32::from_str_radix(fields[3], 16).is_ok_and(|f| f & ACCEPTCON != 0)
    })
}

#[cfg(test)]
mod listening_tests {
    use super::*;

    /// A listening socket is seen; its file left behind after it closed is not.
    #[test]
    fn sees_a_listener_not_a_leftover_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        assert!(!listening(&path));
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(listening(&path));
        drop(l);
        assert!(path.exists());
        // Another test thread's child, forked but not yet exec'd, can hold a
        // copy of the listener for a moment (CI failed on it once): the
        // socket closes when the last copy does.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while listening(&path) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!listening(&path));
    }
}
