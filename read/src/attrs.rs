//! Extended attributes and ACLs of restored entries: what the source says
//! of them, which ones a run sets (`--no-xattrs`, `--no-acls`, as GNU tar's
//! flags), and the words for one that could not be set.
//!
//! snap's own sources (a tree snapshot, snap's archives through their
//! index) list every attribute an entry had, so the restored entry gets
//! exactly those: one inherited from the target folder's default ACL is
//! removed, as `rsync -A` does. A tar's records are set as GNU tar
//! `--xattrs --acls` sets them: its ACLs exactly (a member without one
//! loses an inherited one), its other attributes beside what the entry
//! gets. An attribute that
//! cannot be set (`trusted.*` or a capability without root, a filesystem
//! that keeps none) is never dropped in silence: the caller reports it and
//! the run ends non-zero.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use snap_shared::xattrs::{self, ACL_ACCESS, ACL_DEFAULT, Xattrs};

/// What the source says of an entry's attributes.
#[derive(Debug, Clone, Default)]
pub enum Attrs {
    /// Nothing: the entry keeps what it gets where it is made.
    #[default]
    Unknown,
    /// Exactly these: others are removed.
    Exactly(Arc<Xattrs>),
    /// A tar member's: its ACLs exactly, its other attributes beside what
    /// the entry gets.
    Tar(Arc<Xattrs>),
}

fn is_acl(name: &str) -> bool {
    name == ACL_ACCESS || name == ACL_DEFAULT
}

/// Which attributes a run sets.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub xattrs: bool,
    pub acls: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            xattrs: true,
            acls: true,
        }
    }
}

impl Policy {
    fn manages(&self, name: &str) -> bool {
        match is_acl(name) {
            true => self.acls,
            false => self.xattrs,
        }
    }
}

/// Why an attribute could not be set, in a user's words.
fn why(e: &io::Error) -> String {
    use rustix::io::Errno;
    match Errno::from_io_error(e) {
        Some(Errno::OPNOTSUPP) => {
            "the filesystem there keeps no such attributes (--no-xattrs / --no-acls to restore without them)".into()
        }
        Some(Errno::PERM | Errno::ACCESS) => {
            "not permitted (trusted.* attributes and capabilities need root; --no-xattrs to restore without them)".into()
        }
        _ => e.to_string(),
    }
}

/// Which attributes an entry has and the wanted ones lack are removed.
type Removes = fn(&str) -> bool;

impl Attrs {
    /// The attributes wanted, and which of those an entry has and they lack
    /// are removed; `None` when the source says nothing.
    fn wanted(&self) -> Option<(&Xattrs, Removes)> {
        match self {
            Attrs::Unknown => None,
            Attrs::Exactly(x) => Some((x, |_| true)),
            Attrs::Tar(x) => Some((x, is_acl)),
        }
    }
}

/// Whether `attrs` gives an access ACL that this run sets.
pub fn wants_access_acl(attrs: &Attrs, policy: Policy) -> bool {
    attrs
        .wanted()
        .is_some_and(|(x, _)| policy.acls && x.contains_key(ACL_ACCESS))
}

/// Gives `name` in `dir` the attributes `attrs` says, the capability last.
/// Returns whether anything changed and a line for each attribute that
/// could not be set or removed.
pub fn set_at(
    dir: &OwnedFd,
    name: &[u8],
    attrs: &Attrs,
    policy: Policy,
) -> io::Result<(bool, Vec<String>)> {
    let Some((wanted, remove)) = attrs.wanted() else {
        return Ok((false, Vec::new()));
    };
    let path = xattrs::at(dir, std::ffi::OsStr::from_bytes(name));
    let applied = xattrs::apply(&path, wanted, &remove, &|n| policy.manages(n))?;
    let failed = applied
        .failed
        .iter()
        .map(|(n, e)| format!("attribute {n} not set: {}", why(e)))
        .collect();
    Ok((applied.changed, failed))
}

