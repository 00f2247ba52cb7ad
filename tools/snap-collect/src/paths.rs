//! Keeping the store's path index (snap_shared::pathindex) up to a set's
//! snapshots as each is made, so that search and history in
//! `snap-restore serve` never wait for a set to be folded in.
//!
//! The path index is a cache of the indexes: when it cannot be updated, it
//! is removed (the next reader rebuilds it) and the snapshot stands.

use snap_cli::Reporter;
use snap_shared::catalog::Catalog;
use snap_shared::pathindex;
use snap_shared::store::Store;

/// Folds `set`'s new snapshots into the path index; on failure, removes it
/// and says so.
pub fn update(store: &Store, catalog: Option<&Catalog>, set: &str, report: &Reporter) {
    let done = catalog
        .ok_or_else(|| "the catalog is unreadable".to_string())
        .and_then(|c| c.snapshots(Some(set)).map_err(|e| e.to_string()))
        .and_then(|snaps| {
            pathindex::with_paths(store, |ix| ix.refresh(store, set, &snaps))
                .map_err(|e| e.to_string())
        });
    match done {
        Ok(((), Some(w))) => report.warn(&w),
        Ok(((), None)) => {}
        Err(e) => {
            pathindex::invalidate(store);
            report.warn(&format!(
                "path index not updated ({e}); the snapshot is safe, and the index will be rebuilt by the next search"
            ));
        }
    }
}
