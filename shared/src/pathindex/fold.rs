//! Bringing a set's rows up to its snapshots: each snapshot newer than the
//! newest folded in adds a row for every path it changed, added or lost;
//! anything else (an index rewritten, a snapshot imported between others)
//! has the set folded again from all its indexes.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::{PathIndex, Res, bad_row};
use crate::error::{Error, Result};
use crate::index::{Entry, IndexReader};
use crate::record::SnapshotRecord;
use crate::store::Store;

/// What a version of a path is: the entry without what only the next
/// snapshot or an archive needs (ctime, block digests, tar offsets) and
/// without extended attributes. The history page shows the rest.
pub(crate) fn version_of(mut e: Entry) -> Entry {
    e.ctime = None;
    e.blocks = None;
    e.delta = None;
    e.tar_offset = None;
    e.xattrs = Default::default();
    e
}

/// The lower-case file name a search matches.
pub(crate) fn search_name(path: &[u8]) -> String {
    let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
    String::from_utf8_lossy(name).to_lowercase()
}

/// What says an index file is still the one folded in: size, mtime, inode.
fn stamp(store: &Store, set: &str, id: &str) -> Result<String> {
    let p = store.index_path(set, id);
    let m = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?;
    Ok(format!(
        "{}:{}.{}:{}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    ))
}

/// What the set's rows need.
#[derive(Debug, PartialEq)]
enum Plan {
    UpToDate,
    /// Fold in the snapshots from this position of the ordered list on.
    Append(usize),
    Refold,
}

fn plan(
    tx: &rusqlite::Connection,
    set: &str,
    order: &[&SnapshotRecord],
    stamps: &[String],
) -> Res<Plan> {
    let mut folded: HashMap<String, String> = HashMap::new();
    let mut st = tx.prepare_cached("SELECT id, stamp FROM folded WHERE set_name = ?1")?;
    for row in st.query_map([set], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })? {
        let (id, stamp) = row?;
        folded.insert(id, stamp);
    }
    let newest: Option<(String, String)> = tx
        .query_row(
            "SELECT created, id FROM folded WHERE set_name = ?1 ORDER BY seq DESC LIMIT 1",
            [set],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let mut first_new = None;
    for (i, (rec, stamp)) in order.iter().zip(stamps).enumerate() {
        match folded.get(&rec.id) {
            Some(s) if s != stamp => return Ok(Plan::Refold),
            Some(_) if first_new.is_some() => return Ok(Plan::Refold),
            Some(_) => {}
            None if first_new.is_none() => first_new = Some(i),
            None => {}
        }
    }
    let Some(i) = first_new else {
        return Ok(Plan::UpToDate);
    };
    if let Some((created, id)) = newest {
        let created = chrono::DateTime::parse_from_rfc3339(&created)
            .map_err(|e| bad_row(format!("folded {set}/{id}: created {created:?}: {e}")))?;
        if (order[i].created, order[i].id.as_str()) <= (created.to_utc(), id.as_str()) {
            return Ok(Plan::Refold);
        }
    }
    Ok(Plan::Append(i))
}

impl PathIndex {
    /// Brings `set`'s rows up to `snaps` (the set's snapshots, in any order;
    /// those of other sets are ignored).
    pub fn refresh(&mut self, store: &Store, set: &str, snaps: &[SnapshotRecord]) -> Result<()> {
        self.refresh_res(store, set, snaps)
            .map_err(super::Fault::into_error)
    }

    pub(crate) fn refresh_res(
        &mut self,
        store: &Store,
        set: &str,
        snaps: &[SnapshotRecord],
    ) -> Res<()> {
        let mut order: Vec<&SnapshotRecord> = snaps.iter().filter(|r| r.set == set).collect();
        order.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        let stamps: Vec<String> = order
            .iter()
            .map(|r| stamp(store, set, &r.id))
            .collect::<Result<_>>()?;
        // Read first without the write lock: most calls find nothing to do.
        if plan(&self.conn, set, &order, &stamps)? == Plan::UpToDate {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let seq = match plan(&tx, set, &order, &stamps)? {
            Plan::UpToDate => return Ok(()),
            Plan::Append(i) => {
                let seq: Option<i64> = tx.query_row(
                    "SELECT max(seq) FROM folded WHERE set_name = ?1",
                    [set],
                    |r| r.get(0),
                )?;
                (i, seq.unwrap_or(0))
            }
            Plan::Refold => {
                forget_set(&tx, set)?;
                (0, 0)
            }
        };
        fold_in(&tx, store, set, &order[seq.0..], &stamps[seq.0..], seq.1)?;
        tx.commit()?;
        Ok(())
    }
}

/// Removes every row of `set`.
fn forget_set(tx: &Transaction, set: &str) -> Res<()> {
    tx.execute(
        "DELETE FROM versions WHERE pid IN (SELECT pid FROM paths WHERE set_name = ?1)",
        [set],
    )?;
    tx.execute(
        "DELETE FROM current WHERE pid IN (SELECT pid FROM paths WHERE set_name = ?1)",
        [set],
    )?;
    tx.execute("DELETE FROM paths WHERE set_name = ?1", [set])?;
    tx.execute("DELETE FROM folded WHERE set_name = ?1", [set])?;
    Ok(())
}

/// What tells two versions of a path apart, short: every field a version
/// keeps ([`version_of`]), without the path. The `current` table keeps it
/// for the newest folded snapshot, so that folding the next compares
/// strings rather than parsing a hundred thousand entries.
fn key_of(e: &Entry) -> String {
    use std::fmt::Write;
    let mut k = format!(
        "{:?}|{}|{:o}|{}|{}|{}",
        e.kind, e.size, e.mode, e.mtime, e.uid, e.gid
    );
    if let Some(d) = &e.sha256 {
        let _ = write!(k, "|{}", d.to_hex());
    }
    for part in [&e.target, &e.link] {
        let _ = write!(k, "|{}", part.as_deref().map(hex).unwrap_or_default());
    }
    let _ = write!(
        k,
        "|{}|{}|{}",
        e.user.as_deref().unwrap_or_default(),
        e.group.as_deref().unwrap_or_default(),
        e.rdev.map(|r| r.to_string()).unwrap_or_default()
    );
    k
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The keys of the newest folded snapshot's entries, by path, with their ids.
fn load_current(tx: &Transaction, set: &str) -> Res<HashMap<Vec<u8>, (i64, String)>> {
    let mut st = tx.prepare(
        "SELECT p.path, c.pid, c.entry FROM current c JOIN paths p ON p.pid = c.pid WHERE p.set_name = ?1",
    )?;
    let mut out = HashMap::new();
    let mut rows = st.query([set])?;
    while let Some(r) = rows.next()? {
        out.insert(r.get(0)?, (r.get(1)?, r.get(2)?));
    }
    Ok(out)
}

/// Folds `snaps` (oldest first, all newer than the newest folded) in after
/// sequence number `seq`.
fn fold_in(
    tx: &Transaction,
    store: &Store,
    set: &str,
    snaps: &[&SnapshotRecord],
    stamps: &[String],
    mut seq: i64,
) -> Res<()> {
    let mut current = load_current(tx, set)?;
    let mut add_path = tx.prepare_cached(
        "INSERT INTO paths (set_name, path, name) VALUES (?1, ?2, ?3)
         ON CONFLICT (set_name, path) DO UPDATE SET name = excluded.name RETURNING pid",
    )?;
    let mut add_version = tx.prepare_cached(
        "INSERT OR REPLACE INTO versions (pid, since, entry) VALUES (?1, ?2, ?3)",
    )?;
    let mut set_current =
        tx.prepare_cached("INSERT OR REPLACE INTO current (pid, entry) VALUES (?1, ?2)")?;
    let mut drop_current = tx.prepare_cached("DELETE FROM current WHERE pid = ?1")?;
    for (rec, stamp) in snaps.iter().zip(stamps) {
        seq += 1;
        let mut reader = IndexReader::open(&store.index_path(set, &rec.id))?;
        let mut seen: HashSet<i64> = HashSet::with_capacity(current.len());
        while let Some(e) = reader.next_entry()? {
            let v = version_of(e);
            let key = key_of(&v);
            match current.get_mut(&v.path) {
                Some((pid, old)) => {
                    seen.insert(*pid);
                    if *old != key {
                        add_version.execute(params![*pid, seq, v.to_json()])?;
                        set_current.execute(params![*pid, key])?;
                        *old = key;
                    }
                }
                None => {
                    let pid: i64 = add_path
                        .query_row(params![set, v.path, search_name(&v.path)], |r| r.get(0))?;
                    add_version.execute(params![pid, seq, v.to_json()])?;
                    set_current.execute(params![pid, key])?;
                    seen.insert(pid);
                    current.insert(v.path.clone(), (pid, key));
                }
            }
        }
        let gone: Vec<Vec<u8>> = current
            .iter()
            .filter(|(_, (pid, _))| !seen.contains(pid))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some((pid, _)) = current.remove(&p) {
                add_version.execute(params![pid, seq, Option::<String>::None])?;
                drop_current.execute([pid])?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO folded (set_name, id, created, seq, stamp) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![set, rec.id, rec.created.to_rfc3339(), seq, stamp],
        )?;
    }
    Ok(())
}
