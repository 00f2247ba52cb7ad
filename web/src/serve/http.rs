//! What every handler of the page shares: the server's state, the checks
//! of a POST (its CSRF token, whether changes are allowed), and the ways a
//! handler answers (a page, a refusal, a failure).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, PreEscaped, html};

use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::store::Store;

use snap_read::restore::Watch;

/// What every request handler shares.
pub(super) struct Shared {
    pub(super) store: Store,
    pub(super) config: Option<LoadedConfig>,
    pub(super) token: String,
    pub(super) csrf: String,
    pub(super) allow_changes: bool,
    /// Whose archives are restored from the page.
    pub(super) trust: snap_read::trust::Trust,
    /// The Host header values this server answers to.
    pub(super) hosts: Vec<String>,
    /// The last timeline page and what it was made from.
    /// (Bytes: sending it shares the buffer, never copies the megabytes.)
    pub(super) page: std::sync::Mutex<Option<(Vec<u128>, bytes::Bytes)>>,
    /// The destinations' listings and when they were made (a bucket is
    /// listed at most every few minutes, not on every page).
    pub(super) dests: super::listing::Listings,
    /// The store and the destinations the browser read lately, listed.
    pub(super) places: super::places::Places,
    /// Disk snapshots served over NBD from the page, to stop.
    pub(super) serving: super::disks::Serving,
    /// Restores started from the page, by number.
    pub(super) jobs: std::sync::Mutex<Vec<Arc<Job>>>,
    /// Held while a restore runs: one at a time.
    pub(super) restoring: std::sync::Mutex<()>,
}

pub(super) fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            kv.trim()
                .strip_prefix(&format!("{name}="))
                .map(str::to_string)
        })
}

/// Refuses a POST without the page's CSRF token, or on a read-only server.
pub(super) fn check_post(s: &Shared, csrf: &str) -> Option<Response> {
    if !same(csrf, &s.csrf) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            "a valid CSRF token is needed\n",
        ));
    }
    check_writable(s)
}

/// Refuses what changes things (and the forms leading there) on a read-only server.
pub(super) fn check_writable(s: &Shared) -> Option<Response> {
    (!s.allow_changes).then(|| {
        refuse(
            StatusCode::FORBIDDEN,
            "read-only: start the server with --allow-changes\n",
        )
    })
}

/// An error as a page: what went wrong, one line.
pub(super) fn failed(e: Error) -> Response {
    let status = match e.exit {
        Exit::NoInput => StatusCode::NOT_FOUND,
        Exit::Usage => StatusCode::BAD_REQUEST,
        // An archive not signed by an allowed key.
        Exit::NoPerm => StatusCode::FORBIDDEN,
        // Held: an image a VM or a daemon has open, a domain running it.
        Exit::TempFail => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = html! { p { (e.to_string()) } @if let Some(h) = &e.hint { p.small { (h) } } };
    (status, Html(body.into_string())).into_response()
}

/// A made page, or the error as one.
pub(super) fn respond(page: Result<impl IntoResponse>) -> Response {
    match page {
        Ok(p) => Html(p).into_response(),
        Err(e) => failed(e),
    }
}

/// A page of `serve` beside the timeline: its title, the timeline's style, `body`.
pub(super) fn page(title: &str, body: Markup) -> Markup {
    html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) } style { (PreEscaped(crate::timeline::html::CSS)) } }
            body { main { (body) } }
        }
    }
}

/// Runs blocking store work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::internal("server", e)))
}

/// A query value, percent-encoded (paths may hold `&`, `#`, spaces).
pub(super) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The set of a `SET/ID` name.
pub(super) fn set_of(name: &str) -> &str {
    name.split_once('/').map_or(name, |(s, _)| s)
}

/// One restore started from the page.
pub(super) struct Job {
    pub(super) name: String,
    pub(super) to: PathBuf,
    pub(super) watch: Arc<Watch>,
    /// From the dry run: files and bytes to write.
    pub(super) total: (u64, u64),
    /// What the restore said (errors, the summary).
    pub(super) lines: Arc<Mutex<Vec<String>>>,
    /// Set when it ended: the exit code's meaning, in words.
    pub(super) done: Mutex<Option<String>>,
}

impl Shared {
    /// A new job the page follows (a restore, a disk action): its number and itself.
    pub(super) fn add_job(&self, name: &str, to: PathBuf, total: (u64, u64)) -> (usize, Arc<Job>) {
        let job = Arc::new(Job {
            name: name.to_string(),
            to,
            watch: Arc::new(Watch::default()),
            total,
            lines: Arc::new(Mutex::new(Vec::new())),
            done: Mutex::new(None),
        });
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push(job.clone());
        (jobs.len() - 1, job)
    }
}

/// Compares without leaking how long a prefix matched.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
