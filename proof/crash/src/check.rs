//! What the scenarios check: trees compared by content and metadata, what a
//! store or destination lists, and that each listed item verifies.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::Value;
use snap_shared::hash::Sha256Digest;

use crate::sweep::{Check, World};

/// Every entry under `root`: kind, mode, size, mtime, content digest or link target.
pub fn tree(root: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries {
            let p = e.map_err(|e| e.to_string())?.path();
            let m = fs::symlink_metadata(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            let what = if m.is_dir() {
                stack.push(p.clone());
                format!("dir {:o}", m.mode() & 0o7777)
            } else if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap_or_default().display())
            } else if m.is_file() {
                let bytes = fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                format!(
                    "file {:o} {} {}.{:09} {}",
                    m.mode() & 0o7777,
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    Sha256Digest::of(&bytes).to_hex()
                )
            } else {
                format!("special {:o}", m.mode())
            };
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, what);
        }
    }
    Ok(out)
}

/// The first difference between two trees, if any.
pub fn same_tree(want: &Path, got: &Path) -> Check {
    let (a, b) = (tree(want)?, tree(got)?);
    for (name, w) in &a {
        match b.get(name) {
            None => return Err(format!("{name} is missing from {}", got.display())),
            Some(g) if g != w => return Err(format!("{name}: want {w}, got {g}")),
            Some(_) => {}
        }
    }
    if let Some(extra) = b.keys().find(|k| !a.contains_key(*k)) {
        return Err(format!("{extra} should not be in {}", got.display()));
    }
    Ok(())
}

/// Files of `root` whose bytes differ from `before` (a [`digests`] taken
/// earlier), or that are gone; files added since are not looked at.
pub fn unchanged(root: &Path, before: &BTreeMap<String, String>) -> Check {
    let now = digests(root)?;
    // Lock files are rewritten by every run; they hold no data. Nor does
    // snap-pack's `.chain-checked` (what it hashed right already), which a
    // pack rewrites before it writes its archive.
    let lock = |n: &str| n == "lock" || n.ends_with("/lock") || n.ends_with(".lock");
    let cache = |n: &str| n == ".chain-checked" || n.ends_with("/.chain-checked");
    for (name, d) in before.iter().filter(|(n, _)| !lock(n) && !cache(n)) {
        match now.get(name) {
            None => return Err(format!("{name} was removed")),
            Some(n) if n != d => return Err(format!("{name} changed")),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Digest of every regular file under `root`, by relative path.
pub fn digests(root: &Path) -> Result<BTreeMap<String, String>, String> {
    Ok(tree(root)?
        .into_iter()
        .filter(|(_, v)| v.starts_with("file"))
        .map(|(k, v)| (k, v.rsplit(' ').next().unwrap_or_default().to_string()))
        .collect())
}

/// Saves a value a later check compares with (the state is copied for each point).
pub fn remember(w: &World, name: &str, v: &BTreeMap<String, String>) -> Check {
    let text = serde_json::to_string(v).map_err(|e| e.to_string())?;
    fs::write(w.path(&format!("expect-{name}.json")), text).map_err(|e| e.to_string())
}

pub fn recall(w: &World, name: &str) -> Result<BTreeMap<String, String>, String> {
    let text = fs::read_to_string(w.path(&format!("expect-{name}.json")))
        .map_err(|e| format!("expect-{name}.json: {e}"))?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// What `snap-restore list --json` shows, with `place` (`--store S` or `--from D`).
pub fn listed(w: &World, place: &[&str]) -> Result<Vec<Value>, String> {
    let out = w.ok(w.tool("snap-restore").args(place).args(["list", "--json"]))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("list: {e}: {l}")))
        .collect()
}

/// The `set/id` names of what is listed, kind first: `snapshot s/ID`.
pub fn names(items: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{} {}/{}",
                i["kind"].as_str().unwrap_or("?"),
                str(&i["set"]),
                str(&i["id"])
            )
        })
        .collect();
    v.sort();
    v
}

fn str(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// Every listed snapshot and archive verifies: only whole ones are listed.
pub fn all_verify(w: &World, place: &[&str]) -> Check {
    for item in listed(w, place)? {
        let name = format!("{}/{}", str(&item["set"]), str(&item["id"]));
        let mut cmd = w.tool("snap-restore");
        cmd.args(place).args(["-q", "verify"]);
        match str(&item["kind"]) {
            "snapshot" => cmd.arg(&name),
            "archive" => cmd.args(["--archive", &name]),
            other => {
                return Err(format!(
                    "{name}: a {other} is listed, which this check does not know"
                ));
            }
        };
        w.ok(&mut cmd)
            .map_err(|e| format!("{name} is listed but does not verify: {e}"))?;
    }
    Ok(())
}

/// No temporary names are left (the rerun cleaned up after the kill).
pub fn no_leftovers(root: &Path, suffixes: &[&str]) -> Check {
    for name in tree(root)?.keys() {
        if suffixes.iter().any(|s| name.ends_with(s)) {
            return Err(format!("{name} is left over"));
        }
    }
    Ok(())
}
