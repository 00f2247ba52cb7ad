//! snap-prune: retention for the store and every destination.
//!
//! Applies a restic-style policy (`--keep-last`, `--keep-hourly` … `--keep-yearly`,
//! `--keep-within`, `--keep-tag`, or the config's `retention`) to each set of
//! snapshots in the store and of archives at destinations, keeps every base a
//! kept incremental archive needs, and removes the rest, crash-safely. One
//! `pruned` record per snapshot or archive says what happened and why.

pub mod disks;
pub mod free;
pub mod intent;
pub mod plan;
pub mod target;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, Parser};

use snap_cli::Reporter;
use snap_dest::{Dest, DestSpec, Held, LockOptions, Mode, Reach, settings};
use snap_shared::catalog::Catalog;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::lock::StoreLock;
use snap_shared::record::{Extra, PruneAction, PrunedRecord, Record, SCHEMA};
use snap_shared::size::human_bytes;
use snap_shared::store::{self, Store};

use crate::plan::Decision;
use crate::target::{Entry, Group, Target};
use policy::{Count, Policy, Span};
pub use snap_shared::retention::{policy, rules};

/// The name on every message.
pub const TOOL: &str = "snap-prune";

/// Remove old snapshots and archives by a retention policy.
#[derive(Debug, Parser)]
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
block map, then every block no remaining snapshot of the disk uses.\n\n\
One `pruned` record per snapshot or archive is written on stdout: target (the store or destination), \
set, id, what (snapshot or archive), action (keep or remove), reasons (the rules that keep it), and \
for removals the bytes freed.\n\n\
Exit codes: 0 done; 64 usage or no rule; 65 a record at a destination is unreadable; 66 no store; \
69 a destination is unreachable; 74 I/O error; 75 a destination is absent (drive not plugged in), \
or the store or destination is busy; 77 permission denied; 78 bad config.",
    after_help = "Examples:\n  snap-prune --keep-last 7                         the store: keep the 7 newest snapshots of each set\n  snap-prune --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run\n  snap-prune --dest t9                             a configured drive, by the config's retention\n  snap-prune --dest s3://bucket/snap --keep-within 90d --dry-run    what it would remove, and the cost\n  snap-prune --set data --keep-tag pre-upgrade --keep-last 3"
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

    /// Print only warnings and errors on stderr
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print every decision, kept ones too
    #[arg(short, long)]
    pub verbose: bool,
}

/// A count flag's value: `None` is 0, the rule off (clap reads `Option<Option<_>>` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepCount(pub Option<Count>);

fn parse_count(s: &str) -> std::result::Result<KeepCount, String> {
    Count::parse(s).map(KeepCount)
}

impl Cli {
    /// The policy the flags give (empty when none was given).
    fn policy(&self) -> Policy {
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
    fn any_rule_flag(&self) -> bool {
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

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| (c.quiet, c.verbose), run)
}

/// One place to prune, with its policy and whatever it needs held.
struct Job {
    targets: Vec<Target>,
    policy: Policy,
    /// The field the policy came from (`--keep-*` or `retention.NAME`).
    source: String,
    price: Option<f64>,
    catalog: Option<Catalog>,
    _locks: Vec<StoreLock>,
    /// The exclusive lock at a destination.
    held: Option<Held>,
}

/// The whole run: every job, then the exit code of the first failure.
pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    // Not `stdout().lock()` for the whole run: the fault harness runs
    // several machines' tools in one process.
    run_to(cli, report, &mut RecordWriter::new(std::io::stdout()))
}

/// Removes one snapshot, archive (`archive`) or disk snapshot of `store` by
/// name, as `snap-prune --forget NAME` does, with its checks (found, not
/// pinned, not a needed base) and locks; with `dry_run`, only says what it
/// would free. Returns the `pruned` records (`serve`'s delete uses it).
pub fn forget_in_store(
    store: &std::path::Path,
    config: Option<&std::path::Path>,
    name: &str,
    archive: bool,
    dry_run: bool,
    report: &Reporter,
) -> Result<(Exit, Vec<PrunedRecord>)> {
    let mut args: Vec<OsString> = vec![TOOL.into(), "--store".into(), store.into()];
    if let Some(c) = config {
        args.extend(["--config".into(), c.into()]);
    }
    args.extend(["--forget".into(), name.into()]);
    if archive {
        args.push("--archive".into());
    }
    if dry_run {
        args.push("--dry-run".into());
    }
    let cli = Cli::try_parse_from(args).map_err(|e| Error::usage("forget", e.to_string()))?;
    let mut out = RecordWriter::new(Vec::new());
    let exit = run_to(&cli, report, &mut out)?;
    let records = String::from_utf8_lossy(&out.into_inner())
        .lines()
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(Record::Pruned(p)) => Some(p),
            _ => None,
        })
        .collect();
    Ok((exit, records))
}

