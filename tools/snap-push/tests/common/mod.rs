//! Test support for snap-push: a world with one packed archive, and a moto S3 server.

#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

pub struct World {
    dir: tempfile::TempDir,
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn records(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Bytes that zstd cannot shrink, the same on every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

impl World {
    /// A tree with a `size`-byte incompressible file and two small ones,
    /// collected as set `s` and packed into the store.
    pub fn with_archive(size: usize) -> World {
        let w = World {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(w.path("src/docs")).unwrap();
        fs::write(w.path("src/big.bin"), noise(size)).unwrap();
        fs::write(w.path("src/a.txt"), "alpha\n").unwrap();
        fs::write(w.path("src/docs/b.txt"), "b".repeat(10_000)).unwrap();
        let collect = w
            .tool("snap-collect")
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
            .output()
            .unwrap();
        assert_eq!(code(&collect), 0, "{}", stderr(&collect));
        let pack = w
            .tool("snap-pack")
            .args([
                "--store",
                "store",
                "--min-free",
                "0",
                "-q",
                "--snapshot",
                "s/latest",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&pack), 0, "{}", stderr(&pack));
        w
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
    }

    pub fn config(&self, text: &str) {
        self.write("config.json", text);
    }

    pub fn tool(&self, name: &str) -> Command {
        let mut c = Command::cargo_bin(name).unwrap();
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .current_dir(self.dir.path());
        c
    }

    pub fn push_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.tool("snap-push");
        c.args(["--store", "store"]).args(args);
        c
    }

    /// A push running in the background (to be killed), output discarded.
    pub fn spawn_push(&self, args: &[&str], env: &[(String, String)]) -> Child {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("snap-push"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .envs(env.iter().cloned())
            .current_dir(self.dir.path())
            .args(["--store", "store"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn push(&self, args: &[&str]) -> Output {
        self.push_cmd(args).output().unwrap()
    }

    pub fn push_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        self.push_cmd(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    }

    pub fn restore(&self, args: &[&str]) -> Output {
        self.restore_env(args, &[])
    }

    pub fn restore_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        self.tool("snap-restore")
            .args(["--store", "store", "-q"])
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    }

    pub fn archive_json(&self) -> PathBuf {
        let dir = self.path("store/archives/s");
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .expect("one archive record")
    }

    pub fn archive_record(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.archive_json()).unwrap()).unwrap()
    }

    pub fn archive_id(&self) -> String {
        self.archive_record()["id"].as_str().unwrap().to_string()
    }

    pub fn archive_size(&self) -> u64 {
        self.archive_record()["bytes"].as_u64().unwrap()
    }

    pub fn archive_data(&self) -> PathBuf {
        PathBuf::from(self.archive_record()["path"].as_str().unwrap())
    }

    /// Flips one byte of a file, keeping its size.
    pub fn flip_byte(&self, path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0xff;
        fs::write(path, bytes).unwrap();
    }

    /// The tree restored under `root` has the source's files, byte for byte.
    pub fn assert_restored(&self, root: &str) {
        let src = fs::canonicalize(self.path("src")).unwrap();
        let got = self.path(root).join(src.strip_prefix("/").unwrap());
        for rel in ["big.bin", "a.txt", "docs/b.txt"] {
            assert_eq!(
                fs::read(got.join(rel)).unwrap(),
                fs::read(src.join(rel)).unwrap(),
                "{rel} differs"
            );
        }
    }
}

/// Whether a resume journal in `state` records at least `n` parts.
pub fn journal_has_parts(state: &Path, n: usize) -> bool {
    let Ok(entries) = fs::read_dir(state) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        p.extension().is_some_and(|x| x == "json")
            && fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["done"].as_object().map(|d| d.len() >= n))
                .unwrap_or(false)
    })
}

/// A moto S3 server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

/// Starts a server program and waits for its port; panics naming the installer if it is missing.
fn start_server(program: &str, args: &[&str], port: u16) -> Child {
    let child = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}; run `cargo xtask test`, which installs it"));
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{program} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Sends one HTTP/1.1 request to a loopback port and returns the reply's status line.
fn http(port: u16, head: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{head}Host: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply.lines().next().unwrap_or("").to_string()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = start_server(
            "moto_server",
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            port,
        );
        Moto { child, port }
    }

    /// Creates a bucket (moto accepts an unsigned request).
    pub fn create_bucket(&self, name: &str) {
        let status = http(self.port, &format!("PUT /{name} HTTP/1.1\r\n"));
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }

    /// The environment that points object_store at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Azurite blob server on a free loopback port, its data in a temp folder.
pub struct Azurite {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
}

/// Azurite's well-known development account and key.
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    pub fn start() -> Azurite {
        let port = free_port();
        let data = tempfile::tempdir().unwrap();
        let args = [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            data.path().to_str().unwrap(),
            "--silent",
            "--skipApiVersionCheck",
        ];
        let child = start_server("azurite-blob", &args, port);
        Azurite {
            child,
            port,
            _data: data,
        }
    }

    /// Creates a container: object_store cannot, so the request is signed
    /// here with the development account's shared key.
    pub fn create_container(&self, name: &str) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{name}\nrestype:container"
        );
        let sig = b64.encode(hmac_sha256(
            &b64.decode(AZ_KEY).unwrap(),
            to_sign.as_bytes(),
        ));
        let status = http(
            self.port,
            &format!(
                "PUT /{AZ_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {AZ_ACCOUNT}:{sig}\r\n"
            ),
        );
        assert!(status.starts_with("HTTP/1.1 201"), "{status}");
    }

    /// The environment that points object_store at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AZURE_ALLOW_HTTP".into(), "true".into()),
        ]
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HMAC-SHA256 (RFC 2104), for Azure's shared-key signature.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}
