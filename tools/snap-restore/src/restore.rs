//! `snap-restore restore`: a dry run's plan, a disk snapshot's image, or
//! files from a snapshot, an archive or a tar (the work is snap-read's
//! `restore`), with the `restored` record on stdout.

use std::path::Path;

use snap_read::restore::{Request, run};
use snap_read::{attrs, disk, preview};
use snap_shared::error::{Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;

use crate::cli::{At, decryption};

/// What `snap-restore restore` was asked, from its flags.
pub struct Asked<'a> {
    pub name: &'a str,
    pub to: &'a Path,
    pub paths: &'a [String],
    pub overwrite: bool,
    pub archive: bool,
    pub dry_run: bool,
    pub policy: attrs::Policy,
    pub numeric_owner: bool,
}

/// `snap-restore restore`: a dry run's plan, a disk snapshot's image, or
/// files from a snapshot, an archive or a tar, with the `restored` record.
pub fn command(at: &At, asked: &Asked, stdout: impl std::io::Write) -> Result<Exit> {
    let (source, g, trust, report) = (at.source, at.g, at.trust, at.report);
    let dec = decryption(g)?;
    if asked.dry_run {
        let item = source.resolve(asked.name, asked.archive)?;
        trust.check_named(&item, report)?;
        let plan = preview::preview(
            &item,
            asked.paths,
            asked.to,
            asked.overwrite,
            &dec,
            usize::MAX,
        )?;
        return preview::print(&plan, asked.to, report);
    }
    if let Some((disk, snap)) = disk::parse_name(asked.name) {
        let rec = disk::restore(source, disk, snap, asked.to, (&dec, trust), report)?;
        snap_shared::jsonl::RecordWriter::new(stdout)
            .write(&snap_shared::record::Record::Restored(rec))?;
        return Ok(Exit::Ok);
    }
    let req = Request {
        name: asked.name,
        to: asked.to,
        paths: asked.paths,
        overwrite: asked.overwrite,
        archive: asked.archive,
        trust,
        policy: asked.policy,
        numeric_owner: asked.numeric_owner,
    };
    let (exit, rec) = run(source, &req, &dec, report, None)?;
    RecordWriter::new(stdout).write(&Record::Restored(rec))?;
    Ok(exit)
}
