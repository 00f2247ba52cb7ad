//! The invariants, read straight off the shared store.
//!
//! After every change: every published record restores, as far as the
//! destination can tell without a local copy: an archive's data, index and
//! checksums are there and the data hashes to the record's sha256, and its
//! base's record is there, and so is the record's signature; a disk snapshot's map is there and names only
//! blocks that are there. At the end, after the next runs: nothing is left
//! that no record needs (no leak), no lock and no prune intent.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use object_store::memory::InMemory;
use serde_json::Value;

use snap_shared::blockmap::MapReader;
use snap_shared::disks::block_rel;
use snap_shared::hash::Sha256Digest;

/// What is wrong with the published records now.
pub fn records(store: &InMemory) -> Vec<String> {
    let objects: BTreeMap<String, Bytes> = crate::sim_store::snapshot(store).into_iter().collect();
    let mut bad = Vec::new();
    for (key, bytes) in &objects {
        match classify(key) {
            Kind::ArchiveRecord { set, id } => check_archive(&objects, &set, &id, bytes, &mut bad),
            Kind::DiskRecord { disk, name } => check_disk(&objects, &disk, &name, &mut bad),
            _ => {}
        }
    }
    bad
}

/// What is there that no record needs (after the final runs).
pub fn leaks(store: &InMemory) -> Vec<String> {
    let objects: BTreeMap<String, Bytes> = crate::sim_store::snapshot(store).into_iter().collect();
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for key in objects.keys() {
        match classify(key) {
            Kind::ArchiveRecord { set, id } => {
                for x in ["tar.zst", "index.zst", "sha256", "json", "json.sig"] {
                    needed.insert(format!("{set}/{id}.{x}"));
                }
            }
            Kind::DiskRecord { disk, name } => {
                needed.insert(key.clone());
                needed.insert(format!("{key}.sig"));
                needed.insert(format!("disks/{disk}/disk.json"));
                let map = format!("disks/{disk}/{name}.map.zst");
                needed.insert(map.clone());
                if let Some(m) = objects.get(&map) {
                    for d in map_blocks(m, &map).unwrap_or_default() {
                        needed.insert(format!("disks/{disk}/blocks/{}", block_rel(&d)));
                    }
                }
            }
            _ => {}
        }
    }
    objects
        .keys()
        .filter(|k| !needed.contains(*k))
        .map(|k| format!("left over: {k}"))
        .collect()
}

enum Kind {
    ArchiveRecord { set: String, id: String },
    DiskRecord { disk: String, name: String },
    Other,
}

fn classify(key: &str) -> Kind {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        ["disks", disk, file] => match file.strip_suffix(".json") {
            Some(name) if name != "disk" => Kind::DiskRecord {
                disk: disk.to_string(),
                name: name.to_string(),
            },
            _ => Kind::Other,
        },
        [set, file] if !set.starts_with('.') && *set != "disks" => {
            match file.strip_suffix(".json") {
                Some(id) if snap_shared::id::parse_id(id).is_some() => Kind::ArchiveRecord {
                    set: set.to_string(),
                    id: id.to_string(),
                },
                _ => Kind::Other,
            }
        }
        _ => Kind::Other,
    }
}

fn check_archive(
    objects: &BTreeMap<String, Bytes>,
    set: &str,
    id: &str,
    record: &Bytes,
    bad: &mut Vec<String>,
) {
    let rec: Value = match serde_json::from_slice(record) {
        Ok(v) => v,
        Err(e) => return bad.push(format!("{set}/{id}.json: not JSON: {e}")),
    };
    // The machines sign every record (world.rs): a published one has its signature.
    for x in ["index.zst", "sha256", "json.sig"] {
        if !objects.contains_key(&format!("{set}/{id}.{x}")) {
            bad.push(format!("{set}/{id}: its .{x} is missing"));
        }
    }
    match objects.get(&format!("{set}/{id}.tar.zst")) {
        None => bad.push(format!("{set}/{id}: its data is missing")),
        Some(data) => {
            let got = Sha256Digest::of(data).to_hex();
            if rec["sha256"].as_str() != Some(got.as_str()) {
                bad.push(format!(
                    "{set}/{id}: its data hashes to {got}, not as recorded"
                ));
            }
        }
    }
    if let Some(base) = rec["base"].as_str()
        && !objects.contains_key(&format!("{set}/{base}.json"))
    {
        bad.push(format!("{set}/{id}: its base {base} is missing"));
    }
}

fn check_disk(objects: &BTreeMap<String, Bytes>, disk: &str, name: &str, bad: &mut Vec<String>) {
    if !objects.contains_key(&format!("disks/{disk}/{name}.json.sig")) {
        bad.push(format!(
            "disks/{disk}/{name}: its record's signature is missing"
        ));
    }
    let map = format!("disks/{disk}/{name}.map.zst");
    let Some(bytes) = objects.get(&map) else {
        return bad.push(format!("disks/{disk}/{name}: its map is missing"));
    };
    match map_blocks(bytes, &map) {
        Err(e) => bad.push(format!("{map}: {e}")),
        Ok(blocks) => {
            for d in blocks {
                let key = format!("disks/{disk}/blocks/{}", block_rel(&d));
                if !objects.contains_key(&key) {
                    bad.push(format!("disks/{disk}/{name}: block {key} is missing"));
                }
            }
        }
    }
}

fn map_blocks(bytes: &Bytes, what: &str) -> Result<Vec<Sha256Digest>, String> {
    let reader = MapReader::new(&bytes[..], what.to_string()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for entry in reader {
        out.push(entry.map_err(|e| e.to_string())?.1);
    }
    Ok(out)
}
