//! The policy's decisions, case by case, with restic's rules as the reference.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A series from `start`, every `step`, `n` long.
fn series(start: &str, step: Duration, n: usize) -> Vec<DateTime<Utc>> {
    (0..n).map(|i| at(start) + step * i as i32).collect()
}

const NOW: &str = "2030-01-01T00:00:00Z";

/// The plan as text, one line a snapshot, oldest first: what the tables compare.
fn plan(times: &[DateTime<Utc>], tags: &[Vec<String>], p: &Policy) -> String {
    let empty = Vec::new();
    let snaps: Vec<Candidate> = times
        .iter()
        .enumerate()
        .map(|(i, t)| Candidate {
            time: *t,
            tags: tags.get(i).unwrap_or(&empty),
            pinned: false,
        })
        .collect();
    let verdicts = p.apply(&snaps, at(NOW));
    let mut out = String::new();
    for (t, v) in times.iter().zip(verdicts) {
        let action = if v.keep { "keep  " } else { "remove" };
        let line = format!(
            "{} {action} {}",
            t.format("%Y-%m-%d %H:%M %a"),
            v.reasons.join(", ")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
    let mut p = Policy::default();
    f(&mut p);
    p
}

/// restic's --keep-within-daily 2d: strictly within two days of the
/// newest (restic's `After`: 31 Dec 20:00 is exactly 2d and goes), the
/// newest of each day; no "oldest" rule, no count.
#[test]
fn within_daily_keeps_each_days_newest_in_the_span() {
    let times = series("2026-12-29T08:00:00Z", Duration::hours(12), 10);
    let p = policy(|p| p.within_daily = Some(Span::parse("2d").unwrap()));
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-12-29 08:00 Tue remove
2026-12-29 20:00 Tue remove
2026-12-30 08:00 Wed remove
2026-12-30 20:00 Wed remove
2026-12-31 08:00 Thu remove
2026-12-31 20:00 Thu remove
2027-01-01 08:00 Fri remove
2027-01-01 20:00 Fri keep   daily within 2d
2027-01-02 08:00 Sat remove
2027-01-02 20:00 Sat keep   daily within 2d
"
    );
}

/// The other within-buckets: each keeps the newest of its period inside
/// its span, and reasons add up as restic lists them.
#[test]
fn within_buckets_combine() {
    let times = series("2026-11-01T00:30:00Z", Duration::hours(7), 160);
    let p = policy(|p| {
        p.within_hourly = Some(Span::parse("12h").unwrap());
        p.within_weekly = Some(Span::parse("14d").unwrap());
        p.within_monthly = Some(Span::parse("1m").unwrap());
        p.within_yearly = Some(Span::parse("1y").unwrap());
    });
    let out = plan(&times, &[], &p);
    let kept: Vec<&str> = out.lines().filter(|l| l.contains("keep")).collect();
    let newest = *kept.last().unwrap();
    assert!(
        newest
            .ends_with("hourly within 12h, weekly within 14d, monthly within 1m, yearly within 1y"),
        "{newest}"
    );
    // 12 h at 7 h steps: two hourly keeps; 14 days: 2 or 3 ISO weeks.
    assert_eq!(out.matches("hourly within").count(), 2, "{out}");
    assert!(
        (2..=3).contains(&out.matches("weekly within").count()),
        "{out}"
    );
    assert_eq!(out.matches("monthly within").count(), 2, "{out}");
    // The newest of the year, and the oldest of all, which the 1y span
    // reaches (restic keeps it as "oldest yearly within 1y").
    assert_eq!(out.matches("yearly within").count(), 2, "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with("keep   oldest yearly within 1y"),
        "{out}"
    );
    assert_eq!(
        p.to_string(),
        "keep hourly within 12h of the newest and weekly within 14d of the newest and monthly within 1m of the newest and yearly within 1y of the newest"
    );
}

/// Hourly windows across midnight at the end of January: the newest of
/// each of the last 3 hours that have snapshots.
#[test]
fn hourly_across_midnight_and_month_end() {
    let times = series("2026-01-31T22:10:00Z", Duration::minutes(25), 8);
    let p = policy(|p| p.hourly = Some(Count::N(3)));
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-01-31 22:10 Sat remove
2026-01-31 22:35 Sat remove
2026-01-31 23:00 Sat remove
2026-01-31 23:25 Sat remove
2026-01-31 23:50 Sat keep   hourly snapshot
2026-02-01 00:15 Sun remove
2026-02-01 00:40 Sun keep   hourly snapshot
2026-02-01 01:05 Sun keep   hourly snapshot
"
    );
}

