//! Talking to people on stderr: warnings, errors, the summary, and a progress
//! line that appears only when stderr is a terminal (cron mail stays clean).
//! Every line starts with the tool's name, so a pipeline's stderr says who spoke.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Reporter {
    tool: &'static str,
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: bool,
}

impl Reporter {
    pub fn new(tool: &'static str, quiet: bool, verbose: bool) -> Reporter {
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
            tool,
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
        self.print(&format!("{}: warning: {msg}", self.tool));
    }

    /// Something that could not be collected.
    pub fn error(&self, msg: &str) {
        self.print(&format!("{}: error: {msg}", self.tool));
    }

    /// An error the run goes on after, printed as a fatal one would be
    /// (`tool: context: cause`, and its hint line).
    pub fn failed(&self, err: &snap_shared::error::Error) {
        self.print(&err.render(self.tool));
    }

    /// A summary or note; `--quiet` silences it.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            self.print(&format!("{}: {msg}", self.tool));
        }
    }

    /// Per-file detail for `--verbose`.
    pub fn detail(&self, msg: impl FnOnce() -> String) {
        if self.verbose {
            self.print(&format!("{}: {}", self.tool, msg()));
        }
    }

    /// Replaces the progress line (shown only on a terminal); `msg` is built only then.
    pub fn progress(&self, msg: impl FnOnce() -> String) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg());
        }
    }

    /// Whether `--verbose` detail is wanted.
    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
