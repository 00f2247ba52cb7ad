//! Profiles at a destination (snap_shared::profile): every version of a
//! profile is an object of its own, `.snap/profiles/NAME/VVVVVVVV.json`,
//! written create-only, the conditional write the locks use (a bucket's
//! `If-None-Match: *`, a folder's `RENAME_NOREPLACE`, SFTP's and rclone's
//! no-clobber). The newest version is the profile. A machine publishes the
//! version after the newest it read; when another machine published that
//! number first, the write is refused and nothing is replaced, so two
//! machines never overwrite each other, and a publish cut short leaves every
//! earlier version whole. A stored version is never rewritten: a folder
//! destination cannot replace a file conditionally, and a version's number
//! is what a machine remembers as the one it took (its ETag, in effect).
//! The publisher removes versions older than the last [`KEEP`].

use bytes::Bytes;

use snap_shared::error::{Error, Result};

use crate::dest::Dest;

/// Where profiles live at a destination.
pub const PROFILES: &str = ".snap/profiles";
/// Versions kept of each profile.
pub const KEEP: usize = 10;

/// One stored version of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub version: u64,
    pub text: String,
}

fn key(name: &str, version: u64) -> String {
    format!("{PROFILES}/{name}/{version:08}.json")
}

/// A profile's name: what a set's name may be.
pub fn check_name(name: &str) -> Result<()> {
    snap_shared::id::check_name(name).map_err(|e| Error::usage(format!("profile {name:?}"), e))
}

impl Dest {
    /// Every profile here with its newest version, by name.
    pub fn profiles(&self) -> Result<Vec<(String, u64)>> {
        let mut newest: std::collections::BTreeMap<String, u64> = Default::default();
        for (k, _) in self.list(PROFILES)? {
            let Some(rest) = k.strip_prefix(PROFILES).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            let Some((name, file)) = rest.split_once('/') else {
                continue;
            };
            let Some(v) = file
                .strip_suffix(".json")
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            let n = newest.entry(name.to_string()).or_default();
            *n = (*n).max(v);
        }
        Ok(newest.into_iter().collect())
    }

    /// The versions of profile `name` here, oldest first.
    fn profile_versions(&self, name: &str) -> Result<Vec<u64>> {
        let dir = format!("{PROFILES}/{name}");
        let mut vs: Vec<u64> = self
            .list(&dir)?
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(&format!("{dir}/"))?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        vs.sort_unstable();
        Ok(vs)
    }

    /// The newest version of profile `name`, if there is one.
    pub fn profile(&self, name: &str) -> Result<Option<Stored>> {
        check_name(name)?;
        match self.profile_versions(name)?.last() {
            Some(v) => self.profile_version(name, *v).map(Some),
            None => Ok(None),
        }
    }

    /// Version `version` of profile `name`.
    pub fn profile_version(&self, name: &str, version: u64) -> Result<Stored> {
        let rel = key(name, version);
        let bytes = self.get_bytes(&rel)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::data(self.show(&rel), "not UTF-8 text: not a profile"))?;
        Ok(Stored { version, text })
    }

    /// Writes `text` as version `version` of profile `name`, create-only:
    /// false when that version is there already (another machine published
    /// it first), and nothing is written. Then removes versions older than
    /// the last [`KEEP`].
    pub fn publish_profile(&self, name: &str, version: u64, text: &str) -> Result<bool> {
        check_name(name)?;
        let data = Bytes::from(text.to_string());
        let sha = snap_shared::hash::Sha256Digest::of(&data).to_hex();
        if self.put_new(&key(name, version), data, &sha)?.is_none() {
            return Ok(false);
        }
        let vs = self.profile_versions(name)?;
        let old: Vec<String> = vs
            .iter()
            .take(vs.len().saturating_sub(KEEP))
            .map(|v| key(name, *v))
            .collect();
        if !old.is_empty() {
            self.delete_many(&old)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DestSpec, Reach};

    fn folder() -> (tempfile::TempDir, Dest) {
        let t = tempfile::tempdir().unwrap();
        let spec = DestSpec::from_url(&t.path().display().to_string()).unwrap();
        let d = Dest::open(&spec, &crate::runtime().unwrap(), &Reach::default(), true).unwrap();
        (t, d)
    }

    /// Versions are create-only: the second machine to publish a number is
    /// refused and the first one's text stays; the newest is the profile;
    /// old versions past KEEP go.
    #[test]
    fn versions_are_written_once_and_the_newest_wins() {
        let (_t, d) = folder();
        assert_eq!(d.profile("home").unwrap(), None);
        assert!(d.publish_profile("home", 1, "one").unwrap());
        assert!(!d.publish_profile("home", 1, "other").unwrap(), "taken");
        assert_eq!(d.profile("home").unwrap().unwrap().text, "one");
        for v in 2..=12 {
            assert!(d.publish_profile("home", v, &format!("v{v}")).unwrap());
        }
        assert_eq!(
            d.profile("home").unwrap().unwrap(),
            Stored {
                version: 12,
                text: "v12".into()
            }
        );
        assert_eq!(
            d.profile_versions("home").unwrap(),
            (3..=12).collect::<Vec<_>>()
        );
        assert!(d.publish_profile("work", 1, "w").unwrap());
        assert_eq!(
            d.profiles().unwrap(),
            vec![("home".to_string(), 12), ("work".to_string(), 1)]
        );
        assert!(d.profile("../x").is_err());
    }
}
