//! An opened destination: the same few operations on a folder and on a bucket.
//!
//! Buckets (S3 and S3-compatible, GCS, Azure) go through `object_store`.
//! Folders (a path, or a drive found by UUID or label) are written with
//! plain file calls instead of object_store's `LocalFileSystem`, for three
//! reasons that matter on an external drive: every file is fsynced before
//! its rename and the folder after it (a drive is unplugged any time),
//! files are created 0600 as docs/design.md asks, and a large file resumes from
//! its synced parts after a kill (LocalFileSystem has no resumable upload).
//! SFTP servers and rclone remotes are the `sftp` module's. Everything
//! above this module sees one interface.

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, GetOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit, Result};

use crate::location::{Location, Service};
use crate::locks::{Fence, Host, SystemHost};
use crate::settings::DestSpec;

/// Small objects fetched at once from a bucket (records, when planning a prune).
const CONCURRENT_GETS: usize = 16;

/// The metadata key holding an object's sha256 (S3 `x-amz-meta-sha256`, GCS and Azure likewise).
pub const SHA256_META: &str = "sha256";

/// What a destination holds under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// The sha256 kept as object metadata, where the service keeps metadata.
    pub sha256: Option<String>,
}

/// How to reach a bucket: retries of transient errors (with exponential backoff).
#[derive(Debug, Clone)]
pub struct Reach {
    pub retries: usize,
    pub retry_timeout: Duration,
}

impl Default for Reach {
    fn default() -> Reach {
        Reach {
            retries: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) parts: Arc<dyn MultipartStore>,
    pub(crate) prefix: String,
    pub(crate) rt: Arc<Runtime>,
    /// Requests of one batch (gets, puts) in flight at once.
    pub(crate) concurrency: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Folder(PathBuf),
    Bucket(Bucket),
    /// An SFTP server.
    Remote(crate::sftp::Remote),
    /// An rclone remote, through `rclone rcd`.
    Rclone(Arc<crate::rclone::Rclone>),
}

/// An opened destination.
#[derive(Debug, Clone)]
pub struct Dest {
    /// The URL records carry (never credentials).
    pub url: String,
    /// The config's name, or the URL.
    pub name: String,
    pub(crate) backend: Backend,
    /// The machine its locks are taken for (this one, or a test's).
    pub(crate) host: Arc<dyn Host>,
    /// The lock this process holds here, checked before every removal and
    /// every create-only publication.
    pub(crate) fence: Option<Fence>,
}

/// The bytes of `ranges` of a file, by pread, in the order asked.
pub fn read_file_ranges(path: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ranges
        .iter()
        .map(|r| {
            let mut buf = vec![0; (r.end - r.start) as usize];
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, r.start)
                .map(|()| Bytes::from(buf))
                .map_err(|e| Error::io(path, e))
        })
        .collect()
}

/// The last `n` bytes of a file (all of a smaller one) and its size.
pub fn read_file_tail(path: &Path, n: u64) -> Result<(Bytes, u64)> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let start = size.saturating_sub(n);
    let bytes = read_file_ranges(path, std::slice::from_ref(&(start..size)))?.remove(0);
    Ok((bytes, size))
}

/// The tokio runtime every bucket operation of a process runs on.
pub fn runtime() -> Result<Arc<Runtime>> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| Error::internal("tokio runtime", e))
}

