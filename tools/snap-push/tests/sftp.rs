//! snap-push, snap-restore and snap-prune against a real OpenSSH server on
//! loopback (started by the test with its own host and user keys).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Sshd, World, code, records, stderr};

/// Waits until a push in the background has journaled `n` parts.
fn wait_for_parts(w: &World, n: usize) {
    let state = w.path("home/.local/state/snap/push");
    let start = Instant::now();
    while !common::journal_has_parts(&state, n) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the push never sent a part"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    wait_for_parts(&w, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let listed = w.restore_env(&["list", &url], &env);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "",
        "a half push is listed"
    );

    let out = w.push_env(&["--all", "--dest", &url], &env);
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
        4,
        "archive, index, sums, record: {on_server:?}"
    );

    let listed = w.restore_env(&["list", &url, "--json"], &env);
    assert_eq!(code(&listed), 0, "{}", stderr(&listed));
    assert_eq!(records(&listed)[0]["id"], w.archive_id());
    let verified = w.restore_env(&["--from", &url, "verify", "s/latest"], &env);
    assert_eq!(code(&verified), 0, "{}", stderr(&verified));
    let restored = w.restore_env(&["--from", &url, "restore", "s/latest", "--to", "r"], &env);
    assert_eq!(code(&restored), 0, "{}", stderr(&restored));
    w.assert_restored("r");
    let again = w.push_env(&["--all", "--dest", &url, "--verify"], &env);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(records(&again)[0]["skipped"], true);
}
