//! Archives and the files that travel with them (docs/design.md "The local store").
//!
//! A finished archive of snapshot `<id>` is, in one folder:
//!
//! ```text
//! <id>.tar.zst | <id>.tar.gz | <id>.tar   [+ .age]   the tar stream
//! <id>.index.zst                          [+ .age]   the snapshot's whole per-file index
//! <id>.sha256                                        `sha256sum` lines for the two above
//! <id>.json                                          the archive record, published last
//! <id>.away                                          in the store only: its data was dropped
//! ```
//!
//! An archive exists when its `.json` exists; the other names without one are
//! an unfinished publication. The index of an encrypted archive is encrypted
//! too: it lists every file name, which is what encryption is meant to hide.
//! Records carry absolute paths from the machine that made them, but folders
//! travel (to drives, to buckets), so readers find sidecars by file name
//! beside the `.json` ([`beside`]).
//!
//! `retention.keep_archives: "until-pushed"` lets snap-prune drop an
//! archive's data from the store once every configured destination holds it
//! (and verified it there, when the schedule verifies). The record, index,
//! sums and signature stay, so listings, diffs and the next incremental's
//! comparison still work; the [`Away`] marker says where the data went, and
//! a read of the missing data is [`away_error`], naming those places.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::hash::Sha256Digest;

use crate::record::ArchiveRecord;

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Gzip,
    None,
}

impl Compression {
    /// The name in records and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }

    pub fn parse(name: &str) -> Option<Compression> {
        [Compression::Zstd, Compression::Gzip, Compression::None]
            .into_iter()
            .find(|c| c.name() == name)
    }

    /// The file name suffix of the tar stream.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd => ".tar.zst",
            Compression::Gzip => ".tar.gz",
            Compression::None => ".tar",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The names of one archive's files in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFiles {
    pub dir: PathBuf,
    pub id: String,
}

const AGE: &str = ".age";
/// The suffix of the [`Away`] marker.
pub const AWAY: &str = ".away";

/// Where an archive's data went when the store dropped it: `<id>.away`
/// beside its record, written (and fsynced) before the data is removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Away {
    /// When the store dropped it.
    pub since: DateTime<Utc>,
    /// The configured destinations that held it then.
    pub at: Vec<String>,
}

impl Away {
    /// Reads the marker of an archive; None when there is none. A marker
    /// that does not parse still says the data is away, from nowhere known.
    pub fn read(files: &ArchiveFiles) -> Option<Away> {
        let bytes = std::fs::read(files.away()).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap_or(Away {
            since: DateTime::<Utc>::UNIX_EPOCH,
            at: Vec::new(),
        }))
    }

    /// Writes the marker atomically (temporary name, fsync, rename, fsync of the folder).
    pub fn write(&self, files: &ArchiveFiles) -> Result<()> {
        let path = files.away();
        let text = serde_json::to_vec(self).map_err(|e| Error::internal("an .away marker", e))?;
        crate::fsutil::write_atomic(&path, 0o644, true, |f| std::io::Write::write_all(f, &text))
            .map_err(|e| Error::io(&path, e))
    }

    /// Where it went, for messages: `usb, b2`.
    pub fn places(&self) -> String {
        match self.at.is_empty() {
            true => "its destinations".into(),
            false => self.at.join(", "),
        }
    }
}

/// The error for reading an archive's data file that is not there because
/// the store dropped it: exit 66 naming where it is, with the `--from` that
/// reads it. None when `data` has no [`Away`] marker beside it.
pub fn away_error(data: &Path) -> Option<Error> {
    let name = data.file_name()?.to_string_lossy().into_owned();
    let id = name.split('.').next()?;
    let away = Away::read(&ArchiveFiles::new(crate::fsutil::parent_of(data), id))?;
    let from = away.at.first().map_or("DEST", String::as_str);
    Some(
        Error::new(
            crate::error::Exit::NoInput,
            data.display().to_string(),
            format!(
                "not in the store: retention.keep_archives dropped it on {} once {} held it",
                away.since.format("%Y-%m-%d"),
                away.places()
            ),
        )
        .with_hint(format!("read it from there: --from {from}")),
    )
}

/// Whether an archive's data was dropped from the store (its marker is there).
pub fn is_away(files: &ArchiveFiles) -> bool {
    files.away().exists()
}

impl ArchiveFiles {
    pub fn new(dir: impl Into<PathBuf>, id: &str) -> ArchiveFiles {
        ArchiveFiles {
            dir: dir.into(),
            id: id.to_string(),
        }
    }

    fn named(&self, suffix: &str, encrypted: bool) -> PathBuf {
        let age = if encrypted { AGE } else { "" };
        self.dir.join(format!("{}{suffix}{age}", self.id))
    }

    pub fn data(&self, compression: Compression, encrypted: bool) -> PathBuf {
        self.named(compression.suffix(), encrypted)
    }

