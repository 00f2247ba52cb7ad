//! Owners by name: the user and group names of ids, as this machine's
//! account database (NSS: /etc/passwd, LDAP, systemd-homed) gives them, and
//! back. An index keeps the names beside the ids, so that a restore on
//! another machine can give a file to the same person (as GNU tar does)
//! whatever uid that person has there.

use std::collections::HashMap;

/// Names of ids, each looked up once.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
    uids: HashMap<String, Option<u32>>,
    gids: HashMap<String, Option<u32>>,
}

impl Names {
    /// The user name of `uid`, when it has one here.
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }

    /// The group name of `gid`, when it has one here.
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }

    /// The uid of user `name` here, when there is one.
    pub fn uid(&mut self, name: &str) -> Option<u32> {
        *self.uids.entry(name.to_string()).or_insert_with(|| {
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
        })
    }

    /// The gid of group `name` here, when there is one.
    pub fn gid(&mut self, name: &str) -> Option<u32> {
        *self.gids.entry(name.to_string()).or_insert_with(|| {
            nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root is root everywhere; an id no account has has no name.
    #[test]
    fn names_of_ids() {
        let mut n = Names::default();
        assert_eq!(n.user(0).as_deref(), Some("root"));
        assert_eq!(n.group(0).as_deref(), Some("root"));
        assert_eq!(n.user(3_999_999_999), None);
        assert_eq!(n.group(3_999_999_999), None);
        assert_eq!(n.uid("root"), Some(0));
        assert_eq!(n.gid("root"), Some(0));
        assert_eq!(n.uid("no-such-user-here"), None);
    }
}
