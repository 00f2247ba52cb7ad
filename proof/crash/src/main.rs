//! `snap-crash [--tool T]... [--points all|N] [--power | --fault F] --bin DIR`:
//! the crash sweep, or with `--power` the power-loss sweep, or with `--fault`
//! a full disk or an unplugged drive from each point on. Prints one line per
//! scenario, each failure under it, and exits 1 if any point did not recover.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use snap_crash::fault::Fault;
use snap_crash::sweep::{Report, sweep, sweep_fault, sweep_power};
use snap_crash::tools;

#[derive(Parser)]
#[command(
    name = "snap-crash",
    about = "Kill each snap tool at every state-changing syscall of a representative run; check and rerun after each"
)]
struct Cli {
    /// Only these scenarios (snap-collect, snap-pack, snap-push-folder, …); all by default.
    #[arg(long = "tool")]
    tools: Vec<String>,
    /// Every point (`all`), or this many spread over the run.
    #[arg(long, default_value = "all")]
    points: String,
    /// The folder holding the snap binaries.
    #[arg(long)]
    bin: PathBuf,
    /// Where scenarios lay their state (a temporary folder by default).
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Power cuts instead of kills: at each point (and after the run), the
    /// states that keep only what was flushed are laid, checked and rerun.
    #[arg(long, conflicts_with = "fault")]
    power: bool,
    /// A fault from each point on instead of a kill: `full` (ENOSPC under the
    /// world) or `unplugged` (EIO under the drive of scenarios that have one).
    #[arg(long, value_parser = ["full", "unplugged"])]
    fault: Option<String>,
}

fn line(r: &Report) -> String {
    let syscalls: Vec<String> = r
        .by_syscall
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let count = |n: u64, what: &str| match n {
        0 => String::new(),
        n => format!(" {n:>5} {what},"),
    };
    let states =
        count(r.power_states, "power-cut states") + &count(r.refused, "refused as they should");
    format!(
        "{:<22} {:>5} points, {:>5} cut at,{states} {:>3} finished first, {:>3} failed   ({})",
        r.name,
        r.points,
        r.swept,
        r.finished_early,
        r.failures.len(),
        syscalls.join(", ")
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sample = match cli.points.as_str() {
        "all" => None,
        n => match n.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                eprintln!("snap-crash: --points {n}: give `all` or a count");
                return ExitCode::from(64);
            }
        },
    };
    let scenarios: Vec<_> = tools::all()
        .into_iter()
        .filter(|s| cli.tools.is_empty() || cli.tools.iter().any(|t| t == s.name()))
        .collect();
    if scenarios.is_empty() {
        let known: Vec<_> = tools::all().iter().map(|s| s.name()).collect();
        eprintln!(
            "snap-crash: --tool {}: not a scenario (known: {})",
            cli.tools.join(", "),
            known.join(", ")
        );
        return ExitCode::from(64);
    }
    let temp = tempfile::tempdir().expect("a temporary folder");
    let scratch = cli.scratch.unwrap_or_else(|| temp.path().to_path_buf());
    let bin = std::fs::canonicalize(&cli.bin).unwrap_or(cli.bin);
    let mut failed = 0;
    for s in &scenarios {
        let fault = cli.fault.as_deref().map(|f| match f {
            "full" => Fault::Full,
            _ => Fault::Unplugged,
        });
        let r = match (cli.power, fault) {
            (true, _) => sweep_power(s.as_ref(), &scratch, &bin, sample),
            (false, Some(f)) => match sweep_fault(s.as_ref(), &scratch, &bin, sample, f) {
                Some(r) => r,
                None => continue,
            },
            (false, None) => sweep(s.as_ref(), &scratch, &bin, sample),
        };
        println!("{}", line(&r));
        for f in &r.failures {
            println!("    {f}");
        }
        for t in &r.tolerated {
            println!("    (finished) {t}");
        }
        failed += r.failures.len();
    }
    if failed > 0 {
        println!("{failed} point(s) did not recover");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
