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
pub mod disk;
pub mod input;
pub mod notify;
pub mod push;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, Parser};

use snap_cli::Reporter;
use snap_dest::upload::Tuning;
use snap_dest::{Dest, DestSpec, Held, LockOptions, Mode, Reach, Throttle, settings};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::{Item, RecordWriter};
use snap_shared::lock::StoreLock;
use snap_shared::record::Record;
use snap_shared::size::{Floor, human_bytes, parse_size};
use snap_shared::store::{self, Store};

use crate::input::Input;
use crate::notify::Event;
use crate::push::Options;

/// The name on every message.
pub const TOOL: &str = "snap-push";

/// Copy archives to external drives and object storage.
#[derive(Debug, Parser)]
#[command(
    name = "snap-push",
    version,
    about = "Copy archives to external drives and object storage (S3, GCS, Azure): resumable, throttled, verified",
    long_about = "Copy archives made by snap-pack to destinations: a folder, an external drive \
found by filesystem UUID or label, or a bucket on S3 (and S3-compatible services: MinIO, Backblaze \
B2, Wasabi), GCS or Azure. Reads `archive` records on stdin, or takes --file or --all. Each archive \
goes as <dest>/<set>/<id>.tar.zst[.age] with its .index.zst, .sha256 and .json, the record last, so \
a destination never lists an archive that is not all there. Large files go in parallel parts; an \
interrupted push (kill, network cut, drive pulled) resumes without sending again what the destination \
already has. Every byte sent is checked against the archive's sha256 and every object's size is \
checked at the destination; --verify also reads each object back. One `pushed` record per archive and \
destination is written on stdout; records of other kinds pass through.\n\n\
Destinations: --dest (repeatable) takes a path, file://PATH, uuid://UUID/FOLDER, label://LABEL/FOLDER, \
s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX, or the name of a configured destination. \
Without --dest, the config's \"destinations\" are used by \"priority\" (lowest first): every \
destination of the first priority with one present is pushed to; lower priorities are the fallback. \
Bucket settings (endpoint, region, credentials) come from the config's \"options\" and the usual \
AWS_*, GOOGLE_* and AZURE_* environment variables; they never appear in records or messages. \
S3-compatible services take an endpoint and a region in \"options\": MinIO {\"endpoint\": \
\"http://nas:9000\", \"region\": \"us-east-1\", \"allow_http\": \"true\"}; Backblaze B2 {\"endpoint\": \
\"https://s3.eu-central-003.backblazeb2.com\", \"region\": \"eu-central-003\"}; Wasabi {\"endpoint\": \
\"https://s3.eu-central-1.wasabisys.com\", \"region\": \"eu-central-1\"}; keys in access_key_id and \
secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. A configured destination looks like \
{\"name\": \"t9\", \"uuid\": \"2F3A-11C4\", \"path\": \"backups\", \"priority\": 1} or {\"name\": \"b2\", \
\"url\": \"s3://bucket/prefix\", \"options\": {…}}.\n\n\
Exit codes: 0 done; 64 usage; 65 an archive or a pushed object failed its check; 66 an archive's files \
are missing; 69 a destination is unreachable; 73 a destination is too full or holds another archive \
of the same name; 74 I/O error; 75 a destination is absent (drive not plugged in) or busy; 77 permission \
denied; 78 bad config.",
    after_help = "Examples:\n  snap-collect | snap-pack | snap-push                  a whole backup, to the configured destinations\n  snap-pack --snapshot data/latest | snap-push --dest /media/me/T9/backups\n  snap-push --all --dest uuid://2F3A-11C4/backups      everything the drive lacks, when it is plugged in\n  snap-push --all --dest s3://my-bucket/snap --bwlimit 5M --verify\n  snap-push --all --dry-run                            what would be sent, and how much"
)]
pub struct Cli {
    /// A destination: path, uuid://, label://, s3://, gs://, az://, sftp:// URL, rclone:REMOTE:PATH, or a configured name (repeatable) [default: the config's destinations]
    #[arg(short, long = "dest", value_name = "DEST", action = ArgAction::Append)]
    pub dests: Vec<String>,

    /// An archive to push (its data file or its .json record), or a disk snapshot (its record, disks/DISK/NAME.json) (repeatable; default: records on stdin)
    #[arg(short, long = "file", value_name = "PATH", action = ArgAction::Append, conflicts_with = "all")]
    pub files: Vec<PathBuf>,

    /// Push every archive in the store that a destination lacks
    #[arg(short, long)]
    pub all: bool,

    /// With --all, only the archives of this set
    #[arg(long, value_name = "SET", requires = "all")]
    pub set: Option<String>,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store directory, for --all [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Read every object back from the destination and check its sha256
    #[arg(long)]
    pub verify: bool,

    /// Say what would be sent and how many bytes; send nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Limit the sending rate, in bytes per second: 500K, 10M (binary units)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bwlimit: Option<u64>,

    /// Parts of one file sent at once to a bucket
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,

    /// Size of the parts large files are sent in (at least 5M for S3) [default: 8M to buckets, 16M to folders]
    #[arg(long, value_name = "SIZE", value_parser = parse_part_size)]
    pub part_size: Option<u64>,

    /// Retries of a failed request to a bucket, with exponential backoff
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub retries: usize,

    /// Give up retrying a request after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub retry_timeout: u64,

    /// Free space a folder destination must keep after the push, e.g. 2GiB or 5% [default: the destination's min_free, else 1GiB or 5%, whichever is smaller]
    #[arg(long, value_name = "SIZE")]
    pub min_free: Option<String>,

    /// Run CMD (with sh -c) at the end with SNAP_EVENT=success|failure|media-missing|low-disk and SNAP_MESSAGE [default: the config's "notify"]
    #[arg(long, value_name = "CMD")]
    pub notify: Option<String>,

    /// Where resume journals are kept [default: $XDG_STATE_HOME/snap/push, else ~/.local/state/snap/push]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Print only warnings and errors on stderr
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Say what happens to each archive at each destination
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the rate must be more than 0".into()),
        n => Ok(n),
    }
}

fn parse_part_size(s: &str) -> std::result::Result<u64, String> {
    match parse_size(s)? {
        n if n < 1 << 20 => Err("parts must be at least 1M".into()),
        n => Ok(n),
    }
}

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| (c.quiet, c.verbose), run)
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
    if let Some(cmd) = hook.filter(|_| !cli.dry_run) {
        let (exit, message) = match &outcome {
            Ok((exit, summary)) => (*exit, summary.clone()),
            Err(e) => (e.exit, e.to_string()),
        };
        notify::run(
            &cmd,
            Event::of(exit, totals.low_disk),
            &message,
            exit,
            totals.sent,
            report,
        );
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
