//! Talking to people on stderr: warnings, errors, the summary, and a progress
//! line that appears only when stderr is a terminal (cron mail stays clean).
//! Every line starts with the tool's name, so a pipeline's stderr says who spoke.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::tally::Tally;

/// Writes a line on stderr. A closed stderr (`2>&1 | head -1`) loses the
/// line but never the exit code: `eprintln!` would panic (exit 101).
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

pub struct Reporter {
    tool: &'static str,
    bar: Option<ProgressBar>,
    /// The label of the last reading and when it began: each phase's rate
    /// and ETA are its own (comparing, then writing).
    phase: Mutex<Option<(String, Instant)>>,
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
            phase: Mutex::new(None),
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
            phase: Mutex::new(None),
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
            Some(bar) => bar.suspend(|| say(line)),
            None => say(line),
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

    /// Replaces the progress line with a reading of done and total
    /// (percent, rate, ETA; see [`Tally`]); built only on a terminal.
    pub fn tally<'a>(&self, reading: impl FnOnce() -> Tally<'a>) {
        let Some(bar) = &self.bar else { return };
        let reading = reading();
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let since = match &*phase {
            Some((label, since)) if label == reading.label => *since,
            _ => {
                let now = Instant::now();
                *phase = Some((reading.label.to_string(), now));
                now
            }
        };
        bar.set_message(reading.render(since.elapsed()));
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
        r.tally(|| Tally::bytes("not kept", 1, None));
        assert_eq!(
            *sink.lock().unwrap(),
            vec!["t: warning: w", "t: error: e", "t: n"]
        );
    }
}
