//! The destinations' pictures, drawn as inline SVG like the store's
//! (super::plots): each destination's bytes over time, stacked per set
//! (each archive counted from when its record was written there), and what
//! each costs a month now and after its retention policy (snap-prune's
//! plan, chains and pins included), from its `price_per_gib_month`.

use std::fmt::Write;

use maud::{Markup, PreEscaped, html};

use snap_shared::size::human_bytes;

use super::dests::DestView;
use super::model::Timeline;
use super::plots::{esc, set_names, stacked};

const W: f64 = 1000.0;
/// Height of one destination's pair of bars.
const ROW: f64 = 44.0;
const PAD: f64 = 150.0;

/// The pictures, nothing when no destination could be listed.
pub fn plots(t: &Timeline) -> Markup {
    let listed: Vec<&DestView> = t.dests.iter().filter(|d| d.held.is_ok()).collect();
    if listed.is_empty() {
        return html! {};
    }
    html! {
        @for d in &listed {
            @if let Ok(h) = &d.held && !h.dated.is_empty() {
                figure {
                    figcaption { (d.name) "'s bytes over time, stacked per set (as pushed)" }
                    (PreEscaped(dest_growth(t, d)))
                }
            }
        }
        @if listed.iter().any(|d| matches!(d.cost, Some(Ok(_)))) {
            figure {
                figcaption { "What each destination holds and costs a month, now and after its retention policy" }
                (PreEscaped(costs(&listed)))
            }
        }
    }
}

/// The archives at `d` summed by push time, stacked per set (the store's
/// sets in their colours, others after them).
fn dest_growth(t: &Timeline, d: &DestView) -> String {
    let Ok(h) = &d.held else {
        return String::new();
    };
    let mut names = set_names(t);
    let mut points = Vec::with_capacity(h.dated.len());
    for (set, time, bytes) in &h.dated {
        let i = match names.iter().position(|n| n == set) {
            Some(i) => i,
            None => {
                names.push(set.clone());
                names.len() - 1
            }
        };
        points.push((i, *time, *bytes));
    }
    stacked(
        &names,
        &points,
        "dest-growth",
        &format!("{}'s bytes over time", d.name),
        &format!(r#" data-dest="{}""#, esc(&d.name)),
    )
}

/// Money to the cent, or the bytes when there is no price.
fn money(v: Option<f64>, bytes: u64) -> String {
    match v {
        Some(v) => format!("{v:.2} a month ({})", human_bytes(bytes)),
        None => human_bytes(bytes),
    }
}

/// Two bars per destination: what it holds now, and what its policy keeps.
fn costs(listed: &[&DestView]) -> String {
    let rows: Vec<(&DestView, &snap_prune::cost::Cost)> = listed
        .iter()
        .filter_map(|d| match &d.cost {
            Some(Ok(c)) => Some((*d, c)),
            _ => None,
        })
        .collect();
    let max = rows.iter().map(|(_, c)| c.stored).max().unwrap_or(0).max(1) as f64;
    let h = ROW * rows.len() as f64 + 10.0;
    let total_now: f64 = rows.iter().filter_map(|(_, c)| c.monthly(c.stored)).sum();
    let total_after: f64 = rows.iter().filter_map(|(_, c)| c.monthly(c.kept)).sum();
    let mut svg = format!(
        r#"<svg class="plot costs" viewBox="0 0 {W} {h}" role="img" aria-label="what each destination costs a month" data-month="{total_now:.2}" data-after="{total_after:.2}">"#
    );
    for (n, (d, c)) in rows.iter().enumerate() {
        let y = 5.0 + ROW * n as f64;
        let width = |b: u64| ((W - PAD - 220.0) * b as f64 / max).max(1.0);
        let now = money(c.monthly(c.stored), c.stored);
        let after = money(c.monthly(c.kept), c.kept);
        let policy = c
            .policy
            .clone()
            .unwrap_or_else(|| "no retention policy for it".into());
        let _ = write!(
            svg,
            r##"<g class="dest-cost" data-dest="{name}" data-stored="{stored}" data-kept="{kept}" data-price="{price}"><text x="0" y="{ty:.1}" font-size="11">{name}</text><rect class="now" x="{PAD}" y="{y:.1}" width="{wn:.1}" height="16" fill="#3b6fb6"><title>now: {now}</title></rect><text x="{tn:.1}" y="{ty:.1}" font-size="10">now: {now}</text><rect class="after" x="{PAD}" y="{y2:.1}" width="{wa:.1}" height="16" fill="#3a9a5b"><title>after {policy}: {after}</title></rect><text x="{ta:.1}" y="{ty2:.1}" font-size="10">after the policy: {after}</text></g>"##,
            name = esc(&d.name),
            stored = c.stored,
            kept = c.kept,
            price = c.price.map_or(String::new(), |p| p.to_string()),
            ty = y + 12.0,
            ty2 = y + 32.0,
            y2 = y + 20.0,
            wn = width(c.stored),
            wa = width(c.kept),
            tn = PAD + width(c.stored) + 6.0,
            ta = PAD + width(c.kept) + 6.0,
            now = esc(&now),
            after = esc(&after),
            policy = esc(&policy),
        );
    }
    svg.push_str("</svg>");
    svg
}
