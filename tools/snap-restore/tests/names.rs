//! Names by date (`SET/2025-04-01`, `SET/2025-04-01T10`) in every verb that
//! takes a name, in UTC and with `--local-time`; the snapshots are made
//! under faketime at chosen instants.

use std::process::Output;

use snap_testkit::{World, code, stderr};

/// A world with set `s` collected at three instants (UTC): the 1st at 08:00
/// and 22:30, the 2nd at 10:00.
fn world() -> World {
    let w = World::new();
    w.write("src/a.txt", "alpha\n");
    for at in [
        "2025-04-01 08:00:00",
        "2025-04-01 22:30:00",
        "2025-04-02 10:00:00",
    ] {
        let out = w.run_at(
            &format!("@{at}"),
            "snap-collect",
            &[
                "--store",
                "store",
                "--min-free",
                "0",
                "--name",
                "s",
                "src",
                "-q",
            ],
        );
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    w
}

/// `snap-restore ARGS` on the world's store, with TZ as given.
fn restore(w: &World, tz: &str, args: &[&str]) -> Output {
    w.tool("snap-restore")
        .env("TZ", tz)
        .args(["--store", "store"])
        .args(args)
        .output()
        .unwrap()
}

/// The id `show --json` gives for a name.
fn shown(w: &World, tz: &str, args: &[&str]) -> String {
    let mut all = vec!["show", "--json"];
    all.extend(args);
    let out = restore(w, tz, &all);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rec["id"].as_str().unwrap().to_string()
}

/// A day is its newest snapshot, an hour that hour's; --local-time reads
/// them in TZ; no match is 66 naming the nearest on each side.
#[test]
fn dates_name_the_newest_of_the_day_or_hour() {
    let w = world();
    assert_eq!(shown(&w, "UTC", &["s/2025-04-01"]), "2025-04-01T223000Z");
    assert_eq!(shown(&w, "UTC", &["s/2025-04-01T08"]), "2025-04-01T080000Z");
    assert_eq!(shown(&w, "UTC", &["2025-04-02"]), "2025-04-02T100000Z");
    // Tokyo is UTC+9: its 1 April ends at 15:00 UTC, its 2nd holds both later ones.
    let tokyo = "Asia/Tokyo";
    assert_eq!(
        shown(&w, tokyo, &["--local-time", "s/2025-04-01"]),
        "2025-04-01T080000Z"
    );
    assert_eq!(
        shown(&w, tokyo, &["--local-time", "s/2025-04-02"]),
        "2025-04-02T100000Z"
    );
    assert_eq!(
        shown(&w, tokyo, &["--local-time", "s/2025-04-01T17"]),
        "2025-04-01T080000Z"
    );
    // Without the flag TZ changes nothing.
    assert_eq!(shown(&w, tokyo, &["s/2025-04-01"]), "2025-04-01T223000Z");

    let out = restore(&w, "UTC", &["show", "s/2025-04-01T12"]);
    assert_eq!(code(&out), 66, "{}", stderr(&out));
    assert_eq!(
        w.redact(&out.stderr),
        "snap-restore: snapshot s/2025-04-01T12: no snapshot on 2025-04-01 12:00 (UTC) in [TMP]/store\n\
         snap-restore: hint: nearest: s/2025-04-01T080000Z (before), s/2025-04-01T223000Z (after)\n"
    );
    let out = restore(&w, "UTC", &["show", "s/2025-03-01"]);
    assert_eq!(code(&out), 66);
    assert!(
        stderr(&out).contains("hint: nearest: s/2025-04-01T080000Z (after)"),
        "{}",
        stderr(&out)
    );
}

/// restore, verify, cat, diff and pin take date names like ids.
#[test]
fn every_verb_takes_a_date() {
    let w = world();
    let out = restore(&w, "UTC", &["restore", "s/2025-04-01", "--to", "r", "-q"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = restore(&w, "UTC", &["verify", "s/2025-04-02", "-q"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = restore(&w, "UTC", &["diff", "s/2025-04-01T08", "s/2025-04-02"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let src = std::fs::canonicalize(w.path("src/a.txt")).unwrap();
    let inside = src.strip_prefix("/").unwrap().to_str().unwrap().to_string();
    let out = restore(&w, "UTC", &["cat", "s/2025-04-01T22", &inside]);
    assert_eq!(
        (code(&out), out.stdout.as_slice()),
        (0, &b"alpha\n"[..]),
        "{}",
        stderr(&out)
    );
    let out = restore(
        &w,
        "UTC",
        &["pin", "s/2025-04-01T08", "--reason", "the good one"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(w.path("store/sets/s/2025-04-01T080000Z.pin").exists());
}