/// [`run`], writing the records to `out`.
pub fn run_to<W: std::io::Write>(
    cli: &Cli,
    report: &Reporter,
    out: &mut RecordWriter<W>,
) -> Result<Exit> {
    let loaded = LoadedConfig::load_optional(cli.config.as_deref())?;
    let configured = settings::from_config(loaded.as_ref())?;
    let retention = loaded.as_ref().and_then(|c| c.config.retention.as_ref());
    if let Some(c) = &loaded {
        let names: Vec<String> = configured.iter().map(|s| s.name.clone()).collect();
        rules::check(retention, &names).map_err(|e| c.blame(e))?;
    }
    if let Some(set) = &cli.set {
        snap_shared::id::check_name(set).map_err(|e| Error::usage("--set", e))?;
    }
    check_forget_names(&cli.forget)?;
    let flags = match cli.forget.is_empty() {
        true => cli.any_rule_flag().then(|| cli.policy()),
        // Forgetting by name needs no rule; the empty policy is never applied.
        false => Some(Policy::default()),
    };
    if cli.forget.is_empty() && flags.as_ref().is_some_and(Policy::is_empty) {
        return Err(no_rule(
            "the --keep-* flags keep nothing (every count is 0)",
        ));
    }
    let mut first_exit = None;
    let jobs: Vec<Result<Job>> = if cli.dests.is_empty() {
        vec![store_job(
            cli,
            report,
            loaded.as_ref(),
            flags.clone(),
            retention,
        )]
    } else {
        let rt = snap_dest::runtime()?;
        cli.dests
            .iter()
            .map(|arg| {
                let spec =
                    settings::resolve_arg(arg, &configured).map_err(|e| e.within("--dest"))?;
                dest_job(cli, report, &spec, flags.clone(), retention, &rt)
            })
            .collect()
    };
    // Every policy must be there before anything is removed anywhere.
    let mut ready = Vec::new();
    for job in jobs {
        match job {
            Err(e) if e.exit == Exit::Usage => return Err(e),
            job => ready.push(job),
        }
    }
    if !cli.forget.is_empty() {
        check_forgettable(cli, &ready)?;
    }
    for job in ready {
        let outcome = job.and_then(|mut job| {
            let pruned = prune_job(cli, &job, out, report);
            if let Some(Err(why)) = job.held.take().map(Held::release) {
                report.warn(&why);
            }
            pruned
        });
        match outcome {
            Err(e) => {
                report.failed(&e);
                first_exit.get_or_insert(e.exit);
            }
            // Records it could not read were kept and named: not all is well.
            Ok(unreadable) if unreadable > 0 => {
                first_exit.get_or_insert(Exit::Data);
            }
            Ok(_) => {}
        }
    }
    Ok(first_exit.unwrap_or(Exit::Ok))
}

/// `--forget` names are `SET/ID` or `disks/DISK/NAME`.
fn check_forget_names(names: &[String]) -> Result<()> {
    use snap_shared::id::check_name;
    for n in names {
        let parts: Vec<&str> = n.split('/').collect();
        let ok = match parts.as_slice() {
            ["disks", disk, snap] => check_name(disk).is_ok() && check_name(snap).is_ok(),
            [set, id] => check_name(set).is_ok() && snap_shared::id::is_id(id),
            _ => false,
        };
        if !ok {
            return Err(Error::usage(
                format!("--forget {n}"),
                "names SET/ID (a snapshot or archive) or disks/DISK/NAME",
            ));
        }
    }
    Ok(())
}

/// Whether a target holds what `--forget` names: trees or the store's
/// archives (by `--archive`), a destination's archives, disk snapshots.
fn forget_here(cli: &Cli, target: &Target) -> bool {
    match target {
        Target::Trees(_) => !cli.archive,
        Target::Archives { store: Some(_), .. } => cli.archive,
        Target::Archives { store: None, .. } | Target::Disks { .. } => true,
    }
}

