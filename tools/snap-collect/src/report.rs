//! Talking to people on stderr: warnings, errors, the summary, and a progress
//! line that appears only when stderr is a terminal (cron mail stays clean).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use snap_shared::size::human_bytes;

pub const TOOL: &str = "snap-collect";

pub struct Reporter {
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: bool,
}

impl Reporter {
    pub fn new(quiet: bool, verbose: bool) -> Reporter {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                    .expect("the progress template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Reporter {
            bar,
            quiet,
            verbose,
        }
    }

    fn print(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Something worth knowing that is not a failure.
    pub fn warn(&self, msg: &str) {
        self.print(&format!("{TOOL}: warning: {msg}"));
    }

    /// Something that could not be collected.
    pub fn error(&self, msg: &str) {
        self.print(&format!("{TOOL}: error: {msg}"));
    }

    /// A summary or note; `--quiet` silences it.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            self.print(&format!("{TOOL}: {msg}"));
        }
    }

    /// Per-file detail for `--verbose`.
    pub fn detail(&self, msg: impl FnOnce() -> String) {
        if self.verbose {
            self.print(&format!("{TOOL}: {}", msg()));
        }
    }

    pub fn progress(&self, set: &str, entries: u64, copied: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{set}: {entries} entries, {} copied",
                human_bytes(copied)
            ));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
