//! snap-restore: list, show, diff, verify and restore.
//!
//! Works from the files themselves (records, indexes, archives), so it works
//! on a store, on a drive or folder of archives carried from elsewhere, and on
//! tars snap never made. Query commands (`list`, `show`, `diff`) print for
//! people on stdout, or JSON lines with `--json`; `verify` and `restore` print
//! `verified` / `restored` records on stdout and talk to people on stderr.

mod cli;
mod import;
mod list;
mod profiles;
mod restore;

use std::ffi::OsString;

use clap::CommandFactory;
use cli::At;
use cli::decryption;
pub use cli::{Cli, Command, Global, ProfileAction};

use snap_cli::Reporter;
pub use snap_read::TOOL;
use snap_read::source::Source;
use snap_read::{annotate, attrs, cat, trust, verify_run, view};
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Exit, Result};
use snap_shared::store::{self, Store};
use snap_web::{serve, timeline};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.global.loudness, run)
}

pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    let g = &cli.global;
    snap_read::datename::use_local_time(g.local_time);
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
    // Not locked for the whole run: `serve` runs snap-disk's library, which
    // writes its records to stdout too.
    let mut stdout = std::io::stdout();
    let at = At {
        source: &source,
        g,
        trust: &trust,
        report,
    };
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
            list::run(
                &source,
                set.as_deref(),
                host.as_deref(),
                *json,
                report,
                &mut stdout,
            )
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
        Command::Profiles { place } => profiles::list(
            place.as_deref().or(g.from.as_deref()),
            loaded.as_ref(),
            report,
        ),
        Command::Profile {
            action:
                ProfileAction::Take {
                    name,
                    sets,
                    mine,
                    theirs,
                },
        } => profiles::take(
            name,
            g.from.as_deref(),
            (sets, *mine, *theirs),
            loaded.as_ref(),
            report,
        ),
        Command::Timeline { html, no_pictures } => timeline::run(
            &store,
            loaded.as_ref(),
            html.as_deref(),
            !no_pictures,
            report,
        ),
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
            let asked = snap_read::import::What {
                path,
                set,
                id: id.as_deref(),
                description: description.as_deref(),
                tags,
            };
            import::command(&at, &asked, stdout)
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
            host,
            delete,
            no_undo,
            full_paths,
        } => {
            let exact = match host {
                Some(h) => Some(restore::of_host(&source, name, *archive, h)?),
                None => None,
            };
            let req = snap_read::restore::Request {
                name: exact.as_deref().unwrap_or(name),
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
                delete: *delete,
                onto_home: false,
                before: None,
            };
            let how = restore::How {
                dry_run: *dry_run,
                undo: !*no_undo,
                whole_paths: *full_paths,
                store: &store,
                config: loaded.as_ref(),
            };
            restore::command(&at, req, &how, stdout)
        }
    }
}
