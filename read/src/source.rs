//! Where snapshots and archives are, and which one a name means.
//!
//! Everything is found from the files themselves (the `.json` records), not
//! from the catalog, so `list` and `restore` work on another machine, on a
//! drive carried from elsewhere, with no catalog. A source is a store
//! (`sets/`, `archives/`), a destination-shaped folder (`<root>/<set>/<id>.json`,
//! or a single set's folder), or a bucket laid out the same way. Sidecars
//! are looked up beside each record, since the absolute paths inside a
//! record are those of the machine that made it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use snap_dest::Dest;
use snap_shared::archive::{self, ArchiveFiles};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::id::{cmp_ids, is_id};
use snap_shared::record::{ArchiveRecord, SnapshotRecord, check_schema};
use snap_shared::store::{Store, read_names};

use crate::datename::{self, DateName};
use crate::indexes::IndexLoc;
use crate::loc::Loc;

/// A snapshot or archive that can be shown, verified or restored.
#[derive(Debug, Clone)]
pub enum Item {
    /// A browsable tree snapshot in a store.
    Snapshot {
        rec: Box<SnapshotRecord>,
        json: PathBuf,
    },
    /// An archive made by snap-pack (or imported), here or at a destination;
    /// `raw` is the record's bytes as read, which its signature covers.
    Archive {
        rec: Box<ArchiveRecord>,
        json: Loc,
        raw: Arc<[u8]>,
    },
    /// A tar, tar.gz or tar.zst (maybe age-encrypted) that snap knows nothing of.
    Foreign { path: PathBuf },
}

impl Item {
    /// How messages and records name it: `set/id`, or the path.
    pub fn name(&self) -> String {
        match self {
            Item::Snapshot { rec, .. } => format!("{}/{}", rec.set, rec.id),
            Item::Archive { rec, .. } => format!("{}/{}", rec.set, rec.id),
            Item::Foreign { path } => path.display().to_string(),
        }
    }

