//! Destinations as the config names them, and as `--dest` gives them.
//!
//! ```json
//! "destinations": [
//!   { "name": "t9", "uuid": "2F3A-11C4", "path": "backups", "priority": 1 },
//!   { "name": "b2", "url": "s3://my-bucket/snap", "priority": 2,
//!     "options": { "endpoint": "https://s3.eu-central-003.backblazeb2.com",
//!                  "region": "eu-central-003" } }
//! ]
//! ```
//!
//! Each entry is a folder (`path`), a drive (`uuid` or `label`, with `path`
//! the folder on it) or a bucket (`url`). `priority` orders fallback (lower
//! first; equal priorities are pushed together); `options` are object_store's
//! settings for the service (endpoint, region, credentials…), whose values are
//! never printed; `price_per_gib_month` feeds snap-prune's cost estimate. Unknown fields are refused, naming where they are.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use snap_shared::error::{Error, Result};
use snap_shared::size::Floor;

use crate::location::Location;

/// One destination, ready to open.
#[derive(Debug, Clone)]
pub struct DestSpec {
    /// The config's name, or the URL as given.
    pub name: String,
    pub location: Location,
    pub priority: i64,
    /// object_store settings; values may be secrets.
    pub options: Vec<(String, String)>,
    /// Free space a folder destination must keep.
    pub min_free: Option<Floor>,
    /// Below this much free space `snap-backup --due` warns (`low-disk`).
    pub warn_free: Option<Floor>,
    /// Whether the config named it (for messages).
    pub configured: bool,
    /// What a GiB stored there costs a month, for snap-prune's cost estimate.
    pub price_per_gib_month: Option<f64>,
}

impl DestSpec {
    /// A destination given by URL or path, with no settings of its own.
    pub fn from_url(s: &str) -> Result<DestSpec> {
        let location = Location::parse(s).map_err(|e| Error::usage("destination", e))?;
        Ok(DestSpec {
            name: location.url(),
            location,
            priority: 0,
            options: Vec::new(),
            min_free: None,
            warn_free: None,
            configured: false,
            price_per_gib_month: None,
        })
    }

