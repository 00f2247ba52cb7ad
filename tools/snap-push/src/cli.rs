//! The flags of snap-push, and its name on every message.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

use snap_shared::size::parse_size;

/// The name on every message.
pub const TOOL: &str = "snap-push";

/// Copy archives to external drives and object storage.
#[derive(Debug, Parser)]
#[command(
    name = "snap-push",
    version,
    about = "Copy archives to external drives and object storage (S3, GCS, Azure): resumable, throttled, verified",
    long_about = "Copy archives made by snap-pack to destinations: a folder, an external drive \
found by filesystem UUID or label, or a bucket on S3 (and S3-compatible services: MinIO, Backblaze \
B2, Wasabi), GCS or Azure. Reads `archive` records on stdin, or takes --file or --all. Each archive \
goes as <dest>/<set>/<id>.tar.zst[.age] with its .index.zst, .sha256 and .json, the record last, so \
a destination never lists an archive that is not all there. Large files go in parallel parts; an \
interrupted push (kill, network cut, drive pulled) resumes without sending again what the destination \
already has. Every byte sent is checked against the archive's sha256 and every object's size is \
checked at the destination; --verify also reads each object back. One `pushed` record per archive and \
destination is written on stdout; records of other kinds pass through.\n\n\
Destinations: --dest (repeatable) takes a path, file://PATH, uuid://UUID/FOLDER, label://LABEL/FOLDER, \
s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX, or the name of a configured destination. \
Without --dest, the config's \"destinations\" are used by \"priority\" (lowest first): every \
destination of the first priority with one present is pushed to; lower priorities are the fallback. \
Bucket settings (endpoint, region, credentials) come from the config's \"options\" and the usual \
AWS_*, GOOGLE_* and AZURE_* environment variables; they never appear in records or messages. \
S3-compatible services take an endpoint and a region in \"options\": MinIO {\"endpoint\": \
\"http://nas:9000\", \"region\": \"us-east-1\", \"allow_http\": \"true\"}; Backblaze B2 {\"endpoint\": \
\"https://s3.eu-central-003.backblazeb2.com\", \"region\": \"eu-central-003\"}; Wasabi {\"endpoint\": \
\"https://s3.eu-central-1.wasabisys.com\", \"region\": \"eu-central-1\"}; keys in access_key_id and \
secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. A configured destination looks like \
{\"name\": \"t9\", \"uuid\": \"2F3A-11C4\", \"path\": \"backups\", \"priority\": 1} or {\"name\": \"b2\", \
\"url\": \"s3://bucket/prefix\", \"options\": {…}}.\n\n\
Exit codes: 0 done; 64 usage; 65 an archive or a pushed object failed its check; 66 an archive's files \
are missing; 69 a destination is unreachable; 73 a destination is too full or holds another archive \
of the same name; 74 I/O error; 75 a destination is absent (drive not plugged in) or busy; 77 permission \
denied; 78 bad config.",
    after_help = "Examples:\n  snap-collect | snap-pack | snap-push                  a whole backup, to the configured destinations\n  snap-pack --snapshot data/latest | snap-push --dest /media/me/T9/backups\n  snap-push --all --dest uuid://2F3A-11C4/backups      everything the drive lacks, when it is plugged in\n  snap-push --all --dest s3://my-bucket/snap --bwlimit 5M --verify\n  snap-push --all --dry-run                            what would be sent, and how much",
    mut_arg("verbose", |a| a.help("Say what happens to each archive at each destination"))
)]
pub struct Cli {
    /// A destination: path, uuid://, label://, s3://, gs://, az://, sftp:// URL, rclone:REMOTE:PATH, or a configured name (repeatable) [default: the config's destinations]
    #[arg(short, long = "dest", value_name = "DEST", action = ArgAction::Append)]
    pub dests: Vec<String>,

    /// An archive to push (its data file or its .json record), or a disk snapshot (its record, disks/DISK/NAME.json) (repeatable; default: records on stdin)
    #[arg(short, long = "file", value_name = "PATH", action = ArgAction::Append, conflicts_with = "all")]
    pub files: Vec<PathBuf>,

    /// Push every archive in the store that a destination lacks
    #[arg(short, long)]
    pub all: bool,

    /// With --all, only the archives of this set
    #[arg(long, value_name = "SET", requires = "all")]
    pub set: Option<String>,

    /// Config file [default: $SNAP_CONFIG, else ~/.config/snap/config.json if it exists]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store directory, for --all [default: $SNAP_STORE, else $DBACKUP, else the config's "store", else ~/.local/share/snap]
    #[arg(short, long, value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Read every object back from the destination and check its sha256
    #[arg(long)]
    pub verify: bool,

    /// Say what would be sent and how many bytes; send nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Limit the sending rate, in bytes per second: 500K, 10M (binary units)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub bwlimit: Option<u64>,

    /// Parts of one file sent at once to a bucket
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,

    /// Size of the parts large files are sent in (at least 5M for S3) [default: 8M to buckets, 16M to folders]
    #[arg(long, value_name = "SIZE", value_parser = parse_part_size)]
    pub part_size: Option<u64>,

    /// Retries of a failed request to a bucket, with exponential backoff
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub retries: usize,

    /// Give up retrying a request after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub retry_timeout: u64,

    /// Free space a folder destination must keep after the push, e.g. 2GiB or 5% [default: the destination's min_free, else 1GiB or 5%, whichever is smaller]
    #[arg(long, value_name = "SIZE")]
    pub min_free: Option<String>,

    /// Run CMD (with sh -c) at the end with SNAP_EVENT=success|failure|media-missing|low-disk and SNAP_MESSAGE [default: the config's "notify"]
    #[arg(long, value_name = "CMD")]
    pub notify: Option<String>,

    /// Run no notify command, not even the config's (snap-backup --due notifies for each job itself)
    #[arg(long, conflicts_with = "notify")]
    pub no_notify: bool,

    /// Publish this machine's profile NAME to each --dest: the shareable part of the config (sets, schedule, retention, destinations without secrets, notify, disks), merged with what changed there since this machine last took or published it
    #[arg(long, value_name = "NAME", conflicts_with_all = ["files", "all", "dry_run"], requires = "dests")]
    pub profile: Option<String>,

    /// With --profile: where a key changed both here and there, keep this machine's
    #[arg(long, requires = "profile", conflicts_with = "theirs")]
    pub mine: bool,

    /// With --profile: where a key changed both here and there, take the destination's
    #[arg(long, requires = "profile")]
    pub theirs: bool,

    /// Where resume journals are kept [default: $XDG_STATE_HOME/snap/push, else ~/.local/state/snap/push]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    #[command(flatten)]
    pub loudness: snap_cli::Loudness,
}

fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    match parse_size(s)? {
        0 => Err("the rate must be more than 0".into()),
        n => Ok(n),
    }
}

fn parse_part_size(s: &str) -> std::result::Result<u64, String> {
    match parse_size(s)? {
        n if n < 1 << 20 => Err("parts must be at least 1M".into()),
        n => Ok(n),
    }
}
