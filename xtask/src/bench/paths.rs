//! The timeline suite's path index rows: search and history on a big
//! synthetic set (500 snapshots of 100,000 files, records and indexes, no
//! trees), with the path index and, as the anchor in the same run, without
//! it (every index read, as `serve` did before it).

use std::fs;
use std::path::Path;
use std::time::Instant;

use super::args::Args;
use super::kit::fresh_dir;
use super::serving::Served;
use crate::sh::Result;

const SNAPS: usize = 500;
const FILES: usize = 100_000;

/// Runs `f` with the store's path index unusable (a folder where its file
/// would be), then puts it back.
pub(super) fn without_path_index<T>(store: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let file = store.join("paths.sqlite");
    let aside = store.join("paths.sqlite.bench-aside");
    let io = |e: std::io::Error| format!("{}: {e}", file.display());
    fs::rename(&file, &aside).map_err(io)?;
    fs::create_dir(&file).map_err(io)?;
    let out = f();
    fs::remove_dir(&file).map_err(io)?;
    fs::rename(&aside, &file).map_err(io)?;
    out
}

/// A markdown table: each page's median and p99 with the path index, the
/// median without it, and the ratio of the medians.
pub(super) fn table(what: &[&str], with: &[(f64, f64)], without: &[(f64, f64)]) -> String {
    let mut out = String::from(
        "| page | with the path index: median | p99 | reading every index: median | with / without |\n|---|---|---|---|---|\n",
    );
    for ((w, a), b) in what.iter().zip(with).zip(without) {
        out += &format!(
            "| {w} | {:.1} ms | {:.1} ms | {:.1} ms | {:.3}x |\n",
            a.0,
            a.1,
            b.0,
            a.0 / b.0
        );
    }
    out
}

/// Median and p99 milliseconds of `runs` GETs of `path` (none untimed).
fn times(served: &Served, path: &str, runs: usize) -> Result<(f64, f64)> {
    let mut t: Vec<f64> = (0..runs)
        .map(|_| served.get(path).map(|(ms, _)| ms))
        .collect::<Result<_>>()?;
    t.sort_by(|a, b| a.total_cmp(b));
    let p99 = t[(t.len() * 99 / 100).min(t.len() - 1)];
    Ok((super::kit::median(&t), p99))
}

/// The rows, as markdown.
pub fn run(_args: &Args, base: &Path) -> Result<String> {
    let store = base.join("targets/paths-store");
    fresh_dir(&store)?;
    eprintln!("xtask: timeline: writing {SNAPS} indexes of {FILES} files");
    let t0 = Instant::now();
    let hot =
        snap_testkit::timeline::many_indexes(&store, SNAPS, FILES).map_err(|e| e.to_string())?;
    eprintln!(
        "xtask: timeline: written in {:.0} s",
        t0.elapsed().as_secs_f64()
    );
    let asks = [
        format!("/history?set=s&path={hot}"),
        "/search?q=file001".to_string(),
        // One name: the slow way reads every index to the end.
        "/search?q=file075000".to_string(),
    ];
    let served = Served::start(&store, None)?;
    // The first history folds every index into a new path index.
    let t0 = Instant::now();
    served.get(&asks[0])?;
    let fold = t0.elapsed().as_secs_f64();
    let with: Vec<(f64, f64)> = asks
        .iter()
        .map(|a| times(&served, a, 50))
        .collect::<Result<_>>()?;
    drop(served);
    let without: Vec<(f64, f64)> = without_path_index(&store, || {
        let served = Served::start(&store, None)?;
        asks.iter().map(|a| times(&served, a, 3)).collect()
    })?;
    let size = fs::metadata(store.join("paths.sqlite")).map_or(0, |m| m.len());
    super::kit::discard(&store)?;
    let what = [
        "history of a path changed in every snapshot",
        "search `file001` (1,000 names match; the first 500 listed)",
        "search `file075000` (one path)",
    ];
    Ok(format!(
        "### `serve`'s history and search on {SNAPS} snapshots of {FILES} files (synthetic: indexes, no trees)\n\n\
{}\nGoal: at most 200 ms at p99. One file in a hundred changes between two snapshots. \
Folding the {SNAPS} indexes into a new path index (the first page, untimed above) took {fold:.0} s; \
the file is {:.0} MiB.\n",
        table(&what, &with, &without),
        size as f64 / (1 << 20) as f64
    ))
}
