//! Talking to people on stderr: warnings, errors, the summary, and a progress
//! line that appears only when stderr is a terminal (cron mail stays clean).
//! Every line starts with the tool's name, so a pipeline's stderr says who spoke.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Reporter {
    tool: &'static str,
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: bool,
    /// Where lines go instead of stderr (a server shows them on a page).
    sink: Option<Arc<Mutex<Vec<String>>>>,
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
            sink: None,
        }
    }

    /// A reporter whose lines (warnings, errors, notes; never progress) are
    /// kept in `sink` instead of printed, for a caller that shows them elsewhere.
    pub fn capturing(tool: &'static str, sink: Arc<Mutex<Vec<String>>>) -> Reporter {
        Reporter {
            tool,
            bar: None,
            quiet: false,
            verbose: false,
            sink: Some(sink),
        }
    }

    fn print(&self, line: &str) {
        if let Some(sink) = &self.sink {
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.to_string());
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A capturing reporter keeps every line, tool-prefixed, and prints none.
    #[test]
    fn capturing_keeps_the_lines() {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let r = Reporter::capturing("t", sink.clone());
        r.warn("w");
        r.error("e");
        r.note("n");
        r.progress(|| "not kept".into());
        assert_eq!(
            *sink.lock().unwrap(),
            vec!["t: warning: w", "t: error: e", "t: n"]
        );
    }
}
