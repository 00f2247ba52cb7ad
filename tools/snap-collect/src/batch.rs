//! Collecting planned sets under the store's lock, the way every run does
//! it: the store made if need be, a crashed run's work finished first, each
//! new snapshot put in the catalog and folded into the path index. The
//! command line collects its sets through it, and snap-restore the undo
//! snapshot it takes before a restore replaces or deletes anything.

use std::path::PathBuf;

use snap_cli::Reporter;
use snap_shared::catalog::Catalog;
use snap_shared::error::{Error, Result};
use snap_shared::lock::StoreLock;
use snap_shared::record::SnapshotRecord;
use snap_shared::size::Floor;
use snap_shared::store::Store;

use crate::{TOOL, collect, paths, sources};

/// Collects each plan into `store`, giving each record to `each`; returns
/// the entries that could not be read or were found damaged in the store.
pub fn collect_plans(
    store: &Store,
    plans: &[sources::SetPlan],
    opts: &collect::Options,
    report: &Reporter,
    mut each: impl FnMut(SnapshotRecord) -> Result<()>,
) -> Result<u64> {
    store.create()?;
    refuse_sources_in_store(store, plans)?;
    let _lock = StoreLock::acquire(&store.lock_path(), TOOL)?;
    // The catalog only indexes the records; a broken one must not stop a backup.
    let catalog = match Catalog::open(store) {
        Ok((catalog, warning)) => {
            if let Some(w) = warning {
                report.warn(&w);
            }
            Some(catalog)
        }
        Err(e) => {
            report.warn(&format!(
                "{e}; snapshots are still made, the catalog is not updated"
            ));
            None
        }
    };
    let put = |record: &SnapshotRecord| {
        if let Some(Err(e)) = catalog.as_ref().map(|c| c.put_snapshot(record)) {
            Catalog::invalidate(store);
            report.warn(&format!(
                "{e}; the snapshot is safe, and the catalog will be rebuilt from the records"
            ));
        }
        paths::update(store, catalog.as_ref(), &record.set, report);
    };
    let mut errors = 0;
    for plan in plans {
        for id in collect::recover(store, &plan.name, report)? {
            put(&store.read_record(&plan.name, &id)?);
            collect::update_latest(store, &plan.name)?;
        }
        let record = collect::collect_set(store, plan, opts, report)?;
        put(&record);
        report.note(&collect::summary(&record));
        errors += record.errors + collect::damaged_in_store(&record).unwrap_or(0);
        each(record)?;
    }
    Ok(errors)
}

/// A snapshot of `paths` as set `name` (snap-restore's undo): tagged,
/// described, and whole, or an error: an entry that could not be read
/// fails it, since what it keeps is about to be replaced.
pub fn snapshot_paths(
    store: &Store,
    name: &str,
    paths: &[PathBuf],
    tags: &[String],
    description: &str,
    floor: Floor,
    report: &Reporter,
) -> Result<SnapshotRecord> {
    let req = sources::Request {
        config: None,
        sets: &[],
        adhoc_name: Some(name),
        paths,
        excludes: &[],
        one_file_system: false,
        tags,
    };
    let (plans, _folded) = sources::plan(&req)?;
    let opts = collect::Options {
        checksum: false,
        description: Some(description.to_string()),
        floor,
    };
    let mut made = None;
    let errors = collect_plans(store, &plans, &opts, report, |r| {
        made = Some(r);
        Ok(())
    })?;
    let record = made.ok_or_else(|| Error::usage(format!("set {name}"), "nothing to keep"))?;
    if errors > 0 {
        return Err(Error::new(
            snap_shared::error::Exit::Partial,
            format!("snapshot {}/{}", record.set, record.id),
            format!("{errors} entries could not be kept; nothing was restored"),
        ));
    }
    Ok(record)
}

/// A source inside the store would walk the snapshot being built; refuse it.
/// (The opposite, the store inside a source, is fine: the walk skips the store.)
fn refuse_sources_in_store(store: &Store, plans: &[sources::SetPlan]) -> Result<()> {
    let root = std::fs::canonicalize(&store.root).map_err(|e| Error::io(&store.root, e))?;
    for plan in plans {
        if let Some(src) = plan.sources.iter().find(|s| s.abs.starts_with(&root)) {
            return Err(Error::usage(
                format!("set {}: source {}", plan.name, src.abs.display()),
                format!("is inside the store {}", root.display()),
            )
            .with_hint(
                "snapshots are already in the store; pick a source outside it or another --store",
            ));
        }
    }
    Ok(())
}
