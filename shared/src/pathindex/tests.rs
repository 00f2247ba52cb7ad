use super::*;
use crate::index::{Entry, EntryType, IndexWriter};
use crate::record::SnapshotRecord;

/// A store under a fresh folder of the test's.
fn store(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("snap-pathindex-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Store::new(dir)
}

/// Writes snapshot `id` of `set` holding `files` (path, size), its index
/// sorted, and returns its record.
fn snapshot(
    store: &Store,
    set: &str,
    id: &str,
    hour: u32,
    files: &[(&str, u64)],
) -> SnapshotRecord {
    std::fs::create_dir_all(store.set_dir(set)).unwrap();
    let mut files = files.to_vec();
    files.sort_by(|a, b| crate::index::cmp_paths(a.0.as_bytes(), b.0.as_bytes()));
    let out = std::fs::File::create(store.index_path(set, id)).unwrap();
    let mut w = IndexWriter::new(out).unwrap();
    for (p, size) in files {
        let mut e = Entry::new(p.as_bytes().to_vec(), EntryType::File);
        e.size = size;
        e.mode = 0o644;
        e.ctime = Some(i64::from(hour));
        w.push(&e).unwrap();
    }
    w.finish().unwrap();
    serde_json::from_value(serde_json::json!({
        "set": set, "id": id, "host": "h",
        "created": format!("2026-12-01T{hour:02}:00:00Z"),
        "store": "/s", "path": "/s/x", "index": "/s/x.index.zst", "parent": null,
        "sources": [], "files": 0, "bytes": 0, "new_files": 0, "new_bytes": 0, "errors": 0
    }))
    .unwrap()
}

fn sizes(h: &History) -> Vec<Option<u64>> {
    h.iter().map(|e| e.as_ref().map(|e| e.size)).collect()
}

fn history(
    store: &Store,
    path: &str,
    snaps: &[SnapshotRecord],
) -> (Vec<Option<u64>>, Option<String>) {
    let (h, w) = with_paths(store, |ix| ix.history(store, "s", path.as_bytes(), snaps)).unwrap();
    (sizes(&h), w)
}

/// A path's entry in each snapshot comes from the rows of its changes:
/// kept, changed, gone and back, and a ctime-only change is no new version.
#[test]
fn history_follows_changes_gaps_and_returns() {
    let st = store("history");
    let snaps = vec![
        snapshot(&st, "s", "a", 1, &[("d/f", 1), ("g", 5)]),
        snapshot(&st, "s", "b", 2, &[("d/f", 1), ("g", 5)]),
        snapshot(&st, "s", "c", 3, &[("d/f", 2)]),
        snapshot(&st, "s", "d", 4, &[("g", 6)]),
        snapshot(&st, "s", "e", 5, &[("d/f", 3), ("g", 6)]),
    ];
    assert_eq!(
        history(&st, "d/f", &snaps).0,
        [Some(1), Some(1), Some(2), None, Some(3)]
    );
    assert_eq!(
        history(&st, "g", &snaps).0,
        [Some(5), Some(5), None, Some(6), Some(6)]
    );
    assert_eq!(history(&st, "nowhere", &snaps).0, [None; 5]);
    let (rows, _) = with_paths(&st, |ix| {
        Ok(ix
            .conn
            .query_row("SELECT count(*) FROM versions", [], |r| r.get::<_, i64>(0))
            .unwrap())
    })
    .unwrap();
    // d/f: a, c, d (gone), e; g: a, c (gone), d.
    assert_eq!(rows, 7);
}

/// A new snapshot adds rows; a removed one changes none; one imported
/// between others, or an index rewritten, has the set folded again.
#[test]
fn appended_removed_imported_and_rewritten_snapshots() {
    let st = store("changes");
    let mut snaps = vec![
        snapshot(&st, "s", "a", 1, &[("f", 1)]),
        snapshot(&st, "s", "c", 3, &[("f", 3)]),
    ];
    assert_eq!(history(&st, "f", &snaps).0, [Some(1), Some(3)]);
    snaps.push(snapshot(&st, "s", "d", 4, &[("f", 4)]));
    assert_eq!(history(&st, "f", &snaps).0, [Some(1), Some(3), Some(4)]);
    // Removed: the rest still answer from the same rows.
    let without_c: Vec<_> = snaps.iter().filter(|r| r.id != "c").cloned().collect();
    assert_eq!(history(&st, "f", &without_c).0, [Some(1), Some(4)]);
    // Imported between a and c.
    snaps.insert(1, snapshot(&st, "s", "b", 2, &[("f", 2)]));
    assert_eq!(
        history(&st, "f", &snaps).0,
        [Some(1), Some(2), Some(3), Some(4)]
    );
    // Rewritten in place (another size, so another stamp).
    let again = snapshot(
        &st,
        "s",
        "c",
        3,
        &[("f", 30), ("longer/name/to/change/the/size", 1)],
    );
    assert_eq!(again.id, "c");
    assert_eq!(
        history(&st, "f", &snaps).0,
        [Some(1), Some(2), Some(30), Some(4)]
    );
}

/// Search matches the file name in any case, across sets, counts the
/// snapshots holding each path, and stops at the limit.
#[test]
fn search_by_name_across_sets() {
    let st = store("search");
    let snaps = vec![
        snapshot(
            &st,
            "s",
            "a",
            1,
            &[("x/Report.txt", 1), ("report-dir/y", 1)],
        ),
        snapshot(&st, "s", "b", 2, &[("x/Report.txt", 2)]),
        snapshot(&st, "t", "a", 1, &[("report.md", 1)]),
    ];
    let ((found, more), _) = with_paths(&st, |ix| ix.search(&st, "report", &snaps, 10)).unwrap();
    let got: Vec<_> = found
        .iter()
        .map(|f| {
            (
                f.set.as_str(),
                String::from_utf8_lossy(&f.path).into_owned(),
                f.count,
                f.newest.as_str(),
                f.oldest.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("s", "x/Report.txt".to_string(), 2, "b", "a"),
            ("t", "report.md".to_string(), 1, "a", "a")
        ]
    );
    assert!(!more);
    let ((found, more), _) = with_paths(&st, |ix| ix.search(&st, "report", &snaps, 1)).unwrap();
    assert_eq!((found.len(), more), (1, true));
}

/// A damaged file is moved aside and rebuilt, with a warning, and answers
/// as before; so is one with a row that does not parse.
#[test]
fn a_damaged_index_is_rebuilt_not_trusted() {
    let st = store("damage");
    let snaps = vec![
        snapshot(&st, "s", "a", 1, &[("f", 1)]),
        snapshot(&st, "s", "b", 2, &[("f", 2)]),
    ];
    assert_eq!(history(&st, "f", &snaps), (vec![Some(1), Some(2)], None));
    // A row that parses as SQL but not as an entry.
    with_paths(&st, |ix| {
        ix.conn
            .execute("UPDATE versions SET entry = 'garbage' WHERE since = 2", [])
            .unwrap();
        Ok(())
    })
    .unwrap();
    let (got, warning) = history(&st, "f", &snaps);
    assert_eq!(got, [Some(1), Some(2)]);
    assert!(warning.unwrap().contains("was damaged"));
    // Bytes overwritten in the middle of the file.
    let p = st.paths_index_path();
    drop(std::fs::remove_file(p.with_extension("sqlite-wal")));
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    for b in &mut bytes[100..n] {
        *b = 0x5a;
    }
    std::fs::write(&p, &bytes).unwrap();
    let (got, warning) = history(&st, "f", &snaps);
    assert_eq!(got, [Some(1), Some(2)]);
    assert!(warning.unwrap().contains("was damaged"), "no warning");
}

/// A file another snap made (another schema version) is rebuilt, not read.
#[test]
fn another_schema_version_is_rebuilt() {
    let st = store("schema");
    let snaps = vec![snapshot(&st, "s", "a", 1, &[("f", 1)])];
    assert_eq!(history(&st, "f", &snaps).0, [Some(1)]);
    with_paths(&st, |ix| {
        ix.conn.pragma_update(None, "user_version", 1).unwrap();
        Ok(())
    })
    .unwrap();
    let (got, warning) = history(&st, "f", &snaps);
    assert_eq!(got, [Some(1)]);
    assert!(
        warning
            .unwrap()
            .contains("schema version 1, this snap writes 2")
    );
}
