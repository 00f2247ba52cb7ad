//! The catalog check: after a run, the catalog's rows are the records on
//! disk, no more and no fewer (the catalog is rebuildable, but a row that
//! fell behind would show a snapshot that is gone, or hide one that is there).

use std::collections::BTreeSet;
use std::path::Path;

use snap_shared::catalog::Catalog;
use snap_shared::store::Store;

use crate::sweep::Check;

type Rows = BTreeSet<(String, String, String)>;

fn rows(path: &Path) -> Result<Rows, String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stmt = conn
        .prepare("SELECT kind, target, id FROM records")
        .map_err(|e| e.to_string())?;
    let found = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(|e| e.to_string())?;
    found.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// The store's catalog (when there is one) holds exactly its records.
pub fn agrees(store: &Path) -> Check {
    let path = store.join("catalog.sqlite");
    if !path.exists() {
        return Ok(());
    }
    let have = rows(&path)?;
    let fresh = tempfile::tempdir().map_err(|e| e.to_string())?;
    let fresh_path = fresh.path().join("catalog.sqlite");
    let mut cat = Catalog::open_path(&fresh_path).map_err(|e| e.to_string())?;
    cat.rebuild(&Store::new(store)).map_err(|e| e.to_string())?;
    drop(cat);
    let want = rows(&fresh_path)?;
    if let Some(extra) = have.difference(&want).next() {
        return Err(format!("the catalog lists {extra:?}, which has no record"));
    }
    if let Some(missing) = want.difference(&have).next() {
        return Err(format!(
            "the catalog lacks {missing:?}, whose record is there"
        ));
    }
    Ok(())
}
