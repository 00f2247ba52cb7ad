//! `cargo xtask bench --suites pack`: snap-pack, snap-restore restore and
//! snap-restore verify against the pipelines people use, side by side in one
//! run, on the collect suite's corpora (tree-small, tree-large).
//!
//! Each corpus is collected once (untimed); every tool then works on the same
//! snapshot tree. Anchors:
//! - pack: `tar -cf - TREE | zstd -T0 -3 > a.tar.zst && sha256sum a.tar.zst`
//! - restore: `zstd -dc a.tar.zst | tar -xf -` (and the same with a final
//!   `sync`, since snap-restore ends with a `syncfs`), and `restic restore`
//!   and `rustic restore` of the same tree (backed up untimed)
//! - verify: the single-core limit, measured piece by piece: `zstd -dc` of the
//!   archive to /dev/null + `openssl dgst -sha256` of the archive and of the tar (OpenSSL uses the SHA extensions; coreutils sha256sum here does not)
//!   (snap's verify must do all three: decode, the archive checksum, every file)
//!
//! Tools take turns in a rotating order, each step starts after `sync` with a
//! warm tree, outputs are moved to a trash emptied at the end (mass deletes
//! slow down the next timed step on this disk). Results go to docs/benchmarks-pack.md.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::args::Args;
use super::kit::{
    RESTIC_LIKE, Table, bin, corpus, discard, empty_trash, measure, quiet, repo_cmd, repo_restore,
    warm,
};
use crate::sh::Result;

/// The last commit before snap-pack checked every file's bytes against the
/// index's sha256 (issue 31); its pack is timed beside today's, same run.
const BEFORE_CHECK: &str = "3ad5293";
const BEFORE_CHECK_ROW: &str = "snap before the per-file check (3ad5293)";

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script);
    c
}

fn size_mib(path: &Path) -> f64 {
    fs::metadata(path)
        .map(|m| m.len() as f64 / (1 << 20) as f64)
        .unwrap_or(f64::NAN)
}

/// One snapshot of `tree` as set `set` into `store` (release snap-collect); its record.
pub(crate) fn collect(store: &Path, set: &str, tree: &Path) -> Result<serde_json::Value> {
    collect_all(store, set, &[tree])
}

/// One snapshot of several source folders.
fn collect_all(store: &Path, set: &str, trees: &[&Path]) -> Result<serde_json::Value> {
    let out = Command::new(bin("snap-collect"))
        .args(["--min-free", "0", "-q", "--name", set, "--store"])
        .arg(store)
        .args(trees)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "snap-collect: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Collects the corpus once into its own store; returns (store, snapshot tree).
fn snapshot(base: &Path, name: &str, tree: &Path) -> Result<(PathBuf, PathBuf)> {
    let store = base.join("pack-store").join(name);
    crate::sh::remove_tree(&store)?;
    // With the one-file rows' 1 MiB file, in a source of its own.
    let one = super::seek::one_mib_source(base)?;
    let rec = collect_all(&store, "b", &[tree, &one])?;
    let snap_tree = PathBuf::from(rec["path"].as_str().unwrap_or_default());
    Ok((store, snap_tree))
}

/// Free space a restore round needs (five copies of tree-large, and slack).
const ROUND_ROOM: u64 = 16 << 30;

struct Record<'a> {
    table: &'a mut Table,
    corpus: &'a str,
}

