//! The catalog: an SQLite index of every record in the store.
//!
//! It makes listing fast and answers queries across sets, but it is never the
//! only copy of anything: every row is also a `.json` file beside the data, and
//! [`Catalog::rebuild`] recreates the catalog from those files. A missing
//! catalog is rebuilt on open; a corrupt one is moved aside and rebuilt.
//! WAL mode lets readers work while a tool writes.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Exit, Result};
use crate::record::{ArchiveRecord, DiskSnapshotRecord, SnapshotRecord};
use crate::store::Store;

/// Schema migrations, applied in order; the schema version is their count.
const MIGRATIONS: &[&str] = &[
    // 1: one row per record, whatever its kind.
    "CREATE TABLE records (
        kind    TEXT NOT NULL,
        target  TEXT NOT NULL,
        id      TEXT NOT NULL,
        created TEXT NOT NULL,
        record  TEXT NOT NULL,
        PRIMARY KEY (kind, target, id)
    );
    CREATE INDEX records_created ON records (kind, target, created);",
];

pub struct Catalog {
    conn: Connection,
}

fn db_err(path: &Path, e: rusqlite::Error) -> Error {
    Error::new(Exit::Io, format!("catalog {}", path.display()), e)
}

impl Catalog {
    /// Opens the store's catalog, creating and filling it from the files if it is
    /// missing, and rebuilding it (the old file kept aside) if it is unreadable.
    /// Returns the catalog and a warning to print, if any.
    pub fn open(store: &Store) -> Result<(Catalog, Option<String>)> {
        let path = store.catalog_path();
        let existed = path.exists();
        match Self::open_path(&path) {
            Ok(mut cat) if existed => {
                cat.reconcile(store)?;
                Ok((cat, None))
            }
            Ok(mut cat) => {
                cat.rebuild(store)?;
                Ok((cat, None))
            }
            Err(e) if e.exit == Exit::Config => Err(e),
            Err(e) => {
                let aside = path.with_extension(format!(
                    "sqlite.corrupt-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                ));
                std::fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
                for ext in ["sqlite-wal", "sqlite-shm"] {
                    let _ = std::fs::remove_file(path.with_extension(ext));
                }
                let mut cat = Self::open_path(&path)?;
                cat.rebuild(store)?;
                let warning = format!(
                    "catalog {} was unreadable ({}); rebuilt it from the records, old file kept as {}",
                    path.display(),
                    e.cause,
                    aside.display()
                );
                Ok((cat, Some(warning)))
            }
        }
    }

    /// Removes a catalog that fell behind the records (a failed update), so the
    /// next [`Catalog::open`] rebuilds it. It is never the only copy of anything.
    pub fn invalidate(store: &Store) {
        let path = store.catalog_path();
        for ext in ["sqlite", "sqlite-wal", "sqlite-shm"] {
            let _ = std::fs::remove_file(path.with_extension(ext));
        }
    }

    /// Opens (or creates) a catalog file and brings its schema up to date.
    /// The catalog for a writer that only puts or removes the rows of what
    /// it changed: an existing catalog is not reconciled first (every
    /// reader's [`Catalog::open`] reconciles), so a snapshot's bookkeeping
    /// does not grow with the store. A missing or unreadable one is opened
    /// as [`Catalog::open`] does.
    pub fn open_to_change(store: &Store) -> Result<(Catalog, Option<String>)> {
        let path = store.catalog_path();
        if path.exists()
            && let Ok(cat) = Self::open_path(&path)
        {
            return Ok((cat, None));
        }
        Self::open(store)
    }

    pub fn open_path(path: &Path) -> Result<Catalog> {
        let conn = Connection::open(path).map_err(|e| db_err(path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| db_err(path, e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db_err(path, e))?;
        // A commit need not wait for a flush: a power cut may lose the last
        // rows, never the database's consistency, and rows are rebuildable
        // from the records (which are flushed).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| db_err(path, e))?;
        let mut cat = Catalog { conn };
        cat.migrate()
            .map_err(|e| e.within(format!("catalog {}", path.display())))?;
        Ok(cat)
    }

    fn migrate(&mut self) -> Result<()> {
        let sql = |e: rusqlite::Error| Error::new(Exit::Io, "", e);
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .map_err(sql)?;
        let version: Option<i64> = tx
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        let version = version.unwrap_or(0) as usize;
        if version > MIGRATIONS.len() {
            return Err(Error::config(
                "",
                format!(
                    "schema version {version} is newer than this snap knows ({})",
                    MIGRATIONS.len()
                ),
            )
            .with_hint(
                "use a newer snap, or move the catalog aside: it is rebuilt from the records",
            ));
        }
        for migration in &MIGRATIONS[version..] {
            tx.execute_batch(migration).map_err(sql)?;
        }
        tx.execute("DELETE FROM schema_version", []).map_err(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            params![MIGRATIONS.len() as i64],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Adds or replaces a snapshot's row.
    pub fn put_snapshot(&self, rec: &SnapshotRecord) -> Result<()> {
        insert_snapshot(&self.conn, rec)
    }

    /// Adds or replaces an archive's row (archives in the store's `archives/`).
    pub fn put_archive(&self, rec: &ArchiveRecord) -> Result<()> {
        insert_archive(&self.conn, rec)
    }

    /// Adds or replaces a disk snapshot's row (target: the disk, id: the snapshot's name).
    pub fn put_disk_snapshot(&self, rec: &DiskSnapshotRecord) -> Result<()> {
        insert_disk_snapshot(&self.conn, rec)
    }

    /// The disk snapshot records of a disk (all disks when `None`), oldest first.
    pub fn disk_snapshots(&self, disk: Option<&str>) -> Result<Vec<DiskSnapshotRecord>> {
        self.records("disk-snapshot", disk)
    }

    /// Removes a row (`kind` is `snapshot`, `archive` or `disk-snapshot`); a missing row is fine.
    pub fn remove(&self, kind: &str, set: &str, id: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM records WHERE kind = ?1 AND target = ?2 AND id = ?3",
                params![kind, set, id],
            )
            .map_err(|e| Error::new(Exit::Io, "catalog", e))?;
        Ok(())
    }

    /// The archive records of a set (all sets when `None`), oldest first.
    pub fn archives(&self, set: Option<&str>) -> Result<Vec<ArchiveRecord>> {
        self.records("archive", set)
    }

    /// The snapshot records of a set (all sets when `None`), oldest first.
    pub fn snapshots(&self, set: Option<&str>) -> Result<Vec<SnapshotRecord>> {
        self.records("snapshot", set)
    }

    /// The records of one kind, of one target (all when `None`), by target, then time.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        kind: &str,
        target: Option<&str>,
    ) -> Result<Vec<T>> {
        let err = |e: rusqlite::Error| Error::new(Exit::Io, "catalog", e);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT record FROM records WHERE kind = ?1
                 AND (?2 IS NULL OR target = ?2) ORDER BY target, created, id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![kind, target], |r| r.get::<_, String>(0))
            .map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(err)?;
            out.push(serde_json::from_str(&text).map_err(|e| Error::data("catalog row", e))?);
        }
        Ok(out)
    }

    /// The (kind, target, id) of every row.
    fn keys(&self) -> Result<BTreeSet<Key>> {
        let err = |e: rusqlite::Error| Error::new(Exit::Io, "catalog", e);
        let mut stmt = self
            .conn
            .prepare("SELECT kind, target, id FROM records")
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(err)?;
        rows.collect::<std::result::Result<_, _>>().map_err(err)
    }

    /// Brings the rows in step with the records: a row whose record is gone
    /// is dropped, a record without a row is read and added. A tool killed
    /// between a record and its row, or a power cut that lost the last rows
    /// (commits are not flushed), leaves the catalog behind the records;
    /// every tool opens it through here, so it never stays behind. Costs a
    /// listing of the record folders. Returns how many rows changed.
    pub fn reconcile(&mut self, store: &Store) -> Result<usize> {
        let err = |e: rusqlite::Error| Error::new(Exit::Io, "catalog", e);
        let on_disk = keys_on_disk(store)?;
        let have = self.keys()?;
        let missing: Vec<&Key> = on_disk.difference(&have).collect();
        let extra: Vec<&Key> = have.difference(&on_disk).collect();
        if missing.is_empty() && extra.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction().map_err(err)?;
        for (kind, target, id) in &extra {
            tx.execute(
                "DELETE FROM records WHERE kind = ?1 AND target = ?2 AND id = ?3",
                params![kind, target, id],
            )
            .map_err(err)?;
        }
        for key in &missing {
            match insert_key(&tx, store, key) {
                // A damaged record has no row; the tools that read it name it.
                Err(e) if e.exit == Exit::Data => {}
                other => other?,
            }
        }
        tx.commit().map_err(err)?;
        Ok(missing.len() + extra.len())
    }

    /// Empties the catalog and fills it from the `.json` records in the store.
    /// Returns how many records it added.
    pub fn rebuild(&mut self, store: &Store) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM records WHERE kind IN ('snapshot', 'archive', 'disk-snapshot')",
                [],
            )
            .map_err(|e| Error::new(Exit::Io, "catalog rebuild", e))?;
        self.reconcile(store)
    }
}

