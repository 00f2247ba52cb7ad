//! `snap-restore list`: what a store, a folder or a destination holds,
//! snapshots and archives by set, then disk snapshots; with `--host`, one
//! machine's. Damaged or missing records are named, and make the exit 65.

use std::io::Write;

use snap_cli::Reporter;
use snap_read::source::Source;
use snap_read::{disk, view};
use snap_shared::error::{Exit, Result};

/// Lists `source` (only `set`, only `host`'s), as a table or JSON Lines.
pub fn run(
    source: &Source,
    set: Option<&str>,
    host: Option<&str>,
    json: bool,
    report: &Reporter,
    stdout: &mut impl Write,
) -> Result<Exit> {
    let listing = source.listing()?;
    for e in listing
        .damaged
        .iter()
        .map(|(_, _, _, e)| e)
        .chain(&listing.missing)
    {
        report.failed(e);
    }
    let damaged = listing.damaged.len() + listing.missing.len();
    let mut items = listing.items;
    if let Some(s) = set {
        items.retain(|i| i.set_and_id().is_some_and(|(x, _)| x == s));
    }
    let mut disks = match set {
        Some(_) => Vec::new(),
        None => disk::records(source)?,
    };
    if let Some(h) = host {
        items.retain(|i| view::host_of(i).as_deref() == Some(h));
        disks.retain(|d| disk::disk_host(d).as_deref() == Some(h));
    }
    if items.is_empty() && disks.is_empty() {
        let from = host.as_ref().map(|h| format!(" from host {h}"));
        report.note(&format!(
            "nothing{} in {}",
            from.unwrap_or_default(),
            source.show()
        ));
    }
    view::list(&items, json, stdout)?;
    if json {
        for r in disks {
            if !view::emit(
                stdout,
                &serde_json::to_string(&snap_shared::record::Record::DiskSnapshot(r))
                    .unwrap_or_default(),
            )? {
                break;
            }
        }
    } else if !disks.is_empty() {
        if !items.is_empty() {
            view::emit(stdout, "")?;
        }
        for line in disk::table(&disks) {
            if !view::emit(stdout, line.trim_end())? {
                break;
            }
        }
    }
    Ok(match damaged {
        0 => Exit::Ok,
        _ => Exit::Data,
    })
}