    pub fn index(&self, encrypted: bool) -> PathBuf {
        self.named(".index.zst", encrypted)
    }

    pub fn sums(&self) -> PathBuf {
        self.named(".sha256", false)
    }

    pub fn record(&self) -> PathBuf {
        self.named(".json", false)
    }

    /// The record's signature (`ssh-keygen -Y sign` format), when it is signed.
    pub fn sig(&self) -> PathBuf {
        self.named(".json.sig", false)
    }

    /// The marker saying the data was dropped from the store ([`Away`]).
    pub fn away(&self) -> PathBuf {
        self.named(AWAY, false)
    }

    /// Every name an archive of this id may have, the record last: what an
    /// unfinished publication may have left.
    pub fn every_name(&self) -> Vec<PathBuf> {
        let mut names = Vec::new();
        for encrypted in [false, true] {
            for c in [Compression::Zstd, Compression::Gzip, Compression::None] {
                names.push(self.data(c, encrypted));
            }
            names.push(self.index(encrypted));
        }
        names.push(self.sums());
        names.push(self.away());
        names.push(self.sig());
        names.push(self.record());
        names
    }
}

/// A `.NAME.part` temporary name beside `path`.
pub fn part_name(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    crate::fsutil::parent_of(path).join(format!(".{name}.part"))
}

/// Publishes an archive's fsynced temporary files under their final names, in
/// order (the record last: until it is there the archive does not exist),
/// never replacing anything, then fsyncs the folder.
pub fn publish(dir: &Path, files: &[(&Path, &Path)]) -> Result<()> {
    for (tmp, dest) in files {
        crate::fsutil::rename_noreplace(tmp, dest)
            .map_err(|e| Error::io(dest, e).with_exit(crate::error::Exit::CantCreate))?;
    }
    crate::fsutil::fsync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// The ids of the finished archives in a folder (those with a `.json`), oldest first.
pub fn archive_ids(dir: &Path) -> Result<Vec<String>> {
    crate::store::record_ids(dir)
}

/// Reads an archive record from its `.json` file.
pub fn read_record(path: &Path) -> Result<ArchiveRecord> {
    crate::record::read_file(path, "an archive record")
}

/// A file a record names, looked up by its file name beside the record's `.json`.
pub fn beside(json: &Path, recorded: &str) -> PathBuf {
    let name = Path::new(recorded)
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    crate::fsutil::parent_of(json).join(name)
}

/// `sha256sum` lines (`<hex>  <name>`) for files in one folder.
pub fn sums_text(files: &[(Sha256Digest, &Path)]) -> String {
    let mut out = String::new();
    for (digest, path) in files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        out.push_str(&format!("{digest}  {name}\n"));
    }
    out
}

/// Parses `sha256sum` lines into (digest, file name); a bad line is an error naming it.
pub fn parse_sums(text: &str) -> std::result::Result<Vec<(Sha256Digest, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (hex, name) = line
            .split_once(' ')
            .ok_or_else(|| format!("line {}: not `<sha256>  <name>`", n + 1))?;
        let digest = hex.parse().map_err(|e| format!("line {}: {e}", n + 1))?;
        // sha256sum writes two spaces, or " *" in binary mode.
        let name = name.strip_prefix([' ', '*']).unwrap_or(name);
        out.push((digest, name.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names follow docs/design.md, `.age` last, and the record comes last in every_name.
    #[test]
    fn names_follow_the_layout() {
        let a = ArchiveFiles::new("/s/archives/d", "2026-01-02T030405Z");
        assert_eq!(
            a.data(Compression::Zstd, true),
            Path::new("/s/archives/d/2026-01-02T030405Z.tar.zst.age")
        );
        assert_eq!(
            a.data(Compression::Gzip, false),
            Path::new("/s/archives/d/2026-01-02T030405Z.tar.gz")
        );
        assert_eq!(
            a.index(false),
            Path::new("/s/archives/d/2026-01-02T030405Z.index.zst")
        );
        assert_eq!(a.every_name().last(), Some(&a.record()));
    }

    /// What sums_text writes, parse_sums (and `sha256sum -c`) reads back.
    #[test]
    fn sums_round_trip() {
        let d = Sha256Digest::of(b"x");
        let text = sums_text(&[(d, Path::new("/a/b.tar.zst"))]);
        assert_eq!(text, format!("{d}  b.tar.zst\n"));
        assert_eq!(parse_sums(&text).unwrap(), vec![(d, "b.tar.zst".into())]);
        assert!(parse_sums("zz  x\n").unwrap_err().starts_with("line 1:"));
    }

    /// Sidecars are found beside the record, whatever absolute path it names.
    #[test]
    fn beside_ignores_the_recorded_folder() {
        assert_eq!(
            beside(
                Path::new("/mnt/usb/d/x.json"),
                "/home/me/store/archives/d/x.tar.zst"
            ),
            Path::new("/mnt/usb/d/x.tar.zst")
        );
    }
}
