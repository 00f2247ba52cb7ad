//! The file browser: one folder of a snapshot or archive in the store, read
//! from its index alone, with size, mode, owner, mtime and what changed
//! since the set's previous one; a file downloads through `cat`, checked
//! against its sha256 as it goes out (a mismatch cuts the download short,
//! so a bad copy never arrives whole).
//!
//! `/browse/SET/ID/PATH` lists a folder (`?archive=1` the archive of that
//! id, `?sort=size|mtime|name`, `&desc=1`); `/file/SET/ID/PATH` downloads a
//! file. A path holding `.` or `..` as a segment is refused: paths are
//! names inside the snapshot, never a way out of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::{Entry, EntryType};

use super::http::{Shared, blocking, enc, page, refuse, respond};
use snap_read::source::Item;

/// One row of a folder: the entry now, and what it was in the previous one.
struct Row {
    name: String,
    now: Option<Entry>,
    before: Option<Entry>,
}

impl Row {
    /// `+` new, `~` changed, `−` gone, blank when the same.
    fn mark(&self) -> &'static str {
        match (&self.now, &self.before) {
            (Some(_), None) => "+",
            (None, Some(_)) => "−",
            (Some(a), Some(b)) if !same_entry(a, b) => "~",
            _ => "",
        }
    }

    fn shown(&self) -> &Entry {
        self.now
            .as_ref()
            .or(self.before.as_ref())
            .expect("a row has one side")
    }
}

/// Whether two versions of an entry are the same (content and attributes).
fn same_entry(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.size == b.size
        && a.sha256 == b.sha256
        && a.mtime == b.mtime
        && a.mode == b.mode
        && (a.uid, a.gid) == (b.uid, b.gid)
        && a.target == b.target
        && a.xattrs == b.xattrs
}

/// The folder inside the snapshot, as `/`-joined bytes, or why it is refused.
fn clean(path: &str) -> std::result::Result<String, &'static str> {
    let mut parts = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" => {}
            "." | ".." => return Err("a path inside a snapshot has no . or .. in it\n"),
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

/// What a browse or download request names: the path inside the item,
/// the configured destination read (`from=`), and whether the item is the
/// archive (always, at a destination).
pub(super) struct Asked {
    pub(super) path: String,
    pub(super) from: Option<String>,
    pub(super) archive: bool,
}

/// Reads a request's path and query; a path with `.` or `..` is refused (why).
pub(super) fn asked(
    path: &str,
    q: &BTreeMap<String, String>,
) -> std::result::Result<Asked, &'static str> {
    let path = clean(path)?;
    let from = q.get("from").cloned();
    let archive = from.is_some() || q.get("archive").is_some_and(|v| v == "1");
    Ok(Asked {
        path,
        from,
        archive,
    })
}

/// The entries directly in `dir` (`""` for the top), by name, and whether
/// the folder exists at all.
fn children(it: &Item, dir: &str) -> Result<(bool, BTreeMap<String, Entry>)> {
    let Some(loc) = it.index() else {
        return Ok((false, BTreeMap::new()));
    };
    let mut r = snap_read::indexes::open_index(&loc, &Decrypt::default())?;
    let mut out = BTreeMap::new();
    let mut exists = dir.is_empty();
    let dir_b = dir.as_bytes();
    while let Some(e) = r.next().transpose()? {
        let (parent, name) = match e.path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&e.path[..i], &e.path[i + 1..]),
            None => (&e.path[..0], &e.path[..]),
        };
        if parent == dir_b {
            out.insert(String::from_utf8_lossy(name).into_owned(), e);
        } else if e.path == dir_b && e.kind == EntryType::Dir {
            exists = true;
        }
    }
    Ok((exists || !out.is_empty(), out))
}

/// `/browse/SET/ID`: the top folder.
pub(super) async fn top(
    state: State<Arc<Shared>>,
    Path((set, id)): Path<(String, String)>,
    q: Query<BTreeMap<String, String>>,
) -> Response {
    folder(state, Path((set, id, String::new())), q).await
}

