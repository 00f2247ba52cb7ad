//! What changes the store or the disk from the page (only with
//! `--allow-changes`, each POST with the page's CSRF token): tags,
//! descriptions and pins; restores (a dry run first, then progress as
//! server-sent events); deletes (a typed confirmation, through snap-prune's
//! `--forget`).

use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::size::human_bytes;

use super::held::{held, text_field};
use super::http::{Shared, blocking, check_post, check_writable, failed, page, refuse, respond};
use snap_read::source::Source;

/// A form's fields: what to change on which snapshot.
#[derive(serde::Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    csrf: String,
    name: String,
    action: String,
    #[serde(default)]
    value: String,
}

pub(super) async fn edit(State(s): State<Arc<Shared>>, Form(f): Form<EditForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    let store = s.store.clone();
    let done = blocking(move || {
        held(&store, &f.name, false)?;
        text_field("value", &f.value)?;
        let source = Source::Store(store);
        let quiet = Reporter::new(snap_read::TOOL, true, false);
        let value = f.value.trim();
        let one = std::slice::from_ref(&f.value);
        match f.action.as_str() {
            "tag" => {
                snap_read::annotate::tag(&source, &f.name, false, (one, &[]), &s.trust, &quiet)
            }
            "untag" => {
                snap_read::annotate::tag(&source, &f.name, false, (&[], one), &s.trust, &quiet)
            }
            "describe" => {
                let text = (!value.is_empty()).then_some(value);
                snap_read::annotate::describe(&source, &f.name, false, text, &s.trust, &quiet)
            }
            "pin" => {
                let why = (!value.is_empty()).then_some(value);
                snap_read::annotate::pin(&source, &f.name, false, why, &quiet)
            }
            "unpin" => snap_read::annotate::unpin(&source, &f.name, false, &quiet),
            _ => Err(Error::usage("action", "unknown")),
        }
    })
    .await;
    match done {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => failed(e),
    }
}

/// Which entry a delete names: `SET/ID` (a snapshot tree, or with
/// `archive` the store's archive of that id) or `disks/DISK/NAME`.
#[derive(serde::Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    archive: Option<String>,
    /// The name again, typed by hand.
    #[serde(default)]
    confirm: String,
}

impl DeleteForm {
    fn archive(&self) -> bool {
        self.archive.as_deref().is_some_and(|v| !v.is_empty())
    }

    fn what(&self) -> String {
        match self.archive() {
            true => format!("archive {}", self.name),
            false => self.name.clone(),
        }
    }
}

/// Runs snap-prune's forget of one name on the store (a dry run, or for real),
/// its lines kept for the page.
fn forget(s: &Shared, f: &DeleteForm, dry_run: bool) -> Result<(Exit, u64, Vec<String>)> {
    held(&s.store, &f.name, f.archive())?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let report = Reporter::capturing(snap_prune::TOOL, lines.clone());
    let asked = snap_prune::Forget {
        store: s.store.root.clone(),
        config: s.config.as_ref().map(|c| c.path.clone()),
        names: vec![f.name.clone()],
        archive: f.archive(),
        dry_run,
    };
    let (exit, records) = snap_prune::forget(&asked, &report)?;
    let freed = records
        .iter()
        .filter_map(|r| r.extra.get("freed").and_then(|v| v.as_u64()))
        .sum();
    let lines = lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok((exit, freed, lines))
}

/// What deleting one entry would free, and the typed confirmation; or why it is refused.
pub(super) async fn delete_form(
    State(s): State<Arc<Shared>>,
    Query(f): Query<DeleteForm>,
) -> Response {
    if let Some(r) = check_writable(&s) {
        return r;
    }
    let s2 = s.clone();
    let page = blocking(move || {
        let body = match forget(&s2, &f, true) {
            Err(e) => html! {
                h2 { "Delete " (f.what()) }
                p #refused.badge.bad { "refused: " (e.to_string()) }
                @if let Some(h) = &e.hint { p.small { (h) } }
                p { a href="/" { "back to the timeline" } }
            },
            Ok((_, freed, _)) => html! {
                h2 { "Delete " (f.what()) }
                p #frees { "This frees " strong { (human_bytes(freed)) } " (bytes other snapshots share stay)." }
                form method="post" action="/delete" {
                    input type="hidden" name="csrf" value=(s2.csrf);
                    input type="hidden" name="name" value=(f.name);
                    @if f.archive() { input type="hidden" name="archive" value="1"; }
                    p { label { "Type " code { (f.name) } " to delete it for good: " input #confirm type="text" name="confirm" size="40" autocomplete="off"; } }
                    button #delete type="submit" { "Delete" }
                    " " a href="/" { "cancel" }
                }
                p.small { "The same from a shell: " code { "snap-prune --forget " (f.name) @if f.archive() { " --archive" } } }
            },
        };
        Ok(page(&format!("delete {}", f.name), body).into_string())
    })
    .await;
    respond(page)
}

/// Deletes, after the name was typed again.
pub(super) async fn delete(State(s): State<Arc<Shared>>, Form(f): Form<DeleteForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    if f.confirm.trim() != f.name {
        return refuse(
            StatusCode::BAD_REQUEST,
            "type the name exactly to confirm; nothing was removed\n",
        );
    }
    let s2 = s.clone();
    let page = blocking(move || {
        let (exit, freed, lines) = forget(&s2, &f, false)?;
        let body = html! {
            h2 { "Delete " (f.what()) }
            @if exit == Exit::Ok {
                p #deleted.badge.ok { "deleted " (f.what()) "; freed " (human_bytes(freed)) }
            } @else {
                p #deleted.badge.bad { "not all of it was removed (exit " (exit as i32) ")" }
            }
            pre { (lines.join("\n")) }
            p { a href="/" { "back to the timeline" } }
        };
        Ok(page(&format!("deleted {}", f.name), body).into_string())
    })
    .await;
    respond(page)
}
