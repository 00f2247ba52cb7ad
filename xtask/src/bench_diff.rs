//! The timeline suite's diff rows: `snap-restore diff` on the command line
//! against `serve`'s diff page, on the same two snapshots of tree-small
//! (100,000 files; the second with 1% of the files changed, 100 added and
//! 100 removed), and the history and search pages on that store. The
//! source is a hard-linked copy of the corpus, so the changes never touch it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bench::{Args, corpus, median};
use crate::bench_push::{bin, fresh_dir};
use crate::bench_timeline::Served;
use crate::sh::Result;

/// One snapshot of `src` into set `d`; returns its id.
fn collect(store: &Path, src: &Path) -> Result<String> {
    let out = Command::new(bin("snap-collect"))
        .arg("--store")
        .arg(store)
        .args(["--min-free", "0", "--name", "d", "-q"])
        .arg(src)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "snap-collect: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    Ok(v["id"].as_str().unwrap_or_default().to_string())
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => out.push(e.path()),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Changes one file in a hundred (a new inode: the corpus keeps its
/// content), adds 100 and removes 100; returns a changed file.
fn change(tree: &Path) -> Result<PathBuf> {
    let all = files(tree);
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for f in all.iter().step_by(100) {
        let mut data = fs::read(f).map_err(|e| io(f, e))?;
        data.extend_from_slice(b"\n// changed for the diff bench\n");
        fs::remove_file(f).map_err(|e| io(f, e))?;
        fs::write(f, &data).map_err(|e| io(f, e))?;
    }
    for f in all.iter().skip(50).step_by(all.len() / 100).take(100) {
        fs::remove_file(f).map_err(|e| io(f, e))?;
    }
    for i in 0..100 {
        let f = tree.join(format!("added-{i:03}.txt"));
        fs::write(&f, format!("new file {i}\n")).map_err(|e| io(&f, e))?;
    }
    all.first()
        .cloned()
        .ok_or_else(|| "the corpus is empty".into())
}

/// Median seconds of `runs` runs of the command line's diff.
fn cli_diff(store: &Path, a: &str, b: &str, runs: usize) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new(bin("snap-restore"))
            .arg("--store")
            .arg(store)
            .args(["diff", &format!("d/{a}"), &format!("d/{b}")])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("snap-restore diff failed".into());
        }
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&times))
}

/// Median milliseconds of `runs` GETs of `path`, after one untimed.
fn page(served: &Served, path: &str, runs: usize) -> Result<f64> {
    served.get(path)?;
    let times: Vec<f64> = (0..runs)
        .map(|_| served.get(path).map(|(ms, _)| ms))
        .collect::<Result<_>>()?;
    Ok(median(&times))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The rows, as markdown.
pub fn run(args: &Args, base: &Path) -> Result<String> {
    let corpus = corpus(base, "tree-small", args)?;
    let work = base.join("targets/diff-src");
    let store = base.join("targets/diff-store");
    fresh_dir(&work)?;
    fresh_dir(&store)?;
    let tree = work.join("tree");
    crate::bench::quiet(Command::new("cp").arg("-al").arg(&corpus).arg(&tree))?;
    eprintln!("xtask: timeline: two snapshots of tree-small for the diff rows");
    let a = collect(&store, &tree)?;
    let changed = change(&tree)?;
    let b = collect(&store, &tree)?;
    let runs = args.runs.max(5);
    let cli = cli_diff(&store, &a, &b, runs)?;
    let served = Served::start(&store, None)?;
    let diff_ms = page(&served, &format!("/diff?a=d/{a}&b=d/{b}"), runs)?;
    let real = fs::canonicalize(&changed).map_err(|e| e.to_string())?;
    let rel = real.display().to_string();
    let history_ms = page(
        &served,
        &format!("/history?set=d&path={}", enc(rel.trim_start_matches('/'))),
        runs,
    )?;
    let search_ms = page(&served, "/search?q=file001", runs)?;
    let text_ms = page(
        &served,
        &format!(
            "/text?a=d/{a}&b=d/{b}&path={}",
            enc(rel.trim_start_matches('/'))
        ),
        runs,
    )?;
    let n = args.small_files;
    Ok(format!(
        "### A diff of two snapshots of {n} files (1% changed, 100 added, 100 removed)\n\n\
| `snap-restore diff` | `serve` diff page | page / command |\n|---|---|---|\n\
| {:.0} ms | {diff_ms:.0} ms | {:.2}x |\n\nGoal: at most 1.0x. Both read the two indexes in one merge pass; \
the page adds each change's attributes and links a text diff for small files (read only when opened).\n\n\
### `serve`'s other pages on that store (2 snapshots)\n\n\
| history of one path | search `file001` | text diff of one changed file |\n|---|---|---|\n\
| {history_ms:.1} ms | {search_ms:.0} ms | {text_ms:.1} ms |\n\n\
History and search read every snapshot's index: they grow with the number of snapshots of the set \
(history stops reading an index at the path).\n",
        cli * 1000.0,
        diff_ms / (cli * 1000.0),
    ))
}
