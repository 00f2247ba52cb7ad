//! Removing archives so that a listed archive is always whole, whatever
//! instant a crash comes at.
//!
//! An archive is listed by its `.json` record, so the record must go first;
//! but then a crash would leave its data, index and checksums with no record,
//! which look like a push in progress and would never be removed. So before
//! anything goes, an *intent* naming every object to remove is written under
//! `.snap/pruning/` (create-only, named by the prune's lock); then the
//! records go, then the other objects, then the intent.
//!
//! The next prune finishes an intent it finds (it holds the exclusive lock,
//! so the prune that wrote it is gone): for each archive whose record is
//! gone it removes what is left; an archive whose record is still there was
//! not reached, and is left to the new plan (a push may have made it the base
//! of a new archive since).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use snap_dest::Dest;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;

use snap_shared::retention::listing::Entry;

/// Where intents live at a destination.
pub const PRUNING: &str = ".snap/pruning";

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    schema: String,
    kind: String,
    /// Each archive: its objects, the `.json` record last.
    archives: Vec<Vec<String>>,
}

/// Removes these archives: intent, records, the rest, intent.
pub fn remove_archives(dest: &Dest, entries: &[&Entry]) -> Result<()> {
    let intent = Intent {
        schema: snap_shared::record::SCHEMA.into(),
        kind: "prune-intent".into(),
        archives: entries.iter().map(|e| e.objects.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&intent).map_err(|e| Error::internal("intent", e))?;
    let key = format!("{PRUNING}/{}.json", Sha256Digest::of(&bytes).to_hex());
    let sha = Sha256Digest::of(&bytes).to_hex();
    dest.put_new(&key, Bytes::from(bytes), &sha)?;
    let (mut records, others) = split(&intent.archives);
    // Newest first: an archive's record goes before its base's, so a prune
    // cut short never leaves a listed archive whose chain is gone.
    records.sort_by(|a, b| snap_shared::id::cmp_ids(stem(b), stem(a)));
    dest.delete_many(&records)?;
    dest.delete_many(&others)?;
    dest.delete(&key)
}

/// Finishes every intent left by an interrupted prune; returns the bytes freed.
pub fn finish(dest: &Dest) -> Result<u64> {
    let mut freed = 0;
    for (key, _) in dest.list(PRUNING)? {
        let bytes = dest.get_bytes(&key)?;
        let intent: Intent = serde_json::from_slice(&bytes)
            .ok()
            .filter(|i: &Intent| i.kind == "prune-intent")
            .ok_or_else(|| {
                Error::new(Exit::Data, dest.show(&key), "not a snap prune intent")
                    .with_hint("nothing was removed; if you know what it is, remove it")
            })?;
        let mut gone = Vec::new();
        for objects in &intent.archives {
            let Some(record) = objects.last() else {
                continue;
            };
            if dest.head(record)?.is_some() {
                continue;
            }
            for o in objects {
                if let Some(m) = dest.head(o)? {
                    freed += m.size;
                    gone.push(o.clone());
                }
            }
        }
        dest.delete_many(&gone)?;
        dest.delete(&key)?;
    }
    Ok(freed)
}

/// Records, and everything else.
/// The id of a record's key (`set/ID.json` -> `ID`).
fn stem(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.strip_suffix(".json").unwrap_or(name)
}

fn split(archives: &[Vec<String>]) -> (Vec<String>, Vec<String>) {
    archives
        .iter()
        .flatten()
        .cloned()
        .partition(|k| k.ends_with(".json"))
}
