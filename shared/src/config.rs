//! The configuration file: JSON in the shape of the planning document, with
//! its `//` comments and trailing commas.
//!
//! ```json
//! { "store": "~/.local/share/snap",
//!   "backup_sets": [ { "name": "data", "sources": ["/data"],
//!                      "exclusions": ["tmp/*", "*.log"] } ] }
//! ```
//!
//! Found at `--config`, `$SNAP_CONFIG`, or `~/.config/snap/config.json`.
//! Unknown fields are refused (a typo must not silently drop an exclusion);
//! a bad file names the field and exits 78. `destinations` is checked by
//! snap-dest, which owns it; `retention` is checked by the retention rules;
//! `schedule` is checked here against its grammar (the `schedule` module).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Exit, Result};
use crate::size::Floor;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store lives (after `--store`, `$SNAP_STORE` and `$DBACKUP`).
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub backup_sets: Vec<BackupSet>,
    #[serde(default)]
    pub collect: CollectSettings,
    /// Where archives go (parsed by snap-dest: folders, drives, buckets).
    #[serde(default)]
    pub destinations: Option<Value>,
    /// A command run with the outcome of a push (`SNAP_EVENT` and friends in its environment).
    #[serde(default)]
    pub notify: Option<String>,
    #[serde(default)]
    pub retention: Option<Value>,
    #[serde(default)]
    pub schedule: Option<Value>,
    /// VM disks and where their running QEMU listens (snap-disk).
    #[serde(default)]
    pub disks: Vec<DiskEntry>,
    /// Signing archive records (snap-pack signs with `key`).
    #[serde(default)]
    pub signing: Option<Signing>,
}

/// The key records are signed with (an OpenSSH private key without a
/// passphrase), and the list of keys whose signatures are accepted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub allowed_signers: Option<String>,
}

/// A VM disk: its image, and the sockets of the QEMU that runs it, so that
/// a plain `snap-disk create IMAGE` takes a point-in-time snapshot; or a
/// libvirt domain's disk (`domain`, `target`), its image found through libvirt.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskEntry {
    /// The image file [default, with `domain`: the domain's disk at `target`].
    #[serde(default)]
    pub image: Option<String>,
    /// The libvirt domain that runs the image.
    #[serde(default)]
    pub domain: Option<String>,
    /// With `domain`: its disk's target (vda, sdb) [default: its only disk, or the one with `image`].
    #[serde(default)]
    pub target: Option<String>,
    /// With `domain`: libvirt's URI [default: virsh's, LIBVIRT_DEFAULT_URI else qemu:///system].
    #[serde(default)]
    pub connect: Option<String>,
    /// The QMP monitor socket.
    #[serde(default)]
    pub qmp: Option<String>,
    /// The block node, when finding it by the image file is not enough.
    #[serde(default)]
    pub node: Option<String>,
    /// The unix socket of an NBD server the QEMU already runs.
    #[serde(default)]
    pub nbd_server: Option<String>,
    /// The qemu-guest-agent socket.
    #[serde(default)]
    pub guest_agent: Option<String>,
    /// Freeze the guest's filesystems at each snapshot (needs guest_agent).
    #[serde(default)]
    pub freeze: bool,
    /// When `snap-backup --due` snapshots it (the `schedule` grammar, or
    /// `never`) [default: `schedule.incremental`].
    #[serde(default)]
    pub schedule: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSet {
    pub name: String,
    pub sources: Vec<String>,
    #[serde(default)]
    pub exclusions: Vec<String>,
    /// The planning document writes `"method": "rsync"`; snap-collect is that method.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub one_file_system: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectSettings {
    /// Free space the store's filesystem must keep, e.g. `"2GiB"` or `"5%"`.
    #[serde(default)]
    pub min_free: Option<String>,
    /// Below this much free space `snap-backup --due` warns (`low-disk`),
    /// before `min_free` stops a run, e.g. `"10GiB"` or `"15%"`.
    #[serde(default)]
    pub warn_free: Option<String>,
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
}

/// Expands a leading `~` or `~/` to `$HOME`.
pub fn expand_tilde(s: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").map(PathBuf::from);
    if s == "~" {
        if let Some(h) = home() {
            return h;
        }
    } else if let Some(rest) = s.strip_prefix("~/")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    PathBuf::from(s)
}

/// `~/.config/snap/config.json`, honouring `$XDG_CONFIG_HOME`.
pub fn default_config_path() -> PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("snap/config.json"),
        _ => expand_tilde("~/.config/snap/config.json"),
    }
}

