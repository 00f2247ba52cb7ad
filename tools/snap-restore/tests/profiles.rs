//! Profiles from the command line: `snap-push --profile` publishes one to
//! a folder destination, `snap-restore profiles` lists it, `snap-restore
//! profile take` brings it into another config (each "machine" its own
//! HOME and state folder); a garbled stored version is 65, naming it.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use snap_testkit::serve::bin;

/// Runs `tool` as the machine `who` (its own HOME and state folder) in `dir`.
fn as_machine(dir: &Path, who: &str, tool: &str, args: &[&str]) -> Output {
    Command::new(bin(tool))
        .args(args)
        .env("HOME", dir.join(format!("{who}-home")))
        .env("XDG_STATE_HOME", dir.join(format!("{who}-state")))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("SNAP_CONFIG")
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Published on the laptop, listed, taken on the desktop: its sets (with
/// `~`), schedule and the destination's non-secret settings arrive; its
/// store and credentials stay the desktop's own.
#[test]
fn a_profile_goes_from_one_machine_to_another() {
    let t = tempfile::tempdir().unwrap();
    let usb = t.path().join("usb");
    fs::create_dir_all(&usb).unwrap();
    let laptop_home = t.path().join("laptop-home");
    fs::create_dir_all(laptop_home.join(".config")).unwrap();
    let laptop = serde_json::json!({
        "store": t.path().join("laptop-store"),
        "backup_sets": [{"name": "config", "sources": [laptop_home.join(".config")]}],
        "schedule": {"incremental": "hourly"},
        "destinations": [{"name": "usb", "path": usb}]
    });
    fs::write(t.path().join("laptop.json"), laptop.to_string()).unwrap();
    let desktop = serde_json::json!({
        "store": t.path().join("desktop-store"),
        "destinations": [{"name": "usb", "path": usb}]
    });
    fs::write(t.path().join("desktop.json"), desktop.to_string()).unwrap();
    let out = as_machine(
        t.path(),
        "laptop",
        "snap-push",
        &["-c", "laptop.json", "--profile", "home", "--dest", "usb"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "snap-push: published profile home version 1 to usb\n"
    );
    let out = as_machine(
        t.path(),
        "desktop",
        "snap-restore",
        &["-c", "desktop.json", "profiles", "usb"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let host = snap_shared::hostname();
    let listed = text(&out.stdout);
    assert!(
        listed.starts_with(&format!("home  version 1  published by {host} at "))
            && listed.ends_with("  sets: config\n"),
        "{listed}"
    );
    let out = as_machine(
        t.path(),
        "desktop",
        "snap-restore",
        &[
            "-c",
            "desktop.json",
            "profile",
            "take",
            "home",
            "--from",
            "usb",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let took: serde_json::Value =
        serde_json::from_slice(&fs::read(t.path().join("desktop.json")).unwrap()).unwrap();
    assert_eq!(
        took["backup_sets"][0]["sources"],
        serde_json::json!(["~/.config"])
    );
    assert_eq!(
        took["schedule"],
        serde_json::json!({"incremental": "hourly"})
    );
    assert_eq!(
        took["store"], desktop["store"],
        "the store stays the desktop's"
    );
    assert_eq!(
        took["destinations"][0]["path"],
        desktop["destinations"][0]["path"]
    );
    // A garbled version is damage, named.
    fs::write(
        usb.join(".snap/profiles/home/00000002.json"),
        "{\"schema\": \"snap-pro",
    )
    .unwrap();
    let out = as_machine(
        t.path(),
        "desktop",
        "snap-restore",
        &["-c", "desktop.json", "profiles", "usb"],
    );
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("profile home at usb (version 2)"),
        "{}",
        text(&out.stderr)
    );
}

/// A publish killed as its new version is renamed into place leaves the
/// versions before it whole (the destination still lists version 1, and
/// the next publish makes version 2); a stored version with a key a profile
/// does not carry is 78 with its line and column, and one from a newer
/// schema is refused with that version.
#[test]
fn an_interrupted_publish_and_bad_profiles() {
    let t = tempfile::tempdir().unwrap();
    let usb = t.path().join("usb");
    fs::create_dir_all(&usb).unwrap();
    let config = |notify: &str| {
        serde_json::json!({"destinations": [{"name": "usb", "path": usb}], "notify": notify})
            .to_string()
    };
    fs::write(t.path().join("c.json"), config("a")).unwrap();
    let publish = ["-c", "c.json", "--profile", "home", "--dest", "usb"];
    let out = as_machine(t.path(), "laptop", "snap-push", &publish);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::write(t.path().join("c.json"), config("b")).unwrap();
    // Killed at the rename that would publish version 2.
    let killed = Command::new("strace")
        .args([
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "inject=renameat2:signal=KILL",
        ])
        .arg(bin("snap-push"))
        .args(publish)
        .env("HOME", t.path().join("laptop-home"))
        .env("XDG_STATE_HOME", t.path().join("laptop-state"))
        .current_dir(t.path())
        .output()
        .expect("strace (cargo xtask test installs it)");
    assert!(!killed.status.success());
    let listed = as_machine(
        t.path(),
        "desktop",
        "snap-restore",
        &["-c", "c.json", "profiles", "usb"],
    );
    assert!(
        text(&listed.stdout).starts_with("home  version 1  "),
        "{}",
        text(&listed.stdout)
    );
    let stored = fs::read_to_string(usb.join(".snap/profiles/home/00000001.json")).unwrap();
    assert!(stored.contains("\"notify\": \"a\""), "{stored}");
    let out = as_machine(t.path(), "laptop", "snap-push", &publish);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "snap-push: published profile home version 2 to usb\n"
    );
    // A key a profile does not carry, and a newer schema.
    let v3 = usb.join(".snap/profiles/home/00000003.json");
    let typo = stored.replace("\"notify\"", "\"notfy\"");
    fs::write(&v3, &typo).unwrap();
    let line = typo.lines().position(|l| l.contains("notfy")).unwrap() + 1;
    let out = as_machine(
        t.path(),
        "desktop",
        "snap-restore",
        &["-c", "c.json", "profiles", "usb"],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&format!("config.notfy: unknown key: a profile carries backup_sets, collect, destinations, disks, notify, retention, schedule (line {line} column ")), "{}", text(&out.stderr));
    fs::write(&v3, stored.replace("snap-profile/1", "snap-profile/2")).unwrap();
    let out = as_machine(
        t.path(),
        "desktop",
        "snap-restore",
        &["-c", "c.json", "profile", "take", "home", "--from", "usb"],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .contains("schema snap-profile/2 is newer than this snap reads (snap-profile/1)"),
        "{}",
        text(&out.stderr)
    );
}

/// `restore --preview` into a folder that already holds some of it: what
/// it would create, replace (with --overwrite) and set again, and what the
/// folder holds that the snapshot lacks, kept; the whole output, nothing
/// written.
#[test]
fn a_preview_lists_created_replaced_and_kept() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("app")).unwrap();
    fs::write(src.join("app/settings.ini"), "laptop\n").unwrap();
    fs::write(src.join("app/new.ini"), "new\n").unwrap();
    let id = snap_testkit::serve::collect(t.path());
    let inside = fs::canonicalize(&src).unwrap().display().to_string();
    let inside = inside.trim_start_matches('/');
    let to = t.path().join("home");
    let app = to.join(inside).join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(app.join("settings.ini"), "desktop!\n").unwrap();
    fs::write(app.join("mine.txt"), "only here\n").unwrap();
    let to_s = to.display().to_string();
    let out = Command::new(bin("snap-restore"))
        .args([
            "--store",
            "store",
            "restore",
            &format!("s/{id}"),
            "--to",
            &to_s,
            "--preview",
            "--overwrite",
        ])
        .arg("--path")
        .arg(format!("{inside}/app"))
        .current_dir(t.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "snap-restore: create: {inside}/app/new.ini\n\
             snap-restore: replace: {inside}/app/settings.ini (content, size)\n\
             snap-restore: keep: {inside}/app/mine.txt\n\
             snap-restore: dry run into {to_s}: 1 create, 1 same, 1 replace, 1 keep; 2 files, 11 B to write; nothing was written\n"
        )
    );
    assert_eq!(fs::read(app.join("settings.ini")).unwrap(), b"desktop!\n");
    assert!(!app.join("new.ini").exists());
}
