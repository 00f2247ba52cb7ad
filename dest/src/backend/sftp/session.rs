//! The requests an SFTP destination's operations are made of: reads in
//! pipelined chunks, folders made on demand, hidden writes, renames and
//! create-only publication, and errors as one line with an exit code.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use openssh_sftp_client::Sftp;
use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};
use openssh_sftp_client::file::{File as RemoteFile, OpenOptions};
use openssh_sftp_client::metadata::Permissions;
use tokio::io::AsyncSeekExt;
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit};

use crate::names::{hidden, unique};
use crate::said::last_line;

/// Requests of one file in flight at once (each up to the server's maximum,
/// 255 KiB for OpenSSH): enough to keep a link busy across its round trip.
pub(super) const IN_FLIGHT: usize = 32;

/// Bytes asked of one read or write request: OpenSSH's maximum (its
/// limits@openssh.com answer). The client splits them further for a server
/// with smaller limits (20 KiB where a server gives none).
pub(super) const CHUNK: u32 = 255 << 10;
pub(super) struct Session {
    pub(super) sftp: Sftp,
    /// ssh, killed when the session goes.
    pub(super) _child: Mutex<tokio::process::Child>,
    pub(super) stderr: Arc<Mutex<String>>,
    /// The folder on the server, absolute.
    pub(super) root: PathBuf,
    pub(super) rt: Arc<Runtime>,
    pub(super) url: String,
    /// Folders known to be there (see `ensure_parent`).
    pub(super) folders: Mutex<HashSet<PathBuf>>,
}

impl Session {
    pub(super) fn error(&self, what: &str, e: SftpError) -> Error {
        match e {
            SftpError::SftpError(kind, msg) => {
                let (exit, said) = match kind {
                    SftpErrorKind::NoSuchFile => (Exit::NoInput, "no such file"),
                    SftpErrorKind::PermDenied => (Exit::NoPerm, "permission denied"),
                    SftpErrorKind::OpUnsupported => {
                        (Exit::Unavailable, "the server does not support this")
                    }
                    _ => (Exit::Io, "the server failed"),
                };
                let msg = msg.to_string();
                let cause = match msg.trim() {
                    "" => said.to_string(),
                    m => format!("{said} ({m})"),
                };
                Error::new(exit, what.to_string(), cause)
            }
            other => self.lost(what, &other.to_string()),
        }
    }

    /// The connection went away: exit 69, with what ssh said last.
    pub(super) fn lost(&self, what: &str, why: &str) -> Error {
        let kept = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let cause = match last_line(&kept) {
            Some(l) => format!("the connection was lost (ssh: {l})"),
            None => format!("the connection was lost ({why})"),
        };
        Error::new(Exit::Unavailable, what.to_string(), cause)
            .with_hint("check the server and the network, then run again: a push resumes")
    }

    pub(super) async fn open_read(
        &self,
        path: &Path,
    ) -> std::result::Result<(RemoteFile, u64), SftpError> {
        let mut file = self.sftp.open(path).await?;
        let size = file.metadata().await?.len().unwrap_or(0);
        Ok((file, size))
    }

    pub(super) async fn read_all(&self, path: &Path) -> std::result::Result<Bytes, SftpError> {
        let (file, size) = self.open_read(path).await?;
        let reads = chunks(size).map(|r| read_exact_at(file.clone(), r, CHUNK));
        let parts: Vec<_> = futures::stream::iter(reads)
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut all = BytesMut::with_capacity(size as usize);
        for p in parts {
            all.extend_from_slice(&p?);
        }
        // A file that grew while read is read again by the caller's check; one
        // that shrank fails above.
        Ok(all.freeze())
    }

