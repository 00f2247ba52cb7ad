//! `cargo xtask sweep`: the long proof of coordination at a shared
//! destination. Builds the fault harness (harness/, `snap-harness`) in
//! release mode and runs every crash point (before and after each
//! operation) of each seed's interleaving, plus the regression inputs;
//! `--mutants` then checks that the harness fails when a safeguard is
//! removed, each mutant built from a copy of HEAD with one change.

use std::path::Path;
use std::process::Command;

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

/// A safeguard, and the change that removes it.
pub struct Mutant {
    pub name: &'static str,
    pub file: &'static str,
    pub from: &'static str,
    pub to: &'static str,
}

impl Mutant {
    /// Ok when `by` (the proof run on the mutant) caught it.
    pub fn caught(&self, caught: bool, by: &str, outcome: impl std::fmt::Debug) -> Result {
        if caught {
            eprintln!("xtask: mutant \"{}\": caught by {by}", self.name);
            Ok(())
        } else {
            Err(format!(
                "mutant \"{}\": {by} did not fail ({outcome:?})",
                self.name
            ))
        }
    }
}

const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "no liveness re-check before publishing or removing",
        file: "dest/src/locks.rs",
        from: "    pub fn check(&self) -> Result<()> {\n",
        to: "    pub fn check(&self) -> Result<()> {\n        return Ok(());\n        #[allow(unreachable_code)]\n",
    },
    Mutant {
        name: "lock refresh without its condition (a broken lock is recreated)",
        file: "dest/src/conditional.rs",
        from: "b.put(rel, data, sha256, PutMode::Update(v))",
        to: "b.put(rel, data, sha256, { let _ = v; PutMode::Overwrite })",
    },
    Mutant {
        name: "prune takes a shared lock (it runs beside pushes)",
        file: "tools/snap-prune/src/lib.rs",
        from: "dest.hold(Mode::Exclusive, TOOL, &opts)",
        to: "dest.hold(Mode::Shared, TOOL, &opts)",
    },
];

pub fn run(args: Args) -> Result {
    let replay = root().join("harness/regressions.txt");
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

/// A copy of HEAD in target/mutants/src with the mutant's change; returns target/mutants.
pub fn apply(m: &Mutant) -> Result<std::path::PathBuf> {
    let base = root().join("target/mutants");
    let src = base.join("src");
    crate::baseline::checkout(&src, "HEAD")?;
    let file = src.join(m.file);
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if text.matches(m.from).count() != 1 {
        return Err(format!(
            "mutant \"{}\" no longer applies to {}: update the xtask that names it",
            m.name, m.file
        ));
    }
    std::fs::write(&file, text.replacen(m.from, m.to, 1)).map_err(|e| e.to_string())?;
    Ok(base)
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
