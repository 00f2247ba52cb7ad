//! The snap of an earlier commit, built once beside the bench, so that a
//! change's cost is measured against what it replaced in the same run
//! (`--baseline REF`; the coordination rows of the push and prune suites).
//!
//! The commit is checked out with `git worktree` under `target/bench/` and
//! built in release mode into its own target folder; a stamp file names the
//! commit built, so later runs reuse it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{Result, cargo, exec, root};

/// The last commit before snap-push and snap-prune took locks at the
/// destination (docs/destinations.md, "Many machines, one destination").
pub const BEFORE_LOCKS: &str = "b1c1d05";

/// The last commit before snap kept extended attributes, ACLs and owner
/// names (issue 33): the collect suite's `snap-before` rows.
pub const BEFORE_ATTRIBUTES: &str = "258907d";

/// The folder holding the release binaries of `reference`, built if need be.
pub fn bin_dir(base: &Path, reference: &str) -> Result<PathBuf> {
    bin_dir_in(base, reference, "baseline")
}

/// The same in a slot of its own (`SLOT-src`, `SLOT-target`), for a suite
/// that compares with another commit than `--baseline`, so that neither
/// rebuilds the other's.
pub fn bin_dir_in(base: &Path, reference: &str, slot: &str) -> Result<PathBuf> {
    let commit = rev_parse(reference)?;
    let src = base.join(format!("{slot}-src"));
    let target = base.join(format!("{slot}-target"));
    let stamp = target.join("built-from");
    let bins = target.join("release");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == commit) {
        return Ok(bins);
    }
    checkout(&src, &commit)?;
    exec(
        cargo()
            .args(["build", "--release", "--bins", "--target-dir"])
            .arg(&target)
            .arg("--manifest-path")
            .arg(src.join("Cargo.toml")),
    )?;
    std::fs::write(&stamp, format!("{commit}\n")).map_err(|e| e.to_string())?;
    Ok(bins)
}

/// A fresh work tree of `commit` at `src` (`git worktree`, replacing one there).
pub fn checkout(src: &Path, commit: &str) -> Result {
    // A work tree whose folder was removed by hand stays registered until pruned.
    exec(Command::new("git").args(["worktree", "prune"]))?;
    if src.exists() {
        exec(
            Command::new("git")
                .args(["worktree", "remove", "--force"])
                .arg(src),
        )?;
    }
    exec(
        Command::new("git")
            .args(["worktree", "add", "--detach"])
            .arg(src)
            .arg(commit),
    )
}

fn rev_parse(reference: &str) -> Result<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", &format!("{reference}^{{commit}}")])
        .current_dir(root())
        .output()
        .map_err(|e| format!("git rev-parse: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "--baseline {reference}: not a commit of this repository"
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