/// `/browse/SET/ID/PATH`: one folder.
pub(super) async fn folder(
    State(s): State<Arc<Shared>>,
    Path((set, id, path)): Path<(String, String, String)>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Asked {
        path: dir,
        from,
        archive,
    } = match asked(&path, &q) {
        Ok(a) => a,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let sort = q.get("sort").cloned().unwrap_or_else(|| "name".into());
    let desc = q.get("desc").is_some_and(|v| v == "1");
    let allow_changes = s.allow_changes;
    let page = blocking(move || {
        let place = super::places::place(&s, from.as_deref())?;
        let it = place.item(&set, &id, archive)?;
        let (exists, now) = children(&it, &dir)?;
        if !exists {
            return Err(Error::new(
                Exit::NoInput,
                format!("{set}/{id}:{dir}"),
                "no such folder in it",
            ));
        }
        let prev = place.previous(&it);
        let before = match &prev {
            Some(p) => children(p, &dir)?.1,
            None => BTreeMap::new(),
        };
        let mut names: Vec<&String> = now.keys().chain(before.keys()).collect();
        names.sort();
        names.dedup();
        let mut rows: Vec<Row> = names
            .into_iter()
            .map(|n| Row {
                name: n.clone(),
                now: now.get(n).cloned(),
                before: before.get(n).cloned(),
            })
            .collect();
        sort_rows(&mut rows, &sort, desc);
        let at = Where {
            set: &set,
            id: &id,
            dir: &dir,
            archive,
            from: from.as_deref(),
            prev: prev
                .as_ref()
                .and_then(|p| p.set_and_id().map(|(_, x)| x.to_string())),
        };
        let title = format!("{set}/{id}:/{dir}");
        Ok(axum::response::Html(
            page(&title, listing(&at, &rows, (&sort, desc), allow_changes)).into_string(),
        ))
    })
    .await;
    respond(page)
}

/// Folders first, then by the chosen key (name breaks ties).
fn sort_rows(rows: &mut [Row], sort: &str, desc: bool) {
    rows.sort_by(|a, b| {
        let (x, y) = (a.shown(), b.shown());
        let dirs = (y.kind == EntryType::Dir).cmp(&(x.kind == EntryType::Dir));
        let by = match sort {
            "size" => x.size.cmp(&y.size),
            "mtime" => x.mtime.cmp(&y.mtime),
            _ => std::cmp::Ordering::Equal,
        };
        let by = by.then_with(|| a.name.cmp(&b.name));
        dirs.then(if desc { by.reverse() } else { by })
    });
}

/// Which folder of which item a page shows.
struct Where<'a> {
    set: &'a str,
    id: &'a str,
    dir: &'a str,
    archive: bool,
    /// The configured destination read, if not the store.
    from: Option<&'a str>,
    prev: Option<String>,
}

impl Where<'_> {
    /// The browse URL of a folder inside the same item.
    fn url(&self, dir: &str, extra: &str) -> String {
        let mut u = format!("/browse/{}/{}", enc_seg(self.set), enc_seg(self.id));
        for seg in dir.split('/').filter(|s| !s.is_empty()) {
            u.push('/');
            u.push_str(&enc_seg(seg));
        }
        let mut q = self.query();
        if !extra.is_empty() {
            q.push(extra.to_string());
        }
        if !q.is_empty() {
            u.push('?');
            u.push_str(&q.join("&"));
        }
        u
    }

    /// The query every link of the page keeps: the archive, the destination.
    fn query(&self) -> Vec<String> {
        let mut q = Vec::new();
        if self.archive {
            q.push("archive=1".to_string());
        }
        if let Some(f) = self.from {
            q.push(format!("from={}", enc(f)));
        }
        q
    }

    fn file_url(&self, path: &str) -> String {
        let mut u = format!("/file/{}/{}", enc_seg(self.set), enc_seg(self.id));
        for seg in path.split('/') {
            u.push('/');
            u.push_str(&enc_seg(seg));
        }
        let q = self.query();
        if !q.is_empty() {
            u.push('?');
            u.push_str(&q.join("&"));
        }
        u
    }

    /// The folder as a tar.zst.
    fn tarball_url(&self) -> String {
        self.url(self.dir, "").replacen("/browse/", "/tarball/", 1)
    }

    fn join(&self, name: &str) -> String {
        match self.dir.is_empty() {
            true => name.to_string(),
            false => format!("{}/{name}", self.dir),
        }
    }
}

use crate::timeline::html::enc_seg;