/// Before anything is removed: every name is found, none is pinned, none is
/// a base that stays needed.
fn check_forgettable(cli: &Cli, jobs: &[Result<Job>]) -> Result<()> {
    let mut found = std::collections::HashSet::new();
    for job in jobs.iter().flatten() {
        for target in job.targets.iter().filter(|t| forget_here(cli, t)) {
            for group in target.scan(cli.set.as_deref())? {
                plan::forget(target, &group, &cli.forget)?;
                found.extend(
                    group
                        .entries
                        .iter()
                        .map(|e| plan::name_of(target, &group, e)),
                );
            }
        }
    }
    match cli.forget.iter().find(|n| !found.contains(*n)) {
        // What could not be looked at (busy: another tool holds its lock;
        // unreachable) may hold it: that is the error, not "not found".
        Some(_) if jobs.iter().any(Result::is_err) => {
            let failed = jobs.iter().filter_map(|j| j.as_ref().err());
            Err(failed
                .min_by_key(|e| (e.exit != Exit::TempFail) as u8)
                .expect("one failed")
                .clone())
        }
        Some(n) => Err(Error::new(
            Exit::NoInput,
            format!("--forget {n}"),
            "not found; nothing was removed",
        )
        .with_hint(match cli.archive {
            true => "it names an archive (--archive); drop --archive for a snapshot tree",
            false => {
                "`snap-restore list` shows what is there; --archive names the store's archives"
            }
        })),
        None => Ok(()),
    }
}

fn no_rule(why: &str) -> Error {
    Error::usage("", format!("no retention rule: {why}")).with_hint(
        "give --keep-last, --keep-daily … --keep-within or --keep-tag, or \"retention\" in the config (see snap-prune --help); nothing was removed",
    )
}

/// The store: its snapshot trees and its own archives.
fn store_job(
    cli: &Cli,
    report: &Reporter,
    loaded: Option<&LoadedConfig>,
    flags: Option<Policy>,
    retention: Option<&serde_json::Value>,
) -> Result<Job> {
    let (policy, source) = match flags {
        Some(p) => (p, "--keep-*".to_string()),
        None => rules::configured(retention, None)?.ok_or_else(|| {
            no_rule("none given for the store (\"retention\": {\"local\": N} in the config)")
        })?,
    };
    let store = Store::new(store::locate(
        cli.store.as_deref(),
        LoadedConfig::store(loaded),
    ));
    if !store.root.is_dir() {
        return Err(Error::new(
            Exit::NoInput,
            format!("store {}", store.root.display()),
            "not found",
        )
        .with_hint("give --store DIR, or --dest to prune a destination"));
    }
    let mut locks = Vec::new();
    let mut catalog = None;
    if !cli.dry_run {
        locks.push(StoreLock::acquire(&store.lock_path(), TOOL)?);
        catalog = open_catalog(&store, report);
    }
    let mut targets = vec![Target::Trees(store.clone())];
    let archives = store.archives_dir();
    if archives.is_dir() {
        let spec = DestSpec::from_url(&archives.display().to_string())?;
        let dest = Dest::open(&spec, &snap_dest::runtime()?, &Reach::default(), false)?;
        targets.push(Target::Archives {
            dest,
            store: Some(store.clone()),
        });
    }
    if store.root.join("disks").is_dir() {
        let spec = DestSpec::from_url(&store.root.display().to_string())?;
        let dest = Dest::open(&spec, &snap_dest::runtime()?, &Reach::default(), false)?;
        targets.push(Target::Disks {
            dest,
            store: Some(store.clone()),
        });
    }
    Ok(Job {
        targets,
        policy,
        source,
        price: None,
        catalog,
        _locks: locks,
        held: None,
    })
}

/// The catalog, to keep it in step with the files. It is only an index: if
/// it cannot be opened the prune goes on and the next tool rebuilds it.
fn open_catalog(store: &Store, report: &Reporter) -> Option<Catalog> {
    match Catalog::open(store) {
        Ok((catalog, warning)) => {
            if let Some(w) = warning {
                report.warn(&w);
            }
            Some(catalog)
        }
        Err(e) => {
            report.warn(&format!("{e}; it will be rebuilt from the records"));
            Catalog::invalidate(store);
            None
        }
    }
}