/// A row's key: kind, target (set or disk), id (or a disk snapshot's name).
type Key = (String, String, String);

/// The records in the store, by key, from the names of their files alone
/// (a record is read only when its row is missing).
fn keys_on_disk(store: &Store) -> Result<BTreeSet<Key>> {
    let mut keys = BTreeSet::new();
    for set in store.sets()? {
        for id in store.snapshot_ids(&set)? {
            keys.insert(("snapshot".to_string(), set.clone(), id));
        }
    }
    for set in crate::store::read_names(&store.archives_dir())? {
        for id in crate::archive::archive_ids(&store.archive_dir(&set))? {
            keys.insert(("archive".to_string(), set.clone(), id));
        }
    }
    for disk in crate::disks::disk_names(store)? {
        for name in crate::disks::DiskDir::new(store, &disk).snapshot_names()? {
            keys.insert(("disk-snapshot".to_string(), disk.clone(), name));
        }
    }
    Ok(keys)
}

/// Reads the record of `key` and adds its row.
fn insert_key(conn: &Connection, store: &Store, key: &Key) -> Result<()> {
    let (kind, target, id) = key;
    match kind.as_str() {
        "snapshot" => insert_snapshot(conn, &store.read_record(target, id)?),
        "archive" => {
            let files = crate::archive::ArchiveFiles::new(store.archive_dir(target), id);
            insert_archive(conn, &crate::archive::read_record(&files.record())?)
        }
        _ => insert_disk_snapshot(conn, &crate::disks::DiskDir::new(store, target).record(id)?),
    }
}

