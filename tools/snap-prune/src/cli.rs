//! The flags of snap-prune, the policy they give, and its name on every message.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use snap_shared::error::Error;
use snap_shared::retention::policy::{Count, Policy, Span};
use snap_shared::retention::rules;

/// The name on every message.
pub const TOOL: &str = "snap-prune";

/// Remove old snapshots and archives by a retention policy.
#[derive(Debug, Default, Parser)]
#[command(
    name = "snap-prune",
    version,
    about = "Remove old snapshots and archives by a retention policy (keep last N, hourly/daily/weekly/monthly/yearly, within, tags)",
    long_about = "Remove old snapshots from the store, or old archives from destinations, by a retention \
policy. The rules are restic's `forget`, in UTC, applied to each set on its own:\n\n\
--keep-last N keeps the N newest snapshots. --keep-hourly, --keep-daily, --keep-weekly (ISO weeks, \
Monday to Sunday), --keep-monthly and --keep-yearly N keep the newest snapshot of each of the last N \
hours, days, weeks, months or years that have one; when a rule still has counts left at the oldest \
snapshot, that one is kept too, so the history reaches as far back as the rules allow. \"unlimited\" \
keeps one in every period. --keep-within SPAN (like 30d, 6m, 1y6m, 12h: years, months, days, hours) \
keeps every snapshot newer than SPAN before the newest snapshot (not before now: a machine that \
stopped backing up keeps its history). --keep-tag TAG keeps snapshots with that tag (a,b: with both; \
repeat for either). A snapshot kept by any rule is kept; the output says which rules kept it.\n\n\
Examples: hourly snapshots with --keep-hourly 24 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 keep \
the newest of each of the last 24 hours, then one a day for a week, one a week for a month, and one \
a month for a year (the same snapshot may count for several rules). --keep-last 5 alone is the \
planning document's \"keep the last 5\". --keep-within 30d --keep-monthly unlimited keeps a month \
of everything and one a month forever.\n\n\
Without rules on the command line, the config's \"retention\" is used: {\"local\": 7, \"external\": \
5} keeps the last 7 in the store and the last 5 at every destination; a destination's name gives it \
its own rules, like \"b2\": {\"daily\": 7, \"monthly\": 12, \"within\": \"2d\", \"tags\": [\"keep\"]}. \
With no rule at all nothing is removed: snap-prune refuses (exit 64) rather than remove everything.\n\n\
In the store, snapshot trees share unchanged files as hard links, so removing one never breaks \
another, and the bytes reported freed are only those really given back. At a destination, an \
incremental archive's base is kept as long as a kept archive needs it (\"base of ID\"), and an \
archive's data, index and checksums go before its .json record. A prune killed at any moment leaves \
every kept snapshot whole, and the next run finishes the rest. --dry-run prints the plan and the bytes \
it would free; at a destination it also gives the bytes stored per set and, with \
\"price_per_gib_month\" in the destination's config, the monthly cost before and after.\n\n\
Disk snapshots of snap-disk's blocks method (disks/DISK/ in the store and at destinations) are pruned by \
the same rules, one group per disk (--set names a disk too); a snapshot's record goes first, then its \
block map, then every block no remaining snapshot of the disk uses. Snapshots inside the store's disk \
images are pruned too, one group per disk: qcow2 internal snapshots (qemu-img on a stopped image, QMP's \
snapshot-delete through the config's disk entry on a running VM's) and overlays (the files above one \
are rebased onto the one below, so a chain is folded, never cut). An internal snapshot snap-disk did not \
make (qemu-img, savevm, virsh) is kept unless --include-foreign.\n\n\
--tag TAGS judges only the snapshots having those tags and leaves the rest alone (restic's forget \
--tag): --tag pre-apt --keep-last 3 keeps the 3 newest pre-apt snapshots, whatever else there is.\n\n\
One `pruned` record per snapshot or archive is written on stdout: target (the store or destination), \
set, id, what (snapshot or archive), action (keep or remove), reasons (the rules that keep it), and \
for removals the bytes freed.\n\n\
Exit codes: 0 done; 64 usage or no rule; 65 a record at a destination is unreadable; 66 no store; \
69 a destination is unreachable; 74 I/O error; 75 a destination is absent (drive not plugged in), \
or the store or destination is busy; 77 permission denied; 78 bad config.",
    after_help = "Examples:\n  snap-prune --keep-last 7                         the store: keep the 7 newest snapshots of each set\n  snap-prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run\n  snap-prune --dest t9                             a configured drive, by the config's retention\n  snap-prune --dest s3://bucket/snap --keep-within 90d --dry-run    what it would remove, and the cost\n  snap-prune --set data --keep-tag pre-upgrade --keep-last 3\n  snap-prune --tag pre-apt --keep-last 3           the 3 newest pre-apt snapshots of each set and disk",
    mut_arg("verbose", |a| a.help("Print every decision, kept ones too"))
)]
pub struct Cli {
    /// Prune archives at this destination: path, uuid://, label://, s3://, gs://, az://, sftp:// URL, rclone:REMOTE:PATH, or a configured name (repeatable) [default: the store]
    #[arg(short, long = "dest", value_name = "DEST", action = ArgAction::Append)]
    pub dests: Vec<String>,

    /// Store directory [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR", conflicts_with = "dests")]
    pub store: Option<PathBuf>,

