//! What the path index answers: a path's entry in each snapshot of its set
//! (the history page), and the paths whose file name holds a text (search).
//! Both first bring the sets they read up to the snapshots they are given.

use std::collections::{BTreeMap, HashMap};

use super::{PathIndex, Res, bad_row};
use crate::error::Result;
use crate::index::Entry;
use crate::record::SnapshotRecord;
use crate::store::Store;

/// A path's entry in each snapshot asked about, in the order asked (none
/// where the snapshot did not hold it).
pub type History = Vec<Option<Entry>>;

/// A path found by [`PathIndex::search`]: how many of the snapshots hold it,
/// the newest and the oldest of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub set: String,
    pub path: Vec<u8>,
    pub count: usize,
    pub newest: String,
    pub oldest: String,
}

/// The sequence number of each folded snapshot of `set` that is in `snaps`.
fn seqs(ix: &PathIndex, set: &str, snaps: &[&SnapshotRecord]) -> Res<HashMap<String, i64>> {
    let mut st = ix
        .conn
        .prepare_cached("SELECT id, seq FROM folded WHERE set_name = ?1")?;
    let mut all = HashMap::new();
    for row in st.query_map([set], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (id, seq) = row?;
        all.insert(id, seq);
    }
    snaps
        .iter()
        .map(|r| match all.remove(&r.id) {
            Some(seq) => Ok((r.id.clone(), seq)),
            None => Err(bad_row(format!("{set}/{} was folded in but has no row", r.id)).into()),
        })
        .collect()
}

/// A path's rows, oldest first: from which sequence number on it had which
/// entry (none: gone).
fn rows(ix: &PathIndex, pid: i64) -> Res<Vec<(i64, Option<Entry>)>> {
    let mut st = ix
        .conn
        .prepare_cached("SELECT since, entry FROM versions WHERE pid = ?1 ORDER BY since")?;
    let mut out = Vec::new();
    let mut q = st.query([pid])?;
    while let Some(r) = q.next()? {
        let since: i64 = r.get(0)?;
        let json: Option<String> = r.get(1)?;
        let e = json
            .map(|j| Entry::from_json(&j).map_err(bad_row))
            .transpose()?;
        out.push((since, e));
    }
    Ok(out)
}

/// The row in force at `seq`: the last one at or before it.
fn at(rows: &[(i64, Option<Entry>)], seq: i64) -> Option<&Entry> {
    let n = rows.partition_point(|(since, _)| *since <= seq);
    n.checked_sub(1).and_then(|i| rows[i].1.as_ref())
}

impl PathIndex {
    /// The ids of `set`'s snapshots folded in, oldest first (removed ones
    /// included: their rows stay until the set is folded again).
    pub fn folded(&self, set: &str) -> Result<Vec<String>> {
        let run = || -> Res<Vec<String>> {
            let mut st = self
                .conn
                .prepare_cached("SELECT id FROM folded WHERE set_name = ?1 ORDER BY seq")?;
            let ids = st.query_map([set], |r| r.get(0))?;
            Ok(ids.collect::<rusqlite::Result<_>>()?)
        };
        run().map_err(super::Fault::into_error)
    }

    /// `path`'s entry in each of `snaps` (snapshots of `set`, in the order
    /// wanted), after bringing the set up to them.
    pub fn history(
        &mut self,
        store: &Store,
        set: &str,
        path: &[u8],
        snaps: &[SnapshotRecord],
    ) -> Result<History> {
        self.refresh(store, set, snaps)?;
        self.history_res(set, path, snaps)
            .map_err(super::Fault::into_error)
    }

    fn history_res(&self, set: &str, path: &[u8], snaps: &[SnapshotRecord]) -> Res<History> {
        let mine: Vec<&SnapshotRecord> = snaps.iter().filter(|r| r.set == set).collect();
        let pid: Option<i64> = {
            use rusqlite::OptionalExtension;
            self.conn
                .query_row(
                    "SELECT pid FROM paths WHERE set_name = ?1 AND path = ?2",
                    rusqlite::params![set, path],
                    |r| r.get(0),
                )
                .optional()?
        };
        let Some(pid) = pid else {
            return Ok(vec![None; mine.len()]);
        };
        let rows = rows(self, pid)?;
        let seqs = seqs(self, set, &mine)?;
        Ok(mine
            .iter()
            .map(|r| at(&rows, seqs[&r.id]).cloned())
            .collect())
    }

    /// The paths, in every set of `snaps`, whose file name holds `query`
    /// (lower case), by set and path: at most `limit`, and whether more
    /// matched. A path none of `snaps` holds is not listed.
    pub fn search(
        &mut self,
        store: &Store,
        query: &str,
        snaps: &[SnapshotRecord],
        limit: usize,
    ) -> Result<(Vec<Found>, bool)> {
        let mut by_set: BTreeMap<&str, Vec<&SnapshotRecord>> = BTreeMap::new();
        for r in snaps {
            by_set.entry(&r.set).or_default().push(r);
        }
        for set in by_set.keys() {
            self.refresh(store, set, snaps)?;
        }
        self.search_res(query, &by_set, limit)
            .map_err(super::Fault::into_error)
    }

    fn search_res(
        &self,
        query: &str,
        by_set: &BTreeMap<&str, Vec<&SnapshotRecord>>,
        limit: usize,
    ) -> Res<(Vec<Found>, bool)> {
        // Each set's snapshots, newest first, with their sequence numbers.
        let mut ordered: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
        for (set, recs) in by_set {
            let seqs = seqs(self, set, recs)?;
            let mut v: Vec<(&str, i64)> =
                recs.iter().map(|r| (r.id.as_str(), seqs[&r.id])).collect();
            v.sort_by_key(|(_, s)| std::cmp::Reverse(*s));
            ordered.insert(set, v);
        }
        let mut st = self.conn.prepare_cached(
            "SELECT pid, set_name, path FROM paths WHERE instr(name, ?1) > 0 ORDER BY set_name, path",
        )?;
        let mut q = st.query([query])?;
        let mut found = Vec::new();
        while let Some(r) = q.next()? {
            let (pid, set, path): (i64, String, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let Some(snaps) = ordered.get(set.as_str()) else {
                continue;
            };
            let rows = rows(self, pid)?;
            let holding: Vec<&str> = snaps
                .iter()
                .filter(|(_, seq)| at(&rows, *seq).is_some())
                .map(|(id, _)| *id)
                .collect();
            let (Some(newest), Some(oldest)) = (holding.first(), holding.last()) else {
                continue;
            };
            if found.len() == limit {
                return Ok((found, true));
            }
            found.push(Found {
                count: holding.len(),
                newest: newest.to_string(),
                oldest: oldest.to_string(),
                set,
                path,
            });
        }
        Ok((found, false))
    }
}
