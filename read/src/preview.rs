//! What a restore would do, before it does it (the page's dry run, as
//! Timeshift shows one): for each chosen entry of the snapshot's index,
//! whether the target lacks it (created), has it already (the same
//! content), or has something else there: other content, another kind, or
//! the same content with other attributes (mode, owner, mtime), each named.
//!
//! It only reads the target. A file of the same size is hashed to tell
//! "the same" from "other content", as the restore itself does. What the
//! target has in the folders the restore writes and the snapshot lacks is
//! listed as kept: a restore leaves it as it is.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::{Entry, EntryType};

use crate::homemap::{HomeMap, Place, leads_to_sources, sources_of};
use crate::indexes::{Select, open_index};
use crate::source::Item;
use crate::target::hash_file;

/// What a restore does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Not in the target: made.
    Create,
    /// In the target with this content (and for folders, as a folder): left.
    Same,
    /// The same content, other attributes: the restore sets them again.
    Attributes,
    /// Other content or another kind: replaced with --overwrite, else refused.
    Replace,
    /// Other content or another kind, without --overwrite: not restored (an error).
    Conflict,
    /// In a folder the restore writes, not in the snapshot: left as it is.
    Keep,
    /// In a folder the restore writes, not in the snapshot, and `--delete`: removed.
    Delete,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Same => "same",
            Action::Attributes => "set attributes",
            Action::Replace => "replace",
            Action::Conflict => "conflict",
            Action::Keep => "keep",
            Action::Delete => "delete",
        }
    }
}

/// One listed entry.
#[derive(Debug, Clone)]
pub struct Row {
    pub path: String,
    pub action: Action,
    pub size: u64,
    /// For `Attributes`, `Replace` and `Conflict`: what differs (content, kind, mode, …).
    pub differs: Vec<&'static str>,
}

/// The whole dry run.
#[derive(Debug, Default)]
pub struct Preview {
    /// The first `limit` entries that change something (not `Same`).
    pub rows: Vec<Row>,
    pub counts: BTreeMap<Action, u64>,
    /// Files the restore would write and their bytes (what progress counts).
    pub write_files: u64,
    pub write_bytes: u64,
    /// Where the restore would replace something, set attributes again, or
    /// (with `--delete`) remove: what an undo snapshot keeps.
    pub changes: Vec<PathBuf>,
    /// What the restored folders hold that the snapshot lacks, by their
    /// path in the item (kept, or with `--delete` removed).
    pub extra: Vec<Vec<u8>>,
}

/// What a restore is asked to do, as the dry run needs it.
pub struct Ask<'a> {
    pub paths: &'a [String],
    pub to: &'a Path,
    pub overwrite: bool,
    /// `--delete`: what the restored folders hold that the snapshot lacks goes.
    pub delete: bool,
    /// The item's home folder, mapped onto `to`.
    pub home: Option<&'a HomeMap>,
}

impl Ask<'_> {
    /// Where entry `rel` of the item is in the target: `None` for the mapped
    /// home folder and those above it, which a restore leaves as they are.
    pub fn on_disk(&self, rel: &[u8]) -> Option<PathBuf> {
        let rel = match self.home.map(|h| h.place(rel)) {
            Some(Place::AtOrAbove) => return None,
            Some(Place::Under(r)) => r,
            _ => rel,
        };
        Some(self.to.join(std::ffi::OsStr::from_bytes(rel)))
    }

    /// How a row names entry `rel`: its path under the target.
    fn shown(&self, rel: &[u8]) -> String {
        match self.home.map(|h| h.place(rel)) {
            Some(Place::Under(r)) => String::from_utf8_lossy(r).into_owned(),
            _ => String::from_utf8_lossy(rel).into_owned(),
        }
    }
}

impl Preview {
    /// Entries that change something beyond the listed rows.
    pub fn unlisted(&self) -> u64 {
        let changing: u64 = self
            .counts
            .iter()
            .filter(|(a, _)| **a != Action::Same)
            .map(|(_, n)| n)
            .sum();
        changing - self.rows.len() as u64
    }
}

