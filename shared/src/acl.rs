//! POSIX ACLs between the two forms snap meets: the kernel's binary value
//! of `system.posix_acl_access` / `system.posix_acl_default` (what collect
//! reads and restore sets, `include/uapi/linux/posix_acl_xattr.h`), and the
//! text of acl(5) that tar archives carry (`SCHILY.acl.access`, a Solaris
//! `A` header): `user::rw-`, `user:alice:r--`, `group::r-x`, `mask::r-x`,
//! `other::---`, one entry a line (GNU tar) or comma-separated (bsdtar, which
//! also adds the numeric id as a fourth field).
//!
//! Written here rather than taken from a crate: the `posix-acl` and `exacl`
//! crates link libacl and work on paths, and snap needs the conversion of
//! values it already holds (an index entry's xattrs, a PAX record), in both
//! directions, without a C library. Both forms are small and fixed.

use std::fmt::Write;

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The id of entries that have none (the owner's, the mask, others).
const UNDEFINED: u32 = u32::MAX;

/// One entry: its tag, its permissions (r=4, w=2, x=1) and, for named
/// users and groups, the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    tag: u16,
    id: u32,
    perm: u16,
}

/// The entries of a binary value, checked.
fn decode(value: &[u8]) -> Result<Vec<Entry>, String> {
    if value.len() < 4 || (value.len() - 4) % 8 != 0 {
        return Err(format!(
            "an ACL value of {} bytes is not an ACL",
            value.len()
        ));
    }
    let version = u32::from_le_bytes(value[..4].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("an ACL of version {version} is unknown"));
    }
    Ok(value[4..]
        .chunks(8)
        .map(|c| Entry {
            tag: u16::from_le_bytes([c[0], c[1]]),
            perm: u16::from_le_bytes([c[2], c[3]]),
            id: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// The binary value of entries, in the kernel's order (by tag, then id).
fn encode(mut entries: Vec<Entry>) -> Vec<u8> {
    entries.sort();
    let mut out = VERSION.to_le_bytes().to_vec();
    for e in entries {
        out.extend_from_slice(&e.tag.to_le_bytes());
        out.extend_from_slice(&e.perm.to_le_bytes());
        out.extend_from_slice(&e.id.to_le_bytes());
    }
    out
}

fn perms(p: u16) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')]
        .iter()
        .map(|&(bit, c)| if p & bit != 0 { c } else { '-' })
        .collect()
}

/// Whose an ACL entry's qualifier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    User,
    Group,
}

/// The text GNU tar writes for a binary ACL: one entry a line, named users
/// and groups by their name on this machine (`name` gives it), else by
/// number.
pub fn to_text(
    value: &[u8],
    name: &mut dyn FnMut(Who, u32) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    for e in decode(value)? {
        let (tag, who) = match e.tag {
            USER_OBJ => ("user", String::new()),
            USER => (
                "user",
                name(Who::User, e.id).unwrap_or_else(|| e.id.to_string()),
            ),
            GROUP_OBJ => ("group", String::new()),
            GROUP => (
                "group",
                name(Who::Group, e.id).unwrap_or_else(|| e.id.to_string()),
            ),
            MASK => ("mask", String::new()),
            OTHER => ("other", String::new()),
            t => return Err(format!("an ACL entry has the unknown tag {t:#x}")),
        };
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "{tag}:{who}:{}", perms(e.perm));
    }
    Ok(out)
}

/// The binary values of an ACL text: the access ACL, and the default ACL
/// its entries marked `default` give (`default:user::rwx` as getfacl writes
/// them, `defaultuser::rwx` as a Solaris `A` header does), each `None` when
/// the text has none. `id` gives the id of a user's or group's name here; a
/// name with no account here takes the numeric id that follows it (bsdtar's
/// and star's fourth field), or is refused. A number is an id. Solaris's
/// `mask:r--` and `other:r--` (no empty qualifier) are read too. An ACL
/// with named entries and no mask gets the one `setfacl` and libarchive
/// compute (the union of the group class), which the kernel requires.
pub fn from_text(
    text: &[u8],
    id: &mut dyn FnMut(Who, &str) -> Option<u32>,
) -> Result<Acls, String> {
    let text = std::str::from_utf8(text).map_err(|_| "an ACL text is not UTF-8".to_string())?;
    let (mut access, mut default) = (Vec::new(), Vec::new());
    for item in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|i| !i.is_empty())
    {
        let (into, rest) = match item.strip_prefix("default") {
            Some(rest) => (&mut default, rest.strip_prefix(':').unwrap_or(rest)),
            None => (&mut access, item),
        };
        into.push(entry(item, rest, id)?);
    }
    if access.is_empty() && default.is_empty() {
        return Err("an ACL text holds no entries".into());
    }
    let finish = |entries: Vec<Entry>| (!entries.is_empty()).then(|| encode(with_mask(entries)));
    Ok(Acls {
        access: finish(access),
        default: finish(default),
    })
}

/// The binary values of an ACL text, each `None` when it has no entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acls {
    pub access: Option<Vec<u8>>,
    pub default: Option<Vec<u8>>,
}

