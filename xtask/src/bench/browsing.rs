//! The timeline suite's browser rows: `serve`'s folder page for a folder
//! of 10,000 files, from the store (warm, p99 of 50 GETs) and from its
//! archive in a bucket (moto), cold: a new server each time, so the
//! listing and the index are fetched by the GET measured.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::args::Args;
use super::kit::{Moto, bin, fresh_dir, median, quiet};
use super::serving::Served;
use crate::sh::{Result, ensure_pip};

const FILES: usize = 10_000;
/// Cold GETs from the bucket (each with a new server).
const COLD: usize = 10;

/// The rows, as markdown.
pub fn run(args: &Args, base: &Path) -> Result<String> {
    let scripts = ensure_pip(crate::test::TEST_SERVERS_PIP)?;
    let work = base.join("targets/browse-src");
    let store = base.join("targets/browse-store");
    fresh_dir(&work)?;
    fresh_dir(&store)?;
    let dir = work.join("wide");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for i in 0..FILES {
        fs::write(dir.join(format!("f{i:05}.txt")), format!("file {i}\n"))
            .map_err(|e| e.to_string())?;
    }
    eprintln!("xtask: timeline: a folder of {FILES} files for the browse rows");
    let rec = super::pack::collect(&store, "b", &work)?;
    let id = rec["id"].as_str().unwrap_or_default().to_string();
    quiet(
        Command::new(bin("snap-pack"))
            .args(["--min-free", "0", "-q", "--store"])
            .arg(&store)
            .args(["--snapshot", &format!("b/{id}")]),
    )?;
    let real = fs::canonicalize(&dir).map_err(|e| e.to_string())?;
    let inside = real.display().to_string();
    let page = format!("/browse/b/{id}/{}", inside.trim_start_matches('/'));
    // From the store, warm.
    let served = Served::start(&store, None)?;
    served.get(&page)?;
    let mut warm: Vec<f64> = (0..50)
        .map(|_| served.get(&page).map(|(ms, _)| ms))
        .collect::<Result<_>>()?;
    drop(served);
    warm.sort_by(|a, b| a.total_cmp(b));
    // From a bucket, cold.
    let moto = Moto::start(&scripts)?;
    let cfg = base.join("targets/browse.json");
    let conf = serde_json::json!({"destinations": [{"name": "bkt", "url": "s3://bench/browse",
        "options": {"endpoint": format!("http://127.0.0.1:{}", moto.port), "allow_http": "true",
            "region": "us-east-1", "access_key_id": "bench", "secret_access_key": "bench"}}]});
    fs::write(&cfg, conf.to_string()).map_err(|e| e.to_string())?;
    quiet(
        Command::new(bin("snap-push"))
            .args(["-q", "--all", "--dest", "bkt", "-c"])
            .arg(&cfg)
            .arg("--store")
            .arg(&store),
    )?;
    let mut cold = Vec::new();
    for _ in 0..COLD {
        let served = Served::start(&store, Some(&cfg))?;
        cold.push(served.get(&format!("{page}?from=bkt"))?.0);
    }
    drop(moto);
    cold.sort_by(|a, b| a.total_cmp(b));
    super::kit::discard(&work)?;
    super::kit::discard(&store)?;
    let _ = args;
    let p99 = |v: &[f64]| v[(v.len() * 99 / 100).min(v.len() - 1)];
    Ok(format!(
        "### `serve`'s file browser: a folder of {FILES} files\n\n\
| from | GETs | median | p99 (slowest of the cold ones) |\n|---|---|---|---|\n\
| the store (warm) | {} | {:.1} ms | {:.1} ms |\n\
| its archive in a bucket (moto), cold: a new server each time | {} | {:.1} ms | {:.1} ms |\n\n\
Goal: at most 100 ms at p99 from the store, at most 1 s from the bucket cold. A folder page \
reads the item's index and its predecessor's (for the changes); from a bucket, the first page \
also fetches the destination's listing and the index.\n",
        warm.len(),
        median(&warm),
        p99(&warm),
        cold.len(),
        median(&cold),
        cold.last().copied().unwrap_or(f64::NAN),
    ))
}
