//! `cargo xtask`: the project's tasks, in Rust so they run the same everywhere.
//!
//! - `test`  installs what the tests need, then fmt, clippy, every test, `gen --check`
//! - `gen`   man pages and shell completions from every tool's `command()`
//! - `demo`  the main job on a sample tree, in release mode
//! - `bench` speed and memory against rsync, restic, borg and tar+zstd, into docs/benchmarks*.md
//! - `sweep` the fault harness: every crash point of many interleavings, `--mutants`
//! - `crash` each tool killed at every state-changing syscall of a run, `--power` cut, `--mutants`
//! - `fuzz`  the libFuzzer targets of fuzz/ (nightly), finds kept as regressions

mod baseline;
mod bench;
mod bench_coord;
mod bench_diff;
mod bench_disk;
mod bench_live;
mod bench_pack;
mod bench_prune;
mod bench_push;
mod bench_remote;
mod bench_seek;
mod bench_timeline;
mod crash;
mod demo;
mod dist;
mod fuzz;
mod gen_docs;
mod sh;
mod sweep;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "snap's project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install test dependencies, then run fmt, clippy, all tests and gen --check
    Test,
    /// Generate man pages (man/) and completions (completions/)
    Gen {
        /// Fail if the committed files are stale instead of writing them
        #[arg(long)]
        check: bool,
    },
    /// Build in release mode and run a collect round trip on a sample tree
    Demo,
    /// Build a Debian package and a tarball of the release build in target/dist
    Dist,
    /// Measure snap against rsync, restic and borg; write docs/benchmarks.md
    Bench(bench::Args),
    /// The long proof of shared destinations: every crash point of many interleavings, and mutants
    Sweep(sweep::Args),
    /// The crash sweep: each tool killed (or, with --power, its power cut) at every state-changing syscall of a run, checked and rerun
    Crash(crash::Args),
    /// Fuzz the parsers of outside bytes (nightly); what breaks one is kept in fuzz/regressions/
    Fuzz(fuzz::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test => test::run(),
        Task::Gen { check } => gen_docs::run(check),
        Task::Demo => demo::run(),
        Task::Dist => dist::run(),
        Task::Bench(args) => bench::run(args),
        Task::Sweep(args) => sweep::run(args),
        Task::Crash(args) => crash::run(args),
        Task::Fuzz(args) => fuzz::run(args),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}
