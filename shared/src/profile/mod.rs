//! Profiles: the shareable part of a config, kept at a destination so that
//! several machines run the same plan (issue 40; docs/profiles.md).
//!
//! A profile holds the sets (sources with the home folder written `~`,
//! exclusions), the schedule, the retention, the destinations by name
//! without secrets, notify, and the disk entries without their sockets.
//! What belongs to one machine never travels: the store, the signing keys,
//! credentials (any destination option whose name says key, secret, token,
//! password, credential or SAS), a drive's UUID or label, a folder
//! destination's mount path, QMP and NBD sockets. A `machines` block holds
//! what differs per host; a machine that takes the profile gets the shared
//! keys with its own block laid over them.
//!
//! The JSON is checked as strictly as a config: unknown keys are refused
//! with their line and column (78), text that is not JSON is damage (65),
//! and a newer schema is refused with its version.

pub mod merge;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Exit, Result};

/// The schema this snap writes and reads.
pub const SCHEMA: &str = "snap-profile/1";

/// The config keys a profile carries.
pub const SHARED_KEYS: &[&str] = &[
    "backup_sets",
    "collect",
    "destinations",
    "disks",
    "notify",
    "retention",
    "schedule",
];

/// A profile as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub schema: String,
    pub name: String,
    /// Who published this version, and when.
    pub published: Published,
    /// The shared keys of the config.
    pub config: Map<String, Value>,
    /// Per host: keys laid over `config` on that machine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub machines: BTreeMap<String, Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub host: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub tool: String,
}

/// Whether an option of a destination is a secret by its name.
fn secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "secret",
        "token",
        "password",
        "credential",
        "sas",
        "session",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A destination entry as it travels: its name, and where it is only when
/// that is not this machine's (a bucket's or a remote's URL, without user
/// information); priority, price and the options that are not secrets.
fn shared_destination(d: &Value) -> Option<Value> {
    let d = d.as_object()?;
    let mut out = Map::new();
    out.insert("name".into(), d.get("name")?.clone());
    if let Some(url) = d.get("url").and_then(Value::as_str) {
        out.insert("url".into(), Value::from(without_userinfo(url)));
    }
    for k in ["priority", "price_per_gib_month"] {
        if let Some(v) = d.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(opts) = d.get("options").and_then(Value::as_object) {
        let kept: Map<String, Value> = opts
            .iter()
            .filter(|(k, _)| !secret(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !kept.is_empty() {
            out.insert("options".into(), Value::Object(kept));
        }
    }
    Some(Value::Object(out))
}

/// `s3://user:pass@host/x` without `user:pass@`.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
            match path.is_empty() && !rest.contains('/') {
                true => format!("{scheme}://{host}"),
                false => format!("{scheme}://{host}/{path}"),
            }
        }
        None => url.to_string(),
    }
}

/// A path under `home` written with `~`.
fn tilde(s: &str, home: Option<&Path>) -> String {
    let Some(home) = home.and_then(Path::to_str).filter(|h| h.len() > 1) else {
        return s.to_string();
    };
    let home = home.trim_end_matches('/');
    if s == home {
        return "~".into();
    }
    match s.strip_prefix(home).filter(|r| r.starts_with('/')) {
        Some(rest) => format!("~{rest}"),
        None => s.to_string(),
    }
}

/// The shared keys of a config (its JSON, comments stripped), with what
/// belongs to this machine left out and paths under `home` written `~`.
pub fn shareable(config: &Map<String, Value>, home: Option<&Path>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in SHARED_KEYS {
        let Some(v) = config.get(*key) else {
            continue;
        };
        let v = match *key {
            "backup_sets" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|set| {
                        let mut set = set.clone();
                        if let Some(srcs) = set.get_mut("sources").and_then(Value::as_array_mut) {
                            for s in srcs.iter_mut() {
                                if let Some(p) = s.as_str() {
                                    *s = Value::from(tilde(p, home));
                                }
                            }
                        }
                        set
                    })
                    .collect(),
            ),
            "destinations" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(shared_destination)
                    .collect(),
            ),
            "disks" => Value::Array(
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        let mut d = d.clone();
                        if let Some(o) = d.as_object_mut() {
                            for k in ["qmp", "nbd_server", "guest_agent"] {
                                o.remove(k);
                            }
                            if let Some(img) = o.get("image").and_then(Value::as_str) {
                                let img = tilde(img, home);
                                o.insert("image".into(), Value::from(img));
                            }
                        }
                        d
                    })
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert((*key).to_string(), v);
    }
    out
}

/// Reads a stored profile; `what` names it in errors (`profile home at usb`).
pub fn parse(text: &str, what: &str) -> Result<Profile> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| Error::data(what, format!("not a profile: {e}")))?;
    if let Some(schema) = value.get("schema").and_then(Value::as_str)
        && schema != SCHEMA
    {
        let newer = schema
            .strip_prefix("snap-profile/")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v > 1);
        return Err(match newer {
            true => Error::new(
                Exit::Config,
                what,
                format!("schema {schema} is newer than this snap reads ({SCHEMA})"),
            )
            .with_hint("take it with a newer snap"),
            false => Error::data(what, format!("schema {schema:?} is not a profile's")),
        });
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let profile: Profile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        Error::config(
            format!("{what}: {field}"),
            format!(
                "{} (line {} column {})",
                strip_position(&inner.to_string()),
                inner.line(),
                inner.column()
            ),
        )
    })?;
    for key in profile
        .config
        .keys()
        .chain(profile.machines.values().flat_map(|m| m.keys()))
    {
        if !SHARED_KEYS.contains(&key.as_str()) {
            let (line, column) = position_of(text, key);
            return Err(Error::config(
                format!("{what}: config.{key}"),
                format!(
                    "unknown key: a profile carries {} (line {line} column {column})",
                    SHARED_KEYS.join(", ")
                ),
            ));
        }
    }
    Ok(profile)
}

/// serde_json's message without its own " at line L column C".
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// The line and column (1-based) of the first `"key"` in `text`.
fn position_of(text: &str, key: &str) -> (usize, usize) {
    let needle = format!("\"{key}\"");
    let at = text.find(&needle).unwrap_or(0);
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Profile {
    /// The keys as `host` takes them: the shared ones, its own block over them.
    pub fn for_host(&self, host: &str) -> Map<String, Value> {
        let mut out = self.config.clone();
        if let Some(m) = self.machines.get(host) {
            for (k, v) in m {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
