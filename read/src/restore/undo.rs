//! The undo of a restore: before `--overwrite` replaces anything or
//! `--delete` removes anything, a snapshot of just that is taken into this
//! machine's store by snap-collect's library, as the set `pre-restore`
//! tagged `pre-restore` (snap-disk tags its undo of an image the same), and
//! the message names it with the command that puts it all back. The
//! command line and the page both take it.

use std::path::{Path, PathBuf};

use snap_cli::Reporter;
use snap_shared::config::LoadedConfig;
use snap_shared::error::Result;
use snap_shared::record::SnapshotRecord;
use snap_shared::store::Store;

/// The set, and the tag, of the snapshots a restore takes before it replaces or deletes.
pub const SET: &str = "pre-restore";

/// Snapshots `paths` (what restoring `what` into `to` is about to replace,
/// set again or delete) into `store`, with the config's free-space floor,
/// and says how to put them back (`--to ~` when a home folder is mapped
/// onto `to`, which is then `$HOME`). An error means nothing may be written.
pub fn keep(
    (store, config): (&Store, Option<&LoadedConfig>),
    what: &str,
    (to, mapped): (&Path, bool),
    paths: &[PathBuf],
    report: &Reporter,
) -> Result<SnapshotRecord> {
    let to = std::fs::canonicalize(to).unwrap_or_else(|_| to.to_path_buf());
    let floor = snap_collect::sources::floor(None, config)?;
    let rec = snap_collect::batch::snapshot_paths(
        store,
        SET,
        paths,
        &[SET.to_string()],
        &format!("before restoring {what} into {}", to.display()),
        floor,
        report,
    )
    .map_err(|e| e.within("the undo snapshot (--no-undo restores without one)"))?;
    let name = format!("{}/{}", rec.set, rec.id);
    let back = match mapped {
        true => "--to ~".to_string(),
        false => format!("--to / --path {}", to.display()),
    };
    report.note(&format!(
        "undo: {name} keeps the {} paths this restore replaces or deletes; to put them back: \
         snap-restore restore {name} {back} --overwrite",
        paths.len()
    ));
    Ok(rec)
}
