//! Which archives a run reads back, as `restic check --read-data-subset`
//! does: a share of them each run, the least recently verified first, so
//! that every archive at a destination is read within `schedule.verify`'s
//! period. The share is 1/D of the archives (D: the period in days, at
//! least one archive), so a machine that runs once a day still covers them
//! all within the period; an hourly one finishes early and then rests.
//! When each was last read comes from the store's verify log
//! (`verified.jsonl`), where `snap-restore verify` writes it.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};

use snap_shared::record::ArchiveRecord;
use snap_shared::schedule::Every;

use super::last::local;

/// The period of a verify schedule in days; None when it never runs.
pub fn period_days(every: Every) -> Option<u32> {
    match every {
        Every::Hourly | Every::Daily(_) | Every::Always => Some(1),
        Every::Weekly(..) => Some(7),
        Every::Monthly => Some(30),
        Every::Days(n) => Some(n),
        Every::Never | Every::Manual => None,
    }
}

/// When each archive (`SET/ID`) was last verified at this place.
pub type Seen = BTreeMap<String, chrono::DateTime<chrono::Utc>>;

/// The `SET/ID`s to read back this run at a place holding `archives`.
pub fn choose(
    archives: &[ArchiveRecord],
    seen: &Seen,
    every: Every,
    now: NaiveDateTime,
) -> Vec<String> {
    let Some(days) = period_days(every) else {
        return Vec::new();
    };
    let stale = |last: Option<NaiveDateTime>| match (last, every) {
        (None, _) => true,
        (Some(l), Every::Days(n)) => now - l >= Duration::days(n.into()),
        (Some(l), e) => e.latest_slot(now).is_none_or(|slot| l < slot),
    };
    let mut due: Vec<(Option<NaiveDateTime>, String)> = archives
        .iter()
        .map(|a| {
            let name = format!("{}/{}", a.set, a.id);
            (seen.get(&name).copied().map(local), name)
        })
        .filter(|(last, _)| stale(*last))
        .collect();
    // Never read first, then the longest ago.
    due.sort();
    let share = archives.len().div_ceil(days as usize).max(1);
    due.into_iter().take(share).map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(id: &str) -> ArchiveRecord {
        serde_json::from_value(serde_json::json!({"set": "d", "id": id, "source": id,
            "path": "/x", "bytes": 1, "sha256": "0", "compression": "zstd", "encryption": null,
            "base": null, "index": "/i"}))
        .unwrap()
    }

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    /// A weekly verify of 14 archives reads 2 a run, never-read first, then
    /// the oldest; an archive read since the slot began waits for the next.
    #[test]
    fn a_share_a_run_least_recent_first() {
        let archives: Vec<ArchiveRecord> = (1..=14)
            .map(|d| archive(&format!("2025-04-{d:02}T000000Z")))
            .collect();
        let mut seen = Seen::new();
        let when = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        for a in &archives[2..] {
            seen.insert(format!("d/{}", a.id), when("2025-04-20T00:00:00Z"));
        }
        seen.insert(
            format!("d/{}", archives[5].id),
            when("2025-04-10T00:00:00Z"),
        );
        let weekly = Every::Weekly(chrono::Weekday::Mon, chrono::NaiveTime::MIN);
        let now = at("2025-04-22 12:00"); // a Tuesday: the slot is Monday the 21st
        let chosen = choose(&archives, &seen, weekly, now);
        assert_eq!(chosen, ["d/2025-04-01T000000Z", "d/2025-04-02T000000Z"]);
        seen.insert("d/2025-04-01T000000Z".into(), when("2025-04-22T00:00:00Z"));
        seen.insert("d/2025-04-02T000000Z".into(), when("2025-04-22T00:00:00Z"));
        let chosen = choose(&archives, &seen, weekly, now);
        assert_eq!(chosen[0], "d/2025-04-06T000000Z");
        assert!(choose(&archives, &seen, Every::Never, now).is_empty());
    }
}