/// A destination's archives.
fn dest_job(
    cli: &Cli,
    report: &Reporter,
    spec: &DestSpec,
    flags: Option<Policy>,
    retention: Option<&serde_json::Value>,
    rt: &std::sync::Arc<snap_dest::Runtime>,
) -> Result<Job> {
    let (policy, source) = match flags {
        Some(p) => (p, "--keep-*".to_string()),
        None => {
            // A destination given by URL alone has only the `external` rules.
            let name = if spec.configured {
                spec.name.as_str()
            } else {
                ""
            };
            rules::configured(retention, Some(name))?.ok_or_else(|| {
                no_rule(&format!(
                    "none given for destination {} (\"retention\": {{\"external\": N}} in the config)",
                    spec.name
                ))
            })?
        }
    };
    let mut dest = Dest::open(spec, rt, &Reach::default(), false)?;
    let mut locks = Vec::new();
    let mut held = None;
    if !cli.dry_run {
        let state = cli
            .state_dir
            .clone()
            .unwrap_or_else(snap_dest::default_state_dir);
        locks.push(dest.local_lock(&state, TOOL)?);
        let opts = LockOptions {
            break_others: cli.break_lock,
        };
        let (fenced, h) = dest.hold(Mode::Exclusive, TOOL, &opts)?;
        for n in &h.notes {
            report.warn(&format!("destination {}: {n}", dest.name));
        }
        dest = fenced;
        held = Some(h);
    }
    Ok(Job {
        targets: vec![
            Target::Archives {
                dest: dest.clone(),
                store: None,
            },
            Target::Disks { dest, store: None },
        ],
        policy,
        source,
        price: spec.price_per_gib_month,
        catalog: None,
        _locks: locks,
        held,
    })
}

/// Totals of one target.
#[derive(Default)]
struct Totals {
    kept: u64,
    removed: u64,
    freed: u64,
    stored_before: u64,
    stored_after: u64,
    /// Records kept because they could not be read.
    unreadable: u64,
}

/// Prunes every target of a job; how many records it kept because it
/// could not read them.
fn prune_job<W: std::io::Write>(
    cli: &Cli,
    job: &Job,
    out: &mut RecordWriter<W>,
    report: &Reporter,
) -> Result<u64> {
    let mut unreadable = 0;
    for target in &job.targets {
        let mut totals = Totals::default();
        if !cli.dry_run {
            let finished = target.finish_interrupted()?;
            if finished > 0 {
                report.note(&format!(
                    "finished removing what an interrupted prune left in {}: freed {}",
                    target.location(),
                    human_bytes(finished)
                ));
                totals.freed += finished;
            }
        }
        if !cli.forget.is_empty() && !forget_here(cli, target) {
            continue;
        }
        let groups = target.scan(cli.set.as_deref())?;
        // Most places hold no disk snapshots: say nothing of them there.
        if groups.is_empty() && matches!(target, Target::Disks { .. }) {
            continue;
        }
        let rule = match cli.forget.is_empty() {
            true => format!("{} ({})", job.policy, job.source),
            false => format!("forget {}", cli.forget.join(", ")),
        };
        report.note(&format!(
            "{}s at {}: {rule}",
            target.what(),
            target.location(),
        ));
        for group in &groups {
            prune_group(cli, job, target, group, out, report, &mut totals)?;
        }
        summary(cli, job, target, &totals, groups.len(), report);
        unreadable += totals.unreadable;
    }
    Ok(unreadable)
}

/// Plans one set, prints it, removes what goes, writes the records.
fn prune_group<W: std::io::Write>(
    cli: &Cli,
    job: &Job,
    target: &Target,
    group: &Group,
    out: &mut RecordWriter<W>,
    report: &Reporter,
    totals: &mut Totals,
) -> Result<()> {
    let mut t = Totals::default();
    let _set_lock = if cli.dry_run {
        None
    } else {
        target.lock_set(&group.set, TOOL)?
    };
    let now = chrono::Utc::now();
    let decisions = match cli.forget.is_empty() {
        true => plan::plan(target, group, &job.policy, now, &mut |w| report.warn(&w))?,
        false => plan::forget(target, group, &cli.forget)?,
    };
    // A forget speaks only of what it names.
    let named = match cli.forget.is_empty() {
        true => vec![true; group.entries.len()],
        false => plan::named_in(target, group, &cli.forget),
    };
    let doomed: Vec<&Entry> = group
        .entries
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| !d.keep)
        .map(|(e, _)| e)
        .collect();
    let freed_each = if cli.dry_run {
        target.estimate_each(&group.set, &doomed)?
    } else {
        target.remove(&group.set, &doomed, job.catalog.as_ref())?
    };
    let mut freed = freed_each.iter();
    for ((entry, decision), named) in group.entries.iter().zip(&decisions).zip(&named) {
        let freed = if decision.keep {
            None
        } else {
            freed.next().copied()
        };
        if !named {
            t.count(entry, decision.keep, freed);
            continue;
        }
        show(cli, report, &group.set, entry, decision, freed);
        t.count(entry, decision.keep, freed);
        if let (Some(why), true) = (&entry.unreadable, decision.keep) {
            report.error(&format!(
                "{why}; kept (what cannot be read is never removed by a rule: --forget {}/{} removes it)",
                group.set, entry.id
            ));
            t.unreadable += 1;
        }
        out.write(&Record::Pruned(record(
            cli, target, &group.set, entry, decision, freed,
        )))?;
    }
    if let Target::Archives { .. } = target {
        report.note(&format!("  {}: {}", group.set, stored_line(&t, job.price)));
    }
    totals.add(&t);
    Ok(())
}

