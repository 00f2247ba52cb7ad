//! `snap-restore serve`: the timeline, live, on a local web server (axum),
//! with a diff of any two snapshots and, when `--allow-changes` is given,
//! forms that tag, describe, pin and unpin.
//!
//! Whoever reaches the port could read every file name the store holds, so:
//! - it listens on loopback unless `--allow-remote` names another address
//!   (with a warning);
//! - every request needs the random token printed at start (as Jupyter
//!   does): in the URL once, then in an HttpOnly, SameSite=Strict cookie;
//! - the Host header must name this server (a DNS-rebinding page cannot);
//! - every POST carries the page's CSRF token, and is refused when the
//!   server is read-only (the default);
//! - every page has a strict Content-Security-Policy; no page shows a key,
//!   a passphrase or the config.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, PreEscaped, html};

use snap_cli::Reporter;
use snap_shared::config::LoadedConfig;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::store::Store;

use crate::source::Source;

/// What every request handler shares.
struct Shared {
    store: Store,
    config: Option<LoadedConfig>,
    token: String,
    csrf: String,
    allow_changes: bool,
    /// The Host header values this server answers to.
    hosts: Vec<String>,
    /// The last timeline page and what it was made from.
    page: std::sync::Mutex<Option<(Vec<u128>, Arc<String>)>>,
}

/// What the timeline page depends on, cheaply: every set, archive and disk
/// folder's modification time (a record or a pin added, removed or
/// rewritten by rename changes its folder's; the catalog follows the
/// records, and opening it may touch it), and the minute ("3 min ago").
fn fingerprint(store: &Store) -> Vec<u128> {
    let mtime = |p: &std::path::Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos())
    };
    let minute = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u128::from(d.as_secs() / 60));
    let mut out = vec![minute];
    for top in ["sets", "archives", "disks"] {
        let dir = store.root.join(top);
        out.push(mtime(&dir));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut subs: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            subs.sort();
            out.extend(subs.iter().map(|p| mtime(p)));
        }
    }
    out
}

/// A random token of 128 bits, as hex.
fn random_token() -> Result<String> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|e| Error::io_ctx("/dev/urandom", e))?,
        &mut b,
    )
    .map_err(|e| Error::io_ctx("/dev/urandom", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Compares without leaking how long a prefix matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What `serve` is asked to do.
pub struct Options {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub allow_changes: bool,
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(
    store: Store,
    config: Option<LoadedConfig>,
    opts: &Options,
    report: &Reporter,
) -> Result<Exit> {
    if !opts.listen.ip().is_loopback() && !opts.allow_remote {
        return Err(Error::usage(
            format!("--listen {}", opts.listen),
            "is not a loopback address; anyone who reaches it could read every file name",
        )
        .with_hint("add --allow-remote if that is what you want"));
    }
    if !opts.listen.ip().is_loopback() {
        report.warn(&format!(
            "listening on {}: other machines can reach this page (the token still guards it; there is no TLS)",
            opts.listen
        ));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io_ctx("starting the server", e))?;
    rt.block_on(serve(store, config, opts, report))
}

async fn serve(
    store: Store,
    config: Option<LoadedConfig>,
    opts: &Options,
    report: &Reporter,
) -> Result<Exit> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            Error::io_ctx(format!("--listen {}", opts.listen), e).with_exit(Exit::Unavailable)
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io_ctx("the listening socket", e))?;
    let port = addr.port();
    let token = std::env::var("SNAP_SERVE_TOKEN")
        .ok()
        .filter(|t| t.len() >= 16)
        .map_or_else(random_token, Ok)?;
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    hosts.push(addr.to_string());
    let shared = Arc::new(Shared {
        store,
        config,
        token: token.clone(),
        csrf: random_token()?,
        allow_changes: opts.allow_changes,
        hosts,
        page: std::sync::Mutex::new(None),
    });
    let app = Router::new()
        .route("/", get(timeline_page))
        .route("/diff", get(diff_page))
        .route("/history", get(history_page))
        .route("/search", get(search_page))
        .route("/edit", post(edit))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared);
    report.note(&format!(
        "open http://127.0.0.1:{port}/?token={token}{}",
        match opts.allow_changes {
            true => "",
            false => " (read-only: --allow-changes to edit)",
        }
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped())
        .await
        .map_err(|e| Error::io_ctx("the server", e))?;
    Ok(Exit::Ok)
}

async fn stopped() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// The checks every request passes first: Host, then the token (query or cookie).
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !s.hosts.iter().any(|h| h == host) {
        return refuse(StatusCode::FORBIDDEN, "unknown Host header\n");
    }
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    });
    let from_cookie = cookie(req.headers(), "snap_token");
    let ok = from_query
        .iter()
        .chain(from_cookie.iter())
        .any(|t| same(t, &s.token));
    if !ok {
        return refuse(
            StatusCode::FORBIDDEN,
            "a valid token is needed (the URL printed at start)\n",
        );
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if from_query.is_some() {
        let c = format!("snap_token={}; HttpOnly; SameSite=Strict; Path=/", s.token);
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.insert(header::SET_COOKIE, v);
        }
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
form-action 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// An error as a page: what went wrong, one line.
fn failed(e: Error) -> Response {
    let status = match e.exit {
        Exit::NoInput => StatusCode::NOT_FOUND,
        Exit::Usage => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Html(html! { p { (e.to_string()) } }.into_string())).into_response()
}

/// A made page, or the error as one.
fn respond(page: Result<String>) -> Response {
    match page {
        Ok(p) => Html(p).into_response(),
        Err(e) => failed(e),
    }
}

/// A page of `serve` beside the timeline: its title, the timeline's style, `body`.
fn page(title: &str, body: Markup) -> Markup {
    html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (title) } style { (PreEscaped(crate::timeline::html::CSS)) } }
            body { main { (body) } }
        }
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::internal("server", e)))
}

