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

use std::collections::HashSet;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};
use openssh_sftp_client::file::{File as RemoteFile, OpenOptions};
use openssh_sftp_client::metadata::{MetaDataBuilder, Permissions};
use openssh_sftp_client::{Sftp, SftpOptions, UnixTimeStamp};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit, Result};

use crate::location::Location;
use crate::said::last_line;
use crate::settings::DestSpec;

/// Requests of one file in flight at once (each up to the server's maximum,
/// 255 KiB for OpenSSH): enough to keep a link busy across its round trip.
const IN_FLIGHT: usize = 32;
/// Bytes asked of one read or write request: OpenSSH's maximum (its
/// limits@openssh.com answer). The client splits them further for a server
/// with smaller limits (20 KiB where a server gives none).
const CHUNK: u32 = 255 << 10;
/// How long connecting (ssh's login and the SFTP hello) may take.
const CONNECT: Duration = Duration::from_secs(120);

/// An open SFTP session to a destination's folder.
#[derive(Clone)]
pub(crate) struct Remote {
    s: Arc<Session>,
}

struct Session {
    sftp: Sftp,
    /// ssh, killed when the session goes.
    _child: Mutex<tokio::process::Child>,
    stderr: Arc<Mutex<String>>,
    /// The folder on the server, absolute.
    root: PathBuf,
    rt: Arc<Runtime>,
    url: String,
    /// Folders known to be there (see `ensure_parent`).
    folders: Mutex<HashSet<PathBuf>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({})", self.s.url)
    }
}

