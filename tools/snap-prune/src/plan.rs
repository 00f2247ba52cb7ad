//! The plan for one set at one target: the policy's verdicts, plus what the
//! policy cannot know.
//!
//! - An incremental archive is worthless without its chain, so every base a
//!   kept archive needs is kept too ("base of ID"), however old. Records are
//!   read only for kept archives and their bases (and for every one when a
//!   tag rule needs tags), so planning a thousand archives at a bucket costs
//!   a listing and a handful of requests.
//! - An incomplete snapshot or archive (a record whose tree or data is gone:
//!   an interrupted prune) takes no slot in the policy and is removed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use snap_shared::error::{Error, Result};

use crate::target::Target;
use snap_shared::retention::listing::{Entry, Group, Info};
use snap_shared::retention::policy::Candidate;
use snap_shared::retention::tagged::Rules;

/// What happens to one entry of the group (same order as the group's entries).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub keep: bool,
    pub reasons: Vec<String>,
    /// Why it is removed whatever the rules say, or what is wrong with a kept one.
    pub problem: Option<String>,
}

/// Decides a group. `warn` hears about kept archives whose chain is broken.
pub fn plan(
    target: &Target,
    group: &Group,
    policy: &Rules,
    now: DateTime<Utc>,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Decision>> {
    let whole: Vec<usize> = (0..group.entries.len())
        .filter(|&i| readable(&group.entries[i]))
        .collect();
    let mut infos: HashMap<usize, Info> = HashMap::new();
    if policy.needs_tags() {
        load(target, group, &whole, &mut infos)?;
    }
    let no_tags = Vec::new();
    let candidates: Vec<Candidate> = whole
        .iter()
        .map(|i| Candidate {
            time: group.entries[*i].time,
            tags: infos.get(i).map_or(&no_tags, |info| &info.tags),
            // A pin outranks every rule (but not damage: a broken one still goes).
            pinned: group.entries[*i].pinned,
        })
        .collect();
    let verdicts = policy.apply(&candidates, now);
    let mut decisions: Vec<Decision> = group
        .entries
        .iter()
        .map(|e| Decision {
            // What cannot be read cannot be proved incomplete or old enough.
            keep: e.unreadable.is_some(),
            reasons: match e.unreadable {
                Some(_) => vec!["its record cannot be read".to_string()],
                None => Vec::new(),
            },
            problem: e.broken.clone().or_else(|| e.unreadable.clone()),
        })
        .collect();
    for (i, v) in whole.iter().zip(verdicts) {
        decisions[*i].keep = v.keep;
        decisions[*i].reasons = v.reasons;
    }
    if let Target::Archives { .. } = target {
        keep_bases(target, group, &mut decisions, &mut infos, warn)?;
    }
    Ok(decisions)
}

/// The name `--forget` gives an entry: `SET/ID`, or `disks/DISK/NAME` for a disk snapshot.
pub fn name_of(target: &Target, group: &Group, e: &Entry) -> String {
    match target {
        Target::Disks { .. } | Target::Images(..) => format!("disks/{}/{}", group.set, e.id),
        _ => format!("{}/{}", group.set, e.id),
    }
}

/// Which entries of a group the `--forget` names name.
pub fn named_in(target: &Target, group: &Group, names: &[String]) -> Vec<bool> {
    group
        .entries
        .iter()
        .map(|e| {
            let name = name_of(target, group, e);
            names.contains(&name)
        })
        .collect()
}

/// `--forget`: removes exactly the named entries of a group, and refuses (before
/// anything is removed) a pinned one, or a base that an archive which stays needs.
pub fn forget(target: &Target, group: &Group, names: &[String]) -> Result<Vec<Decision>> {
    let named = named_in(target, group, names);
    let mut decisions: Vec<Decision> = group
        .entries
        .iter()
        .zip(&named)
        .map(|(e, n)| Decision {
            keep: !n,
            reasons: match n {
                true => Vec::new(),
                false => vec!["not named".to_string()],
            },
            problem: e.broken.clone().or_else(|| e.unreadable.clone()),
        })
        .collect();
    let what = |e: &Entry| format!("{} {}/{}", target.what(), group.set, e.id);
    for (e, n) in group.entries.iter().zip(&named) {
        if *n && e.pinned {
            return Err(Error::usage(what(e), "is pinned; nothing was removed")
                .with_hint("`snap-restore unpin` it first, if it may really go"));
        }
    }
    if let Target::Archives { .. } = target {
        let mut infos = HashMap::new();
        keep_bases(target, group, &mut decisions, &mut infos, &mut |_| {})?;
    }
    for ((e, n), d) in group.entries.iter().zip(&named).zip(&decisions) {
        if *n && d.keep {
            return Err(Error::usage(
                what(e),
                format!("is needed: {}; nothing was removed", d.reasons.join(", ")),
            )
            .with_hint("forget the archives built on it in the same run"));
        }
    }
    Ok(decisions)
}

/// Reads the records of `which` entries that are not read yet.
fn load(
    target: &Target,
    group: &Group,
    which: &[usize],
    infos: &mut HashMap<usize, Info>,
) -> Result<()> {
    for &i in which {
        if let Some(info) = &group.entries[i].info {
            infos.entry(i).or_insert_with(|| info.clone());
        }
    }
    let mut missing: Vec<usize> = which
        .iter()
        .copied()
        .filter(|i| !infos.contains_key(i))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = missing
        .iter()
        .map(|&i| group.entries[i].id.as_str())
        .collect();
    for (i, info) in missing.into_iter().zip(target.infos(&group.set, &ids)?) {
        infos.insert(i, info);
    }
    Ok(())
}

/// Whole, with a record that can be read: what the rules decide.
fn readable(e: &Entry) -> bool {
    e.broken.is_none() && e.unreadable.is_none()
}

/// Keeps, generation by generation, the base of every kept archive.
fn keep_bases(
    target: &Target,
    group: &Group,
    decisions: &mut [Decision],
    infos: &mut HashMap<usize, Info>,
    warn: &mut dyn FnMut(String),
) -> Result<()> {
    let by_id: HashMap<&str, usize> = group
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let mut frontier: Vec<usize> = (0..decisions.len())
        .filter(|&i| decisions[i].keep && readable(&group.entries[i]))
        .collect();
    while !frontier.is_empty() {
        load(target, group, &frontier, infos)?;
        // One request round a generation is slow at a bucket; a record's
        // `chain` says how many archives precede it in its chain, almost
        // always the ones listed just before it: read those in one round.
        let likely: Vec<usize> = frontier
            .iter()
            .flat_map(|&d| {
                let back = infos[&d].chain.unwrap_or(1).saturating_sub(1) as usize;
                d.saturating_sub(back)..d
            })
            .filter(|&i| readable(&group.entries[i]))
            .collect();
        load(target, group, &likely, infos)?;
        let mut next = Vec::new();
        for d in frontier {
            let Some(base) = infos[&d].base.clone() else {
                continue;
            };
            let dependent = &group.entries[d].id;
            let at = format!("{} {}/{dependent}", target.what(), group.set);
            match by_id.get(base.as_str()) {
                // Kept already, and its own base cannot be read from it.
                Some(&b) if group.entries[b].unreadable.is_some() => {
                    decisions[b].reasons.push(format!("base of {dependent}"));
                }
                Some(&b) if group.entries[b].broken.is_none() => {
                    if !decisions[b].keep {
                        decisions[b].keep = true;
                        next.push(b);
                    }
                    decisions[b].reasons.push(format!("base of {dependent}"));
                }
                Some(_) => warn(format!(
                    "{at}: its base {base} is incomplete; it cannot be restored, and is kept for what it holds"
                )),
                None => warn(format!(
                    "{at}: its base {base} is not at {}; it cannot be restored, and is kept for what it holds",
                    target.location()
                )),
            }
        }
        frontier = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use snap_shared::retention::policy::{Count, Policy};

    /// Archives in a folder: (id, base, recorded chain length).
    fn folder_target(dir: &std::path::Path, archives: &[(&str, Option<&str>, u64)]) -> Target {
        let set = dir.join("d");
        std::fs::create_dir_all(&set).unwrap();
        for (id, base, chain) in archives {
            std::fs::write(set.join(format!("{id}.tar.zst")), b"data").unwrap();
            let rec = serde_json::json!({"kind": "archive", "schema": "snap/1", "set": "d", "id": id,
                "source": id, "path": "/x", "bytes": 4, "sha256": "00", "compression": "zstd",
                "encryption": null, "base": base, "index": "/i", "chain": chain});
            std::fs::write(set.join(format!("{id}.json")), rec.to_string()).unwrap();
        }
        let spec = snap_dest::DestSpec::from_url(&dir.display().to_string()).unwrap();
        let rt = snap_dest::runtime().unwrap();
        let dest = snap_dest::Dest::open(&spec, &rt, &snap_dest::Reach::default(), false).unwrap();
        Target::Archives { dest, store: None }
    }

    /// The recorded chain length only decides what is read ahead: a wrong one
    /// (too long, too short) changes nothing, the `base` links decide.
    #[test]
    fn chain_lengths_read_ahead_but_bases_decide() {
        let dir = tempfile::tempdir().unwrap();
        let ids = [
            "2026-05-01T000000Z",
            "2026-05-02T000000Z",
            "2026-05-03T000000Z",
            "2026-05-04T000000Z",
            "2026-05-05T000000Z",
        ];
        let target = folder_target(
            dir.path(),
            &[
                (ids[0], None, 1),
                (ids[1], Some(ids[0]), 9),
                (ids[2], None, 1),
                (ids[3], Some(ids[1]), 1),
                (ids[4], Some(ids[3]), 2),
            ],
        );
        let group = &target.scan(None).unwrap()[0];
        let policy = Rules::from(Policy {
            last: Some(Count::N(1)),
            ..Policy::default()
        });
        let mut warnings = Vec::new();
        let decisions = plan(&target, group, &policy, chrono::Utc::now(), &mut |w| {
            warnings.push(w)
        })
        .unwrap();
        let kept: Vec<bool> = decisions.iter().map(|d| d.keep).collect();
        assert_eq!(kept, [true, true, false, true, true]);
        assert_eq!(decisions[1].reasons, [format!("base of {}", ids[3])]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
