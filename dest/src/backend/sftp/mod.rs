//! SFTP destinations: a folder on another machine through the system's
//! `ssh`.
//!
//! snap speaks SFTP v3 over ssh's stdin and stdout, with the
//! openssh-sftp-client crate (the openssh-rust project's client: pipelined
//! requests, and the OpenSSH extensions fsync, hardlink, posix-rename and
//! statvfs). Going through the system's ssh rather than an SSH stack in
//! Rust (russh, libssh2) is what makes the user's `~/.ssh/config`, agent,
//! ProxyJump and known_hosts apply, as with restic and borg.
//!
//! What a folder destination promises holds here too, as far as the server
//! allows (docs/destinations.md, "SFTP"): files are written under a hidden
//! name, made 0600, flushed with `fsync@openssh.com` before they count, and
//! published by a rename; a create-only publication is a hard link
//! (`hardlink@openssh.com`, or the v3 rename, which OpenSSH does with
//! link(2)), which fails when the name is taken.
//!
//! This module holds the session and the operations every destination has;
//! `connect` starts ssh and finds the folder, `session` the requests they
//! are made of, `parts` the resumable upload of large files.

mod connect;
mod parts;
mod session;

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use openssh_sftp_client::UnixTimeStamp;
use openssh_sftp_client::error::Error as SftpError;
use openssh_sftp_client::metadata::MetaDataBuilder;
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Result};

use crate::settings::DestSpec;

use connect::{command, find_root, start};
use session::{CHUNK, IN_FLIGHT, Session, chunks, is_missing, read_exact_at};

/// An open SFTP session to a destination's folder.
#[derive(Clone)]
pub(crate) struct Remote {
    s: Arc<Session>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.s.url)
    }
}

