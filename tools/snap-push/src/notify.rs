//! `--notify CMD`: tell a person how a push went.
//!
//! The command runs through `sh -c` once at the end of every run, with the
//! outcome in its environment, so `notify-send`, `mail` or a webhook can be
//! plugged in without snap knowing about them:
//!
//! - `SNAP_EVENT`: `success`, `failure`, `media-missing` or `low-disk`
//! - `SNAP_MESSAGE`: one line (the error, or the summary)
//! - `SNAP_EXIT`: the exit code snap-push is about to return
//! - `SNAP_SENT_BYTES`: bytes sent
//! - `SNAP_TOOL`: `snap-push`
//!
//! Its output goes to stderr (stdout carries records), it gets no stdin, and
//! it is given a minute; its failure is a warning, never the push's failure.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use snap_cli::Reporter;
use snap_shared::error::Exit;

/// What happened, for the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Success,
    Failure,
    MediaMissing,
    LowDisk,
}

impl Event {
    pub fn name(self) -> &'static str {
        match self {
            Event::Success => "success",
            Event::Failure => "failure",
            Event::MediaMissing => "media-missing",
            Event::LowDisk => "low-disk",
        }
    }

    /// The event of a run that ends with `exit`; `low_disk` when a destination was too full.
    pub fn of(exit: Exit, low_disk: bool) -> Event {
        match exit {
            Exit::Ok => Event::Success,
            _ if low_disk => Event::LowDisk,
            Exit::TempFail => Event::MediaMissing,
            _ => Event::Failure,
        }
    }
}

const GRACE: Duration = Duration::from_secs(60);

/// Runs the hook; problems with it are warnings.
pub fn run(cmd: &str, event: Event, message: &str, exit: Exit, sent: u64, report: &Reporter) {
    use std::os::fd::AsFd;
    // Our stderr as the hook's stdout: stdout carries records.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or(Stdio::null(), Stdio::from);
    let child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("SNAP_EVENT", event.name())
        .env("SNAP_MESSAGE", message)
        .env("SNAP_EXIT", exit.code().to_string())
        .env("SNAP_SENT_BYTES", sent.to_string())
        .env("SNAP_TOOL", crate::cli::TOOL)
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return report.warn(&format!("--notify: cannot run sh: {e}")),
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                return report.warn(&format!("--notify command failed ({status})"));
            }
            Ok(None) if start.elapsed() > GRACE => {
                let _ = child.kill();
                let _ = child.wait();
                return report.warn("--notify command still running after 60 s; stopped it");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return report.warn(&format!("--notify: {e}")),
        }
    }
}
