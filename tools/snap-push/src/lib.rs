//! snap-push: phase 2, the copy that leaves the machine.
//!
//! Reads `archive` records on stdin (as snap-pack writes them), or takes
//! `--file` or `--all`, and copies each archive with its index, `.sha256`
//! and `.json` to every chosen destination: folders, external drives found
//! by UUID or label, S3 and S3-compatible services, GCS, Azure. Large files
//! go in resumable parts; every byte sent is checked against the archive's
//! sha256; the record goes last. One `pushed` record per archive and
//! destination is written on stdout; other records pass through.

pub mod choose;
mod cli;
pub mod disk;
pub mod input;
mod profile;
pub mod push;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;

use snap_cli::Reporter;
use snap_dest::upload::Tuning;
use snap_dest::{Dest, DestSpec, Held, LockOptions, Mode, Reach, Throttle, settings};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::{Item, RecordWriter};
use snap_shared::lock::StoreLock;
use snap_shared::record::Record;
use snap_shared::size::{Floor, human_bytes};
use snap_shared::store::{self, Store};

pub use crate::cli::{Cli, TOOL};
use crate::input::Input;
use crate::push::Options;
use snap_cli::notify::{self, Event, Notice};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.loudness, run)
}

/// Totals of a run, for the summary and the hook.
#[derive(Default)]
struct Totals {
    /// Inputs pushed: archives and disk snapshots.
    archives: u64,
    /// Of which disk snapshots.
    disks: u64,
    pushed: u64,
    sent: u64,
    skipped: u64,
    low_disk: bool,
}

/// The whole run, then the notification.
pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    if let Some(name) = &cli.profile {
        return profile::publish(cli, name, report);
    }
    let loaded = LoadedConfig::load_optional(cli.config.as_deref());
    let hook = cli.notify.clone().or_else(|| {
        loaded
            .as_ref()
            .ok()
            .and_then(|c| c.as_ref())
            .and_then(|c| c.config.notify.clone())
    });
    let mut totals = Totals::default();
    let outcome = loaded.and_then(|l| push_all(cli, l.as_ref(), report, &mut totals));
    if let Some(cmd) = hook.filter(|_| !cli.dry_run && !cli.no_notify) {
        let (exit, message) = match &outcome {
            Ok((exit, summary)) => (*exit, summary.clone()),
            Err(e) => (e.exit, e.to_string()),
        };
        let notice = Notice {
            tool: TOOL,
            event: Event::of(exit, totals.low_disk),
            message: &message,
            exit,
            vars: vec![("SNAP_SENT_BYTES", totals.sent.to_string())],
        };
        notify::run(&cmd, &notice, report);
    }
    outcome.map(|(exit, _)| exit)
}

/// Pushes one input item to one destination.
type PushOne<'a> = dyn Fn(&snap_dest::Dest) -> Result<push::Outcome> + 'a;