impl Dest {
    /// Opens a destination. A folder must exist (a missing one usually means
    /// a drive that is not mounted: exit 75); on a drive found by UUID or
    /// label the folder is made when `create`.
    pub fn open(spec: &DestSpec, rt: &Arc<Runtime>, reach: &Reach, create: bool) -> Result<Dest> {
        let backend = match &spec.location {
            Location::Folder(dir) => Backend::Folder(existing_folder(spec, dir)?),
            Location::Drive { key, sub } => {
                let mount = crate::mount::find_mount(key).map_err(|why| {
                    Error::new(Exit::TempFail, format!("destination {}", spec.name), why)
                        .with_hint("plug the drive in and mount it, then run again")
                })?;
                let dir = mount.join(sub);
                if create && !dir.exists() {
                    create_folder(&dir)?;
                }
                Backend::Folder(existing_folder(spec, &dir)?)
            }
            Location::Bucket {
                service,
                bucket,
                prefix,
            } => Backend::Bucket(open_bucket(spec, *service, bucket, prefix, rt, reach)?),
            Location::Sftp { .. } => Backend::Remote(crate::sftp::Remote::connect(spec, rt)?),
            Location::Rclone(target) => {
                Backend::Rclone(Arc::new(crate::rclone::Rclone::connect(spec, target, rt)?))
            }
            Location::Memory(name) => {
                return crate::memory::open(name, rt).ok_or_else(|| {
                    Error::usage(
                        format!("destination {}", spec.name),
                        "memory:// destinations are only for snap's own fault harness",
                    )
                });
            }
        };
        Ok(Dest {
            url: spec.location.url(),
            name: spec.name.clone(),
            backend,
            host: Arc::new(SystemHost),
            fence: None,
        })
    }

    /// The same destination, checking `fence` (the lock held here) before
    /// every removal and create-only publication.
    pub fn fenced(mut self, fence: Fence) -> Dest {
        self.fence = Some(fence);
        self
    }

