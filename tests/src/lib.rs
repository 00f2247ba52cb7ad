//! End-to-end tests live in `tests/`; this crate hosts them and the one
//! world they share: the built binaries, a scratch folder with a source tree
//! and a store, and readers of a finished run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

pub use snap_testkit::{code, records, stderr};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The debug binaries, built once if a plain `cargo test -p snap-e2e` left
/// them stale; `SNAP_E2E_BIN=DIR` runs the tests against the tools in DIR
/// instead (an older build, to see a new test fail on it).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SNAP_E2E_BIN") {
        return PathBuf::from(dir);
    }
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--bins"])
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("debug")
}

/// A scratch world: `src/` to back up, `store/` to keep it, a HOME of its own.
pub struct World {
    dir: tempfile::TempDir,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        fs::create_dir_all(dir.path().join("src")).unwrap();
        World { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Where a file of the world is inside a snapshot: snapshots keep each
    /// source's absolute path (`tmp/.tmpX/src/a.txt`).
    pub fn inside(&self, rel: &str) -> String {
        let abs = self.path(rel);
        abs.strip_prefix("/")
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Writes a file (and its folders), dated 2020 so that a later collect
    /// trusts its metadata (files written in the second before a run are
    /// copied again).
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        set_mtime(&p, 1_600_000_000);
        p
    }

    /// A tool of the built ones, run in the world with a clean environment.
    pub fn cmd(&self, tool: &str) -> Command {
        let program = match tool.starts_with("snap-") {
            true => bin_dir().join(tool),
            false => PathBuf::from(tool),
        };
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("TZ", "UTC")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// Runs a tool under a clock moved by `offset` (faketime's `-1d`, `+365d`).
    pub fn run_at(&self, offset: &str, tool: &str, args: &[&str]) -> Output {
        let mut faked = self.cmd("faketime");
        faked
            .arg("-f")
            .arg(offset)
            .arg(bin_dir().join(tool))
            .args(args);
        faked
            .output()
            .expect("faketime (cargo xtask test installs it)")
    }

    /// Runs a tool with `args`; never fails by itself.
    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        self.cmd(tool).args(args).output().unwrap()
    }

    /// Runs a tool with `input` on stdin.
    pub fn pipe(&self, tool: &str, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cmd(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out
    }

    /// `snap-collect` of `src/` as the ad-hoc set `s` into `store/`.
    pub fn collect(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--store", "store", "--min-free", "0", "--name", "s"];
        args.extend_from_slice(extra);
        args.push("src");
        self.run("snap-collect", &args)
    }

    /// Like [`World::collect`], and it must exit 0.
    pub fn collect_ok(&self, extra: &[&str]) -> serde_json::Value {
        let out = self.collect(extra);
        ok(&out);
        records(&out).pop().expect("a snapshot record")
    }

    /// `snap-pack` of the set's latest snapshot into the store's archives.
    pub fn pack(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--store", "store", "--min-free", "0", "--latest"];
        args.extend_from_slice(extra);
        self.run("snap-pack", &args)
    }

    /// `snap-restore --store store ARGS`.
    pub fn restore(&self, args: &[&str]) -> Output {
        let mut all = vec!["--store", "store"];
        all.extend_from_slice(args);
        self.run("snap-restore", &all)
    }

    /// Output with the world's path shown as `[TMP]`.
    pub fn redact(&self, s: &[u8]) -> String {
        let real = fs::canonicalize(self.dir.path()).unwrap();
        String::from_utf8_lossy(s)
            .replace(&real.display().to_string(), "[TMP]")
            .replace(&self.dir.path().display().to_string(), "[TMP]")
    }
}

/// What rsync, the oracle of equal trees, would change to make `to` equal
/// `from` (`rsync -aHAX --checksum --itemize-changes --dry-run --delete`):
/// one line per differing entry, empty when the trees are equal. The two
/// top folders themselves are not compared (a snapshot's is the store's).
pub fn rsync_changes(from: &Path, to: &Path) -> String {
    let out = Command::new("rsync")
        .args([
            "-aHAX",
            "--checksum",
            "--itemize-changes",
            "--dry-run",
            "--delete",
        ])
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()))
        .output()
        .expect("rsync (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "rsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with(" ./"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Sets a file's mtime (seconds since the epoch), not following symlinks.
pub fn set_mtime(p: &Path, secs: u64) {
    let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(p)
        .or_else(|_| fs::File::open(p))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

/// Fails the test, with stderr, unless the run exited 0.
pub fn ok(out: &Output) {
    assert_eq!(code(out), 0, "stderr:\n{}", stderr(out));
}

/// Flips one bit of a file in place, keeping its size and mtime (bit rot).
pub fn flip_byte(p: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let meta = fs::symlink_metadata(p).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, at).unwrap();
    f.set_modified(meta.modified().unwrap()).unwrap();
}
