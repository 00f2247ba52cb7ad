//! What to pack: `snapshot` records from stdin, or snapshots named with `--snapshot`.
//!
//! Stdin is read whole before anything is packed: a malformed line anywhere
//! (exit 65, naming it) means nothing is written, as DESIGN.md asks, and the
//! writer upstream (snap-collect) has released the store by then.

use snap_shared::error::Result;
use snap_shared::jsonl::{Item, RecordReader};
use snap_shared::record::{Record, SnapshotRecord};
use snap_shared::store::Store;

/// One thing to do, in input order.
pub enum Input {
    Snapshot(Box<SnapshotRecord>),
    /// A record of another kind, passed through unchanged.
    Pass(Item),
}

/// Reads every record on stdin.
pub fn from_stdin() -> Result<Vec<Input>> {
    let reader = RecordReader::new(std::io::stdin().lock(), "stdin");
    let mut out = Vec::new();
    for item in reader {
        out.push(match item? {
            Item::Record(rec) => match *rec {
                Record::Snapshot(s) => Input::Snapshot(Box::new(s)),
                other => Input::Pass(Item::Record(Box::new(other))),
            },
            other => Input::Pass(other),
        });
    }
    Ok(out)
}

/// The snapshots named on the command line.
pub fn named(store: &Store, names: &[String]) -> Result<Vec<Input>> {
    names
        .iter()
        .map(|n| {
            store
                .resolve_snapshot(n)
                .map(|s| Input::Snapshot(Box::new(s)))
        })
        .collect()
}

/// The newest snapshot of every set in the store (`--latest`).
pub fn latest(store: &Store) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for set in store.sets()? {
        if store.latest_id(&set)?.is_some() {
            out.push(Input::Snapshot(Box::new(
                store.resolve_snapshot(&format!("{set}/latest"))?,
            )));
        }
    }
    Ok(out)
}
