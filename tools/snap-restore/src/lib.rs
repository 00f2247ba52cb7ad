//! snap-restore: list, show, diff, verify and restore.
//!
//! Works from the files themselves (records, indexes, archives), so it works
//! on a store, on a drive or folder of archives carried from elsewhere, and on
//! tars snap never made. Query commands (`list`, `show`, `diff`) print for
//! people on stdout, or JSON lines with `--json`; `verify` and `restore` print
//! `verified` / `restored` records on stdout and talk to people on stderr.

pub mod annotate;
pub mod attrs;
pub mod cat;
pub mod chain;
pub mod damage;
pub mod disk;
pub mod holes;
pub mod import;
pub mod indexes;
pub mod loc;
pub mod members;
pub mod outcome;
pub mod owners;
pub mod preview;
pub mod refused;
pub mod restore;
pub mod seeking;
pub mod serve;
pub mod sidecars;
pub mod source;
pub mod stream;
pub mod tarfmt;
pub mod target;
pub mod timeline;
pub mod trust;
pub mod verified;
pub mod verify;
pub mod verify_run;
pub mod view;
pub mod writers;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

use snap_cli::Reporter;
use snap_shared::config::LoadedConfig;
use snap_shared::crypt::{self, Decrypt};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::Record;
use snap_shared::store::{self, Store};

use crate::source::Source;

/// The name on every message.
pub const TOOL: &str = "snap-restore";

/// List, show, diff, verify and restore snapshots and archives.
#[derive(Debug, Parser)]
#[command(
    name = "snap-restore",
    version,
    about = "List, show, diff, verify and restore snapshots and archives",
    long_about = "List, show, diff, verify and restore snap snapshots and archives, from the store \
or from any folder of archives (a drive, a copy from another machine), with no catalog needed. \
Also restores and verifies tars snap did not make: .tar, .tar.gz, .tar.zst, with or without age. \
Names are SET/ID, SET/latest, an ID, or a path (a snapshot tree, a .json record, an archive file). \
Restores check every file against its sha256 as it is written, never write outside the target \
(absolute paths, `..` and symlinks in an archive are refused), and never replace an existing \
file without --overwrite.",
    after_help = "Examples:\n  snap-restore list                                   what the store holds\n  snap-restore list /media/me/T9/snap                 what a drive holds\n  snap-restore diff data/2026-11-01T020000Z data/latest\n  snap-restore verify data/latest\n  snap-restore restore data/latest --to /tmp/r --path home/me/docs\n  snap-restore restore backup.tar.zst.age --identity key.txt --to /tmp/r"
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

    /// Print only warnings and errors on stderr
    #[arg(short, long, conflicts_with = "verbose", global = true)]
    pub quiet: bool,

    /// Name every file restored
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
        /// Replace files that exist in the target with other content
        #[arg(long)]
        overwrite: bool,
        /// NAME means an archive even where a snapshot has the same id
        #[arg(long)]
        archive: bool,
        /// Write nothing: list what the restore would create, replace, refuse, or give its attributes again
        #[arg(short = 'n', long)]
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
    },
}

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(
        TOOL,
        args,
        |c: &Cli| (c.global.quiet, c.global.verbose),
        run,
    )
}

fn decryption(g: &Global) -> Result<Decrypt> {
    let mut dec = Decrypt::default();
    for f in &g.identities {
        dec.identities.extend(crypt::read_identity_file(f)?);
    }
    dec.passphrase = crypt::read_passphrase(g.passphrase_file.as_deref())?;
    Ok(dec)
}

pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    let g = &cli.global;
    let loaded = LoadedConfig::load_optional(g.config.as_deref())?;
    let store = Store::new(store::locate(
        g.store.as_deref(),
        LoadedConfig::store(loaded.as_ref()),
    ));
    let source = Source::open(g.from.as_deref(), store.clone(), loaded.as_ref())?;
    let trust = trust::Trust::load(
        loaded.as_ref().and_then(|c| c.config.signing.as_ref()),
        g.allow_unsigned,
    )?;
    let mut stdout = std::io::stdout().lock();
    match &cli.command {
        Command::List {
            dir,
            set,
            host,
            json,
        } => {
            let source = match dir {
                Some(d) => Source::open(Some(d), Store::new(d), loaded.as_ref())?,
                None => source,
            };
            let listing = source.listing()?;
            for e in listing
                .damaged
                .iter()
                .map(|(_, _, _, e)| e)
                .chain(&listing.missing)
            {
                report.failed(e);
            }
            let damaged = listing.damaged.len() + listing.missing.len();
            let mut items = listing.items;
            if let Some(s) = set {
                items.retain(|i| i.set_and_id().is_some_and(|(x, _)| x == s));
            }
            let mut disks = match set {
                Some(_) => Vec::new(),
                None => disk::records(&source)?,
            };
            if let Some(h) = host {
                items.retain(|i| view::host_of(i).as_deref() == Some(h.as_str()));
                disks.retain(|d| disk::disk_host(d).as_deref() == Some(h.as_str()));
            }
            if items.is_empty() && disks.is_empty() {
                let from = host.as_ref().map(|h| format!(" from host {h}"));
                report.note(&format!(
                    "nothing{} in {}",
                    from.unwrap_or_default(),
                    source.show()
                ));
            }
            view::list(&items, *json, &mut stdout)?;
            if *json {
                for r in disks {
                    if !view::emit(
                        &mut stdout,
                        &serde_json::to_string(&snap_shared::record::Record::DiskSnapshot(r))
                            .unwrap_or_default(),
                    )? {
                        break;
                    }
                }
            } else if !disks.is_empty() {
                if !items.is_empty() {
                    view::emit(&mut stdout, "")?;
                }
                for line in disk::table(&disks) {
                    if !view::emit(&mut stdout, line.trim_end())? {
                        break;
                    }
                }
            }
            Ok(match damaged {
                0 => Exit::Ok,
                _ => Exit::Data,
            })
        }
        Command::Show {
            name,
            archive,
            json,
        } => {
            view::show(&source.resolve(name, *archive)?, *json, &mut stdout)?;
            Ok(Exit::Ok)
        }
        Command::Pin {
            name,
            reason,
            archive,
        } => annotate::pin(&source, name, *archive, reason.as_deref(), report),
        Command::Unpin { name, archive } => annotate::unpin(&source, name, *archive, report),
        Command::Serve {
            listen,
            allow_remote,
            allow_changes,
        } => {
            let opts = serve::Options {
                listen: *listen,
                allow_remote: *allow_remote,
                allow_changes: *allow_changes,
                allow_unsigned: g.allow_unsigned,
            };
            serve::run(store.clone(), loaded.clone(), &opts, report)
        }
        Command::Timeline { html } => {
            timeline::run(&store, loaded.as_ref(), html.as_deref(), report)
        }
        Command::Tag {
            name,
            add,
            remove,
            archive,
        } => annotate::tag(&source, name, *archive, (add, remove), &trust, report),
        Command::Describe {
            name,
            text,
            archive,
        } => annotate::describe(&source, name, *archive, text.as_deref(), &trust, report),
        Command::Diff {
            old,
            new,
            archive,
            json,
        } => {
            let (a, b) = (
                source.resolve(old, *archive)?,
                source.resolve(new, *archive)?,
            );
            view::diff(&a, &b, &decryption(g)?, *json, &mut stdout)?;
            Ok(Exit::Ok)
        }
        Command::Verify { names, archive } => {
            let dec = decryption(g)?;
            let place = g.from.as_deref().unwrap_or("store");
            verify_run::run(
                &source,
                &store,
                place,
                (names.as_slice(), *archive),
                (&dec, &trust),
                report,
                stdout,
            )
        }
        Command::Import {
            path,
            set,
            id,
            description,
            tags,
        } => {
            let Source::Store(store) = &source else {
                return Err(Error::usage(
                    "import",
                    "imports go into a store, not a folder of archives",
                )
                .with_hint("drop --from, or point it at a store"));
            };
            let dec = decryption(g)?;
            let index_encrypt = match (&dec.passphrase, g.identities.first()) {
                (Some(p), _) => Some(crypt::Encrypt::Passphrase(p.clone())),
                (None, Some(f)) => Some(crypt::Encrypt::Recipients(
                    crypt::recipients_of_identity_file(f)?,
                )),
                (None, None) => None,
            };
            let req = import::Request {
                path,
                set,
                id: id.as_deref(),
                description: description.as_deref(),
                tags,
                dec: &dec,
                index_encrypt: index_encrypt.as_ref(),
                signer: &trust.signer()?,
            };
            let record = import::import(store, &req, report)?;
            if let Err(e) =
                snap_shared::catalog::Catalog::open(store).and_then(|(c, _)| c.put_archive(&record))
            {
                snap_shared::catalog::Catalog::invalidate(store);
                report.warn(&format!(
                    "{e}; the archive is imported, and the catalog will be rebuilt from the records"
                ));
            }
            report.note(&format!(
                "imported {} as {}/{} ({} files)",
                path.display(),
                record.set,
                record.id,
                record
                    .extra
                    .get("files")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            ));
            let count = |key: &str| record.extra.get(key).and_then(|v| v.as_u64());
            let (left_out, attrs) = (count("left_out"), count("attributes_left_out"));
            RecordWriter::new(stdout).write(&Record::Archive(record))?;
            match (left_out, attrs) {
                (Some(n), _) => Err(Error::data(
                    path.display().to_string(),
                    format!(
                        "{n} member(s) left out of the index (named above); a restore of it names them again"
                    ),
                )),
                (None, Some(n)) => Err(Error::data(
                    path.display().to_string(),
                    format!(
                        "{n} attribute(s) of members left out of the index (named above); a restore of it names them again"
                    ),
                )),
                (None, None) => Ok(Exit::Ok),
            }
        }
        Command::Cat {
            name,
            path,
            archive,
        } => {
            let dec = decryption(g)?;
            cat::cat(
                &source,
                (name, path, *archive),
                (&dec, &trust, report),
                &mut stdout,
            )?;
            Ok(Exit::Ok)
        }
        Command::Restore {
            name,
            to,
            paths,
            overwrite,
            archive,
            dry_run,
            no_xattrs,
            no_acls,
            numeric_owner,
        } => {
            let dec = decryption(g)?;
            if *dry_run {
                let item = source.resolve(name, *archive)?;
                trust.check_named(&item, report)?;
                let plan = preview::preview(&item, paths, to, *overwrite, &dec, usize::MAX)?;
                return preview::print(&plan, to, report);
            }
            if let Some((disk, snap)) = disk::parse_name(name) {
                let rec = disk::restore(&source, disk, snap, to, (&dec, &trust), report)?;
                snap_shared::jsonl::RecordWriter::new(stdout)
                    .write(&snap_shared::record::Record::Restored(rec))?;
                return Ok(Exit::Ok);
            }
            let req = restore::Request {
                name,
                to,
                paths,
                overwrite: *overwrite,
                archive: *archive,
                trust: &trust,
                policy: attrs::Policy {
                    xattrs: !*no_xattrs,
                    acls: !*no_acls,
                },
                numeric_owner: *numeric_owner,
            };
            let (exit, rec) = restore::run(&source, &req, &dec, report, None)?;
            RecordWriter::new(stdout).write(&Record::Restored(rec))?;
            Ok(exit)
        }
    }
}
