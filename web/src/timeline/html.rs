//! The timeline as one HTML page: inline CSS and SVG, a content security
//! policy that forbids every fetch (the page works with no network and
//! cannot leak), and a few lines of script for the filter only. maud
//! escapes every value it prints.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use snap_shared::size::human_bytes;

use super::dests::DestView;
use super::model::{Card, DiskView, SetView, Space, Timeline};

pub const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header,main{max-width:1100px;margin:auto;padding:12px 20px}
header{background:#1f2d3d;color:#fff;max-width:none}
header .meta{opacity:.85;font-size:12px}header code{background:#34465c;color:#fff}
h2{margin:28px 0 8px;border-bottom:2px solid #ccd}
.health{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:10px}
.box{background:#fff;border:1px solid #dde;border-radius:6px;padding:8px 10px}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;margin-right:4px}
.ok{background:#dff3e4;color:#1b5e20}.warn{background:#fff3cd;color:#7a5a00}.bad{background:#fde2e1;color:#8b1a1a}
.tag{background:#e3ecfa;color:#1c3d73;cursor:pointer}.badge.dest{background:#e0f2f1;color:#00564d}.pin{background:#efe3fa;color:#4a1c73}
.card{background:#fff;border:1px solid #dde;border-radius:6px;margin:6px 0;padding:6px 10px}
.card.gone{opacity:.55}.card.gone .id{text-decoration:line-through}
figure{margin:8px 0;background:#fff;border:1px solid #dde;border-radius:6px;padding:6px}figcaption{font-size:12px;color:#555}svg.plot{width:100%;height:auto;max-height:220px}
#listing{border-collapse:collapse;width:100%;background:#fff}#listing td,#listing th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}#listing td.num{text-align:right}#listing tr.gone{opacity:.5}#listing td.mark{width:1em;font-weight:bold}
@media (max-width:600px){#listing td:nth-child(4),#listing th:nth-child(4),#listing td:nth-child(5),#listing th:nth-child(5){display:none}}
a:focus-visible,button:focus-visible,input:focus-visible{outline:3px solid #e07b00;outline-offset:1px}
h2,nav,code,.id,#listing td{overflow-wrap:anywhere}
.id{font-weight:600;font-family:ui-monospace,monospace}
.small{font-size:12px;color:#555}code{font-size:12px;background:#f0f1f4;padding:1px 4px;border-radius:3px}
details>summary{cursor:pointer;font-weight:600;margin:6px 0}
#filter{width:100%;padding:6px;font-size:14px;margin:10px 0;box-sizing:border-box}
.hidden{display:none}.day{font-size:12px;font-weight:600;color:#445;margin:10px 0 2px}
form.inline{display:inline;margin-right:6px}form.inline input{font-size:12px;padding:1px 3px;width:9em}
form.inline button{font-size:12px}a{color:#1c3d73}
";

const SCRIPT: &str = "
const f=document.getElementById('filter');
function apply(){const q=f.value.trim().toLowerCase();
for(const c of document.querySelectorAll('.card')){
 const t=c.dataset.text;const hit=!q||q.split(/\\s+/).every(w=>w.startsWith('tag:')?(' '+c.dataset.tags+' ').includes(' '+w.slice(4)+' '):t.includes(w));
 c.classList.toggle('hidden',!hit);}
for(const h of document.querySelectorAll('.day')){let n=h.nextElementSibling,any=false;
 while(n&&n.classList.contains('card')){any=any||!n.classList.contains('hidden');n=n.nextElementSibling;}
 h.classList.toggle('hidden',!any);}
for(const d of document.querySelectorAll('details.bucket')){if(q)d.open=!!d.querySelector('.card:not(.hidden)');}}
f.addEventListener('input',apply);
for(const t of document.querySelectorAll('.tag')){t.addEventListener('click',()=>{f.value='tag:'+t.textContent;apply();});}
";

/// What the live page adds: links to diffs, and edit forms when allowed.
pub struct Live {
    pub csrf: String,
    pub allow_changes: bool,
}

/// The whole page, as a file.
pub fn render(t: &Timeline) -> String {
    render_live(t, None)
}

/// The whole page; `live` when `serve` shows it.
pub fn render_live(t: &Timeline, live: Option<&Live>) -> String {
    let n: usize = t.sets.iter().map(|s| s.cards.len()).sum();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy"
                    content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:";
                meta name="viewport" content="width=device-width,initial-scale=1";
                @if let Some(l) = live { meta name="csrf" content=(l.csrf); }
                title { "snap timeline: " (t.store) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "snap timeline" }
                    div.meta {
                        "store " code { (t.store) } " · " (n) " snapshots in " (t.sets.len()) " sets, "
                        (t.disks.iter().map(|d| d.snapshots.len()).sum::<usize>()) " disk snapshots · made "
                        (t.generated.format("%Y-%m-%d %H:%M UTC"))
                        @if let Some(p) = &t.policy { " · retention: " (p) }
                        @if let Some(s) = &t.schedule { " · schedule: " (s) }
                    }
                }
                main {
                    (health(t, live))
                    input #filter type="search" placeholder="filter: words of an id, host, description; tag:NAME";
                    @if live.is_some() {
                        form method="get" action="/search" {
                            input type="search" name="q" placeholder="find a file name in every snapshot";
                            button type="submit" { "search" }
                        }
                    }
                    @if t.pictures {
                        (super::plots::plots(t))
                        (super::costs::plots(t))
                    }
                    @for set in &t.sets { (set_section(set, t.generated, live)) }
                    @if !t.disks.is_empty() {
                        h2 { "Disks" }
                        @for d in &t.disks { (disk_section(d, live)) }
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
    .into_string()
}

fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now - then;
    match (d.num_minutes(), d.num_hours(), d.num_days()) {
        (m, _, _) if m < 1 => "just now".into(),
        (m, _, _) if m < 120 => format!("{m} min ago"),
        (_, h, _) if h < 48 => format!("{h} h ago"),
        (_, _, days) => format!("{days} days ago"),
    }
}

fn health(t: &Timeline, live: Option<&Live>) -> Markup {
    html! {
        h2 { "Health" }
        div.health {
            (space_box(&t.space, t.generated))
            @for set in &t.sets { (set_health(set, t)) }
            @for d in &t.dests { (dest_health(d, t, live.is_some())) }
        }
    }
}

fn space_box(s: &Space, now: DateTime<Utc>) -> Markup {
    let used = s.total.saturating_sub(s.free);
    let frac = if s.total > 0 {
        used as f64 / s.total as f64
    } else {
        0.0
    };
    let class = match frac {
        f if f > 0.9 => "bad",
        f if f > 0.75 => "warn",
        _ => "ok",
    };
    html! {
        div.box {
            b { "Store space" } " "
            span.badge.(class) { (format!("{:.0}% used", frac * 100.0)) }
            (gauge(frac))
            div.small {
                (human_bytes(s.free)) " free of " (human_bytes(s.total)) "; about "
                (human_bytes(s.per_day as u64)) " a day lately"
                @match s.full_at(now).filter(|at| *at < now + Duration::days(3650)) {
                    Some(at) => { ", full around " (at.format("%Y-%m-%d")) }
                    None => { ", not filling up within ten years" }
                }
            }
        }
    }
}

/// A horizontal bar, `frac` of it filled.
fn gauge(frac: f64) -> Markup {
    let w = (frac.clamp(0.0, 1.0) * 300.0).round();
    html! {
        svg width="300" height="10" role="img" {
            rect width="300" height="10" rx="3" fill="#e6e8ee" {}
            rect width=(w) height="10" rx="3" fill="#4a78c2" {}
        }
    }
}

fn dest_health(d: &DestView, t: &Timeline, live: bool) -> Markup {
    let now = t.generated;
    let newest_local = t
        .sets
        .iter()
        .filter_map(|s| s.cards.first())
        .map(|c| c.time)
        .max();
    html! {
        div.box.dest {
            b { "destination " (d.name) } " "
            @if live { a.small href=(format!("/dest/{}", enc_seg(&d.name))) { "open" } " " }
            @match &d.held {
                Err(why) if d.pending => { span.badge.warn { "listing…" } div.small { (why) } },
                Err(why) => { span.badge.bad { "not reachable" } div.small { (why) } },
                Ok(h) => {
                    @match (h.newest(), d.stale_since(t.push_every, newest_local, now)) {
                        (_, Some(since)) => span.badge.bad { "not pushed to since " (since.format("%Y-%m-%d %H:%M")) },
                        (Some(last), None) => span.badge.ok { "last push " (ago(last, now)) },
                        (None, None) => span.badge.warn { "empty" },
                    }
                    div.small {
                        (h.archives.len()) " archives, " (human_bytes(h.bytes)) " · " code { (d.url) }
                    }
                    @for (set, at) in &h.last_push { div.small { "set " (set) ": last push " (ago(*at, now)) } }
                },
            }
        }
    }
}

/// The newest verify of any of a set's snapshots or archives, anywhere.
fn last_verify(set: &SetView) -> Option<(DateTime<Utc>, bool)> {
    set.cards
        .iter()
        .flat_map(|c| &c.verified)
        .map(|(_, _, v)| (v.time, v.ok))
        .max_by_key(|(t, _)| *t)
}

fn set_health(set: &SetView, t: &Timeline) -> Markup {
    let now = t.generated;
    let last = set.cards.first();
    let failed = set.cards.iter().filter(|c| c.errors > 0).take(30).count();
    let bad_verify = set
        .cards
        .iter()
        .filter(|c| c.verified.iter().any(|(_, _, v)| !v.ok))
        .count();
    html! {
        div.box {
            b { "set " (set.name) } " "
            @match (last, set.overdue_since) {
                (None, _) => span.badge.bad { "no snapshot" },
                (Some(_), Some(since)) => span.badge.bad { "overdue since " (since.format("%Y-%m-%d %H:%M")) },
                (Some(c), None) => span.badge.ok { "last " (ago(c.time, now)) },
            }
            @if failed > 0 { span.badge.warn { (failed) " with unreadable files" } }
            @match last_verify(set) {
                Some((at, _)) if now - at <= t.verify_every => span.badge.ok { "verified " (ago(at, now)) },
                Some((at, _)) => span.badge.warn { "verify older than " (t.verify_every.num_days()) " days (" (ago(at, now)) ")" },
                None => span.badge.warn { "never verified" },
            }
            @if bad_verify > 0 { span.badge.bad { (bad_verify) " failed their last verify" } }
            (strip(set, now))
            div.small { (set.cards.len()) " snapshots; the last 30 days above, newest right" }
        }
    }
}

/// The last 30 days, one square each: a snapshot that day (green), one
/// with errors (amber), none (grey).
fn strip(set: &SetView, now: DateTime<Utc>) -> Markup {
    let mut days = [0u8; 30];
    for c in set
        .cards
        .iter()
        .take_while(|c| c.time > now - Duration::days(30))
    {
        let back = (now.date_naive() - c.time.date_naive()).num_days();
        if let Some(slot) = usize::try_from(29 - back)
            .ok()
            .and_then(|i| days.get_mut(i))
        {
            *slot = (*slot).max(if c.errors > 0 { 1 } else { 2 });
        }
    }
    html! {
        svg width="300" height="12" role="img" {
            @for (i, d) in days.iter().enumerate() {
                rect x=(i * 10) width="9" height="12" rx="2"
                    fill=(match d { 2 => "#3c9a5f", 1 => "#e0a800", _ => "#dde" }) {}
            }
        }
    }
}

fn set_section(set: &SetView, now: DateTime<Utc>, live: Option<&Live>) -> Markup {
    // Each card's older neighbour, for the diff link.
    let older: BTreeMap<&str, &str> = set
        .cards
        .windows(2)
        .map(|w| (w[0].id.as_str(), w[1].id.as_str()))
        .collect();
    // Year, then month, newest first; the newest month is open.
    let mut months: BTreeMap<String, Vec<&Card>> = BTreeMap::new();
    for c in &set.cards {
        months
            .entry(c.time.format("%Y-%m").to_string())
            .or_default()
            .push(c);
    }
    let newest = months.keys().next_back().cloned();
    html! {
        h2 { "Set " (set.name) }
        @for (month, cards) in months.iter().rev() {
            details.bucket open[Some(month) == newest.as_ref()] {
                summary { (month) " · " (cards.len()) " snapshots" }
                @for (day, in_day) in by_day(cards) {
                    div.day { (day_label(day, now)) " · " (in_day.len()) }
                    @for c in in_day { (card(&set.name, c, now, live, older.get(c.id.as_str()).copied())) }
                }
            }
        }
    }
}

/// A month's cards by day, newest day first (the cards are newest first).
fn by_day<'a>(cards: &[&'a Card]) -> Vec<(chrono::NaiveDate, Vec<&'a Card>)> {
    let mut out: Vec<(chrono::NaiveDate, Vec<&Card>)> = Vec::new();
    for c in cards {
        let day = c.time.date_naive();
        match out.last_mut() {
            Some((d, v)) if *d == day => v.push(c),
            _ => out.push((day, vec![c])),
        }
    }
    out
}

/// "today", "yesterday", or the weekday and date (Back In Time's buckets).
fn day_label(day: chrono::NaiveDate, now: DateTime<Utc>) -> String {
    match (now.date_naive() - day).num_days() {
        0 => format!("today, {}", day.format("%a %d %b")),
        1 => format!("yesterday, {}", day.format("%a %d %b")),
        _ => day.format("%a %d %b %Y").to_string(),
    }
}

fn card(
    set: &str,
    c: &Card,
    now: DateTime<Utc>,
    live: Option<&Live>,
    older: Option<&str>,
) -> Markup {
    let gone = matches!(c.retention, Some((false, _)));
    let text = format!(
        "{set}/{} {} {} {}",
        c.id,
        c.host,
        c.description.as_deref().unwrap_or(""),
        c.tags.join(" ")
    )
    .to_lowercase();
    html! {
        div.card.gone[gone] data-text=(text) data-tags=(c.tags.join(" ")) {
            span.id { (set) "/" (c.id) } " "
            span.small { (c.time.format("%a %d %b %H:%M")) " (" (ago(c.time, now)) ") on " (c.host) }
            " "
            @if let Some(p) = &c.pin {
                span.badge.pin title=(p) { "pinned" @if !p.is_empty() { ": " (p) } }
            }
            @for tag in &c.tags { span.badge.tag { (tag) } }
            @match &c.retention {
                Some((true, why)) => span.badge.ok title="why the configured retention keeps it" { "kept: " (why.join(", ")) },
                Some((false, _)) => span.badge.bad { "the configured retention would remove it" },
                None => {},
            }
            @if c.errors > 0 { span.badge.warn { (c.errors) " unreadable" } }
            @for (place, kind, v) in &c.verified {
                span.badge.(if v.ok { "ok" } else { "bad" }) title=(format!("{kind} verified at {place} on {}", v.time.format("%Y-%m-%d %H:%M")))
                    { (kind) " " (if v.ok { "verified" } else { "FAILED verify" }) " at " (place) " " (ago(v.time, now)) }
            }
            @for d in &c.held_at { span.badge.dest { "at " (d) } }
            @if let Some(d) = &c.description { div { (d) } }
            div.small {
                (c.files) " files, " (human_bytes(c.bytes)) "; " (c.new_files) " new or changed ("
                (human_bytes(c.new_bytes)) " copied)"
                @if let Some(s) = c.duration_s { "; took " (format!("{s:.1}")) " s" }
            }
            @if let Some(ch) = &c.changes {
                div.small.changes {
                    "since the one before: " (ch.added) " added, " (ch.modified + ch.retyped) " changed, "
                    (ch.removed) " removed" @if ch.metadata > 0 { ", " (ch.metadata) " metadata only" }
                }
            }
            @if let Some(a) = &c.archive {
                div.small {
                    "archive " (human_bytes(a.bytes))
                    @if a.encrypted { " (age)" }
                    @if let Some(b) = &a.base { ", incremental on " (b) }
                    ", sha256 " code { (a.sha256) }
                }
            }
            div.small { "restore: " code { "snap-restore restore " (set) "/" (c.id) " --to DIR" } }
            @if let Some(l) = live { (live_tools(set, c, l, older)) }
        }
    }
}

/// One URL path segment, percent-encoded.
pub(crate) fn enc_seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The live page's links and forms under a card.
fn live_tools(set: &str, c: &Card, l: &Live, older: Option<&str>) -> Markup {
    let name = format!("{set}/{}", c.id);
    let form = |action: &str, label: &str, field: Option<&str>| {
        html! {
            form.inline method="post" action="/edit" {
                input type="hidden" name="csrf" value=(l.csrf);
                input type="hidden" name="name" value=(name);
                input type="hidden" name="action" value=(action);
                @if let Some(ph) = field { input type="text" name="value" placeholder=(ph); }
                button type="submit" { (label) }
            }
        }
    };
    html! {
        div.small {
            a href=(format!("/browse/{}/{}", enc_seg(set), enc_seg(&c.id))) { "browse files" } " "
            @if c.archive.is_some() {
                a href=(format!("/browse/{}/{}?archive=1", enc_seg(set), enc_seg(&c.id))) { "browse the archive" } " "
            }
            @if let Some(o) = older {
                a href=(format!("/diff?a={set}/{o}&b={name}")) { "what changed since " (o) } " "
            }
            @if l.allow_changes {
                a.act href=(format!("/restore?name={name}")) { "restore…" } " "
                a.act href=(format!("/delete?name={name}")) { "delete snapshot…" } " "
                @if c.archive.is_some() {
                    a.act href=(format!("/delete?name={name}&archive=1")) { "delete archive…" } " "
                }
                (form("tag", "add tag", Some("tag")))
                (form("describe", "describe", Some("description")))
                @match c.pin {
                    Some(_) => (form("unpin", "unpin", None)),
                    None => (form("pin", "pin", Some("why"))),
                }
            }
        }
    }
}

fn disk_section(d: &DiskView, live: Option<&Live>) -> Markup {
    html! {
        h3 { "Disk " (d.name) }
        (disk_graph(d))
        @for s in d.snapshots.iter().rev() {
            div.card data-text=(format!("disks/{}/{} {}", d.name, s.name, s.description.as_deref().unwrap_or("")).to_lowercase()) data-tags=(s.tags.join(" ")) {
                span.id { "disks/" (d.name) "/" (s.name) } " "
                span.small { (s.created.format("%Y-%m-%d %H:%M")) " · " (s.method) " · " (s.format) " · " (human_bytes(s.virtual_size)) }
                @if let Some(c) = s.extra.get("consistency").and_then(|v| v.as_str()) { " " span.badge.ok { (c) } }
                @for tag in &s.tags { span.badge.tag { (tag) } }
                @if let Some(desc) = &s.description { div { (desc) } }
                div.small {
                    @if let Some(p) = &s.parent { "parent " (p) "; " }
                    (human_bytes(s.new_bytes)) " new, " (human_bytes(s.stored_bytes)) " referenced"
                }
                div.small { "restore: " code { "snap-disk restore " (d.name) " " (s.name) } }
                @if live.is_some_and(|l| l.allow_changes) {
                    div.small {
                        a.act.disk href=(format!("/disk?name=disks/{}/{}", d.name, s.name)) { "restore, export or serve…" } " "
                        a.act href=(format!("/delete?name=disks/{}/{}", d.name, s.name)) { "delete…" }
                    }
                }
            }
        }
    }
}

/// Snapshots as dots in time order, each joined to its parent: a chain is
/// a line, a restore that branched off an older snapshot opens a new lane.
fn disk_graph(d: &DiskView) -> Markup {
    let lanes = lanes(d);
    let height = 16 + 16 * lanes.iter().copied().max().unwrap_or(0);
    let width = 20 + 24 * d.snapshots.len();
    let x = |i: usize| 10 + 24 * i;
    let y = |lane: usize| 8 + 16 * lane;
    let index: BTreeMap<&str, usize> = d
        .snapshots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    html! {
        svg width=(width) height=(height) role="img" {
            @for (i, s) in d.snapshots.iter().enumerate() {
                @if let Some(p) = s.parent.as_deref().and_then(|p| index.get(p)) {
                    line x1=(x(*p)) y1=(y(lanes[*p])) x2=(x(i)) y2=(y(lanes[i])) stroke="#8898b8" stroke-width="2" {}
                }
            }
            @for (i, s) in d.snapshots.iter().enumerate() {
                circle cx=(x(i)) cy=(y(lanes[i])) r="5" fill="#4a78c2" { title { (s.name) " (" (s.method) ")" } }
            }
        }
    }
}

/// The lane of each snapshot: its parent's, unless the parent already has
/// a child there (a branch), then the next free lane.
fn lanes(d: &DiskView) -> Vec<usize> {
    let mut lanes = vec![0usize; d.snapshots.len()];
    let mut taken: BTreeMap<usize, bool> = BTreeMap::new();
    let mut next_lane = 0;
    for (i, s) in d.snapshots.iter().enumerate() {
        let parent = s
            .parent
            .as_deref()
            .and_then(|p| d.snapshots[..i].iter().position(|o| o.name == p));
        lanes[i] = match parent {
            Some(p) if !taken.get(&p).copied().unwrap_or(false) => {
                taken.insert(p, true);
                lanes[p]
            }
            Some(_) => {
                next_lane += 1;
                next_lane
            }
            None if i == 0 => 0,
            None => lanes[i - 1],
        };
    }
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;
    use snap_shared::record::DiskSnapshotRecord;

    fn snap(name: &str, parent: Option<&str>) -> DiskSnapshotRecord {
        let mut r: DiskSnapshotRecord = serde_json::from_value(serde_json::json!({
            "disk": "d", "name": name, "image": "/d.qcow2", "format": "qcow2",
            "method": "overlay", "created": "2026-12-01T00:00:00Z", "virtual_size": 1,
            "stored_bytes": 0, "new_bytes": 0, "blocks": 0, "parent": null
        }))
        .unwrap();
        r.parent = parent.map(str::to_string);
        r
    }

    /// A chain stays in one lane; a second child of the same parent (a
    /// branch after a restore) opens the next lane, and its children follow it.
    #[test]
    fn branches_get_their_own_lane() {
        let d = DiskView {
            name: "d".into(),
            snapshots: vec![
                snap("a", None),
                snap("b", Some("a")),
                snap("c", Some("b")),
                snap("x", Some("a")),
                snap("y", Some("x")),
            ],
        };
        assert_eq!(lanes(&d), [0, 0, 0, 1, 1]);
    }
}
