//! The path index: every path each set's snapshots held, and its versions,
//! so that search by name and the history of one path answer without
//! decompressing one index per snapshot.
//!
//! It is an SQLite file of its own, `<store>/paths.sqlite`, beside the
//! catalog rather than inside it: it is rebuilt from every snapshot's index
//! (minutes on a big store) where the catalog is rebuilt from the records
//! (seconds), and a damaged path index must never make the listing unusable.
//! Like the catalog, it is never the only copy of anything.
//!
//! A path's versions are rows `(path, since, entry)`: the entry the path had
//! from the snapshot `since` on, until the path's next row (a gone path has
//! a row without an entry). A new snapshot adds rows only for what changed,
//! and removing a snapshot changes no row: the version of a path in any
//! snapshot left is still the last row at or before it ([`fold`]).
//!
//! It is never trusted further than it can be checked:
//! - each snapshot folded in is remembered with its index file's size,
//!   modification time and inode; a snapshot whose index no longer matches,
//!   or one that sorts before the newest folded one (an import), has the
//!   set folded again from its indexes;
//! - a file SQLite finds damaged, or a row that does not parse, has the
//!   whole file moved aside and rebuilt ([`with_paths`]).

mod fold;
mod query;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use crate::error::{Error, Exit, Result};
use crate::store::Store;

pub use query::{Found, History};

/// The schema; a file of another version is rebuilt.
const VERSION: i64 = 2;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS folded (
        set_name TEXT NOT NULL,
        id       TEXT NOT NULL,
        created  TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        stamp    TEXT NOT NULL,
        PRIMARY KEY (set_name, id)
    );
    CREATE TABLE IF NOT EXISTS paths (
        pid      INTEGER PRIMARY KEY,
        set_name TEXT NOT NULL,
        path     BLOB NOT NULL,
        name     TEXT NOT NULL,
        UNIQUE (set_name, path)
    );
    CREATE TABLE IF NOT EXISTS versions (
        pid   INTEGER NOT NULL,
        since INTEGER NOT NULL,
        entry TEXT,
        PRIMARY KEY (pid, since)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS current (
        pid   INTEGER PRIMARY KEY,
        entry TEXT NOT NULL
    );";

/// An open path index.
pub struct PathIndex {
    conn: Connection,
}

fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::new(Exit::Io, format!("path index {}", path.display()), e)
}

/// Whether an error says the file is damaged (then it is rebuilt).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// What went wrong inside an operation: damage (rebuild) or anything else.
#[derive(Debug)]
pub(crate) enum Fault {
    Damage(String),
    Other(Error),
}

impl From<rusqlite::Error> for Fault {
    fn from(e: rusqlite::Error) -> Fault {
        if is_damage(&e) {
            Fault::Damage(e.to_string())
        } else {
            Fault::Other(Error::new(Exit::Io, "path index", e))
        }
    }
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::Other(e)
    }
}

impl Fault {
    /// The error a caller sees; damage keeps the `path index` context that
    /// [`with_paths`] rebuilds on.
    pub(crate) fn into_error(self) -> Error {
        match self {
            Fault::Damage(why) => Error::data("path index", why),
            Fault::Other(e) => e,
        }
    }
}

pub(crate) type Res<T> = std::result::Result<T, Fault>;

impl PathIndex {
    fn open_path(path: &Path) -> Res<PathIndex> {
        let conn = Connection::open(path).map_err(|e| Fault::Other(db_err(path, e)))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Rows are rebuildable from the indexes: a power cut may lose the
        // last ones (the stamps then say what is missing), never consistency.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tables: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 && version != VERSION {
            return Err(Fault::Damage(format!(
                "schema version {version}, this snap writes {VERSION}"
            )));
        }
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", VERSION)?;
        Ok(PathIndex { conn })
    }
}

/// Runs `f` on the store's path index, made when missing. When the file
/// turns out damaged, anywhere in `f`, it is moved aside (`.damaged-TIME`)
/// and `f` runs again on one rebuilt from the indexes; the warning to print
/// says so.
pub fn with_paths<T>(
    store: &Store,
    mut f: impl FnMut(&mut PathIndex) -> Result<T>,
) -> Result<(T, Option<String>)> {
    let path = store.paths_index_path();
    let mut warning = None;
    for attempt in 0..2 {
        let run = PathIndex::open_path(&path).and_then(|mut ix| {
            f(&mut ix).map_err(|e| match e.exit {
                Exit::Data if e.context.starts_with("path index") => Fault::Damage(e.cause.clone()),
                _ => Fault::Other(e),
            })
        });
        match run {
            Ok(t) => return Ok((t, warning)),
            Err(Fault::Other(e)) => return Err(e),
            Err(Fault::Damage(why)) if attempt == 0 => {
                let aside = path.with_extension(format!(
                    "sqlite.damaged-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ));
                std::fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
                for ext in ["sqlite-wal", "sqlite-shm"] {
                    let _ = std::fs::remove_file(path.with_extension(ext));
                }
                warning = Some(format!(
                    "path index {} was damaged or made by another snap ({why}); rebuilt it from the snapshots' indexes, old file kept as {}",
                    path.display(),
                    aside.display()
                ));
            }
            Err(Fault::Damage(why)) => {
                return Err(Error::data(
                    format!("path index {}", path.display()),
                    format!("damaged again after a rebuild: {why}"),
                ));
            }
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// Removes the path index, so that the next reader rebuilds it (after an
/// update that failed half way, say). It is never the only copy of anything.
pub fn invalidate(store: &Store) {
    let path = store.paths_index_path();
    for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
        let _ = std::fs::remove_file(path.with_extension(ext));
    }
}

/// A row that does not parse: the file is damaged.
pub(crate) fn bad_row(what: impl std::fmt::Display) -> Error {
    Error::data("path index", format!("a row does not parse: {what}"))
}

#[cfg(test)]
mod tests;
