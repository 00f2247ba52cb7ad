//! snap-cli: how every snap tool talks to people.
//!
//! snap-shared holds what the tools agree on and never prints; this crate is
//! the other half that two or more tools need: the stderr [`Reporter`]
//! (warnings, errors, notes, a progress line only on a terminal), the mapping
//! of clap's outcomes to sysexits codes, and the one place a fatal error is
//! printed as `tool: context: cause`.

mod report;

pub use report::Reporter;

use snap_shared::error::{Error, Exit};

/// Prints a clap error or help; usage errors exit 64 (clap's own 2 is not a sysexits code).
pub fn clap_exit(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        _ => Exit::Usage.code(),
    }
}

/// The exit code of a finished run, printing a fatal error once, at the top.
pub fn finish(tool: &str, report: &Reporter, outcome: Result<Exit, Error>) -> i32 {
    report.finish();
    match outcome {
        Ok(exit) => exit.code(),
        Err(err) => {
            eprintln!("{}", err.render(tool));
            err.exit.code()
        }
    }
}
