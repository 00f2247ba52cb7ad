//! Restores from the page: a form, a dry run that lists what would be
//! created, replaced or refused (and which attributes differ), a confirm
//! button, then the restore itself (the same [`snap_read::restore::run`] as the
//! command line) on a thread of its own, its progress streamed to the page
//! as server-sent events.
//!
//! The form's target folder must be absolute, with no `.` or `..`, and not
//! inside the store; its paths must be inside the snapshot (no `..`).
//! Restores run one at a time: the restore code sets the process umask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Result};
use snap_shared::size::human_bytes;

use super::held::{held, outside_store, text_field};
use super::http::{
    Job, Shared, blocking, check_post, check_writable, failed, page, refuse, respond,
};
use snap_read::preview::{Action, Preview};
use snap_read::source::Source;

/// Most rows a dry run lists.
const LIST_LIMIT: usize = 2_000;

/// The restore form's fields.
#[derive(serde::Deserialize)]
pub(super) struct RestoreForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    to: String,
    /// Paths inside the snapshot, one per line (none: everything).
    #[serde(default)]
    paths: String,
    #[serde(default)]
    overwrite: Option<String>,
    /// A destination the config names, to restore its archive from (empty: the store).
    #[serde(default)]
    from: String,
}

impl RestoreForm {
    fn paths(&self) -> Vec<String> {
        self.paths
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn overwrite(&self) -> bool {
        self.overwrite.is_some()
    }

    fn from(&self) -> Option<&str> {
        Some(self.from.as_str()).filter(|f| !f.is_empty())
    }
}

/// The form: where to, which paths, overwrite or not.
pub(super) async fn form(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(name) = q.get("name") else {
        return refuse(StatusCode::BAD_REQUEST, "give name=SET/ID\n");
    };
    if let Some(r) = check_writable(&s) {
        return r;
    }
    let body = html! {
        h2 { "Restore " (name) @if let Some(from) = q.get("from") { " from " (from) } }
        form method="post" action="/restore/preview" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="name" value=(name);
            @if let Some(from) = q.get("from") { input type="hidden" name="from" value=(from); }
            p { label { "Into the folder (absolute; made if missing) " br; input #to type="text" name="to" size="60" required placeholder="/tmp/restored"; } }
            p { label { "Only these paths inside the snapshot, one per line (empty: everything) " br;
                textarea #paths name="paths" rows="3" cols="60" placeholder="home/me/docs" { (q.get("path").map(String::as_str).unwrap_or_default()) } } }
            p { label { input type="checkbox" name="overwrite" value="1"; " replace files that are there with other content (kept first in a pre-restore snapshot)" } }
            button #preview type="submit" { "Dry run: show what it would do" }
        }
        p.small { "The same from a shell: " code { "snap-restore restore " (name) " --to DIR [--path P] [--overwrite]" } }
    };
    axum::response::Html(page(&format!("restore {name}"), body).into_string()).into_response()
}

/// The form's target checked, its snapshot found, and what restoring it
/// there would do (listing at most `limit` entries).
/// An archive whose record is not signed by an allowed key is refused as
/// on the command line (the job page shows the warnings of one read with
/// `serve --allow-unsigned`).
fn dry_run(s: &Shared, f: &RestoreForm, limit: usize) -> Result<(PathBuf, Source, Preview)> {
    let store = s.store.clone();
    text_field("paths", &f.paths)?;
    let to = outside_store("folder", &f.to, &store)?;
    let (source, item) = match f.from() {
        None => {
            held(&store, &f.name, false)?;
            let source = Source::Store(store);
            let item = source.resolve_name(&f.name, false)?;
            (source, item)
        }
        // At a destination: its archive, by name, from the page's listing of it.
        Some(from) => {
            text_field("name", &f.name)?;
            let Some((set, id)) = f
                .name
                .split_once('/')
                .filter(|_| snap_read::source::is_name(&f.name))
            else {
                return Err(Error::usage(format!("name {:?}", f.name), "give SET/ID"));
            };
            let place = super::places::place(s, Some(from))?;
            let item = place.item(set, id, true)?;
            (place.source.clone(), item)
        }
    };
    let unheard = Reporter::capturing(snap_read::TOOL, Arc::new(Mutex::new(Vec::new())));
    s.trust.check_named(&item, &unheard)?;
    let dec = Decrypt::default();
    let ask = snap_read::preview::Ask {
        paths: &f.paths(),
        to: &to,
        overwrite: f.overwrite(),
        delete: false,
        home: None,
    };
    let p = snap_read::preview::preview(&item, &ask, &dec, limit)?;
    Ok((to, source, p))
}

/// The dry run, with a confirm button.
pub(super) async fn preview(State(s): State<Arc<Shared>>, Form(f): Form<RestoreForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    let csrf = s.csrf.clone();
    let shared = s.clone();
    let page = blocking(move || {
        let (to, _, p) = dry_run(&shared, &f, LIST_LIMIT)?;
        Ok(preview_markup(&f, &to, &p, &csrf).into_string())
    })
    .await;
    respond(page)
}

fn preview_markup(f: &RestoreForm, to: &Path, p: &Preview, csrf: &str) -> Markup {
    let count = |a: Action| p.counts.get(&a).copied().unwrap_or(0);
    page(
        &format!("restore {} (dry run)", f.name),
        html! {
            h2 { "Dry run: restore " (f.name) @if let Some(from) = f.from() { " from " (from) } " into " code { (to.display()) } }
            @if let Some(real) = snap_read::preview::leads_elsewhere(to) {
                p #elsewhere.badge.bad { "A symlink on the way: the files go into " code { (real.display()) } }
            }
            p #summary {
                (count(Action::Create)) " to create, "
                (count(Action::Replace)) " to replace, "
                (count(Action::Conflict)) " in the way (other content; not restored without overwrite), "
                (count(Action::Attributes)) " with other attributes (set again), "
                (count(Action::Same)) " already there, "
                (count(Action::Keep)) " in the folders that the snapshot does not have (left as they are). "
                (p.write_files) " files, " (human_bytes(p.write_bytes)) " to write."
            }
            p.small { "Files in the folder that the snapshot does not have are left as they are." }
            @if count(Action::Conflict) > 0 {
                p.badge.warn { "Files in the way are not restored and the restore ends with an error; go back and tick overwrite to replace them." }
            }
            table #plan {
                @for r in &p.rows {
                    tr {
                        td { span.badge.(class_of(r.action)) { (r.action.word()) } }
                        td { code { (r.path) } }
                        td.small { (human_bytes(r.size)) }
                        td.small { (r.differs.join(", ")) }
                    }
                }
            }
            @if p.unlisted() > 0 { p.small { "… and " (p.unlisted()) " more" } }
            form method="post" action="/restore/start" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="name" value=(f.name);
                input type="hidden" name="to" value=(to.display().to_string());
                input type="hidden" name="paths" value=(f.paths);
                @if let Some(from) = f.from() { input type="hidden" name="from" value=(from); }
                @if f.overwrite() { input type="hidden" name="overwrite" value="1"; }
                button #confirm type="submit" { "Restore now" }
                " " a href="/" { "cancel" }
            }
        },
    )
}

fn class_of(a: Action) -> &'static str {
    match a {
        Action::Create | Action::Same | Action::Keep => "ok",
        Action::Attributes | Action::Replace => "warn",
        Action::Conflict | Action::Delete => "bad",
    }
}

