//! Annotations of what exists, in the store or at a destination: tags, a
//! description, and pins.
//!
//! `tag` and `describe` rewrite the record (atomically in a folder, in one
//! PUT at a bucket) and the store's catalog row; every other field of the
//! record is kept as it was. `pin` and `unpin`: a snapshot, archive or disk
//! snapshot that no retention rule may remove (Timeshift's protected
//! snapshots, Kopia's pins).
//!
//! A pin is a small file beside the record, `<id>.pin` (JSON: when, who,
//! why), in the store or at a destination. It is its own file, not a field
//! of the record, so that snap-prune sees pins in the listing it makes
//! anyway (no record read per snapshot at a bucket), and so that pinning
//! never rewrites the record another machine may be reading. snap-prune
//! keeps a pinned snapshot with the reason `pinned`.

use serde_json::{Value, json};

use snap_cli::Reporter;
use snap_shared::error::{Error, Exit, Result};

use crate::loc::Loc;
use crate::source::{Item, Source};
use crate::trust::{Signed, Trust};

/// The record NAME names (`SET/ID`, `disks/DISK/NAME`): where it is, its
/// id, and how messages call it.
fn record_of(source: &Source, name: &str, archive: bool) -> Result<(Loc, String, String)> {
    if let Some((disk, snap)) = crate::disk::parse_name(name) {
        let rec = crate::disk::loc(source, disk, &format!("{snap}.json"));
        if !rec.exists()? {
            return Err(Error::new(
                Exit::NoInput,
                format!("disk snapshot {name}"),
                format!("not found in {}", source.show()),
            ));
        }
        return Ok((rec, snap.to_string(), name.to_string()));
    }
    let item = source.resolve(name, archive)?;
    let json = match &item {
        Item::Snapshot { json, .. } => Loc::Path(json.clone()),
        Item::Archive { json, .. } => json.clone(),
        Item::Foreign { path } => {
            return Err(Error::usage(
                path.display().to_string(),
                "is not made by snap: `snap-restore import` it first",
            ));
        }
    };
    let (set, id) = item.set_and_id().unwrap_or(("", ""));
    Ok((json, id.to_string(), format!("{set}/{id}")))
}

/// The pin file of the snapshot NAME names.
pub fn pin_loc(source: &Source, name: &str, archive: bool) -> Result<(Loc, String)> {
    let (json, id, what) = record_of(source, name, archive)?;
    Ok((pin_beside(&json, &id), what))
}

/// The pin of the record at `json`.
fn pin_beside(json: &Loc, id: &str) -> Loc {
    json.sibling(&format!("{id}{}", snap_shared::store::PIN))
}

/// A tag: no commas (snap-prune's `--keep-tag a,b` splits on them), no spaces or controls.
fn check_tag(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && !t
            .chars()
            .any(|c| c == ',' || c.is_whitespace() || c.is_control());
    match ok {
        true => Ok(()),
        false => Err(Error::usage(
            format!("tag {t:?}"),
            "a tag is 1 to 128 characters without commas, spaces or control characters",
        )),
    }
}

/// Rewrites the record NAME names with `change` applied, and its catalog
/// row when it is the store's.
///
/// An archive's record (and a blocks disk snapshot's) is signed: it is
/// checked first, as a restore checks it, and signed again by this machine
/// once changed when an allowed key had signed it. One read with
/// `--allow-unsigned` is never signed by this machine: an unsigned one stays
/// unsigned, and one signed by a key not allowed loses the signature the
/// change would break.
fn edit(
    source: &Source,
    name: &str,
    archive: bool,
    trust: &Trust,
    change: impl FnOnce(&mut Value),
) -> Result<(String, Value)> {
    let (loc, _, what) = record_of(source, name, archive)?;
    let raw = loc.read_all()?;
    let mut v: Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::data(loc.show(), format!("not a record: {e}")))?;
    if !v.is_object() {
        return Err(Error::data(loc.show(), "not a record: not a JSON object"));
    }
    let signed = match signed_kind(&v) {
        Some(kind) => {
            let host = v
                .get("host")
                .or_else(|| v.get("created_by").and_then(|c| c.get("host")))
                .and_then(Value::as_str);
            trust.check_record(&format!("{kind} {what}"), &loc, &raw, host)?
        }
        None => Signed::NotSigned,
    };
    change(&mut v);
    let mut text = serde_json::to_vec(&v).map_err(|e| Error::internal("record", e))?;
    text.push(b'\n');
    let sig = loc.sibling(&format!("{}{}", loc.name(), snap_shared::sign::SIG_SUFFIX));
    match signed {
        // The new signature first: until the record follows, the old record
        // does not match it (65, named); `ssh-keygen -Y sign` mends that
        // (docs/reliability.md).
        Signed::By(_) => sig.write_small(trust.signer()?.sign(&text)?.as_bytes())?,
        // A key this machine does not allow is never vouched for by it: the
        // signature the change would break goes, and the record is unsigned.
        Signed::Foreign(_) => {
            sig.remove()?;
        }
        Signed::Unsigned(_) | Signed::NotSigned => {}
    }
    loc.write_small(&text)?;
    if let Source::Store(store) = source {
        update_catalog(store, &v);
    }
    Ok((what, v))
}

