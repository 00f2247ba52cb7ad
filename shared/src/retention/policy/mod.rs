//! The retention policy: which snapshots a set of rules keeps, and why.
//!
//! The semantics are restic's `forget`, which users already know (its
//! `ApplyPolicy`), evaluated in UTC:
//!
//! - snapshots are walked newest first; `--keep-last N` keeps the N newest;
//!   `--keep-hourly|daily|weekly|monthly|yearly N` keeps the newest snapshot
//!   of each of the last N hours/days/ISO weeks/months/years that have one;
//! - when a counting rule still has counts left at the oldest snapshot, that
//!   oldest one is kept too ("oldest daily snapshot"): the history reaches as
//!   far back as the rules allow;
//! - `--keep-within 1y2m3d4h` keeps every snapshot newer than that span before
//!   the newest snapshot (not before now: a machine that stopped backing up
//!   does not lose its history to the calendar); months are calendar months
//!   with Go's normalisation (31 March minus 1m is 3 March), as restic does;
//! - `--keep-within-hourly|daily|weekly|monthly|yearly SPAN` keeps, among the
//!   snapshots newer than SPAN before the newest, the newest of each
//!   hour/day/ISO week/month/year (restic's `bucketsWithin`: no count); as
//!   for the counting rules, the oldest snapshot of all is kept too when it
//!   is within the span ("oldest yearly within 9999y", as restic 0.18 says it);
//! - `--keep-tag a,b` keeps snapshots that have all of a and b; the flag may be
//!   repeated (any of the lists);
//! - a pinned snapshot is kept whatever the rules say, `pinned` first among
//!   its reasons (it still takes its place in the counts, as it would unpinned);
//! - a snapshot kept by any rule is kept; with no rule at all nothing may be
//!   removed, which the caller refuses before it gets here.
//!
//! It is a pure function of timestamps and tags, so every boundary (midnight,
//! month and year ends, ISO week 53) is pinned by table tests below.

use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

/// How many periods a counting rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    N(u32),
    /// Every period (`unlimited`, or restic's `-1`).
    All,
}

impl Count {
    /// `N`, `-1` or `unlimited`; `0` means the rule is off (`None`).
    pub fn parse(s: &str) -> Result<Option<Count>, String> {
        match s {
            "unlimited" | "-1" => Ok(Some(Count::All)),
            _ => match s.parse::<u32>() {
                Ok(0) => Ok(None),
                Ok(n) => Ok(Some(Count::N(n))),
                Err(_) => Err(format!("{s:?} is not a count: give a number, or unlimited")),
            },
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::N(n) => write!(f, "{n}"),
            Count::All => f.write_str("all"),
        }
    }
}

/// A calendar span, as restic writes it: `1y2m3d4h` (years, months, days, hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Span {
    /// Parses `30d`, `1y6m`, `12h`…: numbers each followed by y, m, d or h.
    pub fn parse(s: &str) -> Result<Span, String> {
        let bad = || format!("{s:?} is not a span like 30d, 6m, 1y6m or 12h (y, m, d, h)");
        let mut span = Span::default();
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u32 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let slot = match c {
                'y' => &mut span.years,
                'm' => &mut span.months,
                'd' => &mut span.days,
                'h' => &mut span.hours,
                _ => return Err(bad()),
            };
            *slot = slot.checked_add(n).ok_or_else(bad)?;
        }
        if !digits.is_empty() || span == Span::default() {
            return Err(bad());
        }
        Ok(span)
    }

    /// The instant this span before `t`, with Go's date normalisation (as restic).
    pub fn before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let months = i64::from(t.year()) * 12 + i64::from(t.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let first = NaiveDate::from_ymd_opt(
            months.div_euclid(12) as i32,
            months.rem_euclid(12) as u32 + 1,
            1,
        );
        let Some(first) = first else {
            return DateTime::<Utc>::MIN_UTC;
        };
        let day = first + Duration::days(i64::from(t.day0()) - i64::from(self.days));
        let at = day.and_time(t.time()).and_utc();
        at - Duration::hours(i64::from(self.hours))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// The rules of a retention policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
    pub within: Option<Span>,
    /// Within a span of the newest, the newest of each hour, day, week, month, year.
    pub within_hourly: Option<Span>,
    pub within_daily: Option<Span>,
    pub within_weekly: Option<Span>,
    pub within_monthly: Option<Span>,
    pub within_yearly: Option<Span>,
    /// Keep snapshots having all tags of any one list.
    pub tags: Vec<Vec<String>>,
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub time: DateTime<Utc>,
    pub tags: &'a [String],
    /// Pinned (`snap-restore pin`): kept whatever the rules say, with the
    /// reason `pinned` first. It still takes its place in the rules' counts.
    pub pinned: bool,
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    /// The rules that keep it, in restic's words.
    pub reasons: Vec<String>,
}

/// A counting rule's period.
#[derive(Debug, Clone, Copy)]
enum Period {
    Each,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    /// The bucket a snapshot falls in; `nr` makes every snapshot its own for `Each`.
    fn bucket(self, t: DateTime<Utc>, nr: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
        );
        match self {
            Period::Each => nr as i64,
            Period::Hour => y * 1_000_000 + m * 10_000 + d * 100 + h,
            Period::Day => y * 10_000 + m * 100 + d,
            Period::Week => {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Period::Month => y * 100 + m,
            Period::Year => y,
        }
    }
}

/// A counting rule as it is walked: what is left, and the last bucket kept.
struct Walker {
    period: Period,
    left: Option<Count>,
    last: Option<i64>,
    reason: &'static str,
}