/// Whether `name` in `dir` already has the attributes `attrs` says, by the
/// rules [`set_at`] sets them with (for a rerun, which leaves an entry that
/// is right alone).
pub fn same_at(dir: &OwnedFd, name: &[u8], attrs: &Attrs, policy: Policy) -> io::Result<bool> {
    let Some((wanted, remove)) = attrs.wanted() else {
        return Ok(true);
    };
    let path = xattrs::at(dir, std::ffi::OsStr::from_bytes(name));
    let (have, _) = xattrs::read(&path)?;
    Ok(xattrs::Changes::of(&have, wanted, &remove, &|n| policy.manages(n)).is_empty())
}

/// The attributes a tar member carries, in the form snap keeps and sets
/// (ACL texts as the kernel's binary values, their names resolved here).
/// Each one that cannot be kept (a name that is not UTF-8, an ACL naming
/// someone with no account here, an NFSv4 ACL) comes back as a line, for
/// the caller to report, unless `policy` leaves its kind aside.
pub fn of_member<R: std::io::Read>(
    m: &crate::members::Member<'_, R>,
    owners: &mut crate::owners::Owners,
    policy: Policy,
) -> (Xattrs, Vec<String>) {
    let mut out = Xattrs::new();
    let mut problems = Vec::new();
    for (name, value) in &m.xattrs {
        match String::from_utf8(name.clone()) {
            Ok(n) => {
                out.insert(n, value.clone());
            }
            Err(_) if !policy.xattrs => {}
            Err(_) => problems.push(format!(
                "attribute {} not set: its name is not UTF-8",
                String::from_utf8_lossy(name)
            )),
        }
    }
    if !policy.acls {
        return (out, problems);
    }
    let mut parse = |text: &[u8]| {
        snap_shared::acl::from_text(text, &mut |who, n| match who {
            snap_shared::acl::Who::User => owners.uid_of(n),
            snap_shared::acl::Who::Group => owners.gid_of(n),
        })
    };
    // The text's names are what maps to this machine's ids: it wins over the
    // binary SCHILY.xattr.system.posix_acl_* GNU tar also writes.
    let mut keep =
        |out: &mut Xattrs, name: &str, value: Result<Option<Vec<u8>>, String>| match value {
            Ok(Some(v)) => {
                out.insert(name.to_string(), v);
            }
            Ok(None) => {}
            Err(why) => problems.push(format!("attribute {name} not set: {why}")),
        };
    if let Some(text) = &m.acl_access {
        keep(&mut out, ACL_ACCESS, parse(text).map(|a| a.access));
    }
    if let Some(text) = &m.acl_default {
        keep(&mut out, ACL_DEFAULT, parse(text).map(|d| d.access));
    }
    if let Some(data) = &m.solaris_acl {
        match solaris_text(data) {
            Ok(text) => match parse(text) {
                Ok(acls) => {
                    keep(&mut out, ACL_ACCESS, Ok(acls.access));
                    keep(&mut out, ACL_DEFAULT, Ok(acls.default));
                }
                Err(why) => keep(&mut out, ACL_ACCESS, Err(why)),
            },
            Err(why) => keep(&mut out, ACL_ACCESS, Err(why)),
        }
    }
    if m.acl_nfs4.is_some() {
        problems.push(
            "its NFSv4 ACL (SCHILY.acl.ace) not set: Linux filesystems keep POSIX ACLs only (--no-acls to restore without it)"
                .into(),
        );
    }
    (out, problems)
}

/// A Solaris `A` header's POSIX ACL text: after an octal type (`01000000`
/// and the entry count for POSIX.1e; `03000000` is an NFSv4 ACL) and a NUL.
fn solaris_text(data: &[u8]) -> Result<&[u8], String> {
    let malformed = || "a Solaris ACL header (type A) is malformed".to_string();
    let nul = data.iter().position(|&b| b == 0).ok_or_else(malformed)?;
    let kind = std::str::from_utf8(&data[..nul])
        .ok()
        .and_then(|t| u64::from_str_radix(t, 8).ok())
        .ok_or_else(malformed)?;
    let text = crate::tarfmt::header::cut(&data[nul + 1..]);
    match kind & !0o777777 {
        0o1000000 => Ok(text),
        0o3000000 => Err(
            "a Solaris NFSv4 ACL (type A header): Linux filesystems keep POSIX ACLs only (--no-acls to restore without it)"
                .into(),
        ),
        _ => Err(malformed()),
    }
}
