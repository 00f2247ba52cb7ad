//! `snap-backup --due`: what the config's `schedule` says is due, and
//! nothing else, each job run by its tool, in this order:
//!
//! 1. each disk whose `schedule` (default: `schedule.incremental`) is due;
//! 2. each set whose `schedule.incremental` is due (snap-collect);
//! 3. when `schedule.external` is due for a destination (by the newest
//!    archive it holds; one that cannot be read is tried): each set's newest
//!    snapshot is packed if it is not yet (full when `schedule.full` is due,
//!    else incremental), then pushed to the due destinations by priority (the
//!    next priority only when none of one is there), and each destination
//!    the push reached is pruned by `retention`;
//! 4. a share of the archives at each destination that was read is verified
//!    (`verify`);
//! 5. the store is pruned by `retention` when the run added to it, or, with
//!    `keep_archives: until-pushed`, when a push or a destination's verify
//!    was done (the prune drops the data destinations now hold);
//! 6. a share of the store's own archives is verified (not those whose data
//!    it dropped).
//!
//! Before all that, the store's free space is checked against
//! `collect.warn_free` (low-disk). A second run while one is at work (its
//! lock is `backup.lock` in the store) leaves at once with exit 0. A drive
//! that is not there is a quiet `media-missing`. Each job ends with one line
//! on stderr and one `job` record on stdout, and is told to the notify
//! command.

mod job;
mod last;
mod notices;
mod verify;

use std::time::Instant;

use chrono::{Local, NaiveDateTime};
use serde_json::Value;

use snap_cli::Reporter;
use snap_dest::settings::{self, DestSpec};
use snap_shared::archive::{self, ArchiveFiles};
use snap_shared::config::{DiskEntry, LoadedConfig};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::lock::StoreLock;
use snap_shared::record::ArchiveRecord;
use snap_shared::retention::rules::{self, KeepArchives, keep_archives};
use snap_shared::schedule::{Every, Schedule, parse_every};
use snap_shared::size::{Floor, human_bytes};
use snap_shared::store::{self, Store};

use crate::cli::{Cli, TOOL};
use crate::tools::{Tools, exit_of};
use job::{Outcome, Status, What};
use last::Held;
use notices::Notices;

/// The lock that keeps two `--due` runs apart, in the store.
const LOCK: &str = "backup.lock";

