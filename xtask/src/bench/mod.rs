//! `cargo xtask bench`: speed and memory of snap against the anchors
//! (rsync, restic, rustic, borg, tar + zstd, qemu-img…) measured in the same
//! run, suite by suite, into docs/benchmarks*.md. This module chooses the
//! suites; `kit` is what they share; each other module is one suite.

mod args;
mod browsing;
mod churn;
mod collect;
mod coord;
mod diff;
pub(crate) mod disk;
mod hypervisors;
pub(crate) mod kit;
mod live;
mod overwrite;
mod pack;
mod paths;
mod prune;
mod push;
mod pushing;
mod remote;
mod savevm;
mod seek;
mod serving;
mod timeline;

use crate::sh::{Result, cargo, ensure_apt, exec, root};
pub use args::Args;
use kit::{TOOLS_APT, empty_trash};

pub fn run(args: Args) -> Result {
    ensure_apt(TOOLS_APT)?;
    run_cmd_build()?;
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| root().join("target/bench"));
    // A run killed or failed midway leaves its trash (tens of GB): it is
    // emptied before and after every run, whatever the suites return.
    empty_trash(&base);
    let result = run_suites(&args, &base);
    empty_trash(&base);
    result
}

fn run_suites(args: &Args, base: &std::path::Path) -> Result {
    if args.suites.iter().any(|s| s == "pack") {
        let corpora: Vec<&str> = args
            .corpora
            .iter()
            .map(String::as_str)
            .filter(|c| *c != "usr-share")
            .collect();
        pack::run(args, base, &corpora)?;
    }
    if args.suites.iter().any(|s| s == "push") {
        push::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "prune") {
        prune::run(args, base)?;
    }
    if args
        .suites
        .iter()
        .any(|s| s == "push" || s == "prune" || s == "coord")
    {
        coord::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "disk") {
        disk::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "hypervisors") {
        hypervisors::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "timeline") {
        timeline::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "collect") {
        collect::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "churn") {
        churn::run(args, base)?;
    }
    if args.suites.iter().any(|s| s == "overwrite") {
        overwrite::run(args, base)?;
    }
    Ok(())
}

fn run_cmd_build() -> Result {
    exec(cargo().args(["build", "--release", "--bins"]))
}
