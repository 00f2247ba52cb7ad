//! snap-cli: how every snap tool talks to people.
//!
//! snap-shared holds what the tools agree on and never prints; this crate is
//! the other half that two or more tools need: the stderr [`Reporter`]
//! (warnings, errors, notes, a progress line only on a terminal), the mapping
//! of clap's outcomes to sysexits codes, and the one place a fatal error is
//! printed as `tool: context: cause`; and the notify hook (`notify`).

pub mod notify;
mod report;
mod tally;

pub use report::{Reporter, say};
pub use tally::Tally;

use snap_shared::error::{Error, Exit};

/// Prints a clap error or help; usage errors exit 64 (clap's own 2 is not a sysexits code).
fn clap_exit(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ => Exit::Usage.code(),
    }
}

/// `--quiet` and `--verbose`, the same in every tool (flattened into its
/// clap struct). Each tool says what its `--verbose` names with
/// `#[command(mut_arg("verbose", |a| a.help(…)))]`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Loudness {
    /// Print only warnings and errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more on stderr
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// A whole tool: parses `args` as `C` (usage errors exit 64), makes the
/// reporter from the [`Loudness`] that `loudness` reads, runs, and
/// returns the exit code, printing a fatal error once.
pub fn main<C: clap::Parser>(
    tool: &'static str,
    args: impl IntoIterator<Item = std::ffi::OsString>,
    loudness: impl Fn(&C) -> Loudness,
    run: impl FnOnce(&C, &Reporter) -> Result<Exit, Error>,
) -> i32 {
    let cli = match C::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    let Loudness { quiet, verbose } = loudness(&cli);
    let report = Reporter::new(tool, quiet, verbose);
    let outcome = run(&cli, &report);
    finish(tool, &report, outcome)
}

/// The exit code of a finished run, printing a fatal error once, at the top.
fn finish(tool: &str, report: &Reporter, outcome: Result<Exit, Error>) -> i32 {
    report.finish();
    match outcome {
        Ok(exit) => exit.code(),
        Err(err) => {
            say(&err.render(tool));
            err.exit.code()
        }
    }
}
