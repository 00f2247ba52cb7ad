//! What coordination at the destination costs (part of `--suites push` and
//! `--suites prune`): 100 small archives pushed to a local S3 server (moto)
//! in one `snap-push --all`, then a prune's plan (`--dry-run`) and a real
//! prune, each by this tree's snap and by the baseline commit's (built once,
//! see `baseline`), in alternating order, in the same run. The goal is at
//! most 1.1x the baseline's time for the push and for the plan.
//!
//! The push now takes a shared lock at the bucket (create-only write, the
//! check that the service honours it, a listing of the locks) and publishes
//! each record create-only; the real prune takes an exclusive lock. A dry
//! run takes no lock: it changes nothing.

use std::path::Path;
use std::process::Command;

use super::args::Args;
use super::kit::{Moto, bin, fresh_dir};
use super::kit::{measure, median};
use super::prune::{POLICY, make_archives};
use crate::sh::{Result, ensure_pip};

const ARCHIVES: usize = 100;
const DEST: &str = "s3://bench/coord";

/// Which snap: this tree's release binaries, or the baseline's.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    Now,
    Before,
}

struct Bins {
    before: std::path::PathBuf,
}

impl Bins {
    fn path(&self, which: Which, tool: &str) -> std::path::PathBuf {
        match which {
            Which::Now => bin(tool),
            Which::Before => self.before.join(tool),
        }
    }
}

/// Medians of (push, plan, prune) seconds, for now and before.
type Times = [[Vec<f64>; 3]; 2];

pub fn run(args: &Args, base: &Path) -> Result {
    let scripts = ensure_pip(crate::test::TEST_SERVERS_PIP)?;
    let bins = Bins {
        before: crate::baseline::bin_dir(base, &args.baseline)?,
    };
    let store = base.join("coord-store");
    let state = base.join("coord-state");
    fresh_dir(&store)?;
    make_archives(&store.join("archives"), ARCHIVES)?;
    let mut times: Times = Default::default();
    for run in 0..args.runs {
        for k in 0..2 {
            let which = [Which::Now, Which::Before][(k + run) % 2];
            let slot = &mut times[(which == Which::Before) as usize];
            let moto = Moto::start(&scripts)?;
            let env = moto.env();
            fresh_dir(&state)?;
            let push = |w: Which| {
                let mut c = Command::new(bins.path(w, "snap-push"));
                c.args(["--all", "-q", "--dest", DEST, "--store"])
                    .arg(&store)
                    .arg("--state-dir")
                    .arg(&state)
                    .envs(env.iter().cloned());
                c
            };
            let prune = |w: Which, dry: bool| {
                let mut c = Command::new(bins.path(w, "snap-prune"));
                c.args(["--dest", DEST, "-q", "--state-dir"])
                    .arg(&state)
                    .args(POLICY)
                    .envs(env.iter().cloned());
                if dry {
                    c.arg("--dry-run");
                }
                c
            };
            slot[0].push(measure(&mut push(which))?.0);
            slot[1].push(measure(&mut prune(which, true))?.0);
            slot[2].push(measure(&mut prune(which, false))?.0);
            // The next push starts from an empty bucket again.
            drop(moto);
        }
    }
    let md = render(&times, &args.baseline);
    println!("{md}");
    if !args.no_write {
        write_doc(args, &md)?;
    }
    Ok(())
}

fn render(t: &Times, baseline: &str) -> String {
    let mut md = format!(
        "| step | snap now | snap at {baseline} (no locks) | now / before | goal |\n|---|---|---|---|---|\n"
    );
    let rows = [
        ("push 100 small archives (`snap-push --all`)", "≤ 1.1x"),
        ("prune plan (`snap-prune --dry-run`)", "≤ 1.1x"),
        ("prune (plan + delete)", "–"),
    ];
    for (i, (step, goal)) in rows.iter().enumerate() {
        let (now, before) = (median(&t[0][i]), median(&t[1][i]));
        md.push_str(&format!(
            "| {step} | {now:.2} s | {before:.2} s | {:.2}x | {goal} |\n",
            now / before
        ));
    }
    md
}

fn write_doc(args: &Args, md: &str) -> Result {
    let method = format!(
        "{ARCHIVES} small hourly archives (chains of 24; 5 objects each, the record's signature included: the baseline, from before records were signed, sends 4) pushed by one `snap-push --all` to a\n\
local moto S3 server started fresh for each tool, then planned (`--dry-run`) and pruned with\n\
`--keep-daily 7 --keep-weekly 4 --keep-monthly 12`, by this tree's release binaries and by those of\n\
commit {} (the last before locks at the destination, built by the bench), in alternating order.",
        args.baseline
    );
    super::kit::write_doc(
        "benchmarks-coordination.md",
        "Benchmarks: coordination at the destination",
        args.runs,
        "",
        &method,
        md,
    )
}
