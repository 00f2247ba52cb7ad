//! `snap-restore timeline`: every snapshot, archive and disk snapshot of the
//! store on one self-contained HTML page (no network, no CDN: inline CSS
//! and SVG, a few lines of script for the filter), made from the catalog,
//! the pins beside the records, the config's retention and schedule, and the
//! store's filesystem. It works offline, from cron, as a mail attachment.
//!
//! This module gathers what the page shows ([`Timeline`]); `html` renders it.

pub mod costs;
pub mod dests;
pub mod html;
pub mod model;
pub mod plots;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
pub use model::{ArchiveCard, Card, DiskView, SetView, Space, Timeline};
use serde_json::Value;

use snap_shared::catalog::Catalog;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::record::{ArchiveRecord, DiskSnapshotRecord, SnapshotRecord};
use snap_shared::retention::policy::Candidate;
use snap_shared::retention::rules;
use snap_shared::retention::tagged::Rules;
use snap_shared::schedule::{Every, Schedule};
use snap_shared::store::Store;

/// Reads the store's catalog (and the pins beside the records), applies
/// the config's retention and schedule.
pub fn gather(
    store: &Store,
    config: Option<&LoadedConfig>,
    dests: Vec<dests::DestView>,
    now: DateTime<Utc>,
) -> Result<Timeline> {
    if !store.root.is_dir() {
        return Err(Error::new(
            Exit::NoInput,
            format!("store {}", store.root.display()),
            "not found",
        ));
    }
    let (catalog, _) = Catalog::open(store)?;
    let retention = config.and_then(|c| c.config.retention.as_ref());
    let policy = rules::configured(retention, None)?.map(|(p, _)| p);
    let plan =
        Schedule::parse(config.and_then(|c| c.config.schedule.as_ref())).map_err(
            |e| match config {
                Some(c) => c.blame(e),
                None => e,
            },
        )?;
    let schedule = config
        .and_then(|c| c.config.schedule.as_ref())
        .map(|_| plan.incremental.to_string());
    // `never` verifies nothing: no verify is ever overdue.
    let verify_every = plan.verify.period().unwrap_or(Duration::days(36_500));
    // A destination lags when it misses two of its slots (a week when it has none).
    let push_every = plan.external.period().map_or(Duration::weeks(1), |p| p * 2);
    let archives = archives_by_id(catalog.archives(None)?);
    let mut verified: BTreeMap<String, Vec<(String, String, snap_read::verified::Verified)>> =
        BTreeMap::new();
    for ((place, kind, what), v) in snap_read::verified::latest(store) {
        verified.entry(what).or_default().push((place, kind, v));
    }
    let mut by_set: BTreeMap<String, Vec<Card>> = BTreeMap::new();
    for rec in catalog.snapshots(None)? {
        let archive = archives.get(&(rec.set.clone(), rec.id.clone())).cloned();
        let json = snap_read::loc::Loc::Path(store.record_path(&rec.set, &rec.id));
        let pin =
            snap_read::annotate::read_pin(&json, &rec.id).map(|p| p.reason.unwrap_or_default());
        let name = format!("{}/{}", rec.set, rec.id);
        let key = (rec.set.clone(), rec.id.clone());
        let mut c = card(rec, archive, pin);
        c.verified = verified.remove(&name).unwrap_or_default();
        c.held_at = dests
            .iter()
            .filter(|d| d.held.as_ref().is_ok_and(|h| h.archives.contains(&key)))
            .map(|d| d.name.clone())
            .collect();
        by_set.entry(key.0).or_default().push(c);
    }
    let mut sets: Vec<SetView> = by_set
        .into_iter()
        .map(|(name, mut cards)| {
            cards.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
            if let Some(p) = &policy {
                preview(p, &mut cards, now);
            }
            let overdue_since = overdue(plan.incremental, cards.first().map(|c| c.time), now);
            SetView {
                name,
                cards,
                overdue_since,
            }
        })
        .collect();
    sets.sort_by(|a, b| a.name.cmp(&b.name));
    let disks = disk_views(catalog.disk_snapshots(None)?);
    let space = space(store, &sets, now);
    Ok(Timeline {
        generated: now,
        store: store.root.display().to_string(),
        sets,
        disks,
        space,
        policy: policy.map(|p| p.to_string()),
        schedule,
        dests,
        verify_every,
        push_every,
        pictures: true,
    })
}

