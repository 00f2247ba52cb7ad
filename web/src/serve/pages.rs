//! The read-only pages beside the timeline: the diff of any two snapshots,
//! one path's history, and search by name across every snapshot.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use snap_shared::catalog::Catalog;
use snap_shared::crypt::Decrypt;
use snap_shared::error::Result;
use snap_shared::store::Store;

use super::held::held;
use super::http::{Shared, blocking, enc, page, refuse, respond, set_of};
use snap_read::source::{Item, Source};

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
fn tree_of(item: &snap_read::source::Item) -> Option<std::path::PathBuf> {
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

/// The snapshots of a set (every set's, with `None`), newest first, from the catalog.
fn snapshots_newest_first(store: &Store, set: Option<&str>) -> Result<Vec<Item>> {
    let (catalog, _) = Catalog::open(store)?;
    let mut recs = catalog.snapshots(set)?;
    recs.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    Ok(recs
        .into_iter()
        .map(|r| Item::Snapshot {
            json: store.record_path(&r.set, &r.id),
            rec: Box::new(r),
        })
        .collect())
}

/// `f` over `items` on every core (reading indexes is decompressing), results in order.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, U)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return mine;
                        };
                        mine.push((i, f(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, u)| u).collect()
}

/// The paths in a snapshot whose file name contains `query` (already lower case).
fn names_matching(item: &Item, query: &str) -> Result<Vec<String>> {
    let Some(loc) = item.index() else {
        return Ok(Vec::new());
    };
    let mut r = snap_read::indexes::open_index(&loc, &Decrypt::default())?;
    let mut out = Vec::new();
    // Most lines cannot hold the text: only those that might are parsed. An
    // ASCII text JSON never escapes is found in the raw line as it is (any
    // case); a name that is not UTF-8 is in `path_b64`, so those lines are
    // always parsed; any other text parses every line.
    let plain = query.is_ascii() && !query.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    let might = |line: &str| !plain || line.contains("_b64") || contains_ignoring_case(line, query);
    while let Some(e) = r.next_matching(might)? {
        let name = e.path.rsplit(|b| *b == b'/').next().unwrap_or(&e.path);
        if String::from_utf8_lossy(name).to_lowercase().contains(query) {
            out.push(e.display_path().into_owned());
            if out.len() > SEARCH_LIMIT {
                break;
            }
        }
    }
    Ok(out)
}

/// Whether `hay` contains `needle` (ASCII, already lower case), in any ASCII case.
fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty()
        || h.windows(n.len())
            .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
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
        let items = snapshots_newest_first(&store, None)?;
        let mut found: BTreeMap<(String, String), Found> = BTreeMap::new();
        let mut truncated = false;
        // A few snapshots at a time on every core, merged newest first, until
        // the limit: a common name stops the search early.
        'batches: for batch in items.chunks(8) {
            let hits = par_map(batch, |item| names_matching(item, &query));
            for (item, hits) in batch.iter().zip(hits) {
                let Some((set, id)) = item.set_and_id() else {
                    continue;
                };
                for path in hits? {
                    let key = (set.to_string(), path);
                    if !found.contains_key(&key) && found.len() >= SEARCH_LIMIT {
                        truncated = true;
                        break 'batches;
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
        let items = snapshots_newest_first(&store, Some(&set))?;
        let entries = versions(&items, &path)?;
        let rows: Vec<_> = items
            .iter()
            .zip(entries)
            .map(|(item, e)| {
                let id = item.set_and_id().map(|(_, id)| id.to_string());
                (id.unwrap_or_default(), e)
            })
            .collect();
        Ok(history_markup(&set, &path, &rows, changed_only).into_string())
    })
    .await;
    respond(page)
}

/// How a snapshot's tree holds a path: a regular file's inode, absent, or
/// unknown (no tree, not a file, a symlink on the way: read the index).
#[derive(Debug, Clone, Copy, PartialEq)]
enum InTree {
    File(u64, u64),
    Absent,
    Unknown,
}

fn in_tree(item: &Item, path: &str) -> InTree {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let Some(tree) = tree_of(item) else {
        return InTree::Unknown;
    };
    let Ok(root) = snap_shared::fsutil::open_root(&tree) else {
        return InTree::Unknown;
    };
    // Never through a symlink: the tree's links point at the machine's files.
    let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    match rustix::fs::openat2(
        &root,
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        how,
    ) {
        Ok(fd) => match rustix::fs::fstat(&fd) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::RegularFile =>
            {
                InTree::File(st.st_dev, st.st_ino)
            }
            _ => InTree::Unknown,
        },
        Err(rustix::io::Errno::NOENT) => InTree::Absent,
        Err(_) => InTree::Unknown,
    }
}

/// The entry of `path` in each snapshot (newest first). Snapshot trees
/// answer most of it with a `stat` each: snap-collect hard-links a file into
/// the next snapshot only when its index entry would be the same, so
/// snapshots that share the file's inode share its entry, and a path absent
/// from a tree is absent from its index. An index is read only for the
/// newest snapshot of each version, and where the tree cannot say.
fn versions(items: &[Item], path: &str) -> Result<Vec<Option<snap_shared::index::Entry>>> {
    let held = par_map(items, |i| in_tree(i, path));
    let newest_of_version = |i: usize| match held[i] {
        InTree::Unknown => true,
        InTree::Absent => false,
        InTree::File(..) => i == 0 || held[i - 1] != held[i],
    };
    let read: Vec<usize> = (0..items.len()).filter(|&i| newest_of_version(i)).collect();
    let found = par_map(&read, |&i| {
        snap_read::view::find_entry(&items[i], path.as_bytes(), &Decrypt::default())
    });
    let mut found: BTreeMap<usize, Option<snap_shared::index::Entry>> = read
        .into_iter()
        .zip(found)
        .map(|(i, e)| e.map(|e| (i, e)))
        .collect::<Result<_>>()?;
    let mut out: Vec<Option<snap_shared::index::Entry>> = Vec::with_capacity(items.len());
    for (i, h) in held.iter().enumerate() {
        let e = match h {
            InTree::Absent => None,
            _ => match found.remove(&i) {
                Some(e) => e,
                None => out.last().cloned().flatten(),
            },
        };
        out.push(e);
    }
    Ok(out)
}

/// What identifies a version of a file: kind, size, content, target, mode.
type Version<'a> = (
    snap_shared::index::EntryType,
    u64,
    Option<snap_shared::hash::Sha256Digest>,
    Option<&'a [u8]>,
    u32,
);

fn version(e: &Option<snap_shared::index::Entry>) -> Option<Version<'_>> {
    e.as_ref()
        .map(|e| (e.kind, e.size, e.sha256, e.target.as_deref(), e.mode))
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