    /// The time now on this machine's clock (within the bound a lock checks
    /// of the destination's clock), for ages of what the destination holds.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.host.now()
    }

    /// Fails unless the lock this process holds here (if any) is still its own.
    pub fn check_fence(&self) -> Result<()> {
        self.fence.as_ref().map_or(Ok(()), Fence::check)
    }

    /// The fence asked of the destination itself ([`Fence::confirm`]).
    pub fn confirm_fence(&self) -> Result<()> {
        self.fence.as_ref().map_or(Ok(()), Fence::confirm)
    }

    /// A destination over any object store (a test's in-memory one, the
    /// fault harness's recording one), on `host`'s clocks and identity, with
    /// at most `concurrency` requests in flight (1 makes its operations a
    /// sequence the harness can order).
    pub fn over_store(
        name: &str,
        store: Arc<dyn ObjectStore>,
        parts: Arc<dyn MultipartStore>,
        rt: &Arc<Runtime>,
        host: Arc<dyn Host>,
        concurrency: usize,
    ) -> Dest {
        Dest {
            url: format!("memory://{name}"),
            name: name.to_string(),
            backend: Backend::Bucket(Bucket {
                store,
                parts,
                prefix: String::new(),
                rt: rt.clone(),
                concurrency: concurrency.max(1),
            }),
            host,
            fence: None,
        }
    }

    /// The folder of a folder destination.
    pub fn folder(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Folder(p) => Some(p),
            Backend::Bucket(_) | Backend::Remote(_) | Backend::Rclone(_) => None,
        }
    }

    /// How many requests it takes at a time: a bucket's concurrency, else 1
    /// (a folder, SFTP and rclone are written one file after the other).
    pub fn parallel(&self) -> usize {
        match &self.backend {
            Backend::Bucket(b) => b.concurrency,
            _ => 1,
        }
    }

    /// Whether this is a bucket (S3, GCS, Azure): a service whose
    /// conditional writes snap has to trust.
    pub fn is_bucket(&self) -> bool {
        matches!(self.backend, Backend::Bucket(_))
    }

    /// How messages name a key: `URL/key`.
    pub fn show(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url.trim_end_matches('/'))
    }

    /// Size (and recorded sha256) of what is at `rel`, if anything.
    pub fn head(&self, rel: &str) -> Result<Option<Meta>> {
        match &self.backend {
            Backend::Folder(root) => match std::fs::metadata(root.join(rel)) {
                Ok(m) if m.is_file() => Ok(Some(Meta {
                    size: m.len(),
                    sha256: None,
                })),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io(&root.join(rel), e)),
            },
            Backend::Bucket(b) => {
                let opts = GetOptions {
                    head: true,
                    ..Default::default()
                };
                match b.rt.block_on(b.store.get_opts(&b.key(rel), opts)) {
                    Ok(r) => Ok(Some(Meta {
                        size: r.meta.size,
                        sha256: r
                            .attributes
                            .get(&Attribute::Metadata(SHA256_META.into()))
                            .map(|v| v.to_string()),
                    })),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.error(rel, e)),
                }
            }
            Backend::Remote(r) => Ok(r.head(rel)?.map(|size| Meta { size, sha256: None })),
            Backend::Rclone(r) => Ok(r.head(rel)?.map(|size| Meta { size, sha256: None })),
        }
    }

    /// The whole of a small object.
    pub fn get_bytes(&self, rel: &str) -> Result<Bytes> {
        match &self.backend {
            Backend::Folder(root) => std::fs::read(root.join(rel))
                .map(Bytes::from)
                .map_err(|e| Error::io(&root.join(rel), e)),
            Backend::Bucket(b) => {
                b.rt.block_on(async { b.store.get(&b.key(rel)).await?.bytes().await })
                    .map_err(|e| self.error(rel, e))
            }
            Backend::Remote(r) => r.get(rel),
            Backend::Rclone(r) => r.get(rel),
        }
    }

    /// A reader of an object, streamed (a bucket's body arrives while it is read).
    pub fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        match &self.backend {
            Backend::Folder(root) => {
                let path = root.join(rel);
                Ok(Box::new(
                    File::open(&path).map_err(|e| Error::io(&path, e))?,
                ))
            }
            Backend::Bucket(b) => {
                let key = b.key(rel);
                let result =
                    b.rt.block_on(b.store.get(&key))
                        .map_err(|e| self.error(rel, e))?;
                Ok(Box::new(crate::stream::StreamReader::new(
                    &b.rt,
                    result.into_stream(),
                )))
            }
            Backend::Remote(r) => r.reader(rel),
            Backend::Rclone(r) => r.reader(rel),
        }
    }

    /// The bytes of `ranges` of an object, in the order asked: pread on a
    /// folder, ranged GETs on a bucket (concurrently, each retried like any
    /// request). A range past the end is an error, not a short answer.
    pub fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match &self.backend {
            Backend::Folder(root) => read_file_ranges(&root.join(rel), ranges),
            Backend::Bucket(b) => {
                let key = b.key(rel);
                let gets = ranges.iter().map(|r| {
                    let (store, key, r) = (b.store.clone(), key.clone(), r.clone());
                    async move { store.get_range(&key, r).await }
                });
                let results: Vec<_> = b.rt.block_on(
                    futures::stream::iter(gets)
                        .buffered(b.concurrency)
                        .collect(),
                );
                results
                    .into_iter()
                    .zip(ranges)
                    .map(|(got, r)| {
                        let got = got.map_err(|e| self.error(rel, e))?;
                        match got.len() as u64 == r.end - r.start {
                            true => Ok(got),
                            false => Err(Error::new(
                                Exit::Data,
                                self.show(rel),
                                format!(
                                    "asked for bytes {}..{}, got {}",
                                    r.start,
                                    r.end,
                                    got.len()
                                ),
                            )),
                        }
                    })
                    .collect()
            }
            Backend::Remote(r) => r.read_ranges(rel, ranges),
            Backend::Rclone(r) => r.read_ranges(rel, ranges),
        }
    }

    /// The last `n` bytes of an object (all of a smaller one) and its size,
    /// in one request.
    pub fn read_tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64)> {
        match &self.backend {
            Backend::Folder(root) => read_file_tail(&root.join(rel), n),
            Backend::Bucket(b) => {
                let opts = GetOptions {
                    range: Some(object_store::GetRange::Suffix(n)),
                    ..Default::default()
                };
                let key = b.key(rel);
                let got = b.rt.block_on(async {
                    let got = b.store.get_opts(&key, opts).await?;
                    let size = got.meta.size;
                    Ok((got.bytes().await?, size))
                });
                match got {
                    // Azure takes no suffix ranges: ask the size, then the range.
                    Err(object_store::Error::NotSupported { .. }) => {
                        let size = self
                            .head(rel)?
                            .ok_or_else(|| Error::new(Exit::NoInput, self.show(rel), "not found"))?
                            .size;
                        let from = size.saturating_sub(n);
                        Ok((
                            self.read_ranges(rel, std::slice::from_ref(&(from..size)))?
                                .remove(0),
                            size,
                        ))
                    }
                    other => other.map_err(|e| self.error(rel, e)),
                }
            }
            Backend::Remote(r) => r.read_tail(rel, n),
            Backend::Rclone(r) => r.read_tail(rel, n),
        }
    }

    /// Writes a small object whole, published atomically (folders: temp,
    /// fsync, rename, fsync the folder; buckets: one PUT).
    pub fn put_small(&self, rel: &str, data: Bytes, sha256: &str) -> Result<()> {
        match &self.backend {
            Backend::Folder(root) => put_file(&root.join(rel), &data),
            Backend::Bucket(b) => b
                .put(rel, data, sha256, PutMode::Overwrite)
                .map(|_| ())
                .map_err(|e| self.error(rel, e)),
            Backend::Remote(r) => r.put(rel, &data),
            Backend::Rclone(r) => r.put(rel, &data),
        }
    }

    /// Removes an object; one that is not there is no error.
    pub fn delete(&self, rel: &str) -> Result<()> {
        self.check_fence()?;
        match &self.backend {
            Backend::Folder(root) => match std::fs::remove_file(root.join(rel)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(&root.join(rel), e))
                }
                _ => Ok(()),
            },
            Backend::Bucket(b) => match b.rt.block_on(b.store.delete(&b.key(rel))) {
                Err(e) if !matches!(e, object_store::Error::NotFound { .. }) => {
                    Err(self.error(rel, e))
                }
                _ => Ok(()),
            },
            Backend::Remote(r) => r.delete(rel),
            Backend::Rclone(r) => r.delete(rel),
        }
    }

    /// Removes many objects: a bucket in bulk requests (S3 DeleteObjects,
    /// Azure batches, GCS concurrent deletes), a folder file by file, then
    /// each folder touched is fsynced so the removals are on the drive before
    /// the caller removes anything that must go after them. Missing ones are fine.
    pub fn delete_many(&self, rels: &[String]) -> Result<()> {
        self.check_fence()?;
        match &self.backend {
            Backend::Folder(root) => {
                let mut dirs = std::collections::BTreeSet::new();
                for rel in rels {
                    self.delete(rel)?;
                    dirs.insert(snap_shared::fsutil::parent_of(&root.join(rel)).to_path_buf());
                }
                for dir in dirs {
                    snap_shared::fsutil::fsync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
                }
                Ok(())
            }
            Backend::Bucket(b) => {
                let keys: Vec<object_store::Result<ObjPath>> =
                    rels.iter().map(|r| Ok(b.key(r))).collect();
                let results: Vec<_> = b.rt.block_on(
                    b.store
                        .delete_stream(futures::stream::iter(keys).boxed())
                        .collect(),
                );
                for (i, r) in results.into_iter().enumerate() {
                    match r {
                        Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            let rel = rels.get(i).map_or("", String::as_str);
                            return Err(self.error(rel, e));
                        }
                    }
                }
                Ok(())
            }
            Backend::Remote(r) => r.delete_many(rels),
            Backend::Rclone(r) => r.delete_many(rels),
        }
    }

    /// The whole of several small objects, fetched concurrently from a bucket;
    /// results in the order asked.
    pub fn get_many(&self, rels: &[String]) -> Vec<Result<Bytes>> {
        match &self.backend {
            Backend::Folder(_) => rels.iter().map(|r| self.get_bytes(r)).collect(),
            Backend::Bucket(b) => {
                let fetches = rels.iter().map(|rel| {
                    let store = b.store.clone();
                    let key = b.key(rel);
                    async move { store.get(&key).await?.bytes().await }
                });
                let results: Vec<_> = b.rt.block_on(
                    futures::stream::iter(fetches)
                        .buffered(b.concurrency)
                        .collect(),
                );
                results
                    .into_iter()
                    .zip(rels)
                    .map(|(r, rel)| r.map_err(|e| self.error(rel, e)))
                    .collect()
            }
            Backend::Remote(r) => r.get_many(rels),
            Backend::Rclone(r) => r.get_many(rels),
        }
    }

    /// Puts several small objects whole (a bucket: concurrently; a folder: one
    /// by one, each published atomically). The caller bounds the batch, which
    /// is held in memory.
    pub fn put_many(&self, items: Vec<(String, Bytes, String)>) -> Result<()> {
        match &self.backend {
            Backend::Folder(_) => items
                .into_iter()
                .try_for_each(|(rel, data, sha)| self.put_small(&rel, data, &sha)),
            Backend::Bucket(b) => {
                let puts = items.into_iter().map(|(rel, data, sha)| {
                    let store = b.store.clone();
                    let key = b.key(&rel);
                    let opts = PutOptions {
                        attributes: sha_attributes(&sha),
                        ..Default::default()
                    };
                    async move {
                        let r = store.put_opts(&key, PutPayload::from(data), opts).await;
                        (rel, r)
                    }
                });
                let results: Vec<_> = b.rt.block_on(
                    futures::stream::iter(puts)
                        .buffer_unordered(b.concurrency)
                        .collect(),
                );
                for (rel, r) in results {
                    r.map_err(|e| self.error(&rel, e))?;
                }
                Ok(())
            }
            Backend::Remote(_) | Backend::Rclone(_) => items
                .into_iter()
                .try_for_each(|(rel, data, sha)| self.put_small(&rel, data, &sha)),
        }
    }

    /// The lock a push holds on its resume journals for this destination: a
    /// file named by the URL's hash in `state_dir`, so two pushes on this
    /// machine never share a journal. Busy is exit 75 naming the holder.
    /// (What keeps machines apart is the lock at the destination, [`Dest::lock`].)
    pub fn local_lock(&self, state_dir: &Path, tool: &str) -> Result<snap_shared::lock::StoreLock> {
        create_folder(state_dir)?;
        let id = snap_shared::hash::Sha256Digest::of(self.url.as_bytes());
        let path = state_dir.join(format!("{id}.lock"));
        snap_shared::lock::StoreLock::acquire(&path, tool).map_err(|e| {
            Error::new(
                e.exit,
                format!("destination {}", self.name),
                format!("busy: {}", e.cause),
            )
            .with_hint("another snap tool is changing it; try again when it is done")
        })
    }

    /// Every object under `sub` (`""` for all), as keys relative to the root with sizes.
    pub fn list(&self, sub: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_dated(sub)?
            .into_iter()
            .map(|(key, size, _)| (key, size))
            .collect())
    }

    /// [`Dest::list`] with each object's last-modified time.
    pub fn list_dated(&self, sub: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Folder(root) => walk(root, &root.join(sub), &mut out)?,
            Backend::Bucket(b) => {
                let start = if sub.is_empty() {
                    b.prefix.clone()
                } else {
                    b.rel_key(sub)
                };
                let prefix = (!start.is_empty()).then(|| ObjPath::from(start));
                let metas: Vec<_> = b.rt.block_on(b.store.list(prefix.as_ref()).collect());
                for meta in metas {
                    let meta = meta.map_err(|e| self.error(sub, e))?;
                    let key = meta.location.to_string();
                    let rel = match b.prefix.as_str() {
                        "" => key,
                        p => key
                            .strip_prefix(p)
                            .unwrap_or(&key)
                            .trim_start_matches('/')
                            .to_string(),
                    };
                    out.push((rel, meta.size, SystemTime::from(meta.last_modified)));
                }
            }
            Backend::Remote(r) => out = r.list(sub)?,
            Backend::Rclone(r) => out = r.list(sub)?,
        }
        out.sort();
        Ok(out)
    }

    /// Free bytes where a folder destination lives, or on an SFTP server
    /// that says (`None` for buckets and rclone remotes).
    pub fn free_space(&self) -> Option<(u64, u64)> {
        match &self.backend {
            Backend::Folder(f) => snap_shared::fsutil::free_space(f).ok(),
            Backend::Bucket(_) => None,
            Backend::Remote(r) => r.free_space(),
            Backend::Rclone(_) => None,
        }
    }

    /// An object_store error as one line with a sysexits code.
    pub(crate) fn error(&self, rel: &str, e: object_store::Error) -> Error {
        error_for(&self.show(rel), e)
    }
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.prefix)
    }
}

