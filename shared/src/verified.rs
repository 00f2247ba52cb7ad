//! The verify log: `verified.jsonl` at the store's root, one line per
//! snapshot, archive or disk snapshot `verify` read (the `verified` record,
//! with when and where: `store`, or the `--from` it was read from), so the
//! timeline can show each one's verify state and age, as PBS does.
//!
//! Lines are only appended (O_APPEND, fsync). A line that does not parse is
//! skipped; the log is history, never needed to restore anything.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::{OutcomeRecord, Record};
use crate::store::Store;

const FILE: &str = "verified.jsonl";

/// One verify: when, and whether every byte was right.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub time: DateTime<Utc>,
    pub ok: bool,
}

/// Appends a verify's outcome (when the store exists; nothing otherwise).
pub fn append(store: &Store, rec: &OutcomeRecord, place: &str, now: DateTime<Utc>) -> Result<()> {
    if !store.root.is_dir() {
        return Ok(());
    }
    let mut rec = rec.clone();
    rec.extra.insert("time".into(), now.to_rfc3339().into());
    rec.extra.insert("where".into(), place.into());
    let line = serde_json::to_string(&Record::Verified(rec))
        .map_err(|e| Error::internal("a verify log line", e))?;
    let path = store.root.join(FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| Error::io(&path, e))
}

/// The newest verify of each (where, kind, name): kind is `snapshot`,
/// `archive` or `disk`; name is `SET/ID` or `disks/DISK/NAME`.
pub fn latest(store: &Store) -> BTreeMap<(String, String, String), Verified> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(store.root.join(FILE)) else {
        return out;
    };
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(what), Some(place), Some(time)) = (s("what"), s("where"), s("time")) else {
            continue;
        };
        let Ok(time) = DateTime::parse_from_rfc3339(&time) else {
            continue;
        };
        let kind = s("source_kind").unwrap_or_else(|| "disk".into());
        let ok = v.get("errors").and_then(Value::as_u64) == Some(0);
        let verified = Verified {
            time: time.with_timezone(&Utc),
            ok,
        };
        out.insert((place, kind, what), verified);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last line for a name wins; other places and kinds stay apart;
    /// a torn line is skipped.
    #[test]
    fn newest_outcome_per_name_and_place() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let rec = |errors: u64| OutcomeRecord {
            schema: crate::record::SCHEMA.into(),
            what: "s/2026-01-01T000000Z".into(),
            to: None,
            files: 1,
            bytes: 2,
            errors,
            extra: [("source_kind".to_string(), Value::from("snapshot"))]
                .into_iter()
                .collect(),
        };
        let t0 = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .to_utc();
        append(&store, &rec(0), "store", t0).unwrap();
        append(&store, &rec(3), "store", t0 + chrono::Duration::hours(1)).unwrap();
        append(&store, &rec(0), "usb", t0).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(t.path().join(FILE))
            .unwrap();
        f.write_all(b"{\"what\": \"s/x\", \"wh").unwrap();
        let l = latest(&store);
        assert_eq!(l.len(), 2);
        let key = |p: &str| {
            (
                p.to_string(),
                "snapshot".to_string(),
                "s/2026-01-01T000000Z".to_string(),
            )
        };
        assert!(!l[&key("store")].ok);
        assert!(l[&key("usb")].ok);
    }
}
