//! The listing model: what the store and a destination hold, read from
//! names alone (an id is the UTC time it was taken) and, where a decision
//! needs it, from records. snap-prune plans and removes by it; the timeline
//! and the fuzzers read it too, so it lives here, beside the policy.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::archive::Compression;
use crate::error::{Error, Result};
use crate::id::{check_name, cmp_ids, parse_id};
use crate::record::ArchiveRecord;
use crate::store::PIN;

/// One snapshot or archive, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    pub time: DateTime<Utc>,
    /// Bytes stored (archives: all their objects); trees are measured only when removed.
    pub bytes: Option<u64>,
    /// An archive's objects relative to the target's root, the `.json` last.
    pub objects: Vec<String>,
    /// Why it is not whole, if it is not: it is removed whatever the rules say.
    pub broken: Option<String>,
    /// Why its record cannot be read, or is another archive's: nothing
    /// proves it incomplete, so it is kept whatever the rules say, named,
    /// and the run ends with 65.
    pub unreadable: Option<String>,
    /// What the plan needs of the record, when listing already read it
    /// (disk snapshots are timed by their records); else it is read on demand.
    pub info: Option<Info>,
    /// A `<id>.pin` beside its record (`snap-restore pin`): never removed by a rule.
    pub pinned: bool,
}

/// The snapshots of one set, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub set: String,
    pub entries: Vec<Entry>,
}

/// What the plan needs from a record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    pub base: Option<String>,
    pub tags: Vec<String>,
    /// How many archives the chain it ends holds (snap-pack's `chain`), if recorded.
    pub chain: Option<u64>,
}

/// The name suffixes an archive's objects may have, and which are its data.
fn archive_suffix(rest: &str) -> Option<bool> {
    let plain = rest.strip_suffix(".age").unwrap_or(rest);
    let data = [Compression::Zstd, Compression::Gzip, Compression::None]
        .iter()
        .any(|c| c.suffix() == plain);
    match (data, rest) {
        (true, _) => Some(true),
        (_, ".index.zst" | ".index.zst.age" | ".sha256" | ".json.sig" | ".json" | ".away") => {
            Some(false)
        }
        _ => None,
    }
}

/// Groups a listing (`<set>/<id>.<suffix>` keys with sizes) into archives by
/// set. Only archives with a record count: names without one are a push or
/// pack in progress and are left alone; unknown names are never touched.
pub fn group_archives(listing: &[(String, u64)]) -> Vec<Group> {
    #[derive(Default)]
    struct Seen {
        objects: Vec<String>,
        bytes: u64,
        record: bool,
        data: bool,
        /// The store dropped its data (`archive::Away`): whole without it.
        away: bool,
        pinned: bool,
    }
    let mut sets: BTreeMap<String, BTreeMap<String, Seen>> = BTreeMap::new();
    for (key, size) in listing {
        let Some((set, name)) = key.split_once('/') else {
            continue;
        };
        if name.contains('/') || name.starts_with('.') || check_name(set).is_err() {
            continue;
        }
        let id_len = name.find('.').unwrap_or(name.len());
        let (id, rest) = name.split_at(id_len);
        let pin = rest == PIN;
        let (Some(is_data), Some(_)) =
            (archive_suffix(rest).or(pin.then_some(false)), parse_id(id))
        else {
            continue;
        };
        let seen = sets
            .entry(set.to_string())
            .or_default()
            .entry(id.to_string())
            .or_default();
        seen.objects.push(key.clone());
        seen.bytes += size;
        seen.record |= rest == ".json";
        seen.data |= is_data;
        seen.away |= rest == crate::archive::AWAY;
        seen.pinned |= pin;
    }
    let mut groups = Vec::new();
    for (set, ids) in sets {
        let mut entries: Vec<Entry> = ids
            .into_iter()
            .filter(|(_, s)| s.record)
            .map(|(id, mut s)| {
                s.objects.sort_by_key(|k| k.ends_with(".json"));
                Entry {
                    time: parse_id(&id).map(|(t, _)| t).unwrap_or_default(),
                    id,
                    bytes: Some(s.bytes),
                    objects: s.objects,
                    broken: (!s.data && !s.away).then(|| {
                        "incomplete: its data file is gone (an interrupted prune?)".into()
                    }),
                    unreadable: None,
                    info: None,
                    pinned: s.pinned,
                }
            })
            .collect();
        entries.sort_by(|a, b| cmp_ids(&a.id, &b.id));
        if !entries.is_empty() {
            groups.push(Group { set, entries });
        }
    }
    groups
}

/// The base and tags of an archive record (snap-pack copies a snapshot's tags into `tags`).
pub fn archive_info(json: &[u8], at: &str) -> Result<Info> {
    let rec: ArchiveRecord = serde_json::from_slice(json)
        .map_err(|e| Error::data(at, format!("not an archive record: {e}")))?;
    let tags = rec
        .extra
        .get("tags")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    Ok(Info {
        chain: rec.extra.get("chain").and_then(|v| v.as_u64()),
        base: rec.base,
        tags,
    })
}

