//! End-to-end tests live in `tests/`; this crate hosts them and the one
//! world they share: the built binaries, a scratch folder with a source tree
//! and a store, and readers of a finished run.

use std::fs;

use std::path::Path;
use std::process::{Command, Output};

pub use snap_testkit::{code, records, stderr};

pub use snap_testkit::world::{World, bin_dir, set_mtime, workspace};

/// The pipeline the end-to-end tests run in a world: `src/` collected as the
/// ad-hoc set `s` into `store/`, packed, restored.
pub trait Pipeline {
    /// `snap-collect` of `src/` as the ad-hoc set `s` into `store/`.
    fn collect(&self, extra: &[&str]) -> Output;
    /// Like [`Pipeline::collect`], and it must exit 0.
    fn collect_ok(&self, extra: &[&str]) -> serde_json::Value;
    /// `snap-pack` of the set's latest snapshot into the store's archives.
    fn pack(&self, extra: &[&str]) -> Output;
    /// `snap-restore --store store ARGS`.
    fn restore(&self, args: &[&str]) -> Output;
}

impl Pipeline for World {
    fn collect(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--store", "store", "--min-free", "0", "--name", "s"];
        args.extend_from_slice(extra);
        args.push("src");
        self.run("snap-collect", &args)
    }

    fn collect_ok(&self, extra: &[&str]) -> serde_json::Value {
        let out = self.collect(extra);
        ok(&out);
        records(&out).pop().expect("a snapshot record")
    }

    fn pack(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--store", "store", "--min-free", "0", "--latest"];
        args.extend_from_slice(extra);
        self.run("snap-pack", &args)
    }

    fn restore(&self, args: &[&str]) -> Output {
        let mut all = vec!["--store", "store"];
        all.extend_from_slice(args);
        self.run("snap-restore", &all)
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