impl Bucket {
    pub(crate) fn rel_key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    pub(crate) fn key(&self, rel: &str) -> ObjPath {
        ObjPath::from(self.rel_key(rel))
    }

    /// One PUT of a whole object with its sha256 as metadata, in `mode`
    /// (plain, create-only, or only over the version given).
    pub(crate) fn put(
        &self,
        rel: &str,
        data: Bytes,
        sha256: &str,
        mode: PutMode,
    ) -> object_store::Result<object_store::PutResult> {
        let opts = PutOptions {
            mode,
            attributes: sha_attributes(sha256),
            ..Default::default()
        };
        self.rt.block_on(
            self.store
                .put_opts(&self.key(rel), PutPayload::from(data), opts),
        )
    }
}

pub(crate) fn sha_attributes(sha256: &str) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(
        Attribute::Metadata(SHA256_META.into()),
        sha256.to_string().into(),
    );
    attributes
}

/// One line for an object_store error: its first line, with an exit code by kind.
pub(crate) fn error_for(context: &str, e: object_store::Error) -> Error {
    use object_store::Error as E;
    let exit = match &e {
        E::NotFound { .. } => Exit::NoInput,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => Exit::NoPerm,
        E::AlreadyExists { .. } | E::Precondition { .. } => Exit::CantCreate,
        E::NotSupported { .. } | E::NotImplemented { .. } => Exit::Software,
        _ => Exit::Unavailable,
    };
    Error::new(exit, context.to_string(), first_line(&e))
}