    /// Only this set
    #[arg(long, value_name = "SET")]
    pub set: Option<String>,

    /// Keep the N newest snapshots
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_last: Option<KeepCount>,

    /// Keep the newest snapshot of each of the last N hours
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_hourly: Option<KeepCount>,

    /// Keep the newest snapshot of each of the last N days
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_daily: Option<KeepCount>,

    /// Keep the newest snapshot of each of the last N ISO weeks
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_weekly: Option<KeepCount>,

    /// Keep the newest snapshot of each of the last N months
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_monthly: Option<KeepCount>,

    /// Keep the newest snapshot of each of the last N years
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_yearly: Option<KeepCount>,

    /// Keep every snapshot newer than SPAN before the newest one: 30d, 6m, 1y6m, 12h
    #[arg(long, value_name = "SPAN", value_parser = Span::parse)]
    pub keep_within: Option<Span>,

    /// Within SPAN of the newest snapshot, keep the newest of each hour
    #[arg(long, value_name = "SPAN", value_parser = Span::parse)]
    pub keep_within_hourly: Option<Span>,

    /// Within SPAN of the newest snapshot, keep the newest of each day
    #[arg(long, value_name = "SPAN", value_parser = Span::parse)]
    pub keep_within_daily: Option<Span>,

    /// Within SPAN of the newest snapshot, keep the newest of each ISO week
    #[arg(long, value_name = "SPAN", value_parser = Span::parse)]
    pub keep_within_weekly: Option<Span>,

    /// Within SPAN of the newest snapshot, keep the newest of each month
    #[arg(long, value_name = "SPAN", value_parser = Span::parse)]
    pub keep_within_monthly: Option<Span>,

    /// Within SPAN of the newest snapshot, keep the newest of each year
    #[arg(long, value_name = "SPAN", value_parser = Span::parse)]
    pub keep_within_yearly: Option<Span>,

    /// Keep snapshots with these tags (a,b: all of them; repeatable: any of the lists)
    #[arg(long, value_name = "TAGS", value_parser = rules::tag_list, action = ArgAction::Append)]
    pub keep_tag: Vec<Vec<String>>,

    /// Only snapshots having all these tags (comma-separated; repeatable: any one list) are judged by the rules; the rest are left alone (restic's forget --tag)
    #[arg(long = "tag", value_name = "TAGS", value_parser = rules::tag_list, action = ArgAction::Append)]
    pub tags: Vec<Vec<String>>,

    /// Apply the rules also to internal snapshots snap-disk did not make (qemu-img, savevm, virsh) in the store's disk images; without it they are kept
    #[arg(long)]
    pub include_foreign: bool,

    /// Remove exactly this one (SET/ID, or disks/DISK/NAME; repeatable) instead of applying rules; a pinned one, or a base an archive that stays needs, is refused
    #[arg(long, value_name = "NAME", action = ArgAction::Append, conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "keep_within_hourly", "keep_within_daily", "keep_within_weekly", "keep_within_monthly", "keep_within_yearly", "keep_tag"])]
    pub forget: Vec<String>,

    /// With --forget, in the store: the names are archives (archives/SET/ID), not snapshot trees
    #[arg(long, requires = "forget")]
    pub archive: bool,

    /// Print the plan and what it would free; remove nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// At a destination, first remove the locks of other processes that you know are gone: stale ones, unreadable ones, and those of other machines however recent (each is named on stderr)
    #[arg(long, requires = "dests")]
    pub break_lock: bool,

    /// Where this machine's own destination locks are kept, shared with snap-push (other machines are kept out by locks at the destination) [default: $XDG_STATE_HOME/snap/push, else ~/.local/state/snap/push]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,
}

/// A count flag's value: `None` is 0, the rule off (clap reads `Option<Option<_>>` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepCount(pub Option<Count>);

fn parse_count(s: &str) -> std::result::Result<KeepCount, String> {
    Count::parse(s).map(KeepCount)
}

impl Cli {
    /// The policy the flags give (empty when none was given).
    pub(crate) fn policy(&self) -> Policy {
        Policy {
            last: self.keep_last.and_then(|c| c.0),
            hourly: self.keep_hourly.and_then(|c| c.0),
            daily: self.keep_daily.and_then(|c| c.0),
            weekly: self.keep_weekly.and_then(|c| c.0),
            monthly: self.keep_monthly.and_then(|c| c.0),
            yearly: self.keep_yearly.and_then(|c| c.0),
            within: self.keep_within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
            tags: self.keep_tag.clone(),
        }
    }

    /// True when any rule flag was given, even one that keeps nothing (`--keep-last 0`).
    pub(crate) fn any_rule_flag(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .any(Option::is_some)
            || self.keep_within.is_some()
            || [
                self.keep_within_hourly,
                self.keep_within_daily,
                self.keep_within_weekly,
                self.keep_within_monthly,
                self.keep_within_yearly,
            ]
            .iter()
            .any(Option::is_some)
            || !self.keep_tag.is_empty()
    }
}

pub(crate) fn no_rule(why: &str) -> Error {
    Error::usage("", format!("no retention rule: {why}")).with_hint(
        "give --keep-last, --keep-daily … --keep-within or --keep-tag, or \"retention\" in the config (see snap-prune --help); nothing was removed",
    )
}