/// One entry of an ACL text (`rest`, `item` without a `default` mark).
fn entry(
    item: &str,
    rest: &str,
    id: &mut dyn FnMut(Who, &str) -> Option<u32>,
) -> Result<Entry, String> {
    let fields: Vec<&str> = rest.split(':').collect();
    let (tag, who, perm, number) = match fields[..] {
        [t @ ("mask" | "m" | "other" | "o"), p] => (t, "", p, None),
        [t, w, p] => (t, w, p, None),
        [t, w, p, id] => (t, w, p, Some(id)),
        _ => return Err(format!("ACL entry {item:?} is not TAG:WHO:PERMS")),
    };
    let mut bits = 0u16;
    for c in perm.chars() {
        bits |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            '-' => 0,
            _ => return Err(format!("ACL entry {item:?} has permissions {perm:?}")),
        };
    }
    let mut named = |kind: Who| -> Result<u32, String> {
        if let Ok(n) = who.parse::<u32>() {
            return Ok(n);
        }
        id(kind, who)
            .or_else(|| number.and_then(|i| i.parse().ok()))
            .ok_or_else(|| format!("ACL entry {item:?} names {who:?}, who has no account here"))
    };
    let (tag, id) = match (tag, who.is_empty()) {
        ("user" | "u", true) => (USER_OBJ, UNDEFINED),
        ("user" | "u", false) => (USER, named(Who::User)?),
        ("group" | "g", true) => (GROUP_OBJ, UNDEFINED),
        ("group" | "g", false) => (GROUP, named(Who::Group)?),
        ("mask" | "m", true) => (MASK, UNDEFINED),
        ("other" | "o", true) => (OTHER, UNDEFINED),
        _ => return Err(format!("ACL entry {item:?} has an unknown tag")),
    };
    Ok(Entry {
        tag,
        id,
        perm: bits,
    })
}

/// Adds the mask an ACL with named entries needs, when it has none.
fn with_mask(mut entries: Vec<Entry>) -> Vec<Entry> {
    let named = entries.iter().any(|e| e.tag == USER || e.tag == GROUP);
    if named && !entries.iter().any(|e| e.tag == MASK) {
        let perm = entries
            .iter()
            .filter(|e| matches!(e.tag, USER | GROUP_OBJ | GROUP))
            .fold(0, |p, e| p | e.perm);
        entries.push(Entry {
            tag: MASK,
            id: UNDEFINED,
            perm,
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(who: Who, name: &str) -> Option<u32> {
        (who == Who::User && name == "alice").then_some(1001)
    }

    /// GNU tar's lines and bsdtar's commas with ids give the same value,
    /// which reads back as GNU tar's text.
    #[test]
    fn text_and_binary_round_trip() {
        let gnu = b"user::rw-\nuser:alice:r--\ngroup::r--\ngroup:7:rw-\nmask::rw-\nother::r--";
        let bsd = b"user::rw-,group::r--,other::r--,user:alice:r--:1001,group:lp:rw-:7,mask::rw-";
        let a = from_text(gnu, &mut ids).unwrap();
        let b = from_text(bsd, &mut ids).unwrap();
        assert_eq!((&a, &a.default), (&b, &None));
        let a = a.access.unwrap();
        let mut names = |w, u| (w == Who::User && u == 1001).then(|| "alice".to_string());
        let text = to_text(&a, &mut names).unwrap();
        assert_eq!(text.as_bytes(), gnu);
    }

    /// Solaris's two-field mask and other, its `default` entries, and a mask
    /// made where named entries have none.
    #[test]
    fn solaris_forms_and_a_missing_mask() {
        let sol = b"user::rwx,user:alice:rwx,group::r-x,mask:r-x,other:---,defaultuser::rwx,defaultgroup::r-x,defaultother:---";
        let Acls { access, default } = from_text(sol, &mut ids).unwrap();
        let mut names = |_, _| None;
        assert_eq!(
            to_text(&access.unwrap(), &mut names).unwrap(),
            "user::rwx\nuser:1001:rwx\ngroup::r-x\nmask::r-x\nother::---"
        );
        assert_eq!(
            to_text(&default.unwrap(), &mut names).unwrap(),
            "user::rwx\ngroup::r-x\nother::---"
        );
        let masked =
            from_text(b"user::--x,group::r--,other::-w-,user:alice:rw-", &mut ids).unwrap();
        assert!(
            to_text(&masked.access.unwrap(), &mut names)
                .unwrap()
                .contains("mask::rw-")
        );
    }

    /// A name with no account and no id, a bad tag and bad permissions are refused.
    #[test]
    fn bad_texts_are_refused() {
        for bad in [
            &b"user:bob:r--"[..],
            b"owner::rw-",
            b"user::rwz",
            b"",
            b"user:rw-",
        ] {
            assert!(from_text(bad, &mut ids).is_err(), "{bad:?}");
        }
        assert!(decode(&[2, 0, 0, 0, 1]).is_err());
    }
}