    /// A folder's entries (not `.` and `..`) with their attributes.
    pub(super) async fn read_dir(
        &self,
        dir: &Path,
    ) -> std::result::Result<Vec<(String, openssh_sftp_client::metadata::MetaData)>, SftpError>
    {
        let mut fs = self.sftp.fs();
        let entries = fs.open_dir(dir).await?.read_dir();
        let mut entries = std::pin::pin!(entries);
        let mut out = Vec::new();
        while let Some(entry) = entries.next().await {
            let entry = entry?;
            let name = entry.filename().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                out.push((name, entry.metadata()));
            }
        }
        Ok(out)
    }

    /// Makes the folders above `path` that are missing, 0700. A folder
    /// seen or made before is not asked for again: each question is a round
    /// trip. snap removes no folder at a destination; a write
    /// into one that someone else removed fails as missing, and
    /// `create_in_folder` then forgets what it knew and tries once more.
    pub(super) async fn ensure_parent(&self, path: &Path) -> std::result::Result<(), SftpError> {
        let Some(dir) = path.parent() else {
            return Ok(());
        };
        if self.knows_folder(dir) {
            return Ok(());
        }
        let mut fs = self.sftp.fs();
        if fs.metadata(dir).await.is_err() {
            let mut made = PathBuf::new();
            for c in dir.components() {
                made.push(c);
                if made.starts_with(&self.root)
                    && made != self.root
                    && fs.metadata(&made).await.is_err()
                {
                    let mut b = fs.dir_builder();
                    b.permissions(Permissions::from(0o700));
                    if let Err(e) = b.create(&made).await
                        && fs.metadata(&made).await.is_err()
                    {
                        return Err(e);
                    }
                }
            }
        }
        self.folders_lock().insert(dir.to_path_buf());
        Ok(())
    }

    pub(super) fn knows_folder(&self, dir: &Path) -> bool {
        self.folders_lock().contains(dir)
    }

    pub(super) fn folders_lock(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.folders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `path` with `opts`, making its folder first; when the folder
    /// was known but is gone, makes it again and tries once more.
    pub(super) async fn create_in_folder(
        &self,
        path: &Path,
        opts: &OpenOptions,
    ) -> std::result::Result<RemoteFile, SftpError> {
        self.ensure_parent(path).await?;
        match opts.open(path).await {
            Err(e) if is_missing(&e) => {
                self.folders_lock().clear();
                self.ensure_parent(path).await?;
                opts.open(path).await
            }
            opened => opened,
        }
    }

    /// Makes `path` (and its folder) empty, for writing.
    pub(super) async fn create_truncated(
        &self,
        path: &Path,
    ) -> std::result::Result<RemoteFile, SftpError> {
        let mut opts = self.sftp.options();
        opts.write(true).create(true).truncate(true);
        self.create_in_folder(path, &opts).await
    }

    /// Writes `data` to a hidden sibling of `path`, 0600, flushed; returns its path.
    pub(super) async fn write_hidden(
        &self,
        path: &Path,
        data: &Bytes,
    ) -> std::result::Result<PathBuf, SftpError> {
        let tmp = hidden(path, &format!("tmp-{}", unique()));
        let mut file = self.create_truncated(&tmp).await?;
        private(&mut file).await?;
        if !data.is_empty() {
            file.write_all_zero_copy(&mut [data.clone()]).await?;
        }
        if self.sftp.support_fsync() {
            file.sync_all().await?;
        }
        file.close().await?;
        Ok(tmp)
    }

    /// Renames `from` over `to`, replacing what is there.
    pub(super) async fn replace(
        &self,
        from: &Path,
        to: &Path,
    ) -> std::result::Result<(), SftpError> {
        let mut fs = self.sftp.fs();
        if self.sftp.support_posix_rename() {
            // posix-rename replaces atomically.
            fs.rename(from, to).await?;
        } else {
            // A plain v3 server refuses to rename over a file.
            match fs.remove_file(to).await {
                Err(e) if !is_missing(&e) => return Err(e),
                _ => {}
            }
            fs.rename(from, to).await?;
        }
        self.sync_dir(to).await;
        Ok(())
    }

    /// Publishes `tmp` as `to` only if `to` is not there; `tmp` goes either way.
    pub(super) async fn publish_new(
        &self,
        tmp: &Path,
        to: &Path,
    ) -> std::result::Result<bool, SftpError> {
        let mut fs = self.sftp.fs();
        let made = match self.sftp.support_hardlink() {
            true => {
                let linked = fs.hard_link(tmp, to).await;
                let _ = fs.remove_file(tmp).await;
                linked.map(|()| true)
            }
            // OpenSSH's v3 rename is link(2) and unlink(2): it fails on a taken name.
            false => fs.rename(tmp, to).await.map(|()| true),
        };
        match made {
            Ok(true) => Ok(true),
            Ok(false) => {
                let _ = fs.remove_file(tmp).await;
                Ok(false)
            }
            Err(e) => {
                let _ = fs.remove_file(tmp).await;
                match fs.metadata(to).await {
                    // The name was taken (the server's "Failure" for EEXIST).
                    Ok(_) if matches!(e, SftpError::SftpError(SftpErrorKind::Failure, _)) => {
                        Ok(false)
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Flushes the folder holding `path`, so a rename survives the server's
    /// power cut. OpenSSH's server opens a folder like a file, and its fsync
    /// is then the folder's; where that is refused nothing more can be done.
    pub(super) async fn sync_dir(&self, path: &Path) {
        if !self.sftp.support_fsync() {
            return;
        }
        let Some(dir) = path.parent() else { return };
        if let Ok(mut f) = self.sftp.open(dir).await {
            let _ = f.sync_all().await;
            let _ = f.close().await;
        }
    }
}

/// A file of `size` bytes as ranges of one request each.
pub(super) fn chunks(size: u64) -> impl Iterator<Item = Range<u64>> {
    let chunk = u64::from(CHUNK);
    (0..size.div_ceil(chunk)).map(move |i| i * chunk..((i + 1) * chunk).min(size))
}

/// Sets an open file's mode to 0600 (the server's umask chose it at creation).
pub(super) async fn private(file: &mut RemoteFile) -> std::result::Result<(), SftpError> {
    file.set_permissions(Permissions::from(0o600)).await
}

/// Reads exactly `r` of a file, with one request per server maximum; a
/// short read asks again for the rest, and the end of the file before the
/// range ends is an error.
pub(super) async fn read_exact_at(
    file: RemoteFile,
    r: Range<u64>,
    max: u32,
) -> std::result::Result<Bytes, SftpError> {
    let mut file = file;
    let want = (r.end - r.start) as usize;
    let mut buf = BytesMut::with_capacity(want);
    file.seek(std::io::SeekFrom::Start(r.start)).await?;
    while buf.len() < want {
        let n = (want - buf.len()).min(max as usize) as u32;
        let spare = BytesMut::with_capacity(n as usize);
        match file.read(n, spare).await? {
            Some(got) if !got.is_empty() => buf.extend_from_slice(&got),
            _ => {
                return Err(SftpError::IOError(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file ended at {} while bytes {}..{} were asked",
                        r.start + buf.len() as u64,
                        r.start,
                        r.end
                    ),
                )));
            }
        }
    }
    Ok(buf.freeze())
}

pub(super) fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}
