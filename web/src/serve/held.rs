//! What the page's forms and links name, held to the store the server
//! serves: a snapshot or archive by name (`SET/ID`, `SET/latest`) or a disk
//! snapshot (`disks/DISK/NAME`), never a path. The command line takes paths
//! (a tree, a record, an archive file anywhere); the page does not, since
//! whoever holds its token (from another machine with `--allow-remote`)
//! must not rewrite or pin records elsewhere on the host. A name whose
//! record or tree is reached through a symlink out of the store is refused
//! too. Each refusal is a usage error: 400 on the page.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use snap_shared::error::{Error, Result};
use snap_shared::store::Store;

use snap_read::source::{Item, Source, is_name};

/// Checks that `name` names, by name, something of `store` whose files are
/// inside it. What it does not find is left to the caller to say (404).
pub(super) fn held(store: &Store, name: &str, archive: bool) -> Result<()> {
    text_field("name", name)?;
    if let Some((disk, snap)) = snap_read::disk::parse_name(name) {
        let rec = store
            .root
            .join("disks")
            .join(disk)
            .join(format!("{snap}.json"));
        return inside(store, name, &[rec]);
    }
    if !is_name(name) {
        return Err(Error::usage(
            format!("name {name:?}"),
            "not a snapshot's name: the page takes SET/ID or disks/DISK/NAME, never a path",
        ));
    }
    let item = match Source::Store(store.clone()).resolve_name(name, archive) {
        Ok(item) => item,
        Err(e) if e.exit == snap_shared::error::Exit::NoInput => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    match &item {
        Item::Snapshot { json, .. } => files.push(json.clone()),
        Item::Archive { json, .. } => files.extend(json.path().map(Path::to_path_buf)),
        Item::Foreign { path } => files.push(path.clone()),
    }
    files.extend(item.data().path().map(Path::to_path_buf));
    inside(store, name, &files)
}

/// A text field of a form: a NUL in it is a usage error (400), not a path
/// the system refuses later (500).
pub(super) fn text_field(what: &str, value: &str) -> Result<()> {
    match value.contains('\0') {
        true => Err(Error::usage(what, "has a NUL character")),
        false => Ok(()),
    }
}

/// A path a form gives to write to (`what`: "folder", "file"): absolute,
/// plain (no `.`, `..`), and outside the store.
pub(super) fn outside_store(what: &str, to: &str, store: &Store) -> Result<PathBuf> {
    text_field("to", to)?;
    let p = PathBuf::from(to.trim());
    let plain = p.is_absolute()
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
    if !plain {
        return Err(Error::usage(
            format!("{what} {to:?}"),
            format!("give an absolute {what} with no . or .. in it"),
        ));
    }
    snap_read::restore::refuse_inside_store(&p, &store.root)?;
    Ok(p)
}

/// Every one of `files` that exists is inside the store, symlinks followed.
fn inside(store: &Store, name: &str, files: &[PathBuf]) -> Result<()> {
    let root = std::fs::canonicalize(&store.root).map_err(|e| Error::io(&store.root, e))?;
    for f in files {
        let real = match std::fs::canonicalize(f) {
            Ok(real) => real,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(f, e)),
        };
        if !real.starts_with(&root) {
            return Err(Error::usage(
                format!("name {name:?}"),
                format!(
                    "{} leads out of the store (to {})",
                    f.display(),
                    real.display()
                ),
            ));
        }
    }
    Ok(())
}
