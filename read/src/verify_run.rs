//! The `verify` verb: each named snapshot, archive or disk snapshot, or with
//! no name everything the store or destination lists (as `restic check
//! --read-data`), each read back once; one `verified` record per item, each
//! logged for the timeline. The reading itself is verify.rs's.

use std::io::Write;

use serde_json::json;

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{Extra, OutcomeRecord, Record, SCHEMA};
use snap_shared::size::human_bytes;
use snap_shared::store::Store;

use crate::disk;
use crate::outcome::Tally;
use crate::outcome::outcome;
use crate::source::{Item, Source};
use crate::trust::Trust;
use crate::verified;
use crate::verify::Verifier;

/// Where the verifies happen: the store's log, and the place it names.
struct Log<'a> {
    store: &'a Store,
    place: &'a str,
}

/// Verifies NAMES (with `--archive`, archives of those names), or with no
/// NAME everything listed; the worst exit of all.
pub fn run(
    source: &Source,
    store: &Store,
    place: &str,
    (names, archive): (&[String], bool),
    (dec, trust): (&Decrypt, &Trust),
    report: &Reporter,
    stdout: impl Write,
) -> Result<Exit> {
    let log = Log { store, place };
    let mut out = RecordWriter::new(stdout);
    let mut worst = Exit::Ok;
    // One verifier for the run: what it read already is not read again.
    let mut v = Verifier::new(dec, trust, report);
    for name in names {
        let exit = match disk::parse_name(name) {
            Some((d, snap)) => verify_disk(
                source,
                (name, d, snap),
                (dec, trust),
                report,
                &log,
                &mut out,
            )?,
            None => {
                let item = source.resolve(name, archive)?;
                verify_item(&item, &mut v, &log, &mut out)?
            }
        };
        if exit != Exit::Ok {
            worst = exit;
        }
    }
    if names.is_empty() {
        let listing = source.listing()?;
        for (_, _, _, e) in &listing.damaged {
            report.failed(e);
            worst = Exit::Data;
        }
        for item in &listing.items {
            // What the store handed to its destinations is verified there.
            if let Some(away) = item.away() {
                report.note(&format!(
                    "{}: its data is at {} (retention.keep_archives); `verify --from {}` reads it there",
                    item.name(),
                    away.places(),
                    away.at.first().map_or("DEST", String::as_str)
                ));
                continue;
            }
            let exit = verify_item(item, &mut v, &log, &mut out)?;
            if exit != Exit::Ok {
                worst = exit;
            }
        }
    }
    Ok(worst)
}

/// Every block of a disk snapshot against its map, once its record is
/// believed; one that is not (or whose map is not its record's) fails with
/// its own exit code, and the others are still verified.
fn verify_disk(
    source: &Source,
    (name, d, snap): (&str, &str, &str),
    (dec, trust): (&Decrypt, &Trust),
    report: &Reporter,
    log: &Log,
    out: &mut RecordWriter<impl Write>,
) -> Result<Exit> {
    let (n, read, bad, signed) = match disk::verify(source, (d, snap), (dec, trust), report) {
        Ok(done) => done,
        Err(e) if matches!(e.exit, Exit::NoPerm | Exit::Data) => {
            report.failed(&e);
            return Ok(e.exit);
        }
        Err(e) => return Err(e),
    };
    for p in &bad {
        report.error(&format!("{name}: {p}"));
    }
    report.note(&format!(
        "{name}: {n} blocks, {} checked, {}",
        human_bytes(read),
        verdict(bad.len() as u64)
    ));
    let mut extra = Extra::new();
    extra.insert("signed_by".into(), signed.json());
    let rec = OutcomeRecord {
        schema: SCHEMA.into(),
        what: name.to_string(),
        to: None,
        files: n,
        bytes: read,
        errors: bad.len() as u64,
        extra,
    };
    log_verify(log, &rec, report);
    out.write(&Record::Verified(rec))?;
    Ok(if bad.is_empty() { Exit::Ok } else { Exit::Data })
}

/// Verifies one snapshot or archive (an archive with its chain), says how it
/// went, logs it for the timeline and writes its `verified` record. What V
/// read already in this run is not read again.
fn verify_item(
    item: &Item,
    v: &mut Verifier,
    log: &Log,
    out: &mut RecordWriter<impl Write>,
) -> Result<Exit> {
    let report = v.report;
    v.tally = Tally::default();
    let digest = v.verify_with_chain(item);
    // A file that cannot be read (gone, or an I/O error) fails this item,
    // with its own exit code; the others are still verified.
    let (digest, stopped) = match digest {
        Ok(digest) => (digest, None),
        // So does an archive whose record is not signed by an allowed key.
        Err(e) if matches!(e.exit, Exit::NoInput | Exit::Io | Exit::NoPerm) => {
            report.failed(&e);
            v.tally.errors += 1;
            (None, Some(e.exit))
        }
        Err(e) => return Err(e),
    };
    let t = v.tally;
    report.note(&format!(
        "{}: {} files, {} checked, {}",
        item.name(),
        t.files,
        human_bytes(t.bytes),
        verdict(t.errors)
    ));
    let mut extra = Extra::new();
    extra.insert("source_kind".into(), json!(item.kind()));
    if let Some(d) = digest {
        extra.insert("sha256".into(), json!(d.to_hex()));
    }
    if let Some(signed) = v.signed(&item.name()) {
        extra.insert("signed_by".into(), signed.json());
    }
    let rec = outcome(item, None, &t, extra);
    log_verify(log, &rec, report);
    out.write(&Record::Verified(rec))?;
    Ok(stopped.unwrap_or(t.exit()))
}

fn verdict(errors: u64) -> String {
    match errors {
        0 => "all good".to_string(),
        n => format!("{n} bad"),
    }
}

/// Adds a verify to the store's log, for the timeline; a failure to log is a warning.
fn log_verify(log: &Log, rec: &OutcomeRecord, report: &Reporter) {
    if let Err(e) = verified::append(log.store, rec, log.place, chrono::Utc::now()) {
        report.warn(&format!(
            "{e}; the verify is done but the timeline will not show it"
        ));
    }
}
