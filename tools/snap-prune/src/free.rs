//! Space really freed by removing hard-linked snapshot trees.
//!
//! Unchanged files in the store are hard links shared between snapshots, so
//! a tree's size says little about what its removal gives back: a block is
//! freed only when the last link to its inode goes. Removal counts exactly,
//! looking at each file's link count just before unlinking it; a dry run
//! counts how many of an inode's links lie inside the trees to remove and
//! frees it only when that is all of them. Both count allocated blocks (what
//! `du` counts), not apparent sizes.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Bytes an inode occupies on disk.
fn allocated(meta: &fs::Metadata) -> u64 {
    meta.blocks() * 512
}

/// What removing all of `trees` (and the `files` beside them) would free,
/// given that links from elsewhere keep an inode alive.
#[derive(Default)]
pub struct Estimate {
    freed: u64,
    /// Inodes with several links: (links seen in the trees, links in all, bytes).
    shared: HashMap<(u64, u64), (u64, u64, u64)>,
}

impl Estimate {
    /// Adds a tree (a missing one adds nothing).
    pub fn add_tree(&mut self, tree: &Path) -> io::Result<()> {
        let meta = match fs::symlink_metadata(tree) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        self.add(&meta);
        if meta.is_dir() {
            for entry in fs::read_dir(tree)? {
                self.add_tree(&entry?.path())?;
            }
        }
        Ok(())
    }

    /// Adds one file or folder.
    fn add(&mut self, meta: &fs::Metadata) {
        if meta.is_dir() || meta.nlink() <= 1 {
            self.freed += allocated(meta);
            return;
        }
        let slot = self.shared.entry((meta.dev(), meta.ino())).or_insert((
            0,
            meta.nlink(),
            allocated(meta),
        ));
        slot.0 += 1;
    }

    /// Bytes freed once every added tree is gone.
    pub fn freed(&self) -> u64 {
        let shared: u64 = self
            .shared
            .values()
            .filter(|(seen, links, _)| seen >= links)
            .map(|(_, _, bytes)| bytes)
            .sum();
        self.freed + shared
    }
}

/// Removes a tree, returning the bytes its removal freed. Folders without
/// write permission (snapshots keep the source's modes) are opened up first.
pub fn remove_tree(path: &Path) -> io::Result<u64> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return remove_file(path, &meta);
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    let mut freed = 0;
    for entry in fs::read_dir(path)? {
        freed += remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)?;
    Ok(freed + allocated(&meta))
}

/// Unlinks a file; its blocks are freed if this was its last link.
pub fn remove_file(path: &Path, meta: &fs::Metadata) -> io::Result<u64> {
    match fs::remove_file(path) {
        Ok(()) if meta.nlink() <= 1 => Ok(allocated(meta)),
        Ok(()) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, len: usize) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![7u8; len]).unwrap();
    }

    /// Removing one of two trees that share a file frees only its own files;
    /// removing both frees the shared one too; estimate and removal agree.
    #[test]
    fn shared_links_are_freed_with_the_last_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a.join("shared"), 64 << 10);
        write(&a.join("own"), 16 << 10);
        fs::create_dir_all(&b).unwrap();
        fs::hard_link(a.join("shared"), b.join("shared")).unwrap();
        let block = |p: &Path| allocated(&fs::symlink_metadata(p).unwrap());
        let (own, shared, dir_a) = (block(&a.join("own")), block(&a.join("shared")), block(&a));
        assert!(own >= 16 << 10 && shared >= 64 << 10);

        let mut one = Estimate::default();
        one.add_tree(&a).unwrap();
        assert_eq!(one.freed(), own + dir_a);
        let mut both = Estimate::default();
        both.add_tree(&a).unwrap();
        both.add_tree(&b).unwrap();
        let dir_b = block(&b);
        assert_eq!(both.freed(), own + shared + dir_a + dir_b);

        assert_eq!(remove_tree(&a).unwrap(), own + dir_a);
        assert_eq!(remove_tree(&b).unwrap(), shared + dir_b);
        assert!(!a.exists() && !b.exists());
        assert_eq!(remove_tree(&a).unwrap(), 0);
    }

    /// Read-only folders inside a snapshot do not stop its removal.
    #[test]
    fn read_only_folders_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        write(&t.join("ro/f"), 10);
        fs::set_permissions(t.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
    }
}
