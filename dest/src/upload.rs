//! Large files sent in parts, resumable after any interruption, checked end to end.
//!
//! The file is read once, in order, by one thread that hashes every byte
//! and hands the parts out: to parallel multipart uploads for a bucket, to
//! positional writes into a hidden `.NAME.snap-part` file for a folder or
//! an SFTP server. A
//! journal in the state folder records each part once the destination has
//! it (a bucket answered with the part's ETag; a folder's part was
//! fdatasynced; an SFTP server's was flushed with fsync@openssh.com, or
//! acknowledged where the server has no fsync), so a rerun after kill -9, a network cut or a pulled drive
//! reads past those parts — still hashing them — and sends only the rest.
//! Nothing becomes visible under the final name until the whole file is
//! there and its sha256, computed from the bytes sent, equals the one the
//! archive's record promises; otherwise the upload is thrown away (exit 65).
//!
//! The caller holds the destination's lock, so one journal has one writer.

use snap_shared::fsutil::read_full;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path as ObjPath;
use object_store::{PutMultipartOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;

use crate::backend::Backend;
use crate::backend::bucket::{Bucket, sha_attributes};
use crate::backend::rclone::Rclone;
use crate::backend::sftp::Remote;
use crate::dest::Dest;
use crate::part_buffers::Pool;
use crate::throttle::Throttle;

const MIB: u64 = 1 << 20;
/// S3 and GCS allow 10,000 parts; a little room is kept.
const MAX_PARTS: u64 = 9_000;

/// The file to send and what its bytes must hash to.
pub struct Source<'a> {
    pub path: &'a Path,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// How to send.
#[derive(Clone)]
pub struct Tuning {
    /// Part size; `None` picks 8 MiB for buckets and 16 MiB for folders,
    /// larger when the file would need more than 9,000 parts.
    pub part_size: Option<u64>,
    /// Parts in flight at once to a bucket.
    pub parallel: usize,
    pub throttle: Option<Arc<Throttle>>,
    /// Where journals live.
    pub state_dir: PathBuf,
}

/// What a transfer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Bytes sent by this run.
    pub sent: u64,
    /// Bytes an earlier, interrupted run had already sent.
    pub resumed: u64,
}

/// Progress callback: bytes newly sent.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Journal {
    url: String,
    key: String,
    size: u64,
    sha256: String,
    part_size: u64,
    /// The bucket's multipart upload id.
    upload_id: Option<String>,
    /// Parts the destination has: index → ETag (buckets) or "" (folders).
    done: BTreeMap<usize, String>,
}

impl Journal {
    fn path(state_dir: &Path, url: &str, key: &str) -> PathBuf {
        let id = Sha256Digest::of(format!("{url}\n{key}").as_bytes());
        state_dir.join(format!("{id}.json"))
    }

    /// The saved journal, if it is for this very file (its part size is kept:
    /// the parts already sent decide it).
    fn load(path: &Path, fresh: &Journal) -> Option<Journal> {
        let text = std::fs::read_to_string(path).ok()?;
        let j: Journal = serde_json::from_str(&text).ok()?;
        let same = j.url == fresh.url
            && j.key == fresh.key
            && j.size == fresh.size
            && j.sha256 == fresh.sha256
            && j.part_size > 0;
        same.then_some(j)
    }

    /// Saved atomically (temp, fsync, rename): a journal is never half written.
    fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).expect("journal serializes");
        snap_shared::fsutil::write_atomic(path, 0o600, true, |f| {
            std::io::Write::write_all(f, &text)
        })
        .map_err(|e| Error::io(path, e).within("upload journal"))
    }

    /// Keeps only the leading run of parts the journal has whole, if the
    /// part file at the destination (`on_dest` bytes; `None`: started over)
    /// is at least that long; else forgets them all. Returns the bytes kept.
    fn keep_prefix(&mut self, size: u64, on_dest: Option<u64>) -> u64 {
        let contiguous = (0..).take_while(|i| self.done.contains_key(i)).count();
        let kept = (contiguous as u64 * self.part_size).min(size);
        match on_dest {
            Some(len) if len >= kept => {
                self.done.retain(|&i, _| i < contiguous);
                kept
            }
            _ => {
                self.done.clear();
                0
            }
        }
    }

    fn sent_bytes(&self) -> u64 {
        self.done
            .keys()
            .map(|&i| part_len(self.size, self.part_size, i))
            .sum()
    }
}

fn parts_of(size: u64, part: u64) -> usize {
    size.div_ceil(part).max(1) as usize
}

