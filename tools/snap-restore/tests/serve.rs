//! `snap-restore serve`: the live timeline over HTTP on a free loopback
//! port, spoken to with raw requests. Pins what keeps it safe (token, Host,
//! CSRF, read-only by default, loopback unless asked) and that the pages
//! and the edit form work.

use std::fs;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snap_testkit::free_port;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// A store with two snapshots of a small tree; returns their ids.
fn store(dir: &Path) -> (String, String) {
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::write(dir.join("src/a.txt"), "a\n").unwrap();
    let collect = || {
        let out = Command::new(bin("snap-collect"))
            .args([
                "--store",
                "store",
                "--min-free",
                "0",
                "--name",
                "s",
                "src",
                "-q",
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let first = collect();
    fs::write(dir.join("src/b.txt"), "b\n").unwrap();
    (first, collect())
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(bin("snap-restore"))
            .args(["--store", "store", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("SNAP_SERVE_TOKEN", TOKEN)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "serve did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, port }
    }

    /// One request; returns the status, the headers and the body.
    fn ask(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        cookie: bool,
        body: &str,
    ) -> (u16, String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let host = host.map_or(format!("127.0.0.1:{}", self.port), str::to_string);
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if cookie {
            req.push_str(&format!("Cookie: snap_token={TOKEN}\r\n"));
        }
        if method == "POST" {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = String::new();
        BufReader::new(s).read_to_string(&mut raw).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap();
        (status, head.to_string(), body.to_string())
    }

    fn page(&self) -> String {
        let (status, _, body) = self.ask("GET", "/", None, true, "");
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" content=\"").unwrap() + 21;
    page[at..at + 32].to_string()
}

fn record(dir: &Path, id: &str) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join(format!("store/sets/s/{id}.json"))).unwrap()).unwrap()
}

/// The token in the URL opens the page (and sets a cookie that opens the
/// next ones) with a strict CSP; no token, a wrong one or a foreign Host
/// header is refused.
#[test]
fn token_and_host_guard_every_page() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    let (status, head, body) = srv.ask("GET", &format!("/?token={TOKEN}"), None, false, "");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_lowercase().contains("set-cookie: snap_token="),
        "{head}"
    );
    assert!(head.contains("default-src 'none'"), "{head}");
    assert!(body.contains(&format!("s/{first}")) && body.contains(&format!("s/{second}")));
    assert!(
        srv.page().contains(&format!("s/{second}")),
        "the cookie alone opens the page"
    );
    for (path, host, cookie) in [
        ("/", None, false),
        ("/?token=ffffffffffffffffffffffffffffffff", None, false),
        ("/", Some("evil.example:80".to_string()), true),
        ("/", Some(format!("attacker.example:{}", srv.port)), true),
    ] {
        let (status, _, _) = srv.ask("GET", path, host.as_deref(), cookie, "");
        assert_eq!(status, 403, "{path} {host:?} {cookie}");
    }
}

/// The diff page lists what changed between two snapshots.
#[test]
fn diff_of_two_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    assert!(
        srv.page()
            .contains(&format!("/diff?a=s/{first}&amp;b=s/{second}"))
    );
    let (status, _, body) = srv.ask(
        "GET",
        &format!("/diff?a=s/{first}&b=s/{second}"),
        None,
        true,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<code>+</code> b.txt"), "{body}");
    assert!(!body.contains("a.txt"), "{body}");
}

/// A file's history across the set: where it changed, where it is absent;
/// "changed only" leaves out the snapshots where it stayed the same.
#[test]
fn history_of_one_path() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    let src = t.path().join("src").canonicalize().unwrap();
    let rel = src.display().to_string();
    let rel = rel.trim_start_matches('/');
    let (status, _, page) = srv.ask(
        "GET",
        &format!("/history?set=s&path={rel}/b.txt"),
        None,
        true,
        "",
    );
    assert_eq!(status, 200, "{page}");
    let at = |id: &str| page.find(&format!("s/{id}</span>")).unwrap();
    assert!(at(&second) < at(&first), "newest first");
    assert!(page.contains("not in this snapshot"), "{page}");
    let (_, _, same) = srv.ask(
        "GET",
        &format!("/history?set=s&path={rel}/a.txt&changed=1"),
        None,
        true,
        "",
    );
    assert_eq!(
        same.matches("class=\"card").count(),
        1,
        "a.txt changed once: {same}"
    );
    assert!(same.contains(&format!("s/{first}</span>")), "{same}");
}

/// A search finds a file name (any case) across snapshots and says where.
#[test]
fn search_finds_a_name_across_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let (first, second) = store(t.path());
    let srv = Server::start(t.path(), &[]);
    assert!(srv.page().contains("action=\"/search\""));
    let (status, _, page) = srv.ask("GET", "/search?q=A.TXT", None, true, "");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("1 paths"), "{page}");
    assert!(
        page.contains(&format!("in 2 snapshots, {first} to {second}")),
        "{page}"
    );
    let (_, _, none) = srv.ask("GET", "/search?q=nothing-like-this", None, true, "");
    assert!(none.contains("0 paths"), "{none}");
}

/// Edits need the page's CSRF token and --allow-changes; then a tag and a
/// pin land in the record and beside it.
#[test]
fn edits_need_csrf_and_allow_changes() {
    let t = tempfile::tempdir().unwrap();
    let (first, _) = store(t.path());
    let before = record(t.path(), &first);
    let form = |csrf: &str, action: &str| {
        format!("csrf={csrf}&name=s%2F{first}&action={action}&value=keep")
    };
    {
        let ro = Server::start(t.path(), &[]);
        let token = csrf(&ro.page());
        for body in [
            form("", "tag"),
            form("00000000000000000000000000000000", "tag"),
            form(&token, "tag"),
        ] {
            let (status, _, said) = ro.ask("POST", "/edit", None, true, &body);
            assert_eq!(status, 403, "{body}: {said}");
        }
        assert!(
            ro.ask("POST", "/edit", None, true, &form(&token, "tag"))
                .2
                .contains("read-only")
        );
    }
    assert_eq!(
        record(t.path(), &first),
        before,
        "a refused edit changed the record"
    );
    let rw = Server::start(t.path(), &["--allow-changes"]);
    let page = rw.page();
    assert!(!page.contains("tag\">keep</span>"), "{page}");
    let token = csrf(&page);
    let (status, _, _) = rw.ask("POST", "/edit", None, false, &form(&token, "tag"));
    assert_eq!(status, 403, "no token, no edit");
    let (status, head, _) = rw.ask("POST", "/edit", None, true, &form(&token, "tag"));
    assert_eq!(status, 303, "{head}");
    assert_eq!(
        record(t.path(), &first)["tags"],
        serde_json::json!(["keep"])
    );
    let page = rw.page();
    assert!(
        page.contains("tag\">keep</span>"),
        "the page was not made again: {page}"
    );
    let (status, _, _) = rw.ask("POST", "/edit", None, true, &form(&token, "pin"));
    assert_eq!(status, 303);
    assert!(t.path().join(format!("store/sets/s/{first}.pin")).is_file());
}

/// A non-loopback address needs --allow-remote (exit 64 otherwise).
#[test]
fn remote_listening_needs_a_flag() {
    let t = tempfile::tempdir().unwrap();
    store(t.path());
    let out = Command::new(bin("snap-restore"))
        .args(["--store", "store", "serve", "--listen", "0.0.0.0:0"])
        .current_dir(t.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}
