//! Running the snap tools: snap-backup is the composer of the design's
//! pipeline, not a seventh tool, so it runs the tools as processes, as the
//! shell script it replaced did, and reads their exit codes and records.
//!
//! A tool is taken from beside snap-backup's own executable (the package
//! puts all seven in /usr/bin, `cargo build` in target/…), else from PATH.
//! The config and the store go to them as `SNAP_CONFIG` and `SNAP_STORE`.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use serde_json::Value;

use snap_shared::error::{Error, Exit, Result};

/// How the tools are started.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub config: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub quiet: bool,
}

/// What a tool did: its exit code and the records it wrote.
#[derive(Debug, Clone, Default)]
pub struct Ran {
    pub exit: i32,
    pub records: Vec<Value>,
}

impl Tools {
    /// The tool's program: beside this executable, else by name on PATH.
    pub fn program(tool: &str) -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(tool)))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(tool))
    }

    /// A command for `tool` with the config and store set; stdin is closed.
    pub fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(Self::program(tool));
        if let Some(config) = &self.config {
            c.env("SNAP_CONFIG", config);
        }
        if let Some(store) = &self.store {
            c.env("SNAP_STORE", store);
        }
        c.stdin(Stdio::null());
        c
    }

    /// Runs `tool ARGS`, its stderr going to ours, its records read.
    pub fn run(&self, tool: &str, args: &[String]) -> Result<Ran> {
        self.run_as(tool, args, self.quiet)
    }

    /// [`Tools::run`], with `--quiet` when `quiet`.
    pub fn run_as(&self, tool: &str, args: &[String], quiet: bool) -> Result<Ran> {
        let mut c = self.command(tool);
        c.args(args).stdout(Stdio::piped());
        if quiet {
            c.arg("--quiet");
        }
        let mut child = c.spawn().map_err(|e| spawn_error(tool, e))?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            stdout
                .read_to_string(&mut out)
                .map_err(|e| Error::io_ctx(tool, e))?;
        }
        let status = child.wait().map_err(|e| Error::io_ctx(tool, e))?;
        let records = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        Ok(Ran {
            exit: code(status),
            records,
        })
    }
}

/// An exit status as a shell gives it: the code, or 128 + the signal.
pub fn code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(70)
}

/// A tool that cannot be started (not installed): exit 69 naming it.
pub fn spawn_error(tool: &str, e: std::io::Error) -> Error {
    Error::new(Exit::Unavailable, format!("cannot run {tool}"), e)
        .with_hint("install the snap tools beside snap-backup, or on PATH")
}

/// The exit code as the tools' type (an unknown code is a failure).
pub fn exit_of(code: i32) -> Exit {
    Exit::from_code(code).unwrap_or(Exit::Software)
}
