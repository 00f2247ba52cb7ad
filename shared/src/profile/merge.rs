//! Three-way merge of profiles, key by key: a machine's shared keys
//! (mine), the destination's newest version (theirs), and the version the
//! machine took or published last (the base). A key changed on one side
//! only takes that side's value by itself; a key both sides changed to
//! different values is a conflict, never resolved silently: it is shown
//! with its three values, and `--mine` or `--theirs` chooses.
//!
//! Keys are units a person edits: each set by name (`backup_sets.NAME`),
//! each destination by name, each disk by its image or domain, and the
//! other top-level keys whole (`schedule`, `retention`, `notify`, `collect`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Which side wins the conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Mine,
    Theirs,
}

impl Side {
    /// The side `--mine` or `--theirs` chose, if either (clap keeps them apart).
    pub fn chosen(mine: bool, theirs: bool) -> Option<Side> {
        match (mine, theirs) {
            (true, _) => Some(Side::Mine),
            (_, true) => Some(Side::Theirs),
            _ => None,
        }
    }
}

/// A key both sides changed, with its three values (none: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub key: String,
    pub base: Option<Value>,
    pub mine: Option<Value>,
    pub theirs: Option<Value>,
}

/// What a merge gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub config: Map<String, Value>,
    /// Keys taken from theirs (changed there only, or chosen).
    pub theirs: Vec<String>,
    /// Keys kept from mine that differ from theirs.
    pub mine: Vec<String>,
    /// Conflicts left (none when a side was chosen).
    pub conflicts: Vec<Conflict>,
}

/// The array keys merged element by element, and what names an element.
fn element_name(key: &str, v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    match key {
        "backup_sets" | "destinations" => s("name"),
        "disks" => s("image").or_else(|| {
            s("domain").map(|d| match s("target") {
                Some(t) => format!("{d}:{t}"),
                None => d,
            })
        }),
        _ => None,
    }
}

