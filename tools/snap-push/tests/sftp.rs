//! snap-push, snap-restore and snap-prune against a real OpenSSH server on
//! loopback (started by the test with its own host and user keys).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{PushWorld, Sshd, World, code, records, stderr};

/// Files under `dir` (recursively), relative, with their modes.
fn files(dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, m.permissions().mode() & 0o777));
            }
        }
    }
    out.sort();
    out
}

/// Over SFTP: a push killed mid-file is not listed and the rerun sends only
/// the rest; list, verify and restore work from the server alone; files are
/// 0600 with no work files left; a second push with --verify finds it there.
#[test]
fn sftp_push_resume_list_verify_restore() {
    let sshd = Sshd::start();
    let w = World::with_archive(12 << 20);
    fs::create_dir(w.path("nas")).unwrap();
    let url = sshd.url(w.path("nas").to_str().unwrap());
    let env = sshd.env();
    let size = w.archive_size();
    let mut child = w.spawn_push(
        &[
            "--all",
            "--dest",
            &url,
            "--bwlimit",
            "3M",
            "--part-size",
            "5M",
        ],
        &env,
    );
    w.wait_for_parts(1);
    child.kill().unwrap();
    child.wait().unwrap();
    let listed = w.restore_env(&["list", &url], &env);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "",
        "a half push is listed"
    );

    // The rerun lasts several lock refreshes (every half second here, by
    // setstat on the server); it publishes only if they worked.
    let mut quick = env.clone();
    quick.push(("SNAP_LOCK_STALE_SECS".into(), "3".into()));
    let out = w.push_env(&["--all", "--dest", &url, "--bwlimit", "3M"], &quick);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &records(&out)[0];
    assert!(r["resumed"].as_u64().unwrap() >= 5 << 20, "{r}");
    assert!(r["sent"].as_u64().unwrap() < size, "{r}");
    assert_eq!(r["dest"], url);
    let on_server = files(&w.path("nas"));
    assert!(
        on_server
            .iter()
            .all(|(name, mode)| *mode == 0o600 && !name.contains("/.")),
        "{on_server:?}"
    );
    assert_eq!(
        on_server.len(),
        5,
        "archive, index, sums, signature, record: {on_server:?}"
    );

    w.check_from(&url, &env);
}

/// Collects and packs set `s` again (a changed file), a second apart so
/// the snapshot's name differs.
fn another_archive(w: &World, n: usize) {
    std::thread::sleep(Duration::from_millis(1100));
    w.write("src/a.txt", format!("version {n}\n"));
    w.collect_and_pack();
}

