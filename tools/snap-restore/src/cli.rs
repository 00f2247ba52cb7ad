//! The flags of snap-restore, its verbs, the keys they read with, and its
//! name on every message.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use snap_cli::Reporter;
use snap_read::source::Source;
use snap_read::trust::Trust;
use snap_shared::crypt::{self, Decrypt};
use snap_shared::error::Result;

/// List, show, diff, verify and restore snapshots and archives.
#[derive(Debug, Parser)]
#[command(
    name = "snap-restore",
    version,
    about = "List, show, diff, verify and restore snapshots and archives",
    long_about = "List, show, diff, verify and restore snap snapshots and archives, from the store \
or from any folder of archives (a drive, a copy from another machine), with no catalog needed. \
Also restores and verifies tars snap did not make: .tar, .tar.gz, .tar.zst, with or without age. \
Names are SET/ID, SET/latest, an ID, a date (SET/2025-04-01: the newest that UTC day; \
SET/2025-04-01T10: the newest of that hour; --local-time for the machine's days), or a path (a \
snapshot tree, a .json record, an archive file). \
Restores check every file against its sha256 as it is written, never write outside the target \
(absolute paths, `..` and symlinks in an archive are refused), and never replace an existing \
file without --overwrite.",
    after_help = "Examples:\n  snap-restore list                                   what the store holds\n  snap-restore list /media/me/T9/snap                 what a drive holds\n  snap-restore diff data/2026-11-01T020000Z data/latest\n  snap-restore restore data/2026-11-01 --to /tmp/r     the newest of that (UTC) day\n  snap-restore verify data/latest\n  snap-restore restore data/latest --to /tmp/r --path home/me/docs\n  snap-restore restore backup.tar.zst.age --identity key.txt --to /tmp/r",
    mut_arg("verbose", |a| a.help("Name every file restored"))
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Store directory [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR", global = true)]
    pub store: Option<PathBuf>,

    /// Look here instead of the store: a store, a folder of archives, a destination URL (s3://, gs://, az://, sftp://, rclone:, uuid://, label://) or a configured destination's name
    #[arg(long, value_name = "WHERE", global = true)]
    pub from: Option<String>,

    /// age identity file (age-keygen output, or an ssh private key) for encrypted archives (repeatable)
    #[arg(short, long = "identity", value_name = "FILE", action = ArgAction::Append, global = true)]
    pub identities: Vec<PathBuf>,

    /// Passphrase on the first line of FILE, for archives encrypted with one; $SNAP_PASSPHRASE also does
    #[arg(long, value_name = "FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,

    /// Read archives whose record is not signed by a key in the allowed signers (old archives, from before records were signed; or another machine's, not yet in the list), with a warning for each
    #[arg(long, global = true)]
    pub allow_unsigned: bool,

    /// Read the days and hours of date names (SET/2025-04-01, SET/2025-04-01T10) in the machine's time zone, not UTC
    #[arg(long, global = true)]
    pub local_time: bool,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,
}

