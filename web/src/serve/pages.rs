//! The read-only pages beside the timeline: the diff of any two snapshots
//! and the text diff of one file in them (search and history are in
//! super::paths).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use snap_shared::crypt::Decrypt;

use super::held::held;
use super::http::{Shared, blocking, enc, page, refuse, respond, set_of};
use snap_read::source::Source;

/// Most changes a diff page lists.
const DIFF_LIMIT: usize = 100_000;
/// The largest file the text diff page diffs.
const TEXT_MAX: u64 = 64 * 1024;

/// One changed entry on the diff page.
struct Changed {
    mark: &'static str,
    name: String,
    /// What differs, attribute by attribute (for M, T and U).
    attrs: Vec<String>,
    /// Whether a text diff may be worth a look: a small file whose content changed.
    text: bool,
}

/// The changes between two snapshots, folder by folder, with what changed
/// in each entry and a text diff of small text files.
pub(super) async fn diff(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (Some(a), Some(b)) = (q.get("a").cloned(), q.get("b").cloned()) else {
        return refuse(StatusCode::BAD_REQUEST, "give a=SET/ID and b=SET/ID\n");
    };
    let store = s.store.clone();
    let page = blocking(move || {
        held(&store, &a, false)?;
        held(&store, &b, false)?;
        let source = Source::Store(store);
        let (ia, ib) = (
            source.resolve_name(&a, false)?,
            source.resolve_name(&b, false)?,
        );
        let trees = tree_of(&ia).is_some() && tree_of(&ib).is_some();
        let mut by_dir: BTreeMap<String, Vec<Changed>> = BTreeMap::new();
        let mut n = 0usize;
        snap_read::view::each_changed_entry(&ia, &ib, &Decrypt::default(), |mark, old, new| {
            let path = new.or(old).map_or(&[][..], |e| &e.path[..]);
            let p = String::from_utf8_lossy(path).into_owned();
            let (dir, name) = p
                .rsplit_once('/')
                .map_or((String::new(), p.clone()), |(d, f)| (d.into(), f.into()));
            let (attrs, text) = match (old, new) {
                (Some(o), Some(n)) => {
                    let text = trees && mark == "M" && small_files(o, n);
                    (snap_read::view::attribute_changes(o, n), text)
                }
                _ => (Vec::new(), false),
            };
            by_dir.entry(dir).or_default().push(Changed {
                mark,
                name,
                attrs,
                text,
            });
            n += 1;
            Ok(n < DIFF_LIMIT)
        })?;
        Ok(diff_markup(&a, &b, &by_dir, n).into_string())
    })
    .await;
    respond(page)
}

/// A snapshot's tree on disk (archives have none to read single files from).
pub(super) fn tree_of(item: &snap_read::source::Item) -> Option<std::path::PathBuf> {
    match item {
        snap_read::source::Item::Snapshot { .. } => item.data().path().map(|p| p.to_path_buf()),
        _ => None,
    }
}

/// Both versions are files small enough for a text diff.
fn small_files(old: &snap_shared::index::Entry, new: &snap_shared::index::Entry) -> bool {
    use snap_shared::index::EntryType;
    old.kind == EntryType::File
        && new.kind == EntryType::File
        && old.size <= TEXT_MAX
        && new.size <= TEXT_MAX
}

/// A unified diff of two versions of a small text file, read from the
/// snapshots' trees; `None` when either is not text (or not in a tree).
fn text_diff(
    trees: &(Option<std::path::PathBuf>, Option<std::path::PathBuf>),
    old: &snap_shared::index::Entry,
    new: &snap_shared::index::Entry,
) -> Option<String> {
    if !small_files(old, new) {
        return None;
    }
    let read = |tree: &Option<std::path::PathBuf>, e: &snap_shared::index::Entry| {
        let at = tree.as_ref()?.join(std::ffi::OsStr::from_bytes(&e.path));
        let fd = rustix::fs::open(
            &at,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd).take(TEXT_MAX + 1), &mut data)
            .ok()?;
        String::from_utf8(data).ok().filter(|t| !t.contains('\0'))
    };
    let (a, b) = (read(&trees.0, old)?, read(&trees.1, new)?);
    let diff = similar::TextDiff::from_lines(&a, &b);
    Some(diff.unified_diff().context_radius(3).to_string())
}

/// One file's text diff between two snapshots (linked from the diff page).
pub(super) async fn text(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (Some(a), Some(b), Some(path)) = (
        q.get("a").cloned(),
        q.get("b").cloned(),
        q.get("path").cloned(),
    ) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "give a=SET/ID, b=SET/ID and path=PATH\n",
        );
    };
    let store = s.store.clone();
    let page = blocking(move || {
        held(&store, &a, false)?;
        held(&store, &b, false)?;
        let source = Source::Store(store);
        let (ia, ib) = (source.resolve_name(&a, false)?, source.resolve_name(&b, false)?);
        let dec = Decrypt::default();
        let (old, new) = (
            snap_read::view::find_entry(&ia, path.as_bytes(), &dec)?,
            snap_read::view::find_entry(&ib, path.as_bytes(), &dec)?,
        );
        let diff = match (&old, &new) {
            (Some(o), Some(n)) => text_diff(&(tree_of(&ia), tree_of(&ib)), o, n),
            _ => None,
        };
        Ok(page(
            &format!("text diff {path}"),
            html! {
                h2 { code { (path) } " from " (a) " to " (b) }
                @match &diff {
                    Some(d) if d.is_empty() => p { "the same text" },
                    Some(d) => pre #textdiff { (d) },
                    None => p { "no text diff: one side is missing, not text, larger than 64 KiB, or in an archive" },
                }
                p.small { a href=(format!("/diff?a={}&b={}", enc(&a), enc(&b))) { "back to the diff" } }
            },
        )
        .into_string())
    })
    .await;
    respond(page)
}

fn diff_markup(a: &str, b: &str, by_dir: &BTreeMap<String, Vec<Changed>>, n: usize) -> Markup {
    page(
        &format!("diff {a} {b}"),
        html! {
                h2 { "From " (a) " to " (b) }
                p.small { (n) " changes: + added, - removed, M modified, T type changed, U metadata only. "
                    @if n >= DIFF_LIMIT { "Only the first " (DIFF_LIMIT) " are listed; " code { "snap-restore diff " (a) " " (b) } " lists them all. " }
                    a href="/" { "back to the timeline" } }
                p.small { "The same from a shell: " code { "snap-restore diff " (a) " " (b) } }
                @for (dir, items) in by_dir {
                    details.dir open[by_dir.len() < 50] {
                        summary { (if dir.is_empty() { "/" } else { dir.as_str() }) " · " (items.len()) }
                        @for c in items {
                            @let full = if dir.is_empty() { c.name.clone() } else { format!("{dir}/{}", c.name) };
                            div.small.change {
                                code { (c.mark) } " " (c.name) " "
                                @if !c.attrs.is_empty() { span.attrs { "(" (c.attrs.join("; ")) ") " } }
                                a href=(format!("/history?set={}&path={}", enc(set_of(b)), enc(&full))) { "history" }
                                @if c.text {
                                    " " a.textdiff href=(format!("/text?a={}&b={}&path={}", enc(a), enc(b), enc(&full))) { "text diff" }
                                }
                            }
                        }
                    }
                }
        },
    )
}
