//! Search by name across every snapshot, and one path's history in a set:
//! both answered from the store's path index (snap_shared::pathindex),
//! which they bring up to the catalog's snapshots first. Where the path
//! index cannot be used, the page says so and reads every index instead
//! (super::scan).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use snap_shared::error::{Error, Result};
use snap_shared::index::Entry;
use snap_shared::pathindex::{Found, with_paths};

use super::http::{Shared, blocking, enc, page, refuse, respond};
use super::scan;

/// Most distinct paths a search lists.
const SEARCH_LIMIT: usize = 500;

/// Whether an error is the path index's own (then the slow way answers):
/// not a snapshot's index that cannot be read, which the slow way could
/// not read either.
fn index_unusable(e: &Error) -> bool {
    e.context.starts_with("path index")
}

/// What to say on the page when the path index was not used or was rebuilt.
type Note = Option<String>;

/// `indexed`, or `slow` when the path index cannot be used.
fn answer<T>(
    indexed: impl FnOnce() -> Result<(T, Note)>,
    slow: impl FnOnce() -> Result<T>,
) -> Result<(T, Note)> {
    match indexed() {
        Err(e) if index_unusable(&e) => {
            let note =
                format!("answered without the path index ({e}): every snapshot's index was read");
            eprintln!("snap-restore: warning: {note}");
            Ok((slow()?, Some(note)))
        }
        other => other,
    }
}

/// File names containing the query (any case), across every snapshot of every set.
pub(super) async fn search(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let query = q
        .get("q")
        .map(|v| v.trim().to_lowercase())
        .unwrap_or_default();
    if query.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "give q=PART-OF-A-NAME\n");
    }
    let store = s.store.clone();
    let page = blocking(move || {
        let ((found, truncated), note) = answer(
            || {
                let snaps = scan::snapshots(&store, None)?;
                with_paths(&store, |ix| ix.search(&store, &query, &snaps, SEARCH_LIMIT))
            },
            || scan::search(&store, &query, SEARCH_LIMIT),
        )?;
        Ok(search_markup(&query, &found, truncated, note.as_deref()).into_string())
    })
    .await;
    respond(page)
}

fn search_markup(query: &str, found: &[Found], truncated: bool, note: Option<&str>) -> Markup {
    page(
        &format!("search {query}"),
        html! {
                h2 { "Names containing " code { (query) } }
                @if let Some(n) = note { p.small.warn { (n) } }
                p.small {
                    (found.len()) " paths"
                    @if truncated { " (the first " (SEARCH_LIMIT) " by set and path; narrow the search)" }
                    ". " a href="/" { "back to the timeline" }
                }
                @for f in found {
                    @let path = String::from_utf8_lossy(&f.path);
                    div.card {
                        span.id { (f.set) ": " (path) } " "
                        span.small { "in " (f.count) " snapshots, " (f.oldest) " to " (f.newest) " " }
                        a.small href=(format!("/history?set={}&path={}", enc(&f.set), enc(&path))) { "history" }
                    }
                }
        },
    )
}

/// One path's versions across a set's snapshots, newest first.
pub(super) async fn history(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (Some(set), Some(path)) = (q.get("set").cloned(), q.get("path").cloned()) else {
        return refuse(StatusCode::BAD_REQUEST, "give set=SET and path=PATH\n");
    };
    let changed_only = q.get("changed").is_some_and(|v| v == "1");
    let store = s.store.clone();
    let page = blocking(move || {
        let path = path.trim_start_matches('/').to_string();
        let (rows, note) = answer(
            || {
                let snaps = scan::snapshots(&store, Some(&set))?;
                let (entries, note) = with_paths(&store, |ix| {
                    ix.history(&store, &set, path.as_bytes(), &snaps)
                })?;
                let rows = snaps.into_iter().map(|r| r.id).zip(entries).collect();
                Ok((rows, note))
            },
            || scan::history(&store, &set, &path),
        )?;
        Ok(history_markup(&set, &path, &rows, changed_only, note.as_deref()).into_string())
    })
    .await;
    respond(page)
}

/// What identifies a version of a file: kind, size, content, target, mode.
type Version<'a> = (
    snap_shared::index::EntryType,
    u64,
    Option<snap_shared::hash::Sha256Digest>,
    Option<&'a [u8]>,
    u32,
);

fn version(e: &Option<Entry>) -> Option<Version<'_>> {
    e.as_ref()
        .map(|e| (e.kind, e.size, e.sha256, e.target.as_deref(), e.mode))
}

fn history_markup(
    set: &str,
    path: &str,
    rows: &[(String, Option<Entry>)],
    changed_only: bool,
    note: Option<&str>,
) -> Markup {
    page(
        &format!("history of {path}"),
        html! {
                h2 { "History of " code { (path) } " in set " (set) }
                @if let Some(n) = note { p.small.warn { (n) } }
                p.small {
                    a href="/" { "back to the timeline" } " · "
                    @if changed_only {
                        a href=(format!("/history?set={}&path={}", enc(set), enc(path))) { "every snapshot" }
                    } @else {
                        a href=(format!("/history?set={}&path={}&changed=1", enc(set), enc(path))) { "changed only" }
                    }
                }
                @for (i, (id, e)) in rows.iter().enumerate() {
                    @let older = rows.get(i + 1).map(|r| version(&r.1));
                    @let changed = older.is_none_or(|o| o != version(e));
                    @if changed || !changed_only {
                        div.card.gone[e.is_none()] {
                            span.id { (set) "/" (id) } " "
                            @if changed { span.badge.warn { "changed" } }
                            @match e {
                                Some(e) => span.small {
                                    (snap_shared::size::human_bytes(e.size)) ", mode " (format!("{:o}", e.mode)) ", modified "
                                    (chrono::DateTime::from_timestamp_nanos(e.mtime).format("%Y-%m-%d %H:%M:%S"))
                                    @if let Some(d) = e.sha256 { ", sha256 " code { (d.to_hex()[..16]) "…" } }
                                },
                                None => span.small { "not in this snapshot" },
                            }
                        }
                    }
                }
        },
    )
}