/// Reads the input, chooses destinations, pushes everything; returns the exit code and the summary.
fn push_all(
    cli: &Cli,
    loaded: Option<&LoadedConfig>,
    report: &Reporter,
    totals: &mut Totals,
) -> Result<(Exit, String)> {
    let store = Store::new(store::locate(
        cli.store.as_deref(),
        LoadedConfig::store(loaded),
    ));
    let input = if !cli.files.is_empty() {
        input::named(&cli.files)?
    } else if cli.all {
        input::all(&store, cli.set.as_deref())?
    } else if std::io::stdin().is_terminal() {
        return Err(Error::usage("", "nothing to push")
            .with_hint("pipe snap-pack's records in, or give --file PATH or --all"));
    } else {
        input::from_stdin()?
    };
    let specs = destinations(cli, loaded)?;
    let rt = snap_dest::runtime()?;
    let reach = Reach {
        retries: cli.retries,
        retry_timeout: Duration::from_secs(cli.retry_timeout),
    };
    let chosen = choose::choose(specs.clone(), !cli.dests.is_empty(), &rt, &reach, report)?;
    let state_dir = cli
        .state_dir
        .clone()
        .unwrap_or_else(snap_dest::default_state_dir);
    let _journals = lock_journals(&chosen.dests, &state_dir)?;
    let (dests, held) = hold_all(&chosen.dests, cli.dry_run, report)?;
    let tuning = Tuning {
        part_size: cli.part_size,
        parallel: cli.parallel as usize,
        throttle: cli.bwlimit.map(|r| Arc::new(Throttle::new(r))),
        state_dir,
    };
    let cli_floor = match &cli.min_free {
        Some(f) => Some(Floor::parse(f).map_err(|e| Error::usage("--min-free", e))?),
        None => None,
    };
    let mut first_exit: Option<Exit> = None;
    let mut dead = vec![false; dests.len()];
    // Not `stdout().lock()` for the whole run: the fault harness runs
    // several machines' tools in one process.
    let mut out = RecordWriter::new(std::io::stdout());
    let seen: Vec<std::cell::RefCell<std::collections::HashSet<String>>> =
        dests.iter().map(|_| Default::default()).collect();
    let listed: Vec<std::cell::RefCell<std::collections::HashMap<_, _>>> =
        dests.iter().map(|_| Default::default()).collect();
    // What was sent, archives that failed later included (not for a dry run).
    let sent = std::cell::Cell::new(0u64);
    for item in input {
        let one = |dest: &snap_dest::Dest| Options {
            tuning: tuning.clone(),
            verify: cli.verify,
            dry_run: cli.dry_run,
            floor: cli_floor
                .or(floor_of(&specs, dest))
                .unwrap_or(Floor::DEFAULT),
            seen: &seen[dests.iter().position(|d| d.url == dest.url).unwrap_or(0)],
            listed: &listed[dests.iter().position(|d| d.url == dest.url).unwrap_or(0)],
            sent: &sent,
        };
        let push_one: Box<PushOne> = match item {
            Input::Pass(Item::Record(rec)) => {
                out.write(&rec)?;
                continue;
            }
            Input::Pass(Item::Other { line, .. }) => {
                out.write_line(&line)?;
                continue;
            }
            Input::Archive(local) => {
                totals.archives += 1;
                Box::new(move |dest| push::push(&local, dest, &one(dest), report))
            }
            Input::Disk(rec) if rec.method != "blocks" => {
                report.warn(&format!(
                    "{}/{}: a {} snapshot lives inside the image and is not sent; \
snap-disk create --method blocks makes one that can travel",
                    rec.disk, rec.name, rec.method
                ));
                out.write(&snap_shared::record::Record::DiskSnapshot(*rec))?;
                continue;
            }
            Input::Disk(rec) => {
                totals.archives += 1;
                totals.disks += 1;
                Box::new(move |dest| disk::push(&rec, dest, &one(dest), report))
            }
        };
        for (i, dest) in dests.iter().enumerate() {
            if dead[i] {
                continue;
            }
            match push_one(dest) {
                Ok(done) => {
                    totals.sent += done.sent;
                    totals.skipped += done.skipped;
                    if let Some(rec) = done.record {
                        totals.pushed += 1;
                        out.write(&Record::Pushed(rec))?;
                    }
                }
                Err(e) => {
                    report.failed(&e);
                    totals.low_disk |= e.cause.starts_with("low on space");
                    first_exit.get_or_insert(e.exit);
                    // A bad local archive spoils only itself; any other
                    // failure, the destination for the rest of the run.
                    if !matches!(e.exit, Exit::Data | Exit::NoInput) {
                        dead[i] = true;
                    }
                }
            }
        }
    }
    for h in held {
        if let Err(why) = h.release() {
            report.warn(&why);
        }
    }
    if !cli.dry_run {
        totals.sent = sent.get();
    }
    let summary = summary(cli, totals, &chosen.dests);
    report.note(&summary);
    for e in &chosen.absent {
        report.failed(e);
    }
    let absent = (!chosen.absent.is_empty()).then_some(Exit::TempFail);
    Ok((first_exit.or(absent).unwrap_or(Exit::Ok), summary))
}

/// The destinations asked for: `--dest`, else the config's.
fn destinations(cli: &Cli, loaded: Option<&LoadedConfig>) -> Result<Vec<DestSpec>> {
    let configured = settings::from_config(loaded)?;
    if !cli.dests.is_empty() {
        return cli
            .dests
            .iter()
            .map(|d| settings::resolve_arg(d, &configured).map_err(|e| e.within("--dest")))
            .collect();
    }
    if configured.is_empty() {
        return Err(Error::usage("", "no destination").with_hint(
            "give --dest PATH|URL, or list \"destinations\" in the config (see snap-push --help)",
        ));
    }
    Ok(configured)
}

/// The configured floor of a destination, if it has one.
fn floor_of(specs: &[DestSpec], dest: &Dest) -> Option<Floor> {
    specs
        .iter()
        .find(|s| s.name == dest.name)
        .and_then(|s| s.min_free)
}

/// One lock per destination in the state folder: two pushes on this
/// machine to one destination would share its journals; the second waits.
fn lock_journals(dests: &[Dest], state_dir: &std::path::Path) -> Result<Vec<StoreLock>> {
    dests
        .iter()
        .map(|d| d.local_lock(state_dir, TOOL))
        .collect()
}

/// A shared lock at each destination, so that machines push side by side
/// while no prune runs; each destination is fenced by its lock (nothing is
/// published once the lock is lost). A dry run changes nothing and locks nothing.
fn hold_all(dests: &[Dest], dry_run: bool, report: &Reporter) -> Result<(Vec<Dest>, Vec<Held>)> {
    if dry_run {
        return Ok((dests.to_vec(), Vec::new()));
    }
    let mut held = Vec::new();
    let mut fenced = Vec::new();
    for d in dests {
        let (dest, h) = d.hold(Mode::Shared, TOOL, &LockOptions::default())?;
        for n in &h.notes {
            report.warn(&format!("destination {}: {n}", d.name));
        }
        fenced.push(dest);
        held.push(h);
    }
    Ok((fenced, held))
}

/// The line that ends a run.
fn summary(cli: &Cli, t: &Totals, dests: &[Dest]) -> String {
    let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
    let what = match (t.disks, t.archives - t.disks) {
        (0, _) => "archive(s)",
        (_, 0) => "disk snapshot(s)",
        _ => "archive(s) and disk snapshot(s)",
    };
    if cli.dry_run {
        return format!(
            "dry run: would send {} of {} {what} to {}; {} already there",
            human_bytes(t.sent),
            t.archives,
            names.join(", "),
            human_bytes(t.skipped)
        );
    }
    format!(
        "{} {what} to {}: sent {}, {} already there",
        t.pushed,
        names.join(", "),
        human_bytes(t.sent),
        human_bytes(t.skipped)
    )
}
