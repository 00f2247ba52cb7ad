//! Carrying a home folder from one machine to another: a snapshot of
//! `~/.config` made on the laptop holds `home/alice/.config/…`; restored
//! with `--to ~` on the desktop, it lands in `/home/bob/.config/…`, not in
//! `/home/bob/home/alice/.config/…`.
//!
//! The home of the machine that made an item is its record's `home`
//! (snap-collect writes the `$HOME` it ran with; snap-pack copies it). An
//! older record has none: then a first entry under `home/NAME/` or `root/`
//! names it. The map applies only when every chosen entry lies in that
//! folder, or is one of the folders above it (which stay as they are: the
//! target's own mode and owner are never touched).
//!
//! It also names an item's sources, so that what a restore calls "its
//! folders" (where it lists, or with `--delete` removes, what the snapshot
//! lacks) leaves out the folders above them.

use std::path::{Path, PathBuf};

use snap_shared::crypt::Decrypt;
use snap_shared::error::Result;
use snap_shared::index::EntryType;
use snap_shared::record::Extra;

use crate::indexes::{Select, open_index};
use crate::source::Item;

/// The home folder of the machine that made an item, mapped onto a folder here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeMap {
    /// Its path in the item, without the leading `/` (`home/alice`).
    pub from: Vec<u8>,
    /// The machine that made it, when its record says.
    pub host: Option<String>,
}

/// Where an entry of the item lies against the mapped home.
#[derive(Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// Inside it: its path under the target.
    Under(&'a [u8]),
    /// The home folder itself, or a folder above it.
    AtOrAbove,
    /// Anywhere else.
    Outside,
}

impl HomeMap {
    pub fn place<'a>(&self, rel: &'a [u8]) -> Place<'a> {
        let from = self.from.as_slice();
        if rel == from || (from.starts_with(rel) && from.get(rel.len()) == Some(&b'/')) {
            return Place::AtOrAbove;
        }
        match rel.strip_prefix(from).and_then(|r| r.strip_prefix(b"/")) {
            Some(rest) => Place::Under(rest),
            None => Place::Outside,
        }
    }

    /// `home/alice (laptop's home) -> /home/bob`.
    pub fn describe(&self, onto: &Path) -> String {
        let whose = match &self.host {
            Some(h) => format!("{h}'s home"),
            None => "the home it was made in".into(),
        };
        format!(
            "{} ({whose}) -> {}",
            String::from_utf8_lossy(&self.from),
            onto.display()
        )
    }
}

/// What the map decided.
#[derive(Debug)]
pub enum Decision {
    Map(HomeMap),
    /// Not mapped, and why (entries are restored with their whole paths).
    Whole(String),
}

fn extra_of(item: &Item) -> Option<&Extra> {
    match item {
        Item::Snapshot { rec, .. } => Some(&rec.extra),
        Item::Archive { rec, .. } => Some(&rec.extra),
        Item::Foreign { .. } => None,
    }
}

/// The `$HOME` the item's maker ran with, as a path inside it (`home/alice`).
pub fn home_of(item: &Item) -> Option<Vec<u8>> {
    let home = extra_of(item)?.get("home")?.as_str()?;
    let rel = home.trim_matches('/');
    (!rel.is_empty()).then(|| rel.as_bytes().to_vec())
}

/// The item's sources as paths inside it, when its record names them.
pub fn sources_of(item: &Item) -> Option<Vec<Vec<u8>>> {
    let list: Vec<String> = match item {
        Item::Snapshot { rec, .. } => rec.sources.clone(),
        Item::Archive { rec, .. } => {
            serde_json::from_value(rec.extra.get("sources")?.clone()).ok()?
        }
        Item::Foreign { .. } => return None,
    };
    Some(
        list.iter()
            .map(|s| s.trim_matches('/').as_bytes().to_vec())
            .collect(),
    )
}

/// Whether folder `dir` of the item only leads to its sources (it is above
/// them all, inside none): a restore does not count it as one of its folders.
pub fn leads_to_sources(dir: &[u8], sources: &[Vec<u8>]) -> bool {
    let inside = |s: &[u8]| dir == s || dir.strip_prefix(s).is_some_and(|r| r.starts_with(b"/"));
    let above =
        |s: &[u8]| dir.is_empty() || s.strip_prefix(dir).is_some_and(|r| r.starts_with(b"/"));
    !sources.iter().any(|s| inside(s)) && sources.iter().any(|s| above(s))
}

/// A home folder named by the first entry of an older record: `home/NAME` or `root`.
fn guessed(path: &[u8]) -> Option<Vec<u8>> {
    let mut parts = path.splitn(3, |&c| c == b'/');
    match (parts.next()?, parts.next(), parts.next()) {
        (b"root", Some(_), _) => Some(b"root".to_vec()),
        (b"home", Some(name), Some(_)) => Some([b"home/", name].concat()),
        _ => None,
    }
}

