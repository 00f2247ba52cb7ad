//! Pictures where a list is worse, drawn as inline SVG by the server (no
//! script, nothing from outside: the page's CSP stays as it is), for the
//! live page and the offline file alike:
//! - what each snapshot added, as bars on a time axis, with pins, tags and
//!   pre-apt points marked over them (one bar per snapshot; past
//!   [`BAR_LIMIT`] snapshots, one per day, saying how many it holds);
//! - the store's bytes over time, stacked per set: each set's snapshots'
//!   added bytes summed as they came;
//! - coverage: the newest snapshots against each destination (verified
//!   there, there, or missing).
//!
//! Every mark carries `data-` attributes with its numbers, and a `<title>`
//! that says them in words (a tooltip, and what a screen reader reads).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use snap_shared::size::human_bytes;

use super::model::{Card, Timeline};

const W: f64 = 1000.0;
const H: f64 = 150.0;
/// Left margin (the axis labels).
const PAD: f64 = 70.0;
/// Past this many snapshots the bars are per day.
pub const BAR_LIMIT: usize = 2000;
/// Rows of the coverage grid.
const COVERAGE_ROWS: usize = 40;

/// The set colours, in turn.
const COLOURS: [&str; 6] = [
    "#3b6fb6", "#d9822b", "#3a9a5b", "#a2479e", "#c9413b", "#5b6b7b",
];

fn colour(i: usize) -> &'static str {
    COLOURS[i % COLOURS.len()]
}

/// Every card with its set's index, oldest first.
fn cards(t: &Timeline) -> Vec<(usize, &str, &Card)> {
    let mut all: Vec<(usize, &str, &Card)> = t
        .sets
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.cards.iter().map(move |c| (i, s.name.as_str(), c)))
        .collect();
    all.sort_by(|a, b| a.2.time.cmp(&b.2.time).then(a.2.id.cmp(&b.2.id)));
    all
}

/// The x of a time on an axis from `t0` to `t1`.
fn x_of(t: DateTime<Utc>, (t0, t1): (DateTime<Utc>, DateTime<Utc>)) -> f64 {
    let span = (t1 - t0).num_seconds().max(1) as f64;
    PAD + (W - PAD - 10.0) * ((t - t0).num_seconds() as f64 / span)
}

fn y_of(v: f64, max: f64) -> f64 {
    H - 20.0 - (H - 30.0) * (v / max.max(1.0))
}

/// The plots, under one heading; nothing when there are no snapshots.
pub fn plots(t: &Timeline) -> Markup {
    let all = cards(t);
    if all.is_empty() {
        return html! {};
    }
    html! {
        h2 { "Pictures" }
        figure {
            figcaption { "What each snapshot added" }
            (PreEscaped(added(t, &all)))
        }
        figure {
            figcaption { "The store's bytes over time, stacked per set" }
            (PreEscaped(growth(t, &all)))
        }
        @if all.iter().any(|c| c.2.archive.is_some()) {
            figure {
                figcaption { "How long ago each archive was last verified (red: never)" }
                (PreEscaped(verify_age(t, &all)))
            }
        }
        @if !t.dests.is_empty() {
            figure {
                figcaption { "Where the newest snapshots are" }
                (PreEscaped(coverage(t, &all)))
            }
        }
    }
}

fn legend(names: &[String], svg: &mut String) {
    for (i, name) in names.iter().enumerate() {
        let x = PAD + 130.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="0" width="10" height="10" fill="{}"/><text x="{}" y="9" font-size="10">{}</text>"#,
            colour(i),
            x + 14.0,
            esc(name)
        );
    }
}

fn axis(svg: &mut String, max: f64, span: (DateTime<Utc>, DateTime<Utc>)) {
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{y}" x2="{W}" y2="{y}" stroke="#999"/><text x="2" y="{top}" font-size="10">{}</text><text x="2" y="{y}" font-size="10">0</text><text x="{PAD}" y="{H}" font-size="10">{}</text><text x="{end}" y="{H}" font-size="10" text-anchor="end">{}</text>"##,
        human_bytes(max as u64),
        span.0.format("%Y-%m-%d"),
        span.1.format("%Y-%m-%d"),
        y = H - 20.0,
        top = 22.0,
        end = W - 10.0,
    );
}

