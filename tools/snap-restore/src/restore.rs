//! `snap-restore restore`: a dry run's plan, a disk snapshot's image, or
//! files from a snapshot, an archive or a tar (the work is snap-read's
//! `restore`), with the `restored` record on stdout.

use snap_read::restore::{Request, run};
use snap_read::{disk, preview};
use snap_shared::error::{Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;

use crate::cli::{At, decryption};

/// `snap-restore restore`: a dry run's plan, a disk snapshot's image, or
/// files from a snapshot, an archive or a tar, with the `restored` record.
pub fn command(at: &At, req: &Request, dry_run: bool, stdout: impl std::io::Write) -> Result<Exit> {
    let (source, g, trust, report) = (at.source, at.g, at.trust, at.report);
    let dec = decryption(g)?;
    if dry_run {
        let item = source.resolve(req.name, req.archive)?;
        trust.check_named(&item, report)?;
        let plan = preview::preview(&item, req.paths, req.to, req.overwrite, &dec, usize::MAX)?;
        return preview::print(&plan, req.to, report);
    }
    if let Some((disk, snap)) = disk::parse_name(req.name) {
        let rec = disk::restore(source, disk, snap, req.to, (&dec, trust), report)?;
        snap_shared::jsonl::RecordWriter::new(stdout)
            .write(&snap_shared::record::Record::Restored(rec))?;
        return Ok(Exit::Ok);
    }
    let (exit, rec) = run(source, req, &dec, report, None)?;
    RecordWriter::new(stdout).write(&Record::Restored(rec))?;
    Ok(exit)
}

/// The exact name (`SET/ID`) that `name` means among what `host` made at
/// `source` (`--host`): `config/latest` is that host's newest.
pub fn of_host(
    source: &snap_read::source::Source,
    name: &str,
    archive: bool,
    host: &str,
) -> Result<String> {
    let mut listing = source.listing()?;
    listing
        .items
        .retain(|i| snap_read::view::host_of(i).as_deref() == Some(host));
    let item = source
        .resolve_in(&listing, name, archive)
        .map_err(|e| e.within(format!("host {host}")))?;
    item.set_and_id()
        .map(|(s, id)| format!("{s}/{id}"))
        .ok_or_else(|| {
            snap_shared::error::Error::usage(name, "--host needs a snapshot's or archive's name")
        })
}