/// Daily windows across New Year, two snapshots a day: the evening one of
/// each of the last 4 days (30 Dec to 2 Jan) is kept.
#[test]
fn daily_across_new_year() {
    let times = series("2026-12-29T08:00:00Z", Duration::hours(12), 10);
    let p = policy(|p| p.daily = Some(Count::N(4)));
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-12-29 08:00 Tue remove
2026-12-29 20:00 Tue remove
2026-12-30 08:00 Wed remove
2026-12-30 20:00 Wed keep   daily snapshot
2026-12-31 08:00 Thu remove
2026-12-31 20:00 Thu keep   daily snapshot
2027-01-01 08:00 Fri remove
2027-01-01 20:00 Fri keep   daily snapshot
2027-01-02 08:00 Sat remove
2027-01-02 20:00 Sat keep   daily snapshot
"
    );
    // Only 3 days have snapshots here, so a count is left at the oldest.
    assert!(
        plan(&times[4..], &[], &p)
            .starts_with("2026-12-31 08:00 Thu keep   oldest daily snapshot\n")
    );
}

/// ISO weeks across the year end: 2026 has a week 53 (Mon 28 Dec to Sun
/// 3 Jan 2027), so 31 Dec and 3 Jan are one week and 4 Jan opens week 1.
#[test]
fn weekly_uses_iso_weeks_across_the_year_end() {
    let times: Vec<_> = [
        "2026-12-20T12:00:00Z",
        "2026-12-27T12:00:00Z",
        "2026-12-28T12:00:00Z",
        "2026-12-31T12:00:00Z",
        "2027-01-03T12:00:00Z",
        "2027-01-04T12:00:00Z",
        "2027-01-06T12:00:00Z",
    ]
    .iter()
    .map(|s| at(s))
    .collect();
    let p = policy(|p| p.weekly = Some(Count::N(3)));
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-12-20 12:00 Sun remove
2026-12-27 12:00 Sun keep   weekly snapshot
2026-12-28 12:00 Mon remove
2026-12-31 12:00 Thu remove
2027-01-03 12:00 Sun keep   weekly snapshot
2027-01-04 12:00 Mon remove
2027-01-06 12:00 Wed keep   weekly snapshot
"
    );
}

/// Monthly and yearly together over a year of four-weekly snapshots: two
/// in November count as one month, the reasons list every rule that keeps
/// a snapshot, and a yearly count left at the oldest keeps it.
#[test]
fn monthly_and_yearly_over_years() {
    let times = series("2025-11-03T03:00:00Z", Duration::weeks(4), 16);
    let p = policy(|p| {
        p.monthly = Some(Count::N(4));
        p.yearly = Some(Count::N(5));
    });
    assert_eq!(
        plan(&times, &[], &p),
        "\
2025-11-03 03:00 Mon keep   oldest yearly snapshot
2025-12-01 03:00 Mon remove
2025-12-29 03:00 Mon keep   yearly snapshot
2026-01-26 03:00 Mon remove
2026-02-23 03:00 Mon remove
2026-03-23 03:00 Mon remove
2026-04-20 03:00 Mon remove
2026-05-18 03:00 Mon remove
2026-06-15 03:00 Mon remove
2026-07-13 03:00 Mon remove
2026-08-10 03:00 Mon remove
2026-09-07 03:00 Mon keep   monthly snapshot
2026-10-05 03:00 Mon keep   monthly snapshot
2026-11-02 03:00 Mon remove
2026-11-30 03:00 Mon keep   monthly snapshot
2026-12-28 03:00 Mon keep   monthly snapshot, yearly snapshot
"
    );
}

