//! snap-push, snap-restore and snap-prune through rclone: a `local` remote,
//! a `crypt` remote over it, and a `webdav` remote reaching an `rclone serve
//! webdav` server, the code path of OneDrive, Dropbox and the other
//! HTTP-backed remotes. rclone's config is the test's own (RCLONE_CONFIG).

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PushWorld, World, code, records, stderr};

/// `rclone serve webdav` of a folder on a free loopback port, stopped when dropped.
struct Webdav(Child);

impl Webdav {
    fn start(dir: &std::path::Path, port: u16) -> Webdav {
        let child = Command::new("rclone")
            .args(["serve", "webdav", "--addr", &format!("127.0.0.1:{port}")])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone: run `cargo xtask test`, which installs it");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "rclone serve webdav did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Webdav(child)
    }
}

impl Drop for Webdav {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// rclone's obscured form of a password, as its config holds it.
fn obscure(secret: &str) -> String {
    let out = Command::new("rclone")
        .args(["obscure", secret])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A config with `loc` (local), `sec` (crypt over loc) and, when a port is
/// given, `dav` (webdav); the environment that points rclone at it.
fn rclone_config(w: &World, dav_port: Option<u16>) -> Vec<(String, String)> {
    let mut text = format!(
        "[loc]\ntype = local\n\n[sec]\ntype = crypt\nremote = loc:{}\npassword = {}\n",
        w.path("crypt-store").display(),
        obscure("test secret")
    );
    if let Some(port) = dav_port {
        text.push_str(&format!(
            "\n[dav]\ntype = webdav\nurl = http://127.0.0.1:{port}\nvendor = other\n"
        ));
    }
    w.write("rclone.conf", &text);
    vec![(
        "RCLONE_CONFIG".to_string(),
        w.path("rclone.conf").display().to_string(),
    )]
}

/// Push, list, verify, restore, a second push that finds it there, then
/// `stored` (a look at the remote's own files), and a prune that removes it.
fn round_trip(w: &World, url: &str, env: &[(String, String)], stored: &dyn Fn()) {
    let out = w.push_env(&["--all", "--dest", url], env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["dest"], url);
    w.check_from(url, env);
    stored();
    let forget = format!("s/{}", w.archive_id());
    let pruned = w
        .tool("snap-prune")
        .envs(env.iter().cloned())
        .args(["--dest", url, "--forget", &forget])
        .output()
        .unwrap();
    assert_eq!(code(&pruned), 0, "{}", stderr(&pruned));
    let listed = w.restore_env(&["list", url], env);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "",
        "pruned yet listed"
    );
}

/// A local remote, and a crypt remote over it whose files hold no plain name.
#[test]
fn rclone_local_and_crypt() {
    let w = World::with_archive(6 << 20);
    let env = rclone_config(&w, None);
    let local = format!("rclone:loc:{}", w.path("plain").display());
    round_trip(&w, &local, &env, &|| {
        let names: Vec<String> = fs::read_dir(w.path("plain/s"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.ends_with(".tar.zst")), "{names:?}");
    });

    let w2 = World::with_archive(6 << 20);
    let env2 = rclone_config(&w2, None);
    round_trip(&w2, "rclone:sec:backups", &env2, &|| {
        let mut stored = Vec::new();
        let mut todo = vec![w2.path("crypt-store")];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                if e.metadata().unwrap().is_dir() {
                    todo.push(e.path());
                }
                stored.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        assert!(stored.len() >= 5, "{stored:?}");
        assert!(
            stored
                .iter()
                .all(|n| !n.contains("tar") && !n.contains("json") && n != "s"),
            "crypt stored plain names: {stored:?}"
        );
    });
}

/// A webdav remote (rclone serve webdav on loopback): the HTTP path that
/// OneDrive and Dropbox take.
#[test]
fn rclone_webdav() {
    let w = World::with_archive(6 << 20);
    fs::create_dir(w.path("dav-root")).unwrap();
    let port = snap_testkit::free_port();
    let _dav = Webdav::start(&w.path("dav-root"), port);
    let env = rclone_config(&w, Some(port));
    let url = "rclone:dav:snap";
    let mut child = w.spawn_push(
        &[
            "--all",
            "--dest",
            url,
            "--bwlimit",
            "2M",
            "--part-size",
            "1M",
        ],
        &env,
    );
    // rclone writes the hidden part file on the server as it goes.
    let start = Instant::now();
    while !fs::read_dir(w.path("dav-root/snap/s"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".snap-part"))
        })
        .unwrap_or(false)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let config = w.path("rclone.conf").display().to_string();
    let start = Instant::now();
    while !rclone_serving(&config).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rclone outlived the killed push: {:?}",
            rclone_serving(&config)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = w.restore_env(&["list", url], &env);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "",
        "a half push is listed"
    );
    // The rerun lasts several lock refreshes (every half second here): on
    // WebDAV they rewrite the lock, and the push publishes only if they worked.
    let mut quick = env.clone();
    quick.push(("SNAP_LOCK_STALE_SECS".into(), "3".into()));
    let out = w.push_env(&["--all", "--dest", url, "--bwlimit", "2M"], &quick);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(records(&out)[0]["skipped"], false);
    let one = w.path("one");
    // Paths in a snapshot keep their absolute source, without the '/'.
    let inside = w.path("src/docs/b.txt").display().to_string();
    let restored = w.restore_env(
        &[
            "--from",
            url,
            "restore",
            "s/latest",
            "--path",
            inside.trim_start_matches('/'),
            "--to",
            one.to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(code(&restored), 0, "{}", stderr(&restored));
    let got: Vec<PathBuf> = walk_files(&one);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(fs::read(&got[0]).unwrap(), "b".repeat(10_000).as_bytes());
    round_trip(&w, url, &env, &|| {
        let archive = w.path(&format!("dav-root/snap/s/{}.tar.zst", w.archive_id()));
        assert!(
            archive.is_file(),
            "{} is not on the server",
            archive.display()
        );
    });
}

/// A remote rclone's config does not have, a flag rclone does not know in
/// rclone_command, and an rclone that is not installed: one line each, 78,
/// 78 and 69, before anything is written.
#[test]
fn rclone_setup_errors() {
    let w = World::with_archive(1 << 10);
    let env = rclone_config(&w, None);
    let out = w.restore_env(&["list", "rclone:nosuch:backups"], &env);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.starts_with(
            "snap-restore: destination rclone:nosuch:backups: rclone has no such remote: "
        ),
        "{said}"
    );
    let mut flagged = env.clone();
    flagged.push(("SNAP_RCLONE_COMMAND".into(), "rclone --no-such-flag".into()));
    let out = w.restore_env(&["list", "rclone:loc:/x"], &flagged);
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(
        stderr(&out)
            .starts_with("snap-restore: destination rclone:loc:/x: option rclone_command: "),
        "{}",
        stderr(&out)
    );
    let mut missing = env.clone();
    missing.push(("SNAP_RCLONE_COMMAND".into(), "rclone-not-installed".into()));
    let out = w.restore_env(&["list", "rclone:loc:/x"], &missing);
    assert_eq!(code(&out), 69, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(": cannot run rclone: "),
        "{}",
        stderr(&out)
    );
}

/// The pids of `rclone rcd` processes run with this rclone config.
fn rclone_serving(config: &str) -> Vec<u32> {
    let want = format!("RCLONE_CONFIG={config}");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let has = |hay: &[u8], s: &str| hay.split(|&b| b == 0).any(|w| w == s.as_bytes());
            has(&cmd, "rcd") && cmd.starts_with(b"rclone") && has(&env, &want)
        })
        .collect()
}

/// Every file under `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            match e.file_type().unwrap().is_dir() {
                true => todo.push(e.path()),
                false => out.push(e.path()),
            }
        }
    }
    out
}
