//! One `blocks` disk snapshot to one destination: only the blocks it lacks.
//!
//! The destination's block list is read once (`disks/<disk>/blocks/`); the
//! snapshot's map is streamed and every block the destination does not hold
//! is sent, in bounded batches (concurrently to a bucket). Then the map, the
//! disk's settings, the record's signature and the record, last: a destination lists a disk snapshot
//! by its record, so an interrupted push leaves only blocks, which the next
//! push reuses. A block's name is the sha256 of its content, so a block that
//! is there is the right one; sizes are checked after sending, and
//! `--verify` reads every block sent back and checks its stored bytes.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::{Value, json};

use snap_cli::{Reporter, Tally};
use snap_dest::Dest;
use snap_shared::blockmap::MapReader;
use snap_shared::disks::block_rel;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;
use snap_shared::record::{DiskSnapshotRecord, PushedRecord, Record};
use snap_shared::size::human_bytes;

use crate::push::{Options, Outcome, check_space};

/// Blocks held in memory at once while sending (bounded: 32 × the block size).
const BATCH: usize = 32;

/// A disk snapshot's files on this machine.
struct LocalDisk {
    dir: PathBuf,
    map: PathBuf,
    record: PathBuf,
}

fn local_files(rec: &DiskSnapshotRecord) -> Result<LocalDisk> {
    let what = || format!("disk snapshot {}/{}", rec.disk, rec.name);
    let map = rec
        .extra
        .get("map")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| Error::data(what(), "the record names no block map"))?;
    let dir = snap_shared::fsutil::parent_of(&map).to_path_buf();
    let record = dir.join(format!("{}.json", rec.name));
    for p in [&map, &record] {
        if !p.exists() {
            return Err(Error::new(
                Exit::NoInput,
                what(),
                format!("{} is missing", p.display()),
            ));
        }
    }
    Ok(LocalDisk { dir, map, record })
}

/// Pushes a `blocks` snapshot to `dest`.
pub fn push(
    rec: &DiskSnapshotRecord,
    dest: &Dest,
    opts: &Options,
    report: &Reporter,
) -> Result<Outcome> {
    let local = local_files(rec)?;
    let base = format!("disks/{}", rec.disk);
    let rec_key = format!("{base}/{}.json", rec.name);
    let rec_bytes = fs::read(&local.record).map_err(|e| Error::io(&local.record, e))?;
    if let Some(meta) = dest.head(&rec_key)?
        && meta.size == rec_bytes.len() as u64
    {
        report.detail(|| format!("{}/{} is already at {}", rec.disk, rec.name, dest.name));
        return Ok(Outcome {
            record: Some(pushed(
                rec,
                dest,
                &rec_key,
                Sha256Digest::of(&rec_bytes).to_hex(),
                0,
                0,
                opts.verify,
            )),
            sent: 0,
            skipped: rec.stored_bytes,
        });
    }
    let have: HashSet<String> = dest
        .list(&format!("{base}/blocks"))?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let (todo, needed, skipped) = missing_blocks(&local, &base, &have)?;
    if opts.dry_run {
        report.note(&format!(
            "would send {}/{} to {}: {} blocks, {} ({} already there)",
            rec.disk,
            rec.name,
            dest.name,
            todo.len(),
            human_bytes(needed),
            human_bytes(skipped)
        ));
        return Ok(Outcome {
            record: None,
            sent: needed,
            skipped,
        });
    }
    check_space(dest, needed, opts.floor)?;
    let sent = send_blocks(&local, &base, &todo, dest, opts, report)?;
    if opts.verify {
        verify_blocks(&local, &base, &todo, dest)?;
    }
    let mut files = vec![
        (format!("{base}/{}.map.zst", rec.name), local.map.clone()),
        (format!("{base}/disk.json"), local.dir.join("disk.json")),
    ];
    // The record's signature before the record, as for an archive.
    let sig = local.dir.join(format!(
        "{}.json{}",
        rec.name,
        snap_shared::sign::SIG_SUFFIX
    ));
    if sig.exists() {
        files.push((format!("{rec_key}{}", snap_shared::sign::SIG_SUFFIX), sig));
    }
    for (key, path) in files {
        put_file(dest, &key, &path)?;
    }
    let sha = Sha256Digest::of(&rec_bytes).to_hex();
    // Create-only, while this push's lock is held: every block it found
    // there at the start is still there (no prune can have run).
    if !dest.publish(&rec_key, Bytes::from(rec_bytes.clone()), &sha)?
        && held_bytes(dest, &rec_key)? != rec_bytes
    {
        return Err(Error::new(
            Exit::CantCreate,
            dest.show(&rec_key),
            format!("holds another disk snapshot {}/{}; it is not replaced", rec.disk, rec.name),
        )
        .with_hint("two machines may be pushing the same disk name to one destination; give each its own prefix or disk name"));
    }
    report.detail(|| {
        format!(
            "{}/{} -> {}: {} blocks, {}",
            rec.disk,
            rec.name,
            dest.name,
            todo.len(),
            human_bytes(sent)
        )
    });
    Ok(Outcome {
        record: Some(pushed(
            rec,
            dest,
            &rec_key,
            sha,
            sent,
            todo.len() as u64,
            opts.verify,
        )),
        sent,
        skipped,
    })
}