/// What the record VALUE is when it is of a kind that is signed: an
/// archive's, or a blocks disk snapshot's.
fn signed_kind(v: &Value) -> Option<&'static str> {
    let blocks = v.get("method").and_then(Value::as_str) == Some("blocks");
    match crate::source::kind_of(v) {
        Some("archive") => Some("archive"),
        // A disk snapshot's record file carries no kind.
        Some("disk-snapshot") | None if blocks && v.get("disk").is_some() => Some("disk snapshot"),
        _ => None,
    }
}

/// Puts the edited record in the store's catalog (which is only an index:
/// when that fails, it is rebuilt from the records on its next open).
fn update_catalog(store: &snap_shared::store::Store, v: &Value) {
    use snap_shared::catalog::Catalog;
    use snap_shared::record::Record;
    let done = serde_json::from_value::<Record>(v.clone())
        .map_err(|e| Error::data("record", e))
        .and_then(|rec| {
            let (c, _) = Catalog::open(store)?;
            match &rec {
                Record::Snapshot(r) => c.put_snapshot(r),
                Record::Archive(r) => c.put_archive(r),
                Record::DiskSnapshot(r) => c.put_disk_snapshot(r),
                _ => Ok(()),
            }
        });
    if done.is_err() {
        Catalog::invalidate(store);
    }
}

/// Adds and removes tags of NAME (`snap-prune --keep-tag` keeps by them).
pub fn tag(
    source: &Source,
    name: &str,
    archive: bool,
    (add, remove): (&[String], &[String]),
    trust: &Trust,
    report: &Reporter,
) -> Result<Exit> {
    if add.is_empty() && remove.is_empty() {
        return Err(Error::usage("tag", "give --add TAG or --remove TAG"));
    }
    for t in add.iter().chain(remove) {
        check_tag(t)?;
    }
    let (what, v) = edit(source, name, archive, trust, |v| {
        let mut tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap_or_default();
        tags.retain(|t| !remove.contains(t));
        for t in add {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        v["tags"] = json!(tags);
    })?;
    let tags: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap_or_default();
    report.note(&format!(
        "{what}: tags {}",
        match tags.is_empty() {
            true => "none".to_string(),
            false => tags.join(", "),
        }
    ));
    Ok(Exit::Ok)
}

/// Sets NAME's description, or clears it when `text` is None.
pub fn describe(
    source: &Source,
    name: &str,
    archive: bool,
    text: Option<&str>,
    trust: &Trust,
    report: &Reporter,
) -> Result<Exit> {
    if text.is_some_and(|t| t.len() > 4096 || t.chars().any(|c| c.is_control() && c != '\n')) {
        return Err(Error::usage(
            "description",
            "at most 4096 characters, no control characters",
        ));
    }
    let (what, _) = edit(source, name, archive, trust, |v| {
        v["description"] = json!(text);
    })?;
    report.note(&format!(
        "{what}: description {}",
        match text {
            Some(t) => format!("{t:?}"),
            None => "cleared".into(),
        }
    ));
    Ok(Exit::Ok)
}

/// Pins NAME, with an optional reason; pinning again replaces the reason.
pub fn pin(
    source: &Source,
    name: &str,
    archive: bool,
    reason: Option<&str>,
    report: &Reporter,
) -> Result<Exit> {
    let (loc, what) = pin_loc(source, name, archive)?;
    let body = json!({
        "pinned": chrono::Utc::now(),
        "reason": reason,
        "by": snap_shared::created_by("snap-restore", env!("CARGO_PKG_VERSION")),
    });
    let mut text = serde_json::to_vec(&body).map_err(|e| Error::internal("pin", e))?;
    text.push(b'\n');
    loc.write_small(&text)?;
    report.note(&format!(
        "{what} is pinned: snap-prune keeps it whatever the rules say"
    ));
    Ok(Exit::Ok)
}

/// Removes NAME's pin; a snapshot that was not pinned is no error.
pub fn unpin(source: &Source, name: &str, archive: bool, report: &Reporter) -> Result<Exit> {
    let (loc, what) = pin_loc(source, name, archive)?;
    match loc.remove()? {
        true => report.note(&format!("{what} is no longer pinned")),
        false => report.note(&format!("{what} was not pinned")),
    }
    Ok(Exit::Ok)
}

/// A pin as its file says: why (if a reason was given), and since when.
pub struct Pin {
    pub reason: Option<String>,
    pub since: String,
}

impl Pin {
    /// `why (since WHEN)`, or `since WHEN`.
    pub fn describe(&self) -> String {
        match &self.reason {
            Some(r) => format!("{r} (since {})", self.since),
            None => format!("since {}", self.since),
        }
    }
}

/// The pin of a record at `json`, if there is one.
pub fn read_pin(json: &Loc, id: &str) -> Option<Pin> {
    let bytes = pin_beside(json, id).read_all().ok()?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some(Pin {
        reason: v["reason"].as_str().map(str::to_string),
        since: v["pinned"].as_str().unwrap_or("").to_string(),
    })
}