/// Starts the restore on a thread of its own; the job page follows it.
pub(super) async fn start(State(s): State<Arc<Shared>>, Form(f): Form<RestoreForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    let shared = s.clone();
    let planned = blocking(move || {
        let (to, source, p) = dry_run(&shared, &f, 0)?;
        Ok((f, to, source, (p.write_files, p.write_bytes)))
    })
    .await;
    let (f, to, source, total) = match planned {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    let (id, job) = s.add_job(&f.name, to.clone(), total);
    let s2 = s.clone();
    std::thread::spawn(move || {
        let _one = s2.restoring.lock().unwrap_or_else(|e| e.into_inner());
        let report = Reporter::capturing(snap_read::TOOL, job.lines.clone());
        // What the restore replaces is kept first, as on the command line.
        let keep = |paths: &[std::path::PathBuf], mapped: bool| {
            let at = (&s2.store, s2.config.as_ref());
            let rec = snap_read::restore::undo::keep(at, &f.name, (&to, mapped), paths, &report)?;
            Ok(format!("{}/{}", rec.set, rec.id))
        };
        let req = snap_read::restore::Request {
            policy: Default::default(),
            numeric_owner: false,
            name: &f.name,
            to: &to,
            paths: &f.paths(),
            overwrite: f.overwrite(),
            archive: f.from().is_some(),
            trust: &s2.trust,
            delete: false,
            onto_home: false,
            before: Some(&keep),
        };
        let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        rustix::process::umask(umask);
        let result = snap_read::restore::run(
            &source,
            &req,
            &Decrypt::default(),
            &report,
            Some(job.watch.clone()),
        );
        rustix::process::umask(umask);
        let outcome = match result {
            Ok((exit, rec)) => format!(
                "{}: {} files, {} written, {} errors (exit {}){}",
                match exit {
                    snap_shared::error::Exit::Ok => "restored",
                    _ => "restored with errors",
                },
                rec.files,
                human_bytes(rec.bytes),
                rec.errors,
                exit as i32,
                match rec.extra.get("undo").and_then(|u| u.as_str()) {
                    Some(u) => format!("; what it replaced is kept in {u}"),
                    None => String::new(),
                }
            ),
            Err(e) => format!("failed: {e} (exit {})", e.exit as i32),
        };
        *job.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    });
    Redirect::to(&format!("/restore/job?id={id}")).into_response()
}

fn job_of(s: &Shared, q: &BTreeMap<String, String>) -> Option<Arc<Job>> {
    let id: usize = q.get("id")?.parse().ok()?;
    s.jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
}

/// The job's page: a progress bar the events move, and the outcome.
pub(super) async fn job_page(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(job) = job_of(&s, &q) else {
        return refuse(StatusCode::NOT_FOUND, "no such restore\n");
    };
    let id = q.get("id").cloned().unwrap_or_default();
    let body = html! {
        h2 { "Restoring " (job.name) " into " code { (job.to.display()) } }
        progress #bar max="100" value="0" {}
        p #state { "starting…" }
        pre #lines {}
        (super::disks::stop_form(&s, id.parse().unwrap_or(usize::MAX)))
        p { a href="/" { "back to the timeline" } }
        script { (PreEscaped(format!(
            "const es=new EventSource('/restore/events?id={id}');\
    es.addEventListener('progress',e=>{{const d=JSON.parse(e.data);\
    document.getElementById('bar').value=d.percent;document.getElementById('state').textContent=d.state;\
    document.getElementById('lines').textContent=d.lines.join('\\n');\
    if(d.done){{es.close();document.body.dataset.done='1';}}}});"
        ))) }
    };
    axum::response::Html(page(&format!("restoring {}", job.name), body).into_string())
        .into_response()
}

/// What the events say at one moment.
fn snapshot_of(job: &Job) -> serde_json::Value {
    let (files, bytes) = (job.watch.files.load(Relaxed), job.watch.bytes.load(Relaxed));
    let done = job.done.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (tf, tb) = job.total;
    let percent = match (done.is_some(), tb) {
        (true, _) => 100,
        (false, 0) => 0,
        (false, tb) => (bytes.saturating_mul(100) / tb).min(99),
    };
    let state = match &done {
        Some(d) => d.clone(),
        None => format!(
            "{files} of {tf} files, {} of {}",
            human_bytes(bytes),
            human_bytes(tb)
        ),
    };
    let lines = job.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
    serde_json::json!({"percent": percent, "state": state, "files": files, "bytes": bytes,
        "lines": lines, "done": done.is_some()})
}

/// Progress as server-sent events, five a second, until the restore ends.
pub(super) async fn events(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(job) = job_of(&s, &q) else {
        return refuse(StatusCode::NOT_FOUND, "no such restore\n");
    };
    // The first event at once, then one every 200 ms; the one that says done is the last.
    let stream = futures::stream::unfold((job, true, false), |(job, first, ended)| async move {
        if ended {
            return None;
        }
        if !first {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let v = snapshot_of(&job);
        let done = v["done"].as_bool().unwrap_or(false);
        let ev = Event::default().event("progress").data(v.to_string());
        Some((Ok::<_, std::convert::Infallible>(ev), (job, false, done)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
