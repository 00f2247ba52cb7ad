//! The flags of snap-backup and its name on every message.

use std::path::PathBuf;

use clap::{ArgGroup, Parser};

pub const TOOL: &str = "snap-backup";

/// The whole backup from the config, for cron, systemd, udev and apt.
#[derive(Debug, Parser, Default)]
#[command(
    name = "snap-backup",
    version,
    about = "Run the backup the config describes: what its schedule says is due, or one phase",
    long_about = "Run the two-phase backup of the config (sets, disks, destinations, retention, \
schedule, notify) by running the snap tools in turn. With --due (what the package's timer and cron \
line run, hourly) it does what the config's \"schedule\" says is due and nothing else: collect each \
set, snapshot each disk, pack (a full archive when schedule.full is due, else an incremental), push \
to every present destination, prune the store and each destination that was reached by \
\"retention\", and verify a rotating share of the archives, catching up once after a machine slept. \
When it was last done comes from the records in the store and at the destinations. Each job ends \
with one line on stderr and one `job` record on stdout. Without --due: both phases now \
(snap-collect | snap-pack | snap-push), or one phase with --collect-only or --external-only, or \
apt's rollback point with --pre-apt.",
    after_help = "Examples:\n  snap-backup --due                     what the schedule says is due (hourly, from the timer or cron)\n  snap-backup --due --dry-run           say what is due, run nothing\n  snap-backup                           both phases now\n  snap-backup --external-only --wait 600   pack and push, waiting up to 10 min for the drive\n\nExit status: 0 when every job asked for was done (a --due run that finds another at work, or a drive \
that is not there, is 0: the next run catches up); else the first failing job's (sysexits, as the tools'), \
1 when a job finished with errors. --pre-apt always exits 0 so apt goes on.",
    group(ArgGroup::new("mode").args(["due", "collect_only", "external_only", "pre_apt"]))
)]
pub struct Cli {
    /// Run what the config's schedule says is due, and nothing else
    #[arg(long)]
    pub due: bool,

    /// With --due: print what is due and why, run nothing
    #[arg(short = 'n', long, requires = "due")]
    pub dry_run: bool,

    /// Phase 1 only: collect every set into the store
    #[arg(long)]
    pub collect_only: bool,

    /// Phase 2 only: pack the newest snapshots and push every archive a destination lacks
    #[arg(long)]
    pub external_only: bool,

    /// apt's hook: a rollback point (sets and disks, tagged pre-apt) before dpkg runs; reads apt's package list on stdin; always exits 0
    #[arg(long)]
    pub pre_apt: bool,

    /// Pack incrementals (without --due; --due follows schedule.full)
    #[arg(short, long, conflicts_with = "due")]
    pub incremental: bool,

    /// When the destination is absent, try again every 5 s for up to SECS (a drive is mounted a little after it is plugged in)
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub wait: u64,

    /// Run CMD with SNAP_EVENT=success|failure|media-missing|low-disk and the job in its environment [default: the config's "notify"]
    #[arg(long, value_name = "CMD")]
    pub notify: Option<String>,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store directory [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,
}
