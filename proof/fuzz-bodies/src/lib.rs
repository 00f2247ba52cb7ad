//! The fuzz targets' bodies: each feeds outside bytes to one of snap's
//! parsers and reads everything it yields. A parser may refuse the bytes
//! (that is its error and its exit code); it must never panic, hang or
//! allocate without bound. `proof/fuzz/` wraps each in a libFuzzer target;
//! `tests/replay.rs` runs the kept inputs through them on stable.

use std::io::{self, Read};
use std::path::Path;

/// A target's body: bytes in, nothing out but the absence of a panic.
pub type Target = fn(&[u8]);

/// The targets by name, as `proof/fuzz/fuzz_targets/NAME.rs` and `proof/fuzz/corpus/NAME/` call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("tar", tar),
    ("restore", restore),
    ("records", records),
    ("index", index),
    ("block_map", block_map),
    ("config", config),
    ("disk_json", disk_json),
    ("qcow2_header", qcow2_header),
    ("age_header", age_header),
    ("lock", lock),
    ("listing", listing),
];

/// Reads at most this much of one member's content: a fuzzed sparse map may
/// claim exabytes of holes, which are cheap to describe and slow to read.
const MAX_CONTENT: u64 = 1 << 22;

/// A foreign tar, as restore, import and verify read it: every member, its
/// name made safe, its entry and attributes built, its content read; then
/// the end check.
fn tar_members(data: impl Read) {
    let mut archive = snap_read::members::archive(data);
    let Ok(members) = snap_read::members::members(&mut archive) else {
        return;
    };
    let mut stripped = false;
    let mut owners = snap_read::owners::Owners::new(true);
    for member in members {
        let Ok(mut m) = member else { break };
        if let Ok(Some(rel)) = snap_read::members::sanitize(&m.path, &mut stripped) {
            let _ = snap_read::members::entry_of(&m, rel, &mut stripped);
        }
        // Its xattrs and ACL texts, as restore and import convert them.
        let _ = snap_read::attrs::of_member(&m, &mut owners, Default::default());
        if io::copy(&mut (&mut m).take(MAX_CONTENT), &mut io::sink()).is_err() {
            break;
        }
    }
    let _ = snap_read::members::finish(archive);
}

/// The same bytes as [`tar_members`] reads them, then again followed by
/// endless zero blocks (`/dev/zero` behind a prefix): both must end.
pub fn tar(data: &[u8]) {
    tar_members(data);
    tar_members(data.chain(io::repeat(0)));
}

/// A whole restore of a foreign tar, as `snap-restore restore FILE --to DIR`
/// runs it (path safety, entries, content, the end check), of the bytes and
/// of the bytes cut in half: each ends, with nothing written outside DIR.
pub fn restore(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let store = snap_shared::store::Store::new(dir.path().join("store"));
    let source = snap_read::source::Source::new(None, store);
    let dec = snap_shared::crypt::Decrypt::default();
    let trust = snap_read::trust::Trust::nobody();
    let report = snap_cli::Reporter::capturing("snap-restore", Default::default());
    for (n, bytes) in [data, &data[..data.len() / 2]].into_iter().enumerate() {
        let tar = dir.path().join(format!("in{n}.tar"));
        if std::fs::write(&tar, bytes).is_err() {
            return;
        }
        let to = dir.path().join(format!("out{n}"));
        let name = tar.to_string_lossy().into_owned();
        let req = snap_read::restore::Request {
            policy: Default::default(),
            numeric_owner: false,
            name: &name,
            to: &to,
            paths: &[],
            overwrite: false,
            archive: false,
            trust: &trust,
            delete: false,
            onto_home: false,
            before: None,
        };
        let _ = snap_read::restore::run(&source, &req, &dec, &report, None);
    }
    let stray = std::fs::read_dir(dir.path()).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref().is_ok_and(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !(n.starts_with("in") || n.starts_with("out"))
            })
        })
        .count()
    });
    assert_eq!(stray, 0, "a restore wrote outside its target");
}

/// JSON-Lines records on stdin, as every tool of a pipeline reads them.
pub fn records(data: &[u8]) {
    for item in snap_shared::jsonl::RecordReader::new(data, "stdin") {
        if item.is_err() {
            break;
        }
    }
}