/// snap-prune --dest over SFTP removes what the policy drops, and waits
/// (exit 75, naming the holder) while a push holds the server's folder.
#[test]
fn sftp_prune_and_its_lock() {
    let sshd = Sshd::start();
    let w = World::with_archive(6 << 20);
    another_archive(&w, 2);
    fs::create_dir(w.path("nas")).unwrap();
    let url = sshd.url(w.path("nas").to_str().unwrap());
    let env = sshd.env();
    let out = w.push_env(&["--all", "--dest", &url], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out).len(), 2);

    another_archive(&w, 3);
    let mut slow = w.spawn_push(
        &[
            "--all",
            "--dest",
            &url,
            "--bwlimit",
            "1M",
            "--part-size",
            "1M",
        ],
        &env,
    );
    w.wait_for_parts(1);
    let prune = |args: &[&str]| {
        w.tool("snap-prune")
            .envs(env.iter().cloned())
            .args(["--dest", &url])
            .args(args)
            .output()
            .unwrap()
    };
    let blocked = prune(&["--keep-last", "1"]);
    assert_eq!(code(&blocked), 75, "{}", stderr(&blocked));
    assert!(
        stderr(&blocked).contains("snap-push"),
        "{}",
        stderr(&blocked)
    );
    slow.kill().unwrap();
    slow.wait().unwrap();

    let out = prune(&["--keep-last", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed = w.restore_env(&["list", &url, "--json"], &env);
    assert_eq!(records(&listed).len(), 1, "{:?}", records(&listed));
    let locks = files(&w.path("nas/.snap"));
    assert!(
        locks.iter().all(|(name, _)| !name.starts_with("locks/")) || locks.is_empty(),
        "prune left its lock: {locks:?}"
    );
}

/// A host key that is not in known_hosts, or that changed, is exit 77 with
/// one line and a hint; nothing is written.
#[test]
fn sftp_host_key_is_checked() {
    let sshd = Sshd::start();
    let w = World::with_archive(1 << 10);
    fs::create_dir(w.path("nas")).unwrap();
    let url = sshd.url(w.path("nas").to_str().unwrap());
    let port = sshd.port;

    fs::write(w.path("empty_known_hosts"), "").unwrap();
    let unknown = vec![(
        "SNAP_SSH_COMMAND".to_string(),
        sshd.ssh_command_with(&w.path("empty_known_hosts")),
    )];
    let out = w.push_env(&["--all", "--dest", &url], &unknown);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert_eq!(
        stderr(&out).lines().take(2).collect::<Vec<_>>(),
        [
            format!("snap-push: destination {url}: the server's host key is not in known_hosts; refusing to connect (cron has no terminal to ask)").as_str(),
            "snap-push: hint: check the key's fingerprint and add it once, by hand: ssh HOST (or ssh-keyscan HOST >> ~/.ssh/known_hosts)",
        ]
    );

    let other = w.path("other_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let key = fs::read_to_string(w.path("other_key.pub")).unwrap();
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    fs::write(
        w.path("wrong_known_hosts"),
        format!("[127.0.0.1]:{port} {} {}\n", key[0], key[1]),
    )
    .unwrap();
    let changed = vec![(
        "SNAP_SSH_COMMAND".to_string(),
        sshd.ssh_command_with(&w.path("wrong_known_hosts")),
    )];
    let out = w.push_env(&["--all", "--dest", &url], &changed);
    assert_eq!(code(&out), 77, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "snap-push: destination {url}: the server's host key has changed since it was added to known_hosts; refusing to connect\n"
        )),
        "{}",
        stderr(&out)
    );
    let listed = w.restore_env(&["list", &url], &changed);
    assert_eq!(code(&listed), 77, "{}", stderr(&listed));
    assert!(files(&w.path("nas")).is_empty());
}