/// Each disk's snapshots in a listing of `disks/`: name → (map size, has a
/// record). Keys that are not `disks/<disk>/<name>.json` or `.map.zst`, with
/// names snap-disk could have made, are left out (and never touched).
pub fn snapshots_listed(
    listing: &[(String, u64)],
) -> BTreeMap<String, BTreeMap<String, (u64, bool)>> {
    let mut disks: BTreeMap<String, BTreeMap<String, (u64, bool)>> = BTreeMap::new();
    for (key, size) in listing {
        let Some((disk, file)) = key.strip_prefix("disks/").and_then(|r| r.split_once('/')) else {
            continue;
        };
        if file.contains('/') || check_name(disk).is_err() {
            continue;
        }
        let (name, is_record) = match (file.strip_suffix(".json"), file.strip_suffix(".map.zst")) {
            (Some(n), _) => (n, true),
            (_, Some(n)) => (n, false),
            _ => continue,
        };
        if name == "disk" || check_name(name).is_err() {
            continue;
        }
        let e = disks
            .entry(disk.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default();
        if is_record {
            e.1 = true;
        } else {
            e.0 = *size;
        }
    }
    disks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(keys: &[&str]) -> Vec<(String, u64)> {
        keys.iter().map(|k| (k.to_string(), 10)).collect()
    }

    /// Archives are grouped by set and id, the record last among their
    /// objects; names without a record, hidden and unknown names are left out.
    #[test]
    fn listing_groups_into_archives() {
        let groups = group_archives(&listing(&[
            "data/2026-01-02T000000Z.json",
            "data/2026-01-02T000000Z.sha256",
            "data/2026-01-02T000000Z.tar.zst.age",
            "data/2026-01-02T000000Z.index.zst.age",
            "data/2026-01-01T000000Z.tar.zst",
            "data/2026-01-01T000000Z.json",
            "data/2026-01-03T000000Z.tar.zst",
            "data/.2026-01-04T000000Z.tar.zst.snap-part",
            "data/2026-01-01T000000Z.notes",
            "data/README",
            "2026-01-01T000000Z.json",
            "disks/vm/blocks/ab.zst",
            "etc/2026-01-05T000000Z.json",
            "etc/2026-01-05T000000Z.tar.gz",
        ]));
        let sets: Vec<&str> = groups.iter().map(|g| g.set.as_str()).collect();
        assert_eq!(sets, ["data", "etc"]);
        let data = &groups[0].entries;
        assert_eq!(data.len(), 2);
        assert_eq!(data[0].id, "2026-01-01T000000Z");
        assert_eq!(
            data[0].objects,
            [
                "data/2026-01-01T000000Z.tar.zst",
                "data/2026-01-01T000000Z.json"
            ]
        );
        assert_eq!(data[1].objects.len(), 4);
        assert_eq!(
            data[1].objects.last().unwrap(),
            "data/2026-01-02T000000Z.json"
        );
        assert_eq!(data[1].bytes, Some(40));
        assert!(data.iter().all(|e| e.broken.is_none()));
    }

    /// A pin beside an archive's record marks it pinned; the pin is one of
    /// its objects (a broken pinned archive goes with its pin), not data.
    #[test]
    fn a_pin_in_the_listing_pins_the_archive() {
        let groups = group_archives(&listing(&[
            "d/2026-01-01T000000Z.tar.zst",
            "d/2026-01-01T000000Z.json",
            "d/2026-01-01T000000Z.pin",
            "d/2026-01-02T000000Z.tar.zst",
            "d/2026-01-02T000000Z.json",
            "d/2026-01-03T000000Z.pin",
        ]));
        let e = &groups[0].entries;
        assert_eq!(e.len(), 2, "a pin alone is no archive");
        assert!(e[0].pinned && !e[1].pinned);
        assert_eq!(e[0].objects.len(), 3);
        assert_eq!(e[0].objects.last().unwrap(), "d/2026-01-01T000000Z.json");
        assert!(e[0].broken.is_none());
    }

    /// A record without its data file is an incomplete archive.
    #[test]
    fn a_record_without_data_is_incomplete() {
        let groups = group_archives(&listing(&[
            "d/2026-01-01T000000Z.json",
            "d/2026-01-01T000000Z.index.zst",
        ]));
        assert!(
            groups[0].entries[0]
                .broken
                .as_deref()
                .unwrap()
                .starts_with("incomplete")
        );
    }

    /// A record whose data the store dropped (an `.away` marker beside it)
    /// is whole, and the marker is one of its objects, removed with it.
    #[test]
    fn a_record_with_its_data_away_is_whole() {
        let groups = group_archives(&listing(&[
            "d/2026-01-01T000000Z.json",
            "d/2026-01-01T000000Z.index.zst",
            "d/2026-01-01T000000Z.away",
        ]));
        let e = &groups[0].entries[0];
        assert!(e.broken.is_none());
        assert_eq!(e.objects.len(), 3);
        assert_eq!(e.objects.last().unwrap(), "d/2026-01-01T000000Z.json");
    }

    /// Tags and base come from the record; a bad record is a data error naming it.
    #[test]
    fn info_from_records() {
        let json = br#"{"kind":"archive","schema":"snap/1","set":"d","id":"2026-01-02T000000Z","source":"2026-01-02T000000Z","path":"/x","bytes":1,"sha256":"00","compression":"zstd","encryption":null,"base":"2026-01-01T000000Z","index":"/i","tags":["keep"]}"#;
        let info = archive_info(json, "s3://b/d/x.json").unwrap();
        assert_eq!(info.base.as_deref(), Some("2026-01-01T000000Z"));
        assert_eq!(info.tags, ["keep"]);
        let err = archive_info(b"{}", "s3://b/d/x.json").unwrap_err();
        assert!(err.context.contains("s3://b/d/x.json"));
    }
}