/// The live timeline, made again only when what it shows may have changed.
async fn timeline_page(State(s): State<Arc<Shared>>) -> Response {
    let s2 = s.clone();
    let page = blocking(move || {
        let key = fingerprint(&s2.store);
        if let Some((k, p)) = s2.page.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && *k == key
        {
            return Ok(p.clone());
        }
        let t = crate::timeline::gather(&s2.store, s2.config.as_ref(), chrono::Utc::now())?;
        let live = crate::timeline::html::Live {
            csrf: s2.csrf.clone(),
            allow_changes: s2.allow_changes,
        };
        let p = Arc::new(crate::timeline::html::render_live(&t, Some(&live)));
        *s2.page.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, p.clone()));
        Ok(p)
    })
    .await;
    respond(page.map(|p| p.as_str().to_owned()))
}

/// The changes between two snapshots, folder by folder.
async fn diff_page(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (Some(a), Some(b)) = (q.get("a").cloned(), q.get("b").cloned()) else {
        return refuse(StatusCode::BAD_REQUEST, "give a=SET/ID and b=SET/ID\n");
    };
    let store = s.store.clone();
    let page = blocking(move || {
        let source = Source::Store(store);
        let (ia, ib) = (source.resolve(&a, false)?, source.resolve(&b, false)?);
        let mut by_dir: BTreeMap<String, Vec<(&'static str, String)>> = BTreeMap::new();
        let mut n = 0usize;
        crate::view::each_change(&ia, &ib, &Decrypt::default(), |mark, path| {
            let p = String::from_utf8_lossy(path).into_owned();
            let (dir, name) = p
                .rsplit_once('/')
                .map_or((String::new(), p.clone()), |(d, f)| (d.into(), f.into()));
            by_dir.entry(dir).or_default().push((mark, name));
            n += 1;
            Ok(n < 100_000)
        })?;
        Ok(diff_markup(&a, &b, &by_dir, n).into_string())
    })
    .await;
    respond(page)
}

/// Most distinct paths a search lists.
const SEARCH_LIMIT: usize = 500;

/// Where a found path is: how many snapshots hold it, the newest and the oldest.
struct Found {
    count: usize,
    newest: String,
    oldest: String,
}

/// File names containing the query (any case), across every snapshot of every set.
async fn search_page(
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
        let source = Source::Store(store);
        let mut items: Vec<crate::source::Item> = source
            .items()?
            .into_iter()
            .filter(|i| i.kind() == "snapshot")
            .collect();
        items.reverse();
        let mut found: BTreeMap<(String, String), Found> = BTreeMap::new();
        let mut truncated = false;
        'items: for item in &items {
            let (Some(loc), Some((set, id))) = (item.index(), item.set_and_id()) else {
                continue;
            };
            let mut r = crate::indexes::open_index(&loc, &Decrypt::default())?;
            while let Some(e) = r.next_entry()? {
                let name = e.path.rsplit(|b| *b == b'/').next().unwrap_or(&e.path);
                if !String::from_utf8_lossy(name)
                    .to_lowercase()
                    .contains(&query)
                {
                    continue;
                }
                let key = (set.to_string(), e.display_path().into_owned());
                if !found.contains_key(&key) && found.len() >= SEARCH_LIMIT {
                    truncated = true;
                    break 'items;
                }
                let f = found.entry(key).or_insert_with(|| Found {
                    count: 0,
                    newest: id.to_string(),
                    oldest: id.to_string(),
                });
                f.count += 1;
                f.oldest = id.to_string();
            }
        }
        Ok(search_markup(&query, &found, truncated).into_string())
    })
    .await;
    respond(page)
}

