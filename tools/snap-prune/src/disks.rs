//! Disk snapshots (snap-disk's `blocks` method) in the store or at a
//! destination, laid out `disks/<disk>/<name>.json`, `<name>.map.zst` and
//! `blocks/<aa>/<sha256>`. Each disk is a group; the policy reads each
//! snapshot's time from its record (names are the user's, not times).
//!
//! A snapshot is removed record first (it is gone at once), then its map;
//! then the disk's blocks that no remaining map refers to are collected. A
//! crash between leaves a map without a record, or unreferenced blocks: both
//! are collected by the next prune (or snap-disk delete) of that disk.
//! qcow2-internal and overlay snapshots live in the image: the `images`
//! module prunes those.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::Value;

use snap_dest::Dest;
use snap_shared::blockmap::MapReader;
use snap_shared::error::{Error, Result};
use snap_shared::hash::Sha256Digest;

use snap_shared::retention::listing::{Entry, Group, Info, snapshots_listed};

/// How long an unreferenced block at a destination is kept: long enough for
/// a slow push from another machine to publish the record that refers to it.
pub const DEST_GRACE: Duration = Duration::from_secs(24 * 3600);

/// The disks' snapshots by disk, oldest first, timed by their records
/// (whose tags the entries keep, so no record is read twice).
pub fn scan(dest: &Dest) -> Result<Vec<Group>> {
    let listing = dest.list("disks")?;
    let pins: std::collections::HashSet<&str> = listing
        .iter()
        .filter_map(|(k, _)| k.strip_suffix(snap_shared::store::PIN))
        .collect();
    let disks = snapshots_listed(&listing);
    let mut out = Vec::new();
    for (disk, names) in disks {
        let names: Vec<(String, u64)> = names
            .into_iter()
            .filter(|(_, (_, rec))| *rec)
            .map(|(n, (s, _))| (n, s))
            .collect();
        let keys: Vec<String> = names
            .iter()
            .map(|(n, _)| format!("disks/{disk}/{n}.json"))
            .collect();
        let mut rows = Vec::new();
        for (((name, map_size), key), bytes) in names.iter().zip(&keys).zip(dest.get_many(&keys)) {
            let rec: Value = serde_json::from_slice(&bytes?).map_err(|e| {
                Error::data(dest.show(key), format!("not a disk-snapshot record: {e}"))
            })?;
            if rec["method"] != "blocks" {
                continue;
            }
            let time = rec["created"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .ok_or_else(|| Error::data(dest.show(key), "no \"created\" time"))?;
            let entry = Entry {
                id: name.clone(),
                time,
                bytes: Some(*map_size),
                objects: vec![
                    format!("disks/{disk}/{name}.json"),
                    format!("disks/{disk}/{name}.map.zst"),
                ],
                broken: (*map_size == 0).then(|| "incomplete: its block map is gone".to_string()),
                unreadable: None,
                info: Some(Info {
                    base: None,
                    tags: serde_json::from_value(rec["tags"].clone()).unwrap_or_default(),
                    chain: None,
                }),
                pinned: pins.contains(format!("disks/{disk}/{name}").as_str()),
            };

            rows.push(entry);
        }
        rows.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        if !rows.is_empty() {
            out.push(Group {
                set: disk,
                entries: rows,
            });
        }
    }
    Ok(out)
}

/// Removes the snapshots (records, then maps), then the disk's blocks no
/// remaining map needs; the blocks' bytes are counted with the last snapshot.
pub fn remove(
    dest: &Dest,
    disk: &str,
    entries: &[&Entry],
    grace: Option<Duration>,
) -> Result<Vec<u64>> {
    let records: Vec<String> = entries.iter().map(|e| e.objects[0].clone()).collect();
    let sigs: Vec<String> = records
        .iter()
        .map(|r| format!("{r}{}", snap_shared::sign::SIG_SUFFIX))
        .collect();
    let maps: Vec<String> = entries.iter().map(|e| e.objects[1].clone()).collect();
    dest.delete_many(&records)?;
    dest.delete_many(&sigs)?;
    dest.delete_many(&maps)?;
    let mut freed: Vec<u64> = entries.iter().map(|e| e.bytes.unwrap_or(0)).collect();
    let collected = collect_garbage(dest, disk, grace)?;
    if let Some(last) = freed.last_mut() {
        *last += collected;
    }
    Ok(freed)
}

/// Removes maps without a record and blocks no map with a record refers to;
/// returns the bytes freed.
pub fn collect_garbage(dest: &Dest, disk: &str, grace: Option<Duration>) -> Result<u64> {
    let (keys, freed) = garbage(dest, disk, &[], grace)?;
    // Maps before blocks: a crash between leaves only unreferenced blocks.
    let (maps, blocks): (Vec<String>, Vec<String>) = keys
        .into_iter()
        .partition(|k| k.ends_with(".map.zst") || k.ends_with(".json.sig"));
    dest.delete_many(&maps)?;
    dest.delete_many(&blocks)?;
    Ok(freed)
}

/// What a collection would remove if the snapshots `gone` had no record:
/// maps without a record and blocks no other map refers to (keys, bytes).
/// With `grace`, a block written more recently than that is kept: at a
/// destination another machine may be pushing a snapshot whose record is not
/// there yet (as `git gc` keeps recent loose objects).
fn garbage(
    dest: &Dest,
    disk: &str,
    gone: &[&str],
    grace: Option<Duration>,
) -> Result<(Vec<String>, u64)> {
    // Ages on the clock the destination's lock checked against its own.
    let now = dest.now();
    let young = |t: SystemTime| {
        grace.is_some_and(|g| {
            (now - DateTime::<Utc>::from(t))
                .to_std()
                .map_or(true, |age| age < g)
        })
    };
    let base = format!("disks/{disk}");
    let mut records = HashSet::new();
    let mut maps = Vec::new();
    let mut sigs = Vec::new();
    let mut blocks = Vec::new();
    for (key, size, modified) in dest.list_dated(&base)? {
        let Some(rest) = key.strip_prefix(&format!("{base}/")) else {
            continue;
        };
        if let Some(name) = rest.strip_suffix(".json") {
            if !gone.contains(&name) {
                records.insert(name.to_string());
            }
        } else if let Some(name) = rest.strip_suffix(".json.sig") {
            // A signature whose record is gone (a prune stopped between
            // them); those of the snapshots being removed go with them.
            if !gone.contains(&name) {
                sigs.push((name.to_string(), key.clone(), size));
            }
        } else if let Some(name) = rest.strip_suffix(".map.zst") {
            maps.push((name.to_string(), key.clone(), size));
        } else if let Some(b) = rest.strip_prefix("blocks/")
            && !young(modified)
        {
            let name = b.rsplit('/').next().unwrap_or("").to_string();
            blocks.push((name, key.clone(), size));
        }
    }
    let (live, orphans): (Vec<_>, Vec<_>) =
        maps.into_iter().partition(|(n, _, _)| records.contains(n));
    let mut out: Vec<(String, u64)> = orphans.into_iter().map(|(_, k, s)| (k, s)).collect();
    out.extend(
        sigs.into_iter()
            .filter(|(n, _, _)| !records.contains(n))
            .map(|(_, k, s)| (k, s)),
    );
    let keys: Vec<String> = live.iter().map(|(_, k, _)| k.clone()).collect();
    let mut keep: HashSet<Sha256Digest> = HashSet::new();
    for (bytes, key) in dest.get_many(&keys).into_iter().zip(&keys) {
        for entry in MapReader::new(&bytes?[..], dest.show(key))? {
            keep.insert(entry?.1);
        }
    }
    out.extend(
        blocks
            .into_iter()
            .filter(|(name, _, _)| {
                !name
                    .parse::<Sha256Digest>()
                    .is_ok_and(|d| keep.contains(&d))
            })
            .map(|(_, k, s)| (k, s)),
    );
    let bytes = out.iter().map(|(_, s)| s).sum();
    Ok((out.into_iter().map(|(k, _)| k).collect(), bytes))
}

/// What removing these snapshots would free, each: its map, and with the
/// last the blocks no remaining snapshot uses (as [`remove`] reports it).
pub fn estimate(
    dest: &Dest,
    disk: &str,
    entries: &[&Entry],
    grace: Option<Duration>,
) -> Result<Vec<u64>> {
    let names: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let (_, all) = garbage(dest, disk, &names, grace)?;
    let maps: u64 = entries.iter().map(|e| e.bytes.unwrap_or(0)).sum();
    let mut out: Vec<u64> = entries.iter().map(|e| e.bytes.unwrap_or(0)).collect();
    if let Some(last) = out.last_mut() {
        // `all` counts the doomed maps too (they have no record in the simulation).
        *last += all.saturating_sub(maps);
    }
    Ok(out)
}
