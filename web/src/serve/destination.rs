//! `/dest/NAME`: one configured destination on the page: what it holds, by
//! set, beside what the store has, so that what the store has and it lacks
//! stands out; each archive it holds opens in the file browser from there.
//! The listing is the page's cached one (a bucket is listed at most every
//! few minutes); a destination that cannot be listed says why.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use maud::html;

use snap_shared::error::Error;
use snap_shared::size::human_bytes;

use super::http::{Shared, blocking, page, respond};
use crate::timeline::html::enc_seg;

/// What the store holds of one id: a snapshot, an archive.
#[derive(Default)]
struct Local {
    snapshot: bool,
    archive: bool,
}

/// One id of a set: what the store has of it, whether the destination
/// holds it, and the host its record there names.
type Row<'a> = (&'a str, Option<&'a Local>, bool, Option<&'a str>);

pub(super) async fn view(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> axum::response::Response {
    let page = blocking(move || {
        let (dests, _) = super::listing::listed(&s)?;
        let Some(d) = dests.into_iter().find(|d| d.name == name) else {
            return Err(Error::usage(
                format!("destination {name}"),
                "is not a destination of the config",
            ));
        };
        let mut local: BTreeMap<(String, String), Local> = BTreeMap::new();
        for it in snap_read::source::Source::Store(s.store.clone()).items()? {
            if let Some((set, id)) = it.set_and_id() {
                let l = local.entry((set.to_string(), id.to_string())).or_default();
                match it.kind() {
                    "snapshot" => l.snapshot = true,
                    _ => l.archive = true,
                }
            }
        }
        let held: BTreeSet<(String, String)> = match &d.held {
            Ok(h) => h.archives.clone(),
            Err(_) => BTreeSet::new(),
        };
        // The hosts, from the records of the browser's listing of it.
        let mut hosts: BTreeMap<(String, String), String> = BTreeMap::new();
        if d.held.is_ok() {
            for it in super::places::place(&s, Some(&name))?.items() {
                if let (Some((set, id)), Some(host)) = (it.set_and_id(), host_of(it)) {
                    hosts.insert((set.to_string(), id.to_string()), host);
                }
            }
        }
        let mut sets: BTreeMap<&str, Vec<Row>> = BTreeMap::new();
        let keys: BTreeSet<&(String, String)> = local.keys().chain(held.iter()).collect();
        for k in keys {
            sets.entry(k.0.as_str()).or_default().push((
                k.1.as_str(),
                local.get(k),
                held.contains(k),
                hosts.get(k).map(String::as_str),
            ));
        }
        let lacking = local
            .iter()
            .filter(|(k, l)| l.archive && !held.contains(*k))
            .count();
        let body = html! {
            nav.small { a href="/" { "timeline" } " › destination " (d.name) }
            h2 { "Destination " (d.name) }
            p.small { code { (d.url) } }
            @match &d.held {
                Err(why) => p { span.badge.bad { "not reachable" } " " (why) },
                Ok(h) => p {
                    (h.archives.len()) " archives, " (human_bytes(h.bytes)) ". "
                    @if lacking > 0 {
                        span.badge.warn { (lacking) " archives of the store are not here" }
                    } @else {
                        span.badge.ok { "it holds every archive of the store" }
                    }
                },
            }
            @for (set, rows) in &sets {
                h3 { "set " (set) }
                table #listing {
                    thead { tr { th { "id" } th { "here" } th { "host" } th { "in the store" } th { "" } } }
                    tbody {
                        @for (id, l, here, host) in rows.iter().rev() {
                            @let missing = !here && l.is_some_and(|l| l.archive);
                            tr.gone[missing] {
                                td { (set) "/" (id) }
                                td { @if *here { "archive" } @else if missing { "missing" } @else { "—" } }
                                td { (host.unwrap_or("")) }
                                td {
                                    @match l {
                                        Some(l) if l.snapshot && l.archive => "snapshot, archive",
                                        Some(l) if l.snapshot => "snapshot",
                                        Some(_) => "archive",
                                        None => "—",
                                    }
                                }
                                td {
                                    @if *here {
                                        a href=(format!("/browse/{}/{}?from={}", enc_seg(set), enc_seg(id), enc_seg(&d.name))) { "browse here" }
                                        @if s.allow_changes {
                                            " " a.act href=(format!("/restore?name={}%2F{}&from={}", enc_seg(set), enc_seg(id), enc_seg(&d.name))) { "restore…" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        };
        let disks = disks_markup(&d, &s.store);
        Ok(Html(
            page(&format!("destination {}", d.name), html! { (body) (disks) }).into_string(),
        ))
    })
    .await;
    respond(page)
}

/// The host an archive's record names (`created_by.host`), if any.
fn host_of(it: &snap_read::source::Item) -> Option<String> {
    let rec = it.archive()?;
    rec.extra
        .get("created_by")
        .and_then(|c| c.get("host"))
        .and_then(|h| h.as_str())
        .map(str::to_string)
}

/// The disk snapshots the destination holds, by disk, newest first, and
/// whether the store has each.
fn disks_markup(
    d: &crate::timeline::dests::DestView,
    store: &snap_shared::store::Store,
) -> maud::Markup {
    let Ok(h) = &d.held else {
        return html! {};
    };
    html! {
        @for (disk, names) in &h.disks {
            h3 { "disk " (disk) }
            table #listing {
                thead { tr { th { "snapshot" } th { "in the store" } } }
                tbody {
                    @for name in names.iter().rev() {
                        @let local = store.root.join("disks").join(disk).join(format!("{name}.json")).is_file();
                        tr {
                            td { "disks/" (disk) "/" (name) }
                            td { @if local { "yes" } @else { "no" } }
                        }
                    }
                }
            }
        }
    }
}
