//! Exclusions: gitignore-style patterns from the config, `--exclude`, and
//! `.snapignore` files.
//!
//! Config and `--exclude` patterns are relative to each source, as a
//! `.gitignore` at the source's top would be: `*.log` anywhere, `tmp/*` and
//! `/build` at the top of the source. A pattern that is an absolute path inside
//! a source (`~/.config/Code/Cache/*`, as the planning document writes) is
//! anchored at that path. `.snapignore` files work like `.gitignore` files in
//! their directory and override the config (deeper files win, `!` re-includes).
//! `.gitignore` files themselves are ignored on purpose: a backup does not skip
//! what git skips unless a pattern says so.

use std::path::Path;

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use snap_shared::config::expand_tilde;
use snap_shared::error::{Error, Exit, Result};

use crate::sources::Pattern;

/// The name of the per-directory ignore file.
pub const IGNORE_FILE: &str = ".snapignore";

/// Builds the matcher of the config and command-line patterns for one source.
pub fn source_matcher(source: &Path, patterns: &[Pattern]) -> Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(source);
    for p in patterns {
        let Some(line) = anchor(source, &p.text) else {
            continue;
        };
        builder.add_line(None, &line).map_err(|e| {
            let exit = if p.origin.starts_with("--") {
                Exit::Usage
            } else {
                Exit::Config
            };
            Error::new(
                exit,
                p.origin.clone(),
                format!("bad pattern {:?}: {e}", p.text),
            )
        })?;
    }
    builder
        .build()
        .map_err(|e| Error::config("exclusions", e.to_string()))
}

/// Rewrites one pattern for a source: `~` expanded, absolute paths inside the
/// source anchored at it. `None` when the pattern names the source itself.
fn anchor(source: &Path, text: &str) -> Option<String> {
    let (neg, body) = match text.strip_prefix('!') {
        Some(rest) => ("!", rest),
        None => ("", text),
    };
    let expanded = if body.starts_with("~/") {
        expand_tilde(body).to_string_lossy().into_owned()
    } else {
        body.to_string()
    };
    if expanded.starts_with('/') && source != Path::new("/") {
        let as_path = Path::new(expanded.trim_end_matches('/'));
        if let Ok(inner) = as_path.strip_prefix(source) {
            if inner.as_os_str().is_empty() {
                return None;
            }
            let dir_only = if expanded.ends_with('/') { "/" } else { "" };
            return Some(format!("{neg}/{}{dir_only}", inner.to_string_lossy()));
        }
    }
    Some(format!("{neg}{expanded}"))
}

/// Reads a `.snapignore`; a bad line is reported and the rest still applies.
pub fn read_ignore_file(dir: &Path) -> (Option<Gitignore>, Option<String>) {
    let path = dir.join(IGNORE_FILE);
    let mut builder = GitignoreBuilder::new(dir);
    let warning = builder
        .add(&path)
        .map(|e| format!("{}: {e}", path.display()));
    match builder.build() {
        Ok(gi) if gi.is_empty() => (None, warning),
        Ok(gi) => (Some(gi), warning),
        Err(e) => (None, Some(format!("{}: {e}", path.display()))),
    }
}

/// Decides with the deepest matcher that has an opinion, `.snapignore`s first.
pub fn is_excluded<'a>(
    path: &Path,
    is_dir: bool,
    ignore_files: impl Iterator<Item = &'a Gitignore>,
    source: &Gitignore,
) -> bool {
    for gi in ignore_files {
        match gi.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
    }
    source.matched(path, is_dir).is_ignore()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter()
            .map(|t| Pattern {
                text: t.to_string(),
                origin: "test".into(),
            })
            .collect()
    }

    fn excluded(m: &Gitignore, path: &str, dir: bool) -> bool {
        is_excluded(Path::new(path), dir, std::iter::empty(), m)
    }

    /// Patterns are relative to the source, like a .gitignore at its top.
    #[test]
    fn patterns_are_relative_to_the_source() {
        let m = source_matcher(Path::new("/data"), &pats(&["tmp/*", "*.log", "/build"])).unwrap();
        assert!(excluded(&m, "/data/tmp/x", false));
        assert!(!excluded(&m, "/data/a/tmp/x", false));
        assert!(excluded(&m, "/data/a/b.log", false));
        assert!(excluded(&m, "/data/build", true));
        assert!(!excluded(&m, "/data/a/build", true));
        assert!(!excluded(&m, "/data/keep.txt", false));
    }

    /// The planning document's absolute, `~`-prefixed pattern anchors inside its source.
    #[test]
    fn absolute_patterns_anchor_in_their_source() {
        let home = std::env::var("HOME").unwrap();
        let src = Path::new(&home).join(".config");
        let m = source_matcher(&src, &pats(&["~/.config/Code/Cache/*"])).unwrap();
        assert!(excluded(
            &m,
            &format!("{home}/.config/Code/Cache/blob"),
            false
        ));
        assert!(!excluded(
            &m,
            &format!("{home}/.config/Code/User/settings.json"),
            false
        ));
    }

    /// A bad glob names where it came from.
    #[test]
    fn bad_glob_is_named() {
        let bad = vec![Pattern {
            text: "{a,b".into(),
            origin: "backup_sets[0].exclusions[2]".into(),
        }];
        let err = source_matcher(Path::new("/d"), &bad).unwrap_err();
        assert_eq!(err.exit, Exit::Config);
        assert_eq!(err.context, "backup_sets[0].exclusions[2]");
    }

    /// A .snapignore overrides the config, and `!` re-includes.
    #[test]
    fn snapignore_overrides_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(IGNORE_FILE), "cache/\n!important.log\n").unwrap();
        let (local, warn) = read_ignore_file(dir.path());
        assert!(warn.is_none());
        let local = local.unwrap();
        let cfg = source_matcher(dir.path(), &pats(&["*.log"])).unwrap();
        let check = |p: &str, d| is_excluded(&dir.path().join(p), d, std::iter::once(&local), &cfg);
        assert!(check("cache", true));
        assert!(check("x.log", false));
        assert!(!check("important.log", false));
        assert!(!check("notes.txt", false));
    }
}
