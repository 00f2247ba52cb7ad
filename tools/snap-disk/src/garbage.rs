//! Collecting what no snapshot refers to any more: blocks of the block store
//! and maps whose record is gone (what a killed create or delete leaves).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use snap_shared::disks::DiskDir;
use snap_shared::error::{Error, Result};

use crate::blocks;

/// Removes maps without a record and blocks no remaining map refers to;
/// returns the blocks removed and their bytes. Needs the store lock.
pub fn collect_garbage(dir: &DiskDir) -> Result<(u64, u64)> {
    let names: Vec<String> = dir
        .snapshots()?
        .into_iter()
        .filter(|r| r.method == "blocks")
        .map(|r| r.name)
        .collect();
    remove_orphan_maps(dir, &names)?;
    let maps: Vec<PathBuf> = names.iter().map(|n| dir.map_path(n)).collect();
    let keep = blocks::referenced(&maps)?;
    blocks::gc(&dir.blocks_dir(), &keep)
}

pub(crate) fn remove_orphan_maps(dir: &DiskDir, names: &[String]) -> Result<()> {
    let Ok(entries) = fs::read_dir(&dir.root) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let orphan = match file.strip_suffix(".map.zst") {
            Some(n) => !names.iter().any(|k| k == n),
            None => file.contains(".map.zst.") || file.starts_with(".convert-"),
        };
        if orphan {
            remove_if_there(&e.path())?;
        }
    }
    Ok(())
}

pub(crate) fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}
