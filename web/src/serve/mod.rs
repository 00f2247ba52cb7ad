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

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use snap_cli::Reporter;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::store::Store;

mod actions;
mod browse;
mod destination;
mod disks;
mod download;
mod held;
mod hosts;
mod http;
mod listing;
mod pages;
mod paths;
mod places;
mod restoring;
mod scan;

use http::{Shared, blocking, cookie, refuse, respond, same};

/// What the timeline page depends on, cheaply: every set, archive and disk
/// folder's modification time (a record or a pin added, removed or
/// rewritten by rename changes its folder's; the catalog follows the
/// records, and opening it may touch it), and the minute ("3 min ago").
pub(super) fn fingerprint(store: &Store) -> Vec<u128> {
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
    // A verify appends to the log at the root.
    let mut out = vec![minute, mtime(&store.root.join("verified.jsonl"))];
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

/// What `serve` is asked to do.
pub struct Options {
    pub listen: SocketAddr,
    pub allow_remote: bool,
    pub allow_changes: bool,
    /// `--allow-unsigned`: archives not signed by an allowed key are restored too.
    pub allow_unsigned: bool,
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
    let token = std::env::var("SNAP_SERVE_TOKEN")
        .ok()
        .filter(|t| t.len() >= 16)
        .map_or_else(snap_shared::hash::random_token, Ok)?;
    let hosts = hosts::accepted(addr, opts.allow_remote);
    let trust = snap_read::trust::Trust::load(
        config.as_ref().and_then(|c| c.config.signing.as_ref()),
        opts.allow_unsigned,
    )?;
    let shared = Arc::new(Shared {
        store,
        config,
        trust,
        token: token.clone(),
        csrf: snap_shared::hash::random_token()?,
        allow_changes: opts.allow_changes,
        hosts,
        page: std::sync::Mutex::new(None),
        dests: Default::default(),
        places: Default::default(),
        serving: Default::default(),
        jobs: std::sync::Mutex::new(Vec::new()),
        restoring: std::sync::Mutex::new(()),
    });
    let app = Router::new()
        .route("/", get(timeline_page))
        .route("/diff", get(pages::diff))
        .route("/dest/{name}", get(destination::view))
        .route("/browse/{set}/{id}", get(browse::top))
        .route("/browse/{set}/{id}/{*path}", get(browse::folder))
        .route("/file/{set}/{id}/{*path}", get(download::file))
        .route("/tarball/{set}/{id}", get(download::whole))
        .route("/tarball/{set}/{id}/{*path}", get(download::folder))
        .route("/history", get(paths::history))
        .route("/search", get(paths::search))
        .route("/text", get(pages::text))
        .route("/edit", post(actions::edit))
        .route("/restore", get(restoring::form))
        .route("/restore/preview", post(restoring::preview))
        .route("/restore/start", post(restoring::start))
        .route("/restore/job", get(restoring::job_page))
        .route("/restore/events", get(restoring::events))
        .route("/delete", get(actions::delete_form).post(actions::delete))
        .route("/disk", get(disks::form))
        .route("/disk/preview", post(disks::preview))
        .route("/disk/start", post(disks::start))
        .route("/disk/stop", post(disks::stop))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared);
    report.note(&format!(
        "open {}?token={token}{}",
        hosts::url(addr, opts.allow_remote),
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

/// The checks every request passes first: Host, then the token (query or cookie).
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !hosts::is_accepted(&s.hosts, host) {
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

/// The live timeline, made again only when what it shows may have changed.
async fn timeline_page(State(s): State<Arc<Shared>>) -> Response {
    let s2 = s.clone();
    let page = blocking(move || {
        let (dests, listed) = listing::listed(&s2)?;
        let mut key = fingerprint(&s2.store);
        key.push(listed);
        if let Some((k, p)) = s2.page.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && *k == key
        {
            return Ok(p.clone());
        }
        let t = crate::timeline::gather(&s2.store, s2.config.as_ref(), dests, chrono::Utc::now())?;
        let live = crate::timeline::html::Live {
            csrf: s2.csrf.clone(),
            allow_changes: s2.allow_changes,
        };
        let p = bytes::Bytes::from(crate::timeline::html::render_live(&t, Some(&live)));
        *s2.page.lock().unwrap_or_else(|e| e.into_inner()) = Some((key, p.clone()));
        Ok(p)
    })
    .await;
    respond(page)
}