fn part_len(size: u64, part: u64, idx: usize) -> u64 {
    let start = idx as u64 * part;
    size.saturating_sub(start).min(part)
}

/// The part size for a file: the default or asked size, grown to fit the part limit.
pub fn part_size_for(size: u64, asked: Option<u64>, folder: bool) -> u64 {
    let base = asked.unwrap_or(if folder { 16 * MIB } else { 8 * MIB });
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    base.max(needed).max(MIB)
}

/// One upload as the backends' senders take it: what is sent, how, the
/// journal of a fresh start, the journal saved by an earlier run (if any),
/// where it is kept, and whom to tell of progress.
struct Job<'a> {
    src: &'a Source<'a>,
    t: &'a Tuning,
    fresh: Journal,
    saved: Option<Journal>,
    jpath: &'a Path,
    progress: Progress<'a>,
}

impl Dest {
    /// Sends a large file to `rel`, resuming an interrupted send, and
    /// publishes it only when its sha256 is right.
    pub fn upload(&self, rel: &str, src: &Source, t: &Tuning, progress: Progress) -> Result<Sent> {
        let folder = !matches!(self.backend, Backend::Bucket(_));
        let fresh = Journal {
            url: self.url.clone(),
            key: rel.to_string(),
            size: src.size,
            sha256: src.sha256.to_hex(),
            part_size: part_size_for(src.size, t.part_size, folder),
            upload_id: None,
            done: BTreeMap::new(),
        };
        crate::backend::folder::create_folder(&t.state_dir)?;
        let jpath = Journal::path(&t.state_dir, &self.url, rel);
        let journal = Journal::load(&jpath, &fresh);
        let job = Job {
            src,
            t,
            fresh,
            saved: journal,
            jpath: &jpath,
            progress,
        };
        let result = match &self.backend {
            Backend::Folder(folder) => upload_file(&folder.path(rel), job),
            Backend::Bucket(b) => self.upload_parts(b, rel, job),
            Backend::Remote(r) => upload_remote(r, rel, job),
            Backend::Rclone(r) => copy_rclone(r, rel, job.src, job.t, job.progress),
        };
        if result.is_ok() || result.as_ref().is_err_and(|e| e.exit == Exit::Data) {
            let _ = std::fs::remove_file(&jpath);
        }
        result
    }

    fn upload_parts(&self, b: &Bucket, rel: &str, mut job: Job) -> Result<Sent> {
        let (src, t, jpath, progress) = (job.src, job.t, job.jpath, job.progress);
        let key = b.key(rel);
        let mut journal = match job.saved.take() {
            Some(j) if j.upload_id.is_some() => j,
            _ => {
                let id = self.start_multipart(b, &key, &src.sha256.to_hex(), rel)?;
                let j = Journal {
                    upload_id: Some(id),
                    ..job.fresh.clone()
                };
                j.save(jpath)?;
                j
            }
        };
        match self.send_parts(b, &key, rel, src, t, &mut journal, jpath, progress) {
            // The service forgot the upload (expired, aborted): start once more from nothing.
            Err(e) if e.exit == Exit::NoInput && !journal.done.is_empty() => {
                let _ = std::fs::remove_file(jpath);
                self.upload_parts(b, rel, Job { saved: None, ..job })
            }
            other => other,
        }
    }

