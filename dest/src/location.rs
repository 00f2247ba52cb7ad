//! What a destination string means, before anything is touched.
//!
//! A destination is a folder path (`/media/me/T9/backups`, `file:///…`), a
//! drive found by filesystem UUID or label (`uuid://2F3A-11C4/backups`,
//! `label://T9/backups`), or a bucket URL (`s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`). Parsing is pure so that
//! every tool reads the same string the same way, and so that a bad one is
//! refused before any byte moves.

use std::fmt;
use std::path::PathBuf;

/// How an external drive is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriveKey {
    Uuid(String),
    Label(String),
}

impl fmt::Display for DriveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveKey::Uuid(u) => write!(f, "UUID {u}"),
            DriveKey::Label(l) => write!(f, "label {l}"),
        }
    }
}

/// The object-store services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    Gcs,
    Azure,
}

/// A parsed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder, absolute.
    Folder(PathBuf),
    /// A folder `sub` on the drive with this UUID or label, wherever it is mounted.
    Drive { key: DriveKey, sub: PathBuf },
    /// A bucket (or container) and a prefix inside it.
    Bucket {
        service: Service,
        bucket: String,
        prefix: String,
    },
    /// An in-memory store the fault harness registered under this name
    /// (`memory://NAME`; the `memory` module).
    Memory(String),
}

impl Location {
    /// Parses a destination; the error says what is wrong without echoing
    /// anything that might be a secret.
    pub fn parse(s: &str) -> Result<Location, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty destination".into());
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Ok(Location::Folder(absolute(PathBuf::from(s))));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => Ok(Location::Folder(absolute(PathBuf::from(rest)))),
            "uuid" => drive(DriveKey::Uuid, rest),
            "label" => drive(DriveKey::Label, rest),
            "s3" | "s3a" => bucket(Service::S3, rest),
            "gs" | "gcs" => bucket(Service::Gcs, rest),
            "az" | "azure" | "abfs" => bucket(Service::Azure, rest),
            "memory" => Ok(Location::Memory(rest.trim_matches('/').to_string())),
            other => Err(format!(
                "unknown scheme {other}:// (use a path, uuid://, label://, s3://, gs:// or az://)"
            )),
        }
    }

    /// How records and messages name it: a path, or a URL with no credentials.
    pub fn url(&self) -> String {
        match self {
            Location::Folder(p) => p.display().to_string(),
            Location::Memory(name) => format!("memory://{name}"),
            Location::Drive { key, sub } => {
                let (scheme, k) = match key {
                    DriveKey::Uuid(u) => ("uuid", u),
                    DriveKey::Label(l) => ("label", l),
                };
                let sub = sub.display().to_string();
                if sub.is_empty() {
                    format!("{scheme}://{k}")
                } else {
                    format!("{scheme}://{k}/{sub}")
                }
            }
            Location::Bucket {
                service,
                bucket,
                prefix,
            } => {
                let scheme = match service {
                    Service::S3 => "s3",
                    Service::Gcs => "gs",
                    Service::Azure => "az",
                };
                if prefix.is_empty() {
                    format!("{scheme}://{bucket}")
                } else {
                    format!("{scheme}://{bucket}/{prefix}")
                }
            }
        }
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

fn drive(make: fn(String) -> DriveKey, rest: &str) -> Result<Location, String> {
    let (key, sub) = rest.split_once('/').unwrap_or((rest, ""));
    if key.is_empty() {
        return Err("a drive destination needs its UUID or label (uuid://UUID/folder)".into());
    }
    let sub = sub.trim_matches('/');
    if sub.split('/').any(|c| c == "..") {
        return Err("the folder on the drive may not contain `..`".into());
    }
    Ok(Location::Drive {
        key: make(key.to_string()),
        sub: PathBuf::from(sub),
    })
}

fn bucket(service: Service, rest: &str) -> Result<Location, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        // Never repeat the text: it holds a secret.
        return Err(
            "credentials in a destination URL are refused, since URLs appear in \
                    records and logs; put them in the config's options or the environment"
                .into(),
        );
    }
    if authority.is_empty() {
        return Err("a bucket URL needs a bucket name (s3://bucket/prefix)".into());
    }
    if path.contains('?') || authority.contains('?') {
        return Err("a bucket URL takes no query; put settings in the config's options".into());
    }
    let prefix = path.trim_matches('/');
    if prefix.split('/').any(|c| c == ".." || c == ".") {
        return Err("the prefix may not contain `.` or `..`".into());
    }
    Ok(Location::Bucket {
        service,
        bucket: authority.to_string(),
        prefix: prefix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every accepted form parses to what it names, and prints back as a URL.
    #[test]
    fn forms() {
        assert_eq!(
            Location::parse("/media/me/T9/backups").unwrap(),
            Location::Folder("/media/me/T9/backups".into())
        );
        assert_eq!(
            Location::parse("file:///mnt/x").unwrap(),
            Location::Folder("/mnt/x".into())
        );
        let d = Location::parse("uuid://2F3A-11C4/backups/snap/").unwrap();
        assert_eq!(
            d,
            Location::Drive {
                key: DriveKey::Uuid("2F3A-11C4".into()),
                sub: "backups/snap".into()
            }
        );
        assert_eq!(d.url(), "uuid://2F3A-11C4/backups/snap");
        let b = Location::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!(b.url(), "s3://bucket/some/prefix");
        assert_eq!(
            Location::parse("gs://b").unwrap().url(),
            "gs://b",
            "no prefix is the bucket root"
        );
        assert_eq!(Location::parse("azure://c/p").unwrap().url(), "az://c/p");
    }

    /// A URL carrying credentials is refused, and the error does not repeat them.
    #[test]
    fn credentials_refused_unrepeated() {
        let err = Location::parse("s3://AKIAXX:sekrit@bucket/p").unwrap_err();
        assert!(err.contains("credentials"));
        assert!(!err.contains("sekrit") && !err.contains("AKIAXX"));
    }

    /// Unknown schemes, empty names and `..` are refused with a reason.
    #[test]
    fn refusals() {
        assert!(Location::parse("ftp://x").unwrap_err().contains("ftp://"));
        assert!(Location::parse("uuid:///x").is_err());
        assert!(Location::parse("label://T9/../etc").is_err());
        assert!(Location::parse("s3:///p").is_err());
        assert!(Location::parse("s3://b/a/../c").is_err());
        assert!(Location::parse("").is_err());
    }
}