fn listing(at: &Where<'_>, rows: &[Row], (sort, desc): (&str, bool), changes: bool) -> Markup {
    let crumbs: Vec<&str> = at.dir.split('/').filter(|s| !s.is_empty()).collect();
    let head = |key: &str, label: &str| {
        let flip = sort == key && !desc;
        let extra = format!("sort={key}{}", if flip { "&desc=1" } else { "" });
        html! { th { a href=(at.url(at.dir, &extra)) { (label) } } }
    };
    let kind = if at.archive { "archive" } else { "snapshot" };
    html! {
        nav.small aria-label="breadcrumbs" {
            a href="/" { "timeline" } " › "
            a href=(at.url("", "")) { (at.set) "/" (at.id) }
            @for (i, c) in crumbs.iter().enumerate() {
                " / "
                a href=(at.url(&crumbs[..=i].join("/"), "")) { (c) }
            }
        }
        h2 { (kind) " " (at.set) "/" (at.id) ": /" (at.dir) @if let Some(f) = at.from { " at " (f) } }
        p.small {
            @match &at.prev {
                Some(p) => { "Marks: + new, ~ changed, − gone since " (p) "." }
                None => { "The set's first " (kind) ": nothing to compare with." }
            }
            " "
            a href=(at.tarball_url()) download { "download this folder (tar.zst)" }
            @if changes && (!at.archive || at.from.is_some()) {
                " "
                a.act href=(format!("/restore?name={}&path={}{}", enc(&format!("{}/{}", at.set, at.id)), enc(at.dir),
                    at.from.map(|f| format!("&from={}", enc(f))).unwrap_or_default())) {
                    "restore this folder…"
                }
            }
        }
        table #listing {
            thead { tr { th { "" } (head("name", "name")) (head("size", "size")) th { "mode" } th { "owner" } (head("mtime", "modified")) } }
            tbody {
                @if !crumbs.is_empty() {
                    tr { td {} td { a href=(at.url(&crumbs[..crumbs.len() - 1].join("/"), "")) { ".. (up)" } } td {} td {} td {} td {} }
                }
                @for r in rows {
                    @let e = r.shown();
                    @let gone = r.now.is_none();
                    tr.gone[gone] {
                        td.mark { (r.mark()) }
                        td {
                            @match (gone, &e.kind) {
                                (false, EntryType::Dir) => a href=(at.url(&at.join(&r.name), "")) { (r.name) "/" },
                                (false, EntryType::File) => a href=(at.file_url(&at.join(&r.name))) download=(r.name) { (r.name) },
                                (_, EntryType::Symlink) => { (r.name) " → " (String::from_utf8_lossy(e.target.as_deref().unwrap_or_default())) },
                                _ => (r.name),
                            }
                        }
                        td.num { @if e.kind == EntryType::File { (snap_shared::size::human_bytes(e.size)) } }
                        td { (format!("{:04o}", e.mode)) }
                        td { (owner(e)) }
                        td { (mtime(e.mtime)) }
                    }
                }
            }
        }
        p.small { "Keys: j or ↓ next, k or ↑ previous, Enter opens, u or Backspace goes up." }
        script { (maud::PreEscaped(KEYS)) }
    }
}

/// Keyboard alone: j/k (or the arrows) move between the rows' links,
/// Enter follows one (the browser's own), u or Backspace goes up a folder.
const KEYS: &str = "(()=>{const links=()=>[...document.querySelectorAll('#listing tbody a')];\
document.addEventListener('keydown',e=>{if(e.target.closest&&e.target.closest('input,textarea'))return;\
const l=links();if(!l.length)return;const i=l.indexOf(document.activeElement);\
if(e.key==='j'||e.key==='ArrowDown'){l[Math.min(i+1,l.length-1)].focus();e.preventDefault();}\
else if(e.key==='k'||e.key==='ArrowUp'){l[Math.max(i-1,0)].focus();e.preventDefault();}\
else if(e.key==='u'||e.key==='Backspace'){const up=[...document.querySelectorAll('nav[aria-label=breadcrumbs] a')];\
if(up.length>2){location.href=up[up.length-2].href;e.preventDefault();}}});})();";

fn owner(e: &Entry) -> String {
    let user = e.user.clone().unwrap_or_else(|| e.uid.to_string());
    let group = e.group.clone().unwrap_or_else(|| e.gid.to_string());
    format!("{user}:{group}")
}

fn mtime(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.` and `..` never pass as path segments; empty ones are dropped.
    #[test]
    fn paths_stay_inside() {
        assert_eq!(clean("a//b/").unwrap(), "a/b");
        assert!(clean("a/../b").is_err());
        assert!(clean("./a").is_err());
        assert_eq!(clean("").unwrap(), "");
    }
}
