//! The flags of snap-pack, and its name on every message.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use snap_shared::archive::Compression;

/// The name on every message.
pub const TOOL: &str = "snap-pack";

/// Pack snapshots into tar.zst archives with sha256 checksums.
#[derive(Debug, Parser)]
#[command(
    name = "snap-pack",
    version,
    about = "Pack snapshots into standard tar.zst archives with sha256 checksums",
    long_about = "Pack snapshots into standard tar archives, compressed with zstd (multi-threaded) \
or gzip, optionally encrypted with age. Reads `snapshot` records on stdin (as snap-collect writes \
them) or takes --snapshot, and writes <store>/archives/<set>/<id>.tar.zst (or under --out) with \
<id>.index.zst (the per-file index), <id>.sha256 (sha256sum lines) and <id>.json (the record, \
written last: an archive without it is unfinished and redone by the next run). One `archive` \
record per archive is written on stdout; records of other kinds pass through. The archives are \
plain tar: `tar --zstd -xf` extracts them and `age -d` decrypts them with no snap tool installed.",
    after_help = "Examples:\n  snap-collect | snap-pack                      pack what was just collected\n  snap-pack --snapshot data/latest              pack the newest snapshot of set \"data\"\n  snap-pack --snapshot data/latest --incremental --full-every 7\n  snap-pack --snapshot data/latest --recipients-file ~/.config/snap/recipients\n  snap-collect | snap-pack | snap-push          a whole backup",
    mut_arg("verbose", |a| a.help("Name every file packed"))
)]
pub struct Cli {
    /// A snapshot to pack: SET/ID, SET/latest, an ID, or the path of a snapshot or its .json (repeatable; default: records on stdin)
    #[arg(long = "snapshot", value_name = "SNAPSHOT", action = ArgAction::Append)]
    pub snapshots: Vec<String>,

    /// Pack the newest snapshot of every set in the store (one already packed is left as it is)
    #[arg(long, conflicts_with = "snapshots")]
    pub latest: bool,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store directory, for --snapshot names [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Write archives under DIR/<set>/ instead of <store>/archives/<set>/
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Compression of the tar stream
    #[arg(long, value_name = "KIND", default_value = "zstd", value_parser = parse_compression)]
    pub compression: Compression,

    /// Compression level (zstd 1-19, gzip 1-9)
    #[arg(short, long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,

    /// zstd worker threads [default: one per CPU]
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,

    /// Encrypt to this age recipient (age1… or an ssh public key; repeatable)
    #[arg(short, long = "recipient", value_name = "RECIPIENT", action = ArgAction::Append)]
    pub recipients: Vec<String>,

    /// Encrypt to the recipients listed in FILE, one a line (repeatable)
    #[arg(short = 'R', long = "recipients-file", value_name = "FILE", action = ArgAction::Append)]
    pub recipients_files: Vec<PathBuf>,

    /// Encrypt with the passphrase on the first line of FILE (age scrypt); $SNAP_PASSPHRASE also does
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipients", "recipients_files"])]
    pub passphrase_file: Option<PathBuf>,

    /// Pack only the files changed since the set's previous archive (its `base`)
    #[arg(short, long)]
    pub incremental: bool,

    /// With --incremental, make a full archive once a chain has N archives (0: never)
    #[arg(long, value_name = "N", default_value_t = 10, requires = "incremental")]
    pub full_every: u64,

    /// Free space the archive folder's filesystem must keep, e.g. 2GiB or 5% [default: without --out the config's collect.min_free, else 1GiB or 5%, whichever is smaller]
    #[arg(long, value_name = "SIZE")]
    pub min_free: Option<String>,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,
}

/// The compression of `--compression`, for the CLI's value parser.
pub fn parse_compression(s: &str) -> std::result::Result<Compression, String> {
    Compression::parse(s).ok_or_else(|| format!("{s:?} is not one of zstd, gzip, none"))
}