/// One `--due` run.
pub fn run(
    cli: &Cli,
    tools: &Tools,
    loaded: Option<&LoadedConfig>,
    hook: Option<&str>,
    report: &Reporter,
) -> Result<Exit> {
    let loaded = loaded.ok_or_else(|| {
        Error::config(
            "--due",
            "no config: it runs what the config's \"schedule\" says",
        )
        .with_hint("write ~/.config/snap/config.json, or give --config FILE")
    })?;
    let config = &loaded.config;
    let schedule = Schedule::parse(config.schedule.as_ref()).map_err(|e| loaded.blame(e))?;
    let disks = disk_schedules(&config.disks, schedule.incremental).map_err(|e| loaded.blame(e))?;
    let dests = settings::from_config(Some(loaded))?;
    let retention = config.retention.as_ref();
    let names: Vec<String> = dests.iter().map(|d| d.name.clone()).collect();
    rules::check(retention, &names).map_err(|e| loaded.blame(e))?;
    let store = Store::new(store::locate(
        cli.store.as_deref(),
        LoadedConfig::store(Some(loaded)),
    ));
    if !cli.dry_run {
        // Only the folder, for the lock: the tools make the rest.
        snap_shared::fsutil::create_private_dir(&store.root)
            .map_err(|e| Error::io(&store.root, e))?;
    }
    let _lock = match cli.dry_run {
        true => None,
        false => match StoreLock::acquire(&store.root.join(LOCK), TOOL) {
            Ok(l) => Some(l),
            Err(e) if e.exit == Exit::TempFail => {
                report
                    .detail(|| "another --due run is at work; this one leaves it to finish".into());
                return Ok(Exit::Ok);
            }
            Err(e) => return Err(e),
        },
    };
    let now = Local::now().naive_local();
    let mut run = Run {
        tools,
        report,
        dry_run: cli.dry_run,
        notices: Notices::new(hook, &store, now.date(), report),
        outcomes: Vec::new(),
    };
    if let Some(floor) = warn_free(loaded)? {
        let shown = format!("the store {}", store.root.display());
        let space = snap_shared::fsutil::free_space(&store.root).ok();
        run.space("store", &shown, space, floor, "collect.warn_free");
    }
    for (entry, every) in &disks {
        let (disk, args) = disk_job(&store, entry);
        let lastly = last::disk_snapshot(&store, &disk);
        if every.due(lastly, now) {
            let what = What::Disk { disk, args };
            run.job(what, why(*every, "disk", lastly));
        }
    }
    for set in &config.backup_sets {
        let lastly = last::collected(&store, &set.name);
        if schedule.incremental.due(lastly, now) {
            let what = What::Collect {
                set: set.name.clone(),
            };
            run.job(what, why(schedule.incremental, "incremental", lastly));
        }
    }
    let mut read: Vec<(String, Held)> = Vec::new();
    if schedule.external != Every::Manual && !dests.is_empty() {
        read = external(&mut run, &store, config, &dests, &schedule, now, retention);
    }
    let added = run.outcomes.iter().any(|o| {
        matches!(
            o.what,
            What::Disk { .. } | What::Collect { .. } | What::Pack { .. }
        ) && o.status == Status::Done
    });
    for spec in dests.iter().filter(|d| d.warn_free.is_some()) {
        let reached = read
            .iter()
            .any(|(n, h)| *n == spec.name && matches!(h, Held::Archives(_)));
        if reached && let Some(floor) = spec.warn_free {
            let space = snap_dest::runtime()
                .and_then(|rt| snap_dest::Dest::open(spec, &rt, &Default::default(), false))
                .ok()
                .and_then(|d| d.free_space());
            let shown = format!("destination {}", spec.name);
            run.space(&spec.name, &shown, space, floor, "warn_free");
        }
    }
    let seen = seen_by_place(&store);
    if schedule.verify != Every::Never {
        for (dest, held) in &read {
            if let Held::Archives(archives) = held {
                run.verify(Some(dest), archives, seen.get(dest), schedule.verify, now);
            }
        }
    }
    // The store's prune comes after the destinations' verifies: with
    // `keep_archives: until-pushed` it drops the data of what they now hold.
    let handed_on = keep_archives(retention)? == KeepArchives::UntilPushed
        && run.outcomes.iter().any(|o| {
            matches!(
                o.what,
                What::Push { .. } | What::Verify { dest: Some(_), .. }
            ) && o.status == Status::Done
        });
    if (added || handed_on) && rules::configured(retention, None)?.is_some() {
        let why = match added {
            true => "the run added to the store",
            false => "destinations took archives the store may drop (keep_archives)",
        };
        run.job(What::Prune { dest: None }, why.into());
    }
    if schedule.verify != Every::Never {
        // The store's own archives too, read where they are (not those
        // whose data it dropped: their destinations' verifies read them).
        let archives: Vec<_> = config
            .backup_sets
            .iter()
            .flat_map(|s| last::archives(&store, &s.name))
            .filter(|a| !archive::is_away(&ArchiveFiles::new(store.archive_dir(&a.set), &a.id)))
            .collect();
        run.verify(None, &archives, seen.get("store"), schedule.verify, now);
    }
    Ok(run.exit())
}

