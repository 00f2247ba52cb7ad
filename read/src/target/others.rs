//! Everything in the target but regular files: folders (and their metadata,
//! set last), symlinks, hard links and special files, with owners, times and
//! attributes, and the repair of an entry a rerun finds already there.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Uid, fchmod, fchown, futimens, linkat, mkdirat, mknodat,
    openat, readlinkat, statat, symlinkat, unlinkat, utimensat,
};

use super::{Meta, Outcome, Put, Refused, Target, name_of, os, temp_of, timestamps};

impl Target {
    /// Owner, attributes, mode and times of an open entry (`name` in `dir`):
    /// the mode after the ACLs, which a removed inherited ACL leaves wrong.
    pub(super) fn apply(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        fd: impl AsFd,
        meta: &Meta,
    ) -> io::Result<()> {
        if self.owners {
            fchown(
                &fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )?;
        }
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        fchmod(&fd, mode)?;
        self.attributes(dir, name, rel, meta, &|| Ok(fchmod(&fd, mode)?))?;
        futimens(&fd, &timestamps(meta.mtime_ns))?;
        Ok(())
    }

    /// Makes sure folder `rel` exists (its metadata comes later, [`Target::dir_meta`]).
    pub fn dir(&mut self, rel: &[u8]) -> Put {
        if self.is_above(rel) {
            return Ok(Outcome::AlreadyThere);
        }
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        match mkdirat(&*dir, os(name), Mode::from_raw_mode(0o700)) {
            Ok(()) => Ok(Outcome::Written),
            Err(rustix::io::Errno::EXIST) => {
                match statat(&*dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        Ok(Outcome::AlreadyThere)
                    }
                    // A file (or symlink, or node) where the folder belongs:
                    // --overwrite replaces it, as tar --overwrite does.
                    Ok(_) if self.overwrite => {
                        unlinkat(&*dir, os(name), AtFlags::empty())?;
                        mkdirat(&*dir, os(name), Mode::from_raw_mode(0o700))?;
                        Ok(Outcome::Written)
                    }
                    Ok(_) => Err(Refused::Exists),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Gives folder `rel` its metadata (after everything inside it is written).
    pub fn dir_meta(&mut self, rel: &[u8], meta: &Meta) -> std::result::Result<(), Refused> {
        if self.is_above(rel) {
            return Ok(());
        }
        // Naming a file inside would change the folder's mtime again.
        self.flush();
        self.implicit.lock().expect("implicit folders").remove(rel);
        let dir = self.parent(rel, false)?;
        let name = name_of(rel);
        let fd = openat(
            &*dir,
            os(name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(self.apply(&dir, name, rel, fd, meta)?)
    }

    /// Gives `name` in `dir` (the entry `rel`) its attributes, after its
    /// mode. An access ACL sets the permission bits itself, the group's
    /// from its mask: no chmod may follow it (bsdtar's headers hold the
    /// owning group's bits, not the mask's, and a chmod would set the mask
    /// from them). Without one, a removed inherited ACL leaves the group
    /// bits at its mask, so the mode is set again with `chmod`. What could
    /// not be set is kept for the caller.
    pub(super) fn attributes(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        chmod: &dyn Fn() -> io::Result<()>,
    ) -> io::Result<()> {
        let (changed, failed) = crate::attrs::set_at(dir, name, &meta.attrs, self.policy)?;
        self.attr_failures
            .extend(failed.into_iter().map(|f| (rel.to_vec(), f)));
        if changed && !crate::attrs::wants_access_acl(&meta.attrs, self.policy) {
            chmod()?;
        }
        Ok(())
    }

    /// Makes symlink `rel` pointing at `target` (never followed by us).
    pub fn symlink(&mut self, rel: &[u8], target: &[u8], meta: &Meta) -> Put {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let Ok(existing) = readlinkat(&*dir, os(name), Vec::new())
            && existing.as_bytes() == target
        {
            return Ok(self.repair(&dir, rel, meta, None)?);
        }
        let tmp = temp_of(name);
        let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
        symlinkat(os(target), &*dir, os(&tmp))?;
        self.owner_and_times_at(&dir, &tmp, rel, meta, None)?;
        self.publish(&dir, &tmp, name)?;
        Ok(Outcome::Written)
    }

    /// An entry already there (`rel`, its name in `dir`) with the right
    /// content: its owner (as root), mode (when given) and mtime set again
    /// where they differ from `meta`, as rsync -a and restic do; the bytes
    /// are not touched.
    pub(super) fn repair(
        &mut self,
        dir: &OwnedFd,
        rel: &[u8],
        meta: &Meta,
        mode: Option<u32>,
    ) -> io::Result<Outcome> {
        let name = name_of(rel);
        let st = statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
        let want = timestamps(meta.mtime_ns).last_modification;
        let same = (st.st_mtime as i64, st.st_mtime_nsec as i64) == (want.tv_sec, want.tv_nsec)
            && mode.is_none_or(|m| st.st_mode & 0o7777 == m & 0o7777)
            && (!self.owners || (st.st_uid, st.st_gid) == (meta.uid, meta.gid))
            && crate::attrs::same_at(dir, name, &meta.attrs, self.policy)?;
        if same {
            return Ok(Outcome::AlreadyThere);
        }
        self.owner_and_times_at(dir, name, rel, meta, mode)?;
        Ok(Outcome::Repaired)
    }

    /// Owner (as root), attributes, mode (when given: symlinks have none)
    /// and times of a name in an open folder, not following a symlink.
    pub(super) fn owner_and_times_at(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        rel: &[u8],
        meta: &Meta,
        mode: Option<u32>,
    ) -> io::Result<()> {
        if self.owners {
            let (u, g) = (Uid::from_raw(meta.uid), Gid::from_raw(meta.gid));
            rustix::fs::chownat(dir, os(name), Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        let chmod = || -> io::Result<()> {
            if let Some(mode) = mode {
                let mode = Mode::from_raw_mode(mode & 0o7777);
                rustix::fs::chmodat(dir, os(name), mode, AtFlags::empty())?;
            }
            Ok(())
        };
        chmod()?;
        self.attributes(dir, name, rel, meta, &chmod)?;
        utimensat(
            dir,
            os(name),
            &timestamps(meta.mtime_ns),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    /// Makes `rel` a further name of the already restored `first`.
    pub fn hardlink(&mut self, rel: &[u8], first: &[u8]) -> Put {
        self.flush_if_staged(first);
        self.flush_if_staged(rel);
        let from_dir = self.parent(first, false)?;
        let from = name_of(first).to_vec();
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let (Ok(a), Ok(b)) = (
            statat(&*from_dir, os(&from), AtFlags::SYMLINK_NOFOLLOW),
            statat(&*dir, os(name), AtFlags::SYMLINK_NOFOLLOW),
        ) && (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
        {
            return Ok(Outcome::AlreadyThere);
        }
        let tmp = temp_of(name);
        let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
        linkat(&*from_dir, os(&from), &*dir, os(&tmp), AtFlags::empty())?;
        self.publish(&dir, &tmp, name)?;
        Ok(Outcome::Written)
    }

    /// Makes a fifo or a device node.
    pub fn special(&mut self, rel: &[u8], kind: FileType, rdev: u64, meta: &Meta) -> Put {
        self.flush_if_staged(rel);
        let dir = self.parent(rel, true)?;
        let name = name_of(rel);
        if let Ok(st) = statat(&*dir, os(name), AtFlags::SYMLINK_NOFOLLOW)
            && FileType::from_raw_mode(st.st_mode) == kind
            && (kind == FileType::Fifo || st.st_rdev == rdev)
        {
            return Ok(self.repair(&dir, rel, meta, Some(meta.mode))?);
        }
        let tmp = temp_of(name);
        let _ = unlinkat(&*dir, os(&tmp), AtFlags::empty());
        mknodat(&*dir, os(&tmp), kind, Mode::from_raw_mode(0o600), rdev)?;
        self.owner_and_times_at(&dir, &tmp, rel, meta, Some(meta.mode))?;
        self.publish(&dir, &tmp, name)?;
        Ok(Outcome::Written)
    }

    /// Removes entry `rel` of the item from the target, a folder with all it
    /// holds (`--delete`). Nothing is followed: a symlink is removed, not
    /// what it points at. An entry already gone counts as removed.
    pub fn remove(&mut self, rel: &[u8]) -> std::result::Result<(), Refused> {
        if self.is_above(rel) {
            return Err(Refused::Cannot(
                "is the home folder restored onto the target, or above it".into(),
            ));
        }
        self.flush();
        self.open.clear();
        let dir = self.parent(rel, false)?;
        match remove_at(&dir, name_of(rel)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => Ok(r?),
        }
    }
}

/// Removes `name` in `dir`, and everything inside it when it is a folder.
fn remove_at(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let st = statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Ok(unlinkat(dir, os(name), AtFlags::empty())?);
    }
    let fd = openat(
        dir,
        os(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    for n in names {
        remove_at(&fd, &n)?;
    }
    Ok(unlinkat(dir, os(name), AtFlags::REMOVEDIR)?)
}
