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
use crate::indexes::Select;
use crate::loc::Loc;
use crate::outcome::outcome;
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
}

/// Restores a snapshot or archive by name: the `restore` command, and the
/// page's restore. `watch` is kept up to date with what is written.
pub fn run(
    source: &crate::source::Source,
    req: &Request,
    dec: &Decrypt,
    report: &Reporter,
    watch: Option<std::sync::Arc<Watch>>,
) -> Result<(Exit, OutcomeRecord)> {
    if let crate::source::Source::Store(store) = source {
        refuse_inside_store(req.to, &store.root)?;
    }
    let item = source.resolve(req.name, req.archive)?;
    if let Some(real) = crate::preview::leads_elsewhere(req.to) {
        report.warn(&format!(
            "{}: a symlink on the way: the files go into {}",
            req.to.display(),
            real.display()
        ));
    }
    let chain = match &item {
        Item::Archive { .. } => chain_of(&item)?,
        _ => Vec::new(),
    };
    // Every record of the chain is believed before anything it names is read.
    let signed = req.trust.check_chain(&chain, report)?;
    let mut select = Select::new(req.paths)?;
    if let Some(index) = item.index().filter(|_| !item.is_imported()) {
        select.adopt_orphan_links(&index, dec)?;
    }
    let mut target = Target::open(req.to, req.overwrite)
        .map_err(|e| Error::io(req.to, e).with_exit(Exit::CantCreate))?;
    target.set_policy(req.policy);
    // Two restores into one folder would rename each other's files into
    // place; the second one waits for nothing and says who is there.
    let _lock = snap_shared::lock::FolderLock::acquire(&target.path, "restoring into")?;
    let mut r = Restorer::new(target, &select, dec, report);
    r.owners = crate::owners::Owners::new(req.numeric_owner);
    r.watch = watch;
    r.label = item.name();
    if req.paths.is_empty() {
        r.total = item.content_bytes(false);
    }
    let restored = match &item {
        Item::Foreign { path } => r.restore_tar(&Loc::Path(path.clone())),
        // An imported tar is in its own order, not its index's.
        _ if item.is_imported() => r.restore_tar(&item.data()),
        _ => r.restore_index(&item, &chain),
    };
    // Files written and checked before a failure (a damaged archive
    // further on) are named too: they are whole.
    r.settle();
    restored?;
    // The batches' flushes made the bytes durable; this one makes the
    // names and folder metadata given since durable too.
    snap_shared::fsutil::syncfs(&r.target.path).map_err(|e| Error::io(&r.target.path, e))?;
    let t = r.tally;
    report.note(&format!(
        "{} -> {}: {} files, {} written{}{}",
        item.name(),
        r.target.path.display(),
        t.files,
        human_bytes(t.bytes),
        match (t.already, t.repaired) {
            (0, _) => String::new(),
            (a, 0) => format!(", {a} already there"),
            (a, r) => format!(", {a} already there ({r} with their attributes set again)"),
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
    Ok((t.exit(), outcome(&item, Some(to), &t, extra)))
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
