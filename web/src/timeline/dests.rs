//! What each configured destination holds, from one listing of it: which
//! archives (set and id) are there whole, and when each set was last pushed
//! (the time of its newest archive's record, which a push writes last).
//! A drive that is not plugged in or a bucket that does not answer is shown
//! as such; it never stops the page.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use snap_dest::{Dest, Reach, settings};
use snap_shared::config::LoadedConfig;

/// One configured destination.
#[derive(Debug, Clone)]
pub struct DestView {
    pub name: String,
    pub url: String,
    /// What it holds, or why it could not be listed.
    pub held: std::result::Result<Held, String>,
    /// What its archives cost a month and what its retention policy would
    /// keep (snap-prune's plan), when it could be listed.
    pub cost: Option<std::result::Result<snap_prune::cost::Cost, String>>,
    /// Not listed yet: `serve` waits for a slow destination only so long.
    pub pending: bool,
}

/// What a destination holds.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Whole archives, by (set, id).
    pub archives: BTreeSet<(String, String)>,
    /// Per set, when its newest archive's record was written.
    pub last_push: BTreeMap<String, DateTime<Utc>>,
    pub bytes: u64,
    /// Each whole archive: set, when its record was written, bytes; oldest first.
    pub dated: Vec<(String, DateTime<Utc>, u64)>,
    /// Disk snapshots, by disk: their names (records at `disks/DISK/NAME.json`).
    pub disks: BTreeMap<String, BTreeSet<String>>,
}

impl Held {
    /// When anything was last pushed here.
    pub fn newest(&self) -> Option<DateTime<Utc>> {
        self.last_push.values().max().copied()
    }
}

impl DestView {
    /// Since when it is stale: nothing pushed for `period` (twice the
    /// schedule's, or a week without one) while the store has newer snapshots.
    pub fn stale_since(
        &self,
        period: Duration,
        newest_local: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let held = self.held.as_ref().ok()?;
        let last = held.newest();
        let local = newest_local?;
        if last.is_some_and(|l| l >= local) {
            return None;
        }
        let due = last.map_or(local, |l| l + period);
        (due < now).then_some(due)
    }
}

/// Lists every configured destination (a bad config is the caller's error).
pub fn gather(config: Option<&LoadedConfig>) -> snap_shared::error::Result<Vec<DestView>> {
    let specs = settings::from_config(config)?;
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let rt = snap_dest::runtime()?;
    Ok(specs.iter().map(|spec| one(spec, config, &rt)).collect())
}

/// Lists one destination and plans its retention (the config's) for its cost.
pub fn one(
    spec: &snap_dest::DestSpec,
    config: Option<&LoadedConfig>,
    rt: &std::sync::Arc<snap_dest::Runtime>,
) -> DestView {
    let retention = config.and_then(|c| c.config.retention.as_ref());
    let held = Dest::open(spec, rt, &Reach::default(), false)
        .and_then(|d| d.list_dated(""))
        .map(|listing| held_of(&listing))
        .map_err(|e| e.to_string());
    let cost = held.is_ok().then(|| {
        snap_prune::cost::cost_at(spec, retention, rt, Utc::now()).map_err(|e| e.to_string())
    });
    DestView {
        name: spec.name.clone(),
        url: spec.location.url(),
        held,
        cost,
        pending: false,
    }
}

/// Whole archives and last pushes from a listing with times.
fn held_of(listing: &[(String, u64, std::time::SystemTime)]) -> Held {
    let sizes: Vec<(String, u64)> = listing.iter().map(|(k, s, _)| (k.clone(), *s)).collect();
    let times: BTreeMap<&str, std::time::SystemTime> =
        listing.iter().map(|(k, _, t)| (k.as_str(), *t)).collect();
    let mut held = Held::default();
    for group in snap_shared::retention::listing::group_archives(&sizes) {
        for e in group.entries.iter().filter(|e| e.broken.is_none()) {
            held.archives.insert((group.set.clone(), e.id.clone()));
            held.bytes += e.bytes.unwrap_or(0);
            let key = format!("{}/{}.json", group.set, e.id);
            if let Some(t) = times.get(key.as_str()) {
                let t: DateTime<Utc> = (*t).into();
                held.dated
                    .push((group.set.clone(), t, e.bytes.unwrap_or(0)));
                let last = held.last_push.entry(group.set.clone()).or_insert(t);
                *last = (*last).max(t);
            }
        }
    }
    held.dated.sort_by_key(|d| d.1);
    for (key, _, _) in listing {
        let Some(rest) = key.strip_prefix("disks/") else {
            continue;
        };
        if let Some((disk, name)) = rest.split_once('/')
            && let Some(name) = name.strip_suffix(".json")
            && name != "disk"
            && !name.contains('/')
        {
            held.disks
                .entry(disk.to_string())
                .or_default()
                .insert(name.to_string());
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    /// Whole archives count, a data file without a record does not; the
    /// last push is the newest record's time.
    #[test]
    fn listing_gives_archives_and_last_push() {
        let listing = vec![
            ("s/2026-01-01T000000Z.tar.zst".to_string(), 100, at(10)),
            ("s/2026-01-01T000000Z.json".to_string(), 1, at(11)),
            ("s/2026-01-02T000000Z.tar.zst".to_string(), 50, at(20)),
            ("t/2026-01-03T000000Z.tar.zst".to_string(), 7, at(30)),
            ("t/2026-01-03T000000Z.json".to_string(), 1, at(31)),
        ];
        let h = held_of(&listing);
        assert_eq!(h.archives.len(), 2);
        assert!(
            h.archives
                .contains(&("s".into(), "2026-01-01T000000Z".into()))
        );
        assert!(
            !h.archives
                .contains(&("s".into(), "2026-01-02T000000Z".into()))
        );
        assert_eq!(h.last_push["s"], DateTime::<Utc>::from(at(11)));
        assert_eq!(h.newest(), Some(DateTime::<Utc>::from(at(31))));
    }

    /// Stale when the store has newer snapshots and nothing came for a period.
    #[test]
    fn stale_after_a_period_behind_the_store() {
        let now = DateTime::<Utc>::from(at(100 * 86_400));
        let mut h = Held::default();
        h.last_push.insert("s".into(), now - Duration::days(10));
        let d = DestView {
            name: "usb".into(),
            url: "/m".into(),
            held: Ok(h),
            cost: None,
            pending: false,
        };
        let week = Duration::days(7);
        assert_eq!(
            d.stale_since(week, Some(now - Duration::days(1)), now),
            Some(now - Duration::days(3))
        );
        assert_eq!(
            d.stale_since(week, Some(now - Duration::days(11)), now),
            None
        );
    }
}
