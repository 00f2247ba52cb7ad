//! Names by date: `SET/2025-04-01` is the newest snapshot of that day,
//! `SET/2025-04-01T10` the newest of that hour, as restic and borg users
//! name what they want back ("the backup of the 1st").
//!
//! Days and hours are UTC, as ids are, unless the process chose the
//! machine's local time (`snap-restore --local-time`, [`use_local_time`]):
//! a process-wide choice, like `TZ`, so every verb that takes a name reads
//! dates the same way. A date that matches nothing is exit 66 naming the
//! nearest snapshots before and after it.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};

static LOCAL: AtomicBool = AtomicBool::new(false);

/// Reads the days and hours of date names in the machine's time zone
/// (`TZ`, else /etc/localtime) rather than UTC, for the rest of the process.
pub fn use_local_time(on: bool) {
    LOCAL.store(on, Ordering::Relaxed);
}

/// A day or an hour, as a name gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateName {
    start: NaiveDateTime,
    hour: bool,
}

impl DateName {
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH`; None for anything else.
    pub fn parse(s: &str) -> Option<DateName> {
        let (day, hour) = match s.split_once('T') {
            Some((d, h)) => (d, Some(h)),
            None => (s, None),
        };
        if day.len() != 10 {
            return None;
        }
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let h = match hour {
            None => 0,
            Some(h) if h.len() == 2 && h.bytes().all(|b| b.is_ascii_digit()) => h.parse().ok()?,
            Some(_) => return None,
        };
        Some(DateName {
            start: date.and_hms_opt(h, 0, 0)?,
            hour: hour.is_some(),
        })
    }

    /// The UTC instants `[from, to)` the day or hour covers. A local day
    /// across a clock change is 23 or 25 hours; a local hour that the clock
    /// skips is empty.
    pub fn range(&self) -> (DateTime<Utc>, DateTime<Utc>) {
        let len = if self.hour {
            TimeDelta::hours(1)
        } else {
            TimeDelta::days(1)
        };
        let end = self.start + len;
        if !LOCAL.load(Ordering::Relaxed) {
            return (self.start.and_utc(), end.and_utc());
        }
        let at = |t: NaiveDateTime| {
            Local
                .from_local_datetime(&t)
                .earliest()
                // In a gap the clock jumped over: the instant it jumped to.
                .or_else(|| {
                    Local
                        .from_local_datetime(&(t + TimeDelta::hours(1)))
                        .earliest()
                })
                .map_or(t.and_utc(), |l| l.with_timezone(&Utc))
        };
        (at(self.start), at(end))
    }

    /// `2025-04-01 (UTC)` or `2025-04-01 10:00 (local time)`, for messages.
    pub fn describe(&self) -> String {
        let zone = match LOCAL.load(Ordering::Relaxed) {
            true => "local time",
            false => "UTC",
        };
        match self.hour {
            true => format!("{} ({zone})", self.start.format("%Y-%m-%d %H:00")),
            false => format!("{} ({zone})", self.start.format("%Y-%m-%d")),
        }
    }

    /// Whether an id's time falls in the day or hour.
    pub fn holds(&self, id: &str) -> bool {
        let (from, to) = self.range();
        snap_shared::id::parse_id(id).is_some_and(|(t, _)| from <= t && t < to)
    }
}

/// "nearest: data/…Z (before), data/…Z (after)" from a set's ids in order.
pub fn nearest(set: &str, ids: &[&str], date: &DateName) -> String {
    let (from, _) = date.range();
    let time = |id: &str| snap_shared::id::parse_id(id).map(|(t, _)| t);
    let before = ids
        .iter()
        .rev()
        .find(|id| time(id).is_some_and(|t| t < from));
    let after = ids.iter().find(|id| time(id).is_some_and(|t| t >= from));
    let mut parts = Vec::new();
    if let Some(b) = before {
        parts.push(format!("{set}/{b} (before)"));
    }
    if let Some(a) = after {
        parts.push(format!("{set}/{a} (after)"));
    }
    match parts.is_empty() {
        true => format!("{set} has none"),
        false => format!("nearest: {}", parts.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days and hours parse; ids, bad dates and other shapes do not.
    #[test]
    fn shapes() {
        let d = DateName::parse("2025-04-01").unwrap();
        assert!(d.holds("2025-04-01T000000Z") && d.holds("2025-04-01T235959Z-2"));
        assert!(!d.holds("2025-04-02T000000Z") && !d.holds("2025-03-31T235959Z"));
        let h = DateName::parse("2025-04-01T10").unwrap();
        assert!(h.holds("2025-04-01T105959Z") && !h.holds("2025-04-01T110000Z"));
        for bad in [
            "2025-04-01T100000Z",
            "2025-4-01",
            "2025-02-30",
            "2025-04-01T24",
            "2025-04-01T1",
            "latest",
        ] {
            assert_eq!(DateName::parse(bad), None, "{bad}");
        }
        assert_eq!(d.describe(), "2025-04-01 (UTC)");
        let ids = ["2025-03-30T100000Z", "2025-04-03T100000Z"];
        assert_eq!(
            nearest("data", &ids, &d),
            "nearest: data/2025-03-30T100000Z (before), data/2025-04-03T100000Z (after)"
        );
    }
}
