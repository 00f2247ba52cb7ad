//! The query commands' output: `list`, `show` and `diff`, as text for people
//! (on stdout: the listing is what was asked for) or as JSON lines with `--json`.

use std::io::Write;

use serde_json::{Value, json};

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::Entry;
use snap_shared::record::{Record, SCHEMA};
use snap_shared::size::human_bytes;

use crate::chain::chain_of;
use crate::indexes::open_index;
use crate::loc::Loc;
use crate::source::Item;

fn out_err(e: std::io::Error) -> Error {
    Error::io_ctx("stdout", e).with_exit(Exit::Io)
}

/// Writes a line; a closed stdout (`| head`) ends the output quietly.
pub fn emit(out: &mut impl Write, line: &str) -> Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(out_err(e)),
    }
}

/// The record of an item as JSON (foreign archives have none).
pub fn record_json(item: &Item) -> Value {
    match item {
        Item::Snapshot { rec, .. } => {
            serde_json::to_value(Record::Snapshot((**rec).clone())).unwrap_or(Value::Null)
        }
        Item::Archive { rec, .. } => {
            serde_json::to_value(Record::Archive((**rec).clone())).unwrap_or(Value::Null)
        }
        Item::Foreign { path } => json!({"path": path.display().to_string()}),
    }
}

