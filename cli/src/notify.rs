//! The notify hook: a person's command (`notify` in the config, or
//! `--notify CMD`) told what happened, so `notify-send`, `mail` or a webhook
//! plug in without snap knowing about them.
//!
//! The command runs through `sh -c` with the event in its environment:
//! `SNAP_EVENT` (`success`, `failure`, `media-missing` or `low-disk`),
//! `SNAP_MESSAGE` (one line), `SNAP_EXIT` (the exit code), `SNAP_TOOL`, and
//! whatever else the caller adds (`SNAP_SENT_BYTES`, `SNAP_JOB`, `SNAP_SET`,
//! `SNAP_DEST`…). Its output goes to stderr (stdout carries records), it gets
//! no stdin, and it is given a minute; its failure is a warning, never the
//! run's failure. snap-push and snap-backup use it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use snap_shared::error::Exit;

use crate::Reporter;

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

/// One notification.
pub struct Notice<'a> {
    pub tool: &'a str,
    pub event: Event,
    pub message: &'a str,
    pub exit: Exit,
    /// More of the environment, `SNAP_…` names.
    pub vars: Vec<(&'static str, String)>,
}

/// Runs the hook; problems with it are warnings.
pub fn run(cmd: &str, notice: &Notice, report: &Reporter) {
    use std::os::fd::AsFd;
    // Our stderr as the hook's stdout: stdout carries records.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or(Stdio::null(), Stdio::from);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .env("SNAP_EVENT", notice.event.name())
        .env("SNAP_MESSAGE", notice.message)
        .env("SNAP_EXIT", notice.exit.code().to_string())
        .env("SNAP_TOOL", notice.tool)
        .stdin(Stdio::null())
        .stdout(stdout);
    for (k, v) in &notice.vars {
        command.env(k, v);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return report.warn(&format!("notify: cannot run sh: {e}")),
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                return report.warn(&format!("the notify command failed ({status})"));
            }
            Ok(None) if start.elapsed() > GRACE => {
                let _ = child.kill();
                let _ = child.wait();
                return report.warn("the notify command still ran after 60 s; stopped it");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return report.warn(&format!("notify: {e}")),
        }
    }
}