fn existing_folder(spec: &DestSpec, dir: &Path) -> Result<PathBuf> {
    if dir.is_dir() {
        return Ok(dir.to_path_buf());
    }
    // Never make a plain path: on an unmounted drive it would fill the root disk.
    Err(Error::new(
        Exit::TempFail,
        format!("destination {}", spec.name),
        format!("folder {} is not there", dir.display()),
    )
    .with_hint(format!(
        "mount the drive; to start using a new folder, create it: mkdir -p -- {}",
        crate::sh_quote(&dir.to_string_lossy())
    )))
}

/// Where resume journals and destination locks live: `$XDG_STATE_HOME/snap/push`,
/// else `~/.local/state/snap/push` (the name predates snap-prune sharing it).
pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("snap/push"),
        _ => snap_shared::config::expand_tilde("~/.local/state/snap/push"),
    }
}

/// Makes a folder (and its parents) 0700; failing is exit 73.
pub fn create_folder(dir: &Path) -> Result<()> {
    snap_shared::fsutil::create_private_dir(dir)
        .map_err(|e| Error::io(dir, e).with_exit(Exit::CantCreate))
}

/// Writes `data` to `path` atomically, 0600, fsynced, replacing what was there.
fn put_file(path: &Path, data: &[u8]) -> Result<()> {
    let dir = snap_shared::fsutil::parent_of(path);
    if !dir.is_dir() {
        create_folder(dir)?;
    }
    snap_shared::fsutil::write_atomic(path, 0o600, true, |f| f.write_all(data))
        .map_err(|e| Error::io(path, e))
}