/// The server going away mid-push (sshd and its sessions killed) ends the
/// push with exit 69 and one line; once it is back, the push resumes.
#[test]
fn sftp_server_vanishing_mid_push() {
    let mut sshd = Sshd::start();
    let w = World::with_archive(12 << 20);
    fs::create_dir(w.path("nas")).unwrap();
    let url = sshd.url(w.path("nas").to_str().unwrap());
    let env = sshd.env();
    let size = w.archive_size();
    let args = [
        "--all",
        "--dest",
        &url,
        "--bwlimit",
        "3M",
        "--part-size",
        "5M",
    ];
    let child = w.spawn_push_logged(&args, &env);
    w.wait_for_parts(1);
    sshd.kill();
    let out = common::wait_at_most(child, Duration::from_secs(120));
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    let first = stderr(&out).lines().next().unwrap_or("").to_string();
    assert!(
        first.starts_with(&format!("snap-push: {url}/s/"))
            && first.contains("the connection was lost"),
        "{}",
        stderr(&out)
    );

    sshd.restart();
    let out = w.push_env(&["--all", "--dest", &url], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = &records(&out)[0];
    assert!(r["resumed"].as_u64().unwrap() >= 5 << 20, "{r}");
    assert!(r["sent"].as_u64().unwrap() < size, "{r}");
    let verified = w.restore_env(&["--from", &url, "verify", "s/latest"], &env);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
}

/// A server whose disk cannot take the archive is exit 73 before a byte is
/// sent (its free space is asked with statvfs@openssh.com); one that fills
/// up mid-push is exit 73 naming the full disk, and nothing is listed.
/// With room made, the push resumes and completes.
#[test]
fn sftp_server_disk_full() {
    let sshd = Sshd::start();
    let w = World::with_archive(12 << 20);
    let nas = w.path("nas");
    fs::create_dir(&nas).unwrap();
    let _mount = common::Tmpfs::mount(&nas, "24m");
    let url = sshd.url(nas.to_str().unwrap());
    let env = sshd.env();
    let filler = nas.join("filler");
    fs::write(&filler, vec![0u8; 16 << 20]).unwrap();
    let out = w.push_env(&["--all", "--dest", &url, "--min-free", "0"], &env);
    assert_eq!(code(&out), 73, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(": low on space: "),
        "{}",
        stderr(&out)
    );
    fs::remove_file(&filler).unwrap();

    let args = [
        "--all",
        "--dest",
        &url,
        "--min-free",
        "0",
        "--bwlimit",
        "3M",
        "--part-size",
        "5M",
    ];
    let child = w.spawn_push_logged(&args, &env);
    w.wait_for_parts(1);
    let free = free_bytes(&nas);
    fs::write(&filler, vec![0u8; free as usize]).ok();
    let out = common::wait_at_most(child, Duration::from_secs(120));
    assert_eq!(code(&out), 73, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no space left on the server's disk"),
        "{}",
        stderr(&out)
    );
    let listed = w.restore_env(&["list", &url], &env);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "");
    fs::remove_file(&filler).unwrap();
    let out = w.push_env(&["--all", "--dest", &url, "--min-free", "0"], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(records(&out)[0]["resumed"].as_u64().unwrap() >= 5 << 20);
}

/// Free bytes of the filesystem holding `dir` (df's answer).
fn free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// A configured SFTP destination: its `ssh_command` option (no environment)
/// and the notify hook; with the server down it is absent, and the push
/// falls back to the next priority, as with an unplugged drive.
#[test]
fn sftp_config_entry_priority_and_notify() {
    let mut sshd = Sshd::start();
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("nas")).unwrap();
    fs::create_dir(w.path("usb")).unwrap();
    let url = sshd.url(w.path("nas").to_str().unwrap());
    let config = serde_json::json!({
        "destinations": [
            { "name": "nas", "url": url, "priority": 1, "price_per_gib_month": 0.004,
              "options": { "ssh_command": sshd.ssh_command() } },
            { "name": "usb", "path": w.path("usb").to_str().unwrap(), "priority": 2 }
        ],
        "notify": "echo \"$SNAP_EVENT $SNAP_EXIT\" >> hook.txt"
    });
    w.config(&config.to_string());
    let out = w.push(&["--config", "config.json", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["dest"], url);
    assert_eq!(files(&w.path("nas")).len(), 5);
    assert!(files(&w.path("usb")).is_empty(), "the fallback was used");

    sshd.kill();
    let out = w.push(&["--config", "config.json", "--all"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("falling back to usb"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(&w.path("usb")).len(), 5);
    assert_eq!(
        fs::read_to_string(w.path("hook.txt")).unwrap(),
        "success 0\nsuccess 0\n"
    );
}

/// An `sftp://` folder with a space, written `%20` as URLs have it, is that
/// folder on the server; one that is not there is 75 with a hint that is a
/// command that works: ssh with the port, the folder quoted (issue 32, finding 8).
#[test]
fn sftp_paths_are_percent_decoded() {
    let sshd = Sshd::start();
    let w = World::with_archive(1 << 20);
    fs::create_dir(w.path("nas box")).unwrap();
    let env = sshd.env();
    let encoded = |rel: &str| sshd.url(&w.path(rel).display().to_string().replace(' ', "%20"));
    let out = w.push_env(&["--all", "--dest", &encoded("nas box")], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        files(&w.path("nas box")).len(),
        5,
        "{:?}",
        files(&w.path("nas box"))
    );
    assert!(!w.path("nas%20box").exists());

    let out = w.push_env(&["--all", "--dest", &encoded("not there")], &env);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    let want = format!(
        "create it: ssh -p {} 127.0.0.1 mkdir -p -- '{}'",
        sshd.port,
        w.path("not there").display()
    );
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
}
