//! The records the tools pipe to each other, one JSON object per line.
//!
//! Every record carries `"schema": "snap/1"` and a `"kind"`. The field sets
//! follow docs/design.md; fields a newer tool adds are kept in `extra` so a record
//! passed through an older tool loses nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema every record of this major version carries.
pub const SCHEMA: &str = "snap/1";

/// Fields a record had that this version does not know; kept verbatim.
pub type Extra = BTreeMap<String, Value>;

/// One record of a known kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    Snapshot(SnapshotRecord),
    DiskSnapshot(DiskSnapshotRecord),
    Archive(ArchiveRecord),
    Pushed(PushedRecord),
    Pruned(PrunedRecord),
    Restored(OutcomeRecord),
    Verified(OutcomeRecord),
}

/// The kinds [`Record`] knows, as they appear in the `kind` field.
pub const KNOWN_KINDS: &[&str] = &[
    "snapshot",
    "disk-snapshot",
    "archive",
    "pushed",
    "pruned",
    "restored",
    "verified",
];

fn schema() -> String {
    SCHEMA.to_string()
}

/// A browsable tree snapshot made by snap-collect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    #[serde(default = "schema")]
    pub schema: String,
    pub set: String,
    pub id: String,
    pub host: String,
    pub created: DateTime<Utc>,
    /// The store root the snapshot lives in.
    pub store: String,
    /// The browsable tree, `<store>/sets/<set>/<id>`.
    pub path: String,
    /// The per-file index, `<store>/sets/<set>/<id>.index.zst`.
    pub index: String,
    /// The snapshot this one hard-links unchanged files into, if any.
    pub parent: Option<String>,
    pub sources: Vec<String>,
    /// Entries that are not directories (files, symlinks, hard links, fifos, devices).
    pub files: u64,
    /// Logical bytes of the regular files.
    pub bytes: u64,
    /// Files copied (new or changed) rather than hard-linked.
    pub new_files: u64,
    pub new_bytes: u64,
    /// Entries that could not be read; stderr named them.
    pub errors: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A disk image snapshot made by snap-disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSnapshotRecord {
    #[serde(default = "schema")]
    pub schema: String,
    pub disk: String,
    pub name: String,
    pub image: String,
    pub format: String,
    /// `qcow2-internal`, `overlay` or `blocks`.
    pub method: String,
    pub created: DateTime<Utc>,
    pub virtual_size: u64,
    pub stored_bytes: u64,
    pub new_bytes: u64,
    pub blocks: u64,
    pub parent: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A tar archive of a snapshot made by snap-pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    #[serde(default = "schema")]
    pub schema: String,
    pub set: String,
    pub id: String,
    /// The snapshot id the archive was made from.
    pub source: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub compression: String,
    /// `None` or `Some("age")`.
    pub encryption: Option<String>,
    /// The archive this one is incremental on.
    pub base: Option<String>,
    pub index: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One object copied to a destination by snap-push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedRecord {
    #[serde(default = "schema")]
    pub schema: String,
    pub dest: String,
    pub object: String,
    pub bytes: u64,
    pub sha256: String,
    pub verified: bool,
    /// The record that was pushed.
    pub source: Value,
    #[serde(flatten)]
    pub extra: Extra,
}

/// What snap-prune decided for one snapshot or archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrunedRecord {
    #[serde(default = "schema")]
    pub schema: String,
    pub target: String,
    pub id: String,
    pub action: PruneAction,
    pub reasons: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneAction {
    Keep,
    Remove,
}

/// The outcome of a restore or a verification (kinds `restored`, `verified`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    #[serde(default = "schema")]
    pub schema: String,
    pub what: String,
    pub to: Option<String>,
    pub files: u64,
    pub bytes: u64,
    pub errors: u64,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Records whose unknown fields are kept in `extra`.
pub trait WithExtra {
    fn extra_mut(&mut self) -> &mut Extra;
}

impl WithExtra for SnapshotRecord {
    fn extra_mut(&mut self) -> &mut Extra {
        &mut self.extra
    }
}

impl WithExtra for ArchiveRecord {
    fn extra_mut(&mut self) -> &mut Extra {
        &mut self.extra
    }
}

/// Reads a record file (`<id>.json`) as `T`; `what` names it in errors ("a
/// snapshot record"). The file holds the whole pipe record: its `kind` is the
/// tag of [`Record`], not a field of `T`, so it is dropped, not kept in `extra`.
pub fn read_file<T: serde::de::DeserializeOwned + WithExtra>(
    path: &std::path::Path,
    what: &str,
) -> crate::error::Result<T> {
    use crate::error::Error;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rec: T = serde_json::from_str(&text)
        .map_err(|e| Error::data(path.display().to_string(), format!("not {what}: {e}")))?;
    rec.extra_mut().remove("kind");
    Ok(rec)
}

/// Checks a `schema` value: `snap/1` is ours; another major version is not.
pub fn check_schema(value: &str) -> Result<(), String> {
    let major = value
        .strip_prefix("snap/")
        .and_then(|v| v.split('.').next())
        .ok_or_else(|| format!("schema {value:?} is not a snap schema"))?;
    if major == "1" {
        Ok(())
    } else {
        Err(format!(
            "schema {value:?} has major version {major}; this tool reads snap/1"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_snapshot() -> Record {
        Record::Snapshot(SnapshotRecord {
            schema: schema(),
            set: "data".into(),
            id: "2026-11-22T101500Z".into(),
            host: "box".into(),
            created: "2026-11-22T10:15:00Z".parse().unwrap(),
            store: "/s".into(),
            path: "/s/sets/data/2026-11-22T101500Z".into(),
            index: "/s/sets/data/2026-11-22T101500Z.index.zst".into(),
            parent: None,
            sources: vec!["/data".into()],
            files: 3,
            bytes: 10,
            new_files: 3,
            new_bytes: 10,
            errors: 0,
            tags: vec![],
            description: None,
            extra: Extra::new(),
        })
    }

    /// A record serializes with its kind and schema and reads back equal.
    #[test]
    fn snapshot_round_trips() {
        let rec = sample_snapshot();
        let line = serde_json::to_string(&rec).unwrap();
        assert!(line.starts_with(r#"{"kind":"snapshot","schema":"snap/1","set":"data""#));
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rec);
    }

    /// Fields this version does not know survive a read and a write.
    #[test]
    fn unknown_fields_are_kept() {
        let mut v = serde_json::to_value(sample_snapshot()).unwrap();
        v["future_field"] = serde_json::json!({"a": [1, 2]});
        let rec: Record = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&rec).unwrap(), v);
    }

    /// Only major version 1 of the schema is accepted.
    #[test]
    fn schema_major_version_is_checked() {
        assert!(check_schema("snap/1").is_ok());
        assert!(check_schema("snap/1.3").is_ok());
        assert!(
            check_schema("snap/2")
                .unwrap_err()
                .contains("major version 2")
        );
        assert!(check_schema("restic/1").is_err());
    }

    /// Every kind docs/design.md lists is a variant, spelled as in the design.
    #[test]
    fn kinds_match_the_design() {
        let pruned = Record::Pruned(PrunedRecord {
            schema: schema(),
            target: "/s".into(),
            id: "x".into(),
            action: PruneAction::Remove,
            reasons: vec![],
            extra: Extra::new(),
        });
        let v = serde_json::to_value(&pruned).unwrap();
        assert_eq!(v["kind"], "pruned");
        assert_eq!(v["action"], "remove");
        assert_eq!(KNOWN_KINDS.len(), 7);
    }
}
