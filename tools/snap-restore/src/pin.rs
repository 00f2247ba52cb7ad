//! `pin` and `unpin`: a snapshot, archive or disk snapshot that no retention
//! rule may remove (Timeshift's protected snapshots, Kopia's pins).
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

/// The pin file of the snapshot NAME names (`SET/ID`, `disks/DISK/NAME`).
pub fn pin_loc(source: &Source, name: &str, archive: bool) -> Result<(Loc, String)> {
    if let Some((disk, snap)) = crate::disk::parse_name(name) {
        let rec = crate::disk::loc(source, disk, &format!("{snap}.json"));
        if !rec.exists()? {
            return Err(Error::new(
                Exit::NoInput,
                format!("disk snapshot {name}"),
                format!("not found in {}", source.show()),
            ));
        }
        return Ok((rec.sibling(&format!("{snap}.pin")), name.to_string()));
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
    Ok((json.sibling(&format!("{id}.pin")), format!("{set}/{id}")))
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

/// The pin of a record at `json`, if there is one: its reason (or "").
pub fn read_pin(json: &Loc, id: &str) -> Option<String> {
    let bytes = json.sibling(&format!("{id}.pin")).read_all().ok()?;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let when = v["pinned"].as_str().unwrap_or("");
    Some(match v["reason"].as_str() {
        Some(r) => format!("{r} (since {when})"),
        None => format!("since {when}"),
    })
}
