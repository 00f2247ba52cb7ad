//! Test support for snap-push: a world with one packed archive; the servers are snap-testkit's.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use assert_cmd::Command;
use serde_json::Value;

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

/// What the push tests do in the shared test world: one packed archive, pushed.
pub trait PushWorld {
    /// A tree with a `size`-byte incompressible file and two small ones,
    /// collected as set `s` and packed into the store.
    fn with_archive(size: usize) -> World;

    /// Collects `src` as set `s` and packs the new snapshot into the store.
    fn collect_and_pack(&self);

    /// Waits until a push in the background has journaled `n` parts.
    fn wait_for_parts(&self, n: usize);

    /// From `url` alone: the archive is listed, verifies and restores
    /// exactly, and a push with --verify finds it there.
    fn check_from(&self, url: &str, env: &[(String, String)]);

    fn config(&self, text: &str);

    fn cmd(&self, name: &str) -> Command;

    /// snap-push with the world's store and ARGS. Without `--min-free` in
    /// ARGS it gets `--min-free 0`: a test's folder destination sits on
    /// whatever disk the host has, and the floor is tested by its own tests.
    fn push_cmd(&self, args: &[&str]) -> Command;

    /// A push running in the background (to be killed), output discarded.
    fn spawn_push(&self, args: &[&str], env: &[(String, String)]) -> Child;

    /// A push running in the background whose stdout and stderr are kept.
    fn spawn_push_logged(&self, args: &[&str], env: &[(String, String)]) -> Child;

    fn spawn_push_to(&self, args: &[&str], env: &[(String, String)], out: fn() -> Stdio) -> Child;

    fn push(&self, args: &[&str]) -> Output;

    fn push_env(&self, args: &[&str], env: &[(String, String)]) -> Output;

    fn restore(&self, args: &[&str]) -> Output;

    fn restore_env(&self, args: &[&str], env: &[(String, String)]) -> Output;

    fn archive_json(&self) -> PathBuf;

    fn archive_record(&self) -> Value;

    fn archive_id(&self) -> String;

    fn archive_size(&self) -> u64;

    fn archive_data(&self) -> PathBuf;

    /// Flips one byte of a file, keeping its size.
    fn flip_byte(&self, path: &Path, at: u64);

    /// The tree restored under `root` has the source's files, byte for byte.
    fn assert_restored(&self, root: &str);
}

impl PushWorld for World {
    fn with_archive(size: usize) -> World {
        let w = World::new();
        fs::create_dir_all(w.path("src/docs")).unwrap();
        fs::write(w.path("src/big.bin"), noise(size)).unwrap();
        fs::write(w.path("src/a.txt"), "alpha\n").unwrap();
        fs::write(w.path("src/docs/b.txt"), "b".repeat(10_000)).unwrap();
        w.collect_and_pack();
        w
    }

    fn collect_and_pack(&self) {
        for (tool, args) in [
            (
                "snap-collect",
                &[
                    "--store",
                    "store",
                    "--min-free",
                    "0",
                    "--name",
                    "s",
                    "src",
                    "-q",
                ][..],
            ),
            (
                "snap-pack",
                &[
                    "--store",
                    "store",
                    "--min-free",
                    "0",
                    "-q",
                    "--snapshot",
                    "s/latest",
                ][..],
            ),
        ] {
            let out = self.cmd(tool).args(args).output().unwrap();
            assert_eq!(code(&out), 0, "{tool}: {}", stderr(&out));
        }
    }

    fn wait_for_parts(&self, n: usize) {
        let state = self.path("home/.local/state/snap/push");
        let start = std::time::Instant::now();
        while !journal_has_parts(&state, n) {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the push never sent a part"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn check_from(&self, url: &str, env: &[(String, String)]) {
        let listed = self.restore_env(&["list", url, "--json"], env);
        assert_eq!(code(&listed), 0, "{}", stderr(&listed));
        assert_eq!(records(&listed)[0]["id"], self.archive_id());
        let verified = self.restore_env(&["--from", url, "verify", "s/latest"], env);
        assert_eq!(code(&verified), 0, "{}", stderr(&verified));
        let restored = self.restore_env(&["--from", url, "restore", "s/latest", "--to", "r"], env);
        assert_eq!(code(&restored), 0, "{}", stderr(&restored));
        self.assert_restored("r");
        let again = self.push_env(&["--all", "--dest", url, "--verify"], env);
        assert_eq!(code(&again), 0, "{}", stderr(&again));
        assert_eq!(records(&again)[0]["skipped"], true);
    }

    fn config(&self, text: &str) {
        self.write("config.json", text);
    }

    fn cmd(&self, name: &str) -> Command {
        Command::from_std(self.tool(name))
    }

    fn push_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd("snap-push");
        c.args(["--store", "store"]).args(args).args(no_floor(args));
        c
    }

    fn spawn_push(&self, args: &[&str], env: &[(String, String)]) -> Child {
        self.spawn_push_to(args, env, Stdio::null)
    }

    fn spawn_push_logged(&self, args: &[&str], env: &[(String, String)]) -> Child {
        self.spawn_push_to(args, env, Stdio::piped)
    }

    fn spawn_push_to(&self, args: &[&str], env: &[(String, String)], out: fn() -> Stdio) -> Child {
        self.tool("snap-push")
            .envs(env.iter().cloned())
            .args(["--store", "store"])
            .args(args)
            .args(no_floor(args))
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap()
    }

    fn push(&self, args: &[&str]) -> Output {
        self.push_cmd(args).output().unwrap()
    }

    fn push_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        self.push_cmd(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    }

    fn restore(&self, args: &[&str]) -> Output {
        self.restore_env(args, &[])
    }

    fn restore_env(&self, args: &[&str], env: &[(String, String)]) -> Output {
        self.cmd("snap-restore")
            .args(["--store", "store", "-q"])
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    }

    fn archive_json(&self) -> PathBuf {
        let dir = self.path("store/archives/s");
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "json"))
            .expect("one archive record")
    }

    fn archive_record(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.archive_json()).unwrap()).unwrap()
    }

    fn archive_id(&self) -> String {
        self.archive_record()["id"].as_str().unwrap().to_string()
    }

    fn archive_size(&self) -> u64 {
        self.archive_record()["bytes"].as_u64().unwrap()
    }

    fn archive_data(&self) -> PathBuf {
        PathBuf::from(self.archive_record()["path"].as_str().unwrap())
    }

    fn flip_byte(&self, path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0xff;
        fs::write(path, bytes).unwrap();
    }

    fn assert_restored(&self, root: &str) {
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

/// `--min-free 0` unless ARGS name a floor themselves (see [`World::push_cmd`]).
fn no_floor(args: &[&str]) -> &'static [&'static str] {
    if args.contains(&"--min-free") {
        &[]
    } else {
        &["--min-free", "0"]
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

/// The output of a child, killing it if it runs longer than `limit`.
pub fn wait_at_most(child: Child, limit: std::time::Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    watchdog.join().unwrap();
    out
}

/// A small tmpfs mounted over a folder (a full disk on demand), unmounted
/// when dropped. Needs root, as CI has.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[allow(unused_imports)]
pub use snap_testkit::{Azurite, FakeGcs, Moto, Sshd, World, code, records, stderr};
