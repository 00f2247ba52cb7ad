//! Conditional writes: create an object only if nothing is there, replace it
//! only if it is still the version this process wrote.
//!
//! They are what lets several machines share one destination without a
//! server of snap's own (docs/destinations.md, "Many machines, one
//! destination"): a record is published with create-only semantics, so two
//! machines can never replace each other's; a lock is refreshed only while
//! it is still the holder's, so a lock that a prune broke is never brought
//! back by its old holder. Buckets use the services' preconditions through
//! object_store (`PutMode::Create` is S3 `If-None-Match: *`, GCS
//! `ifGenerationMatch=0`, Azure `If-None-Match: *`; `PutMode::Update` is
//! `If-Match` on the ETag, or the GCS generation). Folders use
//! `renameat2(RENAME_NOREPLACE)` to publish and `utimensat` on the existing
//! name to refresh (a removed file is never recreated).

use std::path::Path;

use bytes::Bytes;
use object_store::{PutMode, UpdateVersion};

use snap_shared::error::{Error, Exit, Result};

use crate::backend::Backend;
use crate::dest::Dest;

/// The version of an object this process wrote (a bucket's ETag or
/// generation; a folder's file has none: its name is its identity).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version(pub(crate) Option<UpdateVersion>);

impl Version {
    fn of(r: object_store::PutResult) -> Version {
        Version(Some(UpdateVersion {
            e_tag: r.e_tag,
            version: r.version,
        }))
    }
}

impl Dest {
    /// Writes `data` at `rel` unless something is there already: `Ok(None)`
    /// then, and nothing is changed. A service that cannot do this is exit 69.
    pub fn put_new(&self, rel: &str, data: Bytes, sha256: &str) -> Result<Option<Version>> {
        self.check_fence()?;
        match &self.backend {
            Backend::Folder(folder) => {
                let path = folder.path(rel);
                ensure_parent(&path)?;
                let write = |f: &mut std::fs::File| std::io::Write::write_all(f, &data);
                match snap_shared::fsutil::write_atomic(&path, 0o600, false, write) {
                    Ok(()) => Ok(Some(Version(None))),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
                    Err(e) => Err(no_atomic_create(self, rel, e)),
                }
            }
            Backend::Bucket(b) => match b.put(rel, data, sha256, PutMode::Create) {
                Ok(r) => Ok(Some(Version::of(r))),
                Err(object_store::Error::AlreadyExists { .. }) => Ok(None),
                Err(e) => Err(unsupported_or(self, rel, e)),
            },
            Backend::Remote(r) => Ok(r.put_new(rel, &data)?.then_some(Version(None))),
            Backend::Rclone(r) => Ok(r.put_new(rel, &data)?.then_some(Version(None))),
        }
    }

    /// Replaces `rel` with `data` only if it is still `version` (buckets), or
    /// only if it is still there (folders: its time is renewed, `data` is not
    /// written, so a power cut never leaves half of it; an SFTP server's
    /// times are set likewise, an rclone remote's file is written again if
    /// it is still there). `Ok(None)`: it was
    /// changed or removed by someone else, and nothing was written.
    pub fn put_update(
        &self,
        rel: &str,
        data: Bytes,
        sha256: &str,
        version: &Version,
    ) -> Result<Option<Version>> {
        match &self.backend {
            Backend::Folder(folder) => {
                let path = folder.path(rel);
                match touch(&path) {
                    Ok(()) => Ok(Some(Version(None))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(&path, e)),
                }
            }
            Backend::Remote(r) => Ok(r.refresh(rel)?.then_some(Version(None))),
            Backend::Rclone(r) => Ok(r.refresh(rel, &data)?.then_some(Version(None))),
            Backend::Bucket(b) => {
                let Some(v) = version.0.clone() else {
                    return Err(Error::internal(
                        self.show(rel),
                        "a conditional update without the version it replaces",
                    ));
                };
                match b.put(rel, data.clone(), sha256, PutMode::Update(v)) {
                    Ok(r) => Ok(Some(Version::of(r))),
                    Err(object_store::Error::Precondition { .. }) => self.holding(rel, &data),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(unsupported_or(self, rel, e)),
                }
            }
        }
    }
}