/// Bars of what each snapshot added (per day past [`BAR_LIMIT`]).
fn added(t: &Timeline, all: &[(usize, &str, &Card)]) -> String {
    let span = (all[0].2.time, all[all.len() - 1].2.time);
    let per_day = all.len() > BAR_LIMIT;
    // (x key, set) → (bytes, count, first card)
    let mut bars: BTreeMap<(i64, usize), (u64, usize, &Card, &str)> = BTreeMap::new();
    for (i, set, c) in all {
        let key = match per_day {
            true => c.time.timestamp().div_euclid(86_400),
            false => bars.len() as i64,
        };
        let b = bars.entry((key, *i)).or_insert((0, 0, c, set));
        b.0 += c.new_bytes;
        b.1 += 1;
    }
    let max = bars.values().map(|b| b.0).max().unwrap_or(0) as f64;
    let n = if per_day {
        ((span.1 - span.0).num_days() + 1).max(1) as f64
    } else {
        all.len() as f64
    };
    let width = ((W - PAD - 10.0) / n).clamp(1.0, 12.0);
    let mut svg = format!(
        r#"<svg class="plot added" viewBox="0 0 {W} {H}" role="img" aria-label="bytes each snapshot added" data-bars="{}" data-total="{}">"#,
        bars.len(),
        all.iter().map(|c| c.2.new_bytes).sum::<u64>()
    );
    legend(&set_names(t), &mut svg);
    axis(&mut svg, max, span);
    for ((_, i), (bytes, count, c, set)) in &bars {
        let x = x_of(c.time, span) - width / 2.0;
        let y = y_of(*bytes as f64, max);
        let what = match per_day {
            true => format!(
                "{}: {count} snapshots added {}",
                c.time.format("%Y-%m-%d"),
                human_bytes(*bytes)
            ),
            false => format!("{set}/{} added {}", c.id, human_bytes(*bytes)),
        };
        let _ = write!(
            svg,
            r#"<rect class="bar" data-set="{}" data-id="{}" data-bytes="{bytes}" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
            esc(set),
            esc(&c.id),
            (H - 20.0 - y).max(0.5),
            colour(*i),
            esc(&what)
        );
    }
    // Pins, tags and pre-apt points over their snapshots.
    for (_, set, c) in all
        .iter()
        .filter(|c| c.2.pin.is_some() || !c.2.tags.is_empty())
    {
        let x = x_of(c.time, span);
        let (class, fill) = match (&c.pin, c.tags.iter().any(|t| t == "pre-apt")) {
            (Some(_), _) => ("pin", "#7b3fb0"),
            (None, true) => ("pre-apt", "#e07b00"),
            _ => ("tag", "#1c3d73"),
        };
        let _ = write!(
            svg,
            r#"<circle class="mark {class}" data-id="{}" cx="{x:.1}" cy="16" r="3" fill="{fill}"><title>{set}/{} {class}: {}</title></circle>"#,
            esc(&c.id),
            esc(&c.id),
            esc(&c.pin.clone().unwrap_or_else(|| c.tags.join(", ")))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The sets' names, in the order of their colours.
pub(super) fn set_names(t: &Timeline) -> Vec<String> {
    t.sets.iter().map(|s| s.name.clone()).collect()
}

/// Each set's added bytes summed over time, stacked.
fn growth(t: &Timeline, all: &[(usize, &str, &Card)]) -> String {
    let points: Vec<(usize, DateTime<Utc>, u64)> = all
        .iter()
        .map(|(i, _, c)| (*i, c.time, c.new_bytes))
        .collect();
    stacked(
        &set_names(t),
        &points,
        "growth",
        "the store's bytes over time",
        "",
    )
}

/// Bytes summed over time per set (`points`: set's place in `names`, when,
/// bytes added; oldest first), stacked, as an SVG of class `class` with
/// the further attributes `attrs` (already escaped).
pub(super) fn stacked(
    names: &[String],
    points: &[(usize, DateTime<Utc>, u64)],
    class: &str,
    label: &str,
    attrs: &str,
) -> String {
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (a.1, b.1),
        _ => return String::new(),
    };
    let sets = names.len();
    let mut sums = vec![0u64; sets];
    // The stacked totals after each point, one per pixel column (the last
    // in it): a year of hourly snapshots stays a small path.
    let mut cols: Vec<(DateTime<Utc>, Vec<u64>)> = Vec::new();
    for (i, time, bytes) in points {
        sums[*i] += bytes;
        let column = |t: DateTime<Utc>| x_of(t, span).floor();
        match cols.last_mut() {
            Some(last) if column(last.0) == column(*time) => *last = (*time, sums.clone()),
            _ => cols.push((*time, sums.clone())),
        }
    }
    let total = sums.iter().sum::<u64>() as f64;
    let mut svg = format!(
        r#"<svg class="plot {class}" viewBox="0 0 {W} {H}" role="img" aria-label="{}" data-total="{}"{attrs}>"#,
        esc(label),
        total as u64
    );
    legend(names, &mut svg);
    axis(&mut svg, total, span);
    // From the top set down, each area covers the ones below it.
    for i in (0..sets).rev() {
        let mut d = format!("M{:.1},{:.1}", x_of(span.0, span), H - 20.0);
        for (time, s) in &cols {
            let below: u64 = s[..=i].iter().sum();
            let _ = write!(
                d,
                " L{:.1},{:.1}",
                x_of(*time, span),
                y_of(below as f64, total)
            );
        }
        let _ = write!(d, " L{:.1},{:.1} Z", x_of(span.1, span), H - 20.0);
        let _ = write!(
            svg,
            r#"<path class="area" data-set="{}" data-bytes="{}" d="{d}" fill="{}" fill-opacity="0.8"><title>{}: {}</title></path>"#,
            esc(&names[i]),
            sums[i],
            colour(i),
            esc(&names[i]),
            human_bytes(sums[i])
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Most archives the verify-age plot shows (the newest).
const VERIFY_BARS: usize = 200;

/// One bar per archive (the newest [`VERIFY_BARS`]): days since its last
/// verify anywhere, or a red bar at the top when it was never verified.
fn verify_age(t: &Timeline, all: &[(usize, &str, &Card)]) -> String {
    let archives: Vec<&(usize, &str, &Card)> = all
        .iter()
        .filter(|c| c.2.archive.is_some())
        .rev()
        .take(VERIFY_BARS)
        .collect();
    let ages: Vec<Option<f64>> = archives
        .iter()
        .map(|(_, _, c)| {
            c.verified
                .iter()
                .filter(|(_, kind, _)| kind == "archive")
                .map(|(_, _, v)| v.time)
                .max()
                .map(|at| (t.generated - at).num_seconds().max(0) as f64 / 86_400.0)
        })
        .collect();
    let max = ages.iter().flatten().fold(1.0f64, |m, a| m.max(*a));
    let width = ((W - PAD - 10.0) / archives.len().max(1) as f64).clamp(1.0, 12.0);
    let mut svg = format!(
        r#"<svg class="plot verify-age" viewBox="0 0 {W} {H}" role="img" aria-label="days since each archive was last verified" data-bars="{}">"#,
        archives.len()
    );
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{y}" x2="{W}" y2="{y}" stroke="#999"/><text x="2" y="22" font-size="10">{max:.0} days</text><text x="2" y="{y}" font-size="10">0</text>"##,
        y = H - 20.0
    );
    // Oldest on the left.
    for (n, ((i, set, c), age)) in archives.iter().rev().zip(ages.iter().rev()).enumerate() {
        let x = PAD + width * n as f64;
        let (v, fill, what) = match age {
            Some(a) => (
                *a,
                colour(*i),
                format!("{set}/{} last verified {a:.1} days ago", c.id),
            ),
            None => (max, "#c9413b", format!("{set}/{} never verified", c.id)),
        };
        let y = y_of(v, max);
        let _ = write!(
            svg,
            r#"<rect class="age" data-id="{}" data-days="{}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
            esc(&c.id),
            age.map_or("never".to_string(), |a| format!("{a:.1}")),
            (width - 1.0).max(1.0),
            (H - 20.0 - y).max(0.5),
            esc(&what)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The newest snapshots (rows) against each destination (columns).
fn coverage(t: &Timeline, all: &[(usize, &str, &Card)]) -> String {
    let rows: Vec<&(usize, &str, &Card)> = all.iter().rev().take(COVERAGE_ROWS).collect();
    let cell = 14.0;
    let left = 200.0;
    let height = 30.0 + cell * rows.len() as f64;
    let width = left + cell * 2.0 * t.dests.len() as f64 + 10.0;
    let mut svg = format!(
        r#"<svg class="plot coverage" viewBox="0 0 {width} {height}" role="img" aria-label="which snapshots each destination holds">"#
    );
    for (j, d) in t.dests.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="20" font-size="10" text-anchor="middle">{}</text>"#,
            left + cell * 2.0 * j as f64 + cell,
            esc(&d.name)
        );
    }
    for (r, (_, set, c)) in rows.iter().enumerate() {
        let y = 26.0 + cell * r as f64;
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.1}" font-size="10">{}/{}</text>"#,
            y + cell - 3.0,
            esc(set),
            esc(&c.id)
        );
        for (j, d) in t.dests.iter().enumerate() {
            let there = c.held_at.contains(&d.name);
            let verified = c
                .verified
                .iter()
                .any(|(place, kind, v)| *place == d.name && kind == "archive" && v.ok);
            let (state, fill) = match (there, verified) {
                (true, true) => ("verified", "#3a9a5b"),
                (true, false) => ("there", "#7fb3e6"),
                (false, _) => ("missing", "#e3e3e8"),
            };
            let _ = write!(
                svg,
                r#"<rect class="cell {state}" data-id="{}" data-dest="{}" x="{:.1}" y="{y:.1}" width="{}" height="{}" fill="{fill}"><title>{}/{} at {}: {state}</title></rect>"#,
                esc(&c.id),
                esc(&d.name),
                left + cell * 2.0 * j as f64 + cell / 2.0,
                cell - 2.0,
                cell - 2.0,
                esc(set),
                esc(&c.id),
                esc(&d.name)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Text safe in SVG markup.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
