//! CLI tests for snap-push: folder destinations end to end (with snap-restore
//! reading them back), resume after kill -9, absent media and fallback,
//! refusals that protect what is already at a destination, the notify hook,
//! and a real S3 server (moto) for buckets.
//!
//! snap-collect, snap-pack and snap-restore binaries are used too, and the
//! S3 test needs `moto_server`: `cargo xtask test` provides both.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{PushWorld, World, code, records, stderr};

/// A push to a folder lays out the archive as docs/design.md says, `sha256sum -c`
/// passes there, snap-restore restores the same tree from it, and a second
/// push sends nothing.
#[test]
fn folder_round_trip_and_rerun() {
    let w = World::with_archive(3 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    let out = w.push(&["--all", "--dest", "ext"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    let id = w.archive_id();
    assert_eq!(r["kind"], "pushed");
    assert_eq!(r["dest"], w.path("ext").display().to_string());
    assert_eq!(r["object"], format!("s/{id}.tar.zst"));
    assert_eq!(r["verified"], false);
    assert_eq!(r["checked"], "size");
    assert_eq!(r["skipped"], false);
    assert_eq!(r["source"]["kind"], "archive");
    let mut names: Vec<String> = fs::read_dir(w.path("ext/s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let want: Vec<String> = ["index.zst", "json", "json.sig", "sha256", "tar.zst"]
        .iter()
        .map(|s| format!("{id}.{s}"))
        .collect();
    assert_eq!(names, want);
    let sums = std::process::Command::new("sha256sum")
        .args(["-c", &format!("{id}.sha256")])
        .current_dir(w.path("ext/s"))
        .output()
        .unwrap();
    assert!(
        sums.status.success(),
        "{}",
        String::from_utf8_lossy(&sums.stdout)
    );
    let restored = w.restore(&["--from", "ext", "restore", "s/latest", "--to", "r"]);
    assert_eq!(code(&restored), 0, "{}", stderr(&restored));
    w.assert_restored("r");

    let again = w.push(&["--all", "--dest", "ext"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let r = &records(&again)[0];
    assert_eq!(
        (r["sent"].as_u64(), r["skipped"].as_bool()),
        (Some(0), Some(true))
    );
}

/// kill -9 in the middle of a push leaves nothing listed at the folder, and
/// the rerun sends only what was not there yet.
#[test]
fn resume_after_kill_sends_only_the_rest() {
    let w = World::with_archive(8 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    let size = w.archive_size();
    let part = w.path(&format!("ext/s/.{}.tar.zst.snap-part", w.archive_id()));
    let mut child = w.spawn_push(
        &[
            "--all",
            "--dest",
            "ext",
            "--bwlimit",
            "2M",
            "--part-size",
            "1M",
        ],
        &[],
    );
    let start = Instant::now();
    while fs::metadata(&part).map_or(0, |m| m.len()) < 3 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the push never got going"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let listed = w.restore(&["list", "ext"]);
    assert_eq!(code(&listed), 0);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "",
        "a half push is listed"
    );

    let out = w.push(&["--all", "--dest", "ext"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &records(&out)[0];
    let resumed = r["resumed"].as_u64().unwrap();
    let sent = r["sent"].as_u64().unwrap();
    assert!(resumed >= 2 << 20, "resumed only {resumed}");
    assert!(sent < size, "sent {sent} of {size}");
    assert!(stderr(&out).contains("resumed"), "{}", stderr(&out));
    assert!(!part.exists());
    let verified = w.restore(&["--from", "ext", "verify", "s/latest"]);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

/// A drive that is not plugged in, or a folder that is not there, is exit 75
/// and one line; nothing is created in its place.
#[test]
fn absent_media_is_75() {
    let w = World::with_archive(1 << 20);
    let out = w.push(&["--all", "--dest", "uuid://0000-NOPE/backups"]);
    assert_eq!(code(&out), 75);
    assert_eq!(
        stderr(&out),
        "snap-push: destination uuid://0000-NOPE/backups: no drive with UUID 0000-NOPE is plugged in\n\
         snap-push: hint: plug the drive in and mount it, then run again\n"
    );
    let out = w.push(&["--all", "--dest", "missing/folder"]);
    assert_eq!(code(&out), 75);
    assert!(stderr(&out).contains("is not there"), "{}", stderr(&out));
    assert!(!w.path("missing").exists());
}

/// Configured destinations fall back by priority; destinations of one
/// priority are all pushed to, and an absent one among them is exit 75.
#[test]
fn priorities_fall_back_and_group() {
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("second")).unwrap();
    w.config(&format!(
        r#"{{"destinations": [
            {{"name": "t9", "uuid": "0000-NOPE", "path": "b", "priority": 1}},
            {{"name": "backup", "path": "{}", "priority": 2}}]}}"#,
        w.path("second").display()
    ));
    let out = w.push(&["--all", "-c", "config.json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("falling back to backup"),
        "{}",
        stderr(&out)
    );
    assert_eq!(records(&out)[0]["name"], "backup");

    w.config(&format!(
        r#"{{"destinations": [
            {{"name": "t9", "uuid": "0000-NOPE", "path": "b"}},
            {{"name": "backup", "path": "{}"}}]}}"#,
        w.path("second").display()
    ));
    let out = w.push(&["--all", "-c", "config.json"]);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert_eq!(records(&out).len(), 1, "the present one is still pushed to");
    assert!(
        stderr(&out).contains("destination t9: no drive"),
        "{}",
        stderr(&out)
    );
}

/// A local archive whose bytes no longer match its record is refused (65)
/// and nothing of it is published at the destination.
#[test]
fn rotted_local_archive_is_not_published() {
    let w = World::with_archive(2 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    w.flip_byte(&w.archive_data(), 1 << 20);
    let out = w.push(&["--all", "--dest", "ext"]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed or rotted"),
        "{}",
        stderr(&out)
    );
    assert!(records(&out).is_empty());
    let left: Vec<_> = fs::read_dir(w.path("ext/s")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Another archive under the same name at the destination is never replaced (73).
#[test]
fn another_archive_of_the_same_name_is_kept() {
    let w = World::with_archive(1 << 20);
    let id = w.archive_id();
    let theirs = format!(
        r#"{{"schema":"snap/1","kind":"archive","sha256":"{}"}}"#,
        "0".repeat(64)
    );
    w.write(&format!("ext/s/{id}.json"), &theirs);
    let out = w.push(&["--all", "--dest", "ext"]);
    assert_eq!(code(&out), 73, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds another archive s/"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(w.path(&format!("ext/s/{id}.json"))).unwrap(),
        theirs
    );
}

/// `--verify` reads the destination's copy back: a damaged one is removed
/// (65), and the next push sends it again.
#[test]
fn verify_finds_damage_and_the_next_push_repairs() {
    let w = World::with_archive(6 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    assert_eq!(code(&w.push(&["--all", "--dest", "ext"])), 0);
    let remote = w.path(&format!("ext/s/{}.tar.zst", w.archive_id()));
    w.flip_byte(&remote, 3 << 20);
    let out = w.push(&["--all", "--dest", "ext", "--verify"]);
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reads back with sha256"),
        "{}",
        stderr(&out)
    );
    assert!(!remote.exists());
    let out = w.push(&["--all", "--dest", "ext", "--verify"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("sending it again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(records(&out)[0]["verified"], true);
    assert_eq!(
        code(&w.restore(&["--from", "ext", "verify", "s/latest"])),
        0
    );
}

/// `--dry-run` sends nothing, prints no records, and says how much it would send.
#[test]
fn dry_run_sends_nothing() {
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    let out = w.push(&["--all", "--dest", "ext", "--dry-run"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("would send s/"), "{}", stderr(&out));
    assert!(stderr(&out).contains("5 of 5 objects"), "{}", stderr(&out));
    assert!(!w.path("ext/s").exists());
}

/// The notify hook hears success, missing media and a full destination.
#[test]
fn notify_hook_hears_the_outcome() {
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    let hook = "echo \"$SNAP_EVENT $SNAP_EXIT $SNAP_TOOL\" >> hook.txt";
    assert_eq!(
        code(&w.push(&["--all", "--dest", "ext", "--notify", hook])),
        0
    );
    let out = w.push(&["--all", "--dest", "uuid://NOPE/x", "--notify", hook]);
    assert_eq!(code(&out), 75);
    fs::create_dir(w.path("full")).unwrap();
    let out = w.push(&[
        "--all",
        "--dest",
        "full",
        "--min-free",
        "100%",
        "--notify",
        hook,
    ]);
    assert_eq!(code(&out), 73, "{}", stderr(&out));
    assert!(stderr(&out).contains("low on space"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(w.path("hook.txt")).unwrap(),
        "success 0 snap-push\nmedia-missing 75 snap-push\nlow-disk 73 snap-push\n"
    );
}

/// Records of other kinds pass through; a malformed line is exit 65 naming it, with nothing sent.
#[test]
fn stdin_records_pass_through_and_bad_lines_stop() {
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    let json = fs::read_to_string(w.archive_json()).unwrap();
    let other = r#"{"schema":"snap/1","kind":"x-note","text":"hi"}"#;
    let out = w
        .push_cmd(&["--dest", "ext"])
        .write_stdin(format!("{other}\n{json}"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(recs[0]["kind"], "x-note");
    assert_eq!(recs[1]["kind"], "pushed");
    let out = w
        .push_cmd(&["--dest", "ext2"])
        .write_stdin(format!("{}\nnot json\n", json.trim_end()))
        .output()
        .unwrap();
    assert_eq!(code(&out), 65);
    assert!(
        stderr(&out).starts_with("snap-push: stdin line 2: not a JSON record"),
        "{}",
        stderr(&out)
    );
}

/// Secrets in the config's options never reach messages, even when the service is unreachable.
#[test]
fn credentials_never_printed() {
    let w = World::with_archive(1 << 20);
    w.config(
        r#"{"destinations": [{"name": "b", "url": "s3://bucket/p", "options": {
            "endpoint": "http://127.0.0.1:9", "allow_http": "true", "region": "x",
            "access_key_id": "AKIDSECRET1", "secret_access_key": "SEKRIT2"}}]}"#,
    );
    let out = w.push(&["--all", "-c", "config.json", "--retries", "0", "-v"]);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(
        !all.contains("SEKRIT2") && !all.contains("AKIDSECRET1"),
        "{all}"
    );
    let out = w.push(&["--all", "--dest", "s3://AKID:SEKRIT@bucket/p"]);
    assert_eq!(code(&out), 64);
    assert!(!stderr(&out).contains("SEKRIT"), "{}", stderr(&out));
}

/// Against a real S3 server (moto): push, list, verify and restore from the
/// bucket alone; an interrupted push is never listed and resumes without resending.
#[test]
fn s3_push_resume_list_verify_restore() {
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    bucket_round_trip("s3://bkt/snap", &s3.env());
}

/// The same against Azure's emulator (Azurite): block uploads resume too.
#[test]
fn azure_push_resume_list_verify_restore() {
    let az = common::Azurite::start();
    az.create_container("bkt");
    bucket_round_trip("az://bkt/snap", &az.env());
}

/// Locks at moto's S3: a push refreshes its lock by `If-Match` writes
/// (every half second here, or it could not publish), and a prune from
/// another machine, naming the bucket with a trailing slash, waits for it.
#[test]
fn s3_lock_refreshes_and_keeps_a_prune_out() {
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    push_holds_the_bucket("s3://bkt/snap", &s3.env());
}

/// A service without conditional writes (here moto with object_store's
/// conditional puts turned off, as for an S3-compatible service that has
/// none) is refused with exit 69 and one line saying why; nothing is sent.
#[test]
fn a_service_without_conditional_writes_is_69() {
    let w = World::with_archive(1 << 10);
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    let mut env = s3.env();
    env.push(("AWS_CONDITIONAL_PUT".into(), "disabled".into()));
    let out = w.push_env(&["--all", "--dest", "s3://bkt/snap"], &env);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("snap-push: s3://bkt/snap/.snap/locks/")
            && err.contains(": the service does not support conditional writes\n"),
        "{err}"
    );
    assert!(
        err.contains("hint: snap shares a destination between machines through conditional writes"),
        "{err}"
    );
    let listed = w.restore_env(&["list", "s3://bkt/snap", "--json"], &s3.env());
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "");
}

/// Server answers injected by a proxy in front of moto: 500s on the lock's
/// and the record's create-only writes and a listing held two seconds are
/// retried and the push lands whole; a 412 on the record (the service says
/// it exists, and nothing is there) is exit 75 with its own line and nothing
/// listed, and the next push lands; a 409 on a lock refresh is retried.
#[test]
fn injected_409_412_500_and_slow_listings_lose_nothing() {
    use snap_testkit::{Fault, FaultProxy};
    let fault = |method, contains, header, status, delay_ms, times| Fault {
        method,
        contains,
        header,
        status,
        delay: Duration::from_millis(delay_ms),
        times,
        drop_header: None,
        answer_lost: false,
    };
    let w = World::with_archive(6 << 20);
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    let env_via = |port: u16| {
        let mut env = s3.env();
        env.retain(|(k, _)| k != "AWS_ENDPOINT");
        env.push(("AWS_ENDPOINT".into(), format!("http://127.0.0.1:{port}")));
        env
    };
    let url = "s3://bkt/snap";
    let proxy = FaultProxy::start(
        s3.port,
        vec![
            fault(
                "PUT",
                "/.snap/locks/",
                Some("if-none-match"),
                Some(500),
                0,
                2,
            ),
            fault("PUT", ".json", Some("if-none-match"), Some(500), 0, 2),
            fault("GET", "list-type=2", None, None, 2000, 1),
        ],
    );
    let out = w.push_env(&["--all", "--dest", url], &env_via(proxy.port));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 5);
    let verified = w.restore_env(&["--from", url, "verify", "s/latest"], &s3.env());
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));

    let w = World::with_archive(1 << 10);
    let proxy = FaultProxy::start(
        s3.port,
        vec![fault("PUT", "/s/", Some("if-none-match"), Some(412), 0, 1)],
    );
    let url = "s3://bkt/two";
    let out = w.push_env(&["--all", "--dest", url], &env_via(proxy.port));
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(".json: the destination refused to create it (a precondition failed) yet holds nothing there; nothing was replaced"),
        "{}",
        stderr(&out)
    );
    let listed = w.restore_env(&["list", url, "--json"], &s3.env());
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "");
    let out = w.push_env(&["--all", "--dest", url], &env_via(proxy.port));
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let w = World::with_archive(8 << 20);
    let proxy = FaultProxy::start(
        s3.port,
        vec![fault(
            "PUT",
            "/.snap/locks/",
            Some("if-match"),
            Some(409),
            0,
            1,
        )],
    );
    let mut env = env_via(proxy.port);
    env.push(("SNAP_LOCK_STALE_SECS".into(), "3".into()));
    let out = w.push_env(
        &["--all", "--dest", "s3://bkt/three", "--bwlimit", "2M"],
        &env,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        proxy.injected.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no refresh met the 409"
    );
}

/// A lock's create-only write and one of its refreshes land at the service
/// but their answers are lost (the proxy answers 500): the client sends each
/// again, the service refuses the second as the condition no longer holds,
/// and the push finds the lock holding its own bytes and goes on (before,
/// it took its lock for another's and gave up, 70, or 75 mid-push).
#[test]
fn lost_answers_to_lock_writes_keep_the_lock() {
    use snap_testkit::{Fault, FaultProxy};
    let lost = |header| Fault {
        method: "PUT",
        contains: "/.snap/locks/",
        header: Some(header),
        status: Some(500),
        delay: Duration::ZERO,
        times: 1,
        drop_header: None,
        answer_lost: true,
    };
    let w = World::with_archive(8 << 20);
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    let proxy = FaultProxy::start(s3.port, vec![lost("if-none-match"), lost("if-match")]);
    let mut env = s3.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT");
    env.push((
        "AWS_ENDPOINT".into(),
        format!("http://127.0.0.1:{}", proxy.port),
    ));
    env.push(("SNAP_LOCK_STALE_SECS".into(), "3".into()));
    let url = "s3://bkt/snap";
    let out = w.push_env(&["--all", "--dest", url, "--bwlimit", "2M"], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 2);
    let verified = w.restore_env(&["--from", url, "verify", "s/latest"], &s3.env());
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

/// A service that ignores create-only conditions (a proxy drops
/// `If-None-Match` before moto sees it) is caught by the check every tool
/// makes when it takes its lock: exit 69, one line, nothing sent.
#[test]
fn a_service_that_ignores_conditions_is_69() {
    use snap_testkit::{Fault, FaultProxy};
    let w = World::with_archive(1 << 10);
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    let proxy = FaultProxy::start(
        s3.port,
        vec![Fault {
            method: "PUT",
            contains: "/.snap/locks/",
            header: Some("if-none-match"),
            status: None,
            delay: Duration::ZERO,
            times: 2,
            drop_header: Some("if-none-match"),
            answer_lost: false,
        }],
    );
    let mut env = s3.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT");
    env.push((
        "AWS_ENDPOINT".into(),
        format!("http://127.0.0.1:{}", proxy.port),
    ));
    let out = w.push_env(&["--all", "--dest", "s3://bkt/snap"], &env);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            ": the service ignored a create-only condition (If-None-Match) and replaced an object\n"
        ),
        "{}",
        stderr(&out)
    );
    let listed = w.restore_env(&["list", "s3://bkt/snap", "--json"], &s3.env());
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "");
}

/// The same at Azurite: ETag conditions on Azure blobs.
#[test]
fn azure_lock_refreshes_and_keeps_a_prune_out() {
    let az = common::Azurite::start();
    az.create_container("bkt");
    push_holds_the_bucket("az://bkt/snap", &az.env());
}

fn push_holds_the_bucket(url: &str, env: &[(String, String)]) {
    let w = World::with_archive(8 << 20);
    let mut env = env.to_vec();
    env.push(("SNAP_LOCK_STALE_SECS".into(), "3".into()));
    let args = [
        "--all",
        "--dest",
        url,
        "--bwlimit",
        "2M",
        "--part-size",
        "5M",
    ];
    let mut cmd = w.push_cmd(&args);
    cmd.envs(env.clone());
    let handle = std::thread::spawn(move || cmd.timeout(Duration::from_secs(90)).output().unwrap());
    let start = Instant::now();
    w.wait_for_parts(1);
    let other = format!("{url}/");
    let prune = |w: &World| {
        w.tool("snap-prune")
            .args(["--dest", &other, "--keep-last", "1", "-q"])
            .env("HOME", w.path("nas"))
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    };
    let busy = prune(&w);
    assert_eq!(code(&busy), 75, "{}", stderr(&busy));
    assert!(
        stderr(&busy).contains(": busy: snap-push 0.1.0 (pid ")
            && stderr(&busy).contains("holds a lock there"),
        "{}",
        stderr(&busy)
    );
    let out = handle.join().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        start.elapsed() > Duration::from_secs(2),
        "too quick to need a refresh"
    );
    let pruned = prune(&w);
    assert_eq!(code(&pruned), 0, "{}", stderr(&pruned));
    assert_eq!(records(&pruned)[0]["action"], "keep");
}

