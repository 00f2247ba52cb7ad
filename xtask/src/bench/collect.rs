//! The collect suite: snap-collect against rsync --link-dest (`-a`, and
//! `-aHAX`, which keeps ACLs and extended attributes as snap does), restic,
//! rustic, borg and the snap-collect of the commit before it kept attributes
//! (`snap-before`), side by side in one run, on corpora the bench builds itself.
//!
//! Every tool gets the same sequence per run: a fresh target, 1-first,
//! 2-second-nochange, then 1% of the files changed and 3-second-1pct-changed,
//! then the tree is put back. Before each timed step the tree is read once
//! (warm cache, the same for every tool) and `sync` flushes earlier writes so
//! one tool's write-back does not land in the next one's time. Wall time and
//! peak RSS (the largest process, from wait4) are measured per step; the table
//! gives medians over the runs and snap's ratio to each anchor.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sh::{Result, root};

use super::args::Args;
use super::kit::*;

/// Appends a line to every 100th regular file (sorted path order); returns what to put back.
fn change_one_percent(tree: &Path, run: usize) -> Result<Vec<(PathBuf, u64, fs::FileTimes)>> {
    let mut files = Vec::new();
    collect_files(tree, &mut files)?;
    files.sort();
    let mut undo = Vec::new();
    for path in files.iter().step_by(100) {
        let meta = fs::metadata(path).map_err(|e| e.to_string())?;
        let times = fs::FileTimes::new()
            .set_accessed(meta.accessed().map_err(|e| e.to_string())?)
            .set_modified(meta.modified().map_err(|e| e.to_string())?);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| e.to_string())?;
        writeln!(f, "bench-change {run}").map_err(|e| e.to_string())?;
        undo.push((path.clone(), meta.size(), times));
    }
    Ok(undo)
}

