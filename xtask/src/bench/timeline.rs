//! `cargo xtask bench --suites timeline`: `snap-restore timeline --html` on
//! a store of 10,000 snapshots in 20 sets (hourly, each with a record, a
//! tenth with an archive record, some pinned and tagged), plus 200 disk
//! snapshots, with a retention policy and a schedule in the config. The
//! catalog is built once, untimed (snap-restore rebuilds it from the records
//! on its first open); the timed runs read a warm catalog.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use super::args::Args;
use super::kit::{bin, fresh_dir};
use super::kit::{median, quiet};
use super::serving::Served;
use crate::sh::Result;

const SETS: usize = 20;
const PER_SET: usize = 500;

/// Milliseconds of the first GET / (the page is made) and the p99 of 199 more.
fn serve_latency(store: &Path, cfg: &Path) -> Result<(f64, f64)> {
    let served = Served::start(store, Some(cfg))?;
    let first = served.get("/")?.0;
    let mut rest: Vec<f64> = (0..199)
        .map(|_| served.get("/").map(|(ms, _)| ms))
        .collect::<Result<_>>()?;
    rest.sort_by(|a, b| a.total_cmp(b));
    let p99 = rest.get(rest.len() * 99 / 100).copied().unwrap_or(f64::NAN);
    Ok((first, p99))
}

pub fn run(args: &Args, base: &Path) -> Result {
    let store = base.join("targets/timeline-store");
    eprintln!(
        "xtask: timeline: writing {} snapshot records",
        SETS * PER_SET
    );
    fresh_dir(&store)?;
    snap_testkit::timeline::synthetic_store(&store, SETS, PER_SET).map_err(|e| e.to_string())?;
    let cfg = base.join("targets/timeline.json");
    fs::write(
        &cfg,
        r#"{"retention": {"local": {"daily": 7, "weekly": 4, "monthly": 12}}, "schedule": {"incremental": "hourly"}}"#,
    )
    .map_err(|e| e.to_string())?;
    let out = base.join("targets/timeline.html");
    let page = |out: &Path, pictures: bool| {
        let mut c = Command::new(bin("snap-restore"));
        c.arg("--store")
            .arg(&store)
            .arg("-c")
            .arg(&cfg)
            .args(["-q", "timeline", "--html"])
            .arg(out);
        if !pictures {
            c.arg("--no-pictures");
        }
        c
    };
    // The first run builds the catalog from the records (untimed).
    quiet(&mut page(&out, true))?;
    let mut times = Vec::new();
    // The anchor, in the same run: the page without its pictures.
    let mut plain = Vec::new();
    for _ in 0..args.runs.max(5) {
        let t0 = Instant::now();
        quiet(&mut page(&out, true))?;
        times.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        quiet(&mut page(&base.join("targets/timeline-plain.html"), false))?;
        plain.push(t0.elapsed().as_secs_f64());
    }
    let size = fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    let (first_ms, p99_ms) = serve_latency(&store, &cfg)?;
    let diff_rows = super::diff::run(args, base)?;
    let path_rows = super::paths::run(args, base)?;
    let browse_rows = super::browsing::run(args, base)?;
    let md = format!(
        "### `snap-restore timeline --html` on {} snapshots in {SETS} sets, {} archives, 200 disk snapshots\n\n\
| runs | median | slowest | page | without the pictures (`--no-pictures`): median | with / without |\n|---|---|---|---|---|---|\n| {} | {:.3} s | {:.3} s | {:.1} MiB | {:.3} s | {:.2}x |\n\nGoal: at most 1 s, and the pictures at most 1.2x the page without them.\n\n\
### `snap-restore serve`: the timeline page, 200 GETs on loopback\n\n\
| first (made) | p99 of the rest (warm) |\n|---|---|\n| {first_ms:.1} ms | {p99_ms:.1} ms |\n\nGoal: at most 50 ms at p99.\n\n{diff_rows}\n{path_rows}\n{browse_rows}",
        SETS * PER_SET,
        SETS * PER_SET / 10,
        times.len(),
        median(&times),
        times.iter().cloned().fold(0.0, f64::max),
        size as f64 / (1 << 20) as f64,
        median(&plain),
        median(&times) / median(&plain),
    );
    println!("{md}");
    if !args.no_write {
        super::kit::write_doc(
            "benchmarks-timeline.md",
            "Benchmarks: the timeline",
            times.len(),
            "",
            "A synthetic store (records only: the page reads no tree): 20 sets of 500 hourly snapshots from\n\
2026-06-01, every tenth with an archive record, every hundredth pinned, every 24th tagged; 4 disks\n\
of 50 blocks snapshots in chains. Config: retention.local daily 7, weekly 4, monthly 12;\n\
schedule.incremental hourly. The catalog is built from the records by an untimed first run.",
            &md,
        )?;
    }
    Ok(())
}
