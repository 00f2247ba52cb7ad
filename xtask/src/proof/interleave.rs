//! `cargo xtask interleave`: the long proof of coordination at a shared
//! destination. Builds the fault harness (proof/harness/, `snap-harness`) in
//! release mode and runs every crash point (before and after each
//! operation) of each seed's interleaving, plus the regression inputs;
//! `--mutants` then checks that the harness fails when a safeguard is
//! removed, each mutant built from a copy of HEAD with one change.

use std::path::Path;
use std::process::Command;

use super::mutants::{Mutant, apply};
use crate::sh::{Result, cargo, exec, root};

#[derive(clap::Args)]
pub struct Args {
    /// Seeds (interleavings): N..M
    #[arg(long, default_value = "1..21")]
    seeds: String,
    /// Crash points per seed: all, or a number sampled evenly
    #[arg(long, default_value = "all")]
    crashes: String,
    /// Also build each mutant (a safeguard removed) and require the harness to fail on it
    #[arg(long)]
    mutants: bool,
}

pub(super) const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "no fence: nothing asks for the lock before publishing or removing",
        file: "dest/src/dest.rs",
        from: "self.fence = Some(Arc::new(fence));",
        to: "{ let _ = fence; }",
    },
    Mutant {
        name: "lock refresh without its condition (a broken lock is recreated)",
        file: "dest/src/conditional.rs",
        from: "b.put(rel, data.clone(), sha256, PutMode::Update(v))",
        to: "b.put(rel, data.clone(), sha256, { let _ = v; PutMode::Overwrite })",
    },
    Mutant {
        name: "prune takes a shared lock (it runs beside pushes)",
        file: "tools/snap-prune/src/jobs.rs",
        from: "dest.hold(Mode::Exclusive, TOOL, &opts)",
        to: "dest.hold(Mode::Shared, TOOL, &opts)",
    },
];

pub fn run(args: Args) -> Result {
    let replay = root().join("proof/harness/regressions.txt");
    exec(cargo().args(["build", "--release", "-p", "snap-harness"]))?;
    let bin = root().join("target/release/snap-harness");
    exec(
        Command::new(&bin)
            .args([
                "--seeds",
                &args.seeds,
                "--crashes",
                &args.crashes,
                "--replay",
            ])
            .arg(&replay),
    )?;
    if args.mutants {
        for m in MUTANTS {
            mutant(m)?;
        }
    }
    Ok(())
}

/// Builds HEAD with the mutant's change and requires the harness to fail.
fn mutant(m: &Mutant) -> Result {
    let base = apply(m)?;
    let src = base.join("src");
    exec(
        cargo()
            .args(["build", "--release", "-p", "snap-harness", "--target-dir"])
            .arg(base.join("target"))
            .arg("--manifest-path")
            .arg(src.join("Cargo.toml")),
    )?;
    let status = harness_status(&base.join("target/release/snap-harness"))?;
    m.caught(status == Some(1), "the harness", status)
}

fn harness_status(bin: &Path) -> Result<Option<i32>> {
    let status = Command::new(bin)
        .args(["--seeds", "1..201", "--crashes", "0", "--fail-fast"])
        .status()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(status.code())
}