/// Adds or replaces a snapshot's row (on the catalog or inside a transaction).
fn insert_snapshot(conn: &Connection, rec: &SnapshotRecord) -> Result<()> {
    let json = serde_json::to_string(rec).map_err(|e| Error::internal("catalog", e))?;
    insert(
        conn,
        "snapshot",
        &rec.set,
        &rec.id,
        &rec.created.to_rfc3339(),
        &json,
    )
}

/// Adds or replaces an archive's row; its time is its id's (the snapshot's).
fn insert_archive(conn: &Connection, rec: &ArchiveRecord) -> Result<()> {
    let json = serde_json::to_string(rec).map_err(|e| Error::internal("catalog", e))?;
    let created = crate::id::parse_id(&rec.id)
        .map(|(t, _)| t.to_rfc3339())
        .unwrap_or_default();
    insert(conn, "archive", &rec.set, &rec.id, &created, &json)
}

/// Adds or replaces a disk snapshot's row.
fn insert_disk_snapshot(conn: &Connection, rec: &DiskSnapshotRecord) -> Result<()> {
    let json = serde_json::to_string(rec).map_err(|e| Error::internal("catalog", e))?;
    insert(
        conn,
        "disk-snapshot",
        &rec.disk,
        &rec.name,
        &rec.created.to_rfc3339(),
        &json,
    )
}

