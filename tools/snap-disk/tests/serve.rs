//! `snap-disk serve`: a blocks snapshot as a read-only NBD export, checked
//! with QEMU's own client (`qemu-img compare`, a qcow2 overlay booted on
//! it), from the store and from moto S3, and a cache that survives kill -9
//! and a torn file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snap_testkit::qemu::send_signal;
use snap_testkit::{Moto, World, code, stderr};

const MIB: u64 = 1 << 20;

/// What these tests do in the shared test world.
trait DiskWorld {
    /// snap-disk with the world's store.
    fn cmd(&self) -> Command;

    /// A raw image with a few MiB of patterns and holes, snapshotted as vm/s.
    fn snapshot(&self) -> PathBuf;

    /// Starts `snap-disk serve vm s` with `extra`, and waits for its socket.
    fn serve(&self, socket: &Path, extra: &[&str], env: &[(String, String)]) -> Child;
}

impl DiskWorld for World {
    fn cmd(&self) -> Command {
        let mut c = self.tool("snap-disk");
        c.env("SNAP_STORE", self.path("store"))
            .env("HOME", self.root());
        c
    }

    fn snapshot(&self) -> PathBuf {
        let img = self.path("vm.raw");
        let f = fs::File::create(&img).unwrap();
        f.set_len(64 * MIB).unwrap();
        for (at, byte) in [(0u64, 1u8), (5, 2), (6, 3), (40, 4), (63, 5)] {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&vec![byte; MIB as usize], at * MIB).unwrap();
        }
        let out = self
            .cmd()
            .args(["create"])
            .arg(&img)
            .arg("s")
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        img
    }

    fn serve(&self, socket: &Path, extra: &[&str], env: &[(String, String)]) -> Child {
        let child = self
            .cmd()
            .args(["serve", "vm", "s", "--socket"])
            .arg(socket)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "serve did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }
}

fn url(socket: &Path) -> String {
    format!("nbd+unix:///vm?socket={}", socket.display())
}

/// `qemu-img compare` of the image with the export.
fn compare(image: &Path, socket: &Path) -> std::process::Output {
    Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(image)
        .arg(url(socket))
        .output()
        .expect("qemu-img (cargo xtask test installs it)")
}

/// Served from the store, the export is the snapshot byte for byte; a VM's
/// overlay on it reads it and writes only into the overlay; SIGTERM stops
/// the server, exit 0, socket gone.
#[test]
fn serves_a_snapshot_from_the_store() {
    let w = World::new();
    let img = w.snapshot();
    let sock = w.path("s.nbd");
    let mut server = w.serve(&sock, &[], &[]);
    let cmp = compare(&img, &sock);
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
    let overlay = w.path("boot.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(url(&sock))
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let io = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "read -P 4 40M 1M",
            "-c",
            "write -P 9 40M 4k",
        ])
        .args(["-c", "read -P 9 40M 4k"])
        .arg(&overlay)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&io.stdout);
    assert!(io.status.success() && !said.contains("fail"), "{said}");
    let cmp = compare(&img, &sock);
    assert!(
        cmp.status.success(),
        "the overlay's write reached the export"
    );
    send_signal(server.id(), "TERM");
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists());
}

/// Uploads the store's files of disk vm to a bucket laid out as a destination.
fn upload(moto: &Moto, store: &Path, bucket: &str, prefix: &str) {
    let root = store.join("disks/vm");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                let rel = p.strip_prefix(&root).unwrap().display().to_string();
                moto.put(
                    bucket,
                    &format!("{prefix}/disks/vm/{rel}"),
                    &fs::read(&p).unwrap(),
                );
            }
        }
    }
}

/// Served from S3, blocks are fetched as read and kept in the cache; a
/// server killed mid-read, with a torn file in its cache, is replaced by
/// one that serves the same bytes.
#[test]
fn serves_from_a_bucket_through_a_cache_that_survives_kill_9() {
    let w = World::new();
    let img = w.snapshot();
    let moto = Moto::start();
    moto.create_bucket("served");
    upload(&moto, &w.path("store"), "served", "pre");
    let cache = w.path("cache");
    let from = [
        "--from",
        "s3://served/pre",
        "--cache",
        cache.to_str().unwrap(),
    ];
    let sock = w.path("s.nbd");
    let mut server = w.serve(&sock, &from, &moto.env());
    let reader = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&img)
        .arg(url(&sock))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let blocks_in = |dir: &Path| {
        fs::read_dir(dir).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
            })
            .count()
        })
    };
    while blocks_in(&cache) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing was cached"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = reader.wait_with_output();
    let _ = fs::remove_file(&sock);
    let cached: Vec<PathBuf> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(!cached.is_empty());
    // What a server killed mid-write leaves: its temporary file (a dead pid).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::write(
        cache.join(format!(".{}.tmp.{dead}", "ab".repeat(32))),
        b"half",
    )
    .unwrap();
    // A torn block, as a power cut could leave one.
    let torn = &cached[0];
    let len = fs::metadata(torn).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(torn)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let server = w.serve(&sock, &from, &moto.env());
    let cmp = compare(&img, &sock);
    send_signal(server.id(), "TERM");
    let out = server.wait_with_output().unwrap();
    assert!(
        cmp.status.success(),
        "{}{}",
        String::from_utf8_lossy(&cmp.stdout),
        stderr(&out)
    );
    assert_eq!(code(&out), 0);
    let names: Vec<String> = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let blocks = names.iter().filter(|n| n.len() == 64).count();
    assert_eq!(
        blocks, 5,
        "every data block is cached once, the torn one fetched again: {names:?}"
    );
    assert_eq!(
        names.len(),
        5,
        "a dead server's temporary file stayed: {names:?}"
    );
}
