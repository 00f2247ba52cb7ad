//! `cargo xtask`: the project's tasks, in Rust so they run the same everywhere.
//!
//! - `test`  installs what the tests need, then fmt, clippy, every test, `gen --check`
//! - `gen`   man pages and shell completions from every tool's `command()`
//! - `dist`  a Debian package and a tarball (`--debug`: of the debug build)
//! - `demo`  the main job on a sample tree, in release mode
//! - `bench` speed and memory against rsync, restic, borg and tar+zstd, into docs/benchmarks*.md
//! - `interleave` the fault harness: every crash point of many interleavings, `--mutants`
//! - `crash` each tool killed at every state-changing syscall of a run, `--power` cut, `--mutants`
//! - `fuzz`  the libFuzzer targets of proof/fuzz/ (nightly), finds kept as regressions

mod baseline;
mod bench;
mod demo;
mod dist;
mod gen_docs;
mod package_check;
mod proof;
mod sh;
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
    /// Install test dependencies, then run fmt, clippy, gen --check, all tests, and the package check
    Test,
    /// Generate man pages (man/) and completions (completions/)
    Gen {
        /// Fail if the committed files are stale instead of writing them
        #[arg(long)]
        check: bool,
    },
    /// Build in release mode and run a collect round trip on a sample tree
    Demo,
    /// The package check of `test` alone: the debug build's .deb through lintian, dpkg -i, apt's hook and dpkg --purge
    PackageCheck,
    /// Build a Debian package and a tarball of the release build in target/dist
    Dist(dist::Args),
    /// Measure snap against rsync, restic and borg; write docs/benchmarks.md
    Bench(bench::Args),
    /// The long proof of shared destinations: every crash point of many interleavings, and mutants
    #[command(alias = "sweep")]
    Interleave(proof::interleave::Args),
    /// The crash sweep: each tool killed (or, with --power, its power cut) at every state-changing syscall of a run, checked and rerun
    Crash(proof::crash::Args),
    /// Fuzz the parsers of outside bytes (nightly); what breaks one is kept in proof/fuzz/regressions/
    Fuzz(proof::fuzz::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test => test::run(),
        Task::Gen { check } => gen_docs::run(check),
        Task::Demo => demo::run(),
        Task::Dist(args) => dist::run(args),
        Task::PackageCheck => package_check::run(),
        Task::Bench(args) => bench::run(args),
        Task::Interleave(args) => proof::interleave::run(args),
        Task::Crash(args) => proof::crash::run(args),
        Task::Fuzz(args) => proof::fuzz::run(args),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e}");
        std::process::exit(1);
    }
}
