//! Extended attributes of a file, as snap keeps them: every namespace it can
//! read (`user.*`; `trusted.*` as root; `security.*`, which holds file
//! capabilities and SELinux labels), POSIX ACLs included as the kernel
//! stores them (`system.posix_acl_access`, `system.posix_acl_default`, a
//! small binary form).
//!
//! In an index they are one JSON object, names sorted, each value in base64
//! (values are bytes: a capability is binary, a label ends with a NUL):
//! `"xattrs": {"security.capability": "AQAAAgAgAAAAAAAAAAAAAAAAAAA=", "user.origin": "bWFpbA=="}`.
//! An entry without the field has none. Names are text; an attribute whose
//! name is not UTF-8 is reported, never dropped in silence.
//!
//! Everything here works on a file itself, never through a symlink (the
//! `l*xattr` calls): a symlink's own labels are its own.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use rustix::fs::XattrFlags;

/// A file's attributes, by name.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// The access ACL, in the kernel's binary form.
pub const ACL_ACCESS: &str = "system.posix_acl_access";
/// A folder's default ACL, in the kernel's binary form.
pub const ACL_DEFAULT: &str = "system.posix_acl_default";
/// File capabilities (`setcap`): a chown clears them, so they are set last.
pub const CAPABILITY: &str = "security.capability";

/// Whether a failure means the filesystem keeps no such attributes at all.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS)
    )
}

/// Every attribute of `path` itself. A filesystem that keeps none gives an
/// empty set. Names that are not UTF-8 come back in the second list, for
/// the caller to report.
pub fn read(path: &Path) -> io::Result<(Xattrs, Vec<Vec<u8>>)> {
    let mut out = Xattrs::new();
    let mut odd = Vec::new();
    for name in names(path)? {
        let Some(value) = value(path, &name)? else {
            continue;
        };
        match String::from_utf8(name) {
            Ok(n) => {
                out.insert(n, value);
            }
            Err(e) => odd.push(e.into_bytes()),
        }
    }
    Ok((out, odd))
}

/// The attribute names of `path` itself (NUL-separated by the kernel).
fn names(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(e) => {
                let e = io::Error::from(e);
                return if unsupported(&e) {
                    Ok(Vec::new())
                } else {
                    Err(e)
                };
            }
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            // The list grew between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One attribute's value; `None` when it went away meanwhile.
fn value(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
    loop {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(n) => n,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = vec![0u8; size];
        if size == 0 {
            return Ok(Some(buf));
        }
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes `path`'s attributes exactly `wanted`: those it has and should not
/// (a default ACL inherited from its folder, say) are removed, the others
/// set, the capability last. Each one that cannot be set or removed comes
/// back with its error, for the caller to name.
pub fn set_exactly(path: &Path, wanted: &Xattrs) -> io::Result<Vec<(String, io::Error)>> {
    apply(path, wanted, &|_| true, &|_| true).map(|a| a.failed)
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Whether any attribute was set or removed.
    pub changed: bool,
    /// Those that could not be, with why.
    pub failed: Vec<(String, io::Error)>,
}

/// What giving a file the attributes `wanted` changes, from the ones it
/// `have`s, touching only names `manages` accepts. Those it has and
/// `wanted` lacks are removed where `remove` says (a restore from snap's own
/// index, whose entries list every attribute, removes all; one from a tar,
/// only ACLs), except an SELinux label, which the machine's policy gives
/// and a source without labels says nothing about. The others are set, the
/// capability last: setting another attribute never clears it, but a
/// caller that changes the owner in between would.
pub struct Changes<'a> {
    pub remove: Vec<&'a str>,
    pub set: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Changes<'a> {
    pub fn of(
        have: &'a Xattrs,
        wanted: &'a Xattrs,
        remove: &dyn Fn(&str) -> bool,
        manages: &dyn Fn(&str) -> bool,
    ) -> Changes<'a> {
        let gone = have
            .keys()
            .map(String::as_str)
            .filter(|n| !wanted.contains_key(*n))
            .filter(|n| manages(n) && remove(n) && *n != "security.selinux")
            .collect();
        let order = wanted
            .iter()
            .filter(|(n, _)| n.as_str() != CAPABILITY)
            .chain(wanted.get_key_value(CAPABILITY));
        let set = order
            .filter(|(n, v)| have.get(*n) != Some(*v) && manages(n))
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        Changes { remove: gone, set }
    }

    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty()
    }
}

/// Gives `path` the attributes `wanted`, as [`Changes::of`] says.
pub fn apply(
    path: &Path,
    wanted: &Xattrs,
    remove: &dyn Fn(&str) -> bool,
    manages: &dyn Fn(&str) -> bool,
) -> io::Result<Applied> {
    let mut done = Applied::default();
    let (have, _) = read(path)?;
    let changes = Changes::of(&have, wanted, remove, manages);
    for name in changes.remove {
        match rustix::fs::lremovexattr(path, name) {
            Ok(()) => done.changed = true,
            Err(e) => done.failed.push((name.to_string(), e.into())),
        }
    }
    for (name, value) in changes.set {
        match rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()) {
            Ok(()) => done.changed = true,
            Err(e) => done.failed.push((name.to_string(), e.into())),
        }
    }
    Ok(done)
}

/// The path through which a file in an open folder is reached by the
/// `l*xattr` calls, which take no folder: `/proc/self/fd/FD/NAME`.
pub fn at(dir: &impl std::os::fd::AsRawFd, name: &std::ffi::OsStr) -> std::path::PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is set is read back, binary values and all; a set made exact
    /// removes what is not wanted; a symlink's own attributes are not its
    /// target's.
    #[test]
    fn reads_and_sets_exactly() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let mut wanted = Xattrs::new();
        wanted.insert("user.a".into(), b"one".to_vec());
        wanted.insert("user.bin".into(), vec![0, 255, 10, 0]);
        // The temporary folder's filesystem must keep user xattrs (ext4 does).
        let failed = set_exactly(&f, &wanted).unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(read(&f).unwrap().0, wanted);
        wanted.remove("user.a");
        wanted.insert("user.c".into(), Vec::new());
        assert!(set_exactly(&f, &wanted).unwrap().is_empty());
        assert_eq!(read(&f).unwrap().0, wanted);
        let link = t.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(read(&link).unwrap().0.is_empty());
        let dir = std::fs::File::open(t.path()).unwrap();
        assert_eq!(read(&at(&dir, "f".as_ref())).unwrap().0, wanted);
    }
}