impl Dest {
    /// After a conditional write was refused (create-only: something is
    /// there; update: it is no longer the version replaced): whether the
    /// bucket's object holds exactly `data`, which only this process writes
    /// (a lock names its process and the time of each refresh), and its
    /// version if so. Then an earlier attempt of the same request landed and
    /// its answer was lost (the client sent it again after a timeout, a 5xx
    /// or a dropped connection), and the object is this process's own.
    /// Elsewhere `None`: a folder's, an SFTP server's and an rclone remote's
    /// writes are not sent twice.
    pub(crate) fn holding(&self, rel: &str, data: &Bytes) -> Result<Option<Version>> {
        let Backend::Bucket(b) = &self.backend else {
            return Ok(None);
        };
        let got = b.rt.block_on(async {
            let r = b.store.get_opts(&b.key(rel), Default::default()).await?;
            let meta = r.meta.clone();
            Ok::<_, object_store::Error>((meta, r.bytes().await?))
        });
        match got {
            Ok((meta, body)) if body == *data => Ok(Some(Version(Some(UpdateVersion {
                e_tag: meta.e_tag,
                version: meta.version,
            })))),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(rel, e)),
        }
    }

    /// Whether `rel` is still the version this process wrote, asked with a
    /// read that changes nothing: a bucket's HEAD with `If-Match` on the
    /// ETag, a folder's `stat` (a lock's name is unique to its process, so
    /// a file there is still the one written). `None` where no read can
    /// tell (SFTP, rclone): the caller refreshes instead.
    pub fn unchanged(&self, rel: &str, version: &Version) -> Result<Option<bool>> {
        match &self.backend {
            Backend::Folder(_) => Ok(Some(self.head(rel)?.is_some())),
            Backend::Bucket(b) => {
                let Some(v) = &version.0 else {
                    return Ok(None);
                };
                let opts = object_store::GetOptions {
                    head: true,
                    if_match: v.e_tag.clone(),
                    ..Default::default()
                };
                match b.rt.block_on(b.store.get_opts(&b.key(rel), opts)) {
                    Ok(_) => Ok(Some(true)),
                    Err(
                        object_store::Error::Precondition { .. }
                        | object_store::Error::NotFound { .. },
                    ) => Ok(Some(false)),
                    Err(e) => Err(self.error(rel, e)),
                }
            }
            Backend::Remote(_) | Backend::Rclone(_) => Ok(None),
        }
    }

    /// Publishes a record: create-only, and only while this process's lock
    /// here is its own, asked of the destination before and again after the
    /// write (never the local shortcut: another machine's prune may have
    /// broken a lock refreshed a minute ago). `Ok(false)`: something is
    /// already there under that name (the caller compares). If the lock
    /// turns out lost after the write, the record is taken back (another
    /// machine may have removed what it names meanwhile) and the error says
    /// why; the next run publishes it again.
    pub fn publish(&self, rel: &str, data: Bytes, sha256: &str) -> Result<bool> {
        self.publish_checked(rel, data, sha256, false, || Ok(()))
    }

    /// [`Dest::confirm_fence`], with `alongside` (another read the caller
    /// needs) run at the same time at a bucket, so the confirmation costs no
    /// round trip of its own; elsewhere one after the other.
    pub fn confirm_fence_with(&self, alongside: impl FnOnce() -> Result<()> + Send) -> Result<()> {
        let (fence, other) = self.fence_beside(alongside);
        other.and(fence)
    }

    /// The fence asked of the destination, and `alongside`: at once at a
    /// bucket that takes several requests at a time; elsewhere (the fault
    /// harness's bucket takes one) the fence first, then `alongside` if the
    /// fence held.
    fn fence_beside(
        &self,
        alongside: impl FnOnce() -> Result<()> + Send,
    ) -> (Result<()>, Result<()>) {
        match &self.backend {
            Backend::Bucket(b) if b.concurrency > 1 => std::thread::scope(|s| {
                let fence = s.spawn(|| self.confirm_fence());
                let other = alongside();
                let fence = fence
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (fence, other)
            }),
            _ => {
                let fence = self.confirm_fence();
                let other = match fence.is_ok() {
                    true => alongside(),
                    false => Ok(()),
                };
                (fence, other)
            }
        }
    }

    /// [`Dest::publish`], with `landed` (the caller's check that the record
    /// is there whole) run while the lock is asked after the write: at a
    /// bucket the two requests go at once, so the check after the write
    /// costs no round trip of its own. `landed` runs only when the record
    /// was written. `confirmed`: the caller asked the destination for the
    /// lock just before (with [`Dest::confirm_fence_with`]).
    pub fn publish_checked(
        &self,
        rel: &str,
        data: Bytes,
        sha256: &str,
        confirmed: bool,
        landed: impl FnOnce() -> Result<()> + Send,
    ) -> Result<bool> {
        if !confirmed {
            self.confirm_fence()?;
        }
        if self.put_new(rel, data, sha256)?.is_none() {
            return Ok(false);
        }
        let (after, landed) = self.fence_beside(landed);
        if let Err(lost) = after {
            let mut bare = self.clone();
            bare.fence = None;
            bare.delete(rel)?;
            return Err(lost);
        }
        landed?;
        Ok(true)
    }
}

fn ensure_parent(path: &Path) -> Result<()> {
    let dir = snap_shared::fsutil::parent_of(path);
    if dir.is_dir() {
        return Ok(());
    }
    crate::backend::folder::create_folder(dir)
}

/// Sets a file's times to now, through its existing name only.
fn touch(path: &Path) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_NOW, utimensat};
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let times = Timestamps {
        last_access: now,
        last_modification: now,
    };
    utimensat(CWD, path, &times, AtFlags::empty()).map_err(std::io::Error::from)
}

/// The hint every "no conditional writes" error carries.
const NO_CONDITIONS_HINT: &str = "snap shares a destination between machines through conditional writes (If-None-Match / If-Match); use a service or filesystem that has them (docs/destinations.md)";

/// A folder whose filesystem cannot create a name without replacing (no
/// `RENAME_NOREPLACE`): exit 69, as a service without preconditions.
fn no_atomic_create(dest: &Dest, rel: &str, e: std::io::Error) -> Error {
    if matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    ) {
        return Error::new(
            Exit::Unavailable,
            dest.show(rel),
            format!("this filesystem cannot create a file without replacing one ({e})"),
        )
        .with_hint(NO_CONDITIONS_HINT);
    }
    Error::io_ctx(dest.show(rel), e)
}

/// A service that refused a precondition it does not implement is exit 69
/// with the hint; any other error is as usual.
fn unsupported_or(dest: &Dest, rel: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            Error::new(
                Exit::Unavailable,
                dest.show(rel),
                "the service does not support conditional writes",
            )
            .with_hint(NO_CONDITIONS_HINT)
        }
        e => dest.error(rel, e),
    }
}

/// The message for a service that accepted a conditional write it should
/// have refused (it ignores preconditions): exit 69.
pub(crate) fn ignores_conditions(dest: &Dest, rel: &str) -> Error {
    Error::new(
        Exit::Unavailable,
        dest.show(rel),
        "the service ignored a create-only condition (If-None-Match) and replaced an object",
    )
    .with_hint(NO_CONDITIONS_HINT)
}