/// The dry run of restoring `item` (its `paths`, or all) into `to`.
pub fn preview(item: &Item, ask: &Ask, dec: &Decrypt, limit: usize) -> Result<Preview> {
    let Some(index) = item.index() else {
        return Err(Error::usage(
            item.name(),
            "a dry run needs a snapshot or snap archive (with an index)",
        ));
    };
    let select = Select::new(ask.paths)?;
    let mut matched = vec![false; select.count()];
    let mut out = Preview::default();
    let mut reader = open_index(&index, dec)?;
    let mut buf = vec![0u8; 1 << 16];
    let sources = sources_of(item);
    // The chosen paths, and the chosen folders (whose other contents are kept).
    let mut chosen: std::collections::HashSet<Vec<u8>> = Default::default();
    let mut folders: Vec<(Vec<u8>, PathBuf)> = Vec::new();
    while let Some(e) = reader.next_entry()? {
        if !select.wants(&e.path) {
            continue;
        }
        select.mark(&e.path, &mut matched);
        chosen.insert(e.path.clone());
        let Some(at) = ask.on_disk(&e.path) else {
            continue;
        };
        if e.kind == EntryType::Dir
            && !sources
                .as_ref()
                .is_some_and(|s| leads_to_sources(&e.path, s))
        {
            folders.push((e.path.clone(), at.clone()));
        }
        let (mut action, differs) =
            compare(&e, &at, &mut buf).map_err(|err| Error::io(&at, err))?;
        if action == Action::Replace && !ask.overwrite {
            action = Action::Conflict;
        }
        *out.counts.entry(action).or_default() += 1;
        if matches!(action, Action::Create | Action::Replace) && e.kind == EntryType::File {
            out.write_files += 1;
            out.write_bytes += e.size;
        }
        // A folder's own attributes set again are no reason to keep all it holds.
        if action == Action::Replace || (action == Action::Attributes && e.kind != EntryType::Dir) {
            out.changes.push(at);
        }
        if action != Action::Same && out.rows.len() < limit {
            out.rows.push(Row {
                path: ask.shown(&e.path),
                action,
                size: e.size,
                differs,
            });
        }
    }
    let missing: Vec<String> = select.unmatched(&matched).collect();
    if !missing.is_empty() {
        return Err(Error::new(
            Exit::NoInput,
            format!("path {}", missing.join(", ")),
            "matches nothing in the snapshot",
        ));
    }
    let action = match ask.delete {
        true => Action::Delete,
        false => Action::Keep,
    };
    let mut extra = Vec::new();
    for (dir, at) in folders {
        extra.extend(extra_in(&at, &dir, &chosen)?);
    }
    extra.sort_by(|a, b| snap_shared::index::cmp_paths(&a.0, &b.0));
    for (name, real) in extra {
        *out.counts.entry(action).or_default() += 1;
        if out.rows.len() < limit {
            out.rows.push(Row {
                path: ask.shown(&name),
                action,
                size: 0,
                differs: Vec::new(),
            });
        }
        if ask.delete {
            out.changes.push(real);
        }
        out.extra.push(name);
    }
    Ok(out)
}

