//! Removing one snapshot, archive or disk snapshot by name (`--forget`),
//! for the CLI and, typed, for the timeline page's delete: found, not
//! pinned, not a base that stays needed, or nothing is removed.

use snap_shared::error::{Error, Exit, Result};

use crate::cli::Cli;
use crate::jobs::Job;
use crate::plan;
use crate::target::Target;

/// `--forget` names are `SET/ID` or `disks/DISK/NAME`.
pub(crate) fn check_forget_names(names: &[String]) -> Result<()> {
    use snap_shared::id::check_name;
    for n in names {
        let parts: Vec<&str> = n.split('/').collect();
        let ok = match parts.as_slice() {
            ["disks", disk, snap] => check_name(disk).is_ok() && check_name(snap).is_ok(),
            [set, id] => check_name(set).is_ok() && snap_shared::id::is_id(id),
            _ => false,
        };
        if !ok {
            return Err(Error::usage(
                format!("--forget {n}"),
                "names SET/ID (a snapshot or archive) or disks/DISK/NAME",
            ));
        }
    }
    Ok(())
}

/// Whether a target holds what `--forget` names: trees or the store's
/// archives (by `--archive`), a destination's archives, disk snapshots.
pub(crate) fn forget_here(cli: &Cli, target: &Target) -> bool {
    match target {
        Target::Trees(_) => !cli.archive,
        Target::Archives { store: Some(_), .. } => cli.archive,
        Target::Archives { store: None, .. } | Target::Disks { .. } | Target::Images(..) => true,
    }
}

/// Before anything is removed: every name is found, none is pinned, none is
/// a base that stays needed.
pub(crate) fn check_forgettable(cli: &Cli, jobs: &[Result<Job>]) -> Result<()> {
    let mut found = std::collections::HashSet::new();
    for job in jobs.iter().flatten() {
        for target in job.targets.iter().filter(|t| forget_here(cli, t)) {
            for group in target.scan(cli.set.as_deref())? {
                plan::forget(target, &group, &cli.forget)?;
                found.extend(
                    group
                        .entries
                        .iter()
                        .map(|e| plan::name_of(target, &group, e)),
                );
            }
        }
    }
    match cli.forget.iter().find(|n| !found.contains(*n)) {
        // What could not be looked at (busy: another tool holds its lock;
        // unreachable) may hold it: that is the error, not "not found".
        Some(_) if jobs.iter().any(Result::is_err) => {
            let failed = jobs.iter().filter_map(|j| j.as_ref().err());
            Err(failed
                .min_by_key(|e| (e.exit != Exit::TempFail) as u8)
                .expect("one failed")
                .clone())
        }
        Some(n) => Err(Error::new(
            Exit::NoInput,
            format!("--forget {n}"),
            "not found; nothing was removed",
        )
        .with_hint(match cli.archive {
            true => "it names an archive (--archive); drop --archive for a snapshot tree",
            false => {
                "`snap-restore list` shows what is there; --archive names the store's archives"
            }
        })),
        None => Ok(()),
    }
}