/// `schedule.verify`: "daily", "weekly", "monthly" or a number of days; 30 days without it.
fn archives_by_id(list: Vec<ArchiveRecord>) -> BTreeMap<(String, String), ArchiveCard> {
    list.into_iter()
        .map(|a| {
            (
                (a.set.clone(), a.id.clone()),
                ArchiveCard {
                    bytes: a.bytes,
                    sha256: a.sha256,
                    encrypted: a.encryption.is_some(),
                    base: a.base,
                },
            )
        })
        .collect()
}

fn card(rec: SnapshotRecord, archive: Option<ArchiveCard>, pin: Option<String>) -> Card {
    Card {
        time: rec.created,
        host: rec.host,
        files: rec.files,
        bytes: rec.bytes,
        new_bytes: rec.new_bytes,
        new_files: rec.new_files,
        changes: rec
            .extra
            .get("changes")
            .and_then(|v| serde_json::from_value(v.clone()).ok()),
        errors: rec.errors,
        duration_s: rec.extra.get("duration_s").and_then(Value::as_f64),
        description: rec.description,
        tags: rec.tags,
        pin,
        archive,
        retention: None,
        verified: Vec::new(),
        held_at: Vec::new(),
        id: rec.id,
    }
}

/// What the policy would do with each card (pins outrank it, as in snap-prune).
fn preview(policy: &Rules, cards: &mut [Card], now: DateTime<Utc>) {
    let candidates: Vec<Candidate> = cards
        .iter()
        .map(|c| Candidate {
            time: c.time,
            tags: &c.tags,
            pinned: c.pin.is_some(),
        })
        .collect();
    let verdicts = policy.apply(&candidates, now);
    for (c, v) in cards.iter_mut().zip(verdicts) {
        c.retention = Some((v.keep, v.reasons));
    }
}

/// When the newest snapshot is older than the schedule's period (with a
/// quarter of it as grace): since when the set is overdue.
fn overdue(
    every: Every,
    newest: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let period = every.period()?;
    let due = newest? + period + period / 4;
    (due < now).then_some(due)
}

fn disk_views(list: Vec<DiskSnapshotRecord>) -> Vec<DiskView> {
    let mut by_disk: BTreeMap<String, Vec<DiskSnapshotRecord>> = BTreeMap::new();
    for r in list {
        by_disk.entry(r.disk.clone()).or_default().push(r);
    }
    by_disk
        .into_iter()
        .map(|(name, mut snapshots)| {
            snapshots.sort_by_key(|s| s.created);
            DiskView { name, snapshots }
        })
        .collect()
}

fn space(store: &Store, sets: &[SetView], now: DateTime<Utc>) -> Space {
    let (free, total) = snap_shared::fsutil::free_space(&store.root).unwrap_or((0, 0));
    let since = now - Duration::days(30);
    let added: u64 = sets
        .iter()
        .flat_map(|s| &s.cards)
        .filter(|c| c.time > since)
        .map(|c| c.new_bytes + c.archive.as_ref().map_or(0, |a| a.bytes))
        .sum();
    Space {
        free,
        total,
        per_day: added as f64 / 30.0,
    }
}

/// `snap-restore timeline [--html FILE]`: the page, written atomically to
/// FILE, or to stdout.
pub fn run(
    store: &Store,
    config: Option<&LoadedConfig>,
    out_file: Option<&Path>,
    pictures: bool,
    report: &snap_cli::Reporter,
) -> Result<Exit> {
    let mut t = gather(store, config, dests::gather(config)?, Utc::now())?;
    t.pictures = pictures;
    let page = html::render(&t);
    match out_file {
        Some(path) => {
            snap_shared::fsutil::write_atomic(path, 0o644, true, |f| {
                std::io::Write::write_all(f, page.as_bytes())
            })
            .map_err(|e| Error::io(path, e).with_exit(Exit::CantCreate))?;
            let n: usize = t.sets.iter().map(|s| s.cards.len()).sum();
            report.note(&format!(
                "{}: {n} snapshots in {} sets, {} disks",
                path.display(),
                t.sets.len(),
                t.disks.len()
            ));
        }
        None => std::io::Write::write_all(&mut std::io::stdout().lock(), page.as_bytes())
            .map_err(|e| Error::io_ctx("stdout", e))?,
    }
    Ok(Exit::Ok)
}