/// Where restoring the foreign tar `item` with `--overwrite` would replace
/// or set again what the target has: every chosen member whose path the
/// target already holds (a tar's members carry no sha256 to tell the same
/// content from another without reading both).
pub fn tar_changes(item: &Item, ask: &Ask, dec: &Decrypt) -> Result<Vec<PathBuf>> {
    use crate::members::{archive, members, sanitize};
    let data = item.data();
    let select = Select::new(ask.paths)?;
    let opened = crate::stream::open(&data, dec)?;
    let mut tar = archive(opened.tar);
    let mut stripped = false;
    let mut out = Vec::new();
    let corrupt = |e| crate::damage::corrupt(&data, e);
    for member in members(&mut tar).map_err(corrupt)? {
        let m = member.map_err(corrupt)?;
        let Ok(Some(rel)) = sanitize(&m.path, &mut stripped) else {
            continue;
        };
        if !select.wants(&rel) {
            continue;
        }
        if let Some(at) = ask.on_disk(&rel)
            && std::fs::symlink_metadata(&at).is_ok_and(|t| !t.is_dir())
        {
            out.push(at);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What the target's folder `at` (the chosen folder `dir` of the snapshot)
/// holds that the snapshot does not: their paths in the item and in the
/// target. Nothing when the target has no folder there (a symlink
/// is not followed).
fn extra_in(
    at: &Path,
    dir: &[u8],
    chosen: &std::collections::HashSet<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, PathBuf)>> {
    match std::fs::symlink_metadata(at) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(at, e)),
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(at).map_err(|e| Error::io(at, e))? {
        let entry = entry.map_err(|e| Error::io(at, e))?;
        let name = entry.file_name();
        let mut path = dir.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        if !chosen.contains(&path) {
            out.push((path, entry.path()));
        }
    }
    Ok(out)
}

/// Where a restore into `to` really writes, when a symlink on the way
/// leads elsewhere (the target, or a folder above it): the restore follows
/// it, as `tar -C` does, and the dry run, the page and the restore say so.
pub fn leads_elsewhere(to: &Path) -> Option<std::path::PathBuf> {
    let abs = std::path::absolute(to).ok()?;
    // The deepest part that exists, resolved, and the rest as given.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        rest.push(existing.file_name()?.to_os_string());
        existing = existing.parent()?;
    }
    let mut real = std::fs::canonicalize(existing).ok()?;
    real.extend(rest.iter().rev());
    (real != abs).then_some(real)
}

/// The words a dry run or a restore adds after its target when it leads elsewhere.
pub fn target_words(to: &Path) -> String {
    match leads_elsewhere(to) {
        Some(real) => format!(
            " (a symlink on the way: the files go into {})",
            real.display()
        ),
        None => String::new(),
    }
}

/// Says a dry run on stderr, as `restore --dry-run` does: a line for each
/// entry the restore would change (`create`, `replace`, `conflict`, or
/// `set attributes` with what differs), then the counts. Nothing is written.
pub fn print(plan: &Preview, to: &Path, report: &snap_cli::Reporter) -> Result<Exit> {
    for row in &plan.rows {
        let why = match row.differs.is_empty() {
            true => String::new(),
            false => format!(" ({})", row.differs.join(", ")),
        };
        report.note(&format!("{}: {}{why}", row.action.word(), row.path));
    }
    let counts: Vec<String> = plan
        .counts
        .iter()
        .map(|(a, n)| format!("{n} {}", a.word()))
        .collect();
    report.note(&format!(
        "dry run into {}{}: {}; {} files, {} to write; nothing was written",
        to.display(),
        target_words(to),
        counts.join(", "),
        plan.write_files,
        snap_shared::size::human_bytes(plan.write_bytes)
    ));
    Ok(Exit::Ok)
}

/// What the restore would do at `at` for entry `e`, and what differs.
fn compare(e: &Entry, at: &Path, buf: &mut [u8]) -> std::io::Result<(Action, Vec<&'static str>)> {
    let meta = match std::fs::symlink_metadata(at) {
        Ok(m) => m,
        // Not there, or a file where a folder on the way belongs (which
        // the restore replaces with the folder, or refuses).
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok((Action::Create, Vec::new()));
        }
        Err(err) => return Err(err),
    };
    let ft = meta.file_type();
    let same_kind = match e.kind {
        EntryType::File | EntryType::Hardlink => ft.is_file(),
        EntryType::Dir => ft.is_dir(),
        EntryType::Symlink => ft.is_symlink(),
        EntryType::Fifo | EntryType::Char | EntryType::Block => {
            !ft.is_file() && !ft.is_dir() && !ft.is_symlink()
        }
    };
    if !same_kind {
        return Ok((Action::Replace, vec!["kind"]));
    }
    let content_same = match e.kind {
        EntryType::File | EntryType::Hardlink => {
            meta.len() == e.size
                && match &e.sha256 {
                    Some(want) => hash_file(std::fs::File::open(at)?, buf)?.1 == *want,
                    None => true,
                }
        }
        EntryType::Symlink => {
            std::fs::read_link(at)?.as_os_str().as_encoded_bytes()
                == e.target.as_deref().unwrap_or_default()
        }
        _ => true,
    };
    if !content_same {
        let mut d = vec!["content"];
        if meta.len() != e.size && e.kind != EntryType::Symlink {
            d.push("size");
        }
        return Ok((Action::Replace, d));
    }
    let mut differs = Vec::new();
    if e.kind != EntryType::Symlink && meta.mode() & 0o7777 != e.mode & 0o7777 {
        differs.push("mode");
    }
    if meta.uid() != e.uid || meta.gid() != e.gid {
        differs.push("owner");
    }
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    if e.kind == EntryType::File && mtime != e.mtime as i128 {
        differs.push("mtime");
    }
    Ok(match differs.is_empty() {
        true => (Action::Same, differs),
        false => (Action::Attributes, differs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use snap_shared::hash::Sha256Digest;

    fn entry(path: &str, kind: EntryType, data: &[u8], mode: u32) -> Entry {
        Entry {
            size: data.len() as u64,
            mode,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            sha256: (kind == EntryType::File).then(|| Sha256Digest::of(data)),
            ..Entry::new(path.as_bytes().to_vec(), kind)
        }
    }

    /// Missing, same, other content, other mode and another kind are told apart.
    #[test]
    fn compare_names_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = vec![0; 4096];
        let p = dir.path().join("f");
        let e = entry("f", EntryType::File, b"hello", 0o644);
        assert_eq!(compare(&e, &p, &mut buf).unwrap().0, Action::Create);
        std::fs::write(&p, b"hello").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let (a, d) = compare(&e, &p, &mut buf).unwrap();
        assert_eq!(a, Action::Attributes);
        assert!(d.contains(&"mode"), "{d:?}");
        std::fs::write(&p, b"world").unwrap();
        assert_eq!(
            compare(&e, &p, &mut buf).unwrap(),
            (Action::Replace, vec!["content"])
        );
        let d = entry("f", EntryType::Dir, b"", 0o755);
        assert_eq!(
            compare(&d, &p, &mut buf).unwrap(),
            (Action::Replace, vec!["kind"])
        );
    }
}
