//! The timeline suite's diff rows: `snap-restore diff` on the command line
//! against `serve`'s diff page, on the same two snapshots of tree-small
//! (100,000 files; the second with 1% of the files changed, 100 added and
//! 100 removed), and the history and search pages on that store. The
//! source is a hard-linked copy of the corpus, so the changes never touch it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::args::Args;
use super::kit::{bin, fresh_dir};
use super::kit::{corpus, median};
use super::serving::Served;
use crate::sh::Result;

/// How many snapshots the history and search rows read.
const MANY: usize = 50;

/// One snapshot of `src` into set `d`; returns its id.
fn collect(store: &Path, src: &Path) -> Result<String> {
    let rec = super::pack::collect(store, "d", src)?;
    Ok(rec["id"].as_str().unwrap_or_default().to_string())
}

/// Every entry under `dir` but folders, sorted.
pub(super) fn files(dir: &Path) -> Vec<PathBuf> {
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

/// A hard-linked copy of a corpus to change (`<targets>/NAME-src/tree`)
/// and a fresh store beside it (`NAME-store`): the work folder, the store, the tree.
fn workspace(args: &Args, base: &Path, corpus_name: &str, name: &str) -> Result<[PathBuf; 3]> {
    let corpus = corpus(base, corpus_name, args)?;
    let work = base.join(format!("targets/{name}-src"));
    let store = base.join(format!("targets/{name}-store"));
    fresh_dir(&work)?;
    fresh_dir(&store)?;
    let tree = work.join("tree");
    super::kit::quiet(Command::new("cp").arg("-al").arg(&corpus).arg(&tree))?;
    Ok([work, store, tree])
}

/// Appends `tail` to a file of the hard-linked copy as a new inode (the
/// corpus keeps its content).
fn append_as_new(f: &Path, tail: &[u8]) -> Result {
    let io = |e: std::io::Error| format!("{}: {e}", f.display());
    let mut data = fs::read(f).map_err(io)?;
    data.extend_from_slice(tail);
    fs::remove_file(f).map_err(io)?;
    fs::write(f, &data).map_err(io)
}

/// Changes one file in a hundred, adds 100 and removes 100; returns a changed file.
fn change(tree: &Path) -> Result<PathBuf> {
    let all = files(tree);
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for f in all.iter().step_by(100) {
        append_as_new(f, b"\n// changed for the diff bench\n")?;
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
    Ok(pages(served, path, runs)?.0)
}

/// Median and p99 milliseconds of `runs` GETs of `path`, after one untimed.
fn pages(served: &Served, path: &str, runs: usize) -> Result<(f64, f64)> {
    served.get(path)?;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| served.get(path).map(|(ms, _)| ms))
        .collect::<Result<_>>()?;
    times.sort_by(|a, b| a.total_cmp(b));
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    Ok((median(&times), p99))
}

/// History and search on a set of MANY snapshots of tree-small-10pct
/// (10 files changed between each two): median and p99 of 50 GETs each.
fn many_rows(args: &Args, base: &Path) -> Result<String> {
    let [work, store, tree] = workspace(args, base, "tree-small-10pct", "history")?;
    eprintln!("xtask: timeline: {MANY} snapshots of tree-small-10pct for the history rows");
    let all = files(&tree);
    // Three quarters into the index: a history reads most of each index.
    let changed = all
        .get(all.len() * 3 / 4)
        .cloned()
        .ok_or("the corpus is empty")?;
    // And one changed in 3 of the snapshots only (no other round touches it).
    let rare = all
        .get(all.len() * 3 / 4 + 50)
        .cloned()
        .ok_or("the corpus is small")?;
    for round in 0..MANY {
        let this_time = [10, 25, 40].contains(&round).then_some(&rare);
        for f in all
            .iter()
            .skip(round % 7)
            .step_by(all.len() / 10)
            .chain([&changed])
            .chain(this_time)
        {
            append_as_new(f, format!("// round {round}\n").as_bytes())?;
            // Dated in the past, as a change an hour before a snapshot is: a
            // file written in the second before a snapshot is copied again by
            // the next one too (its mtime cannot be trusted yet).
            let then = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(1_600_000_000 + 60 * round as u64);
            fs::File::options()
                .write(true)
                .open(f)
                .and_then(|h| h.set_modified(then))
                .map_err(|e| e.to_string())?;
        }
        collect(&store, &tree)?;
    }
    let real = fs::canonicalize(&changed).map_err(|e| e.to_string())?;
    let rel = real.display().to_string();
    let rare = fs::canonicalize(&rare).map_err(|e| e.to_string())?;
    let rare = rare.display().to_string();
    let asks = [
        format!("/history?set=d&path={}", enc(rel.trim_start_matches('/'))),
        format!("/history?set=d&path={}", enc(rare.trim_start_matches('/'))),
        "/search?q=file001".to_string(),
    ];
    let timed = |runs: usize| -> Result<Vec<(f64, f64)>> {
        let served = Served::start(&store, None)?;
        asks.iter().map(|a| pages(&served, a, runs)).collect()
    };
    // snap-collect kept the path index; then the same pages without it
    // (a folder where its file would be: every index is read, as before it).
    let with = timed(50)?;
    let without = super::paths::without_path_index(&store, || timed(10))?;
    // Gigabytes of copies: gone with the rest of the bench's trash.
    super::kit::discard(&work)?;
    super::kit::discard(&store)?;
    let n = args.small_files / 10;
    let what = [
        "history of one path three quarters into the index (changed in every snapshot)",
        "history of one path changed in 3 of them",
        "search `file001`",
    ];
    Ok(format!(
        "### `serve`'s history and search on {MANY} snapshots of {n} files (made by snap-collect)\n\n\
{}\nGoal: at most 50 ms at p99. With the path index (snap-collect folds each snapshot in as it \
is made), a page reads the path's rows; without it, history stats the path in each snapshot's \
tree and reads an index for each version, and search reads every index on every core.\n",
        super::paths::table(&what, &with, &without)
    ))
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
    let [work, store, tree] = workspace(args, base, "tree-small", "diff")?;
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
    drop(served);
    super::kit::discard(&work)?;
    super::kit::discard(&store)?;
    let n = args.small_files;
    let many = many_rows(args, base)?;
    Ok(format!(
        "### A diff of two snapshots of {n} files (1% changed, 100 added, 100 removed)\n\n\
| `snap-restore diff` | `serve` diff page | page / command |\n|---|---|---|\n\
| {:.0} ms | {diff_ms:.0} ms | {:.2}x |\n\nGoal: at most 1.0x. Both read the two indexes in one merge pass; \
the page adds each change's attributes and links a text diff for small files (read only when opened).\n\n\
### `serve`'s other pages on that store (2 snapshots)\n\n\
| history of one path | search `file001` | text diff of one changed file |\n|---|---|---|\n\
| {history_ms:.1} ms | {search_ms:.0} ms | {text_ms:.1} ms |\n\n{many}",
        cli * 1000.0,
        diff_ms / (cli * 1000.0),
    ))
}