impl Remote {
    /// Starts ssh, opens the SFTP session and finds the folder.
    /// A missing folder on an ssh server is exit 75, as for a local folder:
    /// it is never made, since on a NAS whose disk is not mounted it would
    /// land on the system disk.
    pub(crate) fn connect(spec: &DestSpec, rt: &Arc<Runtime>) -> Result<Remote> {
        let (argv, path) = command(spec)?;
        let ctx = format!("destination {}", spec.name);
        let stderr = Arc::new(Mutex::new(String::new()));
        let (sftp, child) = rt.block_on(start(&argv, &stderr, &ctx))?;
        let mut session = Session {
            sftp,
            _child: Mutex::new(child),
            stderr,
            root: PathBuf::new(),
            rt: rt.clone(),
            url: spec.location.url(),
            folders: Mutex::new(HashSet::new()),
        };
        session.root = rt.block_on(find_root(&session, &path, &ctx, spec))?;
        Ok(Remote {
            s: Arc::new(session),
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.s.root.join(rel)
    }

    fn show(&self, rel: &str) -> String {
        format!("{}/{rel}", self.s.url.trim_end_matches('/'))
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.s.rt.block_on(f)
    }

    /// An SFTP error as one line with a sysexits code: the server's status
    /// (no such file 66, permission 77, failure 74), or a lost connection
    /// (69) with the last thing ssh said.
    fn error(&self, rel: &str, e: SftpError) -> Error {
        self.s.error(&self.show(rel), e)
    }

    /// Size of the file at `rel`, if there is one.
    pub(crate) fn head(&self, rel: &str) -> Result<Option<u64>> {
        let path = self.path(rel);
        match self.block_on(self.s.sftp.fs().metadata(&path)) {
            Ok(m) if m.file_type().is_some_and(|t| t.is_file()) => Ok(Some(m.len().unwrap_or(0))),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// The whole of a small file.
    pub(crate) fn get(&self, rel: &str) -> Result<Bytes> {
        self.block_on(self.s.read_all(&self.path(rel)))
            .map_err(|e| self.error(rel, e))
    }

    /// Several small files, fetched concurrently; results in the order asked.
    pub(crate) fn get_many(&self, rels: &[String]) -> Vec<Result<Bytes>> {
        let s = &self.s;
        let fetches = rels.iter().map(|rel| {
            let path = self.path(rel);
            async move { s.read_all(&path).await }
        });
        let got: Vec<_> = self.block_on(
            futures::stream::iter(fetches)
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>(),
        );
        got.into_iter()
            .zip(rels)
            .map(|(r, rel)| r.map_err(|e| self.error(rel, e)))
            .collect()
    }

    /// A reader of a file, read ahead with requests in flight.
    pub(crate) fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(rel);
        let (file, size) = self
            .block_on(self.s.open_read(&path))
            .map_err(|e| self.error(rel, e))?;
        let s = self.s.clone();
        let show = self.show(rel);
        let body: BoxStream<'static, std::io::Result<Bytes>> = futures::stream::iter(chunks(size))
            .map(move |r| {
                let (file, s, show) = (file.clone(), s.clone(), show.clone());
                async move {
                    read_exact_at(file, r, CHUNK)
                        .await
                        .map_err(|e| std::io::Error::other(s.error(&show, e).to_string()))
                }
            })
            .buffered(IN_FLIGHT)
            .boxed();
        Ok(Box::new(crate::stream::StreamReader::from_io(
            &self.s.rt, body,
        )))
    }

    /// The bytes of `ranges` of a file, in the order asked; a range past the
    /// end is an error, not a short answer.
    pub(crate) fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.path(rel);
        self.block_on(async {
            let (file, _) = self.s.open_read(&path).await?;
            let reads = ranges
                .iter()
                .map(|r| read_exact_at(file.clone(), r.clone(), CHUNK));
            futures::stream::iter(reads)
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<std::result::Result<Vec<_>, _>>()
        })
        .map_err(|e| self.error(rel, e))
    }

    /// The last `n` bytes of a file and its size.
    pub(crate) fn read_tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64)> {
        let path = self.path(rel);
        self.block_on(async {
            let (file, size) = self.s.open_read(&path).await?;
            let got = read_exact_at(file, size.saturating_sub(n)..size, CHUNK).await?;
            Ok((got, size))
        })
        .map_err(|e| self.error(rel, e))
    }

    /// Writes a small file whole under a hidden name, 0600, flushed, then
    /// renamed over `rel`.
    pub(crate) fn put(&self, rel: &str, data: &Bytes) -> Result<()> {
        let path = self.path(rel);
        self.block_on(async {
            let tmp = self.s.write_hidden(&path, data).await?;
            self.s.replace(&tmp, &path).await
        })
        .map_err(|e| self.error(rel, e))
    }

    /// Writes `rel` only if nothing is there: `Ok(false)` then, and nothing
    /// is changed.
    pub(crate) fn put_new(&self, rel: &str, data: &Bytes) -> Result<bool> {
        let path = self.path(rel);
        self.block_on(async {
            let tmp = self.s.write_hidden(&path, data).await?;
            let made = self.s.publish_new(&tmp, &path).await;
            if made.as_ref().is_ok_and(|&m| m) {
                self.s.sync_dir(&path).await;
            }
            made
        })
        .map_err(|e| self.error(rel, e))
    }

    /// Renews a file that is still there, `Ok(false)` when it is gone (a
    /// removed lock is never brought back). On an SFTP server its times are
    /// set through its existing name (setstat), which fails on a removed
    /// file.
    pub(crate) fn refresh(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        let now = UnixTimeStamp::new(SystemTime::now()).map_err(|e| {
            Error::internal(self.show(rel), format!("the clock is out of range: {e}"))
        })?;
        let times = MetaDataBuilder::new().time(now, now).create();
        match self.block_on(self.s.sftp.fs().set_metadata(&path, times)) {
            Ok(()) => Ok(true),
            Err(e) if is_missing(&e) => Ok(false),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Removes a file; one that is not there is no error.
    pub(crate) fn delete(&self, rel: &str) -> Result<()> {
        match self.block_on(self.s.sftp.fs().remove_file(self.path(rel))) {
            Err(e) if !is_missing(&e) => Err(self.error(rel, e)),
            _ => Ok(()),
        }
    }

    /// Removes several files, a few requests at a time.
    pub(crate) fn delete_many(&self, rels: &[String]) -> Result<()> {
        let s = &self.s;
        let removals = rels.iter().map(|rel| {
            let path = self.path(rel);
            async move {
                match s.sftp.fs().remove_file(&path).await {
                    Err(e) if !is_missing(&e) => Err((rel, e)),
                    _ => Ok(()),
                }
            }
        });
        let done: Vec<_> = self.block_on(
            futures::stream::iter(removals)
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>(),
        );
        for r in done {
            r.map_err(|(rel, e)| self.error(rel, e))?;
        }
        Ok(())
    }

    /// Files under `sub`, relative to the root, with sizes and modified
    /// times; hidden work files are left out.
    pub(crate) fn list(&self, sub: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out = Vec::new();
        let mut dirs = vec![sub.trim_matches('/').to_string()];
        while let Some(dir) = dirs.pop() {
            let entries = match self.block_on(self.s.read_dir(&self.path(&dir))) {
                Ok(e) => e,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(self.error(&dir, e)),
            };
            for (name, meta) in entries {
                if name.starts_with('.') {
                    continue;
                }
                let rel = match dir.as_str() {
                    "" => name,
                    d => format!("{d}/{name}"),
                };
                match meta.file_type() {
                    Some(t) if t.is_dir() => dirs.push(rel),
                    Some(t) if t.is_file() => {
                        let modified = meta
                            .modified()
                            .map_or(SystemTime::UNIX_EPOCH, UnixTimeStamp::as_system_time);
                        out.push((rel, meta.len().unwrap_or(0), modified));
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// Free and total bytes of the server's filesystem, where it says
    /// (statvfs@openssh.com).
    pub(crate) fn free_space(&self) -> Option<(u64, u64)> {
        if !self.s.sftp.support_statvfs() {
            return None;
        }
        let v = self.block_on(self.s.sftp.fs().statvfs(&self.s.root)).ok()?;
        Some((v.bavail * v.frsize, v.blocks * v.frsize))
    }
}
