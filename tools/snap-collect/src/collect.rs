//! Collecting one set into a new snapshot.
//!
//! The walk and the previous snapshot's index are merged in one pass: a file
//! whose size, mtime, mode and owner match the previous entry is hard-linked
//! from the previous tree (its digest taken from the index); any other file is
//! copied and hashed in the same read. Everything is built in
//! `.<id>.partial/` and published in an order that a crash at any instant
//! leaves either no snapshot or a whole one (see [`publish`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crossbeam_channel::bounded;
use rustix::fs::CWD;

use snap_shared::error::{Error, Result};
use snap_shared::fsutil::{self, publish_new, remove_tree, temp_name};
use snap_shared::index::IndexWriter;
use snap_shared::record::{Extra, SCHEMA, SnapshotRecord};
use snap_shared::size::{Floor, human_bytes};
use snap_shared::store::Store;

use crate::commit::Committer;
use crate::decide::{Decider, open_dir, open_dir_path, racy_from};
use crate::items::{Chunk, Counts};
use crate::prev::Previous;
use crate::sources::SetPlan;
use crate::space::SpaceGuard;
use crate::walk::Walker;
use crate::work::{Ctx, store_err};
use snap_cli::Reporter;

/// How to collect, beyond what the set says.
#[derive(Debug, Clone)]
pub struct Options {
    pub checksum: bool,
    pub description: Option<String>,
    pub floor: Floor,
}

/// Finishes work a crash interrupted: removes unfinished snapshots and completes
/// a publication that stopped between its last two renames. Returns the ids it
/// completed. Runs under the store lock, so nothing here is another run's work.
pub fn recover(store: &Store, set: &str, report: &Reporter) -> Result<Vec<String>> {
    let dir = store.set_dir(set);
    let names = match fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut completed = Vec::new();
    for name in &names {
        let path = dir.join(name);
        if let Some(id) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
        {
            report.note(&format!("set {set}: removing unfinished snapshot {id}"));
            remove_tree(&path).map_err(|e| Error::io(&path, e))?;
        } else if let Some(id) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".json.pending"))
        {
            let record = store.record_path(set, id);
            if store.snapshot_dir(set, id).is_dir() && !record.exists() {
                publish_new(&path, &record).map_err(|e| Error::io(&record, e))?;
                report.note(&format!("set {set}: finished publishing snapshot {id}"));
                completed.push(id.to_string());
            } else {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        } else if name.starts_with('.') && name.contains(".tmp.") {
            let _ = fs::remove_file(&path);
        }
    }
    // Indexes whose snapshot never got its record.
    for name in &names {
        if let Some(id) = name.strip_suffix(".index.zst")
            && snap_shared::id::is_id(id)
            && !store.record_path(set, id).exists()
            && !store.snapshot_dir(set, id).exists()
        {
            let _ = fs::remove_file(dir.join(name));
        }
    }
    Ok(completed)
}

/// Collects one set into a new snapshot and returns its record.
pub fn collect_set(
    store: &Store,
    plan: &SetPlan,
    opts: &Options,
    report: &Reporter,
) -> Result<SnapshotRecord> {
    let started = Instant::now();
    let set = &plan.name;
    let set_dir = store.set_dir(set);
    fsutil::create_private_dir(&set_dir).map_err(|e| Error::io(&set_dir, e))?;
    // The previous snapshot's record, read once: its cost predicts this run's,
    // and its start time bounds which of its mtimes can be trusted.
    let (parent, damaged) = store.newest_readable(set)?;
    for e in &damaged {
        report.error(&format!(
            "{}: {}; stepped over (its tree is still there), {}",
            e.context,
            e.cause,
            match &parent {
                Some(p) => format!("the new snapshot builds on {}", p.id),
                None => "the new snapshot is a full copy".into(),
            }
        ));
    }
    let clock = Utc::now();
    let (created, behind) =
        snap_shared::id::after_parent(clock, parent.as_ref().map(|p| p.id.as_str()));
    if let (Some(behind), Some(p)) = (behind, &parent) {
        report.warn(&format!(
            "set {set}: the clock ({}) is {} behind the newest snapshot {}: this snapshot is \
             dated one second after it, so it sorts after its parent (check the clock: NTP, \
             the RTC battery, a restored VM)",
            clock.format("%Y-%m-%d %H:%M:%S UTC"),
            snap_shared::size::human_duration(behind.to_std().unwrap_or_default()),
            p.id
        ));
    }
    let id = snap_shared::id::free_id(created, |id| {
        store.record_path(set, id).exists()
            || store.snapshot_dir(set, id).exists()
            || store.index_path(set, id).exists()
    });
    let space = SpaceGuard::check(store, opts.floor, parent.as_ref(), report)?;
    let partial = store.partial_dir(set, &id);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .map_err(|e| store_err(&partial, e))?;
    let index_final = store.index_path(set, &id);
    let index_tmp = temp_name(&index_final, "tmp");
    let result = build(
        store,
        plan,
        opts,
        report,
        parent.as_ref(),
        &partial,
        &index_tmp,
        &space,
    )
    .and_then(|(stats, index_file)| {
        finish_index(index_file, &index_tmp)?;
        let parent_id = parent.map(|p| p.id);
        let mut record = make_record(store, plan, opts, &id, created, parent_id, stats, started);
        if behind.is_some() {
            record
                .extra
                .insert("clock".into(), serde_json::json!(clock));
        }
        if !damaged.is_empty() {
            let n = damaged_in_store(&record).unwrap_or(0) + damaged.len() as u64;
            record.extra.insert("damaged_in_store".into(), n.into());
        }
        if let Some(c) = record
            .parent
            .as_ref()
            .and_then(|p| changes(store, set, p, &index_tmp))
        {
            record.extra.insert("changes".into(), serde_json::json!(c));
        }
        publish(store, set, &id, &partial, &index_tmp, &record)?;
        Ok(record)
    });
    if result.is_err() {
        let _ = remove_tree(&partial);
        let _ = fs::remove_file(&index_tmp);
    }
    result
}