/// The external phase; returns the destinations it read and what they hold.
fn external(
    run: &mut Run,
    store: &Store,
    config: &snap_shared::config::Config,
    dests: &[DestSpec],
    schedule: &Schedule,
    now: NaiveDateTime,
    retention: Option<&Value>,
) -> Vec<(String, Held)> {
    let held: Vec<(&DestSpec, Held)> = dests
        .iter()
        .map(|d| (d, last::held(run.tools, &d.name)))
        .collect();
    let due: Vec<(&DestSpec, String)> = held
        .iter()
        .filter_map(|(d, h)| {
            let why = match h {
                Held::Unreached(code) => {
                    format!("external {}: not read (exit {code})", schedule.external)
                }
                Held::Archives(_) => {
                    if !schedule.external.due(h.newest(), now) {
                        return None;
                    }
                    why(schedule.external, "external", h.newest())
                }
            };
            Some((*d, why))
        })
        .collect();
    if !due.is_empty() {
        for set in &config.backup_sets {
            pack(run, store, &set.name, schedule, now);
        }
        let mut priorities: Vec<i64> = due.iter().map(|(d, _)| d.priority).collect();
        priorities.sort();
        priorities.dedup();
        for p in priorities {
            let mut present = false;
            for (d, why) in due.iter().filter(|(d, _)| d.priority == p) {
                let o = run.job(
                    What::Push {
                        dest: d.name.clone(),
                    },
                    why.clone(),
                );
                present |= o.status != Status::MediaMissing;
                // A push that sent something changed the destination: retention follows.
                if o.status == Status::Done
                    && rules::configured(retention, Some(&d.name)).is_ok_and(|r| r.is_some())
                {
                    run.job(
                        What::Prune {
                            dest: Some(d.name.clone()),
                        },
                        "after a push that reached it".into(),
                    );
                }
            }
            if present {
                break;
            }
        }
    }
    // What each destination holds now, for the verify.
    if run.dry_run {
        return held.into_iter().map(|(d, h)| (d.name.clone(), h)).collect();
    }
    dests
        .iter()
        .map(|d| (d.name.clone(), last::held(run.tools, &d.name)))
        .collect()
}

/// Packs a set's newest snapshot unless it is packed already.
fn pack(run: &mut Run, store: &Store, set: &str, schedule: &Schedule, now: NaiveDateTime) {
    let Ok(Some(latest)) = store.latest_id(set) else {
        return;
    };
    if store
        .archive_dir(set)
        .join(format!("{latest}.json"))
        .exists()
    {
        return;
    }
    let archives = last::archives(store, set);
    let full_at = last::full(&archives);
    let full = archives.is_empty() || schedule.full.due(full_at, now);
    let why = match full {
        true => why(schedule.full, "full", full_at),
        false => format!("full {} is not due: incremental", schedule.full),
    };
    run.job(
        What::Pack {
            set: set.to_string(),
            full,
        },
        why,
    );
}

/// Why a job is due: `daily, last done 2025-04-01 00:10`, or `never done`.
fn why(every: Every, key: &str, last: Option<NaiveDateTime>) -> String {
    match last {
        Some(l) => format!("{key} {every}, last done {}", l.format("%Y-%m-%d %H:%M")),
        None => format!("{key} {every}, never done"),
    }
}

/// Each disk entry with its schedule (its own, else the incremental one).
fn disk_schedules(disks: &[DiskEntry], default: Every) -> Result<Vec<(DiskEntry, Every)>> {
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let every = match &d.schedule {
                Some(s) => parse_every(s, &["never"])
                    .map_err(|e| Error::config(format!("disks[{i}].schedule"), e))?,
                None => default,
            };
            Ok((d.clone(), every))
        })
        .collect()
}

/// The store's name of a config's disk, and `snap-disk create`'s arguments
/// for it: the image, or the libvirt domain (its disk found by the records
/// of earlier snapshots through it; named by the domain before the first).
fn disk_job(store: &snap_shared::store::Store, entry: &DiskEntry) -> (String, Vec<String>) {
    match (&entry.image, &entry.domain) {
        (Some(image), _) => (disk_name(image), vec!["create".into(), image.clone()]),
        (None, Some(domain)) => {
            let target = entry.target.as_deref();
            let disk = last::domain_disk(store, domain, target).unwrap_or_else(|| domain.clone());
            let mut args = vec!["create".into(), "--domain".into(), domain.clone()];
            if let Some(t) = target {
                args.extend(["--target".into(), t.to_string()]);
            }
            (disk, args)
        }
        // The config's check refuses an entry with neither.
        (None, None) => (String::new(), vec!["create".into()]),
    }
}

/// The disk name snap-disk gives an image: its file name without extension.
fn disk_name(image: &str) -> String {
    let p = std::path::Path::new(image);
    p.file_stem()
        .or_else(|| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| image.to_string())
}

/// `collect.warn_free`, checked.
fn warn_free(loaded: &LoadedConfig) -> Result<Option<Floor>> {
    loaded
        .config
        .collect
        .warn_free
        .as_deref()
        .map(|s| Floor::parse(s).map_err(|e| loaded.blame(Error::config("collect.warn_free", e))))
        .transpose()
}

