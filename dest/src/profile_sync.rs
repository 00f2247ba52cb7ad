//! Publishing and taking a profile: the local config against a
//! destination's newest version, merged three ways with the version this
//! machine last took or published (snap_shared::profile::merge). Both
//! snap-push (`--profile`) and snap-restore (`profile take`) go through here.
//!
//! The version a machine last saw is remembered in its state folder
//! (`STATE/profiles/DEST/NAME.json`: the version's number and its shared
//! keys), the base of the next merge. Both directions refuse (75) while a
//! key changed on both sides, showing the three values; `--mine` or
//! `--theirs` settles. A publish also takes what changed at the destination
//! only, so that this machine's config and the profile agree afterwards.
//!
//! The local config is rewritten only where the profile's keys go; what
//! belongs to this machine stays (the store, signing, a destination's
//! credentials and path, a disk's sockets). The file is written atomically,
//! the old one kept beside it (`config.json.before-profile-TIME`), and its
//! comments are not kept.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use snap_shared::error::{Error, Exit, Result};
use snap_shared::profile::merge::{self, Side};
use snap_shared::profile::{self, Profile, Published, SCHEMA};

use crate::dest::Dest;

/// What one publish or take is asked.
pub struct Request<'a> {
    pub name: &'a str,
    pub dest: &'a Dest,
    /// The destination's name in the config (the state's folder).
    pub dest_name: &'a str,
    pub config: &'a Path,
    pub state_dir: &'a Path,
    pub prefer: Option<Side>,
    /// Take only these sets (and nothing else).
    pub sets: Option<&'a [String]>,
    pub host: &'a str,
    pub tool: &'a str,
}

/// What it did.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// The profile's version now.
    pub version: u64,
    pub published: bool,
    /// The keys the local config took from the destination.
    pub taken: Vec<String>,
    /// The keys of this machine's that the profile now has.
    pub given: Vec<String>,
    /// The old config, kept when it was rewritten.
    pub kept_as: Option<PathBuf>,
    /// Destinations the profile names without a place (a drive, a folder)
    /// that this machine does not define: left out of the local config.
    pub missing: Vec<String>,
}

/// The error for what a take (or a publish taking keys) left out: 64,
/// after everything else was done.
pub fn left_out(name: &str, missing: &[String]) -> Error {
    Error::new(
        Exit::Usage,
        format!("profile {name}"),
        format!(
            "destination(s) {} are a drive or folder on the machine that published it; they were left out",
            missing.join(", ")
        ),
    )
    .with_hint("add each to this machine's config with its path (or uuid), then take again")
}

/// What a machine remembers of a profile.
#[derive(Debug, Serialize, Deserialize)]
struct Seen {
    version: u64,
    config: Map<String, Value>,
}

fn state_path(r: &Request) -> PathBuf {
    r.state_dir
        .join("profiles")
        .join(r.dest_name.replace('/', "_"))
        .join(format!("{}.json", r.name))
}

fn seen(r: &Request) -> Result<Option<Seen>> {
    let p = state_path(r);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::data(p.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&p, e)),
    }
}

fn remember(r: &Request, version: u64, config: &Map<String, Value>) -> Result<()> {
    let p = state_path(r);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let text = serde_json::to_vec_pretty(&Seen {
        version,
        config: config.clone(),
    })
    .map_err(|e| Error::internal("profile state", e))?;
    snap_shared::fsutil::write_atomic(&p, 0o600, true, |f| std::io::Write::write_all(f, &text))
        .map_err(|e| Error::io(&p, e))
}