    fn start_multipart(&self, b: &Bucket, key: &ObjPath, sha: &str, rel: &str) -> Result<String> {
        let opts = PutMultipartOptions {
            attributes: sha_attributes(sha),
            ..Default::default()
        };
        match b.rt.block_on(b.parts.create_multipart_opts(key, opts)) {
            Ok(id) => Ok(id),
            // Azure keeps no metadata on block uploads; the .sha256 file still has it.
            Err(object_store::Error::NotSupported { .. }) => {
                b.rt.block_on(b.parts.create_multipart(key))
                    .map_err(|e| self.error(rel, e))
            }
            Err(e) => Err(self.error(rel, e)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_parts(
        &self,
        b: &Bucket,
        key: &ObjPath,
        rel: &str,
        src: &Source,
        t: &Tuning,
        journal: &mut Journal,
        jpath: &Path,
        progress: Progress,
    ) -> Result<Sent> {
        let upload_id = journal.upload_id.clone().expect("started upload");
        let resumed = journal.sent_bytes();
        let skip: Vec<usize> = journal.done.keys().copied().collect();
        let (tx, mut rx) = mpsc::channel::<(usize, Bytes)>(t.parallel.max(1));
        let part_size = journal.part_size;
        let path = src.path.to_path_buf();
        let reader = std::thread::spawn(move || {
            read_parts(&path, part_size, &skip, |idx, data| {
                tx.blocking_send((idx, data)).is_ok()
            })
        });
        let shared = Mutex::new(journal.clone());
        let sent = std::sync::atomic::AtomicU64::new(0);
        let parts = futures::stream::poll_fn(|cx| rx.poll_recv(cx));
        let outcome: Result<()> = b.rt.block_on(async {
            let mut sends = parts
                .map(|(idx, data)| {
                    let (shared, sent, upload_id) = (&shared, &sent, &upload_id);
                    async move {
                        let len = data.len() as u64;
                        if let Some(th) = &t.throttle {
                            th.wait(len).await;
                        }
                        let part = b
                            .parts
                            .put_part(key, upload_id, idx, PutPayload::from(data))
                            .await
                            .map_err(|e| self.error(rel, e))?;
                        let mut j = shared.lock().expect("journal lock");
                        j.done.insert(idx, part.content_id);
                        j.save(jpath)?;
                        sent.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                        progress(len);
                        Ok::<(), Error>(())
                    }
                })
                .buffer_unordered(t.parallel.max(1));
            while let Some(r) = sends.next().await {
                r?;
            }
            Ok(())
        });
        // On an error the reader may be waiting to hand over a part: closing
        // the channel stops it, so that joining it cannot hang.
        drop(rx);
        *journal = shared.into_inner().expect("journal lock");
        let read = reader
            .join()
            .map_err(|_| Error::internal(rel, "reader thread panicked"))?;
        outcome?;
        let digest = read.map_err(|e| e.within(format!("sending {}", self.show(rel))))?;
        if digest != src.sha256 {
            let _ = b.rt.block_on(b.parts.abort_multipart(key, &upload_id));
            return Err(changed(src, &digest));
        }
        let count = parts_of(src.size, journal.part_size);
        let ids: Option<Vec<PartId>> = (0..count)
            .map(|i| {
                journal.done.get(&i).map(|c| PartId {
                    content_id: c.clone(),
                })
            })
            .collect();
        let ids = ids.ok_or_else(|| Error::internal(rel, "a part is missing from the journal"))?;
        b.rt.block_on(b.parts.complete_multipart(key, &upload_id, ids))
            .map_err(|e| self.error(rel, e))?;
        Ok(Sent {
            sent: sent.into_inner(),
            resumed,
        })
    }
}

/// The error for a source whose bytes are not what its record says.
fn changed(src: &Source, got: &Sha256Digest) -> Error {
    Error::data(
        src.path.display().to_string(),
        format!(
            "its sha256 is {got}, not {} as its record says: it changed or rotted since it was packed",
            src.sha256
        ),
    )
    .with_hint("check it with `snap-restore verify`; nothing was published at the destination")
}

/// Reads the file in parts, hashing every byte, and hands each part not in
/// `skip` to `send` (which says whether to go on). Returns the file's sha256.
///
/// The hashing runs on a thread of its own at the lowest priority. With
/// ssh, sshd and the SFTP server on the same two cores, a hash at full
/// priority takes the CPU from the transfer; at the lowest it runs in the
/// pauses between transfer work, and it can fall behind by at most
/// `HASH_BACKLOG` parts before the reading waits for it.
fn read_parts(
    path: &Path,
    part_size: u64,
    skip: &[usize],
    mut send: impl FnMut(usize, Bytes) -> bool,
) -> Result<Sha256Digest> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let pool = Pool::new(part_size as usize);
    std::thread::scope(|s| {
        let (to_hash, parts) = std::sync::mpsc::sync_channel::<Bytes>(HASH_BACKLOG);
        let hashing = s.spawn(move || {
            lowest_priority();
            let mut hasher = Sha256::new();
            for part in parts {
                hasher.update(&part);
            }
            Sha256Digest::from_hasher(hasher)
        });
        let mut idx = 0usize;
        loop {
            let mut buf = pool.take();
            let n = read_full(&mut file, &mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 && idx > 0 {
                break;
            }
            buf.truncate(n);
            let part = pool.lend(buf);
            if to_hash.send(part.clone()).is_err() {
                return Err(Error::internal("upload", "the hashing thread stopped"));
            }
            if !skip.contains(&idx) && !send(idx, part) {
                break;
            }
            idx += 1;
            if n < part_size as usize {
                break;
            }
        }
        drop(to_hash);
        hashing
            .join()
            .map_err(|_| Error::internal("upload", "the hashing thread panicked"))
    })
}

/// Parts read but not hashed yet, at most.
const HASH_BACKLOG: usize = 2;

/// Makes the calling thread yield the CPU to any other work (nice 19).
/// Best effort: at worst the hash runs at normal priority.
fn lowest_priority() {
    let me = rustix::thread::gettid();
    let _ = rustix::process::setpriority_process(Some(me), 19);
}

/// Sends a file into a folder: `.NAME.snap-part` written part by part, each
/// fdatasynced before the journal counts it, then fsynced and renamed.
fn upload_file(dest: &Path, job: Job) -> Result<Sent> {
    let (src, t, jpath, progress) = (job.src, job.t, job.jpath, job.progress);
    let dir = snap_shared::fsutil::parent_of(dest);
    if !dir.is_dir() {
        crate::backend::folder::create_folder(dir)?;
    }
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let part_path = dir.join(format!(".{name}.snap-part"));
    let io = |e: std::io::Error| Error::io(&part_path, e);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&part_path)
        .map_err(io)?;
    let on_disk = file.metadata().map_err(io)?.len();
    // Resume only over a prefix of whole, synced parts that the part file really has.
    let mut journal = job.saved.unwrap_or(job.fresh);
    let resumed = journal.keep_prefix(src.size, Some(on_disk));
    let skip: Vec<usize> = journal.done.keys().copied().collect();
    let part_size = journal.part_size;
    // Three stages overlap: reading and hashing, writing (the kernel starts
    // write-back as parts land), and syncing, which journals each part once
    // fdatasync says it is on the drive.
    let (sent, digest) = std::thread::scope(|s| {
        let (parts_tx, parts_rx) = std::sync::mpsc::sync_channel::<(usize, Bytes)>(2);
        let (synced_tx, synced_rx) = std::sync::mpsc::channel::<(usize, u64)>();
        let skip = &skip;
        let reader = s.spawn(move || {
            read_parts(src.path, part_size, skip, |idx, data| {
                parts_tx.send((idx, data)).is_ok()
            })
        });
        let journal = &mut journal;
        let file = &file;
        let part_path = &part_path;
        let syncer =
            s.spawn(move || sync_parts(file, part_path, synced_rx, journal, jpath, progress));
        let mut failure = None;
        for (idx, data) in parts_rx {
            let at = idx as u64 * part_size;
            if let Err(e) = write_part(file, at, &data, t.throttle.as_deref()) {
                failure = Some(io(e));
                break;
            }
            if synced_tx.send((idx, data.len() as u64)).is_err() {
                break;
            }
        }
        drop(synced_tx);
        let digest = reader
            .join()
            .map_err(|_| Error::internal("upload", "reader panicked"));
        let sent = syncer
            .join()
            .map_err(|_| Error::internal("upload", "syncer panicked"));
        if let Some(e) = failure {
            return Err(e);
        }
        Ok((sent??, digest??))
    })?;
    if digest != src.sha256 {
        drop(file);
        let _ = std::fs::remove_file(&part_path);
        return Err(changed(src, &digest));
    }
    file.set_len(src.size).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&part_path, dest).map_err(|e| Error::io(dest, e))?;
    snap_shared::fsutil::fsync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(Sent { sent, resumed })
}

/// Sends a file over SFTP: `.NAME.snap-part` written part by part (many
/// requests in flight), each flushed on the server before the journal counts
/// it, then renamed. A server that cannot write into an existing file
/// (rclone without its VFS cache) starts the part file over instead.
fn upload_remote(r: &Remote, rel: &str, job: Job) -> Result<Sent> {
    let (src, t, jpath, progress) = (job.src, job.t, job.jpath, job.progress);
    let part_rel = r.part_name(rel);
    let mut journal = job.saved.unwrap_or(job.fresh);
    let (part, on_server) = r.open_part(&part_rel, journal.done.contains_key(&0))?;
    let resumed = journal.keep_prefix(src.size, on_server);
    let skip: Vec<usize> = journal.done.keys().copied().collect();
    let part_size = journal.part_size;
    let (sent, digest) = std::thread::scope(|s| {
        let (parts_tx, parts_rx) = tokio::sync::mpsc::channel::<(usize, Bytes)>(2);
        let skip = &skip;
        let reader = s.spawn(move || {
            read_parts(src.path, part_size, skip, |idx, data| {
                parts_tx.blocking_send((idx, data)).is_ok()
            })
        });
        let mut sent = 0u64;
        let written = r.send_parts(
            &part,
            part_size,
            parts_rx,
            t.throttle.as_deref(),
            rel,
            |idx, n| {
                journal.done.insert(idx, String::new());
                journal.save(jpath)?;
                sent += n;
                progress(n);
                Ok(())
            },
        );
        let digest = reader
            .join()
            .map_err(|_| Error::internal("upload", "reader panicked"));
        written?;
        Ok((sent, digest??))
    })?;
    if digest != src.sha256 {
        r.discard_part(part, &part_rel);
        return Err(changed(src, &digest));
    }
    r.finish(part, &part_rel, src.size, rel)?;
    Ok(Sent { sent, resumed })
}

/// Sends a file to an rclone remote: rclone uploads it (`operations/copyfile`,
/// an rc job) as `.NAME.snap-part` while this process reads it again and
/// hashes every byte; the upload is renamed into place only if both went
/// right. rclone cannot write into a file it has uploaded, so there is no
/// resume inside a file: an interrupted one is sent again whole.
fn copy_rclone(
    r: &Rclone,
    rel: &str,
    src: &Source,
    t: &Tuning,
    progress: Progress,
) -> Result<Sent> {
    let part_rel = r.part_name(rel);
    let rate = t.throttle.as_deref().map(Throttle::rate);
    let copy = r.copy_in(src.path, &part_rel, rate)?;
    let digest = read_parts(src.path, 16 * MIB, &[], |_, data| {
        progress(data.len() as u64);
        true
    });
    let digest = match digest {
        Ok(d) => d,
        Err(e) => {
            copy.abort();
            return Err(e);
        }
    };
    if digest != src.sha256 {
        copy.abort();
        let _ = r.delete(&part_rel);
        return Err(changed(src, &digest));
    }
    copy.finish()?;
    r.rename_over(&part_rel, rel)?;
    Ok(Sent {
        sent: src.size,
        resumed: 0,
    })
}

/// Flushes written parts to the drive (several at once when they queue up)
/// and only then records them in the journal. Returns the bytes sent.
fn sync_parts(
    file: &File,
    part_path: &Path,
    written: std::sync::mpsc::Receiver<(usize, u64)>,
    journal: &mut Journal,
    jpath: &Path,
    progress: Progress,
) -> Result<u64> {
    let mut sent = 0;
    while let Ok(first) = written.recv() {
        let batch: Vec<(usize, u64)> = std::iter::once(first).chain(written.try_iter()).collect();
        file.sync_data().map_err(|e| Error::io(part_path, e))?;
        for (idx, n) in batch {
            journal.done.insert(idx, String::new());
            sent += n;
            progress(n);
        }
        journal.save(jpath)?;
    }
    Ok(sent)
}

/// Writes one part at its offset in 1 MiB steps (throttled), starting
/// write-back as it goes (the syncer then finds little left to flush).
fn write_part(
    file: &File,
    offset: u64,
    data: &[u8],
    throttle: Option<&Throttle>,
) -> std::io::Result<()> {
    let mut done = 0usize;
    for chunk in data.chunks(MIB as usize) {
        if let Some(th) = throttle {
            th.wait_blocking(chunk.len() as u64);
        }
        file.write_all_at(chunk, offset + done as u64)?;
        done += chunk.len();
        if done % (8 * MIB as usize) == 0 || done == data.len() {
            snap_shared::fsutil::start_writeback(file, offset, offset + done as u64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Part sizes follow the defaults and grow so a huge file stays under the part limit.
    #[test]
    fn part_sizes() {
        assert_eq!(part_size_for(1 << 30, None, false), 8 * MIB);
        assert_eq!(part_size_for(1 << 30, None, true), 16 * MIB);
        assert_eq!(part_size_for(1 << 30, Some(5 * MIB), false), 5 * MIB);
        let huge = 200u64 << 30;
        let p = part_size_for(huge, None, false);
        assert!(huge.div_ceil(p) <= MAX_PARTS && p % MIB == 0);
    }

    /// Reading skips sending the parts named, yet hashes the whole file.
    #[test]
    fn read_parts_hashes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(5 * MIB as usize / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut got = Vec::new();
        let digest = read_parts(&path, MIB, &[1], |i, b| {
            got.push((i, b.len()));
            true
        })
        .unwrap();
        assert_eq!(digest, Sha256Digest::of(&data));
        assert_eq!(got, vec![(0, MIB as usize), (2, MIB as usize / 2)]);
    }

    /// An empty file is one empty part.
    #[test]
    fn empty_file_is_one_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e");
        std::fs::write(&path, b"").unwrap();
        let mut parts = 0;
        read_parts(&path, MIB, &[], |_, b| {
            assert!(b.is_empty());
            parts += 1;
            true
        })
        .unwrap();
        assert_eq!(parts, 1);
    }
}
