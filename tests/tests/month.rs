//! A month unattended: `snap-backup --due` every simulated hour for 30
//! days under libfaketime, with the planning document's config (two sets, a
//! qcow2 disk, a drive folder there on Saturdays and Sundays only, local 7 /
//! external 5, pre-apt rollback points kept by their tag rule), a laptop
//! asleep on days 12–14, an apt run on day 9 and a store nearly full on day
//! 20. The store is a 96 MiB tmpfs, so "nearly full" is real (root only, as
//! CI runs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use snap_e2e::World;
use snap_testkit::{code, stderr};

/// 1 April 2025 is a Tuesday: the drive is there on days 5, 6, 12, 13, 19, 20, 26, 27.
const YEAR_MONTH: &str = "2025-04";
const ASLEEP: std::ops::RangeInclusive<u32> = 12..=14;

/// Unmounts the store's tmpfs however the test ends.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mount -t tmpfs (the month test runs as root, as CI does)"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn weekend(day: u32) -> bool {
    // Day 5 is a Saturday.
    matches!((day + 1) % 7, 6 | 0)
}

/// The planning document's config, as its example writes it (comments, a trailing comma).
fn config(w: &World) -> String {
    format!(
        r#"{{
  "store": "{store}",
  "backup_sets": [
    {{"name": "data", "sources": ["{root}/data"], "method": "rsync", "exclusions": ["tmp/*", "*.tmp"]}},
    {{"name": "config", "sources": ["{root}/home/.config"], "method": "rsync"}},
  ],
  "disks": [{{"image": "{root}/vm.qcow2"}}],
  "destinations": [{{"name": "usb", "path": "{root}/usb"}}],
  "collect": {{"min_free": "1MiB", "warn_free": "56MiB"}},
  "schedule": {{
    "incremental": "daily", // Options: hourly, daily, weekly, monthly
    "full": "weekly", // Options: daily, weekly, monthly, never
    "external": "weekly", // Options: daily, weekly, monthly, always, manual
    "verify": "monthly",
  }},
  "retention": {{
    "local": 7, // Number of local backups to retain
    "external": 5, // Number of external backups to retain
    "tags": {{"pre-apt": {{"last": 5}}}},
  }},
  "notify": "echo \"$(date +%d) $SNAP_EVENT $SNAP_JOB $SNAP_SET $SNAP_DEST\" >> {root}/notified.txt"
}}
"#,
        store = w.path("store").display(),
        root = w.root().display()
    )
}

