//! What the timeline shows: the cards of snapshots and archives by set, the
//! disks, the space used, and the whole page's model, gathered by the
//! module above and rendered by `html`.

use chrono::{DateTime, Duration, Utc};

use snap_shared::record::DiskSnapshotRecord;

/// One snapshot of a set, with its archive when there is one.
#[derive(Debug, Clone)]
pub struct Card {
    pub id: String,
    pub time: DateTime<Utc>,
    pub host: String,
    pub files: u64,
    pub bytes: u64,
    /// Bytes this snapshot copied (the rest are hard links to its parent).
    pub new_bytes: u64,
    pub new_files: u64,
    /// What changed since its parent, entry by entry (snap-collect counts it).
    pub changes: Option<snap_shared::index::ChangeCounts>,
    pub errors: u64,
    pub duration_s: Option<f64>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub pin: Option<String>,
    /// The store's archive of it: size, sha256, whether encrypted, its base.
    pub archive: Option<ArchiveCard>,
    /// What the configured policy does with it: kept (and why) or removed.
    pub retention: Option<(bool, Vec<String>)>,
    /// Its verifies (the snapshot's and its archive's), newest of each
    /// (where, kind): `("store", "snapshot", …)`, `("usb", "archive", …)`.
    pub verified: Vec<(String, String, snap_read::verified::Verified)>,
    /// The configured destinations that hold its archive.
    pub held_at: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ArchiveCard {
    pub bytes: u64,
    pub sha256: String,
    pub encrypted: bool,
    pub base: Option<String>,
}

/// A backup set: its snapshots, newest first, and its health.
#[derive(Debug, Clone)]
pub struct SetView {
    pub name: String,
    pub cards: Vec<Card>,
    /// Past this, a new snapshot is due (from the config's schedule).
    pub overdue_since: Option<DateTime<Utc>>,
}

/// A disk and its snapshots, oldest first (each names its parent: chains and branches).
#[derive(Debug, Clone)]
pub struct DiskView {
    pub name: String,
    pub snapshots: Vec<DiskSnapshotRecord>,
}

/// The store's filesystem and how fast snapshots fill it.
#[derive(Debug, Clone, Default)]
pub struct Space {
    pub free: u64,
    pub total: u64,
    /// Bytes the snapshots of the last 30 days added, a day on average.
    pub per_day: f64,
}

impl Space {
    /// When the free space runs out at the recent rate, if it grows at all.
    pub fn full_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.per_day >= 1.0).then(|| {
            let days = (self.free as f64 / self.per_day).min(36_500.0);
            now + Duration::seconds((days * 86_400.0) as i64)
        })
    }
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub generated: DateTime<Utc>,
    pub store: String,
    pub sets: Vec<SetView>,
    pub disks: Vec<DiskView>,
    pub space: Space,
    /// The store's retention policy in words, when the config has one.
    pub policy: Option<String>,
    /// How often snapshots are due (`schedule.incremental`).
    pub schedule: Option<String>,
    /// The configured destinations and what each holds.
    pub dests: Vec<super::dests::DestView>,
    /// A verify older than this is overdue (`schedule.verify`'s period; monthly: 31 days).
    pub verify_every: Duration,
    /// A destination that lags the store longer than this is "not pushed to
    /// lately": two of `schedule.external`'s periods, or a week.
    pub push_every: Duration,
    /// Whether the page draws its pictures (`timeline --no-pictures` leaves them out).
    pub pictures: bool,
}
