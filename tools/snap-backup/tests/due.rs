//! `snap-backup --due` on its own edges: a second run while one is at work,
//! a dry run, destinations by priority and the one never reached, a
//! destination past its warning threshold, and config mistakes naming the
//! key. The whole month is tests/tests/month.rs.

use std::process::{Command, Output};

use serde_json::{Value, json};
use snap_testkit::{World, code, stderr};

/// A world with set `d`, two folder destinations (`near` first, `far` the
/// fallback) and a notify log.
fn world(extra: Value) -> World {
    let w = World::new();
    w.write("src/a.txt", "a\n");
    std::fs::create_dir_all(w.path("near")).unwrap();
    std::fs::create_dir_all(w.path("far")).unwrap();
    let mut cfg = json!({
        "store": w.path("store"),
        "backup_sets": [{"name": "d", "sources": [w.path("src")]}],
        "collect": {"min_free": "0"},
        "destinations": [
            {"name": "near", "path": w.path("near"), "priority": 1, "min_free": "0"},
            {"name": "far", "path": w.path("far"), "priority": 2, "min_free": "0"}
        ],
        "retention": {"local": 3, "external": 3},
        "notify": format!("echo \"$SNAP_EVENT $SNAP_JOB $SNAP_DEST\" >> {}", w.path("told.txt").display()),
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    w.write("config.json", cfg.to_string());
    w
}

fn due(w: &World, args: &[&str]) -> Output {
    w.tool("snap-backup")
        .args(["--due", "--config", "config.json"])
        .args(args)
        .output()
        .unwrap()
}

/// The job records of a run, as (job, dest or set, status).
fn jobs(out: &Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|j| {
            let s = |k: &str| j[k].as_str().unwrap_or_default().to_string();
            let at = if j["dest"].is_null() {
                s("set")
            } else {
                s("dest")
            };
            (s("job"), at, s("status"))
        })
        .collect()
}

fn job(kind: &str, at: &str, status: &str) -> (String, String, String) {
    (kind.into(), at.into(), status.into())
}

/// The first run does everything once, in order; the fallback destination
/// is left alone while the first priority is there; a second run right
/// after has only the push of `external: always`, which finds nothing to
/// send, is told to no one and prunes nothing.
#[test]
fn first_run_then_nothing_due() {
    let w = world(json!({}));
    let out = due(&w, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        jobs(&out),
        [
            job("collect", "d", "done"),
            job("pack", "d", "done"),
            job("push", "near", "done"),
            job("prune", "near", "unchanged"),
            job("verify", "near", "done"),
            job("prune", "", "unchanged"),
            job("verify", "", "done"),
        ]
    );
    assert!(std::fs::read_dir(w.path("far")).unwrap().next().is_none());
    let out = due(&w, &[]);
    assert_eq!(
        (code(&out), jobs(&out)),
        (0, vec![job("push", "near", "unchanged")]),
        "{}",
        stderr(&out)
    );
    let told = std::fs::read_to_string(w.path("told.txt")).unwrap();
    assert_eq!(
        told,
        "success collect \nsuccess pack \nsuccess push near\nsuccess verify near\nsuccess verify \n"
    );
}

/// With `keep_archives: until-pushed` and one destination, the store's
/// prune comes after that destination's verify and drops the data it has
/// read back; the store's own verify then leaves that archive alone; a run
/// with nothing new pushed or read does not prune the store.
#[test]
fn pushed_and_verified_data_leaves_the_store() {
    let w = world(json!({
        "retention": {"local": 3, "external": 3, "keep_archives": "until-pushed"},
        "schedule": {"verify": "daily"},
    }));
    let mut cfg: Value =
        serde_json::from_slice(&std::fs::read(w.path("config.json")).unwrap()).unwrap();
    cfg["destinations"].as_array_mut().unwrap().truncate(1);
    w.write("config.json", cfg.to_string());
    let out = due(&w, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        jobs(&out),
        [
            job("collect", "d", "done"),
            job("pack", "d", "done"),
            job("push", "near", "done"),
            job("prune", "near", "unchanged"),
            job("verify", "near", "done"),
            job("prune", "", "done"),
        ]
    );
    let dir = w.path("store/archives/d");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".away")), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".tar.zst")), "{names:?}");
    let again = due(&w, &[]);
    assert_eq!(
        (code(&again), jobs(&again)),
        (0, vec![job("push", "near", "unchanged")]),
        "{}",
        stderr(&again)
    );
}