fn undo_change(undo: Vec<(PathBuf, u64, fs::FileTimes)>) -> Result {
    for (path, size, times) in undo {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| e.to_string())?;
        f.set_len(size).map_err(|e| e.to_string())?;
        f.set_times(times).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result {
    for e in fs::read_dir(dir).map_err(|e| e.to_string())? {
        let e = e.map_err(|e| e.to_string())?;
        let ft = e.file_type().map_err(|e| e.to_string())?;
        if ft.is_dir() {
            collect_files(&e.path(), out)?;
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The snap-collect binaries a collect suite runs: this tree's, and the
/// `--collect-baseline` commit's (the `snap-before` rows).
struct SnapBins {
    now: PathBuf,
    before: Option<PathBuf>,
}

/// The command a tool runs for step `step` (1, 2, 3) into `target`.
fn step_command(tool: &str, step: usize, tree: &Path, target: &Path, snap: &SnapBins) -> Command {
    match tool {
        "snap" | "snap-before" => {
            let bin = match tool {
                "snap" => &snap.now,
                _ => snap
                    .before
                    .as_ref()
                    .expect("built when snap-before is asked for"),
            };
            let mut c = Command::new(bin);
            c.args(["--quiet", "--min-free", "0", "--name", "bench", "--store"])
                .arg(target)
                .arg(tree);
            c
        }
        "rsync" | "rsync+sync" | "rsync-aHAX" => {
            let link_dest = match step {
                1 => String::new(),
                _ => format!(
                    "--link-dest='{}'",
                    target.join(format!("{}", step - 1)).display()
                ),
            };
            // rsync+sync: the same, then flushed to disk, as snap flushes before publishing.
            let flush = if tool == "rsync+sync" { " && sync" } else { "" };
            // rsync-aHAX: hard links, ACLs and extended attributes too, as snap keeps them.
            let flags = if tool == "rsync-aHAX" { "-aHAX" } else { "-a" };
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!(
                "rsync {flags} {link_dest} '{}/' '{}/'{flush}",
                tree.display(),
                target.join(format!("{step}")).display()
            ));
            c
        }
        "restic" | "rustic" => {
            let mut c = repo_cmd(tool, target, &["backup"]);
            c.arg(tree);
            c
        }
        _ => {
            let mut c = Command::new("borg");
            c.arg("create")
                .arg(format!("{}::s{step}", target.display()))
                .arg(tree)
                .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes");
            c
        }
    }
}

fn prepare_target(tool: &str, target: &Path) -> Result {
    discard(target)?;
    match tool {
        "restic" | "rustic" => quiet(&mut repo_cmd(tool, target, &["init"])),
        "borg" => quiet(
            Command::new("borg")
                .args(["init", "-e", "none"])
                .arg(target),
        ),
        _ => fs::create_dir_all(target).map_err(|e| e.to_string()),
    }
}

fn bench_corpus(
    name: &str,
    tree: &Path,
    base: &Path,
    args: &Args,
    snap_bin: &SnapBins,
    table: &mut Table,
) -> Result {
    const STEPS: [&str; 3] = ["1-first", "2-second-nochange", "3-second-1pct-changed"];
    for run in 0..args.runs {
        for tool in &args.tools {
            let target = base.join("targets").join(tool);
            prepare_target(tool, &target)?;
            for (i, step) in STEPS.iter().enumerate() {
                let undo = if i == 2 {
                    Some(change_one_percent(tree, run)?)
                } else {
                    None
                };
                warm(tree)?;
                let before = disk_use_mib(&target);
                let (wall, rss) = measure(&mut step_command(tool, i + 1, tree, &target, snap_bin))?;
                let growth = disk_use_mib(&target) - before;
                eprintln!(
                    "xtask: {name} {step} {tool} run {}: {wall:.2} s, {rss:.0} MiB, +{growth:.1} MiB",
                    run + 1
                );
                add_sample(table, (name, step, tool), wall, rss, Some(growth));
                if let Some(u) = undo {
                    undo_change(u)?;
                }
            }
            discard(&target)?;
        }
    }
    Ok(())
}

/// Peak RSS of a first collect of a tree ten times smaller, for the scaling goal.
fn bench_memory_scaling(
    base: &Path,
    args: &Args,
    snap_bin: &SnapBins,
    table: &mut Table,
) -> Result {
    let small = corpus(base, "tree-small-10pct", args)?;
    let target = base.join("targets/snap-scale");
    for run in 0..args.runs {
        prepare_target("snap", &target)?;
        warm(&small)?;
        let (wall, rss) = measure(&mut step_command("snap", 1, &small, &target, snap_bin))?;
        eprintln!(
            "xtask: tree-small-10pct 1-first snap run {}: {wall:.2} s, {rss:.0} MiB",
            run + 1
        );
        add_sample(
            table,
            ("tree-small-10pct", "1-first", "snap"),
            wall,
            rss,
            None,
        );
    }
    discard(&target)?;
    Ok(())
}

fn render(table: &Table, args: &Args) -> String {
    let mut md = render_rows(table, "store growth MiB");
    let get = |c: &str| {
        table
            .get(&(c.into(), "1-first".into(), "snap".into()))
            .map(|s| median(&s.rss))
    };
    if let (Some(big), Some(small)) = (get("tree-small"), get("tree-small-10pct")) {
        let _ = writeln!(
            md,
            "\nMemory scaling (first collect): {small:.0} MiB at {} files, {big:.0} MiB at {} files: {:.2}x for 10x the files.",
            args.small_files / 10,
            args.small_files,
            big / small
        );
    }
    md
}

/// The collect suite, when `--suites` names it.
pub(crate) fn run(args: &Args, base: &Path) -> Result {
    if args.tools.iter().any(|t| t == "rustic") {
        ensure_rustic()?;
    }
    let before = match args.tools.iter().any(|t| t == "snap-before") {
        true => Some(
            crate::baseline::bin_dir_in(base, &args.collect_baseline, "before-attributes")?
                .join("snap-collect"),
        ),
        false => None,
    };
    let snap_bin = SnapBins {
        now: root().join("target/release/snap-collect"),
        before,
    };
    let mut table = Table::new();
    for name in &args.corpora {
        let tree = corpus(base, name, args)?;
        bench_corpus(name, &tree, base, args, &snap_bin, &mut table)?;
    }
    if args.corpora.iter().any(|c| c == "tree-small") && args.tools.iter().any(|t| t == "snap") {
        bench_memory_scaling(base, args, &snap_bin, &mut table)?;
    }
    empty_trash(base);
    let md = render(&table, args);
    println!("{md}");
    if !args.no_write {
        let method = format!(
            "Corpora are built by the bench: tree-small = {} source-like files of 1–64 KiB; tree-large = 4 files, {} MiB in all;\n\
usr-share = a copy of /usr/share and the Rust docs (the corpus of docs/benchmarks-anchors.md).\n\
Every tool gets the same sequence per run (fresh target, first, no change, 1% of files changed);\n\
the tree is read once and `sync` runs before each timed step. snap includes its own `syncfs` before\n\
publishing a snapshot (durable); rsync does not flush, so its figures leave writes in the page cache.",
            args.small_files, args.large_mib
        );
        write_doc("benchmarks.md", "Benchmarks", args.runs, "", &method, &md)?;
    }
    Ok(())
}