/// What `profile` does.
#[derive(Debug, Subcommand)]
pub enum ProfileAction {
    /// Take profile NAME from --from into this machine's config: its sets, schedule, retention, destinations, notify and disks (this host's block of it laid over them), merged with what changed here since the last take
    Take {
        name: String,
        /// Take only these sets (comma-separated), and nothing else
        #[arg(long, value_name = "SETS", value_delimiter = ',')]
        sets: Vec<String>,
        /// Where a key changed both here and there, keep this machine's
        #[arg(long, conflicts_with = "theirs")]
        mine: bool,
        /// Where a key changed both here and there, take the destination's
        #[arg(long)]
        theirs: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The profiles kept at a destination (snap-push --profile publishes them), newest version of each
    Profiles {
        /// A configured destination's name, a destination URL or a folder [default: --from]
        #[arg(value_name = "WHERE")]
        place: Option<String>,
    },
    /// Take a profile from a destination (`profile take NAME --from WHERE`)
    Profile {
        #[command(subcommand)]
        action: ProfileAction,
    },
    /// List the snapshots and archives of the store, or of WHERE (a store, a folder, a drive or a bucket)
    List {
        /// A store, a folder of archives, a destination URL or a configured destination's name [default: the store]
        #[arg(value_name = "WHERE")]
        dir: Option<String>,
        /// Only this set
        #[arg(long, value_name = "NAME")]
        set: Option<String>,
        /// Only what this machine made (the HOST column: records' created_by, or host)
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Print the records as JSON lines
        #[arg(long)]
        json: bool,
    },
    /// Show a snapshot or archive: its record, sizes, compression ratio, chain
    Show {
        #[arg(value_name = "NAME")]
        name: String,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
        /// Print the record as JSON
        #[arg(long)]
        json: bool,
    },
    /// What changed between two snapshots or archives: + added, - removed, M modified, T type, U metadata
    Diff {
        #[arg(value_name = "OLD")]
        old: String,
        #[arg(value_name = "NEW")]
        new: String,
        /// Names mean archives even where snapshots have the same ids
        #[arg(long)]
        archive: bool,
        /// Print one JSON line per change
        #[arg(long)]
        json: bool,
    },
    /// Read every byte of snapshots or archives and check them against their sha256s (no NAME: every snapshot and archive)
    Verify {
        #[arg(value_name = "NAME")]
        names: Vec<String>,
        /// Names mean archives even where snapshots have the same ids
        #[arg(long)]
        archive: bool,
    },
    /// Every snapshot, archive and disk snapshot of the store, its health and what retention would do, as one self-contained HTML page
    Timeline {
        /// Write the page here (atomically) [default: stdout]
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Leave out the pictures (growth, added bytes, verify age, coverage, costs): a smaller page
        #[arg(long)]
        no_pictures: bool,
    },
    /// The timeline, live, on a local web server: diffs, file history and search; restores, deletes and edits with --allow-changes
    Serve {
        /// Where to listen (loopback unless --allow-remote)
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8765")]
        listen: std::net::SocketAddr,
        /// Allow a --listen address other machines can reach (a warning is printed)
        #[arg(long)]
        allow_remote: bool,
        /// Allow restoring, deleting, tagging, describing, pinning and unpinning from the page (read-only otherwise)
        #[arg(long)]
        allow_changes: bool,
    },
    /// Keep a snapshot, archive or disk snapshot (SET/ID, disks/DISK/NAME) from every retention rule
    Pin {
        #[arg(value_name = "NAME")]
        name: String,
        /// Why (shown by `show`)
        #[arg(short, long, value_name = "TEXT")]
        reason: Option<String>,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
    },
    /// Add or remove tags of a snapshot, archive or disk snapshot (snap-prune --keep-tag keeps by them)
    Tag {
        #[arg(value_name = "NAME")]
        name: String,
        /// Add this tag (repeatable)
        #[arg(long, value_name = "TAG", action = ArgAction::Append)]
        add: Vec<String>,
        /// Remove this tag (repeatable)
        #[arg(long, value_name = "TAG", action = ArgAction::Append)]
        remove: Vec<String>,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
    },
    /// Set the description of a snapshot, archive or disk snapshot (no TEXT: clear it)
    Describe {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "TEXT")]
        text: Option<String>,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
    },
    /// Remove a pin: the snapshot is subject to the retention rules again
    Unpin {
        #[arg(value_name = "NAME")]
        name: String,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
    },
    /// Add an archive snap did not make (tar, tar.gz, tar.zst, maybe age) to the store, with an index and sha256
    Import {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// The set it belongs to
        #[arg(long, value_name = "NAME")]
        set: String,
        /// Its id [default: from the file's mtime]
        #[arg(long, value_name = "ID")]
        id: Option<String>,
        /// What it is, e.g. "WSL Ubuntu before the upgrade" (kept in the record and the catalog)
        #[arg(short, long, value_name = "TEXT")]
        description: Option<String>,
        /// Tag it (repeatable; snap-prune --keep-tag keeps tagged ones)
        #[arg(short, long = "tag", value_name = "TAG", action = ArgAction::Append)]
        tags: Vec<String>,
    },
    /// Write one file of a snapshot or archive to stdout, checked against its sha256 as it goes out (a mismatch is exit 65, after the bytes); from a seekable archive only the frames holding it are read
    Cat {
        #[arg(value_name = "NAME")]
        name: String,
        /// The file, inside the snapshot (e.g. home/me/.bashrc)
        #[arg(value_name = "PATH")]
        path: String,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
    },
    /// Restore a snapshot or archive (or any tar) into a folder
    Restore {
        #[arg(value_name = "NAME")]
        name: String,
        /// The folder to restore into (created if missing)
        #[arg(short, long, value_name = "DIR")]
        to: PathBuf,
        /// Restore only this path inside the snapshot, e.g. home/me/docs (repeatable)
        #[arg(short, long = "path", value_name = "PATH", action = ArgAction::Append)]
        paths: Vec<String>,
        /// Replace files that exist in the target with other content; what is replaced is snapshot first into the store (set pre-restore) unless --no-undo
        #[arg(long)]
        overwrite: bool,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
        /// Write nothing: list what the restore would create, replace, refuse, or give its attributes again, and what the target's folders hold that the snapshot lacks (kept)
        #[arg(short = 'n', long, visible_alias = "preview")]
        dry_run: bool,
        /// Set no extended attributes (user.*, trusted.*, security.*, capabilities); ACLs still are
        #[arg(long)]
        no_xattrs: bool,
        /// Set no POSIX ACLs
        #[arg(long)]
        no_acls: bool,
        /// Give entries the recorded uid and gid, not the ids their owner and group names have here
        #[arg(long)]
        numeric_owner: bool,
        /// Only what HOST made: NAME (SET/latest, a date) is found among its snapshots and archives, as at a destination several machines share
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
        /// Remove what the restored folders hold that the snapshot lacks (as rsync --delete), after a restore without errors; the folders above the set's sources are not restored folders
        #[arg(long)]
        delete: bool,
        /// Take no undo snapshot of what --overwrite replaces and --delete removes
        #[arg(long)]
        no_undo: bool,
        /// With --to ~: keep the snapshot's whole paths (home/alice/.config lands in ~/home/alice/.config) instead of putting the home folder it was made in onto ~
        #[arg(long)]
        full_paths: bool,
    },
}

pub(crate) fn decryption(g: &Global) -> Result<Decrypt> {
    let mut dec = Decrypt::default();
    for f in &g.identities {
        dec.identities.extend(crypt::read_identity_file(f)?);
    }
    dec.passphrase = crypt::read_passphrase(g.passphrase_file.as_deref())?;
    Ok(dec)
}

/// What every verb runs with: where it reads, the global flags, whose
/// records it trusts, and where it reports.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) source: &'a Source,
    pub(crate) g: &'a Global,
    pub(crate) trust: &'a Trust,
    pub(crate) report: &'a Reporter,
}