/// keep-last counts snapshots, not periods; several rules give several reasons.
#[test]
fn last_and_daily_reasons_add_up() {
    let times = series("2026-06-01T10:00:00Z", Duration::hours(8), 6);
    let p = policy(|p| {
        p.last = Some(Count::N(2));
        p.daily = Some(Count::N(3));
    });
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-06-01 10:00 Mon remove
2026-06-01 18:00 Mon keep   daily snapshot
2026-06-02 02:00 Tue remove
2026-06-02 10:00 Tue remove
2026-06-02 18:00 Tue keep   last snapshot, daily snapshot
2026-06-03 02:00 Wed keep   last snapshot, daily snapshot
"
    );
    // The planning document's "keep the last 7": fewer than 7 keeps all.
    let p = policy(|p| p.last = Some(Count::N(7)));
    assert!(!plan(&times, &[], &p).contains("remove"));
}

/// keep-within counts back from the newest snapshot, not from now, and
/// uses calendar months with Go's normalisation (31 Mar - 1m = 3 Mar).
#[test]
fn within_is_relative_to_the_newest_with_calendar_months() {
    let times: Vec<_> = [
        "2026-03-02T23:59:00Z",
        "2026-03-03T00:00:00Z",
        "2026-03-03T00:01:00Z",
        "2026-03-31T00:00:00Z",
    ]
    .iter()
    .map(|s| at(s))
    .collect();
    let p = policy(|p| p.within = Some(Span::parse("1m").unwrap()));
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-03-02 23:59 Mon remove
2026-03-03 00:00 Tue remove
2026-03-03 00:01 Tue keep   within 1m
2026-03-31 00:00 Tue keep   within 1m
"
    );
    assert_eq!(
        Span::parse("1y2d3h")
            .unwrap()
            .before(at("2024-02-29T12:00:00Z")),
        at("2023-02-27T09:00:00Z") // 2023-02-29 is 1 March, minus 2 days
    );
}

/// A snapshot dated in the future does not drag the within window forward.
#[test]
fn future_snapshots_do_not_move_the_window() {
    let times = vec![
        at("2026-01-01T00:00:00Z"),
        at("2026-01-05T00:00:00Z"),
        at("2031-01-01T00:00:00Z"),
    ];
    let p = policy(|p| p.within = Some(Span::parse("2d").unwrap()));
    assert_eq!(
        plan(&times, &[], &p),
        "\
2026-01-01 00:00 Thu remove
2026-01-05 00:00 Mon keep   within 2d
2031-01-01 00:00 Wed keep   within 2d
"
    );
}

/// Tags keep a snapshot without counting against any rule; a list needs all its tags.
#[test]
fn tags_keep_without_counting() {
    let times = series("2026-05-01T00:00:00Z", Duration::days(1), 4);
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let tags = vec![s(&["pre-upgrade", "apt"]), s(&["apt"]), s(&[]), s(&[])];
    let p = policy(|p| {
        p.last = Some(Count::N(1));
        p.tags = vec![s(&["pre-upgrade", "apt"])];
    });
    assert_eq!(
        plan(&times, &tags, &p),
        "\
2026-05-01 00:00 Fri keep   has tags pre-upgrade,apt
2026-05-02 00:00 Sat remove
2026-05-03 00:00 Sun remove
2026-05-04 00:00 Mon keep   last snapshot
"
    );
}

