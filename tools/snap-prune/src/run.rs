//! A whole run of snap-prune: every policy read, every place opened and
//! checked before anything is removed anywhere, then each pruned in turn;
//! and the typed entry of one forget, for the timeline page.

use std::path::PathBuf;

use snap_cli::Reporter;
use snap_dest::{Held, settings};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::record::PrunedRecord;
use snap_shared::retention::policy::Policy;
use snap_shared::retention::rules;

use crate::cli::{Cli, no_rule};
use crate::forget::{check_forget_names, check_forgettable};
use crate::jobs::{Job, dest_job, store_job};
use crate::prune::{Sink, prune_job};

/// A whole run, handing each record to `out` (the CLI writes them on stdout).
pub fn run_to(cli: &Cli, report: &Reporter, out: &mut Sink) -> Result<Exit> {
    let loaded = LoadedConfig::load_optional(cli.config.as_deref())?;
    let configured = settings::from_config(loaded.as_ref())?;
    let retention = loaded.as_ref().and_then(|c| c.config.retention.as_ref());
    if let Some(c) = &loaded {
        let names: Vec<String> = configured.iter().map(|s| s.name.clone()).collect();
        rules::check(retention, &names).map_err(|e| c.blame(e))?;
    }
    if let Some(set) = &cli.set {
        snap_shared::id::check_name(set).map_err(|e| Error::usage("--set", e))?;
    }
    check_forget_names(&cli.forget)?;
    let flags = match cli.forget.is_empty() {
        true => cli.any_rule_flag().then(|| cli.policy()),
        // Forgetting by name needs no rule; the empty policy is never applied.
        false => Some(Policy::default()),
    };
    if cli.forget.is_empty() && flags.as_ref().is_some_and(Policy::is_empty) {
        return Err(no_rule(
            "the --keep-* flags keep nothing (every count is 0)",
        ));
    }
    let mut first_exit = None;
    let jobs: Vec<Result<Job>> = if cli.dests.is_empty() {
        vec![store_job(
            cli,
            report,
            loaded.as_ref(),
            flags.clone(),
            retention,
        )]
    } else {
        let rt = snap_dest::runtime()?;
        cli.dests
            .iter()
            .map(|arg| {
                let spec =
                    settings::resolve_arg(arg, &configured).map_err(|e| e.within("--dest"))?;
                dest_job(cli, report, &spec, flags.clone(), retention, &rt)
            })
            .collect()
    };
    // Every policy must be there before anything is removed anywhere.
    let mut ready = Vec::new();
    for job in jobs {
        match job {
            Err(e) if e.exit == Exit::Usage => return Err(e),
            job => ready.push(job),
        }
    }
    if !cli.forget.is_empty() {
        check_forgettable(cli, &ready)?;
    }
    for job in ready {
        let outcome = job.and_then(|mut job| {
            let pruned = prune_job(cli, &job, out, report);
            if let Some(Err(why)) = job.held.take().map(Held::release) {
                report.warn(&why);
            }
            pruned
        });
        match outcome {
            Err(e) => {
                report.failed(&e);
                first_exit.get_or_insert(e.exit);
            }
            // Records it could not read were kept and named: not all is well.
            Ok(unreadable) if unreadable > 0 => {
                first_exit.get_or_insert(Exit::Data);
            }
            Ok(_) => {}
        }
    }
    Ok(first_exit.unwrap_or(Exit::Ok))
}

/// One `--forget` run on a store, as the page asks for it.
#[derive(Debug, Clone, Default)]
pub struct Forget {
    pub store: PathBuf,
    pub config: Option<PathBuf>,
    /// `SET/ID` (a snapshot, or with `archive` an archive) or `disks/DISK/NAME`.
    pub names: Vec<String>,
    /// The names are the store's archives, not its snapshot trees.
    pub archive: bool,
    /// Only say what it would free.
    pub dry_run: bool,
}

/// Removes what `f` names, as `snap-prune --store S --forget NAME` does,
/// with the same checks and locks; returns the exit code the CLI would give
/// and the `pruned` records.
pub fn forget(f: &Forget, report: &Reporter) -> Result<(Exit, Vec<PrunedRecord>)> {
    let cli = Cli {
        store: Some(f.store.clone()),
        config: f.config.clone(),
        forget: f.names.clone(),
        archive: f.archive,
        dry_run: f.dry_run,
        ..Cli::default()
    };
    let mut records = Vec::new();
    let exit = run_to(&cli, report, &mut |r| {
        records.push(r);
        Ok(())
    })?;
    Ok((exit, records))
}
