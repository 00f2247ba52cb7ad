//! When a job is due: the config's `schedule`, in one small grammar.
//!
//! ```json
//! "schedule": { "incremental": "daily", "full": "weekly", "external": "always",
//!               "verify": "monthly" }
//! ```
//!
//! A value is one of: `hourly`, `daily`, `weekly`, `monthly`; a number of
//! days (every N days since it was last done, anacron's period); a time,
//! `"HH:MM"` (daily at that time); a weekday, `"Sat"` or `"Saturday"`
//! (weekly, from midnight), optionally with a time, `"Sat 02:30"`; and for
//! some keys `never` (full, verify), `always` and `manual` (external). Times
//! are the machine's local time. A week starts on Monday.
//!
//! Due works as anacron does: each value marks slots (the start of every
//! hour, every day at the time, …); a job is due when it was last done
//! before the latest slot that has begun, so a machine that slept through
//! three slots runs the job once, not three times. When it was last done
//! comes from the records, never from a state file that can drift.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Weekday};
use serde_json::Value;

use crate::error::{Error, Result};

/// How often a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Hourly,
    /// Every day from this time (midnight for plain `daily`).
    Daily(NaiveTime),
    /// Every week on this day from this time (Monday midnight for plain `weekly`).
    Weekly(Weekday, NaiveTime),
    /// The first of every month, from midnight.
    Monthly,
    /// Every so many days since it was last done (a number, as anacron's period).
    Days(u32),
    /// Never by the schedule (`full: never`, `verify: never`).
    Never,
    /// Every run (`external: always`: whenever a destination is there).
    Always,
    /// Only by hand (`external: manual`).
    Manual,
}

/// The keys of `schedule`, and the words each takes besides the periods.
const KEYS: &[(&str, &[&str])] = &[
    ("incremental", &[]),
    ("full", &["never"]),
    ("external", &["always", "manual"]),
    ("verify", &["never"]),
];

/// The config's `schedule`, every key parsed (the document's defaults
/// where one is left out: a daily incremental, a weekly full, an external
/// copy whenever the drive is there, a monthly verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub incremental: Every,
    pub full: Every,
    pub external: Every,
    pub verify: Every,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            incremental: Every::Daily(NaiveTime::MIN),
            full: Every::Weekly(Weekday::Mon, NaiveTime::MIN),
            external: Every::Always,
            verify: Every::Monthly,
        }
    }
}

impl Schedule {
    /// Parses `schedule` (None: the defaults); mistakes name the key (exit 78).
    pub fn parse(v: Option<&Value>) -> Result<Schedule> {
        let mut s = Schedule::default();
        let Some(v) = v else {
            return Ok(s);
        };
        let map = v.as_object().ok_or_else(|| {
            Error::config(
                "schedule",
                "must be an object like {\"incremental\": \"daily\", \"full\": \"weekly\"}",
            )
        })?;
        for (key, value) in map {
            let field = format!("schedule.{key}");
            let Some((_, extra)) = KEYS.iter().find(|(k, _)| k == key) else {
                return Err(Error::config(
                    field,
                    "unknown key; use incremental, full, external or verify",
                ));
            };
            let every = match (value.as_str(), value.as_u64()) {
                (Some(text), _) => {
                    parse_every(text, extra).map_err(|e| Error::config(&field, e))?
                }
                (None, Some(days @ 1..=3650)) => Every::Days(days as u32),
                _ => {
                    return Err(Error::config(
                        &field,
                        "must be a string like \"daily\", or a number of days (1 to 3650)",
                    ));
                }
            };
            match key.as_str() {
                "incremental" => s.incremental = every,
                "full" => s.full = every,
                "external" => s.external = every,
                _ => s.verify = every,
            }
        }
        Ok(s)
    }
}

