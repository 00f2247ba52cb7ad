//! `retention.keep_archives: "until-pushed"`: the store drops an archive's
//! data once every configured destination holds it (and verified it, when
//! the schedule verifies), and every tool still works on what is left:
//! list, verify, the next incremental, push, restore from the destination.

use std::fs;

use serde_json::Value;
use snap_e2e::World;
use snap_testkit::{code, records, stderr};

/// A config with one set and `dests` (name, folder) as destinations.
fn config(w: &World, dests: &[(&str, &str)], verify: &str) {
    let dests: Vec<String> = dests
        .iter()
        .map(|(n, p)| format!(r#"{{"name": "{n}", "path": "{}"}}"#, w.p(p)))
        .collect();
    w.write(
        "config.json",
        format!(
            r#"{{
  "store": "{store}",
  "backup_sets": [{{"name": "s", "sources": ["{src}"]}}],
  "destinations": [{dests}],
  "collect": {{"min_free": "0"}},
  "schedule": {{"verify": "{verify}"}},
  "retention": {{"local": 10, "external": 10, "keep_archives": "until-pushed"}}
}}"#,
            store = w.p("store"),
            src = w.p("src"),
            dests = dests.join(", "),
        ),
    );
}

/// 20 MiB of noise: a big file, carried by its changed blocks.
fn big(seed: u64) -> Vec<u8> {
    snap_testkit::noise(seed, 20 << 20)
}

/// Collects and packs (incremental after the first) a new day of `src`.
fn day(w: &World, n: u8) {
    let mut db = fs::read(w.path("src/db.bin")).unwrap_or_else(|_| big(1));
    db[usize::from(n) << 20] ^= 0xff;
    w.write("src/db.bin", &db);
    w.write("src/note.txt", format!("day {n}\n"));
    w.ok("snap-collect", &["--config", "config.json", "-q"]);
    w.ok(
        "snap-pack",
        &["--config", "config.json", "--latest", "--incremental", "-q"],
    );
}

/// The store's archive ids of set `s`, oldest first.
fn ids(w: &World) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(w.path("store/archives/s"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    ids.sort();
    ids
}

fn data_here(w: &World, id: &str) -> bool {
    w.path(&format!("store/archives/s/{id}.tar.zst")).exists()
}

/// The store's prune; its records by archive id (archives only).
fn prune(w: &World) -> Vec<Value> {
    w.ok("snap-prune", &["--config", "config.json", "-q"])
        .into_iter()
        .filter(|r| r["what"] == "archive")
        .collect()
}

/// Data at the destination leaves the store, marked; the archive stays
/// listed (not damaged), the next incremental builds on it, a restore from
/// the store names where the data is (66), one from the destination gives
/// the bytes, and verify of the store reads what it still holds.
#[test]
fn pushed_archives_leave_the_store_and_still_serve() {
    let w = World::new();
    fs::create_dir_all(w.path("usb")).unwrap();
    config(&w, &[("usb", "usb")], "never");
    day(&w, 1);
    w.ok("snap-push", &["--config", "config.json", "--all", "-q"]);
    day(&w, 2);
    let [first, second] = <[String; 2]>::try_from(ids(&w)).unwrap();

    let recs = prune(&w);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["id"], first.as_str());
    assert_eq!(recs[0]["action"], "keep");
    assert_eq!(recs[0]["data_away"], serde_json::json!(["usb"]));
    assert!(recs[1].get("data_away").is_none(), "not pushed yet: stays");
    assert!(!data_here(&w, &first) && data_here(&w, &second));
    let marker: Value = serde_json::from_slice(
        &fs::read(w.path(&format!("store/archives/s/{first}.away"))).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["at"], serde_json::json!(["usb"]));

    let list = w.run("snap-restore", &["--config", "config.json", "list"]);
    assert_eq!(code(&list), 0, "{}", stderr(&list));
    let text = String::from_utf8_lossy(&list.stdout);
    let row = text
        .lines()
        .find(|l| l.contains(&first) && l.contains("archive"))
        .unwrap();
    assert!(row.contains("data at usb"), "{row}");

    let verify = w.run("snap-restore", &["--config", "config.json", "verify"]);
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
    assert!(stderr(&verify).contains(&format!("s/{first}: its data is at usb")));
    assert_eq!(
        records(&verify).len(),
        3,
        "two snapshots and the second archive"
    );

    let name = format!("s/{first}");
    let out = w.run(
        "snap-restore",
        &[
            "--config",
            "config.json",
            "restore",
            "--archive",
            &name,
            "--to",
            "r1",
        ],
    );
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not in the store") && err.contains("--from usb"),
        "{err}"
    );

    // The next incremental builds on a chain whose full archive is away.
    day(&w, 3);
    w.ok("snap-push", &["--config", "config.json", "--all", "-q"]);
    w.ok(
        "snap-restore",
        &[
            "--config",
            "config.json",
            "--from",
            "usb",
            "restore",
            "--archive",
            "s/latest",
            "--to",
            "r3",
        ],
    );
    let restored = fs::read(w.path(&format!("r3/{}/db.bin", w.inside("src")))).unwrap();
    assert!(restored == fs::read(w.path("src/db.bin")).unwrap());

    let recs = prune(&w);
    assert!(recs.iter().all(|r| r["action"] == "keep"));
    let away: Vec<&Value> = recs
        .iter()
        .filter(|r| r.get("data_away").is_some())
        .collect();
    assert_eq!(away.len(), 2, "the second and third went now: {recs:?}");
    assert!(ids(&w).iter().all(|id| !data_here(&w, id)));
    // And the chain goes on from a base whose data is away.
    day(&w, 4);
    let fourth = ids(&w).pop().unwrap();
    assert!(data_here(&w, &fourth));

    // Removing an archive removes its marker with it.
    let third = ids(&w)[2].clone();
    for id in [&fourth, &third] {
        w.ok(
            "snap-prune",
            &[
                "--config",
                "config.json",
                "--forget",
                &format!("s/{id}"),
                "--archive",
                "-q",
            ],
        );
    }
    assert_eq!(ids(&w), [first.clone(), second.clone()]);
    assert!(!w.path(&format!("store/archives/s/{third}.away")).exists());
}