/// A config's keys as units, in order.
pub fn units(config: &Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (k, v) in config {
        match (k.as_str(), v.as_array()) {
            ("backup_sets" | "destinations" | "disks", Some(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let name = element_name(k, item).unwrap_or_else(|| format!("#{i}"));
                    out.push((format!("{k}.{name}"), item.clone()));
                }
            }
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// Units back into a config: arrays in the order their elements come.
pub fn from_units(units: &[(String, Value)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in units {
        match k.split_once('.') {
            Some((top @ ("backup_sets" | "destinations" | "disks"), _)) => {
                let arr = out
                    .entry(top.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Some(a) = arr.as_array_mut() {
                    a.push(v.clone());
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Merges `mine` and `theirs` against `base`; `prefer` settles the
/// conflicts. Without a base (nothing was ever taken or published here), a
/// key one side lacks is the other side's, and a key both have with
/// different values is a conflict.
pub fn merge(
    base: Option<&Map<String, Value>>,
    mine: &Map<String, Value>,
    theirs: &Map<String, Value>,
    prefer: Option<Side>,
) -> Merged {
    let b: BTreeMap<String, Value> = base.map(units).unwrap_or_default().into_iter().collect();
    let m_units = units(mine);
    let t_units = units(theirs);
    let m: BTreeMap<&str, &Value> = m_units.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t: BTreeMap<&str, &Value> = t_units.iter().map(|(k, v)| (k.as_str(), v)).collect();
    // Every key, in mine's order, then theirs' new ones.
    let mut order: Vec<&str> = m_units.iter().map(|(k, _)| k.as_str()).collect();
    order.extend(
        t_units
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !m.contains_key(k)),
    );
    let mut out = Merged {
        config: Map::new(),
        theirs: Vec::new(),
        mine: Vec::new(),
        conflicts: Vec::new(),
    };
    let mut kept: Vec<(String, Value)> = Vec::new();
    for k in order {
        let (mv, tv, bv) = (m.get(k).copied(), t.get(k).copied(), b.get(k));
        let take = |v: Option<&Value>, kept: &mut Vec<(String, Value)>| {
            if let Some(v) = v {
                kept.push((k.to_string(), v.clone()));
            }
        };
        let no_base = base.is_none();
        if mv == tv {
            take(mv, &mut kept);
        } else if (!no_base && mv == bv) || (no_base && mv.is_none()) {
            take(tv, &mut kept);
            out.theirs.push(k.to_string());
        } else if (!no_base && tv == bv) || (no_base && tv.is_none()) {
            take(mv, &mut kept);
            out.mine.push(k.to_string());
        } else {
            match prefer {
                Some(Side::Theirs) => {
                    take(tv, &mut kept);
                    out.theirs.push(k.to_string());
                }
                Some(Side::Mine) => {
                    take(mv, &mut kept);
                    out.mine.push(k.to_string());
                }
                None => {
                    take(mv, &mut kept);
                    out.conflicts.push(Conflict {
                        key: k.to_string(),
                        base: bv.cloned(),
                        mine: mv.cloned(),
                        theirs: tv.cloned(),
                    });
                }
            }
        }
    }
    out.config = from_units(&kept);
    out
}

/// The conflicts as the refusal shows them: per key, its three values.
pub fn show(conflicts: &[Conflict], mine: &str, theirs: &str) -> String {
    let v = |x: &Option<Value>| match x {
        Some(v) => v.to_string(),
        None => "(absent)".to_string(),
    };
    let mut out = String::new();
    for c in conflicts {
        out.push_str(&format!(
            "  {}\n    base:   {}\n    {mine}: {}\n    {theirs}: {}\n",
            c.key,
            v(&c.base),
            v(&c.mine),
            v(&c.theirs)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// One-sided changes merge by themselves (a set edited here, another
    /// added there, a schedule changed there); a key both changed is a
    /// conflict with its three values; --mine and --theirs settle it.
    #[test]
    fn one_sided_changes_merge_and_both_sided_ones_conflict() {
        let base = map(json!({
            "backup_sets": [{"name": "a", "sources": ["~/a"]}, {"name": "b", "sources": ["~/b"]}],
            "schedule": {"incremental": "daily"}, "notify": "n"}));
        let mine = map(json!({
            "backup_sets": [{"name": "a", "sources": ["~/a", "~/a2"]}, {"name": "b", "sources": ["~/b"]}],
            "schedule": {"incremental": "daily"}, "notify": "mine"}));
        let theirs = map(json!({
            "backup_sets": [{"name": "a", "sources": ["~/a"]}, {"name": "b", "sources": ["~/b"]},
                            {"name": "c", "sources": ["~/c"]}],
            "schedule": {"incremental": "hourly"}, "notify": "theirs"}));
        let m = merge(Some(&base), &mine, &theirs, None);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].key, "notify");
        assert_eq!(m.conflicts[0].base, Some(json!("n")));
        assert_eq!(
            m.config["backup_sets"][0]["sources"],
            json!(["~/a", "~/a2"])
        );
        assert_eq!(m.config["backup_sets"][2]["name"], "c");
        assert_eq!(m.config["schedule"], json!({"incremental": "hourly"}));
        assert_eq!(m.theirs, ["schedule", "backup_sets.c"]);
        assert_eq!(m.mine, ["backup_sets.a"]);
        let shown = show(&m.conflicts, "mine", "theirs");
        assert_eq!(
            shown,
            "  notify\n    base:   \"n\"\n    mine: \"mine\"\n    theirs: \"theirs\"\n"
        );
        assert_eq!(
            merge(Some(&base), &mine, &theirs, Some(Side::Theirs)).config["notify"],
            "theirs"
        );
        let m = merge(Some(&base), &mine, &theirs, Some(Side::Mine));
        assert!(m.conflicts.is_empty());
        assert_eq!(m.config["notify"], "mine");
        // A set removed on one side only goes.
        let gone = map(json!({"backup_sets": [{"name": "a", "sources": ["~/a"]}],
            "schedule": {"incremental": "daily"}, "notify": "n"}));
        let m = merge(Some(&base), &base, &gone, None);
        assert_eq!(m.config["backup_sets"].as_array().unwrap().len(), 1);
        assert_eq!(m.theirs, ["backup_sets.b"]);
        // Without a base a key one side lacks is the other's; a key both
        // have with other values is a conflict.
        let m = merge(None, &mine, &theirs, None);
        assert_eq!(m.conflicts.len(), 3);
        assert_eq!(m.theirs, ["backup_sets.c"]);
    }
}