fn field(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// One line of `list`.
/// The machine that made an item, as its record says.
pub fn host_of(item: &Item) -> Option<String> {
    snap_shared::record_host(&record_json(item)).map(str::to_string)
}

/// The archives of a listing whose chain reaches a base the listing lacks,
/// as `(set, id)` with the first missing base: they cannot be restored.
fn broken_chains(items: &[Item]) -> std::collections::HashMap<(String, String), String> {
    use std::collections::HashMap;
    let bases: HashMap<(&str, &str), Option<&str>> = items
        .iter()
        .filter_map(|i| {
            let a = i.archive()?;
            Some(((a.set.as_str(), a.id.as_str()), a.base.as_deref()))
        })
        .collect();
    let mut broken = HashMap::new();
    for (&(set, id), &base) in &bases {
        let mut next = base;
        let mut steps = 0;
        while let Some(b) = next {
            match bases.get(&(set, b)) {
                Some(further) if steps < bases.len() => next = *further,
                _ => {
                    broken.insert((set.to_string(), id.to_string()), b.to_string());
                    break;
                }
            }
            steps += 1;
        }
    }
    broken
}

fn list_row(
    item: &Item,
    broken: &std::collections::HashMap<(String, String), String>,
) -> [String; 7] {
    let (set, id) = item.set_and_id().unwrap_or(("", ""));
    let v = record_json(item);
    let details = match item {
        Item::Snapshot { rec, .. } => {
            let mut d = format!("{} new", human_bytes(rec.new_bytes));
            if rec.errors > 0 {
                d.push_str(&format!(", {} errors", rec.errors));
            }
            d
        }
        Item::Archive { rec, .. } => {
            let mut d = format!("{} {}", rec.compression, human_bytes(rec.bytes));
            if let Some(e) = &rec.encryption {
                d.push_str(&format!(", {e}"));
            }
            if let Some(b) = &rec.base {
                d.push_str(&format!(", on {b}"));
            }
            if v.get("frames").is_some() {
                d.push_str(", seekable");
            }
            if let Some(away) = item.away() {
                d.push_str(&format!(", data at {}", away.places()));
            }
            if let Some(gone) = broken.get(&(rec.set.clone(), rec.id.clone())) {
                d.push_str(&format!(
                    ", BROKEN: its base {gone} is gone; it cannot be restored"
                ));
            }
            d
        }
        Item::Foreign { .. } => String::new(),
    };
    let bytes = match item {
        Item::Snapshot { rec, .. } => rec.bytes,
        _ => field(&v, "snapshot_bytes"),
    };
    [
        set.into(),
        id.into(),
        host_of(item).unwrap_or_default(),
        item.kind().into(),
        field(&v, "files").to_string(),
        human_bytes(bytes),
        details,
    ]
}

pub fn list(items: &[Item], as_json: bool, out: &mut impl Write) -> Result<()> {
    // Nothing to list prints nothing (the caller says so on stderr), not a lone header.
    if as_json || items.is_empty() {
        for item in items {
            if !emit(out, &record_json(item).to_string())? {
                break;
            }
        }
        return Ok(());
    }
    let broken = broken_chains(items);
    let header = ["SET", "ID", "HOST", "KIND", "FILES", "SIZE", "DETAILS"].map(String::from);
    let rows: Vec<[String; 7]> = std::iter::once(header)
        .chain(items.iter().map(|i| list_row(i, &broken)))
        .collect();
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 6 {
                line.push_str(cell);
            } else if c == 4 || c == 5 {
                line.push_str(&format!("{cell:>w$}  ", w = widths[c]));
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        if !emit(out, line.trim_end())? {
            break;
        }
    }
    Ok(())
}

pub fn show(item: &Item, as_json: bool, out: &mut impl Write) -> Result<()> {
    if as_json {
        emit(out, &record_json(item).to_string())?;
        return Ok(());
    }
    let v = record_json(item);
    let mut lines = vec![format!("{} {}", item.kind(), item.name())];
    let mut put = |k: &str, val: String| lines.push(format!("  {k:<12} {val}"));
    let pinned = match item {
        Item::Snapshot { rec, json } => {
            crate::annotate::read_pin(&Loc::Path(json.clone()), &rec.id)
        }
        Item::Archive { rec, json, .. } => crate::annotate::read_pin(json, &rec.id),
        Item::Foreign { .. } => None,
    };
    if let Some(p) = pinned {
        put("pinned", p.describe());
    }
    match item {
        Item::Snapshot { rec, .. } => {
            put("created", rec.created.to_rfc3339());
            put("host", rec.host.clone());
            put("sources", rec.sources.join(", "));
            put("files", format!("{} ({} new)", rec.files, rec.new_files));
            put(
                "size",
                format!(
                    "{} ({} copied, the rest hard-linked)",
                    human_bytes(rec.bytes),
                    human_bytes(rec.new_bytes)
                ),
            );
            put(
                "parent",
                rec.parent.clone().unwrap_or_else(|| "none".into()),
            );
            put("errors", rec.errors.to_string());
            if !rec.tags.is_empty() {
                put("tags", rec.tags.join(", "));
            }
            if let Some(d) = &rec.description {
                put("description", d.clone());
            }
        }
        Item::Archive { rec, .. } => {
            let tar = field(&v, "tar_bytes");
            put("snapshot", rec.source.clone());
            put(
                "files",
                format!(
                    "{} ({} packed in this archive)",
                    field(&v, "files"),
                    field(&v, "packed_files")
                ),
            );
            put(
                "size",
                format!(
                    "{} of files, {} tar",
                    human_bytes(field(&v, "packed_bytes")),
                    human_bytes(tar)
                ),
            );
            let ratio = if rec.bytes > 0 {
                tar as f64 / rec.bytes as f64
            } else {
                0.0
            };
            put(
                "archive",
                format!(
                    "{} ({}, ratio {ratio:.2})",
                    human_bytes(rec.bytes),
                    rec.compression
                ),
            );
            put(
                "encryption",
                rec.encryption.clone().unwrap_or_else(|| "none".into()),
            );
            put(
                "seekable",
                match v.get("frames").and_then(Value::as_u64) {
                    Some(n) => format!("yes: {n} zstd frames and a seek table"),
                    None => "no: one stream, read whole".into(),
                },
            );
            let chain: Vec<String> = match chain_of(item) {
                Ok(c) => c
                    .iter()
                    .filter_map(|i| i.set_and_id().map(|(_, id)| id.to_string()))
                    .collect(),
                Err(e) => vec![format!("broken: {}", e.cause)],
            };
            put("chain", chain.join(" -> "));
            put("sha256", rec.sha256.clone());
            put("path", item.data().show());
            if let Some(away) = item.away() {
                put(
                    "data",
                    format!(
                        "at {} since {} (retention.keep_archives dropped it here)",
                        away.places(),
                        away.since.format("%Y-%m-%d")
                    ),
                );
            }
            if let Some(t) = v.get("tags").and_then(Value::as_array) {
                let t: Vec<&str> = t.iter().filter_map(Value::as_str).collect();
                put("tags", t.join(", "));
            }
            if let Some(d) = v.get("description").and_then(Value::as_str) {
                put("description", d.to_string());
            }
        }
        Item::Foreign { path } => {
            put("path", path.display().to_string());
            put(
                "note",
                "not made by snap: `snap-restore verify` reads it, `restore` extracts it".into(),
            );
        }
    }
    for line in lines {
        if !emit(out, &line)? {
            break;
        }
    }
    Ok(())
}

/// Differences between two snapshots or archives, from their indexes, in one merge pass.
pub fn diff(a: &Item, b: &Item, dec: &Decrypt, as_json: bool, out: &mut impl Write) -> Result<()> {
    let mut counts = snap_shared::index::ChangeCounts::default();
    let mut open = true;
    each_changed_entry(a, b, dec, |mark, old, new| {
        counts.add(mark);
        let path = &new.or(old).expect("a change has an entry").path;
        let shown = String::from_utf8_lossy(path);
        // Attributes and ACLs are named: a `U` of them alone says nothing else.
        let attrs: Vec<String> = match (old, new) {
            (Some(x), Some(y)) => attribute_changes(x, y)
                .into_iter()
                .filter(|c| c.starts_with("acl ") || c.starts_with("xattrs "))
                .collect(),
            _ => Vec::new(),
        };
        let line = match as_json {
            true => {
                let mut v =
                    json!({"schema": SCHEMA, "kind": "change", "change": mark, "path": shown});
                if !attrs.is_empty() {
                    v["attributes"] = json!(attrs);
                }
                v.to_string()
            }
            false if attrs.is_empty() => format!("{mark}    {shown}"),
            false => format!("{mark}    {shown}  ({})", attrs.join("; ")),
        };
        if open {
            open = emit(out, &line)?;
        }
        Ok(open)
    })?;
    if !as_json && open {
        let c = counts;
        emit(out, "")?;
        emit(
            out,
            &format!(
                "{} added, {} removed, {} modified, {} changed type, {} metadata only",
                c.added, c.removed, c.modified, c.retyped, c.metadata
            ),
        )?;
    }
    Ok(())
}

/// The entry of `path` in an item's index, reading only up to it (the index is sorted).
pub fn find_entry(item: &Item, path: &[u8], dec: &Decrypt) -> Result<Option<Entry>> {
    let Some(loc) = item.index() else {
        return Ok(None);
    };
    crate::indexes::Cursor::new(open_index(&loc, dec)?)?.seek(path, |_| {})
}

/// Walks two indexes in one merge pass and calls `seen` with each change
/// (restic's marks) and its path, in path order, until it returns false.
pub fn each_change(
    a: &Item,
    b: &Item,
    dec: &Decrypt,
    mut seen: impl FnMut(&'static str, &[u8]) -> Result<bool>,
) -> Result<()> {
    each_changed_entry(a, b, dec, |mark, old, new| {
        let path = new.or(old).map_or(&[][..], |e| &e.path[..]);
        seen(mark, path)
    })
}

/// [`each_change`] with both entries: the old one (none for `+`) and the new one (none for `-`).
pub fn each_changed_entry(
    a: &Item,
    b: &Item,
    dec: &Decrypt,
    seen: impl FnMut(&'static str, Option<&Entry>, Option<&Entry>) -> Result<bool>,
) -> Result<()> {
    let index = |i: &Item| {
        i.index().ok_or_else(|| {
            Error::usage(i.name(), "has no index to compare")
                .with_hint("import it first: snap-restore import PATH")
        })
    };
    let (ra, rb) = (open_index(&index(a)?, dec)?, open_index(&index(b)?, dec)?);
    snap_shared::index::each_change(ra, rb, seen)
}

/// What differs between two versions of an entry, one phrase per attribute
/// ("size 3 B → 5 B", "mode 644 → 600", …): the diff page's detail.
pub fn attribute_changes(a: &Entry, b: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    if a.kind != b.kind {
        out.push(format!("kind {:?} → {:?}", a.kind, b.kind).to_lowercase());
    }
    if a.size != b.size {
        out.push(format!(
            "size {} → {}",
            human_bytes(a.size),
            human_bytes(b.size)
        ));
    } else if a.sha256 != b.sha256 {
        out.push("content".into());
    }
    if a.target != b.target {
        let t = |e: &Entry| {
            String::from_utf8_lossy(e.target.as_deref().unwrap_or_default()).into_owned()
        };
        out.push(format!("target {} → {}", t(a), t(b)));
    }
    if a.link != b.link || a.rdev != b.rdev {
        out.push("link or device".into());
    }
    if a.mode != b.mode {
        out.push(format!("mode {:o} → {:o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        out.push(format!("owner {}:{} → {}:{}", a.uid, a.gid, b.uid, b.gid));
    }
    if a.mtime != b.mtime {
        let t = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns).format("%Y-%m-%d %H:%M:%S");
        out.push(format!("mtime {} → {}", t(a.mtime), t(b.mtime)));
    }
    // Attributes by name: ACLs apart, as `getfacl` shows them apart.
    let is_acl = |n: &String| n.starts_with("system.posix_acl_");
    let changed = |acl: bool| -> Vec<&String> {
        let names: std::collections::BTreeSet<&String> =
            a.xattrs.keys().chain(b.xattrs.keys()).collect();
        names
            .into_iter()
            .filter(|n| is_acl(n) == acl && a.xattrs.get(*n) != b.xattrs.get(*n))
            .collect()
    };
    let acl = changed(true);
    if !acl.is_empty() {
        let which: Vec<&str> = acl
            .iter()
            .map(|n| n.trim_start_matches("system.posix_acl_"))
            .collect();
        out.push(format!("acl {}", which.join(", ")));
    }
    let other = changed(false);
    if !other.is_empty() {
        let names: Vec<&str> = other.iter().map(|n| n.as_str()).collect();
        out.push(format!("xattrs {}", names.join(", ")));
    }
    out
}