fn insert(
    conn: &Connection,
    kind: &str,
    target: &str,
    id: &str,
    created: &str,
    json: &str,
) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO records (kind, target, id, created, record)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kind, target, id, created, json],
    )
    .map_err(|e| Error::new(Exit::Io, "catalog", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Extra;

    fn record(set: &str, id: &str) -> SnapshotRecord {
        SnapshotRecord {
            schema: crate::record::SCHEMA.into(),
            set: set.into(),
            id: id.into(),
            host: "h".into(),
            created: crate::id::parse_id(id).unwrap().0,
            store: "/s".into(),
            path: format!("/s/sets/{set}/{id}"),
            index: format!("/s/sets/{set}/{id}.index.zst"),
            parent: None,
            sources: vec!["/d".into()],
            files: 1,
            bytes: 1,
            new_files: 1,
            new_bytes: 1,
            errors: 0,
            tags: vec![],
            description: None,
            extra: Extra::new(),
        }
    }

    fn write_record(store: &Store, rec: &SnapshotRecord) {
        std::fs::create_dir_all(store.set_dir(&rec.set)).unwrap();
        std::fs::write(
            store.record_path(&rec.set, &rec.id),
            serde_json::to_string(rec).unwrap(),
        )
        .unwrap();
    }

    /// A rebuild finds disk snapshots too, by disk, oldest first.
    #[test]
    fn rebuild_includes_disk_snapshots() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let dir = crate::disks::DiskDir::new(&store, "vm");
        let info = crate::disks::DiskInfo {
            image: "/vms/vm.raw".into(),
            block_size: 1 << 20,
            encrypted: false,
        };
        dir.write_info(&info).unwrap();
        for (name, at) in [("b", "2026-01-02T00:00:00Z"), ("a", "2026-01-01T00:00:00Z")] {
            let rec: DiskSnapshotRecord = serde_json::from_value(serde_json::json!({
                "disk": "vm", "name": name, "image": "/vms/vm.raw", "format": "raw",
                "method": "blocks", "created": at, "virtual_size": 1, "stored_bytes": 0,
                "new_bytes": 0, "blocks": 0, "parent": null}))
            .unwrap();
            dir.publish_record(&rec, None).unwrap();
        }
        let (cat, _) = Catalog::open(&store).unwrap();
        let names: Vec<String> = cat
            .disk_snapshots(Some("vm"))
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    /// A missing catalog is created from the `.json` records on open.
    #[test]
    fn missing_catalog_is_rebuilt_from_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create().unwrap();
        write_record(&store, &record("a", "2026-01-01T000000Z"));
        write_record(&store, &record("b", "2026-01-02T000000Z"));
        let (cat, warning) = Catalog::open(&store).unwrap();
        assert!(warning.is_none());
        let all = cat.snapshots(None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            cat.snapshots(Some("b")).unwrap()[0].id,
            "2026-01-02T000000Z"
        );
    }

    /// A catalog left behind its records (a tool killed between a record and
    /// its row) is brought in step on the next open: rows added and dropped.
    #[test]
    fn open_catches_up_with_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create().unwrap();
        write_record(&store, &record("a", "2026-01-01T000000Z"));
        drop(Catalog::open(&store).unwrap());
        write_record(&store, &record("a", "2026-01-02T000000Z"));
        std::fs::remove_file(store.record_path("a", "2026-01-01T000000Z")).unwrap();
        let (cat, _) = Catalog::open(&store).unwrap();
        let ids: Vec<String> = cat
            .snapshots(None)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["2026-01-02T000000Z"]);
    }

    /// A corrupt catalog is moved aside, rebuilt, and the user is told.
    #[test]
    fn corrupt_catalog_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create().unwrap();
        write_record(&store, &record("a", "2026-01-01T000000Z"));
        std::fs::write(
            store.catalog_path(),
            b"this is not sqlite, just junk bytes....",
        )
        .unwrap();
        let (cat, warning) = Catalog::open(&store).unwrap();
        assert!(warning.unwrap().contains("rebuilt it from the records"));
        assert_eq!(cat.snapshots(None).unwrap().len(), 1);
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains(".corrupt-")
            })
            .count();
        assert_eq!(aside, 1);
    }

    /// An invalidated catalog is rebuilt, complete, on the next open.
    #[test]
    fn invalidated_catalog_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create().unwrap();
        drop(Catalog::open(&store).unwrap());
        write_record(&store, &record("a", "2026-01-01T000000Z"));
        Catalog::invalidate(&store);
        assert!(!store.catalog_path().exists());
        let (cat, _) = Catalog::open(&store).unwrap();
        assert_eq!(cat.snapshots(None).unwrap().len(), 1);
    }

    /// Rows added later are listed, removed ones are not; the schema version is recorded.
    #[test]
    fn put_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.create().unwrap();
        let (cat, _) = Catalog::open(&store).unwrap();
        cat.put_snapshot(&record("a", "2026-01-01T000000Z"))
            .unwrap();
        cat.put_snapshot(&record("a", "2026-01-01T000000Z"))
            .unwrap();
        assert_eq!(cat.snapshots(Some("a")).unwrap().len(), 1);
        cat.remove("snapshot", "a", "2026-01-01T000000Z").unwrap();
        cat.remove("snapshot", "a", "2026-01-01T000000Z").unwrap();
        assert!(cat.snapshots(Some("a")).unwrap().is_empty());
        let v: i64 = cat
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    /// A catalog from a newer snap is refused (exit 78), not damaged.
    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        drop(Catalog::open_path(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        let err = Catalog::open_path(&path).err().unwrap();
        assert_eq!(err.exit, Exit::Config);
        assert!(err.cause.contains("schema version 99"), "{err}");
    }
}
