//! Whose a restored entry is: the owner and group by name when the name
//! has an account on this machine (as GNU tar does by default), else by the
//! number recorded; `--numeric-owner` keeps the numbers. A restore on a new
//! machine where `payne` is uid 1001 gives his files to him, not to whoever
//! has his old uid there.

use snap_shared::owners::Names;

/// Maps recorded owners to this machine's ids.
pub struct Owners {
    numeric: bool,
    names: Names,
}

impl Owners {
    pub fn new(numeric: bool) -> Owners {
        Owners {
            numeric,
            names: Names::default(),
        }
    }

    /// The uid and gid to give an entry recorded with these ids and names.
    pub fn ids(
        &mut self,
        uid: u32,
        gid: u32,
        user: Option<&str>,
        group: Option<&str>,
    ) -> (u32, u32) {
        if self.numeric {
            return (uid, gid);
        }
        let uid = user.and_then(|n| self.names.uid(n)).unwrap_or(uid);
        let gid = group.and_then(|n| self.names.gid(n)).unwrap_or(gid);
        (uid, gid)
    }

    /// The id of a user name here, for the named entries of an ACL.
    pub fn uid_of(&mut self, name: &str) -> Option<u32> {
        self.names.uid(name)
    }

    /// The id of a group name here.
    pub fn gid_of(&mut self, name: &str) -> Option<u32> {
        self.names.gid(name)
    }
}