impl Totals {
    fn count(&mut self, entry: &Entry, keep: bool, freed: Option<u64>) {
        let stored = entry.bytes.unwrap_or(0);
        self.stored_before += stored;
        if keep {
            self.kept += 1;
            self.stored_after += stored;
        } else {
            self.removed += 1;
            self.freed += freed.unwrap_or(0);
        }
    }

    fn add(&mut self, o: &Totals) {
        self.unreadable += o.unreadable;
        self.kept += o.kept;
        self.removed += o.removed;
        self.freed += o.freed;
        self.stored_before += o.stored_before;
        self.stored_after += o.stored_after;
    }
}

/// Bytes stored before and after (and what they cost a month, given a price).
fn stored_line(t: &Totals, price: Option<f64>) -> String {
    let mut line = format!(
        "{} archive(s) stored in {}, {} kept in {}",
        t.kept + t.removed,
        human_bytes(t.stored_before),
        t.kept,
        human_bytes(t.stored_after)
    );
    if let Some(price) = price {
        line.push_str(&format!(
            "; about {} -> {} a month at {price} per GiB-month",
            cost(t.stored_before, price),
            cost(t.stored_after, price)
        ));
    }
    line
}

/// The plan's line for one entry: removals always (dry run: the whole plan), kept ones with -v.
fn show(cli: &Cli, report: &Reporter, set: &str, e: &Entry, d: &Decision, freed: Option<u64>) {
    let line = match (d.keep, &d.problem) {
        (true, _) => format!("  keep    {set}/{}  {}", e.id, d.reasons.join(", ")),
        (false, Some(p)) => format!("  remove  {set}/{}  {p}", e.id),
        (false, None) => format!(
            "  remove  {set}/{}{}",
            e.id,
            freed
                .map(|f| format!("  frees {}", human_bytes(f)))
                .unwrap_or_default()
        ),
    };
    if cli.dry_run || !d.keep {
        report.note(&line);
    } else {
        report.detail(|| line);
    }
}

fn record(
    cli: &Cli,
    target: &Target,
    set: &str,
    e: &Entry,
    d: &Decision,
    freed: Option<u64>,
) -> PrunedRecord {
    let mut extra = Extra::new();
    extra.insert("set".into(), set.into());
    extra.insert("what".into(), target.what().into());
    if let Some(b) = e.bytes {
        extra.insert("bytes".into(), b.into());
    }
    if let Some(f) = freed {
        extra.insert("freed".into(), f.into());
    }
    if let Some(p) = &d.problem {
        extra.insert("problem".into(), p.clone().into());
    }
    if cli.dry_run {
        extra.insert("dry_run".into(), true.into());
    }
    PrunedRecord {
        schema: SCHEMA.into(),
        target: target.location(),
        id: e.id.clone(),
        action: if d.keep {
            PruneAction::Keep
        } else {
            PruneAction::Remove
        },
        reasons: d.reasons.clone(),
        extra,
    }
}

/// The line that ends a target, with what it stores and costs at a destination.
fn summary(cli: &Cli, job: &Job, target: &Target, t: &Totals, sets: usize, report: &Reporter) {
    let verb = if cli.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let freed = if cli.dry_run { "would free" } else { "freed" };
    let mut line = format!(
        "{}: {sets} set(s), kept {}, {verb} {}, {freed} {}",
        target.location(),
        t.kept,
        t.removed,
        human_bytes(t.freed)
    );
    if let Target::Archives { .. } = target {
        line.push_str(&format!("; {}", stored_line(t, job.price)));
    }
    report.note(&line);
}

/// Monthly cost of `bytes` at `price` per GiB-month, to the cent.
fn cost(bytes: u64, price: f64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 30) as f64 * price)
}