/// One simulated run of a tool at `day` `hour`:`minute`; its job records.
fn at(w: &World, day: u32, hour: u32, args: &[&str], stdin: Option<&str>) -> Vec<Value> {
    let when = format!("@{YEAR_MONTH}-{day:02} {hour:02}:{:02}:00", 0);
    let mut c = w.tool("faketime");
    c.arg("-f")
        .arg(&when)
        .arg(snap_e2e::bin_dir().join("snap-backup"))
        .args(args)
        .args(["--config", "config.json", "--quiet"]);
    let out = match stdin {
        None => c.output().unwrap(),
        Some(text) => {
            use std::io::Write;
            let mut child = c
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    };
    assert_eq!(
        code(&out),
        0,
        "day {day} {hour}:00 {args:?}: {}",
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What the day brings before its first run: files edited, the drive, the
/// big file of day 20 (gone again on day 21).
fn morning(w: &World, day: u32) {
    w.write(&format!("data/day-{day:02}.txt"), format!("day {day}\n"));
    w.write("home/.config/app.conf", format!("edited on day {day}\n"));
    let (usb, away) = (w.path("usb"), w.path("usb.away"));
    match (weekend(day), usb.exists()) {
        (true, false) => fs::rename(&away, &usb).unwrap(),
        (false, true) => fs::rename(&usb, &away).unwrap(),
        _ => {}
    }
    let big = w.path("data/big.bin");
    if day == 20 {
        let mut bytes = vec![0u8; 48 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in bytes.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        fs::write(&big, bytes).unwrap();
    } else if big.exists() {
        fs::remove_file(&big).unwrap();
    }
}

/// The ids of a set's records in a folder (`<id>.json`), sorted.
fn ids(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let n = e.ok()?.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".json").map(str::to_string)
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn day_of(id: &str) -> u32 {
    id[8..10].parse().unwrap()
}

/// A month of hourly runs: what retention, the catch-up, the verify and the
/// notifications come to at the end.
#[test]
fn a_month_unattended() {
    let w = World::new();
    let _store = Tmpfs::mount(&w.path("store"), "96m");
    w.write("data/keep.txt", "kept\n");
    w.write("data/tmp/skip.txt", "excluded\n");
    fs::create_dir_all(w.path("usb.away")).unwrap();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(w.path("vm.qcow2"))
        .arg("4M")
        .status()
        .unwrap();
    assert!(made.success());
    w.write("config.json", config(&w));

    let mut jobs: Vec<(u32, Value)> = Vec::new();
    for day in 1..=30 {
        if ASLEEP.contains(&day) {
            continue;
        }
        morning(&w, day);
        for hour in 0..24 {
            jobs.extend(
                at(&w, day, hour, &["--due"], None)
                    .into_iter()
                    .map(|j| (day, j)),
            );
            if day == 9 && hour == 10 {
                let apt = "VERSION 2\nAPT::Architecture=amd64\n\nhello - < 2.10-3 /x/hello_2.10-3_amd64.deb\n";
                at(&w, 9, hour, &["--pre-apt"], Some(apt));
            }
        }
    }
    let of = |kind: &str| -> Vec<&(u32, Value)> {
        jobs.iter().filter(|(_, j)| j["job"] == kind).collect()
    };

    // Nothing failed, ever.
    let bad: Vec<&(u32, Value)> = jobs
        .iter()
        .filter(|(_, j)| j["status"] == "failed" || j["status"] == "partial")
        .collect();
    assert!(bad.is_empty(), "{bad:?}");

    // Each set collected once a day it was awake; once on waking, not three times.
    for set in ["data", "config"] {
        let days: Vec<u32> = of("collect")
            .iter()
            .filter(|(_, j)| j["set"] == set)
            .map(|(d, _)| *d)
            .collect();
        let awake: Vec<u32> = (1..=30).filter(|d| !ASLEEP.contains(d)).collect();
        assert_eq!(days, awake, "{set}");
    }
    let woke = of("collect").into_iter().find(|(d, _)| *d == 15).unwrap();
    assert!(
        woke.1["why"]
            .as_str()
            .unwrap()
            .contains("last done 2025-04-11"),
        "{woke:?}"
    );
    let disk_days: Vec<u32> = of("disk").iter().map(|(d, _)| *d).collect();
    assert_eq!(disk_days.len(), 27, "{disk_days:?}");

    // The store: the 7 newest daily snapshots and the pre-apt one of each set.
    for set in ["data", "config"] {
        let kept = ids(&w.path(&format!("store/sets/{set}")));
        let days: Vec<u32> = kept.iter().map(|id| day_of(id)).collect();
        assert_eq!(days, [9, 24, 25, 26, 27, 28, 29, 30], "{set}: {kept:?}");
    }
    // The disk's internal snapshots, pruned by the same rules.
    let listed = Command::new("qemu-img")
        .args(["snapshot", "-l"])
        .arg(w.path("vm.qcow2"))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let snaps = listed.lines().filter(|l| l.contains(YEAR_MONTH)).count();
    assert_eq!(snaps, 8, "{listed}");

    // The drive: each set's 5 newest archives, its pre-apt ones by their rule,
    // and the bases they need, nothing else.
    for set in ["data", "config"] {
        let dir = w.path(&format!("usb.away/{set}"));
        let held = ids(&dir);
        let records: BTreeMap<String, Value> = held
            .iter()
            .map(|id| {
                let text = fs::read_to_string(dir.join(format!("{id}.json"))).unwrap();
                (id.clone(), serde_json::from_str(&text).unwrap())
            })
            .collect();
        // Retention's rules: the 5 newest, and the 5 newest pre-apt ones by their tag rule.
        let pre_apt = |id: &String| {
            records[id]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "pre-apt"))
        };
        let mut want: BTreeSet<String> = held
            .iter()
            .rev()
            .filter(|id| !pre_apt(id))
            .take(5)
            .cloned()
            .collect();
        want.extend(held.iter().rev().filter(|id| pre_apt(id)).take(5).cloned());
        assert!(
            held.iter().any(pre_apt),
            "{set}: the pre-apt archive went to the drive"
        );
        let mut frontier: Vec<String> = want.iter().cloned().collect();
        while let Some(id) = frontier.pop() {
            if let Some(base) = records[&id]["base"].as_str() {
                assert!(
                    records.contains_key(base),
                    "{set}/{id} lost its base {base}"
                );
                if want.insert(base.to_string()) {
                    frontier.push(base.to_string());
                }
            }
        }
        assert_eq!(held.iter().cloned().collect::<BTreeSet<_>>(), want, "{set}");
        let newest = day_of(held.last().unwrap());
        assert_eq!(newest, 26, "{set}: the last weekend's archive went");
    }

    // Every archive on the drive was read back, and reads back now.
    let verified: BTreeSet<String> = of("verify")
        .iter()
        .filter(|(_, j)| j["dest"] == "usb")
        .flat_map(|(_, j)| {
            j["made"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect();
    for set in ["data", "config"] {
        for id in ids(&w.path(&format!("usb.away/{set}"))) {
            assert!(
                verified.contains(&format!("{set}/{id}")),
                "{set}/{id} never verified: {verified:?}"
            );
        }
    }
    let in_store: BTreeSet<String> = of("verify")
        .iter()
        .filter(|(_, j)| j["dest"].is_null())
        .flat_map(|(_, j)| {
            j["made"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
        })
        .collect();
    for set in ["data", "config"] {
        for id in ids(&w.path(&format!("store/archives/{set}"))) {
            assert!(
                in_store.contains(&format!("{set}/{id}")),
                "store {set}/{id} never verified"
            );
        }
    }
    fs::rename(w.path("usb.away"), w.path("usb")).unwrap();
    let out = w
        .tool("snap-restore")
        .args(["--config", "config.json", "--from", "usb", "verify", "-q"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // The notifications, in order: media-missing once a day the drive was
    // away and a copy was due, low-disk once a day from day 20 until the
    // prune of day 27 freed the big file.
    let told = fs::read_to_string(w.path("notified.txt")).unwrap();
    let days_of = |event: &str| -> Vec<u32> {
        told.lines()
            .filter(|l| l.split(' ').nth(1) == Some(event))
            .map(|l| l[..2].parse().unwrap())
            .collect()
    };
    let away_and_due: Vec<u32> = (1..=30)
        .filter(|d| !ASLEEP.contains(d) && !weekend(*d))
        .collect();
    assert_eq!(days_of("media-missing"), away_and_due, "{told}");
    assert_eq!(days_of("low-disk"), (20..=27).collect::<Vec<_>>(), "{told}");
    let failures = days_of("failure");
    assert!(failures.is_empty(), "{told}");

    // No leftovers: no lock at the drive, no partial work in the store.
    let locks = w.path("usb/.snap/locks");
    let left: Vec<_> = fs::read_dir(&locks)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    for set in ["data", "config"] {
        let partial: Vec<String> = fs::read_dir(w.path(&format!("store/sets/{set}")))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // `.blocks` holds the digest pages the indexes name: not work in progress.
            .filter(|n| n.starts_with('.') && n != ".blocks")
            .collect();
        assert!(partial.is_empty(), "{partial:?}");
    }
}