/// Files under `dir`, as paths relative to `root`; hidden work files are left out.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64, SystemTime)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((rel.to_string_lossy().into_owned(), meta.len(), modified));
        }
    }
    Ok(())
}

/// Applies `key = value` settings to a builder; a key the service does not know is an error.
fn configure<B, K: std::str::FromStr>(
    mut builder: B,
    pairs: &[(String, String)],
    unknown: impl Fn(&str) -> Error,
    set: impl Fn(B, K, &str) -> B,
) -> Result<B> {
    for (k, v) in pairs {
        let key: K = k.parse().map_err(|_| unknown(k))?;
        builder = set(builder, key, v);
    }
    Ok(builder)
}

fn retry(reach: &Reach) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: reach.retries,
        retry_timeout: reach.retry_timeout,
    }
}

fn open_bucket(
    spec: &DestSpec,
    service: Service,
    bucket: &str,
    prefix: &str,
    rt: &Arc<Runtime>,
    reach: &Reach,
) -> Result<Bucket> {
    let ctx = |what: String| format!("destination {}: {what}", spec.name);
    let unknown = |k: &str| {
        Error::config(ctx(format!("option {k}")), "unknown for this service")
            .with_hint("see docs/destinations.md for the settings of each service")
    };
    let built = |e: object_store::Error| Error::config(ctx("settings".into()), first_line(&e));
    // Timeouts first, so that the config's options can change them; the
    // environment (AWS_*, GOOGLE_*, AZURE_*) is read by from_env.
    let mut pairs: Vec<(String, String)> = vec![
        ("connect_timeout".into(), "30s".into()),
        ("timeout".into(), "600s".into()),
    ];
    pairs.extend(spec.options.iter().cloned());
    let (store, parts): (Arc<dyn ObjectStore>, Arc<dyn MultipartStore>) = match service {
        Service::S3 => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            let b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let b = configure(b, &pairs, unknown, |b, k: AmazonS3ConfigKey, v| {
                b.with_config(k, v)
            })?;
            let s = Arc::new(b.with_retry(retry(reach)).build().map_err(built)?);
            (s.clone(), s)
        }
        Service::Gcs => {
            use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
            let b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            let b = configure(b, &pairs, unknown, |b, k: GoogleConfigKey, v| {
                b.with_config(k, v)
            })?;
            let s = Arc::new(b.with_retry(retry(reach)).build().map_err(built)?);
            (s.clone(), s)
        }
        Service::Azure => {
            use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
            let b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
            let b = configure(b, &pairs, unknown, |b, k: AzureConfigKey, v| {
                b.with_config(k, v)
            })?;
            let s = Arc::new(b.with_retry(retry(reach)).build().map_err(built)?);
            (s.clone(), s)
        }
    };
    Ok(Bucket {
        store,
        parts,
        prefix: prefix.to_string(),
        rt: rt.clone(),
        concurrency: CONCURRENT_GETS,
    })
}