impl Policy {
    /// True when no rule is set: such a policy would remove everything.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(c, _, _)| c.is_none())
            && self.within.is_none()
            && self.within_buckets().iter().all(|(s, _, _)| s.is_none())
            && self.tags.is_empty()
    }

    fn within_buckets(&self) -> [(Option<Span>, Period, &'static str); 5] {
        [
            (self.within_hourly, Period::Hour, "hourly within"),
            (self.within_daily, Period::Day, "daily within"),
            (self.within_weekly, Period::Week, "weekly within"),
            (self.within_monthly, Period::Month, "monthly within"),
            (self.within_yearly, Period::Year, "yearly within"),
        ]
    }

    fn counts(&self) -> [(Option<Count>, Period, &'static str); 6] {
        [
            (self.last, Period::Each, "last snapshot"),
            (self.hourly, Period::Hour, "hourly snapshot"),
            (self.daily, Period::Day, "daily snapshot"),
            (self.weekly, Period::Week, "weekly snapshot"),
            (self.monthly, Period::Month, "monthly snapshot"),
            (self.yearly, Period::Year, "yearly snapshot"),
        ]
    }

    /// Decides every snapshot of one group. `snaps` may come in any order;
    /// verdicts come in the same order. `now` bounds "newest": a snapshot
    /// dated in the future does not move the `within` window.
    pub fn apply(&self, snaps: &[Candidate], now: DateTime<Utc>) -> Vec<Verdict> {
        let mut order: Vec<usize> = (0..snaps.len()).rev().collect();
        order.sort_by(|&a, &b| snaps[b].time.cmp(&snaps[a].time));
        let newest = snaps
            .iter()
            .map(|s| s.time)
            .filter(|t| *t < now)
            .max()
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let cutoff = self.within.map(|w| w.before(newest));
        let mut walkers: Vec<Walker> = self
            .counts()
            .into_iter()
            .map(|(left, period, reason)| Walker {
                period,
                left,
                last: None,
                reason,
            })
            .collect();
        // (cutoff, span, period, reason, last bucket kept)
        let mut within: Vec<_> = self
            .within_buckets()
            .into_iter()
            .filter_map(|(span, period, reason)| {
                span.map(|s| (s.before(newest), s, period, reason, None::<i64>))
            })
            .collect();
        let mut verdicts = vec![
            Verdict {
                keep: false,
                reasons: Vec::new()
            };
            snaps.len()
        ];
        for (nr, &i) in order.iter().enumerate() {
            let snap = &snaps[i];
            let oldest = nr + 1 == order.len();
            let reasons = &mut verdicts[i].reasons;
            for list in &self.tags {
                if list.iter().all(|t| snap.tags.contains(t)) {
                    reasons.push(format!("has tags {}", list.join(",")));
                }
            }
            if let (Some(cutoff), Some(span)) = (cutoff, self.within)
                && snap.time > cutoff
            {
                reasons.push(format!("within {span}"));
            }
            for w in &mut walkers {
                if let Some(reason) = w.take(snap.time, nr, oldest) {
                    reasons.push(reason);
                }
            }
            for (cutoff, span, period, reason, last) in &mut within {
                let bucket = period.bucket(snap.time, nr);
                let same = *last == Some(bucket);
                if snap.time > *cutoff && (!same || oldest) {
                    *last = Some(bucket);
                    reasons.push(match same {
                        true => format!("oldest {reason} {span}"),
                        false => format!("{reason} {span}"),
                    });
                }
            }
            if snap.pinned {
                reasons.insert(0, "pinned".to_string());
            }
            verdicts[i].keep = !verdicts[i].reasons.is_empty();
        }
        verdicts
    }
}

impl Walker {
    /// Keeps the snapshot if it opens a new bucket (or is the oldest of all)
    /// while counts are left; returns the reason.
    fn take(&mut self, time: DateTime<Utc>, nr: usize, oldest: bool) -> Option<String> {
        let left = self.left?;
        let bucket = self.period.bucket(time, nr);
        let same = self.last == Some(bucket);
        if same && !oldest {
            return None;
        }
        self.last = Some(bucket);
        self.left = match left {
            Count::N(1) => None,
            Count::N(n) => Some(Count::N(n - 1)),
            Count::All => Some(Count::All),
        };
        Some(if same {
            format!("oldest {}", self.reason)
        } else {
            self.reason.to_string()
        })
    }
}

impl fmt::Display for Policy {
    /// The policy in words (restic's), for the plan's header: `keep 7 latest,
    /// 4 weekly snapshots and all within 30d of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = ["latest", "hourly", "daily", "weekly", "monthly", "yearly"];
        let mut parts: Vec<String> = self
            .counts()
            .iter()
            .zip(names)
            .filter_map(|((c, _, _), name)| c.map(|c| format!("{c} {name}")))
            .collect();
        if !parts.is_empty() {
            parts = vec![format!("{} snapshots", parts.join(", "))];
        }
        if !self.tags.is_empty() {
            let lists: Vec<String> = self.tags.iter().map(|l| l.join(",")).collect();
            parts.push(format!("all with tags {}", lists.join(" or ")));
        }
        if let Some(w) = self.within {
            parts.push(format!("all within {w} of the newest"));
        }
        for (span, _, reason) in self.within_buckets() {
            if let Some(s) = span {
                let each = reason.trim_end_matches(" within");
                parts.push(format!("{each} within {s} of the newest"));
            }
        }
        if parts.is_empty() {
            return f.write_str("no rule");
        }
        write!(f, "keep {}", parts.join(" and "))
    }
}

#[cfg(test)]
mod tests;
