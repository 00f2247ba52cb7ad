//! `cargo xtask fuzz [--target T]... [--time S]`: runs the libFuzzer targets
//! of fuzz/ (`cargo +nightly fuzz`, installed if missing) for S seconds each,
//! from the kept seeds (fuzz/corpus/T/) into a scratch corpus
//! (target/fuzz-corpus/T/). An input that breaks a parser is copied to
//! fuzz/regressions/T/, which `cargo xtask test` replays on stable
//! (fuzzing/tests/replay.rs). Prints the CPU seconds, runs and finds per target.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::sh::{Result, have, root};

#[derive(clap::Args)]
pub struct Args {
    /// Only this target (repeatable); all by default
    #[arg(long)]
    target: Vec<String>,
    /// Seconds per target
    #[arg(long, default_value_t = 60)]
    time: u64,
}

/// The targets, as fuzz/Cargo.toml names them (and snap_fuzzing::TARGETS).
const TARGETS: &[&str] = &[
    "tar",
    "records",
    "index",
    "block_map",
    "config",
    "disk_json",
    "qcow2_header",
    "age_header",
    "lock",
    "listing",
];

pub fn run(args: Args) -> Result {
    if !have("cargo-fuzz") {
        crate::sh::exec(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let chosen: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| args.target.is_empty() || args.target.iter().any(|a| a == t))
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "--target: none of {} (known: {})",
            args.target.join(", "),
            TARGETS.join(", ")
        ));
    }
    let mut found = 0;
    let mut lines = Vec::new();
    for t in chosen {
        let (secs, runs, finds) = one(t, args.time)?;
        found += finds;
        lines.push(format!(
            "{t:<14} {secs:>6.0} s  {runs:>12} runs  {finds} found"
        ));
    }
    for l in &lines {
        println!("{l}");
    }
    match found {
        0 => Ok(()),
        n => Err(format!(
            "{n} input(s) broke a parser: see fuzz/regressions/, fix, and keep them"
        )),
    }
}

/// Fuzzes one target; returns its seconds, runs, and the inputs it kept as regressions.
fn one(target: &str, time: u64) -> Result<(f64, u64, usize)> {
    let fuzz = root().join("fuzz");
    let scratch = root().join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let artifacts = fuzz.join("artifacts").join(target);
    let _ = std::fs::remove_dir_all(&artifacts);
    let start = Instant::now();
    let out = Command::new("cargo")
        .args(["+nightly", "fuzz", "run", target])
        .arg(&scratch)
        .arg(fuzz.join("corpus").join(target))
        .arg("--")
        .arg(format!("-max_total_time={time}"))
        .args(["-rss_limit_mb=2048", "-timeout=10", "-print_final_stats=1"])
        .current_dir(&fuzz)
        .output()
        .map_err(|e| format!("cargo +nightly fuzz: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stderr);
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let finds = keep_artifacts(&artifacts, &fuzz.join("regressions").join(target))?;
    if !out.status.success() && finds == 0 {
        return Err(format!(
            "fuzz target {target} failed to run: {}",
            text.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ));
    }
    Ok((secs, runs, finds))
}

/// Copies what libFuzzer wrote as a crash, timeout or leak into the regressions.
fn keep_artifacts(from: &Path, to: &Path) -> Result<usize> {
    let Ok(dir) = std::fs::read_dir(from) else {
        return Ok(0);
    };
    let mut n = 0;
    for e in dir.flatten() {
        std::fs::create_dir_all(to).map_err(|e| e.to_string())?;
        let dest = to.join(e.file_name());
        std::fs::copy(e.path(), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        eprintln!("xtask: kept {}", dest.display());
        n += 1;
    }
    Ok(n)
}