/// `unlimited` keeps one in every period, forever; 0 turns a rule off.
#[test]
fn unlimited_and_zero_counts() {
    assert_eq!(Count::parse("unlimited"), Ok(Some(Count::All)));
    assert_eq!(Count::parse("-1"), Ok(Some(Count::All)));
    assert_eq!(Count::parse("0"), Ok(None));
    assert!(Count::parse("x").is_err());
    let times = series("2026-01-01T06:00:00Z", Duration::hours(9), 9);
    let p = policy(|p| p.daily = Some(Count::All));
    let kept = plan(&times, &[], &p).matches("keep").count();
    // One in each of the 4 days, and the oldest: an unlimited rule always has counts left.
    assert_eq!(kept, 5);
}

/// Input order does not matter; equal times keep the later-listed one.
/// A pin keeps a snapshot no rule keeps, `pinned` first; a pinned one a
/// rule keeps too lists both; it counts for keep-last as any other.
#[test]
fn pins_outrank_the_rules() {
    let t = at("2026-01-01T00:00:00Z");
    let snap = |h: i64, pinned: bool| Candidate {
        time: t + Duration::hours(h),
        tags: &[],
        pinned,
    };
    let p = policy(|p| p.last = Some(Count::N(1)));
    let v = p.apply(&[snap(0, true), snap(1, false), snap(2, true)], at(NOW));
    assert_eq!(
        (v[0].keep, v[0].reasons.clone()),
        (true, vec!["pinned".to_string()])
    );
    assert_eq!((v[1].keep, v[1].reasons.clone()), (false, vec![]));
    assert_eq!(v[2].reasons, ["pinned", "last snapshot"]);
}

#[test]
fn order_of_input_does_not_matter() {
    let t = at("2026-01-01T00:00:00Z");
    let snaps = [
        Candidate {
            time: t + Duration::hours(2),
            tags: &[],
            pinned: false,
        },
        Candidate {
            time: t,
            tags: &[],
            pinned: false,
        },
        Candidate {
            time: t + Duration::hours(1),
            tags: &[],
            pinned: false,
        },
    ];
    let p = policy(|p| p.last = Some(Count::N(1)));
    let keep: Vec<bool> = p.apply(&snaps, at(NOW)).iter().map(|v| v.keep).collect();
    assert_eq!(keep, [true, false, false]);
}

/// Spans parse like restic's and print back; junk is refused.
#[test]
fn spans_parse() {
    assert_eq!(
        Span::parse("1y6m").unwrap(),
        Span {
            years: 1,
            months: 6,
            ..Span::default()
        }
    );
    assert_eq!(Span::parse("2d12h").unwrap().to_string(), "2d12h");
    for bad in ["", "30", "d", "3w", "1.5d", "0d", "-1d"] {
        assert!(Span::parse(bad).is_err(), "{bad}");
    }
}

/// The header says the policy in words; an empty one says so.
#[test]
fn policy_in_words() {
    let p = policy(|p| {
        p.last = Some(Count::N(7));
        p.weekly = Some(Count::All);
        p.within = Some(Span::parse("30d").unwrap());
    });
    assert_eq!(
        p.to_string(),
        "keep 7 latest, all weekly snapshots and all within 30d of the newest"
    );
    assert!(Policy::default().is_empty());
    assert_eq!(Policy::default().to_string(), "no rule");
}

/// A thousand hourly snapshots plan in one pass (the bench's scale).
#[test]
fn large_series() {
    let times = series("2026-01-01T00:00:00Z", Duration::hours(1), 1000);
    let p = policy(|p| {
        p.daily = Some(Count::N(7));
        p.weekly = Some(Count::N(4));
    });
    let text = plan(&times, &[], &p);
    // 7 days (5-11 Feb); the 4 weeks' newest are 11 Feb and 8 Feb (already
    // daily ones), 1 Feb and 25 Jan.
    assert_eq!(text.matches("keep").count(), 9);
    assert!(text.contains("2026-01-25 23:00 Sun keep   weekly snapshot\n"));
}
