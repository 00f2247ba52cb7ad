//! CLI tests for snap-prune: the store (hard-linked trees, bytes really
//! freed, `latest`, the catalog), folder destinations (incremental chains,
//! tags, incomplete archives, work in progress left alone), a real S3 server
//! (moto), the config's retention, refusals, locks, and kill -9 mid-prune.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::{Value, json};
use snap_testkit::{World, code, records, stderr};

/// The ids of the records with this action, in output order.
fn ids(recs: &[Value], action: &str) -> Vec<String> {
    recs.iter()
        .filter(|r| r["action"] == action)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// What these tests do in the shared test world.
trait PruneWorld {
    /// A tool with the store in `SNAP_STORE`.
    fn cmd(&self, name: &str) -> Command;

    /// `snap-prune ARGS` on the world's store.
    fn prune(&self, args: &[&str]) -> Output;

    /// A tree snapshot in the store: an own file of `own` bytes, and a 64 KiB
    /// file hard-linked to the previous snapshot's when `prev` is given.
    fn snapshot(&self, set: &str, id: &str, own: usize, prev: Option<&str>, tags: &[&str]);

    /// A snapshot's index and record.
    fn record(&self, set: &str, id: &str, prev: Option<&str>, tags: &[&str]);

    /// An archive in a folder laid out like a destination: data, index, sums, record.
    fn archive(&self, root: &str, set: &str, id: &str, base: Option<&str>, tags: &[&str]);

    /// The names in a folder of the world, sorted.
    fn names(&self, rel: &str) -> Vec<String>;
}

impl PruneWorld for World {
    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::from_std(self.tool(name));
        c.env("SNAP_STORE", self.path("store"));
        c
    }

    fn prune(&self, args: &[&str]) -> Output {
        self.cmd("snap-prune").args(args).output().unwrap()
    }

    fn snapshot(&self, set: &str, id: &str, own: usize, prev: Option<&str>, tags: &[&str]) {
        let tree = format!("store/sets/{set}/{id}");
        self.write(&format!("{tree}/own.bin"), vec![1u8; own]);
        match prev {
            Some(p) => fs::hard_link(
                self.path(&format!("store/sets/{set}/{p}/shared.bin")),
                self.path(&format!("{tree}/shared.bin")),
            )
            .unwrap(),
            None => {
                self.write(&format!("{tree}/shared.bin"), vec![2u8; 64 << 10]);
            }
        }
        self.record(set, id, prev, tags);
    }

    fn record(&self, set: &str, id: &str, prev: Option<&str>, tags: &[&str]) {
        let tree = format!("store/sets/{set}/{id}");
        self.write(&format!("store/sets/{set}/{id}.index.zst"), b"index");
        let rec = json!({"kind": "snapshot", "schema": "snap/1", "set": set, "id": id, "host": "h",
            "created": created(id), "store": self.path("store"), "path": self.path(&tree),
            "index": self.path(&format!("store/sets/{set}/{id}.index.zst")), "parent": prev,
            "sources": ["/src"], "files": 2, "bytes": 1, "new_files": 1, "new_bytes": 1, "errors": 0,
            "tags": tags});
        self.write(
            &format!("store/sets/{set}/{id}.json"),
            rec.to_string().as_bytes(),
        );
    }

    fn archive(&self, root: &str, set: &str, id: &str, base: Option<&str>, tags: &[&str]) {
        let dir = format!("{root}/{set}");
        self.write(&format!("{dir}/{id}.tar.zst"), vec![3u8; 1000]);
        self.write(&format!("{dir}/{id}.index.zst"), b"index");
        self.write(&format!("{dir}/{id}.sha256"), b"sums\n");
        let rec = json!({"kind": "archive", "schema": "snap/1", "set": set, "id": id, "source": id,
            "path": format!("/x/{id}.tar.zst"), "bytes": 1000, "sha256": "00", "compression": "zstd",
            "encryption": null, "base": base, "index": format!("/x/{id}.index.zst"), "tags": tags});
        self.write(&format!("{dir}/{id}.json"), rec.to_string().as_bytes());
    }

    fn names(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The RFC 3339 time of an id like 2026-01-02T030405Z.
fn created(id: &str) -> String {
    format!("{}:{}:{}Z", &id[..13], &id[13..15], &id[15..17])
}

/// Bytes a file or folder holds on disk.
fn on_disk(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().blocks() * 512
}

const IDS: [&str; 4] = [
    "2026-01-01T000000Z",
    "2026-01-02T000000Z",
    "2026-01-03T000000Z",
    "2026-01-04T000000Z",
];

/// A store of set `d` with the four snapshots of IDS, sharing one file.
fn store_world() -> World {
    let w = World::new();
    let mut prev = None;
    for (i, id) in IDS.iter().enumerate() {
        w.snapshot("d", id, 8192 * (i + 1), prev, &[]);
        prev = Some(*id);
    }
    w
}

/// keep-last 2 in the store removes the two oldest trees with their index
/// and record, frees only their own files (the shared one lives on in the
/// kept snapshots), and repoints `latest`.
#[test]
fn store_keep_last_frees_only_what_is_not_shared() {
    let w = store_world();
    let set = |rel: &str| w.path(&format!("store/sets/d/{rel}"));
    let mut expected = 0;
    for id in &IDS[..2] {
        for rel in [
            id.to_string(),
            format!("{id}/own.bin"),
            format!("{id}.json"),
            format!("{id}.index.zst"),
        ] {
            expected += on_disk(&set(&rel));
        }
    }
    let out = w.prune(&["--keep-last", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "remove"), &IDS[..2]);
    assert_eq!(ids(&recs, "keep"), &IDS[2..]);
    let freed: u64 = recs.iter().filter_map(|r| r["freed"].as_u64()).sum();
    assert_eq!(freed, expected);
    assert_eq!(recs[3]["reasons"], json!(["last snapshot"]));
    assert_eq!(
        (recs[0]["what"].as_str(), recs[0]["set"].as_str()),
        (Some("snapshot"), Some("d"))
    );
    assert_eq!(
        w.names("store/sets/d"),
        [
            "2026-01-03T000000Z",
            "2026-01-03T000000Z.index.zst",
            "2026-01-03T000000Z.json",
            "2026-01-04T000000Z",
            "2026-01-04T000000Z.index.zst",
            "2026-01-04T000000Z.json",
            "latest"
        ]
    );
    assert_eq!(
        fs::read(set("2026-01-03T000000Z/shared.bin")).unwrap(),
        vec![2u8; 64 << 10]
    );
    assert_eq!(fs::read_link(set("latest")).unwrap(), Path::new(IDS[3]));
    assert!(
        stderr(&out).contains("removed 2, freed"),
        "{}",
        stderr(&out)
    );
}

/// The catalog follows the files: removed snapshots are gone from it.
#[test]
fn store_catalog_follows_the_files() {
    let w = store_world();
    let store = snap_shared::store::Store::new(w.path("store"));
    drop(snap_shared::catalog::Catalog::open(&store).unwrap());
    assert_eq!(code(&w.prune(&["--keep-last", "1"])), 0);
    let (cat, _) = snap_shared::catalog::Catalog::open(&store).unwrap();
    let left: Vec<String> = cat
        .snapshots(Some("d"))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(left, [IDS[3]]);
}

/// A dry run prints the plan and what it would free, and removes nothing;
/// its freed bytes are what the real run then frees.
#[test]
fn dry_run_changes_nothing_and_predicts_the_bytes() {
    let w = store_world();
    // A file only the two oldest share: freed with the second of them.
    let old = |id: &str| w.path(&format!("store/sets/d/{id}/old.bin"));
    fs::write(old(IDS[0]), vec![5u8; 64 << 10]).unwrap();
    fs::hard_link(old(IDS[0]), old(IDS[1])).unwrap();
    let before = w.names("store/sets/d");
    let dry = w.prune(&["--keep-last", "1", "--dry-run"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_eq!(w.names("store/sets/d"), before);
    let recs = records(&dry);
    assert!(recs.iter().all(|r| r["dry_run"] == true));
    let predicted: Vec<u64> = recs.iter().filter_map(|r| r["freed"].as_u64()).collect();
    let real = w.prune(&["--keep-last", "1"]);
    let freed: Vec<u64> = records(&real)
        .iter()
        .filter_map(|r| r["freed"].as_u64())
        .collect();
    assert_eq!(predicted, freed);
    // The second removal frees old.bin, whose other link went with the
    // first; the file all four share lives on in the kept one.
    assert!(
        freed[0] < 64 << 10 && freed[1] >= 64 << 10 && freed[2] < 64 << 10,
        "{freed:?}"
    );
}

/// With no rule (or only rules that keep nothing) nothing is removed: exit 64.
#[test]
fn no_rule_is_refused() {
    let w = store_world();
    let before = w.names("store/sets/d");
    for args in [
        &[][..],
        &["--keep-last", "0"][..],
        &["--keep-daily", "0", "--keep-last", "0"][..],
    ] {
        let out = w.prune(args);
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no retention rule"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
    let out = w.prune(&["--keep-within", "3w"]);
    assert_eq!(code(&out), 64);
    assert!(stderr(&out).contains("not a span"), "{}", stderr(&out));
    assert_eq!(w.names("store/sets/d"), before);
}

/// restic's --keep-within-daily: the newest of each day strictly within
/// the span of the newest, with restic's reason; the config takes it too.
#[test]
fn keep_within_daily_as_restic() {
    let w = store_world();
    let out = w.prune(&["--keep-within-daily", "2d"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    let kept: Vec<(&str, &Value)> = recs
        .iter()
        .filter(|r| r["action"] == "keep")
        .map(|r| (r["id"].as_str().unwrap(), &r["reasons"]))
        .collect();
    assert_eq!(
        kept,
        [
            (IDS[2], &serde_json::json!(["daily within 2d"])),
            (IDS[3], &serde_json::json!(["daily within 2d"])),
        ]
    );
    assert_eq!(
        w.names("store/sets/d").len(),
        2 * 3 + 1,
        "two kept: tree, record, index; latest"
    );
    fs::write(
        w.path("config.json"),
        r#"{"retention": {"local": {"within_weekly": "1m"}}}"#,
    )
    .unwrap();
    let out = w.prune(&[
        "--config",
        w.path("config.json").to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("weekly within 1m of the newest"),
        "{}",
        stderr(&out)
    );
}

/// A pin beside a record (`snap-restore pin` writes it) keeps the snapshot
/// whatever the rules say, with the reason `pinned`; without it, it goes.
#[test]
fn a_pinned_snapshot_is_kept() {
    let w = store_world();
    let pin = w.path(&format!("store/sets/d/{}.pin", IDS[0]));
    fs::write(&pin, r#"{"reason":"before the upgrade"}"#).unwrap();
    let out = w.prune(&["--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let kept: Vec<(String, Value)> = records(&out)
        .into_iter()
        .filter(|r| r["action"] == "keep")
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["reasons"].clone()))
        .collect();
    assert_eq!(
        kept,
        [
            (IDS[0].to_string(), serde_json::json!(["pinned"])),
            (IDS[3].to_string(), serde_json::json!(["last snapshot"])),
        ]
    );
    assert!(w.path(&format!("store/sets/d/{}", IDS[0])).is_dir());
    fs::remove_file(&pin).unwrap();
    let out = w.prune(&["--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!w.path(&format!("store/sets/d/{}", IDS[0])).exists());
}

/// --forget removes exactly the named snapshot and speaks only of it; a
/// pinned one, a missing one (even beside a good one) and a bad name are
/// refused before anything is removed.
#[test]
fn forget_removes_exactly_one() {
    let w = store_world();
    let name = |id: &str| format!("d/{id}");
    fs::write(w.path(&format!("store/sets/d/{}.pin", IDS[2])), "{}").unwrap();
    let before = w.names("store/sets/d");
    for (args, exit, says) in [
        (vec!["--forget".to_string(), name(IDS[2])], 64, "is pinned"),
        (
            vec![
                "--forget".into(),
                name(IDS[1]),
                "--forget".into(),
                name("2020-01-01T000000Z"),
            ],
            66,
            "not found",
        ),
        (vec!["--forget".into(), "d".into()], 64, "names SET/ID"),
        (
            vec![
                "--forget".into(),
                name(IDS[1]),
                "--keep-last".into(),
                "1".into(),
            ],
            64,
            "cannot be used with",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = w.prune(&args);
        assert_eq!(code(&out), exit, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(
            w.names("store/sets/d"),
            before,
            "{args:?} changed the store"
        );
    }
    let out = w.prune(&["--forget", &name(IDS[1])]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["id"], IDS[1]);
    assert_eq!(recs[0]["action"], "remove");
    assert!(!w.path(&format!("store/sets/d/{}", IDS[1])).exists());
    for id in [IDS[0], IDS[2], IDS[3]] {
        assert!(w.path(&format!("store/sets/d/{id}")).is_dir());
    }
}

/// At a destination, --forget refuses the base of an archive that stays,
/// and takes a chain named whole.
#[test]
fn forget_keeps_a_chain_whole() {
    let w = World::new();
    let [a, b] = ["2026-03-01T000000Z", "2026-03-02T000000Z"];
    w.archive("usb", "d", a, None, &[]);
    w.archive("usb", "d", b, Some(a), &[]);
    let usb = w.path("usb");
    let dest = usb.to_str().unwrap();
    let out = w.prune(&["--dest", dest, "--forget", &format!("d/{a}")]);
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("is needed: base of {b}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.names("usb/d").len(), 8);
    let out = w.prune(&[
        "--dest",
        dest,
        "--forget",
        &format!("d/{a}"),
        "--forget",
        &format!("d/{b}"),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(w.names("usb/d").is_empty(), "{:?}", w.names("usb/d"));
}

/// A held store lock is exit 75 naming the holder, and nothing is removed.
#[test]
fn locked_store_is_busy() {
    let w = store_world();
    let _held =
        snap_shared::lock::StoreLock::acquire(&w.path("store/lock"), "snap-collect").unwrap();
    let out = w.prune(&["--keep-last", "1"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(stderr(&out).contains("snap-collect"), "{}", stderr(&out));
    assert_eq!(w.names("store/sets/d").len(), 12);
}

/// What a crash leaves (a record without its tree, a tree being removed) is
/// finished by the next run; kept snapshots are untouched.
#[test]
fn an_interrupted_prune_is_finished_by_the_next_run() {
    let w = store_world();
    let set = |rel: &str| w.path(&format!("store/sets/d/{rel}"));
    fs::rename(set(IDS[0]), set(&format!(".{}.pruning", IDS[0]))).unwrap();
    fs::rename(set(IDS[1]), set(&format!(".{}.pruning", IDS[1]))).unwrap();
    fs::remove_file(set(&format!("{}.index.zst", IDS[1]))).unwrap();
    fs::remove_file(set(&format!("{}.json", IDS[1]))).unwrap();
    let out = w.prune(&["--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "remove"), [IDS[0], IDS[2]]);
    assert!(
        recs[0]["problem"]
            .as_str()
            .unwrap()
            .starts_with("incomplete")
    );
    assert!(
        stderr(&out).contains("finished removing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        w.names("store/sets/d"),
        [
            IDS[3].to_string(),
            format!("{}.index.zst", IDS[3]),
            format!("{}.json", IDS[3]),
            "latest".into()
        ]
    );
}

/// At a destination, a prune cut short after unlisting archives (records
/// gone, an intent naming their objects left) is finished by the next one;
/// an archive the intent names whose record is still there is left to the
/// new plan, which here keeps it as the base of a newer archive.
#[test]
fn an_interrupted_destination_prune_is_finished_by_its_intent() {
    let w = World::new();
    let [a, b, c] = [
        "2026-01-01T000000Z",
        "2026-01-02T000000Z",
        "2026-01-03T000000Z",
    ];
    w.archive("usb", "d", a, None, &[]);
    w.archive("usb", "d", b, None, &[]);
    w.archive("usb", "d", c, Some(b), &[]);
    fs::remove_file(w.path(&format!("usb/d/{a}.json"))).unwrap();
    let objects = |id: &str| {
        ["tar.zst", "index.zst", "sha256", "json"]
            .map(|x| format!("d/{id}.{x}"))
            .to_vec()
    };
    let intent =
        json!({"schema": "snap/1", "kind": "prune-intent", "archives": [objects(a), objects(b)]});
    w.write("usb/.snap/pruning/x.json", intent.to_string().as_bytes());
    let out = w.prune(&["--dest", "usb", "--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("finished removing what an interrupted prune left in"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ids(&records(&out), "keep"), [b, c]);
    let mut left = w.names("usb/d");
    left.retain(|n| !n.starts_with('.'));
    assert_eq!(left.len(), 8, "{left:?}");
    assert!(left.iter().all(|n| !n.starts_with(a)), "{left:?}");
    assert!(w.names("usb/.snap/pruning").is_empty());
}

/// kill -9 at a random moment of a large prune: every snapshot still listed
/// is whole or incomplete (never half a tree under its name), and a rerun
/// ends with exactly the kept ones, whole.
#[test]
fn kill_mid_prune_then_rerun() {
    let w = World::new();
    let ids: Vec<String> = (0..12)
        .map(|i| format!("2026-02-{:02}T000000Z", i + 1))
        .collect();
    for id in &ids {
        for f in 0..400 {
            w.write(&format!("store/sets/d/{id}/dir{}/f{f}", f % 20), b"x");
        }
        w.record("d", id, None, &[]);
    }
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("snap-prune"))
        .env_clear()
        .env("HOME", w.path("home"))
        .env("SNAP_STORE", w.path("store"))
        .args(["--keep-last", "3", "-q"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    let _ = child.kill();
    let _ = child.wait();
    let count = |id: &str| walk_count(&w.path(&format!("store/sets/d/{id}")));
    for id in &ids {
        if w.path(&format!("store/sets/d/{id}")).exists() {
            assert_eq!(count(id), 400, "{id} is listed half-removed");
        }
    }
    let out = w.prune(&["--keep-last", "3"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for id in &ids[9..] {
        assert_eq!(count(id), 400);
    }
    let left: Vec<String> = w.names("store/sets/d");
    assert_eq!(left.len(), 3 * 3 + 1, "{left:?}");
}

fn walk_count(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// At a folder destination an incremental archive keeps its whole chain:
/// keep-last 1 keeps E and its base D; keep-last 3 keeps C, D, E and C's
/// bases B and A, "base of" saying why.
#[test]
fn incremental_chains_keep_their_bases() {
    let w = World::new();
    let [a, b, c, d, e] = [
        "2026-03-01T000000Z",
        "2026-03-02T000000Z",
        "2026-03-03T000000Z",
        "2026-03-04T000000Z",
        "2026-03-05T000000Z",
    ];
    for (id, base) in [
        (a, None),
        (b, Some(a)),
        (c, Some(b)),
        (d, None),
        (e, Some(d)),
    ] {
        w.archive("usb", "d", id, base, &[]);
    }
    let dry = w.prune(&["--dest", "usb", "--keep-last", "3", "--dry-run"]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let recs = records(&dry);
    assert!(ids(&recs, "remove").is_empty());
    assert_eq!(recs[0]["reasons"], json!([format!("base of {b}")]));
    assert_eq!(recs[1]["reasons"], json!([format!("base of {c}")]));

    let out = w.prune(&["--dest", "usb", "--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "remove"), [a, b, c]);
    assert_eq!(recs[3]["reasons"], json!([format!("base of {e}")]));
    assert_eq!(recs[0]["freed"], recs[0]["bytes"]);
    let left = w.names("usb/d");
    assert_eq!(left.len(), 8, "{left:?}");
    assert!(left.iter().all(|n| n.starts_with(d) || n.starts_with(e)));
}

/// keep-tag reads tags from archive records at a destination; a tagged
/// archive is kept however old.
#[test]
fn tags_keep_archives_at_a_destination() {
    let w = World::new();
    w.archive("usb", "d", IDS[0], None, &["pre-upgrade"]);
    for id in &IDS[1..] {
        w.archive("usb", "d", id, None, &[]);
    }
    let out = w.prune(&[
        "--dest",
        "usb",
        "--keep-last",
        "1",
        "--keep-tag",
        "pre-upgrade",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "keep"), [IDS[0], IDS[3]]);
    assert_eq!(recs[0]["reasons"], json!(["has tags pre-upgrade"]));
}

/// Disk snapshots at a destination are kept by their records' tags too,
/// one group per disk, timed by the records.
#[test]
fn tags_keep_disk_snapshots_at_a_destination() {
    use snap_shared::blockmap::{MapHeader, MapWriter};
    let w = World::new();
    w.write(
        "usb/disks/vm/disk.json",
        br#"{"image": "/vm.raw", "block_size": 4}"#,
    );
    let names = ["a", "b", "c"];
    for (n, name) in names.iter().enumerate() {
        let header = MapHeader {
            block_size: 4,
            virtual_size: 4,
        };
        let map = MapWriter::new(Vec::new(), header)
            .unwrap()
            .finish()
            .unwrap();
        w.write(&format!("usb/disks/vm/{name}.map.zst"), &map);
        let tags: &[&str] = if *name == "a" { &["keep"] } else { &[] };
        let rec = json!({"kind": "disk-snapshot", "schema": "snap/1", "disk": "vm", "name": name,
            "image": "/vm.raw", "format": "raw", "method": "blocks",
            "created": format!("2026-01-0{}T00:00:00Z", n + 1), "virtual_size": 4,
            "stored_bytes": 0, "new_bytes": 0, "blocks": 0, "parent": null, "tags": tags});
        w.write(
            &format!("usb/disks/vm/{name}.json"),
            rec.to_string().as_bytes(),
        );
    }
    let out = w.prune(&["--dest", "usb", "--keep-last", "1", "--keep-tag", "keep"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "keep"), ["a", "c"]);
    assert_eq!(ids(&recs, "remove"), ["b"]);
    assert_eq!(recs[0]["reasons"], json!(["has tags keep"]));
    assert!(!w.path("usb/disks/vm/b.json").exists());
}

/// A record whose data is gone (an interrupted prune) is removed whatever
/// the rules; files without a record (a push in progress) and unknown files
/// are never touched.
#[test]
fn incomplete_archives_go_and_work_in_progress_stays() {
    let w = World::new();
    for id in &IDS[..3] {
        w.archive("usb", "d", id, None, &[]);
    }
    fs::remove_file(w.path(&format!("usb/d/{}.tar.zst", IDS[2]))).unwrap();
    w.write(&format!("usb/d/{}.tar.zst", IDS[3]), b"pushing");
    w.write(&format!("usb/d/.{}.tar.zst.snap-part", IDS[3]), b"part");
    w.write("usb/d/NOTES.txt", b"mine");
    let out = w.prune(&["--dest", "usb", "--keep-last", "5"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "remove"), [IDS[2]]);
    assert_eq!(ids(&recs, "keep"), &IDS[..2]);
    let left = w.names("usb/d");
    assert!(
        left.contains(&format!("{}.tar.zst", IDS[3])) && left.contains(&"NOTES.txt".to_string())
    );
    assert!(!left.iter().any(|n| n.starts_with(IDS[2])), "{left:?}");
}

/// The config's retention: "local" for the store, "external" for a
/// destination, a destination's own entry over "external"; the summary of a
/// priced destination gives the monthly cost; a typo is exit 78 naming it.
#[test]
fn config_retention_per_place_and_cost() {
    let w = store_world();
    for id in &IDS {
        w.archive("usb", "d", id, None, &[]);
        w.archive("nas", "d", id, None, &[]);
    }
    let cfg = json!({
        "destinations": [
            {"name": "usb", "path": w.path("usb"), "price_per_gib_month": 1000.0},
            {"name": "nas", "path": w.path("nas")}
        ],
        "retention": {"local": 3, "external": 2, "nas": {"last": 1}}
    });
    w.write("cfg.json", cfg.to_string().as_bytes());
    let run = |args: &[&str]| {
        let mut all = vec!["--config", "cfg.json"];
        all.extend(args);
        w.prune(&all)
    };
    let out = run(&[]);
    assert_eq!(ids(&records(&out), "keep").len(), 3, "{}", stderr(&out));
    let out = run(&["--dest", "usb", "--dry-run"]);
    assert_eq!(ids(&records(&out), "keep"), &IDS[2..]);
    let err = stderr(&out);
    assert!(err.contains("(retention.external)"), "{err}");
    // 4 archives of 1010 bytes at 1000 per GiB-month: 3.76e-3 then half that.
    assert!(
        err.contains("about 0.00 -> 0.00 a month at 1000 per GiB-month"),
        "{err}"
    );
    let out = run(&["--dest", "nas"]);
    assert_eq!(ids(&records(&out), "keep"), &IDS[3..]);
    assert!(stderr(&out).contains("(retention.nas)"));

    let bad = json!({"retention": {"local": {"dialy": 7}}});
    w.write("bad.json", bad.to_string().as_bytes());
    let out = w.prune(&["--config", "bad.json"]);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("retention.local.dialy"),
        "{}",
        stderr(&out)
    );
}

/// `retention.tags`: the pre-apt snapshots are counted among themselves by
/// their rule and the rest by the place's, in the store and at a
/// destination, where a tagged archive's base stays however it is tagged.
#[test]
fn rules_by_tag_judge_their_own() {
    let w = World::new();
    let mut prev = None;
    for (i, id) in IDS.iter().enumerate() {
        let tags: &[&str] = if i % 2 == 1 { &["pre-apt"] } else { &[] };
        w.snapshot("d", id, 8192, prev, tags);
        prev = Some(*id);
    }
    w.archive("usb", "d", IDS[0], None, &[]);
    w.archive("usb", "d", IDS[1], None, &["pre-apt"]);
    w.archive("usb", "d", IDS[2], Some(IDS[0]), &["pre-apt"]);
    w.archive("usb", "d", IDS[3], None, &[]);
    let cfg = json!({
        "destinations": [{"name": "usb", "path": w.path("usb")}],
        "retention": {"local": 1, "external": 1, "tags": {"pre-apt": {"last": 1}}}
    });
    w.write("cfg.json", cfg.to_string().as_bytes());
    let out = w.prune(&["--config", "cfg.json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "keep"), [IDS[2], IDS[3]]);
    assert_eq!(recs[2]["reasons"], json!(["last snapshot"]));
    assert_eq!(recs[3]["reasons"], json!(["last snapshot (tag pre-apt)"]));
    assert!(
        stderr(&out).contains(
            "keep 1 latest snapshots; tag pre-apt: keep 1 latest snapshots (retention.local and retention.tags)"
        ),
        "{}",
        stderr(&out)
    );
    let out = w.prune(&["--config", "cfg.json", "--dest", "usb"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "keep"), [IDS[0], IDS[2], IDS[3]]);
    assert_eq!(recs[0]["reasons"], json!([format!("base of {}", IDS[2])]));
    assert_eq!(ids(&recs, "remove"), [IDS[1]]);
}

/// The whole plan of a dry run at a destination, as printed: 5 April is a
/// Sunday, so the 6th and 7th are one ISO week and the 5th's evening
/// archive is that week's before.
#[test]
fn dry_run_plan_as_printed() {
    let w = World::new();
    for id in [
        "2026-04-05T100000Z",
        "2026-04-05T220000Z",
        "2026-04-06T100000Z",
        "2026-04-07T100000Z",
    ] {
        w.archive("usb", "d", id, None, &[]);
    }
    let out = w.prune(&[
        "--dest",
        "usb",
        "--keep-daily",
        "2",
        "--keep-weekly",
        "2",
        "--dry-run",
    ]);
    assert_eq!(code(&out), 0);
    let root = w.path("usb").display().to_string();
    let err = stderr(&out).replace(&root, "[ROOT]");
    assert_eq!(
        err,
        "\
snap-prune: archives at [ROOT]: keep 2 daily, 2 weekly snapshots (--keep-*)
snap-prune:   remove  d/2026-04-05T100000Z  frees 1.25 KiB
snap-prune:   keep    d/2026-04-05T220000Z  weekly snapshot
snap-prune:   keep    d/2026-04-06T100000Z  daily snapshot
snap-prune:   keep    d/2026-04-07T100000Z  daily snapshot, weekly snapshot
snap-prune:   d: 4 archive(s) stored in 5.00 KiB, 3 kept in 3.75 KiB
snap-prune: [ROOT]: 1 set(s), kept 3, would remove 1, would free 1.25 KiB; 4 archive(s) stored in 5.00 KiB, 3 kept in 3.75 KiB
"
    );
}

/// An absent drive is exit 75 and nothing else is touched.
#[test]
fn absent_destination_is_75() {
    let w = store_world();
    let out = w.prune(&["--dest", "uuid://0000-DEAD/backups", "--keep-last", "1"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let out = w.prune(&["--dest", "missing-folder", "--keep-last", "1"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(w.names("store/sets/d").len(), 12);
}

/// At a real S3 server (moto): archives pushed by snap-push, then a prune
/// with a chain to keep; what is left still lists and verifies.
#[test]
fn s3_prune_keeps_chains_and_what_is_left_verifies() {
    let moto = snap_testkit::Moto::start();
    moto.create_bucket("bkt");
    let w = World::new();
    w.write("src/a.txt", b"alpha");
    let env = moto.env();
    let tool = |name: &str, args: &[&str]| {
        let mut c = w.cmd(name);
        c.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        c.output().unwrap()
    };
    let cfg = json!({"backup_sets": [{"name": "d", "sources": [w.path("src")]}]});
    w.write("cfg.json", cfg.to_string().as_bytes());
    for (i, full) in [true, false, true, false].iter().enumerate() {
        w.write("src/b.txt", format!("version {i}").as_bytes());
        let out = tool("snap-collect", &["-c", "cfg.json", "-q", "--min-free", "0"]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let mut args = vec![
            "-c",
            "cfg.json",
            "--snapshot",
            "d/latest",
            "--min-free",
            "0",
            "-q",
        ];
        if !full {
            args.push("--incremental");
        }
        let out = tool("snap-pack", &args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let out = tool("snap-push", &["--all", "--dest", "s3://bkt/snap", "-q"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = tool(
        "snap-prune",
        &["--dest", "s3://bkt/snap", "--keep-last", "1"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(ids(&recs, "remove").len(), 2, "{recs:#?}");
    assert_eq!(
        recs[2]["reasons"][0]
            .as_str()
            .unwrap()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>(),
        ["base", "of"]
    );
    let out = tool("snap-restore", &["list", "s3://bkt/snap"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1 + 2, // the header, the kept archive and its base
        "{}",
        stderr(&out)
    );
    let out = tool(
        "snap-restore",
        &["verify", "--from", "s3://bkt/snap", "d/latest"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
