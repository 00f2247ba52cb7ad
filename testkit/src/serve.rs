//! `snap-restore serve` for the tests that speak to it with raw HTTP
//! requests: a server on a free loopback port with a known token, and the
//! snapshots it shows, made by snap-collect.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The token every test server takes.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A built tool of the workspace.
pub fn bin(name: &str) -> PathBuf {
    crate::world::bin_dir().join(name)
}

/// Runs a tool on the store in `dir` (with `dir/home` for HOME, where the
/// server looks for its keys); it must succeed; returns its stdout.
pub fn run_ok(dir: &Path, tool: &str, args: &[&str]) -> String {
    let out = Command::new(bin(tool))
        .args(["--store", "store"])
        .args(args)
        .env("HOME", dir.join("home"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One more snapshot of `src` into set `s`; returns its id.
pub fn collect(dir: &Path) -> String {
    collect_as(dir, "s")
}

/// One more snapshot of `dir/src` into set `set` of `dir/store`; returns its id.
pub fn collect_as(dir: &Path, set: &str) -> String {
    let out = Command::new(bin("snap-collect"))
        .args([
            "--store",
            "store",
            "--min-free",
            "0",
            "--name",
            set,
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
}

/// A `snap-restore serve` on a free loopback port, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    /// Serves the store `dir/store` (the token is [`TOKEN`]).
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let child = Command::new(bin("snap-restore"))
            .args(["--store", "store", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("SNAP_SERVE_TOKEN", TOKEN)
            .env("HOME", dir.join("home"))
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
    pub fn ask(
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

    /// One GET or HEAD with the token's cookie, as HTTP/1.0 (so the body
    /// is not chunked): the status, the headers and the body's bytes.
    pub fn ask_bytes(&self, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nCookie: snap_token={TOKEN}\r\n\r\n",
            self.port
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..at]).into_owned();
        let body = raw.get(at + 4..).unwrap_or_default().to_vec();
        let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap();
        (status, head, body)
    }

    /// The timeline page, which must answer 200.
    pub fn page(&self) -> String {
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

/// A raw image `dir/vm.raw` of `len` bytes of noise (`seed`) with one
/// blocks snapshot `s` in `dir/store` (disk `vm`); returns the image.
pub fn disk_snapshot(dir: &Path, seed: u64, len: usize) -> std::path::PathBuf {
    let img = dir.join("vm.raw");
    std::fs::write(&img, crate::noise(seed, len)).unwrap();
    let img_s = img.display().to_string();
    run_ok(
        dir,
        "snap-disk",
        &["create", &img_s, "s", "--method", "blocks"],
    );
    img
}

/// Runs a playwright-core script of `tests/ui` (its path, `script`) under
/// node with the global modules found, and these arguments.
pub fn browser_script(script: &Path, args: &[std::ffi::OsString]) -> std::process::Output {
    let node_path = Command::new("npm").args(["root", "-g"]).output().unwrap();
    Command::new("node")
        .arg(script)
        .args(args)
        .env(
            "NODE_PATH",
            String::from_utf8_lossy(&node_path.stdout).trim(),
        )
        .output()
        .expect("node and playwright-core (cargo xtask test installs them)")
}
