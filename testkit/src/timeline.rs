//! A synthetic store for the timeline's bench and its 10,000-snapshot test.

use std::fs;
use std::io;
use std::path::Path;

use serde_json::json;

/// Writes a synthetic store of `sets` sets of `per_set` hourly snapshot
/// records from 2026-06-01 (no trees: the timeline reads records only):
/// every tenth with an archive record, every hundredth pinned, every 24th
/// tagged `daily`; and 4 disks of 50 blocks snapshots in chains.
pub fn synthetic_store(store: &Path, sets: usize, per_set: usize) -> io::Result<()> {
    let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .expect("a valid time")
        .to_utc();
    for s in 0..sets {
        let set = format!("set{s:02}");
        let sets = store.join("sets").join(&set);
        let archives = store.join("archives").join(&set);
        fs::create_dir_all(&sets)?;
        fs::create_dir_all(&archives)?;
        for i in 0..per_set {
            let t = start + chrono::Duration::hours(i as i64);
            let id = t.format("%Y-%m-%dT%H%M%SZ").to_string();
            let tags: Vec<&str> = if i % 24 == 0 { vec!["daily"] } else { vec![] };
            let rec = json!({"kind": "snapshot", "schema": "snap/1", "set": set, "id": id,
                "host": "bench", "created": t, "store": store, "path": sets.join(&id),
                "index": sets.join(format!("{id}.index.zst")), "parent": null,
                "sources": ["/data"], "files": 100_000 + i, "bytes": 2_000_000_000u64 + i as u64,
                "new_files": 40, "new_bytes": 3_000_000, "errors": u64::from(i % 97 == 0),
                "tags": tags, "description": (i % 50 == 0).then(|| format!("before change {i}")),
                "duration_s": 4.2});
            fs::write(sets.join(format!("{id}.json")), rec.to_string())?;
            if i % 10 == 0 {
                let a = json!({"kind": "archive", "schema": "snap/1", "set": set, "id": id,
                    "source": id, "path": archives.join(format!("{id}.tar.zst")), "bytes": 900_000_000,
                    "sha256": format!("{:064x}", i), "compression": "zstd", "encryption": null,
                    "base": null, "index": archives.join(format!("{id}.index.zst"))});
                fs::write(archives.join(format!("{id}.json")), a.to_string())?;
            }
            if i % 100 == 0 {
                fs::write(sets.join(format!("{id}.pin")), r#"{"reason":"bench"}"#)?;
            }
        }
    }
    make_disks(store, start)
}

fn make_disks(store: &Path, start: chrono::DateTime<chrono::Utc>) -> io::Result<()> {
    for d in 0..4 {
        let dir = store.join("disks").join(format!("vm{d}"));
        fs::create_dir_all(&dir)?;
        let info = json!({"image": "/vms/vm.qcow2", "block_size": 1 << 20, "encrypted": false});
        fs::write(dir.join("disk.json"), info.to_string())?;
        let mut parent: Option<String> = None;
        for i in 0..50 {
            let name = format!("s{i:03}");
            let rec = json!({"kind": "disk-snapshot", "schema": "snap/1", "disk": format!("vm{d}"),
                "name": name, "image": "/vms/vm.qcow2", "format": "raw", "method": "blocks",
                "created": start + chrono::Duration::hours(i), "virtual_size": 2u64 << 30,
                "stored_bytes": 1u64 << 30, "new_bytes": 20u64 << 20, "blocks": 1000,
                "parent": parent, "tags": [], "description": null});
            fs::write(dir.join(format!("{name}.json")), rec.to_string())?;
            parent = Some(name);
        }
    }
    Ok(())
}

/// Writes set `s` of `snaps` hourly snapshots of `files` files each (records
/// and indexes, no trees) for the path index's bench: between two snapshots
/// one file in a hundred changes size, and `hot` (returned) changes in every
/// one. Paths are `dNNN/fileNNNNNN.txt`, 1,000 to a folder. Each file's
/// index line is made again only when it changes.
pub fn many_indexes(store: &Path, snaps: usize, files: usize) -> io::Result<String> {
    use snap_shared::index::{Entry, EntryType, cmp_paths};
    use std::io::Write;
    let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .expect("a valid time")
        .to_utc();
    let dir = store.join("sets/s");
    fs::create_dir_all(&dir)?;
    let mut paths: Vec<String> = (0..files)
        .map(|i| format!("d{:03}/file{i:06}.txt", i / 1000))
        .collect();
    paths.sort_by(|a, b| cmp_paths(a.as_bytes(), b.as_bytes()));
    let hot_at = files * 3 / 4;
    // How often each file has changed by snapshot n: the hot one every
    // time, the others when n comes round to their number mod 100.
    let changes = |i: usize, n: usize| {
        if i == hot_at {
            n
        } else {
            (n + 100 - i % 100) / 100
        }
    };
    let line = |i: usize, c: usize| {
        let mut e = Entry::new(paths[i].as_bytes().to_vec(), EntryType::File);
        e.size = 1000 + c as u64;
        e.mode = 0o644;
        e.mtime = 1_600_000_000_000_000_000 + c as i64;
        e.sha256 = Some(
            format!("{:064x}", (i as u128) << 32 | c as u128)
                .parse()
                .expect("64 hex digits"),
        );
        let mut l = e.to_json();
        l.push('\n');
        l
    };
    let mut lines: Vec<(usize, String)> = (0..files).map(|i| (0, line(i, changes(i, 0)))).collect();
    for n in 0..snaps {
        let t = start + chrono::Duration::hours(n as i64);
        let id = t.format("%Y-%m-%dT%H%M%SZ").to_string();
        let index = dir.join(format!("{id}.index.zst"));
        let mut z = zstd::Encoder::new(io::BufWriter::new(fs::File::create(&index)?), 3)?;
        for (i, (c, l)) in lines.iter_mut().enumerate() {
            let now = changes(i, n);
            if now != *c {
                *c = now;
                *l = line(i, now);
            }
            z.write_all(l.as_bytes())?;
        }
        z.finish()?.flush()?;
        let rec = json!({"kind": "snapshot", "schema": "snap/1", "set": "s", "id": id,
            "host": "bench", "created": t, "store": store, "path": dir.join(&id),
            "index": index, "parent": null, "sources": ["/data"], "files": files,
            "bytes": files * 1000, "new_files": files / 100, "new_bytes": files * 10,
            "errors": 0});
        fs::write(dir.join(format!("{id}.json")), rec.to_string())?;
    }
    Ok(paths[hot_at].clone())
}
