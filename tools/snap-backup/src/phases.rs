//! The phases by hand (no `--due`): both as one pipeline
//! (`snap-collect | snap-pack | snap-push`), or phase 1 or phase 2 alone.
//! snap-push notifies about itself; a failure before it is told here.

use std::process::Stdio;
use std::time::Duration;

use snap_cli::Reporter;
use snap_cli::notify::{self, Event, Notice};
use snap_shared::error::{Error, Exit, Result};

use crate::cli::{Cli, TOOL};
use crate::tools::{Tools, code, exit_of, spawn_error};

/// Phase 1: snap-collect, every set.
pub fn collect_only(tools: &Tools, hook: Option<&str>, report: &Reporter) -> Result<Exit> {
    let status = tools
        .command("snap-collect")
        .status()
        .map_err(|e| spawn_error("snap-collect", e))?;
    Ok(told(hook, "snap-collect", code(status), report))
}

/// Phase 2: pack the newest snapshot of each set (one packed before is left
/// as it is), then push every archive a destination lacks; an absent
/// destination (75) is tried again every 5 s for up to `--wait` seconds.
pub fn external_only(
    cli: &Cli,
    tools: &Tools,
    hook: Option<&str>,
    report: &Reporter,
) -> Result<Exit> {
    let mut waited = 0;
    loop {
        let mut pack = tools.command("snap-pack");
        pack.arg("--latest").stdout(Stdio::null());
        if cli.incremental {
            pack.arg("--incremental");
        }
        let packed = code(pack.status().map_err(|e| spawn_error("snap-pack", e))?);
        if packed > 1 {
            return Ok(told(hook, "snap-pack", packed, report));
        }
        let mut push = tools.command("snap-push");
        push.arg("--all");
        if let Some(h) = hook {
            push.args(["--notify", h]);
        }
        let pushed = code(push.status().map_err(|e| spawn_error("snap-push", e))?);
        if pushed != Exit::TempFail.code() || waited >= cli.wait {
            return Ok(exit_of(if pushed == 0 { packed } else { pushed }));
        }
        std::thread::sleep(Duration::from_secs(5));
        waited += 5;
    }
}

/// Both phases as one pipeline; the exit is the first failing stage's
/// (as `set -o pipefail` would give), or 1 when one finished with errors.
pub fn both(cli: &Cli, tools: &Tools, hook: Option<&str>, report: &Reporter) -> Result<Exit> {
    let mut collect = tools
        .command("snap-collect")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("snap-collect", e))?;
    let mut pack = tools.command("snap-pack");
    if cli.incremental {
        pack.arg("--incremental");
    }
    let mut pack = pack
        .stdin(collect.stdout.take().map_or(Stdio::null(), Stdio::from))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("snap-pack", e))?;
    let mut push = tools.command("snap-push");
    if let Some(h) = hook {
        push.args(["--notify", h]);
    }
    let mut push = push
        .stdin(pack.stdout.take().map_or(Stdio::null(), Stdio::from))
        .spawn()
        .map_err(|e| spawn_error("snap-push", e))?;
    let wait = |c: &mut std::process::Child, tool: &str| {
        c.wait().map(code).map_err(|e| Error::io_ctx(tool, e))
    };
    let codes = [
        ("snap-collect", wait(&mut collect, "snap-collect")?),
        ("snap-pack", wait(&mut pack, "snap-pack")?),
        ("snap-push", wait(&mut push, "snap-push")?),
    ];
    if let Some((tool, c)) = codes.iter().find(|(_, c)| *c > 1) {
        return Ok(match *tool {
            "snap-push" => exit_of(*c),
            _ => told(hook, tool, *c, report),
        });
    }
    Ok(match codes.iter().any(|(_, c)| *c == 1) {
        true => Exit::Partial,
        false => Exit::Ok,
    })
}

/// A stage's exit, telling the hook when it failed.
fn told(hook: Option<&str>, tool: &str, c: i32, report: &Reporter) -> Exit {
    let exit = exit_of(c);
    if c > 1 {
        failure(hook, &format!("{tool} failed (exit {c})"), exit, report);
    }
    exit
}

/// Tells the hook of a failure that no tool told it of.
pub fn failure(hook: Option<&str>, message: &str, exit: Exit, report: &Reporter) {
    if let Some(cmd) = hook {
        let notice = Notice {
            tool: TOOL,
            event: Event::Failure,
            message,
            exit,
            vars: vec![("SNAP_SENT_BYTES", "0".to_string())],
        };
        notify::run(cmd, &notice, report);
    }
}