/// One value of the grammar; `extra` are the words this key also takes.
pub fn parse_every(text: &str, extra: &[&str]) -> std::result::Result<Every, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let every = match words.as_slice() {
        ["hourly"] => Every::Hourly,
        ["daily"] => Every::Daily(NaiveTime::MIN),
        ["weekly"] => Every::Weekly(Weekday::Mon, NaiveTime::MIN),
        ["monthly"] => Every::Monthly,
        [w @ ("never" | "always" | "manual")] if extra.contains(w) => match *w {
            "never" => Every::Never,
            "always" => Every::Always,
            _ => Every::Manual,
        },
        [one] if one.contains(':') => Every::Daily(time(one)?),
        [day] => Every::Weekly(weekday(day)?, NaiveTime::MIN),
        [day, at] => Every::Weekly(weekday(day)?, time(at)?),
        _ => return Err(unknown(text, extra)),
    };
    Ok(every)
}

fn unknown(text: &str, extra: &[&str]) -> String {
    let mut words = vec!["hourly", "daily", "weekly", "monthly"];
    words.extend(extra);
    format!(
        "{text:?} is not a schedule; use {}, \"HH:MM\" (daily at), or a weekday like \"Sat\" or \"Sat 02:30\"",
        words.join(", ")
    )
}

fn time(s: &str) -> std::result::Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("{s:?} is not a time like 02:30"))
}

fn weekday(s: &str) -> std::result::Result<Weekday, String> {
    s.parse::<Weekday>()
        .map_err(|_| format!("{s:?} is not a weekday (Mon … Sun) nor a schedule word"))
}

impl std::fmt::Display for Every {
    /// As the config writes it: `daily`, `"02:30"` as `daily at 02:30`, `Sat 02:30`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |t: &NaiveTime| t.format("%H:%M").to_string();
        match self {
            Every::Hourly => f.write_str("hourly"),
            Every::Daily(t) if *t == NaiveTime::MIN => f.write_str("daily"),
            Every::Daily(t) => write!(f, "daily at {}", hm(t)),
            Every::Weekly(Weekday::Mon, t) if *t == NaiveTime::MIN => f.write_str("weekly"),
            Every::Weekly(d, t) if *t == NaiveTime::MIN => write!(f, "weekly on {d}"),
            Every::Weekly(d, t) => write!(f, "weekly on {d} {}", hm(t)),
            Every::Monthly => f.write_str("monthly"),
            Every::Days(n) => write!(f, "every {n} days"),
            Every::Never => f.write_str("never"),
            Every::Always => f.write_str("always"),
            Every::Manual => f.write_str("manual"),
        }
    }
}

impl Every {
    /// The time between two slots (a month: 31 days), for "overdue" on the
    /// timeline; None for never, always and manual.
    pub fn period(self) -> Option<Duration> {
        match self {
            Every::Hourly => Some(Duration::hours(1)),
            Every::Daily(_) => Some(Duration::days(1)),
            Every::Weekly(..) => Some(Duration::weeks(1)),
            Every::Monthly => Some(Duration::days(31)),
            Every::Days(n) => Some(Duration::days(n.into())),
            Every::Never | Every::Always | Every::Manual => None,
        }
    }

    /// The latest slot that has begun at `now` (local time); None for
    /// never, always and manual, which have no slots.
    pub fn latest_slot(self, now: NaiveDateTime) -> Option<NaiveDateTime> {
        let today = now.date();
        let slot = match self {
            Every::Hourly => today.and_hms_opt(now.hour(), 0, 0)?,
            Every::Daily(at) => {
                let t = today.and_time(at);
                if t <= now { t } else { t - Duration::days(1) }
            }
            Every::Weekly(day, at) => {
                let back =
                    (7 + today.weekday().num_days_from_monday() - day.num_days_from_monday()) % 7;
                let t = (today - Duration::days(back as i64)).and_time(at);
                if t <= now { t } else { t - Duration::days(7) }
            }
            Every::Monthly => {
                NaiveDate::from_ymd_opt(today.year(), today.month(), 1)?.and_time(NaiveTime::MIN)
            }
            Every::Days(_) | Every::Never | Every::Always | Every::Manual => return None,
        };
        Some(slot)
    }

