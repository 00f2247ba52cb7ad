//! `snap-restore restore`: the request, where the files go (never inside the
//! store), the run over a snapshot, an archive's chain or a foreign tar, and
//! the `restored` record.

use std::path::{Path, PathBuf};

use serde_json::json;

use snap_cli::Reporter;
use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::record::{Extra, OutcomeRecord};
use snap_shared::size::human_bytes;

use super::restorer::{Restorer, Watch};
use crate::chain::chain_of;
use crate::homemap::HomeMap;
use crate::indexes::Select;
use crate::loc::Loc;
use crate::outcome::outcome;
use crate::preview::{Ask, Preview, preview};
use crate::source::Item;
use crate::target::Target;

/// What `restore` is asked for (the command line's, or the page's form).
pub struct Request<'a> {
    pub name: &'a str,
    pub to: &'a Path,
    pub paths: &'a [String],
    pub overwrite: bool,
    pub archive: bool,
    /// Whose archives are read.
    pub trust: &'a crate::trust::Trust,
    /// Which attributes are set (`--no-xattrs`, `--no-acls`).
    pub policy: crate::attrs::Policy,
    /// `--numeric-owner`: ids as recorded, not by name.
    pub numeric_owner: bool,
    /// `--delete`: what the restored folders hold that the snapshot lacks is
    /// removed after a restore without errors.
    pub delete: bool,
    /// `to` is this user's home (`--to ~`): the home folder the item was
    /// made in goes onto it, where every chosen path lies in that folder.
    pub onto_home: bool,
    /// Called with what is about to be replaced, given its attributes again
    /// or removed (and whether a home folder is mapped onto `to`), before
    /// anything is: it keeps them (the undo snapshot) and returns its name,
    /// or refuses, and nothing is written.
    pub before: Option<&'a Before<'a>>,
}

impl Request<'_> {
    /// The home folder the item was made in, put onto `to` when the request
    /// is `onto_home` and its chosen paths all lie in it
    /// ([`crate::homemap::for_restore`]: read after the records are believed).
    pub fn home_map(
        &self,
        item: &Item,
        dec: &Decrypt,
        report: &Reporter,
    ) -> Result<Option<HomeMap>> {
        match self.onto_home {
            true => crate::homemap::for_restore(item, self.paths, self.to, dec, report),
            false => Ok(None),
        }
    }

    /// The request as a dry run asks it.
    pub fn ask<'h>(&'h self, home: Option<&'h HomeMap>) -> Ask<'h> {
        Ask {
            paths: self.paths,
            to: self.to,
            overwrite: self.overwrite,
            delete: self.delete,
            home,
        }
    }
}

/// What keeps the paths a restore is about to change ([`Request::before`]).
pub type Before<'a> = dyn Fn(&[PathBuf], bool) -> Result<String> + 'a;

/// Restores a snapshot or archive by name: the `restore` command, and the
/// page's restore. `watch` is kept up to date with what is written.
pub fn run(
    source: &crate::source::Source,
    req: &Request,
    dec: &Decrypt,
    report: &Reporter,
    watch: Option<std::sync::Arc<Watch>>,
) -> Result<(Exit, OutcomeRecord)> {
    let item = source.resolve(req.name, req.archive)?;
    run_item(source, &item, req, dec, report, watch)
}

