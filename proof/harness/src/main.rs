//! `snap-harness`: runs the scenario for seeds, with a crash at every
//! operation in turn (or a sample of them), and reports what it checked.
//! Exit 0 when every invariant held in every run; 1 with the failing
//! seeds, crash points and traces otherwise.

use std::io::Write;
use std::os::fd::AsRawFd;

use clap::Parser;

use snap_harness::scenario::{self, Shape};
use snap_harness::sched::{Crash, Rng};

#[derive(Parser)]
#[command(
    name = "snap-harness",
    about = "Crash and interleaving sweep of snap's shared-destination coordination"
)]
struct Cli {
    /// Seeds (interleavings) to run: N..M
    #[arg(long, default_value = "1..4", value_parser = parse_range)]
    seeds: (u64, u64),
    /// Crash points per seed: "all" (before and after every operation) or a number sampled evenly
    #[arg(long, default_value = "all")]
    crashes: String,
    /// Rounds of pushes and prunes
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// One step in this many jumps in simulated time
    #[arg(long, default_value_t = 25)]
    jump_every: u64,
    /// Stop at the first failing run
    #[arg(long)]
    fail_fast: bool,
    /// Also run the inputs listed in FILE: lines `SEED none`, `SEED STEP before`
    /// or `SEED STEP after` (text after `#` is a comment)
    #[arg(long, value_name = "FILE")]
    replay: Option<std::path::PathBuf>,
}

/// The inputs of a replay file.
fn replays(path: &std::path::Path) -> Result<Vec<(u64, Option<Crash>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || {
            format!(
                "{}:{}: want SEED none | SEED STEP before|after",
                path.display(),
                n + 1
            )
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let seed: u64 = words.first().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let crash = match words.as_slice() {
            [_, "none"] => None,
            [_, step, when @ ("before" | "after")] => Some(Crash {
                step: step.parse().map_err(|_| bad())?,
                after: *when == "after",
            }),
            _ => return Err(bad()),
        };
        out.push((seed, crash));
    }
    Ok(out)
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("give N..M")?;
    let a: u64 = a.parse().map_err(|e| format!("{e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("{e}"))?;
    (a < b)
        .then_some((a, b))
        .ok_or_else(|| "N must be below M".into())
}

fn main() {
    let cli = Cli::parse();
    // The tools print records and messages; the report goes to the real stderr.
    let report = unsafe { libc::dup(2) };
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    unsafe {
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(null.as_raw_fd(), 2);
    }
    let mut out: std::fs::File = unsafe { std::os::fd::FromRawFd::from_raw_fd(report) };
    std::process::exit(sweep(&cli, &mut out));
}

fn sweep(cli: &Cli, out: &mut std::fs::File) -> i32 {
    let work = tempfile::tempdir().expect("temp dir");
    let pushers = match snap_harness::world::make(work.path(), 3, cli.rounds) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "snap-harness: making the machines' stores: {e}");
            return 2;
        }
    };
    let shape = Shape {
        pushers: &pushers,
        rounds: cli.rounds,
        work: work.path(),
        jump_every: cli.jump_every,
    };
    let (mut runs, mut points, mut failed) = (0u64, 0u64, Vec::new());
    if let Some(path) = &cli.replay {
        let inputs = match replays(path) {
            Ok(i) => i,
            Err(e) => {
                let _ = writeln!(out, "snap-harness: {e}");
                return 2;
            }
        };
        for (seed, crash) in &inputs {
            let o = scenario::run(&shape, *seed, *crash);
            runs += 1;
            if !o.violations.is_empty() {
                failed.push((*seed, *crash, o));
            }
        }
        let _ = writeln!(
            out,
            "snap-harness: replayed {} inputs of {}",
            inputs.len(),
            path.display()
        );
    }
    for seed in cli.seeds.0..cli.seeds.1 {
        let clean = scenario::run(&shape, seed, None);
        runs += 1;
        let steps = clean.steps;
        if !clean.violations.is_empty() {
            failed.push((seed, None, clean));
            if cli.fail_fast {
                break;
            }
        }
        for crash in crash_points(&cli.crashes, steps, seed) {
            let o = scenario::run(&shape, seed, Some(crash));
            runs += 1;
            points += 1;
            if !o.violations.is_empty() {
                failed.push((seed, Some(crash), o));
                if cli.fail_fast {
                    break;
                }
            }
        }
        let _ = writeln!(
            out,
            "snap-harness: seed {seed}: {steps} operations without a crash; {points} crash points so far"
        );
        if cli.fail_fast && !failed.is_empty() {
            break;
        }
    }
    let _ = writeln!(
        out,
        "snap-harness: seeds {}..{}: {runs} runs, {points} crash points, {} failed",
        cli.seeds.0,
        cli.seeds.1,
        failed.len()
    );
    for (seed, crash, o) in failed.iter().take(3) {
        let _ = writeln!(out, "FAILED seed {seed} crash {crash:?}:");
        for v in o.violations.iter().take(10) {
            let _ = writeln!(out, "  {v}");
        }
        let _ = writeln!(out, "  exits: {:?}", o.exits);
        for t in o.trace.iter().rev().take(40).rev() {
            let _ = writeln!(out, "    {t}");
        }
    }
    i32::from(!failed.is_empty())
}

/// Before and after every step, or `n` of them spread evenly (shuffled by the seed).
fn crash_points(which: &str, steps: u64, seed: u64) -> Vec<Crash> {
    let all: Vec<Crash> = (1..=steps)
        .flat_map(|step| [false, true].map(|after| Crash { step, after }))
        .collect();
    match which.parse::<usize>() {
        Ok(n) if n < all.len() => {
            let mut rng = Rng::new(seed ^ 0xC0FFEE);
            let stride = all.len() as f64 / n as f64;
            (0..n)
                .map(|i| {
                    all[((i as f64 + rng.below(1000) as f64 / 1000.0) * stride) as usize
                        % all.len()]
                })
                .collect()
        }
        _ => all,
    }
}
