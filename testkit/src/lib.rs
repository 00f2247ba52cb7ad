//! Test support for the CLI tests of the tools that talk to buckets
//! (snap-push, snap-prune): moto (S3), Azurite (Azure blobs) and
//! fake-gcs-server (GCS), each on a
//! free loopback port, stopped when dropped (`cargo xtask test` installs
//! both; a test that cannot start one panics saying so), and readers of a
//! finished tool's exit code, stderr and records.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// The exit code (-1 when a signal ended the process).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The JSON records on stdout, one a line; a line that is not JSON fails the test, naming it.
pub fn records(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
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

/// A loopback port nobody listens on.
pub fn free_port() -> u16 {
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

/// fake-gcs-server (GCS) on a free loopback port, in memory, stopped when
/// dropped. Its XML API (the one object_store speaks) answers listings,
/// reads and deletes, but not uploads: objects are put in through its JSON
/// API ([`FakeGcs::upload`]); docs/destinations.md says what stays untested.
pub struct FakeGcs {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl FakeGcs {
    pub fn start() -> FakeGcs {
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let args = [
            "-backend",
            "memory",
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-public-host",
            &host,
            "-log-level",
            "error",
        ];
        let child = start_server("fake-gcs-server", &args, port);
        let dir = tempfile::tempdir().unwrap();
        let account = serde_json::json!({"gcs_base_url": format!("http://{host}"),
            "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""});
        std::fs::write(dir.path().join("account.json"), account.to_string()).unwrap();
        FakeGcs { child, port, dir }
    }

    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let status = http_with(
            self.port,
            "POST /storage/v1/b HTTP/1.1\r\nContent-Type: application/json\r\n",
            body.as_bytes(),
        );
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }

    /// Puts an object through the JSON API's media upload.
    pub fn upload(&self, bucket: &str, key: &str, data: &[u8]) {
        let head = format!(
            "POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name={} HTTP/1.1\r\nContent-Type: application/octet-stream\r\n",
            key.replace('/', "%2F")
        );
        let status = http_with(self.port, &head, data);
        assert!(status.starts_with("HTTP/1.1 200"), "{key}: {status}");
    }

    /// The environment that points object_store at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "GOOGLE_SERVICE_ACCOUNT".into(),
            self.dir.path().join("account.json").display().to_string(),
        )]
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one HTTP/1.1 request with a body; returns the reply's status line.
fn http_with(port: u16, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{head}Host: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply.lines().next().unwrap_or("").to_string()
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