/// Where the config is: the flag, `$SNAP_CONFIG`, or the default; and whether it was named.
pub fn locate(flag: Option<&Path>) -> (PathBuf, bool) {
    if let Some(p) = flag {
        return (p.to_path_buf(), true);
    }
    match std::env::var_os("SNAP_CONFIG") {
        Some(p) if !p.is_empty() => (expand_tilde(&p.to_string_lossy()), true),
        _ => (default_config_path(), false),
    }
}

impl LoadedConfig {
    /// The config for tools that work without one: loaded when named (`--config`,
    /// `$SNAP_CONFIG`) or when the default file exists; `None` otherwise.
    pub fn load_optional(flag: Option<&Path>) -> Result<Option<LoadedConfig>> {
        let (path, named) = locate(flag);
        if !named && !path.exists() {
            return Ok(None);
        }
        Self::load(&path).map(Some)
    }

    /// An error about the config's content, naming the file too.
    pub fn blame(&self, e: Error) -> Error {
        e.within(format!("config {}", self.path.display()))
    }

    /// The store directory the config names, if any.
    pub fn store(config: Option<&LoadedConfig>) -> Option<&str> {
        config.and_then(|c| c.config.store.as_deref())
    }

    /// Loads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<LoadedConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let err = Error::io(path, e).within("config");
            if err.exit == Exit::NoInput {
                err
            } else {
                err.with_exit(Exit::Config)
            }
        })?;
        let config = parse(&text).map_err(|e| e.within(format!("config {}", path.display())))?;
        Ok(LoadedConfig {
            path: path.to_path_buf(),
            config,
        })
    }
}

/// Parses and checks config text; errors name the field (`backup_sets[1].name`)
/// and the line and column. The text is JSON as the planning document writes
/// it: `//` and `/* */` comments (and `#` ones) and trailing commas are
/// taken. They are blanked to spaces first (json-strip-comments, oxc's),
/// which keeps every line and column where the file has it.
pub fn parse(text: &str) -> Result<Config> {
    let mut plain = text.to_string();
    json_strip_comments::strip(&mut plain)
        .map_err(|e| Error::config("", format!("{e} (an unterminated /* comment?)")))?;
    let de = &mut serde_json::Deserializer::from_str(&plain);
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let cause = format!(
            "{} (line {} column {})",
            strip_position(&inner.to_string()),
            inner.line(),
            inner.column()
        );
        if field == "." {
            Error::config("", cause)
        } else {
            Error::config(field, cause)
        }
    })?;
    check(&config)?;
    Ok(config)
}

/// Config text as plain JSON (comments stripped), after the checks of
/// [`parse`]: what rewrites a config starts from.
pub fn as_json(text: &str) -> Result<serde_json::Map<String, Value>> {
    parse(text)?;
    let mut plain = text.to_string();
    json_strip_comments::strip(&mut plain)
        .map_err(|e| Error::config("", format!("{e} (an unterminated /* comment?)")))?;
    match serde_json::from_str(&plain) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::config("", "not a JSON object")),
    }
}

/// serde_json appends " at line L column C"; we print the position our own way.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

fn check(config: &Config) -> Result<()> {
    crate::schedule::Schedule::parse(config.schedule.as_ref())?;
    for (i, d) in config.disks.iter().enumerate() {
        if d.image.is_none() && d.domain.is_none() {
            return Err(Error::config(
                format!("disks[{i}]"),
                "needs \"image\" (an image file) or \"domain\" (a libvirt domain)",
            ));
        }
        for (set, key) in [
            (d.target.is_some(), "target"),
            (d.connect.is_some(), "connect"),
        ] {
            if set && d.domain.is_none() {
                return Err(Error::config(
                    format!("disks[{i}].{key}"),
                    "is for a libvirt domain's disk: add \"domain\"",
                ));
            }
        }
        if d.domain.is_some() && d.qmp.is_some() {
            return Err(Error::config(
                format!("disks[{i}].qmp"),
                "a libvirt domain's QEMU is reached through libvirt, not its QMP socket: leave one out",
            ));
        }
        if let Some(s) = &d.schedule {
            crate::schedule::parse_every(s, &["never"])
                .map_err(|e| Error::config(format!("disks[{i}].schedule"), e))?;
        }
    }
    if let Some(w) = &config.collect.warn_free {
        Floor::parse(w).map_err(|e| Error::config("collect.warn_free", e))?;
    }
    if config.store.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(Error::config(
            "store",
            "is empty; give the store's folder, like \"~/.local/share/snap\", or leave it out",
        ));
    }
    let mut seen = HashSet::new();
    for (i, set) in config.backup_sets.iter().enumerate() {
        let at = |field: &str| format!("backup_sets[{i}].{field}");
        crate::id::check_name(&set.name).map_err(|e| Error::config(at("name"), e))?;
        if !seen.insert(set.name.as_str()) {
            return Err(Error::config(
                at("name"),
                format!("set {:?} is defined twice", set.name),
            ));
        }
        if set.sources.is_empty() {
            return Err(Error::config(
                at("sources"),
                "a set needs at least one source",
            ));
        }
        for (j, src) in set.sources.iter().enumerate() {
            if !expand_tilde(src).is_absolute() {
                return Err(Error::config(
                    format!("backup_sets[{i}].sources[{j}]"),
                    format!("{src:?} must be an absolute path (or start with ~/)"),
                ));
            }
        }
        if let Some(m) = &set.method
            && m != "rsync"
            && m != "snap"
        {
            return Err(Error::config(
                at("method"),
                format!("unknown method {m:?}; snap-collect is the \"rsync\" method"),
            ));
        }
    }
    if let Some(floor) = &config.collect.min_free {
        Floor::parse(floor).map_err(|e| Error::config("collect.min_free", e))?;
    }
    Ok(())
}