/// An index: its lines as they are, and the same bytes as a zstd index file.
pub fn index(data: &[u8]) {
    for line in String::from_utf8_lossy(data).lines() {
        let _ = snap_shared::index::Entry::from_json(line);
    }
    let Ok(packed) = zstd::encode_all(data, 1) else {
        return;
    };
    let input: Box<dyn Read + Send> = Box::new(io::Cursor::new(packed));
    let Ok(mut reader) = snap_shared::index::IndexReader::from_reader(input, Path::new("index"))
    else {
        return;
    };
    while let Ok(Some(_)) = reader.next_entry() {}
}

/// A disk snapshot's block map (zstd text), read densely as a restore does.
pub fn block_map(data: &[u8]) {
    let Ok(packed) = zstd::encode_all(data, 1) else {
        return;
    };
    let Ok(map) = snap_shared::blockmap::MapReader::new(io::Cursor::new(packed), "map".into())
    else {
        return;
    };
    // The dense walk yields one item per block of the claimed image size.
    for item in snap_shared::blockmap::Dense::new(map).take(1 << 16) {
        if item.is_err() {
            break;
        }
    }
}

/// A config file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = snap_shared::config::parse(text);
    }
}

/// A disk's `disk.json` and a disk snapshot's record.
pub fn disk_json(data: &[u8]) {
    let _ = serde_json_slice::<snap_shared::disks::DiskInfo>(data);
    let _ = serde_json_slice::<snap_shared::record::DiskSnapshotRecord>(data);
    let _ = serde_json_slice::<snap_shared::record::Record>(data);
}

fn serde_json_slice<T: for<'de> serde::Deserialize<'de>>(data: &[u8]) -> Option<T> {
    serde_json::from_slice(data).ok()
}

/// A qcow2 header and snapshot table, read in place.
pub fn qcow2_header(data: &[u8]) {
    let _ = snap_disk::image::qcow2_header_from(|buf, at| {
        let start = usize::try_from(at).ok()?;
        let end = start.checked_add(buf.len())?;
        buf.copy_from_slice(data.get(start..end)?);
        Some(())
    });
}

/// An age file's header and first chunks, opened with an X25519 identity
/// (scrypt recipients are refused without a passphrase, so their work
/// factor is never spent).
pub fn age_header(data: &[u8]) {
    let key: age::x25519::Identity = IDENTITY.parse().expect("a fixed test identity");
    let dec = snap_shared::crypt::Decrypt {
        identities: vec![Box::new(key)],
        passphrase: None,
    };
    if let Ok(r) = snap_shared::crypt::decrypting_reader(&dec, "archive", data) {
        let _ = io::copy(&mut r.take(MAX_CONTENT), &mut io::sink());
    }
}

/// A throwaway identity, only for fuzzing.
const IDENTITY: &str = "AGE-SECRET-KEY-1LVF8D3M7X2HE53H8UDCKW85CS9QH98QA8WD7DVTZYGQRF9H0F2JS4F9CR3";

/// A lock object at a destination.
pub fn lock(data: &[u8]) {
    let _ = snap_dest::locks::LockInfo::parse(data);
}

/// A destination's listing, as snap-prune groups it into archives and disk
/// snapshots: one key per line, its size the line's length. Whatever the
/// keys, every group it yields holds only keys of its own set that were
/// listed, each archive has its record, and nothing else is touched.
pub fn listing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let listing: Vec<(String, u64)> = text
        .lines()
        .map(|l| (l.to_string(), l.len() as u64))
        .collect();
    let listed: std::collections::HashSet<&str> = listing.iter().map(|(k, _)| k.as_str()).collect();
    for g in snap_shared::retention::listing::group_archives(&listing) {
        for e in &g.entries {
            assert!(e.objects.iter().any(|o| o.ends_with(".json")), "{e:?}");
            for o in &e.objects {
                assert!(listed.contains(o.as_str()), "{o} was not listed");
                assert!(
                    o.starts_with(&format!("{}/{}.", g.set, e.id)),
                    "{o} is not of {}/{}",
                    g.set,
                    e.id
                );
            }
        }
    }
    for (disk, names) in snap_shared::retention::listing::snapshots_listed(&listing) {
        for name in names.keys() {
            let record = format!("disks/{disk}/{name}.json");
            let map = format!("disks/{disk}/{name}.map.zst");
            assert!(
                listed.contains(record.as_str()) || listed.contains(map.as_str()),
                "{disk}/{name}"
            );
        }
    }
}
