//! `snap-restore restore`: a dry run's plan, a disk snapshot's image, or
//! files from a snapshot, an archive or a tar (the work is snap-read's
//! `restore`), with the `restored` record on stdout.

use std::cell::RefCell;
use std::path::PathBuf;

use snap_read::homemap;
use snap_read::restore::{Request, run_item, undo};
use snap_read::{disk, preview};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;
use snap_shared::store::Store;

use crate::cli::{At, decryption};

/// How the command line runs a restore, beyond its request.
pub struct How<'a> {
    /// `--dry-run` / `--preview`.
    pub dry_run: bool,
    /// An undo snapshot before anything is replaced or deleted (not `--no-undo`).
    pub undo: bool,
    /// `--full-paths`: no home folder mapped onto `--to ~`.
    pub whole_paths: bool,
    /// Where the undo snapshot goes: this machine's store.
    pub store: &'a Store,
    pub config: Option<&'a LoadedConfig>,
}

/// `snap-restore restore`: a dry run's plan, a disk snapshot's image, or
/// files from a snapshot, an archive or a tar, with the `restored` record.
pub fn command(at: &At, mut req: Request, how: &How, stdout: impl std::io::Write) -> Result<Exit> {
    let (source, g, trust, report) = (at.source, at.g, at.trust, at.report);
    let dec = decryption(g)?;
    if !how.dry_run
        && let Some((disk, snap)) = disk::parse_name(req.name)
    {
        let rec = disk::restore(source, disk, snap, req.to, (&dec, trust), report)?;
        RecordWriter::new(stdout).write(&Record::Restored(rec))?;
        return Ok(Exit::Ok);
    }
    let item = source.resolve(req.name, req.archive)?;
    req.onto_home = !how.whole_paths && homemap::is_home(req.to);
    if how.dry_run {
        trust.check_named(&item, report)?;
        let home = req.home_map(&item, &dec, report)?;
        let plan = preview::preview(&item, &req.ask(home.as_ref()), &dec, usize::MAX)?;
        return preview::print(&plan, req.to, report);
    }
    let out = RefCell::new(RecordWriter::new(stdout));
    let to = req.to;
    let keep = |paths: &[PathBuf], mapped: bool| {
        let rec = undo::keep(
            (how.store, how.config),
            &item.name(),
            (to, mapped),
            paths,
            report,
        )?;
        let name = format!("{}/{}", rec.set, rec.id);
        out.borrow_mut().write(&Record::Snapshot(rec))?;
        Ok(name)
    };
    let keep: &snap_read::restore::Before = &keep;
    let req = Request {
        before: how.undo.then_some(keep),
        ..req
    };
    let (exit, rec) = run_item(source, &item, &req, &dec, report, None)?;
    out.borrow_mut().write(&Record::Restored(rec))?;
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