    pub fn set_and_id(&self) -> Option<(&str, &str)> {
        match self {
            Item::Snapshot { rec, .. } => Some((&rec.set, &rec.id)),
            Item::Archive { rec, .. } => Some((&rec.set, &rec.id)),
            Item::Foreign { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Item::Snapshot { .. } => "snapshot",
            Item::Archive { .. } => "archive",
            Item::Foreign { .. } => "foreign",
        }
    }

    /// The bytes of file content a run goes through, when the record says:
    /// the whole snapshot's (what a restore writes, an incremental archive's
    /// chain included), or with `packed` what an archive itself holds (what
    /// its verify reads). The progress line's total.
    pub fn content_bytes(&self, packed: bool) -> Option<u64> {
        match self {
            Item::Snapshot { rec, .. } => Some(rec.bytes),
            Item::Archive { rec, .. } => {
                let key = if packed {
                    "packed_bytes"
                } else {
                    "snapshot_bytes"
                };
                rec.extra.get(key).and_then(|v| v.as_u64())
            }
            Item::Foreign { .. } => None,
        }
    }

    /// The per-file index, found beside the record, with the sha256 an
    /// archive's record gives for it.
    pub fn index(&self) -> Option<IndexLoc> {
        match self {
            Item::Snapshot { rec, json } => Some(IndexLoc {
                loc: Loc::Path(beside_id(json, &rec.id, ".index.zst")),
                sha256: None,
            }),
            Item::Archive { rec, json, .. } => Some(IndexLoc {
                loc: json.sibling(&file_name(&rec.index)),
                sha256: rec
                    .extra
                    .get("index_sha256")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            }),
            Item::Foreign { .. } => None,
        }
    }

    /// The tree of a snapshot, or the data file of an archive.
    pub fn data(&self) -> Loc {
        match self {
            Item::Snapshot { rec, json } => Loc::Path(beside_id(json, &rec.id, "")),
            Item::Archive { rec, json, .. } => json.sibling(&file_name(&rec.path)),
            Item::Foreign { path } => Loc::Path(path.clone()),
        }
    }

    /// An archive brought in by `import`: its tar is not in index order.
    pub fn is_imported(&self) -> bool {
        self.archive()
            .is_some_and(|a| a.extra.get("imported").and_then(|v| v.as_bool()) == Some(true))
    }

    /// Where the data of a store's archive went, when the store dropped it
    /// (`retention.keep_archives`); None for everything else.
    pub fn away(&self) -> Option<snap_shared::archive::Away> {
        match self {
            Item::Archive {
                rec,
                json: Loc::Path(p),
                ..
            } => snap_shared::archive::Away::read(&ArchiveFiles::new(
                snap_shared::fsutil::parent_of(p),
                &rec.id,
            )),
            _ => None,
        }
    }

    /// The archive record, for archives.
    pub fn archive(&self) -> Option<&ArchiveRecord> {
        match self {
            Item::Archive { rec, .. } => Some(rec),
            _ => None,
        }
    }
}

/// Whether NAME has the shape of a name: `SET/ID`, `SET/latest`, `ID`,
/// or a date (`SET/2025-04-01`, `SET/2025-04-01T10`, `2025-04-01`) (set
/// names as `check_name` allows them; ids as snap makes them).
pub fn is_name(name: &str) -> bool {
    let (set, id) = match name.split_once('/') {
        Some((set, id)) => (Some(set), id),
        None => (None, name),
    };
    set.is_none_or(|s| snap_shared::id::check_name(s).is_ok())
        && (is_id(id) || (id == "latest" && set.is_some()) || DateName::parse(id).is_some())
}

/// The last component of a recorded path (a record names files by the paths of the machine that made it).
pub(crate) fn file_name(recorded: &str) -> String {
    Path::new(recorded)
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn beside_id(json: &Path, id: &str, suffix: &str) -> PathBuf {
    snap_shared::fsutil::parent_of(json).join(format!("{id}{suffix}"))
}

/// Where to look.
#[derive(Debug, Clone)]
pub enum Source {
    Store(Store),
    /// A destination-shaped folder: `<root>/<set>/<id>.json`, or one set's folder.
    Folder(PathBuf),
    /// A bucket laid out like a folder destination.
    Bucket(Arc<Dest>),
}

impl Source {
    /// `--from`: a store or folder path, a destination URL (s3://, gs://,
    /// az://, sftp://, rclone:, uuid://, label://) or a configured destination's name; else the store.
    pub fn open(
        from: Option<&str>,
        store: Store,
        config: Option<&snap_shared::config::LoadedConfig>,
    ) -> Result<Source> {
        let Some(from) = from else {
            return Ok(Source::Store(store));
        };
        Ok(match snap_dest::open_for_reading(from, config)? {
            snap_dest::ReadRoot::Folder(p) => Source::new(Some(&p), store),
            snap_dest::ReadRoot::Bucket(d) => Source::Bucket(Arc::new(d)),
        })
    }

    /// `--from DIR`, or the store.
    pub fn new(from: Option<&Path>, store: Store) -> Source {
        match from {
            None => Source::Store(store),
            Some(dir) if is_store(dir) => Source::Store(Store::new(dir)),
            Some(dir) => Source::Folder(std::path::absolute(dir).unwrap_or(dir.to_path_buf())),
        }
    }

    /// How messages name it.
    pub fn show(&self) -> String {
        match self {
            Source::Store(s) => s.root.display().to_string(),
            Source::Folder(p) => p.display().to_string(),
            Source::Bucket(d) => d.url.clone(),
        }
    }

    /// Every snapshot and archive, by set, then id, snapshots before archives of the same id.
    pub fn items(&self) -> Result<Vec<Item>> {
        Ok(self.listing()?.items)
    }

    /// Every snapshot and archive, and the records that could not be read
    /// (cut short, garbled): those are stepped over, so one damaged record
    /// never hides the rest; the caller names them.
    pub fn listing(&self) -> Result<Listing> {
        let mut l = Listing::default();
        match self {
            Source::Store(store) => {
                for set in store.sets()? {
                    for id in store.snapshot_ids(&set)? {
                        let read = read_item(&store.record_path(&set, &id));
                        l.take(read, "snapshot", &set, &id)?;
                    }
                }
                archives_in_folders(&store.archives_dir(), &mut l)?;
            }
            Source::Folder(root) => {
                if !root.is_dir() {
                    return Err(Error::new(
                        Exit::NoInput,
                        format!("folder {}", root.display()),
                        "not found",
                    ));
                }
                archives_in(root, &mut l)?;
                archives_in_folders(root, &mut l)?;
            }
            Source::Bucket(dest) => archives_in_bucket(dest, &mut l)?,
        }
        l.items.sort_by(order);
        Ok(l)
    }

    /// The item a name means: a path (tree, `.json`, archive file), or
    /// `SET/ID`, `SET/latest`, `ID` among this source's items. With
    /// `archive`, names mean archives even where a snapshot has the same id.
    /// A name-shaped NAME is looked up as a name first, so that a folder of
    /// the same name in the working directory never stands in for it.
    pub fn resolve(&self, name: &str, archive: bool) -> Result<Item> {
        let path = Path::new(name);
        let local = !matches!(self, Source::Bucket(_));
        if is_name(name) {
            return match self.resolve_name(name, archive) {
                Err(e) if e.exit == Exit::NoInput && local && path.exists() => resolve_path(path),
                found => found,
            };
        }
        if local && path.exists() {
            return resolve_path(path);
        }
        self.resolve_name(name, archive)
    }

    /// The item `SET/ID`, `SET/latest` or `ID` means among this source's
    /// items; never a path.
    pub fn resolve_name(&self, name: &str, archive: bool) -> Result<Item> {
        self.resolve_in(&self.listing()?, name, archive)
    }

    /// [`Source::resolve_name`] among the items of a listing of this source
    /// made before (a server keeps one rather than listing a bucket again).
    pub fn resolve_in(&self, listing: &Listing, name: &str, archive: bool) -> Result<Item> {
        let (set, id) = match name.split_once('/') {
            Some((set, id)) => (Some(set), id),
            None => (None, name),
        };
        let wanted = |it: &Item| set.is_none_or(|s| it.set_and_id().is_some_and(|(x, _)| x == s));
        let mut items: Vec<Item> = listing
            .items
            .iter()
            .filter(|i| wanted(i))
            .cloned()
            .collect();
        let kind = if archive || !matches!(self, Source::Store(_)) {
            "archive"
        } else {
            "snapshot"
        };
        let any_snapshots = items.iter().any(|i| i.kind() == "snapshot");
        // Snapshots are preferred in a store; archives when there are no snapshots.
        let kind = if kind == "snapshot" && !any_snapshots {
            "archive"
        } else {
            kind
        };
        items.retain(|i| i.kind() == kind);
        if let Some(date) = DateName::parse(id) {
            return by_date(items, set, &date, kind, name, self);
        }
        let chosen: Vec<Item> = if id == "latest" {
            let Some(set) = set else {
                return Err(
                    Error::usage(format!("{kind} {name}"), "`latest` needs a set")
                        .with_hint("name it SET/latest"),
                );
            };
            items
                .into_iter()
                .rfind(|i| i.set_and_id().is_some_and(|(s, _)| s == set))
                .into_iter()
                .collect()
        } else {
            items
                .into_iter()
                .filter(|i| i.set_and_id().is_some_and(|(_, x)| x == id))
                .collect()
        };
        let newest = chosen.last().and_then(|i| i.set_and_id()).map(|(_, x)| x);
        let damage = listing.damage_for(kind, set, id, newest);
        if let Some(e) = damage.filter(|_| id == "latest" || chosen.is_empty()) {
            return Err(e);
        }
        match chosen.len() {
            1 => Ok(chosen.into_iter().next().expect("one item")),
            0 => Err(Error::new(
                Exit::NoInput,
                format!("{kind} {name}"),
                format!("not found in {}", self.show()),
            )
            .with_hint("list what is there with `snap-restore list`")),
            _ => {
                let sets: Vec<String> = chosen
                    .iter()
                    .filter_map(|i| i.set_and_id().map(|(s, _)| s.to_string()))
                    .collect();
                Err(Error::usage(
                    format!("{kind} {name}"),
                    format!("is in several sets ({})", sets.join(", ")),
                )
                .with_hint(format!("name it SET/{name}")))
            }
        }
    }
}

/// The newest item of the day or hour, in one set (`set`, or the only set
/// that has one that day); none is 66 naming the nearest of each set.
fn by_date(
    items: Vec<Item>,
    set: Option<&str>,
    date: &DateName,
    kind: &str,
    name: &str,
    source: &Source,
) -> Result<Item> {
    let mut newest: BTreeMap<String, Item> = BTreeMap::new();
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for item in items {
        let Some((s, id)) = item
            .set_and_id()
            .map(|(s, id)| (s.to_string(), id.to_string()))
        else {
            continue;
        };
        ids.entry(s.clone()).or_default().push(id.clone());
        if date.holds(&id) {
            // Items come in id order: the last one held is the newest.
            newest.insert(s, item);
        }
    }
    let what = format!("{kind} {name}");
    match newest.len() {
        1 => Ok(newest.into_values().next().expect("one item")),
        0 => {
            let near: Vec<String> = ids
                .iter()
                .map(|(s, list)| {
                    let list: Vec<&str> = list.iter().map(String::as_str).collect();
                    datename::nearest(s, &list, date)
                })
                .collect();
            let hint = match near.is_empty() {
                true => match set {
                    Some(s) => format!("{} has no {kind} of set {s}", source.show()),
                    None => format!("{} has no {kind}", source.show()),
                },
                false => near.join("; "),
            };
            Err(Error::new(
                Exit::NoInput,
                what,
                format!("no {kind} on {} in {}", date.describe(), source.show()),
            )
            .with_hint(hint))
        }
        _ => Err(Error::usage(
            what,
            format!(
                "several sets have one that day ({})",
                newest.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
        .with_hint(format!("name it SET/{name}"))),
    }
}

/// A source's items, and its records that could not be read.
#[derive(Default)]
pub struct Listing {
    pub items: Vec<Item>,
    /// `(kind, set, id, why)` of each damaged record.
    pub damaged: Vec<(&'static str, String, String, Error)>,
    /// Files an archive's record names that are not beside it (its data,
    /// its index, its `.sha256`): the archive is listed, and this names what
    /// is missing.
    pub missing: Vec<Error>,
}

impl Listing {
    /// Keeps a record read as an item, or as damaged when it is bad data;
    /// any other error (unreadable folder, unreachable bucket) is the run's.
    fn take(&mut self, read: Result<Item>, kind: &'static str, set: &str, id: &str) -> Result<()> {
        // A record under another id's name (copied or renamed) would show
        // twice, or stand in for what is gone: damage, named.
        let read = read.and_then(|item| match item.set_and_id() {
            Some((s, inside)) if inside != id => Err(Error::data(
                record_of(&item),
                format!("the record inside is {s}/{inside}'s: copied or renamed, not this name's"),
            )),
            _ => Ok(item),
        });
        match read {
            Ok(item) => self.items.push(item),
            Err(e) if e.exit == Exit::Data => self.damaged.push((kind, set.into(), id.into(), e)),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The damage that stands behind a name that did not resolve: a
    /// damaged record with that id, or, for `latest`, a damaged record of
    /// the set newer than its newest readable one.
    fn damage_for(
        &self,
        kind: &str,
        set: Option<&str>,
        id: &str,
        newest: Option<&str>,
    ) -> Option<Error> {
        self.damaged
            .iter()
            .filter(|(k, s, _, _)| *k == kind && set.is_none_or(|x| x == s))
            .find(|(_, _, d, _)| match id {
                "latest" => newest.is_none_or(|n| cmp_ids(d, n) == Ordering::Greater),
                id => d == id,
            })
            .map(|(_, _, _, e)| e.clone())
    }
}

/// Where an item's record is, for messages.
fn record_of(item: &Item) -> String {
    match item {
        Item::Snapshot { json, .. } => json.display().to_string(),
        Item::Archive { json, .. } => json.show(),
        Item::Foreign { path } => path.display().to_string(),
    }
}

/// Sorts by set, id, then snapshots first.
fn order(a: &Item, b: &Item) -> Ordering {
    let key = |i: &Item| {
        i.set_and_id()
            .map(|(s, id)| (s.to_string(), id.to_string()))
    };
    match (key(a), key(b)) {
        (Some((sa, ia)), Some((sb, ib))) => sa
            .cmp(&sb)
            .then(cmp_ids(&ia, &ib))
            .then(a.kind().cmp(b.kind()).reverse()),
        _ => Ordering::Equal,
    }
}

/// A store has `sets/` or `archives/` or a catalog.
fn is_store(dir: &Path) -> bool {
    ["sets", "archives", "catalog.sqlite"]
        .iter()
        .any(|n| dir.join(n).exists())
}

/// Archives of every set folder under `root`.
fn archives_in_folders(root: &Path, l: &mut Listing) -> Result<()> {
    for set in read_names(root)? {
        let dir = root.join(&set);
        if !set.starts_with('.') && dir.is_dir() {
            archives_in(&dir, l)?;
        }
    }
    Ok(())
}

/// The archives whose records are in `dir`.
fn archives_in(dir: &Path, l: &mut Listing) -> Result<()> {
    let set = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names: std::collections::HashSet<String> = read_names(dir)?.into_iter().collect();
    for id in archive::archive_ids(dir)? {
        let read = read_item(&ArchiveFiles::new(dir, &id).record())
            .map(|item| (item.kind() == "archive").then_some(item));
        match read {
            Ok(None) => {}
            Ok(Some(item)) => {
                l.missing
                    .extend(missing_beside(&item, |n| names.contains(n)));
                l.take(Ok(item), "archive", &set, &id)?
            }
            Err(e) => l.take(Err(e), "archive", &set, &id)?,
        }
    }
    Ok(())
}

/// What an archive's record names that is not beside it, as errors naming
/// each file (`present` answers for a file name in the record's folder).
fn missing_beside(item: &Item, present: impl Fn(&str) -> bool) -> Vec<Error> {
    let Item::Archive { rec, json, .. } = item else {
        return Vec::new();
    };
    // Data the store dropped (keep_archives) is at its destinations.
    let away = present(&format!("{}{}", rec.id, snap_shared::archive::AWAY));
    let wanted = [
        ("its data", file_name(&rec.path)),
        ("its index", file_name(&rec.index)),
        ("its .sha256", format!("{}.sha256", rec.id)),
    ];
    wanted
        .into_iter()
        .filter(|(what, _)| !(away && *what == "its data"))
        .filter(|(_, name)| !present(name))
        .map(|(what, name)| {
            Error::data(
                json.sibling(&name).show(),
                format!("missing ({what}, named by archive {}/{})", rec.set, rec.id),
            )
        })
        .collect()
}

/// The archives whose records are in a bucket: `<set>/<id>.json`, or `<id>.json` at its root.
fn archives_in_bucket(dest: &Arc<Dest>, l: &mut Listing) -> Result<()> {
    let listed = dest.list("")?;
    let keys: std::collections::HashSet<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    for (key, _) in &listed {
        let key = key.clone();
        let parts: Vec<&str> = key.split('/').collect();
        let is_record = parts.len() <= 2
            && parts
                .last()
                .and_then(|n| n.strip_suffix(".json"))
                .is_some_and(is_id);
        if is_record {
            let set = if parts.len() == 2 { parts[0] } else { "" }.to_string();
            let id = parts.last().and_then(|n| n.strip_suffix(".json"));
            let id = id.unwrap_or_default().to_string();
            let folder = match parts.len() {
                2 => format!("{set}/"),
                _ => String::new(),
            };
            match read_item_at(Loc::Object(dest.clone(), key)) {
                Ok(item) if item.kind() != "archive" => {}
                Ok(item) => {
                    let present = |n: &str| keys.contains(format!("{folder}{n}").as_str());
                    l.missing.extend(missing_beside(&item, present));
                    l.take(Ok(item), "archive", &set, &id)?
                }
                read => l.take(read, "archive", &set, &id)?,
            }
        }
    }
    Ok(())
}

/// Reads a `.json` record of a snapshot or an archive.
pub fn read_item(json: &Path) -> Result<Item> {
    let json = std::path::absolute(json).unwrap_or(json.to_path_buf());
    read_item_at(Loc::Path(json))
}

/// A record's kind: its `kind` field, or for records written before files
/// carried their kind, told by their fields (`snapshot`, `archive`).
pub fn kind_of(value: &Value) -> Option<&str> {
    match value.get("kind").and_then(Value::as_str) {
        Some(k) => Some(k),
        None if value.get("sources").is_some() => Some("snapshot"),
        None if value.get("compression").is_some() => Some("archive"),
        None => None,
    }
}

/// Reads a record wherever it is; snapshots are only ever local.
pub fn read_item_at(at: Loc) -> Result<Item> {
    let bad = |cause: String| Error::data(at.show(), cause);
    let text = at.read_all()?;
    let value: Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("not a JSON record: {e}")))?;
    let schema = value.get("schema").and_then(Value::as_str).unwrap_or("");
    check_schema(schema).map_err(bad)?;
    let kind = kind_of(&value).map(str::to_string);
    let mut value = value;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("kind");
    }
    match kind.as_deref() {
        Some("snapshot") => Ok(Item::Snapshot {
            rec: Box::new(
                serde_json::from_value(value)
                    .map_err(|e| bad(format!("bad snapshot record: {e}")))?,
            ),
            json: match &at {
                Loc::Path(p) => p.clone(),
                Loc::Object(..) => return Err(bad("a snapshot record at a destination".into())),
            },
        }),
        Some("archive") => Ok(Item::Archive {
            rec: Box::new(
                serde_json::from_value(value)
                    .map_err(|e| bad(format!("bad archive record: {e}")))?,
            ),
            json: at.clone(),
            raw: Arc::from(text),
        }),
        other => Err(bad(format!(
            "a {} record is neither a snapshot nor an archive",
            other.unwrap_or("kindless")
        ))),
    }
}

/// The suffixes an archive file may have, longest first.
const ARCHIVE_SUFFIXES: &[&str] = &[
    ".tar.zst.age",
    ".tar.gz.age",
    ".tgz.age",
    ".tar.age",
    ".tar.zst",
    ".tzst",
    ".tar.gz",
    ".tgz",
    ".tar",
];

/// What a path names: a snapshot tree, a record, an archive of ours, or a foreign archive.
fn resolve_path(path: &Path) -> Result<Item> {
    let abs = std::path::absolute(path).unwrap_or(path.to_path_buf());
    if abs.is_dir() {
        let mut json = abs.clone().into_os_string();
        json.push(".json");
        let json = PathBuf::from(json);
        if json.exists() {
            return read_item(&json);
        }
        return Err(Error::usage(
            format!("{}", path.display()),
            "is a folder but not a snapshot (no .json record beside it)",
        )
        .with_hint("give a snapshot (SET/ID), an archive file, or a store with --from"));
    }
    let name = abs
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    if name.ends_with(".json") {
        return read_item(&abs);
    }
    let stem = ARCHIVE_SUFFIXES.iter().find_map(|s| name.strip_suffix(s));
    if let Some(stem) = stem {
        let json = abs.with_file_name(format!("{stem}.json"));
        if let Ok(item @ Item::Archive { .. }) = read_item(&json)
            && item.data() == Loc::Path(abs.clone())
        {
            return Ok(item);
        }
    }
    Ok(Item::Foreign { path: abs })
}
