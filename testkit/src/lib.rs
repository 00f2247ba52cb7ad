//! Test support for the CLI tests of the tools that talk to buckets
//! (snap-push, snap-prune): moto (S3), Azurite (Azure blobs) and
//! fake-gcs-server (GCS), and OpenSSH's sshd (SFTP), each on a
//! free loopback port, stopped when dropped (`cargo xtask test` installs
//! both; a test that cannot start one panics saying so), and readers of a
//! finished tool's exit code, stderr and records.

pub mod libvirt;
pub mod net;
pub mod output;
pub mod qemu;
pub mod serve;
pub mod sshd;
pub mod tarcraft;
pub mod timeline;
pub mod vhdx;
pub mod vm;
pub mod world;

pub use net::free_port;
pub use output::{code, records, stderr};
pub use sshd::Sshd;
pub use world::World;

/// `len` bytes of xorshift noise from `seed`: content that does not
/// compress, the same on every run.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Makes an age identity file at `path` (age-keygen); returns its recipient.
pub fn age_keygen(path: &std::path::Path) -> String {
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen (cargo xtask test installs age)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key in a comment")
        .to_string()
}

/// Signs the record at `json` again (`ID.json.sig`) with the key snap-pack
/// made under `home`, by `ssh-keygen -Y sign`: for tests that change a
/// record on purpose to make what a machine with a bug could have written.
pub fn sign_again(json: &std::path::Path, home: &std::path::Path) {
    let mut sig = json.as_os_str().to_owned();
    sig.push(".sig");
    let _ = std::fs::remove_file(&sig);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", "snap-record", "-f"])
        .arg(home.join(".config/snap/signing_key"))
        .arg(json)
        .output()
        .expect("ssh-keygen (cargo xtask test installs openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

    /// Uploads one object (moto accepts an unsigned request).
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            data.len()
        )
        .unwrap();
        s.write_all(data).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
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

/// What a [`FaultProxy`] does to the requests it matches.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `PUT`, `GET`, `POST`, `DELETE`, `HEAD`.
    pub method: &'static str,
    /// Part of the request's path and query that must be there.
    pub contains: &'static str,
    /// A request header (lower case) that must be there, if any.
    pub header: Option<&'static str>,
    /// The answer instead of the server's, or `None` to pass it on late.
    pub status: Option<u16>,
    /// How long to hold the request first.
    pub delay: Duration,
    /// How many matching requests it applies to.
    pub times: usize,
    /// A request header (lower case) to drop before passing the request on,
    /// as a service that ignores it would (with `status: None`).
    pub drop_header: Option<&'static str>,
    /// Pass the request on first, then answer `status` instead of what the
    /// server said: the request landed and its answer was lost on the way.
    pub answer_lost: bool,
}

/// An HTTP proxy in front of a test server that answers chosen requests
/// itself (409, 412, 500…) or holds them (slow listings), and passes the
/// rest on, one connection a request. Counts what it did.
pub struct FaultProxy {
    pub port: u16,
    pub injected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes the server sent back through the proxy (heads and bodies).
    pub sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    pub fn start(upstream: u16, faults: Vec<Fault>) -> FaultProxy {
        use std::sync::{Arc, Mutex, atomic::AtomicUsize};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Mutex::new(faults));
        let injected = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (count, bytes) = (injected.clone(), sent.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (faults, count, bytes) = (faults.clone(), count.clone(), bytes.clone());
                std::thread::spawn(move || {
                    let _ = relay(conn, upstream, &faults, &count, &bytes);
                });
            }
        });
        FaultProxy {
            port,
            injected,
            sent,
        }
    }
}

/// A request's head as passed on, without `dropped` and asking the server
/// to close the connection after its answer.
fn forwarded(request_line: &str, headers: &[(String, String)], dropped: Option<&str>) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for (k, v) in headers {
        if k != "connection" && Some(k.as_str()) != dropped {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str("connection: close\r\n\r\n");
    out.into_bytes()
}

/// One request: read it, answer it or pass it on, then close.
fn relay(
    mut client: TcpStream,
    upstream: u16,
    faults: &std::sync::Mutex<Vec<Fault>>,
    count: &std::sync::atomic::AtomicUsize,
    sent: &std::sync::atomic::AtomicU64,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    client.read_exact(&mut body)?;
    let (method, target) = request_line.split_once(' ').unwrap_or(("", ""));
    let chosen = {
        let mut faults = faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| {
                f.times > 0
                    && f.method == method
                    && target.contains(f.contains)
                    && f.header.is_none_or(|h| headers.iter().any(|(k, _)| k == h))
            })
            .map(|f| {
                f.times -= 1;
                f.clone()
            })
    };
    if let Some(f) = &chosen {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(f.delay);
        if f.answer_lost {
            let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
            server.write_all(&forwarded(&request_line, &headers, None))?;
            server.write_all(&body)?;
            std::io::copy(&mut server, &mut std::io::sink())?;
        }
        if let Some(status) = f.status {
            let body = format!(
                "<Error><Code>Injected{status}</Code><Message>injected by the test</Message></Error>"
            );
            write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    let dropped = chosen.as_ref().and_then(|f| f.drop_header);
    server.write_all(&forwarded(&request_line, &headers, dropped))?;
    server.write_all(&body)?;
    // Counted before the client has the bytes, so a count read after the
    // client is done includes them all.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = server.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        sent.fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
        client.write_all(&buf[..n])?;
    }
}
