//! `cargo xtask crash`: the crash sweep. Builds the tools and the sweeper
//! (proof/crash/, `snap-crash`) in release mode and kills each tool at every
//! state-changing syscall of its representative run, checking and rerunning
//! after each. `--power` sweeps power cuts instead: at each point the states
//! that keep only what was flushed are laid, checked and rerun. `--mutants`
//! then requires the sweep to fail on copies of HEAD with one safeguard
//! removed each. `cargo xtask test` runs a sample of the points of every
//! scenario, for kills and for power cuts (proof/crash/tests/sample.rs).

use std::process::Command;

use super::mutants::{Mutant, apply};
use crate::sh::{Result, cargo, exec, root};

#[derive(clap::Args)]
pub struct Args {
    /// Only this scenario (repeatable): snap-collect, snap-pack, snap-push-folder, snap-push-s3,
    /// snap-restore, snap-prune-store, snap-prune-dest, snap-disk-…
    #[arg(long)]
    tool: Vec<String>,
    /// Points per scenario: all, or a number spread over the run
    #[arg(long, default_value = "all")]
    points: String,
    /// Also build each mutant (a safeguard removed) and require the sweep to fail on it
    #[arg(long)]
    mutants: bool,
    /// Power cuts instead of kills: only what was flushed survives each point
    #[arg(long)]
    power: bool,
}

/// A safeguard against crashes, the change that removes it, and the scenario that must catch it.
pub(super) const MUTANTS: &[(Mutant, &str)] = &[
    (
        Mutant {
            name: "prune moves a snapshot's tree away before removing its record",
            file: "tools/snap-prune/src/target.rs",
            from: "    let mut freed = 0;\n    if let Ok(meta) = std::fs::symlink_metadata(&record) {\n",
            to: "    let mut freed = 0;\n    if tree.exists() {\n        std::fs::rename(&tree, &doomed).map_err(io(&tree))?;\n    }\n    if let Ok(meta) = std::fs::symlink_metadata(&record) {\n",
        },
        "snap-prune-store",
    ),
    (
        Mutant {
            name: "the catalog does not catch up with the records when opened",
            file: "shared/src/catalog.rs",
            from: "                cat.reconcile(store)?;\n",
            to: "",
        },
        "snap-collect",
    ),
    (
        Mutant {
            name: "collect names the record before the tree",
            file: "tools/snap-collect/src/collect.rs",
            from: "    publish_new(partial, &tree).map_err(|e| store_err(&tree, e))?;\n    publish_new(&pending, &record_path).map_err(|e| store_err(&record_path, e))?;\n",
            to: "    publish_new(&pending, &record_path).map_err(|e| store_err(&record_path, e))?;\n    publish_new(partial, &tree).map_err(|e| store_err(&tree, e))?;\n",
        },
        "snap-collect",
    ),
];

/// Flushes that only a power cut tests (a kill keeps the page cache), and the scenario that must catch each.
pub(super) const POWER_MUTANTS: &[(Mutant, &str)] = &[
    (
        Mutant {
            name: "an atomic write renames its file into place before flushing it",
            file: "shared/src/fsutil.rs",
            from: "        file.flush()?;\n        file.sync_all()?;\n",
            to: "        file.flush()?;\n",
        },
        "snap-collect",
    ),
    (
        Mutant {
            name: "a published name is not flushed to its folder",
            file: "shared/src/fsutil.rs",
            from: "    rename_noreplace(from, to)?;\n    fsync_dir(parent_of(to))\n",
            to: "    rename_noreplace(from, to)\n",
        },
        "snap-push-folder",
    ),
    (
        Mutant {
            name: "a restore names its staged files without flushing them first",
            file: "read/src/target/files.rs",
            from: "        let synced = snap_shared::fsutil::syncfs(&self.path);\n",
            to: "        let synced: io::Result<()> = Ok(());\n",
        },
        "snap-restore",
    ),
];

pub fn run(args: Args) -> Result {
    exec(cargo().args(["build", "--release", "--bins", "-p", "snap-crash"]))?;
    exec(cargo().args(["build", "--release", "--bins"]))?;
    let release = root().join("target/release");
    let mut cmd = Command::new(release.join("snap-crash"));
    cmd.arg("--bin")
        .arg(&release)
        .args(["--points", &args.points]);
    for t in &args.tool {
        cmd.args(["--tool", t]);
    }
    if args.power {
        cmd.arg("--power");
    }
    exec(&mut cmd)?;
    if args.mutants {
        let mutants = match args.power {
            true => POWER_MUTANTS,
            false => MUTANTS,
        };
        for (m, scenario) in mutants {
            mutant(m, scenario, &release.join("snap-crash"), args.power)?;
        }
    }
    Ok(())
}

/// Builds the tools of HEAD with the mutant's change; the sweep of `scenario` must fail.
fn mutant(m: &Mutant, scenario: &str, sweeper: &std::path::Path, power: bool) -> Result {
    let base = apply(m)?;
    exec(
        cargo()
            .args(["build", "--release", "--bins", "--target-dir"])
            .arg(base.join("target"))
            .arg("--manifest-path")
            .arg(base.join("src/Cargo.toml")),
    )?;
    let status = Command::new(sweeper)
        .arg("--bin")
        .arg(base.join("target/release"))
        .args(["--tool", scenario])
        .args(power.then_some("--power"))
        .status()
        .map_err(|e| format!("{}: {e}", sweeper.display()))?;
    m.caught(
        status.code() == Some(1),
        &format!("the {scenario} sweep"),
        status,
    )
}