/// The ssh command line that serves SFTP for a destination, and the
/// folder on the server.
fn command(spec: &DestSpec) -> Result<(Vec<String>, String)> {
    let ctx = format!("destination {}", spec.name);
    match &spec.location {
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => {
            spec.only_option("ssh_command")?;
            let mut argv = spec.command_words("ssh_command", "SNAP_SSH_COMMAND", "ssh")?;
            // Options given first win in ssh: a user's own command line may
            // loosen these on purpose; nothing else can.
            for o in [
                "BatchMode=yes",
                "StrictHostKeyChecking=yes",
                "ConnectTimeout=30",
                "ServerAliveInterval=15",
                "ServerAliveCountMax=4",
            ] {
                argv.extend(["-o".to_string(), o.to_string()]);
            }
            if let Some(p) = port {
                argv.extend(["-p".to_string(), p.to_string()]);
            }
            if let Some(u) = user {
                argv.extend(["-l".to_string(), u.clone()]);
            }
            argv.extend(["-s", "--", host, "sftp"].map(String::from));
            Ok((argv, path.clone()))
        }
        other => Err(Error::internal(
            ctx,
            format!("{} is not an SFTP destination", other.url()),
        )),
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

    /// The hidden file a large upload to `rel` is written into.
    pub(crate) fn part_name(&self, rel: &str) -> String {
        hidden(Path::new(rel), "snap-part")
            .to_string_lossy()
            .into_owned()
    }

    /// Opens (making it, 0600) the part file of an upload: its size on the
    /// server, or `None` when it was started afresh because the server
    /// cannot write into an existing file.
    pub(crate) fn open_part(&self, part: &str, keep: bool) -> Result<(PartFile, Option<u64>)> {
        let path = self.path(part);
        self.block_on(async {
            let mut opts = self.s.sftp.options();
            opts.read(true).write(true).create(true);
            let (file, kept) = match keep {
                true => match self.s.create_in_folder(&path, &opts).await {
                    Ok(mut f) => {
                        let len = f.metadata().await?.len().unwrap_or(0);
                        (f, Some(len))
                    }
                    Err(e) if is_missing(&e) => return Err(e),
                    // Not writable in place: start over.
                    Err(_) => (self.s.create_truncated(&path).await?, None),
                },
                false => (self.s.create_truncated(&path).await?, None),
            };
            let mut file = file;
            private(&mut file).await?;
            Ok((PartFile { file }, kept))
        })
        .map_err(|e| self.error(part, e))
    }

    /// Writes the parts that arrive on `parts` (index, bytes) into the part
    /// file, each at `index * part_size`, with requests in flight across part
    /// boundaries (waiting for each part to drain cost a fifth of the
    /// throughput on loopback). Once every write of a part is acknowledged,
    /// the part is flushed (fsync@openssh.com, where the server has it) while
    /// the next parts are written, and only then handed to `done`, which
    /// journals it.
    pub(crate) fn send_parts(
        &self,
        part: &PartFile,
        part_size: u64,
        parts: tokio::sync::mpsc::Receiver<(usize, Bytes)>,
        throttle: Option<&crate::throttle::Throttle>,
        rel: &str,
        mut done: impl FnMut(usize, u64) -> Result<()>,
    ) -> Result<()> {
        let chunk = CHUNK as usize;
        let pieces =
            futures::stream::unfold(
                parts,
                |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
            )
            .flat_map(move |(idx, data): (usize, Bytes)| {
                let count = data.len().div_ceil(chunk).max(1);
                futures::stream::iter((0..count).map(move |k| (idx, data.clone(), k, count)))
            });
        let writes = pieces
            .map(|(idx, data, k, count)| {
                let mut file = part.file.clone();
                let piece =
                    data.slice((k * chunk).min(data.len())..((k + 1) * chunk).min(data.len()));
                let at = idx as u64 * part_size + (k * chunk) as u64;
                async move {
                    if !piece.is_empty() {
                        if let Some(t) = throttle {
                            t.wait(piece.len() as u64).await;
                        }
                        file.seek(std::io::SeekFrom::Start(at))
                            .await
                            .map_err(SftpError::from)?;
                        file.write_all_zero_copy(&mut [piece]).await?;
                    }
                    Ok::<_, SftpError>((idx, data.len() as u64, k + 1 == count))
                }
            })
            .buffered(IN_FLIGHT);
        let fsync = self.s.sftp.support_fsync();
        let flush = |idx: usize, len: u64| {
            let mut file = part.file.clone();
            async move {
                if fsync {
                    file.sync_all().await?;
                }
                Ok::<_, SftpError>((idx, len))
            }
        };
        // Errors leave the runtime before they are explained: explaining a
        // failed write asks the server for its free space.
        let sent = self.block_on(async {
            let mut writes = std::pin::pin!(writes);
            let mut flushes = futures::stream::FuturesOrdered::new();
            loop {
                tokio::select! {
                    w = writes.next() => match w {
                        Some(w) => {
                            let (idx, len, last) = w.map_err(Failed::Sftp)?;
                            if last {
                                flushes.push_back(flush(idx, len));
                            }
                        }
                        None => break,
                    },
                    Some(f) = flushes.next(), if !flushes.is_empty() => {
                        let (idx, len) = f.map_err(Failed::Sftp)?;
                        done(idx, len).map_err(Failed::Other)?;
                    }
                }
            }
            while let Some(f) = flushes.next().await {
                let (idx, len) = f.map_err(Failed::Sftp)?;
                done(idx, len).map_err(Failed::Other)?;
            }
            Ok(())
        });
        sent.map_err(|f| match f {
            Failed::Sftp(e) => self.write_error(rel, e),
            Failed::Other(e) => e,
        })
    }

    /// Closes the part file, sets its length, and renames it over `rel`.
    pub(crate) fn finish(
        &self,
        part: PartFile,
        part_rel: &str,
        size: u64,
        rel: &str,
    ) -> Result<()> {
        let (from, to) = (self.path(part_rel), self.path(rel));
        self.block_on(async {
            let mut file = part.file;
            file.set_len(size).await?;
            if self.s.sftp.support_fsync() {
                file.sync_all().await?;
            }
            file.close().await?;
            self.s.replace(&from, &to).await
        })
        .map_err(|e| self.write_error(rel, e))
    }

    /// Removes an upload's part file (its content did not hash right).
    pub(crate) fn discard_part(&self, part: PartFile, part_rel: &str) {
        let _ = self.block_on(part.file.close());
        let _ = self.delete(part_rel);
    }

    /// A failed write, said plainly when the server's disk is full (SFTP
    /// reports ENOSPC as a bare "Failure").
    fn write_error(&self, rel: &str, e: SftpError) -> Error {
        let full = matches!(&e, SftpError::SftpError(SftpErrorKind::Failure, _))
            && self.free_space().is_some_and(|(free, _)| free < (1 << 20));
        match full {
            true => Error::new(
                Exit::CantCreate,
                self.show(rel),
                "no space left on the server's disk",
            )
            .with_hint("free space there (snap-prune --dest), then run the push again: it resumes"),
            false => self.error(rel, e),
        }
    }
}

/// Why sending parts stopped: the server's answer, or the journal's.
enum Failed {
    Sftp(SftpError),
    Other(Error),
}

/// The open part file of an upload.
pub(crate) struct PartFile {
    file: RemoteFile,
}

impl Session {
    fn error(&self, what: &str, e: SftpError) -> Error {
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
    fn lost(&self, what: &str, why: &str) -> Error {
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

    async fn open_read(&self, path: &Path) -> std::result::Result<(RemoteFile, u64), SftpError> {
        let mut file = self.sftp.open(path).await?;
        let size = file.metadata().await?.len().unwrap_or(0);
        Ok((file, size))
    }

    async fn read_all(&self, path: &Path) -> std::result::Result<Bytes, SftpError> {
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
    async fn read_dir(
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
    async fn ensure_parent(&self, path: &Path) -> std::result::Result<(), SftpError> {
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

    fn knows_folder(&self, dir: &Path) -> bool {
        self.folders_lock().contains(dir)
    }

    fn folders_lock(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.folders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens `path` with `opts`, making its folder first; when the folder
    /// was known but is gone, makes it again and tries once more.
    async fn create_in_folder(
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
    async fn create_truncated(&self, path: &Path) -> std::result::Result<RemoteFile, SftpError> {
        let mut opts = self.sftp.options();
        opts.write(true).create(true).truncate(true);
        self.create_in_folder(path, &opts).await
    }

    /// Writes `data` to a hidden sibling of `path`, 0600, flushed; returns its path.
    async fn write_hidden(
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
    async fn replace(&self, from: &Path, to: &Path) -> std::result::Result<(), SftpError> {
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
    async fn publish_new(&self, tmp: &Path, to: &Path) -> std::result::Result<bool, SftpError> {
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
    async fn sync_dir(&self, path: &Path) {
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
fn chunks(size: u64) -> impl Iterator<Item = Range<u64>> {
    let chunk = u64::from(CHUNK);
    (0..size.div_ceil(chunk)).map(move |i| i * chunk..((i + 1) * chunk).min(size))
}

/// Sets an open file's mode to 0600 (the server's umask chose it at creation).
async fn private(file: &mut RemoteFile) -> std::result::Result<(), SftpError> {
    file.set_permissions(Permissions::from(0o600)).await
}

/// Reads exactly `r` of a file, with one request per server maximum; a
/// short read asks again for the rest, and the end of the file before the
/// range ends is an error.
async fn read_exact_at(
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

/// Starts ssh and the SFTP session over its pipes; a failure says why in
/// one line (a host key: 77; a login refused: 77; a server that cannot be
/// reached: 75, absent).
async fn start(
    argv: &[String],
    stderr: &Arc<Mutex<String>>,
    ctx: &str,
) -> Result<(Sftp, tokio::process::Child)> {
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::new(
                Exit::Unavailable,
                ctx,
                format!("cannot run {}: {e}", argv[0]),
            )
            .with_hint("install openssh-client, or set ssh_command in the destination's options")
        })?;
    let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
    let collector = child.stderr.take().map(|mut err| {
        let stderr = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut kept = stderr.lock().unwrap_or_else(|p| p.into_inner());
                crate::said::keep(&mut kept, &buf[..n]);
            }
        })
    });
    let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
        return Err(Error::internal(ctx, "the child's pipes are missing"));
    };
    let options = SftpOptions::new().max_pending_requests(std::num::NonZeroU16::new(1024).unwrap());
    let opened = tokio::time::timeout(CONNECT, Sftp::new(stdin, stdout, options)).await;
    match opened {
        Ok(Ok(sftp)) => Ok((sftp, child)),
        failed => {
            // Let the child finish saying why before reading what it said.
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.start_kill();
            if let Some(c) = collector {
                let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
            }
            let said = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let why = match failed {
                Err(_) => format!("no SFTP answer in {} s", CONNECT.as_secs()),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!("handled above"),
            };
            Err(connect_error(ctx, &said, &why))
        }
    }
}

/// Why a connection failed, from what ssh said.
fn connect_error(ctx: &str, said: &str, why: &str) -> Error {
    let line = last_line(said).unwrap_or(why).to_string();
    let has = |s: &str| said.contains(s);
    if has("Host key verification failed")
        || has("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || has("host key is known")
    {
        let changed = has("HAS CHANGED");
        return Error::new(
            Exit::NoPerm,
            ctx,
            match changed {
                true => "the server's host key has changed since it was added to known_hosts; \
                         refusing to connect"
                    .to_string(),
                false => "the server's host key is not in known_hosts; refusing to connect \
                          (cron has no terminal to ask)"
                    .to_string(),
            },
        )
        .with_hint(match changed {
            true => "if the server was really reinstalled, check its new key's fingerprint and \
                     replace the old one (ssh-keygen -R HOST); otherwise someone may be in between"
                .to_string(),
            false => "check the key's fingerprint and add it once, by hand: ssh HOST \
                      (or ssh-keyscan HOST >> ~/.ssh/known_hosts)"
                .to_string(),
        });
    }
    if has("Permission denied") {
        return Error::new(Exit::NoPerm, ctx, format!("the login was refused ({line})"))
            .with_hint("set up a key for this user (ssh-copy-id), with the agent or an IdentityFile in ~/.ssh/config");
    }
    // A server that is off or away is absent, as an unplugged drive: a push
    // falls back to the next priority.
    Error::new(Exit::TempFail, ctx, format!("cannot reach it: {line}"))
        .with_hint("check that the server is up and reachable, then run again")
}

/// Finds the destination's folder on the server, as an absolute path.
/// The `ssh … mkdir -p …` that creates `path` on the server of `loc`, with
/// its user and port, quoted for the shell (a folder under the login's home
/// is given relative to it: ssh starts there, and a quoted `~` would not expand).
fn mkdir_command(loc: &Location, path: &str) -> String {
    let Location::Sftp {
        user, host, port, ..
    } = loc
    else {
        return format!("ssh HOST mkdir -p {}", crate::sh_quote(path));
    };
    let mut cmd = String::from("ssh");
    if let Some(p) = port {
        cmd.push_str(&format!(" -p {p}"));
    }
    let at = user.as_ref().map_or(String::new(), |u| format!("{u}@"));
    let login = crate::sh_quote(&format!("{at}{host}"));
    cmd.push_str(&format!(" {login} mkdir -p -- {}", crate::sh_quote(path)));
    cmd
}

async fn find_root(s: &Session, path: &str, ctx: &str, spec: &DestSpec) -> Result<PathBuf> {
    let mut fs = s.sftp.fs();
    let asked = match path {
        "" => ".",
        p => p,
    };
    let missing = || {
        let shown = match path.starts_with('/') {
            true => path.to_string(),
            false => format!("~/{path}"),
        };
        Error::new(
            Exit::TempFail,
            ctx,
            format!("folder {shown} is not there on the server"),
        )
        .with_hint(format!(
            "mount the server's disk; to start using a new folder, create it: {}",
            mkdir_command(&spec.location, path)
        ))
    };
    let root = match fs.canonicalize(asked).await {
        Ok(p) => p,
        Err(e) if is_missing(&e) => return Err(missing()),
        Err(e) => return Err(s.error(ctx, e)),
    };
    match fs.metadata(&root).await {
        Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => Ok(root),
        Ok(_) => Err(Error::new(
            Exit::CantCreate,
            ctx,
            format!("{} on the server is not a folder", root.display()),
        )),
        Err(e) if is_missing(&e) => Err(missing()),
        Err(e) => Err(s.error(ctx, e)),
    }
}

fn is_missing(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}

/// `.NAME.WHAT` beside `path`.
pub(crate) fn hidden(path: &Path, what: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.{what}"))
}

/// A name no other writer uses at once: this process and a counter.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let host = snap_shared::hostname();
    format!(
        "{host}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, options: &[(&str, &str)]) -> DestSpec {
        let mut s = DestSpec::from_url(url).unwrap();
        s.options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    /// ssh is asked for the sftp subsystem with host keys checked and no
    /// prompts; the user's command comes first, so its own -o options win.
    #[test]
    fn ssh_command_line() {
        let (argv, path) = command(&spec(
            "sftp://me@nas:2222/srv/b",
            &[("ssh_command", "ssh -F '/etc/my config'")],
        ))
        .unwrap();
        assert_eq!(path, "/srv/b");
        assert_eq!(&argv[..3], ["ssh", "-F", "/etc/my config"]);
        let joined = argv.join(" ");
        assert!(joined.contains("-o BatchMode=yes -o StrictHostKeyChecking=yes"));
        assert!(joined.ends_with("-p 2222 -l me -s -- nas sftp"), "{joined}");
    }

    /// An option these destinations do not take is a config error naming it.
    #[test]
    fn unknown_option_refused() {
        let e = command(&spec("sftp://nas/b", &[("region", "x")])).unwrap_err();
        assert_eq!(e.exit, Exit::Config);
        assert!(e.to_string().contains("option region"), "{e}");
    }

    /// What ssh says about host keys and logins becomes exit 77 with a hint.
    #[test]
    fn connect_errors_classified() {
        let e = connect_error(
            "d",
            "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed.\n",
            "eof",
        );
        assert_eq!(e.exit, Exit::NoPerm);
        assert!(e.to_string().contains("not in known_hosts"), "{e}");
        let e = connect_error(
            "d",
            "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @\nHost key verification failed.",
            "eof",
        );
        assert!(e.to_string().contains("has changed"), "{e}");
        let e = connect_error("d", "me@nas: Permission denied (publickey).", "eof");
        assert_eq!(e.exit, Exit::NoPerm);
        let e = connect_error(
            "d",
            "ssh: connect to host nas port 22: Connection refused",
            "eof",
        );
        assert_eq!(e.exit, Exit::TempFail);
        assert!(e.to_string().contains("Connection refused"), "{e}");
    }

    /// The "create it" hint keeps the port and the user, and quotes a folder
    /// with a space or a quote; a home folder is given relative to it.
    #[test]
    fn the_mkdir_hint_is_a_command_that_works() {
        let loc = |url: &str| Location::parse(url).unwrap();
        let Location::Sftp { path, .. } = loc("sftp://me@nas:2222/srv/with%20space") else {
            panic!("an sftp location")
        };
        assert_eq!(path, "/srv/with space");
        assert_eq!(
            mkdir_command(&loc("sftp://me@nas:2222/srv/with%20space"), &path),
            "ssh -p 2222 me@nas mkdir -p -- '/srv/with space'"
        );
        assert_eq!(
            mkdir_command(&loc("sftp://nas/~/it's"), "it's"),
            "ssh nas mkdir -p -- 'it'\\''s'"
        );
        assert_eq!(
            loc("sftp://nas/srv/with%20space").url(),
            "sftp://nas/srv/with%20space"
        );
        assert!(Location::parse("sftp://nas/srv/%2e%2e/etc").is_err());
    }
}