/// Nothing leaves while a destination is absent or has not verified it;
/// a verify there lets it go; a destination added later is refused the
/// dropped data by snap-push, naming why (66).
#[test]
fn every_destination_and_its_verify_are_needed() {
    let w = World::new();
    fs::create_dir_all(w.path("usb")).unwrap();
    config(&w, &[("usb", "usb"), ("far", "far")], "monthly");
    day(&w, 1);
    let push = w.run("snap-push", &["--config", "config.json", "--all", "-q"]);
    assert_eq!(code(&push), 75, "far is absent: {}", stderr(&push));
    let [first] = <[String; 1]>::try_from(ids(&w)).unwrap();
    assert!(prune(&w)[0].get("data_away").is_none());
    assert!(data_here(&w, &first), "far was never there");

    config(&w, &[("usb", "usb")], "monthly");
    assert!(prune(&w)[0].get("data_away").is_none());
    assert!(data_here(&w, &first), "usb has not verified it");
    w.ok(
        "snap-restore",
        &["--config", "config.json", "--from", "usb", "verify", "-q"],
    );
    assert_eq!(prune(&w)[0]["data_away"], serde_json::json!(["usb"]));
    assert!(!data_here(&w, &first));

    fs::create_dir_all(w.path("far")).unwrap();
    config(&w, &[("usb", "usb"), ("far", "far")], "monthly");
    let out = w.run(
        "snap-push",
        &["--config", "config.json", "--all", "--dest", "far", "-q"],
    );
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("its data is no longer in the store") && err.contains("snap-pack --full"),
        "{err}"
    );
    assert!(
        !w.path(&format!("far/s/{first}.json")).exists(),
        "nothing of it published there"
    );
}

/// A world whose one archive is at its destination `usb` (no verify asked).
fn pushed_once() -> (World, String) {
    let w = World::new();
    fs::create_dir_all(w.path("usb")).unwrap();
    config(&w, &[("usb", "usb")], "never");
    day(&w, 1);
    w.ok("snap-push", &["--config", "config.json", "--all", "-q"]);
    let [id] = <[String; 1]>::try_from(ids(&w)).unwrap();
    (w, id)
}

/// A prune killed between the marker and the removal of the data leaves
/// both: the archive still reads from the store, and the next prune
/// finishes the drop.
#[test]
fn a_drop_cut_short_is_finished() {
    let (w, id) = pushed_once();
    w.write(
        &format!("store/archives/s/{id}.away"),
        r#"{"since": "2026-01-02T03:04:05Z", "at": ["usb"]}"#,
    );
    w.ok(
        "snap-restore",
        &[
            "--config",
            "config.json",
            "restore",
            "--archive",
            &format!("s/{id}"),
            "--to",
            "r",
        ],
    );
    let out = w.run("snap-prune", &["--config", "config.json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("finished dropping its data"),
        "{}",
        stderr(&out)
    );
    assert!(!data_here(&w, &id));
    let list = w.run("snap-restore", &["--config", "config.json", "list"]);
    assert_eq!(code(&list), 0, "{}", stderr(&list));
}

/// An archive whose data the store dropped, and that its destination's own
/// retention removed since, exists nowhere: the store's prune removes its
/// record too (named), but not while the destination cannot be read.
#[test]
fn an_archive_gone_everywhere_leaves_the_store() {
    let (w, id) = pushed_once();
    prune(&w);
    assert!(!data_here(&w, &id));
    let name = format!("s/{id}");
    w.ok(
        "snap-prune",
        &[
            "--config",
            "config.json",
            "--dest",
            "usb",
            "--forget",
            &name,
            "-q",
        ],
    );
    fs::rename(w.path("usb"), w.path("usb-away")).unwrap();
    prune(&w);
    assert_eq!(
        ids(&w),
        std::slice::from_ref(&id),
        "usb could not be read: kept"
    );
    fs::rename(w.path("usb-away"), w.path("usb")).unwrap();
    let recs = prune(&w);
    assert_eq!(recs[0]["action"], "remove", "{recs:?}");
    assert!(
        recs[0]["problem"]
            .as_str()
            .unwrap()
            .contains("no destination holds it any more")
    );
    assert!(ids(&w).is_empty());
    assert!(!w.path(&format!("store/archives/s/{id}.away")).exists());
}