/// With the first priority away, the fallback takes the push and its
/// prune; the absent one is a quiet media-missing, told once a day, and
/// never pruned.
#[test]
fn an_absent_drive_falls_back_and_is_never_pruned() {
    let w = world(json!({"schedule": {"external": "always"}}));
    std::fs::remove_dir(w.path("near")).unwrap();
    let out = due(&w, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        jobs(&out),
        [
            job("collect", "d", "done"),
            job("pack", "d", "done"),
            job("push", "near", "media-missing"),
            job("push", "far", "done"),
            job("prune", "far", "unchanged"),
            job("verify", "far", "done"),
            job("prune", "", "unchanged"),
            job("verify", "", "done"),
        ]
    );
    let again = due(&w, &[]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let told = std::fs::read_to_string(w.path("told.txt")).unwrap();
    assert_eq!(told.matches("media-missing push near").count(), 1, "{told}");
}

/// A second run while one holds the lock leaves at once, exit 0, silent.
#[test]
fn a_second_run_leaves_quietly() {
    let w = world(json!({}));
    std::fs::create_dir_all(w.path("store")).unwrap();
    let mut holder = Command::new("flock")
        .arg(w.path("store/backup.lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = due(&w, &[]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        (code(&out), out.stdout.len(), stderr(&out)),
        (0, 0, String::new())
    );
    assert!(!w.path("store/sets").exists());
}

/// --dry-run says what is due and why, and does nothing.
#[test]
fn dry_run_says_and_does_nothing() {
    let w = world(json!({}));
    let out = due(&w, &["--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let said = stderr(&out);
    assert!(
        said.contains("snap-backup: collect d: due; incremental daily, never done"),
        "{said}"
    );
    assert!(!w.path("store").exists());
}

/// A destination below its warn_free is a low-disk warning and notice.
#[test]
fn a_destination_past_warn_free_is_low_disk() {
    let w = world(json!({}));
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(w.path("config.json")).unwrap()).unwrap();
    cfg["destinations"][0]["warn_free"] = json!("100%");
    w.write("config.json", cfg.to_string());
    let out = due(&w, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: destination near has ")
            && stderr(&out).contains("below warn_free"),
        "{}",
        stderr(&out)
    );
    let told = std::fs::read_to_string(w.path("told.txt")).unwrap();
    assert!(told.contains("low-disk space near"), "{told}");
}

/// Mistakes in what --due reads are exit 78 naming the key.
#[test]
fn mistakes_name_the_key() {
    for (extra, key) in [
        (
            json!({"schedule": {"external": "sometimes"}}),
            "schedule.external",
        ),
        (
            json!({"disks": [{"image": "/x.qcow2", "schedule": "fortnightly"}]}),
            "disks[0].schedule",
        ),
        (
            json!({"collect": {"warn_free": "lots"}}),
            "collect.warn_free",
        ),
        (json!({"disks": [{"schedule": "daily"}]}), "disks[0]"),
        (
            json!({"disks": [{"image": "/x.qcow2", "target": "vda"}]}),
            "disks[0].target",
        ),
        (
            json!({"retention": {"tags": {"pre-apt": {"lats": 1}}}}),
            "retention.tags.pre-apt.lats",
        ),
    ] {
        let w = world(extra);
        let out = due(&w, &[]);
        assert_eq!(code(&out), 78, "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{key}: {}", stderr(&out));
    }
}

/// A config disk that names only a libvirt domain is due by the store's
/// disk whose records were read through that domain and target (named by
/// the domain before its first snapshot).
#[test]
fn a_domain_disk_is_due_by_its_records() {
    let w = world(json!({"disks": [{"domain": "web", "target": "vda"}]}));
    let out = due(&w, &["--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("disk web: due; disk daily, never done"),
        "{}",
        stderr(&out)
    );
    w.write(
        "store/disks/webimg/disk.json",
        r#"{"image": "/var/lib/libvirt/images/webimg.qcow2", "block_size": 1048576}"#,
    );
    let rec = json!({"kind": "disk-snapshot", "schema": "snap/1", "disk": "webimg", "name": "s1",
        "image": "/var/lib/libvirt/images/webimg.qcow2", "format": "qcow2", "method": "blocks",
        "created": "2020-01-02T03:04:05Z", "virtual_size": 1048576, "stored_bytes": 0,
        "new_bytes": 0, "blocks": 0, "parent": null, "description": null, "tags": [],
        "domain": "web", "target": "vda"});
    w.write("store/disks/webimg/s1.json", rec.to_string());
    let out = due(&w, &["--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("disk webimg: due; disk daily, last done 2020-01-02"),
        "{}",
        stderr(&out)
    );
}