/// What changed since the parent snapshot, entry by entry (added, removed,
/// modified, type, metadata), for the timeline's cards: one merge pass over
/// both indexes. An unreadable parent index only means no counts.
fn changes(
    store: &Store,
    set: &str,
    parent: &str,
    index: &std::path::Path,
) -> Option<snap_shared::index::ChangeCounts> {
    use snap_shared::index::{ChangeCounts, IndexReader};
    let old = IndexReader::open(&store.index_path(set, parent)).ok()?;
    let new = IndexReader::open(index).ok()?;
    ChangeCounts::between(old, new).ok()
}

/// Raises the soft open-files limit to the hard one: the pipeline keeps a
/// few thousand folders open at most, more than the usual soft limit of 1024.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum.map(|m| m.min(1 << 20));
        let _ = setrlimit(Resource::Nofile, lim);
    }
}

/// Runs the pipeline: this thread walks and decides, workers link and copy,
/// a committer writes the index in order.
#[allow(clippy::too_many_arguments)]
fn build(
    store: &Store,
    plan: &SetPlan,
    opts: &Options,
    report: &Reporter,
    parent: Option<&SnapshotRecord>,
    partial: &Path,
    index_tmp: &Path,
    space: &SpaceGuard,
) -> Result<(Counts, BufWriter<File>)> {
    raise_fd_limit();
    let racy = parent.map_or(i64::MAX, |p| racy_from(p.created));
    let (prev, root_prev) = match parent {
        Some(p) => {
            let dir = store.snapshot_dir(&plan.name, &p.id);
            let fd = open_dir_path(CWD, &dir).map_err(|e| Error::io(&dir, e))?;
            let index = Previous::open(&store.index_path(&plan.name, &p.id));
            (Some(index), Some(Arc::new(fd)))
        }
        None => (None, None),
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(index_tmp)
        .map_err(|e| store_err(index_tmp, e))?;
    // Block digests go into the set's content-addressed pages: an unchanged
    // big file names its parent's, and costs the index nothing new.
    let pages = snap_shared::blockpages::dir_of(&store.set_dir(&plan.name));
    let index = IndexWriter::new(BufWriter::with_capacity(256 * 1024, file))
        .map_err(|e| store_err(index_tmp, e))?
        .with_pages(pages);
    let root_new = Arc::new(open_dir(CWD, partial).map_err(|e| store_err(partial, e))?);
    let prev_tree = parent.map(|p| store.snapshot_dir(&plan.name, &p.id));
    let ctx = Ctx {
        partial,
        prev_tree: prev_tree.as_deref(),
        checksum: opts.checksum,
        as_root: rustix::process::geteuid().is_root(),
        report,
        space,
    };
    let store_root = fs::canonicalize(&store.root).ok();
    let walker = Walker::new(plan, store_root)?;
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = bounded::<Chunk>(workers * 2);
        let (done_tx, done_rx) = bounded::<Result<Chunk>>(workers * 2);
        for _ in 0..workers {
            let (rx, tx, ctx) = (job_rx.clone(), done_tx.clone(), &ctx);
            scope.spawn(move || {
                for chunk in rx {
                    let result = ctx.run_chunk(chunk);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop((job_rx, done_tx));
        let estimate = parent.map(|p| (p.files, p.bytes));
        let committer = Committer::new(&ctx, &plan.name, root_new.clone(), index, estimate);
        let commit = scope.spawn(move || -> Result<Committer> {
            let mut committer = committer;
            for chunk in done_rx {
                committer.accept(chunk?)?;
            }
            Ok(committer)
        });
        let decided = Decider::new(&ctx, racy, root_new, root_prev, prev, job_tx).run(walker);
        let committed = commit.join().expect("the committer does not panic");
        let committer = match (decided, committed) {
            (Ok(chunks), Ok(c)) if c.is_complete(chunks) => c,
            (Ok(_), Ok(_)) => return Err(Error::internal("collect", "a chunk of work was lost")),
            // The committer's error is the cause when the decider only saw the pipeline close.
            (_, Err(e)) => return Err(e),
            (Err(e), _) => return Err(e),
        };
        committer.finish().map_err(|e| store_err(index_tmp, e))
    })
}

fn finish_index(mut file: BufWriter<File>, path: &Path) -> Result<()> {
    file.flush().map_err(|e| store_err(path, e))?;
    let file = file
        .into_inner()
        .map_err(|e| store_err(path, e.into_error()))?;
    file.sync_all().map_err(|e| store_err(path, e))
}

#[allow(clippy::too_many_arguments)]
fn make_record(
    store: &Store,
    plan: &SetPlan,
    opts: &Options,
    id: &str,
    created: DateTime<Utc>,
    parent: Option<String>,
    stats: Counts,
    started: Instant,
) -> SnapshotRecord {
    let mut extra = Extra::new();
    extra.insert("dirs".into(), stats.dirs.into());
    extra.insert("linked_files".into(), stats.linked.into());
    if stats.damaged > 0 {
        extra.insert("damaged_in_store".into(), stats.damaged.into());
    }
    // A restore onto another machine's home maps this one onto it (snap-read's homemap).
    if let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from)
        && home.is_absolute()
        && home.parent().is_some()
    {
        extra.insert("home".into(), home.display().to_string().into());
    }
    extra.insert(
        "duration_s".into(),
        serde_json::json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
    );
    SnapshotRecord {
        schema: SCHEMA.into(),
        set: plan.name.clone(),
        id: id.to_string(),
        host: snap_shared::hostname(),
        created,
        store: store.root.display().to_string(),
        path: store.snapshot_dir(&plan.name, id).display().to_string(),
        index: store.index_path(&plan.name, id).display().to_string(),
        parent,
        sources: plan
            .sources
            .iter()
            .map(|s| s.abs.display().to_string())
            .collect(),
        files: stats.files,
        bytes: stats.bytes,
        new_files: stats.new_files,
        new_bytes: stats.new_bytes,
        errors: stats.errors,
        tags: plan.tags.clone(),
        description: opts.description.clone(),
        extra,
    }
}

/// Publishes a built snapshot. The order makes every crash point safe:
/// 1. all data is flushed (`syncfs`), 2. the index gets its name,
/// 3. the record is written as `.<id>.json.pending`, 4. the tree gets its name,
/// 5. the record gets its name: from here the snapshot exists. A crash before
///    4 leaves a partial (removed by the next run); between 4 and 5 the next
///    run finishes step 5 ([`recover`]). Then `latest` is swapped.
fn publish(
    store: &Store,
    set: &str,
    id: &str,
    partial: &Path,
    index_tmp: &Path,
    record: &SnapshotRecord,
) -> Result<()> {
    fsutil::syncfs(partial).map_err(|e| store_err(partial, e))?;
    let index = store.index_path(set, id);
    publish_new(index_tmp, &index).map_err(|e| store_err(&index, e))?;
    let record_path = store.record_path(set, id);
    let pending = store.set_dir(set).join(format!(".{id}.json.pending"));
    let json = serde_json::to_string_pretty(&snap_shared::record::Record::Snapshot(record.clone()))
        .map_err(|e| Error::internal("record", e))?;
    fsutil::write_atomic(&pending, 0o600, false, |f| f.write_all(json.as_bytes()))
        .map_err(|e| store_err(&pending, e))?;
    let tree = store.snapshot_dir(set, id);
    publish_new(partial, &tree).map_err(|e| store_err(&tree, e))?;
    publish_new(&pending, &record_path).map_err(|e| store_err(&record_path, e))?;
    update_latest(store, set)
}

/// Points `latest` at the newest snapshot of the set.
pub fn update_latest(store: &Store, set: &str) -> Result<()> {
    store
        .update_latest(set)
        .map_err(|e| store_err(&store.latest_link(set), e))
}

/// How many things a collect found damaged in the store, if any: stored
/// copies (`--checksum`, copied afresh) and unreadable records of the set
/// (stepped over). The run then exits 1: the snapshot is whole, the store
/// is not.
pub fn damaged_in_store(rec: &SnapshotRecord) -> Option<u64> {
    rec.extra
        .get("damaged_in_store")
        .and_then(|v| v.as_u64())
        .filter(|n| *n > 0)
}

/// The one-line summary of a finished snapshot.
pub fn summary(rec: &SnapshotRecord) -> String {
    let linked = rec
        .extra
        .get("linked_files")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    let secs = rec
        .extra
        .get("duration_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let mut s = format!(
        "set {}: snapshot {}: {} files, {}; {} copied ({}), {} hard-linked",
        rec.set,
        rec.id,
        rec.files,
        human_bytes(rec.bytes),
        rec.new_files,
        human_bytes(rec.new_bytes),
        linked,
    );
    if rec.errors > 0 {
        s.push_str(&format!(", {} unreadable", rec.errors));
    }
    if let Some(n) = damaged_in_store(rec) {
        s.push_str(&format!(", {n} damaged in the store (named above)"));
    }
    s.push_str(&format!(" in {secs:.1} s"));
    s
}
