//! Search and history the slow way, for when the path index
//! (snap_shared::pathindex) cannot be used (a store this user may read but
//! not write, or an index SQLite refuses): every snapshot's index read, on
//! every core.

use std::collections::BTreeMap;

use snap_shared::catalog::Catalog;
use snap_shared::crypt::Decrypt;
use snap_shared::error::Result;
use snap_shared::index::Entry;
use snap_shared::pathindex::Found;
use snap_shared::store::Store;

use super::pages::tree_of;
use snap_read::source::Item;

/// The catalog's snapshots of a set (every set's, with `None`), newest first.
pub(super) fn snapshots(
    store: &Store,
    set: Option<&str>,
) -> Result<Vec<snap_shared::record::SnapshotRecord>> {
    let (catalog, _) = Catalog::open(store)?;
    let mut recs = catalog.snapshots(set)?;
    recs.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
    Ok(recs)
}

/// The snapshots of a set (every set's, with `None`), newest first, as items.
fn snapshots_newest_first(store: &Store, set: Option<&str>) -> Result<Vec<Item>> {
    Ok(snapshots(store, set)?
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
fn names_matching(item: &Item, query: &str, limit: usize) -> Result<Vec<String>> {
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
            if out.len() > limit {
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
fn versions(items: &[Item], path: &str) -> Result<Vec<Option<Entry>>> {
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
    let mut found: BTreeMap<usize, Option<Entry>> = read
        .into_iter()
        .zip(found)
        .map(|(i, e)| e.map(|e| (i, e)))
        .collect::<Result<_>>()?;
    let mut out: Vec<Option<Entry>> = Vec::with_capacity(items.len());
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
/// Paths whose file name contains `query` (lower case), across every
/// snapshot of every set, newest snapshots first until `limit` paths; by
/// set and path, and whether more matched.
pub(super) fn search(store: &Store, query: &str, limit: usize) -> Result<(Vec<Found>, bool)> {
    let items = snapshots_newest_first(store, None)?;
    let mut found: BTreeMap<(String, String), Found> = BTreeMap::new();
    let mut truncated = false;
    // A few snapshots at a time on every core, merged newest first, until
    // the limit: a common name stops the search early.
    'batches: for batch in items.chunks(8) {
        let hits = par_map(batch, |item| names_matching(item, query, limit));
        for (item, hits) in batch.iter().zip(hits) {
            let Some((set, id)) = item.set_and_id() else {
                continue;
            };
            for path in hits? {
                let key = (set.to_string(), path);
                if !found.contains_key(&key) && found.len() >= limit {
                    truncated = true;
                    break 'batches;
                }
                let f = found.entry(key.clone()).or_insert_with(|| Found {
                    set: key.0,
                    path: key.1.into_bytes(),
                    count: 0,
                    newest: id.to_string(),
                    oldest: id.to_string(),
                });
                f.count += 1;
                f.oldest = id.to_string();
            }
        }
    }
    Ok((found.into_values().collect(), truncated))
}

/// The entry of `path` in each snapshot of `set`, newest first, with the
/// snapshots' ids.
pub(super) fn history(
    store: &Store,
    set: &str,
    path: &str,
) -> Result<Vec<(String, Option<Entry>)>> {
    let items = snapshots_newest_first(store, Some(set))?;
    let entries = versions(&items, path)?;
    Ok(items
        .iter()
        .zip(entries)
        .map(|(item, e)| {
            let id = item.set_and_id().map(|(_, id)| id.to_string());
            (id.unwrap_or_default(), e)
        })
        .collect())
}
