//! `cargo xtask bench --suites overwrite`: a restore over a tree that is
//! already there, as carrying one machine's files onto another's is.
//! tree-small-10pct (10,000 files) is snapshot and restored once; then it
//! is restored again over itself, and again after 1% of its files (every
//! hundredth) got other bytes of the same size: snap-restore with
//! `--overwrite` (its undo snapshot of what it replaces taken first) and
//! with `--no-undo`, against `rsync -a --checksum` from the snapshot's tree
//! (with `--backup --backup-dir`, rsync's own keeping of what it replaces).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::args::Args;
use super::kit::{bin, corpus, discard, fresh_dir, measure, median, quiet};
use crate::sh::Result;

/// Every regular file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut all = super::diff::files(dir);
    all.retain(|f| fs::symlink_metadata(f).is_ok_and(|m| m.is_file()));
    all
}

/// Gives each file other bytes of the same size (each byte inverted).
fn change(files: &[PathBuf]) -> Result {
    for f in files {
        let io = |e: std::io::Error| format!("{}: {e}", f.display());
        let data: Vec<u8> = fs::read(f).map_err(io)?.iter().map(|b| !b).collect();
        fs::write(f, data).map_err(io)?;
    }
    Ok(())
}

fn restore(store: &Path, name: &str, to: &Path, flags: &[&str]) -> Command {
    let mut c = Command::new(bin("snap-restore"));
    c.arg("--store")
        .arg(store)
        .args(["-q", "restore", name, "--to"])
        .arg(to)
        .args(flags);
    c
}

fn rsync(from: &Path, to: &Path, backup: Option<&Path>) -> Command {
    let mut c = Command::new("rsync");
    c.args(["-a", "--checksum"]);
    if let Some(b) = backup {
        c.arg("--backup")
            .arg(format!("--backup-dir={}", b.display()));
    }
    c.arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display()));
    c
}

pub fn run(args: &Args, base: &Path) -> Result {
    let corpus =
        fs::canonicalize(corpus(base, "tree-small-10pct", args)?).map_err(|e| e.to_string())?;
    let store = base.join("targets/overwrite-store");
    let to = base.join("targets/overwrite-to");
    let kept = base.join("targets/overwrite-rsync-backup");
    fresh_dir(&store)?;
    fresh_dir(&to)?;
    eprintln!("xtask: overwrite: tree-small-10pct snapshot and restored once");
    let rec = super::pack::collect(&store, "o", &corpus)?;
    let id = rec["id"].as_str().ok_or("no snapshot id")?.to_string();
    let name = format!("o/{id}");
    let inside = corpus.strip_prefix("/").map_err(|e| e.to_string())?;
    let tree = store.join("sets/o").join(&id).join(inside);
    let restored = to.join(inside);
    quiet(&mut restore(&store, &name, &to, &[]))?;
    let changed: Vec<PathBuf> = files(&restored).into_iter().step_by(100).collect();
    let (mut again, mut again_rsync) = (Vec::new(), Vec::new());
    let (mut undo, mut no_undo, mut with_backup) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs.max(3) {
        again.push(measure(&mut restore(&store, &name, &to, &[]))?.0);
        again_rsync.push(measure(&mut rsync(&tree, &restored, None))?.0);
        change(&changed)?;
        undo.push(measure(&mut restore(&store, &name, &to, &["--overwrite"]))?.0);
        change(&changed)?;
        let flags = ["--overwrite", "--no-undo"];
        no_undo.push(measure(&mut restore(&store, &name, &to, &flags))?.0);
        change(&changed)?;
        fresh_dir(&kept)?;
        with_backup.push(measure(&mut rsync(&tree, &restored, Some(&kept)))?.0);
    }
    let undos = fs::read_dir(store.join("sets/pre-restore"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .count()
        })
        .unwrap_or(0);
    discard(&to)?;
    discard(&kept)?;
    discard(&store)?;
    let (a, ar) = (median(&again), median(&again_rsync));
    let (u, n, r) = (median(&undo), median(&no_undo), median(&with_backup));
    let md = format!(
        "### A restore over the same {} files, and over them with 1% changed ({} files)\n\n\
| | snap-restore | rsync -a --checksum | ratio |\n|---|---|---|---|\n\
| restored again, nothing changed | {a:.2} s | {ar:.2} s | {:.2}x |\n\
| 1% changed: `--overwrite`, its undo snapshot first | {u:.2} s | {r:.2} s (`--backup --backup-dir`) | {:.2}x |\n\
| 1% changed: `--overwrite --no-undo` | {n:.2} s | {r:.2} s (`--backup --backup-dir`) | {:.2}x |\n\n\
No goal yet. snap-restore checks every file already there against its sha256 (rsync's \
`--checksum` uses xxh128) and leaves it unwritten when it matches; with `--overwrite` it first \
reads the target as the preview does to find what the undo snapshot keeps ({undos} undo \
snapshots were taken, one per run with `--overwrite`).\n",
        args.small_files / 10,
        changed.len(),
        a / ar,
        u / r,
        n / r,
    );
    println!("{md}");
    if !args.no_write {
        super::kit::write_doc(
            "benchmarks-overwrite.md",
            "Benchmarks: restoring over a tree",
            again.len(),
            "",
            "tree-small-10pct, snapshot by snap-collect into a store of its own and restored once \
(untimed); each timed run restores it again over itself, then changes 1% of its files (each \
byte inverted, same size) before each of the three timed restores of them.",
            &md,
        )?;
    }
    Ok(())
}
