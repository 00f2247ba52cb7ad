//! What to pack: `snapshot` records from stdin, or snapshots named with `--snapshot`.
//!
//! Stdin is read whole before anything is packed: a malformed line anywhere
//! (exit 65, naming it) means nothing is written, as docs/design.md asks, and the
//! writer upstream (snap-collect) has released the store by then.

use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::{Item, read_picking};
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
    let pick = |rec: Box<Record>| match *rec {
        Record::Snapshot(s) => Ok(Input::Snapshot(Box::new(s))),
        _ => Err(rec),
    };
    read_picking(std::io::stdin().lock(), "stdin", pick, Input::Pass)
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

/// The newest snapshot of every set in the store (`--latest`), and the
/// errors of sets whose newest record is damaged (named at the end, exit
/// 65; the other sets are packed). An older snapshot is not packed in its
/// place: it is not what is newest.
pub fn latest(store: &Store) -> Result<(Vec<Input>, Vec<Error>)> {
    let mut out = Vec::new();
    let mut damaged = Vec::new();
    for set in store.sets()? {
        let Some(id) = store.latest_id(&set)? else {
            continue;
        };
        match store.read_record(&set, &id) {
            Ok(rec) => out.push(Input::Snapshot(Box::new(rec))),
            Err(e) if e.exit == Exit::Data => damaged.push(e.with_hint(
                "the newest snapshot's record is damaged; the next collect of the set steps over it",
            )),
            Err(e) => return Err(e),
        }
    }
    Ok((out, damaged))
}