/// Restores `item` (resolved by the caller) as [`run`] does.
pub fn run_item(
    source: &crate::source::Source,
    item: &Item,
    req: &Request,
    dec: &Decrypt,
    report: &Reporter,
    watch: Option<std::sync::Arc<Watch>>,
) -> Result<(Exit, OutcomeRecord)> {
    if let crate::source::Source::Store(store) = source {
        refuse_inside_store(req.to, &store.root)?;
    }
    if let Some(real) = crate::preview::leads_elsewhere(req.to) {
        report.warn(&format!(
            "{}: a symlink on the way: the files go into {}",
            req.to.display(),
            real.display()
        ));
    }
    let chain = match item {
        Item::Archive { .. } => chain_of(item)?,
        _ => Vec::new(),
    };
    // Every record of the chain is believed before anything it names is read.
    let signed = req.trust.check_chain(&chain, report)?;
    let home = req.home_map(item, dec, report)?;
    let mut select = Select::new(req.paths)?;
    if let Some(index) = item.index().filter(|_| !item.is_imported()) {
        select.adopt_orphan_links(&index, dec)?;
    }
    let mut target = Target::open(req.to, req.overwrite)
        .map_err(|e| Error::io(req.to, e).with_exit(Exit::CantCreate))?;
    target.set_policy(req.policy);
    target.set_home(home.clone().map(std::sync::Arc::new));
    // Two restores into one folder would rename each other's files into
    // place; the second one waits for nothing and says who is there.
    let _lock = snap_shared::lock::FolderLock::acquire(&target.path, "restoring into")?;
    let (plan, undo) = before_writing(item, req, home.as_ref(), dec)?;
    let mut r = Restorer::new(target, &select, dec, report);
    r.owners = crate::owners::Owners::new(req.numeric_owner);
    r.watch = watch;
    r.label = item.name();
    if req.paths.is_empty() {
        r.total = item.content_bytes(false);
    }
    let restored = match item {
        Item::Foreign { path } => r.restore_tar(&Loc::Path(path.clone())),
        // An imported tar is in its own order, not its index's.
        _ if item.is_imported() => r.restore_tar(&item.data()),
        _ => r.restore_index(item, &chain),
    };
    // Files written and checked before a failure (a damaged archive
    // further on) are named too: they are whole.
    r.settle();
    restored?;
    let deleted = match &plan {
        Some(p) if req.delete => r.delete(&p.extra),
        _ => 0,
    };
    // The batches' flushes made the bytes durable; this one makes the
    // names and folder metadata given since durable too.
    snap_shared::fsutil::syncfs(&r.target.path).map_err(|e| Error::io(&r.target.path, e))?;
    let t = r.tally;
    report.note(&format!(
        "{} -> {}: {} files, {} written{}{}{}",
        item.name(),
        r.target.path.display(),
        t.files,
        human_bytes(t.bytes),
        match (t.already, t.repaired) {
            (0, _) => String::new(),
            (a, 0) => format!(", {a} already there"),
            (a, r) => format!(", {a} already there ({r} with their attributes set again)"),
        },
        match req.delete {
            true => format!(", {deleted} deleted"),
            false => String::new(),
        },
        if t.errors > 0 {
            format!(", {} errors", t.errors)
        } else {
            String::new()
        },
    ));
    let mut extra = Extra::new();
    extra.insert("source_kind".into(), json!(item.kind()));
    extra.insert("already".into(), json!(t.already));
    extra.insert("repaired".into(), json!(t.repaired));
    if req.delete {
        extra.insert("deleted".into(), json!(deleted));
    }
    if let Some(name) = undo {
        extra.insert("undo".into(), json!(name));
    }
    if let Some(h) = &home {
        extra.insert(
            "home".into(),
            json!({"from": String::from_utf8_lossy(&h.from), "onto": r.target.path}),
        );
    }
    if item.archive().is_some() {
        extra.insert("signed_by".into(), signed.json());
    }
    if chain.len() > 1 {
        extra.insert(
            "chain".into(),
            json!(
                chain
                    .iter()
                    .filter_map(|i| i.set_and_id().map(|(_, id)| id.to_string()))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let to = r.target.path.display().to_string();
    Ok((t.exit(), outcome(item, Some(to), &t, extra)))
}

/// Before anything is written: with `--overwrite` or `--delete`, what the
/// restore would change (the dry run's plan), kept by [`Request::before`].
/// Returns the plan and the name of what kept it.
fn before_writing(
    item: &Item,
    req: &Request,
    home: Option<&HomeMap>,
    dec: &Decrypt,
) -> Result<(Option<Preview>, Option<String>)> {
    // Nothing to keep and nothing to delete: no plan is needed.
    if !req.delete && (!req.overwrite || req.before.is_none()) {
        return Ok((None, None));
    }
    if item.index().is_none() && req.delete {
        return Err(Error::usage(
            item.name(),
            "--delete needs a snapshot or snap archive: its index says what the restored folders hold",
        ));
    }
    let ask = req.ask(home);
    let (plan, changes) = match item.index() {
        Some(_) => {
            let mut plan = preview(item, &ask, dec, 0)?;
            let changes = std::mem::take(&mut plan.changes);
            (Some(plan), changes)
        }
        None => (None, crate::preview::tar_changes(item, &ask, dec)?),
    };
    let undo = match req.before {
        Some(keep) if !changes.is_empty() => Some(keep(&changes, home.is_some())?),
        _ => None,
    };
    Ok((plan, undo))
}

/// Refuses a restore target inside the store (its snapshots, archives or
/// records would be overwritten or mixed with restored files), after
/// following symlinks as far as the path exists: exit 64.
pub fn refuse_inside_store(to: &Path, store: &Path) -> Result<()> {
    let store = std::fs::canonicalize(store).unwrap_or(store.to_path_buf());
    let to = std::path::absolute(to).unwrap_or(to.to_path_buf());
    if resolve_existing(&to).starts_with(&store) || to.starts_with(&store) {
        return Err(Error::usage(
            format!("restore to {}", to.display()),
            "is inside the store; restore somewhere else",
        ));
    }
    Ok(())
}

/// `p` with its longest existing prefix resolved (symlinks followed).
pub(crate) fn resolve_existing(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = p.to_path_buf();
    loop {
        if let Ok(real) = std::fs::canonicalize(&cur) {
            return rest
                .iter()
                .rev()
                .fold(real, |acc, c: &std::ffi::OsString| acc.join(c));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                cur = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}
