//! snap-pack: turns snapshots into portable archives.
//!
//! Reads `snapshot` records on stdin (or `--snapshot`), writes for each a
//! standard GNU tar stream, compressed with zstd (or gzip, or not at all) and
//! optionally age-encrypted, beside its index, a `sha256sum` file and its
//! record, then prints one `archive` record per archive. Records of other
//! kinds pass through. `--incremental` packs only what changed since the
//! set's previous archive.

pub mod base;
pub mod check;
mod checked;
mod cli;
pub mod delta;
pub mod frames;
pub mod input;
pub mod pack;
pub mod sink;

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::CommandFactory;

use snap_cli::Reporter;
use snap_shared::archive::Compression;
use snap_shared::catalog::Catalog;
use snap_shared::config::LoadedConfig;
use snap_shared::crypt::{self, Encrypt};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::jsonl::{Item, RecordWriter};
use snap_shared::record::Record;
use snap_shared::size::{Floor, human_bytes};
use snap_shared::store::{self, Store};

pub use crate::cli::{Cli, TOOL};
use crate::input::Input;
use crate::pack::{Options, Packed};
use crate::sink::Encoding;

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.loudness, run)
}

/// The encryption the flags and environment ask for, if any.
fn encryption(cli: &Cli) -> Result<Option<Encrypt>> {
    let recipients = crypt::recipients(&cli.recipients, &cli.recipients_files)?;
    if !recipients.is_empty() {
        return Ok(Some(Encrypt::Recipients(recipients)));
    }
    Ok(crypt::read_passphrase(cli.passphrase_file.as_deref())?.map(Encrypt::Passphrase))
}

/// The free space the archive folder must keep: `--min-free`; else, when the
/// archives go into the store (no `--out`), the store's own floor, the config's
/// `collect.min_free` (the same filesystem snap-collect keeps it on); else the
/// default.
fn floor(cli: &Cli, config: Option<&LoadedConfig>) -> Result<Floor> {
    if let Some(f) = &cli.min_free {
        return Floor::parse(f).map_err(|e| Error::usage("--min-free", e));
    }
    let store_floor = config.and_then(|c| c.config.collect.min_free.as_deref());
    match store_floor.filter(|_| cli.out.is_none()) {
        Some(f) => Floor::parse(f).map_err(|e| Error::new(Exit::Config, "collect.min_free", e)),
        None => Ok(Floor::DEFAULT),
    }
}

/// The whole run: read what to pack, pack each, emit records.
pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    let loaded = LoadedConfig::load_optional(cli.config.as_deref())?;
    let store = Store::new(store::locate(
        cli.store.as_deref(),
        LoadedConfig::store(loaded.as_ref()),
    ));
    let floor = floor(cli, loaded.as_ref())?;
    let mut damaged = Vec::new();
    let input = if !cli.snapshots.is_empty() {
        input::named(&store, &cli.snapshots)?
    } else if cli.latest {
        let (input, bad) = input::latest(&store)?;
        damaged = bad;
        input
    } else if std::io::stdin().is_terminal() {
        return Err(Error::usage("", "nothing to pack").with_hint(
            "pipe snap-collect's records in, or name snapshots with --snapshot SET/latest (or --latest)",
        ));
    } else {
        input::from_stdin()?
    };
    let encrypt = encryption(cli)?;
    let (signer, made) =
        snap_shared::sign::machine_signer(loaded.as_ref().and_then(|c| c.config.signing.as_ref()))?;
    if let Some(made) = made {
        report.note(&made.describe("archives"));
    }
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let opts = Options {
        out_root: cli
            .out
            .as_ref()
            .map(|o| std::path::absolute(o).unwrap_or(o.clone())),
        encoding: Encoding {
            compression: cli.compression,
            level: if cli.compression == Compression::Gzip {
                cli.level.min(9)
            } else {
                cli.level
            },
            threads: if cli.compression == Compression::Zstd {
                threads
            } else {
                0
            },
            encrypt: encrypt.as_ref(),
        },
        incremental: cli.incremental,
        full_every: cli.full_every,
        floor,
        signer: Some(&signer),
    };
    let mut out = RecordWriter::new(std::io::stdout().lock());
    for item in input {
        match item {
            Input::Pass(Item::Record(rec)) => out.write(&rec)?,
            Input::Pass(Item::Other { line, .. }) => out.write_line(&line)?,
            Input::Snapshot(snap) => {
                let packed = pack::pack(&snap, &opts, report)?;
                note_catalog(&snap.store, &packed, cli.out.is_none(), report);
                report.note(&summary(&packed));
                out.write(&Record::Archive(packed.record))?;
            }
        }
    }
    for e in &damaged {
        report.failed(e);
    }
    Ok(match damaged.is_empty() {
        true => Exit::Ok,
        false => Exit::Data,
    })
}

/// Adds an archive in the store to its catalog; a catalog problem only warns.
fn note_catalog(store_root: &str, packed: &Packed, in_store: bool, report: &Reporter) {
    // An archive that existed may be one a killed run published without its
    // row: the row is put again (it replaces an equal one).
    if !in_store {
        return;
    }
    let store = Store::new(store_root);
    let result = Catalog::open(&store).and_then(|(cat, warning)| {
        if let Some(w) = warning {
            report.warn(&w);
        }
        cat.put_archive(&packed.record)
    });
    if let Err(e) = result {
        Catalog::invalidate(&store);
        report.warn(&format!(
            "{e}; the archive is safe, and the catalog will be rebuilt from the records"
        ));
    }
}

/// One line on stderr for a packed archive.
fn summary(p: &Packed) -> String {
    let r = &p.record;
    if p.existed {
        return format!("{}/{}: already packed as {}", r.set, r.id, r.path);
    }
    let field = |k: &str| r.extra.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let kind = match &r.base {
        Some(b) => format!("incremental on {b}"),
        None => "full".into(),
    };
    format!(
        "{}/{}: {kind}, {} files ({}) in {} -> {}",
        r.set,
        r.id,
        field("packed_files"),
        human_bytes(field("packed_bytes")),
        human_bytes(r.bytes),
        r.path
    )
}