/// An object_store error's first line (some go on with the HTTP body).
pub(crate) fn first_line(e: &object_store::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Where `--from` points for reading: a folder on this machine (a store, a
/// drive, a destination folder) or a bucket.
pub enum ReadRoot {
    Folder(PathBuf),
    Bucket(Dest),
}

/// Opens `--from` for reading: a configured destination's name, a URL
/// (s3://, gs://, az://, sftp://, uuid://, label://, rclone:), or else a
/// folder path.
pub fn open_for_reading(
    from: &str,
    config: Option<&snap_shared::config::LoadedConfig>,
) -> Result<ReadRoot> {
    let configured = crate::settings::from_config(config)?;
    let spec = match configured.iter().find(|s| s.name == from) {
        Some(s) => s.clone(),
        None if from.contains("://") || from.starts_with("rclone:") => {
            crate::settings::resolve_arg(from, &configured)?
        }
        None => return Ok(ReadRoot::Folder(PathBuf::from(from))),
    };
    if let Location::Folder(p) = &spec.location {
        return Ok(ReadRoot::Folder(p.clone()));
    }
    let rt = runtime()?;
    let dest = Dest::open(&spec, &rt, &Reach::default(), false)?;
    Ok(match dest.folder() {
        Some(f) => ReadRoot::Folder(f.to_path_buf()),
        None => ReadRoot::Bucket(dest),
    })
}
