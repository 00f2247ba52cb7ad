//! The one test world every CLI test shares: a scratch folder (its own HOME,
//! a `src/` to back up, room for a store), the built tools run in it with a
//! clean environment, and its paths redacted out of what they print. Each
//! test file adds what only its tool needs (an extension trait, or plain
//! functions over `&World`); readers of a finished run are the `output` module's
//! `code`, `stderr` and `records`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

/// A scratch world: `src/` to back up, `home/` as HOME, the rest the test's.
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

    /// The world's folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `path` as a string, for arguments.
    pub fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// Where a file of the world is inside a snapshot: snapshots keep each
    /// source's absolute path (`tmp/.tmpX/src/a.txt`).
    pub fn inside(&self, rel: &str) -> String {
        let abs = fs::canonicalize(self.dir.path()).unwrap().join(rel);
        abs.strip_prefix("/")
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Writes a file (and its folders), now.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    /// Writes a file dated 2020, so that a later collect trusts its metadata
    /// (files written in the second before a run are read again).
    pub fn write_dated(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.write(rel, content);
        set_mtime(&p, 1_600_000_000);
        p
    }

    /// A tool (a built `snap-*`, or any program on PATH), run in the world
    /// with a clean environment: PATH, HOME and TZ=UTC, no stdin.
    pub fn tool(&self, name: &str) -> Command {
        let program = match name.starts_with("snap-") {
            true => bin_dir().join(name),
            false => PathBuf::from(name),
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

    /// Runs a tool with `args`; never fails by itself.
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.tool(name).args(args).output().unwrap()
    }

    /// Runs a tool that must exit 0, and returns its records.
    pub fn ok(&self, name: &str, args: &[&str]) -> Vec<serde_json::Value> {
        let out = self.run(name, args);
        assert_eq!(
            crate::output::code(&out),
            0,
            "{name} {args:?}:\n{}",
            crate::output::stderr(&out)
        );
        crate::output::records(&out)
    }

    /// Runs a tool with `input` on stdin.
    pub fn pipe(&self, name: &str, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .tool(name)
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

    /// Runs a tool under a clock moved by `offset` (faketime's `-1d`, `+365d`).
    pub fn run_at(&self, offset: &str, name: &str, args: &[&str]) -> Output {
        let mut faked = self.tool("faketime");
        faked
            .arg("-f")
            .arg(offset)
            .arg(bin_dir().join(name))
            .args(args);
        faked
            .output()
            .expect("faketime (cargo xtask test installs it)")
    }

    /// Output with the world's path shown as `[TMP]`.
    pub fn redact(&self, s: &[u8]) -> String {
        let real = fs::canonicalize(self.dir.path()).unwrap();
        String::from_utf8_lossy(s)
            .replace(&real.display().to_string(), "[TMP]")
            .replace(&self.dir.path().display().to_string(), "[TMP]")
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is in the workspace")
        .to_path_buf()
}

/// The debug binaries, built once per test process (so a plain `cargo test
/// -p TOOL` never runs the other tools stale); `SNAP_E2E_BIN=DIR` runs the
/// tests against the tools in DIR instead (an older build, to see a new test
/// fail on it).
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

/// Sets a file's mtime (seconds since the epoch).
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