/// When each `SET/ID` was last verified, by place.
fn seen_by_place(store: &Store) -> std::collections::BTreeMap<String, verify::Seen> {
    let mut out: std::collections::BTreeMap<String, verify::Seen> = Default::default();
    for ((place, kind, what), v) in snap_read::verified::latest(store) {
        if kind == "archive" && v.ok {
            out.entry(place).or_default().insert(what, v.time);
        }
    }
    out
}

/// The jobs of a run as they are done.
struct Run<'a> {
    tools: &'a Tools,
    report: &'a Reporter,
    dry_run: bool,
    notices: Notices<'a>,
    outcomes: Vec<Outcome>,
}

impl Run<'_> {
    /// Runs one job (with --dry-run, only says it is due).
    fn job(&mut self, what: What, why: String) -> Outcome {
        let started = Instant::now();
        let outcome = if self.dry_run {
            self.report.note(&format!("{}: due; {why}", what.label()));
            Outcome::of(what, why, 0, &[], started)
        } else {
            let (tool, args) = command(&what);
            let ran = self.tools.run(tool, &args);
            let (exit, records) = match ran {
                Ok(r) => (r.exit, r.records),
                Err(e) => {
                    self.report.failed(&e);
                    (e.exit.code(), Vec::new())
                }
            };
            let o = Outcome::of(what, why, exit, &records, started);
            self.report.note(&o.line());
            println!("{}", o.record());
            self.notices.job(&o);
            o
        };
        self.outcomes.push(outcome.clone());
        outcome
    }

    /// Reads back this run's share of a place's archives (`dest` None: the store).
    fn verify(
        &mut self,
        dest: Option<&String>,
        archives: &[ArchiveRecord],
        seen: Option<&verify::Seen>,
        every: Every,
        now: NaiveDateTime,
    ) {
        let empty = verify::Seen::new();
        let names = verify::choose(archives, seen.unwrap_or(&empty), every, now);
        if !names.is_empty() {
            let why = format!("verify {every}: a share of {}", archives.len());
            let dest = dest.cloned();
            self.job(What::Verify { dest, names }, why);
        }
    }

    /// A place's free space (free, total) against its warning threshold
    /// (`key` names it in the message); a place whose space is unknown
    /// (a bucket) is not judged.
    fn space(
        &mut self,
        place: &str,
        shown: &str,
        space: Option<(u64, u64)>,
        floor: Floor,
        key: &str,
    ) {
        let Some((free, total)) = space else {
            return;
        };
        if free < floor.bytes(total) {
            let message = format!(
                "{shown} has {} free, below {key} ({})",
                human_bytes(free),
                human_bytes(floor.bytes(total))
            );
            self.report.warn(&message);
            if !self.dry_run {
                self.notices.low_disk(place, &message, free);
            }
        }
    }

    /// 0 when every job was done (or found its drive away); else the first
    /// failure's exit, or 1 when one finished with errors.
    fn exit(&self) -> Exit {
        let failed = self.outcomes.iter().find(|o| o.status == Status::Failed);
        match failed {
            Some(o) => exit_of(o.exit),
            None if self.outcomes.iter().any(|o| o.status == Status::Partial) => Exit::Partial,
            None => Exit::Ok,
        }
    }
}

/// The tool and arguments of a job.
fn command(what: &What) -> (&'static str, Vec<String>) {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    match what {
        What::Disk { args, .. } => ("snap-disk", args.clone()),
        What::Collect { set } => ("snap-collect", s(&["--set", set])),
        What::Pack { set, full } => {
            let mut a = s(&["--snapshot", &format!("{set}/latest")]);
            if !full {
                a.push("--incremental".into());
            }
            ("snap-pack", a)
        }
        What::Push { dest } => ("snap-push", s(&["--all", "--dest", dest, "--no-notify"])),
        What::Prune { dest: None } => ("snap-prune", Vec::new()),
        What::Prune { dest: Some(d) } => ("snap-prune", s(&["--dest", d])),
        What::Verify { dest, names } => {
            let mut a = match dest {
                Some(d) => s(&["--from", d, "verify"]),
                None => s(&["verify", "--archive"]),
            };
            a.extend(names.iter().cloned());
            ("snap-restore", a)
        }
    }
}
