//! snap-collect: phase 1 of a snap backup.
//!
//! Collects configured source sets (or paths named on the command line) into
//! the local store as browsable snapshots: `sets/<set>/<id>/` is a plain copy,
//! files unchanged since the previous snapshot are hard links into it, like
//! `rsync --link-dest`. Writes one `snapshot` record per set on stdout.
//!
//! `main.rs` only calls [`main`]; the work lives in the modules so that tests
//! run it without spawning a process.

pub mod batch;
pub mod collect;
pub mod commit;
pub mod copy;
pub mod decide;
pub mod exclude;
pub mod items;
pub mod meta;
pub mod paths;
pub mod prev;
pub mod sources;
pub mod space;
pub mod walk;
pub mod work;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use snap_shared::config::{self, LoadedConfig};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;
use snap_shared::store::{self, Store};

use snap_cli::Reporter;

/// Collect source sets into browsable, hard-linked incremental snapshots.
#[derive(Debug, Parser)]
#[command(
    name = "snap-collect",
    version,
    about = "Collect source sets into browsable, hard-linked incremental snapshots",
    long_about = "Collect source sets into the local store as browsable snapshots \
(phase 1 of a snap backup). Each set becomes sets/<set>/<id>/, a plain copy you can \
browse with ls and restore with cp; files unchanged since the set's previous snapshot \
(same size, mtime, mode and owner) are hard links into it, like rsync --link-dest. \
New and changed files are copied and hashed with SHA-256 in the same read. \
One `snapshot` record per set is written on stdout as a JSON line.",
    after_help = "Examples:\n  snap-collect                         collect every set in the config\n  snap-collect --set data              collect one configured set\n  snap-collect --name etc /etc         collect /etc as the ad-hoc set \"etc\"\n  snap-collect | snap-pack | snap-push a whole backup",
    mut_arg("verbose", |a| a.help("Name every file copied"))
)]
pub struct Cli {
    /// Paths to collect as an ad-hoc set (needs --name)
    #[arg(value_name = "PATH", requires = "name")]
    pub paths: Vec<PathBuf>,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store directory [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Collect only this configured set (repeatable)
    #[arg(long = "set", value_name = "NAME", action = ArgAction::Append, conflicts_with = "name")]
    pub sets: Vec<String>,

    /// Collect PATH... as an ad-hoc set with this name, without a config
    #[arg(short, long, value_name = "NAME", requires = "paths")]
    pub name: Option<String>,

    /// Exclude what matches this gitignore-style pattern (repeatable)
    #[arg(short, long, value_name = "PATTERN", action = ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Compare file contents (SHA-256) with the previous snapshot, not only size, mtime, mode and owner
    #[arg(long)]
    pub checksum: bool,

    /// Do not cross filesystem boundaries inside a source
    #[arg(short = 'x', long)]
    pub one_file_system: bool,

    /// Add a tag to the snapshot record (repeatable)
    #[arg(long = "tag", value_name = "TAG", action = ArgAction::Append)]
    pub tags: Vec<String>,

    /// A description for the snapshot record
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// Free space the store's filesystem must keep, e.g. 2GiB or 5% [default: 1GiB or 5%, whichever is smaller]
    #[arg(long, value_name = "SIZE")]
    pub min_free: Option<String>,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,
}

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The name on every message.
pub const TOOL: &str = "snap-collect";

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.loudness, run)
}

fn load_config(cli: &Cli) -> Result<Option<LoadedConfig>> {
    let (path, named) = config::locate(cli.config.as_deref());
    if cli.name.is_some() && !named {
        // Ad-hoc runs need no config, but use its store and floor when there is one.
        return match path.exists() {
            true => LoadedConfig::load(&path).map(Some),
            false => Ok(None),
        };
    }
    match LoadedConfig::load(&path) {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.exit == Exit::NoInput && !named => Err(Error::config(
            format!("config {}", path.display()),
            "not found",
        )
        .with_hint("write one (see `man snap-collect`), point --config or $SNAP_CONFIG at it, or collect paths directly: snap-collect --name NAME PATH...")),
        Err(e) => Err(e),
    }
}

/// The whole run: plan, lock, collect each set, emit records.
pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    let loaded = load_config(cli)?;
    let req = sources::Request {
        config: loaded.as_ref(),
        sets: &cli.sets,
        adhoc_name: cli.name.as_deref(),
        paths: &cli.paths,
        excludes: &cli.exclude,
        one_file_system: cli.one_file_system,
        tags: &cli.tags,
    };
    let (plans, notes) = sources::plan(&req)?;
    for n in &notes {
        report.note(n);
    }
    let floor = sources::floor(cli.min_free.as_deref(), loaded.as_ref())?;
    let root = store::locate(
        cli.store.as_deref(),
        loaded.as_ref().and_then(|c| c.config.store.as_deref()),
    );
    let store = Store::new(root);
    let opts = collect::Options {
        checksum: cli.checksum,
        description: cli.description.clone(),
        floor,
    };
    let mut out = RecordWriter::new(std::io::stdout().lock());
    let errors = batch::collect_plans(&store, &plans, &opts, report, |record| {
        out.write(&Record::Snapshot(record))
    })?;
    Ok(if errors > 0 { Exit::Partial } else { Exit::Ok })
}
