//! snap-prune: retention for the store and every destination.
//!
//! Applies a restic-style policy (`--keep-last`, `--keep-hourly` … `--keep-yearly`,
//! `--keep-within`, `--keep-tag`, or the config's `retention`) to each set of
//! snapshots in the store and of archives at destinations, keeps every base a
//! kept incremental archive needs, and removes the rest, crash-safely. One
//! `pruned` record per snapshot or archive says what happened and why.

pub mod away;
mod cli;
pub mod cost;
pub mod disks;
mod forget;
pub mod free;
pub mod images;
pub mod intent;
mod jobs;
pub mod plan;
mod prune;
mod run;
pub mod target;

pub use cli::{Cli, KeepCount, TOOL};
pub use prune::Sink;
pub use run::{Forget, forget, run_to};

use std::ffi::OsString;

use clap::CommandFactory;

use snap_cli::Reporter;
use snap_shared::error::{Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;

pub use snap_shared::retention::{policy, rules};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.loudness, run)
}

/// The whole run: every job, then the exit code of the first failure.
pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    // Not `stdout().lock()` for the whole run: the fault harness runs
    // several machines' tools in one process.
    let mut out = RecordWriter::new(std::io::stdout());
    run_to(cli, report, &mut |r| out.write(&Record::Pruned(r)))
}