    /// The command line given by `option`, else by `$env`, else `default`,
    /// split as a shell would, with `~` expanded: how an SFTP or rclone
    /// destination is reached.
    pub(crate) fn command_words(
        &self,
        option: &str,
        env: &str,
        default: &str,
    ) -> Result<Vec<String>> {
        let ctx = format!("destination {}: option {option}", self.name);
        let text = self
            .options
            .iter()
            .find(|(k, _)| k == option)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(env).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| default.to_string());
        let words = shell_words::split(&text).map_err(|e| Error::config(&ctx, e.to_string()))?;
        if words.is_empty() {
            return Err(Error::config(ctx, "is empty"));
        }
        Ok(words
            .into_iter()
            .map(|w| snap_shared::config::expand_tilde(&w).display().to_string())
            .collect())
    }

    /// Refuses any option but `known` (SFTP and rclone destinations take
    /// one, the command that reaches them).
    pub(crate) fn only_option(&self, known: &str) -> Result<()> {
        match self.options.iter().find(|(k, _)| k != known) {
            Some((k, _)) => Err(Error::config(
                format!("destination {}: option {k}", self.name),
                format!("unknown for this kind of destination (it takes {known})"),
            )
            .with_hint("see docs/destinations.md")),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    priority: i64,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    min_free: Option<String>,
    #[serde(default)]
    warn_free: Option<String>,
    #[serde(default)]
    price_per_gib_month: Option<f64>,
}

/// The config's `destinations`, checked; errors name `destinations[i].field` (exit 78).
pub fn configured(value: Option<&Value>) -> Result<Vec<DestSpec>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let entries: Vec<Entry> = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = format!("destinations{}", path_suffix(&e.path().to_string()));
        Error::config(field, e.into_inner())
    })?;
    let mut specs = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let spec = entry_spec(entry).map_err(|e| Error::config(format!("destinations[{i}]"), e))?;
        if specs.iter().any(|s: &DestSpec| s.name == spec.name) {
            return Err(Error::config(
                format!("destinations[{i}].name"),
                format!("{} is used twice", spec.name),
            ));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// The destinations of a loaded config (none without one); errors name the
/// config file as well as the field.
pub fn from_config(loaded: Option<&snap_shared::config::LoadedConfig>) -> Result<Vec<DestSpec>> {
    let Some(c) = loaded else {
        return Ok(Vec::new());
    };
    configured(c.config.destinations.as_ref()).map_err(|e| c.blame(e))
}

/// serde_path_to_error prints `[0].url` or `.`; the config's field is `destinations[0].url`.
fn path_suffix(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

fn entry_spec(e: Entry) -> std::result::Result<DestSpec, String> {
    let text = match (&e.url, &e.uuid, &e.label) {
        (Some(u), None, None) if e.path.is_none() => u.clone(),
        (None, Some(u), None) => format!("uuid://{u}/{}", e.path.as_deref().unwrap_or("")),
        (None, None, Some(l)) => format!("label://{l}/{}", e.path.as_deref().unwrap_or("")),
        (None, None, None) => match &e.path {
            Some(p) => snap_shared::config::expand_tilde(p).display().to_string(),
            None => return Err("needs one of url, path, uuid or label".into()),
        },
        (Some(_), None, None) => {
            return Err(
                "url and path do not go together (path is the folder on a uuid or label drive)"
                    .into(),
            );
        }
        _ => return Err("give only one of url, uuid and label".into()),
    };
    let location = Location::parse(&text)?;
    let min_free = e
        .min_free
        .as_deref()
        .map(Floor::parse)
        .transpose()
        .map_err(|m| format!("min_free: {m}"))?;
    let warn_free = e
        .warn_free
        .as_deref()
        .map(Floor::parse)
        .transpose()
        .map_err(|m| format!("warn_free: {m}"))?;
    if let Some(p) = e.price_per_gib_month
        && !(p.is_finite() && p >= 0.0)
    {
        return Err(format!("price_per_gib_month: {p} is not a price"));
    }
    Ok(DestSpec {
        name: e.name.unwrap_or_else(|| location.url()),
        location,
        priority: e.priority,
        options: e.options.into_iter().collect(),
        min_free,
        warn_free,
        configured: true,
        price_per_gib_month: e.price_per_gib_month,
    })
}

/// What `--dest ARG` means: a configured destination's name, else a URL or
/// path (taking the settings of a configured destination at the same URL).
pub fn resolve_arg(arg: &str, configured: &[DestSpec]) -> Result<DestSpec> {
    if let Some(spec) = configured.iter().find(|s| s.name == arg) {
        return Ok(spec.clone());
    }
    let given = DestSpec::from_url(arg)?;
    Ok(configured
        .iter()
        .find(|s| s.location == given.location)
        .cloned()
        .unwrap_or(given))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::DriveKey;
    use serde_json::json;

    /// Drives, folders and buckets read from the config, with priority and options.
    #[test]
    fn reads_entries() {
        let v = json!([
            {"name": "t9", "uuid": "2F3A", "path": "backups", "priority": 1},
            {"url": "s3://b/p", "options": {"region": "x"}, "priority": 2},
            {"name": "here", "path": "/srv/copy", "min_free": "10%", "price_per_gib_month": 0.006}
        ]);
        let specs = configured(Some(&v)).unwrap();
        assert_eq!(specs[0].name, "t9");
        assert_eq!(
            specs[0].location,
            Location::Drive {
                key: DriveKey::Uuid("2F3A".into()),
                sub: "backups".into()
            }
        );
        assert_eq!(specs[1].name, "s3://b/p");
        assert_eq!(specs[1].options, vec![("region".into(), "x".into())]);
        assert_eq!(specs[2].location, Location::Folder("/srv/copy".into()));
        assert!(specs[2].min_free.is_some());
        assert_eq!(specs[2].price_per_gib_month, Some(0.006));
    }

    /// Mistakes name the entry and field, exit 78.
    #[test]
    fn mistakes_name_where() {
        let err = configured(Some(&json!([{"url": "s3://b", "prio": 1}]))).unwrap_err();
        assert!(
            err.context.starts_with("destinations[0]"),
            "{}",
            err.context
        );
        assert_eq!(err.exit, snap_shared::error::Exit::Config);
        let err = configured(Some(&json!([{"name": "x"}]))).unwrap_err();
        assert_eq!(err.context, "destinations[0]");
        let err = configured(Some(&json!([{"url": "s3://a"}, {"url": "s3://a"}]))).unwrap_err();
        assert!(err.render("t").contains("used twice"));
        let err = configured(Some(&json!([{"url": "s3://a", "price_per_gib_month": -1}])));
        assert!(err.unwrap_err().render("t").contains("not a price"));
        let err = configured(Some(&json!([{"url": "s3://a", "uuid": "u"}]))).unwrap_err();
        assert!(err.render("t").contains("only one"));
    }

    /// `--dest` takes a configured name, or a URL that picks up a configured entry's options.
    #[test]
    fn dest_args() {
        let v = json!([{"name": "b2", "url": "s3://b/p", "options": {"region": "x"}}]);
        let specs = configured(Some(&v)).unwrap();
        assert_eq!(resolve_arg("b2", &specs).unwrap().options.len(), 1);
        assert_eq!(resolve_arg("s3://b/p/", &specs).unwrap().name, "b2");
        assert!(
            resolve_arg("s3://other", &specs)
                .unwrap()
                .options
                .is_empty()
        );
    }
}