/// The local config as JSON (comments stripped).
fn read_config(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    // Checked as every tool checks it first: a bad config is never rewritten.
    snap_shared::config::as_json(&text).map_err(|e| e.within(format!("config {}", path.display())))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// The refusal of a merge with conflicts.
fn conflicted(r: &Request, conflicts: &[merge::Conflict], doing: &str) -> Error {
    Error::new(
        Exit::TempFail,
        format!("profile {} at {}", r.name, r.dest_name),
        format!(
            "{} key(s) changed both here and there since this machine last took or published it; nothing was changed:\n{}",
            conflicts.len(),
            merge::show(conflicts, "here  ", "there ").trim_end()
        ),
    )
    .with_hint(format!("{doing} again with --mine (keep this machine's) or --theirs (take the destination's)"))
}

/// Lays the profile's keys `shared` over the local config `local`, keeping
/// what belongs to this machine: a destination's or disk's own fields stay
/// under the profile's (a destination the profile names without a place,
/// and this machine does not define, is left out and named in `missing`).
fn apply(
    local: &Map<String, Value>,
    shared: &Map<String, Value>,
    missing: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = local.clone();
    for key in profile::SHARED_KEYS {
        let Some(v) = shared.get(*key) else {
            out.remove(*key);
            continue;
        };
        let merged = match *key {
            "destinations" | "disks" => {
                let ident = |e: &Value| -> Option<String> {
                    let o = e.as_object()?;
                    o.get("name")
                        .or_else(|| o.get("image"))
                        .or_else(|| o.get("domain"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let mine: Vec<Value> = local
                    .get(*key)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut items = Vec::new();
                for e in v.as_array().into_iter().flatten() {
                    let id = ident(e);
                    let base = mine.iter().find(|m| ident(m) == id && id.is_some());
                    let mut item = base.cloned().unwrap_or_else(|| Value::Object(Map::new()));
                    if let (Some(o), Some(p)) = (item.as_object_mut(), e.as_object()) {
                        for (k, pv) in p {
                            match (k.as_str(), o.get_mut(k), pv) {
                                ("options", Some(Value::Object(lo)), Value::Object(po)) => {
                                    for (ok, ov) in po {
                                        lo.insert(ok.clone(), ov.clone());
                                    }
                                }
                                _ => {
                                    o.insert(k.clone(), pv.clone());
                                }
                            }
                        }
                        let placed = ["path", "url", "uuid", "label"]
                            .iter()
                            .any(|k| o.contains_key(*k));
                        if *key == "destinations" && !placed {
                            missing.push(id.unwrap_or_default());
                            continue;
                        }
                    }
                    items.push(item);
                }
                Value::Array(items)
            }
            _ => v.clone(),
        };
        out.insert((*key).to_string(), merged);
    }
    out
}

/// Writes the config atomically, the old one kept beside it.
fn write_config(path: &Path, config: &Map<String, Value>) -> Result<PathBuf> {
    let text =
        serde_json::to_string_pretty(config).map_err(|e| Error::internal("config", e))? + "\n";
    snap_shared::config::parse(&text).map_err(|e| e.within("the config a profile would make"))?;
    let kept = path.with_extension(format!(
        "json.before-profile-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    std::fs::copy(path, &kept).map_err(|e| Error::io(&kept, e))?;
    snap_shared::fsutil::write_atomic(path, 0o600, true, |f| {
        std::io::Write::write_all(f, text.as_bytes())
    })
    .map_err(|e| Error::io(path, e))?;
    Ok(kept)
}

fn newest(r: &Request) -> Result<Option<(u64, Profile)>> {
    let Some(s) = r.dest.profile(r.name)? else {
        return Ok(None);
    };
    let what = format!(
        "profile {} at {} (version {})",
        r.name, r.dest_name, s.version
    );
    Ok(Some((s.version, profile::parse(&s.text, &what)?)))
}

/// A publish that merged in keys changed at the destination only
/// (`out.taken`) writes them into the local config too; the old one is
/// kept, and what it left out is named in `out.missing`.
fn take_theirs(
    r: &Request,
    local: &Map<String, Value>,
    merged: &Map<String, Value>,
    out: &mut Outcome,
) -> Result<()> {
    if !out.taken.is_empty() {
        let config = apply(local, merged, &mut out.missing);
        out.kept_as = Some(write_config(r.config, &config)?);
    }
    Ok(())
}

/// Publishes this machine's shared keys as the next version, after taking
/// what changed at the destination only.
pub fn publish(r: &Request) -> Result<Outcome> {
    let local = read_config(r.config)?;
    let mine = profile::shareable(&local, home().as_deref());
    let remote = newest(r)?;
    let base = seen(r)?;
    let mut out = Outcome::default();
    let (version, machines, merged) = match &remote {
        None => (1, Default::default(), mine.clone()),
        Some((v, p)) => {
            let base = base.as_ref().filter(|b| b.version <= *v).map(|b| &b.config);
            let m = merge::merge(base, &mine, &p.config, r.prefer);
            if !m.conflicts.is_empty() {
                return Err(conflicted(r, &m.conflicts, "publish"));
            }
            out.taken = m.theirs.clone();
            out.given = m.mine.clone();
            if m.config == p.config {
                out.version = *v;
                remember(r, *v, &m.config)?;
                take_theirs(r, &local, &m.config, &mut out)?;
                return Ok(out);
            }
            (v + 1, p.machines.clone(), m.config)
        }
    };
    let stored = Profile {
        schema: SCHEMA.to_string(),
        name: r.name.to_string(),
        published: Published {
            host: r.host.to_string(),
            at: chrono::Utc::now(),
            tool: r.tool.to_string(),
        },
        config: merged.clone(),
        machines,
    };
    let text =
        serde_json::to_string_pretty(&stored).map_err(|e| Error::internal("profile", e))? + "\n";
    if !r.dest.publish_profile(r.name, version, &text)? {
        return Err(Error::new(
            Exit::TempFail,
            format!("profile {} at {}", r.name, r.dest_name),
            format!("another machine published version {version} meanwhile; nothing was changed"),
        )
        .with_hint("run it again: it merges with that version"));
    }
    remember(r, version, &merged)?;
    take_theirs(r, &local, &merged, &mut out)?;
    out.version = version;
    out.published = true;
    if remote.is_none() {
        out.given = merge::units(&merged).into_iter().map(|(k, _)| k).collect();
    }
    Ok(out)
}

/// Takes the destination's newest version into the local config (its
/// keys for this host), or only the sets named; what this machine changed
/// alone stays. The destinations it names without a place this machine
/// does not define are named in `missing` ([`left_out`] is the caller's
/// error, 64, after everything else is taken).
pub fn take(r: &Request) -> Result<Outcome> {
    let Some((version, p)) = newest(r)? else {
        return Err(Error::new(
            Exit::NoInput,
            format!("profile {} at {}", r.name, r.dest_name),
            "not found",
        )
        .with_hint(
            "`snap-restore profiles WHERE` lists them; `snap-push --profile NAME` publishes one",
        ));
    };
    let local = read_config(r.config)?;
    let mine = profile::shareable(&local, home().as_deref());
    let mut theirs = p.for_host(r.host);
    if let Some(sets) = r.sets {
        // Selective: the named sets from there, everything else as it is here.
        let wanted = |u: &str| sets.iter().any(|s| u == format!("backup_sets.{s}"));
        for s in sets {
            if !merge::units(&theirs)
                .iter()
                .any(|(k, _)| *k == format!("backup_sets.{s}"))
            {
                return Err(Error::usage(
                    format!("--sets {s}"),
                    format!("profile {} has no set {s}", r.name),
                ));
            }
        }
        let mut units: Vec<(String, Value)> = merge::units(&mine)
            .into_iter()
            .filter(|(k, _)| !wanted(k))
            .collect();
        units.extend(merge::units(&theirs).into_iter().filter(|(k, _)| wanted(k)));
        theirs = merge::from_units(&units);
    }
    let base = seen(r)?.filter(|b| b.version <= version).map(|b| b.config);
    let m = merge::merge(base.as_ref(), &mine, &theirs, r.prefer);
    if !m.conflicts.is_empty() {
        return Err(conflicted(r, &m.conflicts, "take"));
    }
    let mut out = Outcome {
        version,
        taken: m.theirs.clone(),
        given: m.mine.clone(),
        ..Default::default()
    };
    if m.config != mine {
        let config = apply(&local, &m.config, &mut out.missing);
        out.kept_as = Some(write_config(r.config, &config)?);
    }
    if r.sets.is_none() {
        remember(r, version, &theirs)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DestSpec, Reach};
    use serde_json::json;

    struct Machine {
        host: &'static str,
        config: PathBuf,
        state: PathBuf,
    }

    impl Machine {
        fn new(dir: &Path, host: &'static str, config: Value) -> Machine {
            let m = Machine {
                host,
                config: dir.join(format!("{host}.json")),
                state: dir.join(format!("{host}-state")),
            };
            std::fs::write(&m.config, config.to_string()).unwrap();
            m
        }
        fn req<'a>(
            &'a self,
            dest: &'a Dest,
            prefer: Option<Side>,
            sets: Option<&'a [String]>,
        ) -> Request<'a> {
            Request {
                name: "home",
                dest,
                dest_name: "usb",
                config: &self.config,
                state_dir: &self.state,
                prefer,
                sets,
                host: self.host,
                tool: "test",
            }
        }
        fn config(&self) -> Value {
            serde_json::from_str(&std::fs::read_to_string(&self.config).unwrap()).unwrap()
        }
        fn edit(&self, key: &str, v: Value) {
            let mut c = self.config();
            c[key] = v;
            std::fs::write(&self.config, c.to_string()).unwrap();
        }
    }

    /// Publish, take, selective take; one-sided edits merge both ways;
    /// both-sided ones refuse with the three values until --theirs; the
    /// stored profile holds no machine's store, path or secret.
    #[test]
    fn two_machines_share_a_profile() {
        let t = tempfile::tempdir().unwrap();
        let spec = DestSpec::from_url(&t.path().join("usb").display().to_string()).unwrap();
        std::fs::create_dir_all(t.path().join("usb")).unwrap();
        let usb = Dest::open(&spec, &crate::runtime().unwrap(), &Reach::default(), true).unwrap();
        let laptop = Machine::new(
            t.path(),
            "laptop",
            json!({
                "store": "/laptop/store",
                "backup_sets": [{"name": "config", "sources": ["/etc/laptop-only"]},
                                {"name": "docs", "sources": ["/srv/docs"]}],
                "schedule": {"incremental": "hourly"},
                "destinations": [{"name": "b2", "url": "s3://bk/snap", "options": {"secret_access_key": "SEKRIT", "region": "x"}}]
            }),
        );
        let desktop = Machine::new(
            t.path(),
            "desktop",
            json!({
                "store": "/desktop/store",
                "destinations": [{"name": "b2", "url": "s3://bk/snap", "options": {"secret_access_key": "OTHER", "region": "x"}}]
            }),
        );
        let out = publish(&laptop.req(&usb, None, None)).unwrap();
        assert_eq!((out.version, out.published), (1, true));
        let stored = usb.profile("home").unwrap().unwrap().text;
        for secret in ["SEKRIT", "/laptop/store"] {
            assert!(!stored.contains(secret), "{secret} travelled");
        }
        let out = take(&desktop.req(&usb, None, None)).unwrap();
        assert!(out.missing.is_empty());
        assert!(out.kept_as.is_some());
        let c = desktop.config();
        assert_eq!(c["store"], "/desktop/store", "the store stays");
        assert_eq!(c["backup_sets"][1]["name"], "docs");
        assert_eq!(
            c["destinations"][0]["options"],
            json!({"secret_access_key": "OTHER", "region": "x"})
        );
        // Selective: a third machine takes one set and nothing else.
        let other = Machine::new(
            t.path(),
            "other",
            json!({"schedule": {"incremental": "daily"}}),
        );
        let only = ["docs".to_string()];
        take(&other.req(&usb, None, Some(&only))).unwrap();
        let c = other.config();
        assert_eq!(c["backup_sets"].as_array().unwrap().len(), 1);
        assert_eq!(
            c["schedule"],
            json!({"incremental": "daily"}),
            "its schedule stays"
        );
        // One-sided edits: notify on the laptop, the schedule on the desktop.
        laptop.edit("notify", json!("ntfy:laptop"));
        assert_eq!(publish(&laptop.req(&usb, None, None)).unwrap().version, 2);
        desktop.edit("schedule", json!({"incremental": "daily"}));
        let out = publish(&desktop.req(&usb, None, None)).unwrap();
        assert_eq!(
            (out.version, out.taken.clone(), out.given.clone()),
            (3, vec!["notify".to_string()], vec!["schedule".to_string()])
        );
        assert_eq!(desktop.config()["notify"], "ntfy:laptop");
        let out = take(&laptop.req(&usb, None, None)).unwrap();
        assert_eq!(out.taken, ["schedule"]);
        assert_eq!(laptop.config()["schedule"], json!({"incremental": "daily"}));
        // Both sides change notify: refused both ways, nothing written.
        laptop.edit("notify", json!("mail:laptop"));
        publish(&laptop.req(&usb, None, None)).unwrap();
        desktop.edit("notify", json!("mail:desktop"));
        let before = std::fs::read(&desktop.config).unwrap();
        for e in [
            publish(&desktop.req(&usb, None, None)).unwrap_err(),
            take(&desktop.req(&usb, None, None)).unwrap_err(),
        ] {
            assert_eq!(e.exit, Exit::TempFail);
            assert!(e.cause.contains("notify\n    base:   \"ntfy:laptop\"\n    here  : \"mail:desktop\"\n    there : \"mail:laptop\""), "{e}");
        }
        assert_eq!(std::fs::read(&desktop.config).unwrap(), before);
        assert_eq!(usb.profile("home").unwrap().unwrap().version, 4);
        let out = take(&desktop.req(&usb, Some(Side::Theirs), None)).unwrap();
        assert_eq!(out.taken, ["notify"]);
        assert_eq!(desktop.config()["notify"], "mail:laptop");
        // --mine the other way: the desktop's value is published.
        desktop.edit("notify", json!("mail:desktop"));
        laptop.edit("notify", json!("mail:laptop2"));
        publish(&laptop.req(&usb, None, None)).unwrap();
        let out = publish(&desktop.req(&usb, Some(Side::Mine), None)).unwrap();
        assert!(out.published);
        let p = profile::parse(&usb.profile("home").unwrap().unwrap().text, "p").unwrap();
        assert_eq!(p.config["notify"], "mail:desktop");
        // A folder destination the laptop adds has no place on the desktop:
        // the desktop's next publish takes the rest and names it as left out.
        take(&laptop.req(&usb, None, None)).unwrap();
        let mut dests = laptop.config()["destinations"].clone();
        dests
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "stick", "path": "/media/stick"}));
        laptop.edit("destinations", dests);
        publish(&laptop.req(&usb, None, None)).unwrap();
        let out = publish(&desktop.req(&usb, None, None)).unwrap();
        assert_eq!(out.missing, ["stick"], "{out:?}");
        let names: Vec<Value> = desktop.config()["destinations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].clone())
            .collect();
        assert_eq!(names, [json!("b2")]);
    }
}