    /// Whether a job last done at `last` (local time; None: never) is due
    /// at `now`: `always` every time, `never` and `manual` never, the rest
    /// when `last` is before the latest slot (once, however many were missed).
    pub fn due(self, last: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
        match self {
            Every::Always => true,
            Every::Never | Every::Manual => false,
            Every::Days(n) => last.is_none_or(|l| now - l >= Duration::days(n.into())),
            _ => match (last, self.latest_slot(now)) {
                (None, _) => true,
                (Some(l), Some(slot)) => l < slot,
                (Some(_), None) => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    /// The planning document's schedule parses; a left-out key keeps its default.
    #[test]
    fn the_documents_schedule_parses() {
        let s = Schedule::parse(Some(
            &json!({"incremental": "daily", "full": "weekly", "external": "weekly"}),
        ))
        .unwrap();
        assert_eq!(s.incremental, Every::Daily(NaiveTime::MIN));
        assert_eq!(s.external, Every::Weekly(Weekday::Mon, NaiveTime::MIN));
        assert_eq!(s.verify, Every::Monthly);
        let s =
            Schedule::parse(Some(&json!({"incremental": "02:30", "full": "Sat 03:00"}))).unwrap();
        assert_eq!(
            s.full,
            Every::Weekly(Weekday::Sat, NaiveTime::from_hms_opt(3, 0, 0).unwrap())
        );
    }

    /// A mistake names its key: an unknown key, a word the key does not take, a bad time.
    #[test]
    fn mistakes_name_the_key() {
        for (v, field) in [
            (json!({"incremantal": "daily"}), "schedule.incremantal"),
            (json!({"full": "always"}), "schedule.full"),
            (json!({"external": "25:00"}), "schedule.external"),
            (json!({"verify": true}), "schedule.verify"),
            (json!({"verify": 0}), "schedule.verify"),
        ] {
            let e = Schedule::parse(Some(&v)).unwrap_err();
            assert_eq!(e.context, field, "{e}");
            assert_eq!(e.exit, crate::error::Exit::Config);
        }
    }

    /// Due as anacron: once per slot, and once after a sleep through several.
    #[test]
    fn due_once_per_slot_and_once_after_a_sleep() {
        let daily = Every::Daily(NaiveTime::from_hms_opt(2, 0, 0).unwrap());
        assert!(daily.due(None, at("2026-12-01 10:00")));
        assert!(!daily.due(Some(at("2026-12-01 02:05")), at("2026-12-01 23:00")));
        assert!(daily.due(Some(at("2026-12-01 02:05")), at("2026-12-02 02:00")));
        // Asleep for three days: due now, and not again until the next slot.
        assert!(daily.due(Some(at("2026-12-01 02:05")), at("2026-12-04 09:00")));
        assert!(!daily.due(Some(at("2026-12-04 09:01")), at("2026-12-04 23:59")));
        let sat = Every::Weekly(Weekday::Sat, NaiveTime::MIN);
        // 2026-12-05 is a Saturday.
        assert_eq!(
            sat.latest_slot(at("2026-12-07 12:00")),
            Some(at("2026-12-05 00:00"))
        );
        assert!(!sat.due(Some(at("2026-12-05 08:00")), at("2026-12-11 23:00")));
        assert!(sat.due(Some(at("2026-12-05 08:00")), at("2026-12-12 00:00")));
        assert_eq!(
            Every::Monthly.latest_slot(at("2026-12-31 23:00")),
            Some(at("2026-12-01 00:00"))
        );
        assert_eq!(
            Every::Hourly.latest_slot(at("2026-12-31 23:59")),
            Some(at("2026-12-31 23:00"))
        );
        assert!(Every::Always.due(Some(at("2026-12-05 08:00")), at("2026-12-05 08:00")));
        assert!(!Every::Manual.due(None, at("2026-12-05 08:00")));
        // A number of days is a period since it was last done.
        assert!(!Every::Days(7).due(Some(at("2026-12-01 08:00")), at("2026-12-08 07:59")));
        assert!(Every::Days(7).due(Some(at("2026-12-01 08:00")), at("2026-12-08 08:00")));
    }
}
