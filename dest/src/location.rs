//! What a destination string means, before anything is touched.
//!
//! A destination is a folder path (`/media/me/T9/backups`, `file:///…`), a
//! drive found by filesystem UUID or label (`uuid://2F3A-11C4/backups`,
//! `label://T9/backups`), a bucket URL (`s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`), a folder on another
//! machine over SFTP (`sftp://[user@]host[:port]/path`), or a path on an
//! rclone remote (`rclone:REMOTE:PATH`). Parsing is pure so that
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
    /// A folder on an SFTP server, reached through the system's ssh. `path`
    /// is absolute (`/srv/backup`) or, from `sftp://host/~/backup`, relative
    /// to the login's home (`backup`).
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `REMOTE:PATH` of the user's rclone config (`rclone:onedrive:backup`).
    Rclone(String),
}

impl Location {
    /// Parses a destination; the error says what is wrong without echoing
    /// anything that might be a secret.
    pub fn parse(s: &str) -> Result<Location, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty destination".into());
        }
        if let Some(target) = s.strip_prefix("rclone:") {
            return rclone(target);
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
            "sftp" => sftp(rest),
            other => Err(format!(
                "unknown scheme {other}:// (use a path, uuid://, label://, s3://, gs://, az://, sftp:// or rclone:)"
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
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let user = user.as_ref().map_or(String::new(), |u| format!("{u}@"));
                let host = match host.contains(':') {
                    true => format!("[{host}]"),
                    false => host.clone(),
                };
                let port = port.map_or(String::new(), |p| format!(":{p}"));
                let path = match path.strip_prefix('/') {
                    Some(abs) => abs.to_string(),
                    None if path.is_empty() => "~".to_string(),
                    None => format!("~/{path}"),
                };
                let path = percent_encoding::utf8_percent_encode(&path, URL_PATH);
                format!("sftp://{user}{host}{port}/{path}")
            }
            Location::Rclone(target) => format!("rclone:{target}"),
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

/// What a URL's path keeps as it is; the rest is percent-encoded.
const URL_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `[user@]host[:port]/path`, the path absolute, or under the login's home
/// after `~`, percent-decoded.
fn sftp(rest: &str) -> Result<Location, String> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, _)) if u.contains(':') => {
            // Never repeat the text: it holds a password.
            return Err(
                "a password in an sftp:// URL is refused, since URLs appear in \
                        records and logs; use a key (ssh-copy-id) or ~/.ssh/config"
                    .into(),
            );
        }
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = split_port(hostport)?;
    if host.is_empty() || host.starts_with('-') {
        return Err("an sftp:// URL needs a host name (sftp://nas/srv/backup)".into());
    }
    if user
        .as_deref()
        .is_some_and(|u| u.is_empty() || u.starts_with('-'))
    {
        return Err("the user of an sftp:// URL is empty or starts with '-'".into());
    }
    // A URL's path is percent-encoded (`with%20space`); the folder is not.
    let path = percent_encoding::percent_decode_str(path.trim_end_matches('/'))
        .decode_utf8()
        .map_err(|_| "the folder of an sftp:// URL is not UTF-8 once decoded".to_string())?;
    if path.contains('\0') {
        return Err("the folder of an sftp:// URL has a NUL".into());
    }
    let path = path.as_ref();
    let path = match path.strip_prefix('~') {
        Some(home) if home.is_empty() || home.starts_with('/') => {
            home.trim_start_matches('/').to_string()
        }
        _ if path.is_empty() => {
            return Err(
                "an sftp:// URL needs a folder: sftp://host/srv/backup is /srv/backup, \
                        sftp://host/~/backup is under the login's home"
                    .into(),
            );
        }
        _ => format!("/{path}"),
    };
    if path.split('/').any(|c| c == "..") {
        return Err("the folder of an sftp:// URL may not contain `..`".into());
    }
    Ok(Location::Sftp {
        user,
        host: host.to_string(),
        port,
        path,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("an IPv6 host in brackets lacks its `]`")?;
            (host, after.strip_prefix(':'))
        }
        None => match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        },
    };
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a port number"))
        })
        .transpose()?;
    Ok((host, port))
}

/// `REMOTE:PATH`, as rclone takes it (`onedrive:backup`, `crypt:`).
fn rclone(target: &str) -> Result<Location, String> {
    // `:backend:path` (rclone's on-the-fly remotes) has its colon first.
    let body = target.strip_prefix(':').unwrap_or(target);
    let Some((remote, _path)) = body.split_once(':') else {
        return Err(
            "an rclone destination is rclone:REMOTE:PATH, with REMOTE a name of `rclone listremotes`"
                .into(),
        );
    };
    if remote.is_empty() || remote.starts_with('-') {
        return Err("an rclone destination needs a remote's name: rclone:REMOTE:PATH".into());
    }
    Ok(Location::Rclone(target.trim_end_matches('/').to_string()))
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

    /// sftp:// takes a user, a port and an IPv6 host; the path is absolute, or
    /// under the login's home after `~`; rclone: keeps the remote and path.
    #[test]
    fn sftp_and_rclone() {
        let s = Location::parse("sftp://me@nas:2222/srv/backup/").unwrap();
        assert_eq!(
            s,
            Location::Sftp {
                user: Some("me".into()),
                host: "nas".into(),
                port: Some(2222),
                path: "/srv/backup".into()
            }
        );
        assert_eq!(s.url(), "sftp://me@nas:2222/srv/backup");
        let home = Location::parse("sftp://nas/~/backup").unwrap();
        assert_eq!(home.url(), "sftp://nas/~/backup");
        assert_eq!(
            Location::parse("sftp://nas/~").unwrap().url(),
            "sftp://nas/~"
        );
        let v6 = Location::parse("sftp://[::1]:22/b").unwrap();
        assert_eq!(v6.url(), "sftp://[::1]:22/b");
        let err = Location::parse("sftp://me:hunter2@nas/b").unwrap_err();
        assert!(err.contains("password") && !err.contains("hunter2"));
        assert!(Location::parse("sftp://nas").is_err(), "a folder is needed");
        assert!(Location::parse("sftp://-oProxyCommand=x/b").is_err());
        assert!(Location::parse("sftp://nas:port/b").is_err());
        assert!(Location::parse("sftp://nas/a/../b").is_err());
        let r = Location::parse("rclone:onedrive:backup/snap/").unwrap();
        assert_eq!(r, Location::Rclone("onedrive:backup/snap".into()));
        assert_eq!(r.url(), "rclone:onedrive:backup/snap");
        assert!(Location::parse("rclone:nocolon").is_err());
        assert!(Location::parse("rclone:-x:y").is_err());
        assert_eq!(
            Location::parse("rclone::local:/srv").unwrap().url(),
            "rclone::local:/srv"
        );
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