impl Config {
    pub fn set(&self, name: &str) -> Option<&BackupSet> {
        self.backup_sets.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The planning document's example loads as it is.
    #[test]
    fn planning_document_example_loads() {
        let text = r#"{
          "backup_sets": [
            { "name": "data", "sources": ["/data"], "method": "rsync",
              "exclusions": ["tmp/*", "*.tmp", "*.log"] },
            { "name": "config", "sources": ["~/.config", "~/env.sh"], "method": "rsync",
              "exclusions": ["~/.config/Code/Cache/*"] }
          ],
          "retention": { "local": 7, "external": 5 }
        }"#;
        let c = parse(text).unwrap();
        assert_eq!(c.backup_sets.len(), 2);
        assert_eq!(c.set("config").unwrap().sources[1], "~/env.sh");
    }

    /// The planning document's schedule example, with its `// Options: …`
    /// comments and a trailing comma, loads as written.
    #[test]
    fn comments_and_trailing_commas_are_taken() {
        let text = r#"{
    "schedule": {
      "incremental": "daily", // Options: hourly, daily, weekly, monthly
      "full": "weekly", // Options: daily, weekly, monthly, never
      "external": "weekly" // Options: daily, weekly, monthly, always, manual
    },
    /* the document's defaults */
    "retention": {
      "local": 7, // Number of local backups to retain
      "external": 5, // Number of external backups to retain
    },
  }"#;
        let c = parse(text).unwrap();
        assert_eq!(c.schedule.unwrap()["full"], "weekly");
        assert_eq!(c.retention.unwrap()["external"], 5);
    }

    /// A mistake after a comment is named by the line and column the file has.
    #[test]
    fn errors_after_comments_keep_their_position() {
        let text = "{\n  // a comment\n  \"store\": \"/s\" /* one */ \"notify\": \"x\"\n}";
        let err = parse(text).unwrap_err();
        assert_eq!(err.exit, Exit::Config);
        assert!(err.cause.contains("line 3 column 27"), "{err}");
    }

    /// A misspelt field is refused with its path, not ignored.
    #[test]
    fn unknown_field_is_named() {
        let err = parse(r#"{"backup_sets":[{"name":"d","sources":["/d"],"exclusion":["x"]}]}"#)
            .unwrap_err();
        assert_eq!(err.exit, Exit::Config);
        assert_eq!(err.context, "backup_sets[0].exclusion");
        assert!(err.cause.starts_with("unknown field `exclusion`"), "{err}");
    }

    /// A wrong type names the field and the position.
    #[test]
    fn wrong_type_is_named() {
        let err = parse(r#"{"backup_sets":[{"name":"d","sources":"/d"}]}"#).unwrap_err();
        assert_eq!(err.context, "backup_sets[0].sources");
        assert!(err.cause.contains("line 1 column"), "{err}");
    }

    /// Semantic checks name the field too: relative sources, duplicate names, bad floors.
    #[test]
    fn semantic_errors_are_named() {
        let rel = parse(r#"{"backup_sets":[{"name":"d","sources":["data"]}]}"#).unwrap_err();
        assert_eq!(rel.context, "backup_sets[0].sources[0]");
        let dup = parse(
            r#"{"backup_sets":[{"name":"d","sources":["/a"]},{"name":"d","sources":["/b"]}]}"#,
        )
        .unwrap_err();
        assert_eq!(dup.context, "backup_sets[1].name");
        let floor = parse(r#"{"collect":{"min_free":"lots"}}"#).unwrap_err();
        assert_eq!(floor.context, "collect.min_free");
        let syntax = parse("{").unwrap_err();
        assert_eq!(syntax.exit, Exit::Config);
    }

    /// `~` expands to $HOME only at the start.
    #[test]
    fn tilde_expansion() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_tilde("~/x"), Path::new(&home).join("x"));
        assert_eq!(expand_tilde("/a/~/x"), Path::new("/a/~/x"));
    }
}
