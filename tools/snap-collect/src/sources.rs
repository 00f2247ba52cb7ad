//! Which sets to collect and where each source lands in the snapshot tree.
//!
//! A source is stored under its absolute, canonical path without the leading
//! `/` (`/home/me/.config` → `home/me/.config/`), as tar, borg and restic do:
//! several sources never collide and a restore knows where each came from.
//! The source itself is followed if it is a symlink (the user named it);
//! symlinks inside it never are.

use std::path::{Path, PathBuf};

use snap_shared::config::{LoadedConfig, expand_tilde};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::index::cmp_paths;
use snap_shared::size::Floor;

/// One source of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Canonical absolute path.
    pub abs: PathBuf,
    /// Where it lands in the snapshot: `abs` without its leading `/` (empty for `/`).
    pub rel: Vec<u8>,
}

/// An exclusion pattern and where it came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub text: String,
    pub origin: String,
}

/// Everything needed to collect one set.
#[derive(Debug, Clone)]
pub struct SetPlan {
    pub name: String,
    /// As written by the user, for the record.
    pub named_sources: Vec<String>,
    pub sources: Vec<Source>,
    pub patterns: Vec<Pattern>,
    pub one_file_system: bool,
    pub tags: Vec<String>,
}

/// What the command line asked for, reduced to what planning needs.
pub struct Request<'a> {
    pub config: Option<&'a LoadedConfig>,
    pub sets: &'a [String],
    pub adhoc_name: Option<&'a str>,
    pub paths: &'a [PathBuf],
    pub excludes: &'a [String],
    pub one_file_system: bool,
    pub tags: &'a [String],
}

/// Turns the request into set plans, checking every source exists (exit 66).
/// Returns the plans and notes to print (sources folded into others).
pub fn plan(req: &Request) -> Result<(Vec<SetPlan>, Vec<String>)> {
    let cli_patterns = req.excludes.iter().enumerate().map(|(i, p)| Pattern {
        text: p.clone(),
        origin: format!("--exclude #{}", i + 1),
    });
    let mut notes = Vec::new();
    let mut plans = Vec::new();
    if let Some(name) = req.adhoc_name {
        snap_shared::id::check_name(name).map_err(|e| Error::usage("--name", e))?;
        let named: Vec<String> = req
            .paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let (sources, n) = resolve(
            name,
            &req.paths.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        )?;
        notes.extend(n);
        plans.push(SetPlan {
            name: name.to_string(),
            named_sources: named,
            sources,
            patterns: cli_patterns.collect(),
            one_file_system: req.one_file_system,
            tags: req.tags.to_vec(),
        });
        return Ok((plans, notes));
    }
    let loaded = req
        .config
        .expect("a config is loaded when no --name is given");
    let config = &loaded.config;
    for wanted in req.sets {
        if config.set(wanted).is_none() {
            let known: Vec<&str> = config.backup_sets.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::usage(
                format!("--set {wanted}"),
                format!("no such set in {}", loaded.path.display()),
            )
            .with_hint(format!("configured sets: {}", known.join(", "))));
        }
    }
    if config.backup_sets.is_empty() {
        return Err(Error::config(
            format!("config {}", loaded.path.display()),
            "no backup_sets to collect",
        )
        .with_hint("add a set, or collect paths directly: snap-collect --name NAME PATH..."));
    }
    for (i, set) in config.backup_sets.iter().enumerate() {
        if !req.sets.is_empty() && !req.sets.contains(&set.name) {
            continue;
        }
        let expanded: Vec<PathBuf> = set.sources.iter().map(|s| expand_tilde(s)).collect();
        let (sources, n) = resolve(
            &set.name,
            &expanded.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        )?;
        notes.extend(n);
        let mut patterns: Vec<Pattern> = set
            .exclusions
            .iter()
            .enumerate()
            .map(|(j, p)| Pattern {
                text: p.clone(),
                origin: format!("backup_sets[{i}].exclusions[{j}]"),
            })
            .collect();
        patterns.extend(cli_patterns.clone());
        let mut tags = set.tags.clone();
        tags.extend(req.tags.iter().cloned());
        plans.push(SetPlan {
            name: set.name.clone(),
            named_sources: set.sources.clone(),
            sources,
            patterns,
            one_file_system: set.one_file_system || req.one_file_system,
            tags,
        });
    }
    Ok((plans, notes))
}

/// Canonicalizes sources, sorts them in index order and folds nested ones.
fn resolve(set: &str, named: &[&Path]) -> Result<(Vec<Source>, Vec<String>)> {
    let mut sources = Vec::new();
    for path in named {
        let abs = std::fs::canonicalize(path)
            .map_err(|e| Error::io(path, e).within(format!("set {set}: source")))?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(abs.as_os_str());
        let rel = bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec();
        sources.push(Source { abs, rel });
    }
    sources.sort_by(|a, b| cmp_paths(&a.rel, &b.rel));
    let mut notes = Vec::new();
    let mut kept: Vec<Source> = Vec::new();
    for src in sources {
        if let Some(outer) = kept.iter().find(|k| src.abs.starts_with(&k.abs)) {
            if outer.abs != src.abs {
                notes.push(format!(
                    "set {set}: source {} is inside {}; it is collected once",
                    src.abs.display(),
                    outer.abs.display()
                ));
            }
            continue;
        }
        kept.push(src);
    }
    Ok((kept, notes))
}

/// The free-space floor from `--min-free`, else the config, else the default.
pub fn floor(flag: Option<&str>, config: Option<&LoadedConfig>) -> Result<Floor> {
    if let Some(f) = flag {
        return Floor::parse(f).map_err(|e| Error::usage("--min-free", e));
    }
    match config.and_then(|c| c.config.collect.min_free.as_deref()) {
        Some(f) => Floor::parse(f).map_err(|e| Error::new(Exit::Config, "collect.min_free", e)),
        None => Ok(Floor::DEFAULT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sources land at their absolute path, sorted, with nested ones folded in.
    #[test]
    fn sources_are_sorted_and_folded() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for d in ["a/inner", "b"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let named = [root.join("b"), root.join("a/inner"), root.join("a")];
        let refs: Vec<&Path> = named.iter().map(|p| p.as_path()).collect();
        let (sources, notes) = resolve("s", &refs).unwrap();
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].abs, root.join("a"));
        assert_eq!(sources[1].abs, root.join("b"));
        assert!(
            sources[0]
                .rel
                .starts_with(&root.as_os_str().as_encoded_bytes()[1..])
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("is inside"));
    }

    /// A missing source is exit 66 naming the set and the path.
    #[test]
    fn missing_source_is_no_input() {
        let err = resolve("data", &[Path::new("/nonexistent/snap-test")]).unwrap_err();
        assert_eq!(err.exit, Exit::NoInput);
        assert_eq!(
            err.to_string(),
            "set data: source: /nonexistent/snap-test: No such file or directory"
        );
    }
}