/// Whether the chosen entries of `item` restored into `onto` (which is
/// `$HOME` here) map from the home they were made in.
pub fn decide(item: &Item, select: &Select, dec: &Decrypt) -> Result<Decision> {
    let Some(index) = item.index() else {
        return Ok(Decision::Whole(
            "a tar snap did not make says nothing of its home".into(),
        ));
    };
    let host = crate::view::host_of(item);
    let mut map = home_of(item).map(|from| HomeMap {
        from,
        host: host.clone(),
    });
    let mut reader = open_index(&index, dec)?;
    let mut any = false;
    // Folders met before an older record's home is known, checked once it is.
    let mut pending: Vec<snap_shared::index::Entry> = Vec::new();
    while let Some(e) = reader.next_entry()? {
        if !select.wants(&e.path) {
            continue;
        }
        if map.is_none() {
            match guessed(&e.path) {
                Some(from) => {
                    map = Some(HomeMap {
                        from,
                        host: host.clone(),
                    })
                }
                None if e.kind == EntryType::Dir => {
                    pending.push(e);
                    continue;
                }
                None => {
                    return Ok(Decision::Whole(format!(
                        "{} is in no home folder",
                        e.display_path()
                    )));
                }
            }
        }
        let m = map.as_ref().expect("set above");
        for e in pending.drain(..).chain(std::iter::once(e)) {
            match m.place(&e.path) {
                Place::Under(_) => any = true,
                Place::AtOrAbove if e.kind == EntryType::Dir => {}
                _ => {
                    return Ok(Decision::Whole(format!(
                        "{} lies outside {}",
                        e.display_path(),
                        String::from_utf8_lossy(&m.from)
                    )));
                }
            }
        }
    }
    Ok(match (map, any) {
        (Some(m), true) => Decision::Map(m),
        _ => Decision::Whole("nothing chosen lies inside a home folder".into()),
    })
}

/// For a restore into `onto`, this user's home: the home folder the item
/// was made in, put onto it (said on stderr), or, when its chosen paths do
/// not all lie in one, none, with a warning that says why (they keep their
/// whole paths). Only after the item's records are believed: it reads the index.
pub fn for_restore(
    item: &Item,
    paths: &[String],
    onto: &Path,
    dec: &Decrypt,
    report: &snap_cli::Reporter,
) -> Result<Option<HomeMap>> {
    match decide(item, &Select::new(paths)?, dec)? {
        Decision::Map(m) => {
            let real = std::fs::canonicalize(onto).unwrap_or_else(|_| onto.to_path_buf());
            report.note(&m.describe(&real));
            Ok(Some(m))
        }
        Decision::Whole(why) => {
            report.warn(&format!(
                "{} is your home, but {why}: the snapshot's whole paths are kept under it (--full-paths)",
                onto.display()
            ));
            Ok(None)
        }
    }
}

/// Whether `to` is this user's home folder (`$HOME`, symlinks followed).
pub fn is_home(to: &Path) -> bool {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return false;
    };
    match (std::fs::canonicalize(to), std::fs::canonicalize(&home)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The home itself and the folders above it stay; paths inside map; others are outside.
    #[test]
    fn places() {
        let m = HomeMap {
            from: b"home/alice".to_vec(),
            host: None,
        };
        assert_eq!(m.place(b"home"), Place::AtOrAbove);
        assert_eq!(m.place(b"home/alice"), Place::AtOrAbove);
        assert_eq!(m.place(b"home/alice/.config/x"), Place::Under(b".config/x"));
        assert_eq!(m.place(b"home/alicex"), Place::Outside);
        assert_eq!(m.place(b"home/bob/x"), Place::Outside);
        assert_eq!(m.place(b"etc"), Place::Outside);
    }

    /// Folders above the sources lead to them; the sources and what they hold do not.
    #[test]
    fn folders_above_sources() {
        let s = vec![b"home/a/.config".to_vec(), b"home/a/env.sh".to_vec()];
        assert!(leads_to_sources(b"", &s));
        assert!(leads_to_sources(b"home", &s));
        assert!(leads_to_sources(b"home/a", &s));
        assert!(!leads_to_sources(b"home/a/.config", &s));
        assert!(!leads_to_sources(b"home/a/.config/app", &s));
        assert!(!leads_to_sources(b"etc", &s));
    }

    /// An older record's home is guessed from home/NAME/ or root/.
    #[test]
    fn guesses() {
        assert_eq!(guessed(b"home/alice/.bashrc"), Some(b"home/alice".to_vec()));
        assert_eq!(guessed(b"root/.bashrc"), Some(b"root".to_vec()));
        assert_eq!(guessed(b"home/alice"), None);
        assert_eq!(guessed(b"etc/x"), None);
    }
}