/// The blocks of the map the destination lacks (each once), the bytes they
/// hold, and the bytes of those it has.
fn missing_blocks(
    local: &LocalDisk,
    base: &str,
    have: &HashSet<String>,
) -> Result<(Vec<Sha256Digest>, u64, u64)> {
    let (mut todo, mut needed, mut skipped) = (Vec::new(), 0, 0);
    let mut seen = HashSet::new();
    for entry in MapReader::open(&local.map)? {
        let (_, d) = entry?;
        if !seen.insert(d) {
            continue;
        }
        let path = block_file(local, &d);
        let size = fs::metadata(&path)
            .map_err(|e| Error::io(&path, e).with_exit(Exit::Data))?
            .len();
        if have.contains(&format!("{base}/blocks/{}", block_rel(&d))) {
            skipped += size;
        } else {
            needed += size;
            todo.push(d);
        }
    }
    Ok((todo, needed, skipped))
}

fn block_file(local: &LocalDisk, d: &Sha256Digest) -> PathBuf {
    snap_shared::disks::block_path(&local.dir.join("blocks"), d)
}

/// Sends the blocks in batches (at `--bwlimit`'s rate); returns the bytes sent.
fn send_blocks(
    local: &LocalDisk,
    base: &str,
    todo: &[Sha256Digest],
    dest: &Dest,
    opts: &Options,
    report: &Reporter,
) -> Result<u64> {
    let mut sent = 0;
    for (n, chunk) in todo.chunks(BATCH).enumerate() {
        let mut batch = Vec::with_capacity(chunk.len());
        for d in chunk {
            let path = block_file(local, d);
            let data = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            sent += data.len() as u64;
            if let Some(t) = &opts.tuning.throttle {
                t.wait_blocking(data.len() as u64);
            }
            let sha = Sha256Digest::of(&data).to_hex();
            batch.push((
                format!("{base}/blocks/{}", block_rel(d)),
                Bytes::from(data),
                sha,
            ));
        }
        let bytes: u64 = batch.iter().map(|(_, b, _)| b.len() as u64).sum();
        dest.put_many(batch)?;
        opts.sent.set(opts.sent.get() + bytes);
        let done = (n * BATCH + chunk.len()) as u64;
        report.tally(|| Tally::items(&dest.name, done, Some(todo.len() as u64), "blocks"));
    }
    Ok(sent)
}

/// Reads each sent block back and compares it with the local bytes.
fn verify_blocks(local: &LocalDisk, base: &str, todo: &[Sha256Digest], dest: &Dest) -> Result<()> {
    for chunk in todo.chunks(BATCH) {
        let keys: Vec<String> = chunk
            .iter()
            .map(|d| format!("{base}/blocks/{}", block_rel(d)))
            .collect();
        for ((d, key), got) in chunk.iter().zip(&keys).zip(dest.get_many(&keys)) {
            let want =
                fs::read(block_file(local, d)).map_err(|e| Error::io(&block_file(local, d), e))?;
            if got?.as_ref() != want.as_slice() {
                dest.delete(key)?;
                return Err(Error::data(
                    dest.show(key),
                    "read back different from what was sent; removed it",
                ));
            }
        }
    }
    Ok(())
}

/// What a refused create-only write found there; nothing is a refusal to trust.
fn held_bytes(dest: &Dest, key: &str) -> Result<Bytes> {
    match dest.get_bytes(key) {
        Err(e) if e.exit == Exit::NoInput => Err(crate::push::refused_create(dest, key)),
        r => r,
    }
}

fn put_file(dest: &Dest, key: &str, path: &Path) -> Result<()> {
    let data = fs::read(path).map_err(|e| Error::io(path, e))?;
    let sha = Sha256Digest::of(&data).to_hex();
    dest.put_small(key, Bytes::from(data), &sha)
}

fn pushed(
    rec: &DiskSnapshotRecord,
    dest: &Dest,
    key: &str,
    sha: String,
    sent: u64,
    blocks: u64,
    verified: bool,
) -> PushedRecord {
    let mut extra = snap_shared::record::Extra::new();
    extra.insert("disk".into(), json!(rec.disk));
    extra.insert("name".into(), json!(rec.name));
    extra.insert("dest_name".into(), json!(dest.name));
    extra.insert("sent".into(), json!(sent));
    extra.insert("blocks_sent".into(), json!(blocks));
    extra.insert(
        "checked".into(),
        json!(if verified { "read-back" } else { "size" }),
    );
    PushedRecord {
        schema: snap_shared::record::SCHEMA.into(),
        dest: dest.url.clone(),
        object: key.to_string(),
        bytes: sent,
        sha256: sha,
        verified,
        source: serde_json::to_value(Record::DiskSnapshot(rec.clone())).unwrap_or(Value::Null),
        extra,
    }
}
