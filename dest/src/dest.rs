//! An opened destination: the same few operations on a folder, a bucket,
//! an SFTP server and an rclone remote. Each kind is a backend of its own
//! (`backend/`); `Dest` opens one, holds the lock's fence, and delegates
//! each operation in one line per kind. Everything above this module sees
//! one interface.

use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::multipart::MultipartStore;
use tokio::runtime::Runtime;

use snap_shared::error::{Error, Exit, Result};

use crate::backend::Backend;
use crate::backend::bucket::{Bucket, Reach, open_bucket};
use crate::backend::folder::{Folder, create_folder};
use crate::backend::meta::Meta;
use crate::guard::Guard;
use crate::host::{Host, SystemHost};
use crate::location::Location;
use crate::settings::DestSpec;

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
    pub(crate) fence: Option<Arc<dyn Guard>>,
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
            Location::Folder(dir) => Backend::Folder(Folder::existing(spec, dir)?),
            Location::Drive { key, sub } => {
                let mount = crate::mount::find_mount(key).map_err(|why| {
                    Error::new(Exit::TempFail, format!("destination {}", spec.name), why)
                        .with_hint("plug the drive in and mount it, then run again")
                })?;
                let dir = mount.join(sub);
                if create && !dir.exists() {
                    create_folder(&dir)?;
                }
                Backend::Folder(Folder::existing(spec, &dir)?)
            }
            Location::Bucket {
                service,
                bucket,
                prefix,
            } => Backend::Bucket(open_bucket(spec, *service, bucket, prefix, rt, reach)?),
            Location::Sftp { .. } => {
                Backend::Remote(crate::backend::sftp::Remote::connect(spec, rt)?)
            }
            Location::Rclone(target) => Backend::Rclone(Arc::new(
                crate::backend::rclone::Rclone::connect(spec, target, rt)?,
            )),
            Location::Memory(name) => {
                let (bucket, its_host) =
                    crate::backend::memory::open(name, rt).ok_or_else(|| {
                        Error::usage(
                            format!("destination {}", spec.name),
                            "memory:// destinations are only for snap's own fault harness",
                        )
                    })?;
                // Named as the harness registered it, as its machines expect.
                return Ok(Dest {
                    url: format!("memory://{name}"),
                    name: name.to_string(),
                    backend: Backend::Bucket(bucket),
                    host: its_host,
                    fence: None,
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
    pub fn fenced(mut self, fence: impl Guard + 'static) -> Dest {
        self.fence = Some(Arc::new(fence));
        self
    }

    /// The time now on this machine's clock (within the bound a lock checks
    /// of the destination's clock), for ages of what the destination holds.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.host.now()
    }

    /// Fails unless the lock this process holds here (if any) is still its own.
    pub fn check_fence(&self) -> Result<()> {
        self.fence.as_ref().map_or(Ok(()), |f| f.check())
    }

    /// The fence asked of the destination itself ([`Guard::confirm`]).
    pub fn confirm_fence(&self) -> Result<()> {
        self.fence.as_ref().map_or(Ok(()), |f| f.confirm())
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
        let url = format!("memory://{name}");
        Dest {
            url: url.clone(),
            name: name.to_string(),
            backend: Backend::Bucket(Bucket::over(url, store, parts, rt, concurrency)),
            host,
            fence: None,
        }
    }

    /// The folder of a folder destination.
    pub fn folder(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Folder(f) => Some(&f.root),
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
            Backend::Folder(f) => f.head(rel),
            Backend::Bucket(b) => b.head(rel),
            Backend::Remote(r) => Ok(r.head(rel)?.map(Meta::sized)),
            Backend::Rclone(r) => Ok(r.head(rel)?.map(Meta::sized)),
        }
    }

    /// The whole of a small object.
    pub fn get_bytes(&self, rel: &str) -> Result<Bytes> {
        match &self.backend {
            Backend::Folder(f) => f.get(rel),
            Backend::Bucket(b) => b.get(rel),
            Backend::Remote(r) => r.get(rel),
            Backend::Rclone(r) => r.get(rel),
        }
    }

    /// A reader of an object, streamed (a bucket's body arrives while it is read).
    pub fn reader(&self, rel: &str) -> Result<Box<dyn Read + Send>> {
        match &self.backend {
            Backend::Folder(f) => f.reader(rel),
            Backend::Bucket(b) => b.reader(rel),
            Backend::Remote(r) => r.reader(rel),
            Backend::Rclone(r) => r.reader(rel),
        }
    }

    /// The bytes of `ranges` of an object, in the order asked: pread on a
    /// folder, ranged requests elsewhere. A range past the end is an error,
    /// not a short answer.
    pub fn read_ranges(&self, rel: &str, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        match &self.backend {
            Backend::Folder(f) => f.read_ranges(rel, ranges),
            Backend::Bucket(b) => b.read_ranges(rel, ranges),
            Backend::Remote(r) => r.read_ranges(rel, ranges),
            Backend::Rclone(r) => r.read_ranges(rel, ranges),
        }
    }

    /// The last `n` bytes of an object (all of a smaller one) and its size,
    /// in one request.
    pub fn read_tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64)> {
        match &self.backend {
            Backend::Folder(f) => f.read_tail(rel, n),
            Backend::Bucket(b) => b.read_tail(rel, n),
            Backend::Remote(r) => r.read_tail(rel, n),
            Backend::Rclone(r) => r.read_tail(rel, n),
        }
    }

    /// Writes a small object whole, published atomically (folders: temp,
    /// fsync, rename, fsync the folder; buckets: one PUT).
    pub fn put_small(&self, rel: &str, data: Bytes, sha256: &str) -> Result<()> {
        match &self.backend {
            Backend::Folder(f) => f.put(rel, &data),
            Backend::Bucket(b) => b.put_small(rel, data, sha256),
            Backend::Remote(r) => r.put(rel, &data),
            Backend::Rclone(r) => r.put(rel, &data),
        }
    }

    /// Removes an object; one that is not there is no error.
    pub fn delete(&self, rel: &str) -> Result<()> {
        self.check_fence()?;
        match &self.backend {
            Backend::Folder(f) => f.delete(rel),
            Backend::Bucket(b) => b.delete(rel),
            Backend::Remote(r) => r.delete(rel),
            Backend::Rclone(r) => r.delete(rel),
        }
    }

    /// Removes many objects (a bucket in bulk requests, a folder file by
    /// file and then each folder touched fsynced), all on the drive before
    /// the caller removes anything that must go after them. Missing ones are fine.
    pub fn delete_many(&self, rels: &[String]) -> Result<()> {
        self.check_fence()?;
        match &self.backend {
            Backend::Folder(f) => f.delete_many(rels),
            Backend::Bucket(b) => b.delete_many(rels),
            Backend::Remote(r) => r.delete_many(rels),
            Backend::Rclone(r) => r.delete_many(rels),
        }
    }

    /// The whole of several small objects, fetched concurrently where the
    /// backend can; results in the order asked.
    pub fn get_many(&self, rels: &[String]) -> Vec<Result<Bytes>> {
        match &self.backend {
            Backend::Folder(f) => rels.iter().map(|r| f.get(r)).collect(),
            Backend::Bucket(b) => b.get_many(rels),
            Backend::Remote(r) => r.get_many(rels),
            Backend::Rclone(r) => r.get_many(rels),
        }
    }

    /// Puts several small objects whole (a bucket: concurrently; elsewhere
    /// one by one, each published atomically). The caller bounds the batch,
    /// which is held in memory.
    pub fn put_many(&self, items: Vec<(String, Bytes, String)>) -> Result<()> {
        match &self.backend {
            Backend::Bucket(b) => b.put_many(items),
            Backend::Folder(_) | Backend::Remote(_) | Backend::Rclone(_) => items
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

    /// [`Dest::list`] with each object's last-modified time, sorted by key.
    pub fn list_dated(&self, sub: &str) -> Result<Vec<(String, u64, SystemTime)>> {
        let mut out = match &self.backend {
            Backend::Folder(f) => f.list(sub)?,
            Backend::Bucket(b) => b.list(sub)?,
            Backend::Remote(r) => r.list(sub)?,
            Backend::Rclone(r) => r.list(sub)?,
        };
        out.sort();
        Ok(out)
    }

    /// Free bytes where a folder destination lives, or on an SFTP server
    /// that says (`None` for buckets and rclone remotes).
    pub fn free_space(&self) -> Option<(u64, u64)> {
        match &self.backend {
            Backend::Folder(f) => f.free_space(),
            Backend::Bucket(_) => None,
            Backend::Remote(r) => r.free_space(),
            Backend::Rclone(_) => None,
        }
    }

    /// An object_store error as one line with a sysexits code.
    pub(crate) fn error(&self, rel: &str, e: object_store::Error) -> Error {
        crate::backend::bucket::error_for(&self.show(rel), e)
    }
}

/// Where resume journals and destination locks live: `$XDG_STATE_HOME/snap/push`,
/// else `~/.local/state/snap/push` (the name predates snap-prune sharing it).
pub fn default_state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("snap/push"),
        _ => snap_shared::config::expand_tilde("~/.local/state/snap/push"),
    }
}