fn search_markup(
    query: &str,
    found: &BTreeMap<(String, String), Found>,
    truncated: bool,
) -> Markup {
    page(
        &format!("search {query}"),
        html! {
                h2 { "Names containing " code { (query) } }
                p.small {
                    (found.len()) " paths"
                    @if truncated { " (the first " (SEARCH_LIMIT) "; narrow the search)" }
                    ", newest snapshots first. " a href="/" { "back to the timeline" }
                }
                @for ((set, path), f) in found {
                    div.card {
                        span.id { (set) ": " (path) } " "
                        span.small { "in " (f.count) " snapshots, " (f.oldest) " to " (f.newest) " " }
                        a.small href=(format!("/history?set={}&path={}", enc(set), enc(path))) { "history" }
                    }
                }
        },
    )
}

/// One path's versions across a set's snapshots, newest first.
async fn history_page(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (Some(set), Some(path)) = (q.get("set").cloned(), q.get("path").cloned()) else {
        return refuse(StatusCode::BAD_REQUEST, "give set=SET and path=PATH\n");
    };
    let changed_only = q.get("changed").is_some_and(|v| v == "1");
    let store = s.store.clone();
    let page = blocking(move || {
        let source = Source::Store(store);
        let path = path.trim_start_matches('/').to_string();
        let mut items: Vec<crate::source::Item> = source
            .items()?
            .into_iter()
            .filter(|i| i.kind() == "snapshot" && i.set_and_id().is_some_and(|(x, _)| x == set))
            .collect();
        items.reverse();
        let mut rows = Vec::new();
        for item in &items {
            let e = crate::view::find_entry(item, path.as_bytes(), &Decrypt::default())?;
            let id = item
                .set_and_id()
                .map(|(_, id)| id.to_string())
                .unwrap_or_default();
            rows.push((id, e));
        }
        Ok(history_markup(&set, &path, &rows, changed_only).into_string())
    })
    .await;
    respond(page)
}

/// What identifies a version of a file: kind, size, content, target, mode.
fn version(e: &Option<snap_shared::index::Entry>) -> Option<String> {
    e.as_ref().map(|e| {
        format!(
            "{:?} {} {:?} {:?} {:o}",
            e.kind,
            e.size,
            e.sha256.map(|d| d.to_hex()),
            e.target,
            e.mode
        )
    })
}

fn history_markup(
    set: &str,
    path: &str,
    rows: &[(String, Option<snap_shared::index::Entry>)],
    changed_only: bool,
) -> Markup {
    page(
        &format!("history of {path}"),
        html! {
                h2 { "History of " code { (path) } " in set " (set) }
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

fn diff_markup(
    a: &str,
    b: &str,
    by_dir: &BTreeMap<String, Vec<(&str, String)>>,
    n: usize,
) -> Markup {
    page(
        &format!("diff {a} {b}"),
        html! {
                h2 { "From " (a) " to " (b) }
                p.small { (n) " changes: + added, - removed, M modified, T type changed, U metadata only. "
                    a href="/" { "back to the timeline" } }
                @for (dir, items) in by_dir {
                    details open[by_dir.len() < 50] {
                        summary { (if dir.is_empty() { "/" } else { dir.as_str() }) " · " (items.len()) }
                        @for (mark, name) in items {
                            @let full = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
                            div.small {
                                code { (mark) } " " (name) " "
                                a href=(format!("/history?set={}&path={}", enc(set_of(b)), enc(&full))) { "history" }
                            }
                        }
                    }
                }
        },
    )
}

/// A query value, percent-encoded (paths may hold `&`, `#`, spaces).
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The set of a `SET/ID` name.
fn set_of(name: &str) -> &str {
    name.split_once('/').map_or(name, |(s, _)| s)
}

/// A form's fields: what to change on which snapshot.
#[derive(serde::Deserialize)]
struct EditForm {
    #[serde(default)]
    csrf: String,
    name: String,
    action: String,
    #[serde(default)]
    value: String,
}

async fn edit(State(s): State<Arc<Shared>>, Form(f): Form<EditForm>) -> Response {
    if !same(&f.csrf, &s.csrf) {
        return refuse(StatusCode::FORBIDDEN, "a valid CSRF token is needed\n");
    }
    if !s.allow_changes {
        return refuse(
            StatusCode::FORBIDDEN,
            "read-only: start the server with --allow-changes\n",
        );
    }
    let store = s.store.clone();
    let done = blocking(move || {
        let source = Source::Store(store);
        let quiet = Reporter::new(crate::TOOL, true, false);
        let value = f.value.trim();
        let one = std::slice::from_ref(&f.value);
        match f.action.as_str() {
            "tag" => crate::annotate::tag(&source, &f.name, false, (one, &[]), &quiet),
            "untag" => crate::annotate::tag(&source, &f.name, false, (&[], one), &quiet),
            "describe" => {
                let text = (!value.is_empty()).then_some(value);
                crate::annotate::describe(&source, &f.name, false, text, &quiet)
            }
            "pin" => {
                let why = (!value.is_empty()).then_some(value);
                crate::annotate::pin(&source, &f.name, false, why, &quiet)
            }
            "unpin" => crate::annotate::unpin(&source, &f.name, false, &quiet),
            _ => Err(Error::usage("action", "unknown")),
        }
    })
    .await;
    match done {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => failed(e),
    }
}