impl Record<'_> {
    fn add(&mut self, step: &str, tool: &str, wall: f64, rss: f64, out_mib: Option<f64>) {
        eprintln!(
            "xtask: {} {step} {tool}: {wall:.2} s, {rss:.0} MiB",
            self.corpus
        );
        super::kit::add_sample(self.table, (self.corpus, step, tool), wall, rss, out_mib);
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_corpus(
    name: &str,
    tree: &Path,
    base: &Path,
    runs: usize,
    scripts: &Path,
    before: &Path,
    table: &mut Table,
) -> Result {
    let (store, snap_tree) = snapshot(base, name, tree)?;
    let targets = base.join("targets");
    fs::create_dir_all(&targets).map_err(|e| e.to_string())?;
    // The same tree backed up (untimed) into a repository of each restic-format tool.
    let repo = |tool: &str| targets.join(format!("pack-{tool}"));
    for tool in RESTIC_LIKE {
        discard(&repo(tool))?;
        quiet(&mut repo_cmd(tool, &repo(tool), &["init"]))?;
        quiet(repo_cmd(tool, &repo(tool), &["backup"]).arg(&snap_tree))?;
    }
    let mut rec = Record {
        table,
        corpus: name,
    };
    let snap_out = targets.join("pack-snap");
    let tar_out = targets.join("pack-tar");
    let mut archive = PathBuf::new();
    for run in 0..runs {
        let tools = [BEFORE_CHECK_ROW, "snap", "tar+zstd"];
        for k in 0..tools.len() {
            let tool = tools[(k + run) % tools.len()];
            warm(&snap_tree)?;
            if tool == "snap" || tool == BEFORE_CHECK_ROW {
                discard(&snap_out)?;
                let program = match tool {
                    "snap" => bin("snap-pack"),
                    _ => before.join("snap-pack"),
                };
                let (w, r) = measure(
                    Command::new(program)
                        .args(["--min-free", "0", "-q", "--snapshot", "b/latest", "--store"])
                        .arg(&store)
                        .arg("--out")
                        .arg(&snap_out),
                )?;
                archive = fs::read_dir(snap_out.join("b"))
                    .map_err(|e| e.to_string())?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
                    .ok_or("snap-pack wrote no archive")?;
                rec.add("1-pack", tool, w, r, Some(size_mib(&archive)));
            } else {
                discard(&tar_out)?;
                fs::create_dir_all(&tar_out).map_err(|e| e.to_string())?;
                let a = tar_out.join("a.tar.zst");
                let script = format!(
                    "tar -cf - -C '{}' . | zstd -q -T0 -3 > '{}' && sha256sum '{}' > '{}.sha256'",
                    snap_tree.display(),
                    a.display(),
                    a.display(),
                    a.display()
                );
                let (w, r) = measure(&mut sh(&script))?;
                rec.add("1-pack", tool, w, r, Some(size_mib(&a)));
            }
        }
    }
    let tar_archive = tar_out.join("a.tar.zst");
    for run in 0..runs {
        // A round writes five trees into the trash: room for the next, between rounds.
        super::kit::make_room(base, ROUND_ROOM);
        let tools = ["snap", "tar+zstd", "tar+zstd+sync", "restic", "rustic"];
        for k in 0..tools.len() {
            let tool = tools[(k + run) % tools.len()];
            let out = targets.join(format!("restore-{tool}"));
            discard(&out)?;
            fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            quiet(&mut sh("sync"))?;
            let mut cmd = match tool {
                "snap" => {
                    let mut c = Command::new(bin("snap-restore"));
                    c.args(["-q", "restore"])
                        .arg(&archive)
                        .arg("--to")
                        .arg(&out);
                    c
                }
                "restic" | "rustic" => repo_restore(tool, &repo(tool), &out),
                _ => {
                    let sync = if tool.ends_with("+sync") {
                        " && sync"
                    } else {
                        ""
                    };
                    sh(&format!(
                        "zstd -dc '{}' | tar -xf - -C '{}'{sync}",
                        tar_archive.display(),
                        out.display()
                    ))
                }
            };
            let (w, r) = measure(&mut cmd)?;
            rec.add("2-restore", tool, w, r, None);
            discard(&out)?;
        }
    }
    // The verify limit, piece by piece, single core, warm cache.
    let plain = targets.join("limit.tar");
    quiet(&mut sh(&format!(
        "zstd -dc '{}' > '{}'",
        archive.display(),
        plain.display()
    )))?;
    for _ in 0..runs {
        quiet(&mut sh(&format!(
            "cat '{}' '{}' > /dev/null",
            archive.display(),
            plain.display()
        )))?;
        let (w, r) = measure(
            Command::new(bin("snap-restore"))
                .args(["-q", "verify"])
                .arg(&archive),
        )?;
        rec.add("3-verify", "snap", w, r, None);
        let (w, r) = measure(
            Command::new("taskset")
                .args(["-c", "0"])
                .arg(bin("snap-restore"))
                .args(["-q", "verify"])
                .arg(&archive),
        )?;
        rec.add("3-verify", "snap on 1 core (taskset)", w, r, None);
        let (d, _) = measure(&mut sh(&format!(
            "zstd -dc '{}' > /dev/null",
            archive.display()
        )))?;
        let (h1, _) = measure(&mut sh(&format!(
            "openssl dgst -sha256 '{}' > /dev/null",
            archive.display()
        )))?;
        let (h2, _) = measure(&mut sh(&format!(
            "openssl dgst -sha256 '{}' > /dev/null",
            plain.display()
        )))?;
        rec.add(
            "3-verify",
            "limit (zstd -d + openssl sha256 x2)",
            d + h1 + h2,
            0.0,
            None,
        );
    }
    discard(&plain)?;
    let one = fs::canonicalize(base.join(super::seek::ONE_MIB)).map_err(|e| e.to_string())?;
    let file = snap_tree.join(one.strip_prefix("/").unwrap_or(&one));
    let setup = super::seek::Setup {
        corpus: name,
        archive: &archive,
        snap_tree: &snap_tree,
        file: file
            .strip_prefix(&snap_tree)
            .unwrap_or(&file)
            .display()
            .to_string(),
        targets: &targets,
        runs,
    };
    super::seek::one_file(&setup, scripts, rec.table)?;
    discard(&snap_out)?;
    discard(&tar_out)?;
    for tool in RESTIC_LIKE {
        discard(&repo(tool))?;
    }
    settle(base)
}

/// Empties the trash between corpora (a corpus's restored trees would fill the
/// disk by the end of the next), flushes, and gives the disk time to finish
/// discarding: deleting a million files slows the next minute of writes here.
fn settle(base: &Path) -> Result {
    empty_trash(base);
    quiet(&mut sh("sync; fstrim -a 2>/dev/null; sync"))?;
    std::thread::sleep(std::time::Duration::from_secs(30));
    Ok(())
}

pub fn run(args: &Args, base: &Path, corpora: &[&str]) -> Result {
    crate::sh::ensure_apt(&[("restic", "restic"), ("zstd", "zstd")])?;
    super::kit::ensure_rustic()?;
    let scripts = crate::sh::ensure_pip(crate::test::TEST_SERVERS_PIP)?;
    // Today's snap-pack against the one before it checked each file's sha256.
    let before = crate::baseline::bin_dir_in(base, BEFORE_CHECK, "before-check")?;
    let mut table = Table::new();
    for name in corpora {
        let tree = corpus(base, name, args)?;
        bench_corpus(name, &tree, base, args.runs, &scripts, &before, &mut table)?;
    }
    empty_trash(base);
    let md = super::kit::render_rows(&table, "output MiB");
    println!("{md}");
    if !args.no_write {
        let method = "Corpora as in [benchmarks.md](benchmarks.md), collected once; every tool works on that snapshot tree.\n\
pack: snap-pack (zstd -3, all cores, sha256 while writing, each file checked against the index's sha256 as it is read) vs `tar -cf - | zstd -T0 -3 > a && sha256sum a`,\n\
and vs snap-pack of 3ad5293 (built beside, the last before the per-file check; goal: at most 1.1x it).\n\
restore: snap-restore (every file checked against its sha256, metadata applied, a syncfs per batch before naming it and one at the end)\n\
vs `zstd -dc a | tar -xf -` (with and without a final `sync`), `restic restore` and `rustic restore`.\n\
verify: snap-restore verify vs the single-core limit (zstd -d + openssl sha256 of the archive + of the tar), and the same verify on one core (`taskset -c 0`).\n\
one-file (S3): one 1 MiB file (a source of its own, beside the corpus) back from a local moto S3 server: `snap-restore restore --path` and `cat` of the seekable archive,\n\
the same archive read as one stream (its record without `frames`, as every archive was read before), `restic restore --include` and `rustic restore` from repositories on the same server;\n\
\"output MiB\" there is what the server sent, counted at a proxy in front of it.\n\
\"snap / tool\" is snap's wall time over the tool's: below 1 is faster; for the limit row, 1/ratio is the share of the limit reached.";
        super::kit::write_doc(
            "benchmarks-pack.md",
            "Benchmarks: snap-pack and snap-restore",
            args.runs,
            "",
            method,
            &md,
        )?;
    }
    Ok(())
}
