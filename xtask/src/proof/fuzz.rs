//! `cargo xtask fuzz [--target T]... [--time S] [--parallel N]`: builds the
//! libFuzzer targets of proof/fuzz/ (`cargo +nightly fuzz`, installed if missing),
//! then runs each for S seconds, N at a time,
//! from the kept seeds (proof/fuzz/corpus/T/) into a scratch corpus
//! (target/fuzz-corpus/T/). An input that breaks a parser is copied to
//! proof/fuzz/regressions/T/, which `cargo xtask test` replays on stable
//! (proof/fuzz-bodies/tests/replay.rs). Prints the seconds fuzzed (one core each), runs
//! and finds per target.

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
    /// Targets fuzzed at once (each on one core)
    #[arg(long, default_value_t = 1)]
    parallel: usize,
}

/// The targets, as proof/fuzz/Cargo.toml names them (and snap_fuzzing::TARGETS).
const TARGETS: &[&str] = &[
    "tar",
    "restore",
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
    // Built once, before the clock starts: the seconds reported are fuzzing only.
    crate::sh::exec(
        Command::new("cargo")
            .args(["+nightly", "fuzz", "build"])
            .current_dir(root().join("proof/fuzz")),
    )?;
    let results = run_all(&chosen, args.time, args.parallel.max(1));
    let mut found = 0;
    for (t, result) in chosen.iter().zip(results) {
        let (secs, runs, finds) = result?;
        found += finds;
        println!("{t:<14} {secs:>6.0} s  {runs:>12} runs  {finds} found");
    }
    match found {
        0 => Ok(()),
        n => Err(format!(
            "{n} input(s) broke a parser: see proof/fuzz/regressions/, fix, and keep them"
        )),
    }
}

/// A target's fuzzing seconds, runs, and inputs kept as regressions.
type Outcome = Result<(f64, u64, usize)>;

/// Fuzzes the targets, `parallel` at a time; results in the targets' order.
fn run_all(targets: &[&str], time: u64, parallel: usize) -> Vec<Outcome> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Outcome>>> =
        targets.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..parallel.min(targets.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(t) = targets.get(i) else { break };
                    eprintln!("xtask: fuzzing {t} for {time} s");
                    *results[i].lock().expect("result slot") = Some(one(t, time));
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .expect("result slot")
                .expect("every target ran")
        })
        .collect()
}

/// Fuzzes one target; returns its seconds, runs, and the inputs it kept as regressions.
fn one(target: &str, time: u64) -> Outcome {
    let fuzz = root().join("proof/fuzz");
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