/// GCS, as far as its emulator goes: fake-gcs-server's XML API (the one
/// object_store speaks) lists, reads and deletes but takes no uploads, so a
/// push to a folder is copied in through its JSON API; then the bucket alone
/// lists, verifies, restores and plans a prune. A push there is refused by
/// the emulator (400, "invalid uploadType"): what that leaves untested is in
/// docs/destinations.md.
#[test]
fn gcs_reads_list_verify_restore_and_plan() {
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("usb")).unwrap();
    let out = w.push(&["--all", "--dest", "usb"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let gcs = common::FakeGcs::start();
    gcs.create_bucket("bkt");
    let set = w.path("usb/s");
    for e in fs::read_dir(&set).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        gcs.upload("bkt", &format!("snap/s/{name}"), &fs::read(&p).unwrap());
    }
    let env = gcs.env();
    let url = "gs://bkt/snap";
    let listed = w.restore_env(&["list", url, "--json"], &env);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert_eq!(records(&listed)[0]["id"], w.archive_id());
    let verified = w.restore_env(&["--from", url, "verify", "s/latest"], &env);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
    let restored = w.restore_env(&["--from", url, "restore", "s/latest", "--to", "r"], &env);
    assert_eq!(code(&restored), 0, "{}", stderr(&restored));
    w.assert_restored("r");
    let plan = w
        .tool("snap-prune")
        .args(["--dest", url, "--keep-last", "1", "--dry-run", "-q"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    assert_eq!(records(&plan)[0]["action"], "keep");
    let push = w.push_env(&["--all", "--dest", "gs://bkt/other"], &env);
    assert_eq!(code(&push), 69, "{}", stderr(&push));
    assert!(
        stderr(&push).contains("400 Bad Request"),
        "{}",
        stderr(&push)
    );
}

/// A server that goes away mid-push (a network cut) ends the push with exit
/// 69 after its retries, instead of hanging; nothing is listed.
#[test]
fn server_gone_mid_push_is_69() {
    let w = World::with_archive(12 << 20);
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    let env = s3.env();
    let args = [
        "--all",
        "--dest",
        "s3://bkt/snap",
        "--bwlimit",
        "2M",
        "--part-size",
        "1M",
        "--parallel",
        "1",
    ];
    let mut cmd = w.push_cmd(&args);
    cmd.args(["--retries", "1", "--retry-timeout", "2"])
        .envs(env.clone());
    let handle = std::thread::spawn(move || cmd.timeout(Duration::from_secs(90)).output().unwrap());
    w.wait_for_parts(1);
    drop(s3);
    let out = handle.join().unwrap();
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("snap-push: s3://bkt/snap/s/"),
        "{}",
        stderr(&out)
    );
    assert!(records(&out).is_empty());
}

fn bucket_round_trip(url: &str, env: &[(String, String)]) {
    let w = World::with_archive(12 << 20);
    let size = w.archive_size();
    let mut child = w.spawn_push(
        &[
            "--all",
            "--dest",
            url,
            "--bwlimit",
            "3M",
            "--part-size",
            "5M",
        ],
        env,
    );
    w.wait_for_parts(1);
    child.kill().unwrap();
    child.wait().unwrap();
    let listed = w.restore_env(&["list", url], env);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "",
        "a half push is listed"
    );

    let out = w.push_env(&["--all", "--dest", url], env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &records(&out)[0];
    assert!(r["resumed"].as_u64().unwrap() >= 5 << 20, "{r}");
    assert!(r["sent"].as_u64().unwrap() < size, "{r}");
    assert_eq!(r["dest"], url);

    w.check_from(url, env);
}

/// No destination given or configured is a usage error with the fix in a hint line.
#[test]
fn no_destination_is_64() {
    let w = World::with_archive(1 << 10);
    let out = w.push(&["--all"]);
    assert_eq!(code(&out), 64);
    assert_eq!(
        stderr(&out),
        "snap-push: no destination\nsnap-push: hint: give --dest PATH|URL, or list \"destinations\" in the config (see snap-push --help)\n"
    );
}

/// `--file` takes a disk snapshot's record (disks/DISK/NAME.json) as well
/// as an archive's: both travel in one run, and a second run finds both there.
#[test]
fn file_names_an_archive_and_a_disk_snapshot() {
    let w = World::with_archive(1 << 10);
    fs::create_dir(w.path("usb")).unwrap();
    let img = w.path("vm.raw");
    fs::write(&img, vec![7u8; 3 << 20]).unwrap();
    let out = w
        .tool("snap-disk")
        .args([
            "--store",
            "store",
            "create",
            img.to_str().unwrap(),
            "one",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let disk_rec = w.path("store/disks/vm/one.json");
    let archive = w.archive_json();
    let args = [
        "--file",
        archive.to_str().unwrap(),
        "--file",
        disk_rec.to_str().unwrap(),
        "--dest",
        "usb",
    ];
    let out = w.push(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["object"], "disks/vm/one.json");
    assert!(w.path("usb/disks/vm/one.map.zst").exists());
    assert!(
        stderr(&out).contains("2 archive(s) and disk snapshot(s) to "),
        "{}",
        stderr(&out)
    );
    let again = w.push(&args);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let recs = records(&again);
    assert_eq!(
        (recs[0]["sent"].as_u64(), recs[1]["sent"].as_u64()),
        (Some(0), Some(0))
    );
}

/// A blocks disk snapshot to a real S3 server (moto): the second snapshot's
/// push sends only its new blocks, and snap-restore restores each snapshot
/// from the bucket alone, byte-identical.
#[test]
fn s3_disk_snapshots_send_only_new_blocks() {
    let w = World::with_archive(1 << 10);
    let s3 = common::Moto::start();
    s3.create_bucket("bkt");
    let env = s3.env();
    let img = w.path("vm.raw");
    let noise = |len: usize, mut x: u64| -> Vec<u8> {
        (0..len / 8)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect()
    };
    fs::write(&img, noise(24 << 20, 1)).unwrap();
    let disk = |name: &str| {
        let out = w
            .tool("snap-disk")
            .args(["create", img.to_str().unwrap(), name])
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        out.stdout
    };
    let push = |rec: Vec<u8>| {
        let out = w
            .push_cmd(&["--dest", "s3://bkt/snap"])
            .envs(env.clone())
            .write_stdin(rec)
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("1 disk snapshot(s) to s3://bkt/snap: sent"),
            "{}",
            stderr(&out)
        );
        records(&out)[0]["bytes"].as_u64().unwrap()
    };
    let first = push(disk("one"));
    let sum1 = fs::read(&img).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &noise(1 << 20, 2), 5 << 20).unwrap();
    drop(f);
    let second = push(disk("two"));
    assert!(first > 24 << 20, "first push sent {first}");
    assert!(
        (1 << 20..=(1 << 20) + 4096).contains(&second),
        "second push sent {second}"
    );
    let out = w.restore_env(
        &[
            "--from",
            "s3://bkt/snap",
            "restore",
            "disks/vm/one",
            "--to",
            "back.raw",
        ],
        &env,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        fs::read(w.path("back.raw")).unwrap() == sum1,
        "restored from S3 differs"
    );
}

/// On a terminal (a pseudo-terminal from `script`) the progress line says
/// how long: percent, done/total bytes, rate and ETA; with stderr not a
/// terminal there is no progress line at all.
#[test]
fn progress_on_a_terminal_says_how_long() {
    let w = World::with_archive(6 << 20);
    fs::create_dir(w.path("ext")).unwrap();
    let push = assert_cmd::cargo::cargo_bin("snap-push");
    // stderr to the terminal, the records to /dev/null.
    let line = format!(
        "{} --store store --all --dest ext --min-free 0 --bwlimit 2M --part-size 1M 2>&1 >/dev/null",
        push.display()
    );
    let shown = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("TERM", "xterm")
        .current_dir(w.path(""))
        .output()
        .expect("script (bsdutils; cargo xtask test installs it)");
    assert!(shown.status.success(), "{}", stderr(&shown));
    let screen = String::from_utf8_lossy(&shown.stdout);
    let total = w.archive_size();
    let want_total = format!("/{:.2} MiB, ", total as f64 / (1 << 20) as f64);
    // Each redraw ends in "ETA m:ss"; take the readings that have one.
    let readings: Vec<&str> = screen
        .split(['\r', '\n'])
        .flat_map(|l| l.split("\u{1b}["))
        .filter(|l| l.contains(", ETA "))
        .collect();
    let reading = readings
        .iter()
        .find(|r| r.contains(&want_total))
        .unwrap_or_else(|| {
            panic!("no reading of the {want_total} total on the terminal:\n{screen:?}")
        });
    let (head, eta) = reading.rsplit_once(", ETA ").unwrap();
    let (m, s) = eta.trim_end().split_once(':').unwrap();
    assert!(
        m.parse::<u32>().is_ok() && s.len() == 2 && s.parse::<u32>().is_ok(),
        "{reading}"
    );
    let pct: u32 = head
        .split("% ")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pct <= 100, "{reading}");
    assert!(head.contains(" -> ") && head.contains("/s"), "{reading}");

    fs::remove_dir_all(w.path("ext")).unwrap();
    fs::create_dir(w.path("ext")).unwrap();
    let plain = w.push(&["--all", "--dest", "ext", "--bwlimit", "4M"]);
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));
    assert!(!stderr(&plain).contains("ETA"), "{}", stderr(&plain));
}
