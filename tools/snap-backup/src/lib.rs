//! snap-backup: the whole backup the config describes, for cron, systemd
//! timers, the udev rule and apt's hook.
//!
//! It is the composer of docs/design.md's pipeline, not a seventh tool: it
//! owns no data and runs the six tools as processes (`tools`), reading their
//! exit codes and records. `--due` (`due`) runs what the config's schedule
//! says is due; without it, both phases run now, or one (`phases`); and
//! `--pre-apt` (`pre_apt`) takes apt's rollback point.

mod cli;
mod due;
mod phases;
mod pre_apt;
mod tools;

pub use cli::{Cli, TOOL};
pub use pre_apt::changes as apt_changes;

use std::ffi::OsString;

use clap::CommandFactory;

use snap_cli::Reporter;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Exit, Result};

use crate::tools::Tools;

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.loudness, run)
}

/// Dispatches to the mode the flags choose.
pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    let tools = Tools {
        config: cli.config.clone(),
        store: cli.store.clone(),
        quiet: cli.loudness.quiet,
    };
    if cli.pre_apt {
        // apt goes on whatever happens: not even a bad config stops it.
        let loaded = LoadedConfig::load_optional(cli.config.as_deref())
            .ok()
            .flatten();
        return pre_apt::run(&tools, loaded.as_ref(), report);
    }
    let loaded = match LoadedConfig::load_optional(cli.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            // A config that does not load is a failure the hook hears of.
            phases::failure(cli.notify.as_deref(), &e.to_string(), e.exit, report);
            return Err(e);
        }
    };
    let hook = cli
        .notify
        .clone()
        .or_else(|| loaded.as_ref().and_then(|c| c.config.notify.clone()));
    let hook = hook.as_deref();
    if cli.due {
        due::run(cli, &tools, loaded.as_ref(), hook, report)
    } else if cli.collect_only {
        phases::collect_only(&tools, hook, report)
    } else if cli.external_only {
        phases::external_only(cli, &tools, hook, report)
    } else {
        phases::both(cli, &tools, hook, report)
    }
}
