//! snap-disk: snapshots of VM disk images.
//!
//! Three methods behind one set of verbs (`create`, `list`, `show`,
//! `restore`, `delete`, `export`, `verify`, `commit`): qcow2 internal
//! snapshots (`qemu-img snapshot`), overlay chains (external snapshots as
//! qcow2 backing files), and `blocks`, changed-blocks-only snapshots of any
//! image into the store's content-addressed block store. Every snapshot is a
//! `disk-snapshot` record in `<store>/disks/<disk>/`.

pub mod blocks;
mod blocks_create;
pub mod changing;
mod cli;
pub mod compact;
pub mod create;
pub mod daemon;
pub mod disk;
pub mod domain_snapshots;
mod domains;
pub mod export;
mod garbage;
mod guard;
pub mod image;
pub mod inplace;
pub mod internal;
mod layout;
pub mod libvirt;
pub mod listing;
pub mod live;
pub mod manage;
pub mod nbd;
mod newfile;
pub mod overlay;
pub mod owned;
pub mod preview;
pub mod qcow2;
pub mod qmp;
mod record;
pub mod restore;
pub mod savevm;
pub mod serve;
mod source;
pub mod undo;
pub mod verify;
pub mod vhdx;

use std::ffi::OsString;

use clap::CommandFactory;

use snap_cli::Reporter;
use snap_shared::error::{Exit, Result};

pub use cli::{
    Cli, Cmd, CreateArgs, DomainArgs, Keys, Method, MonitorArgs, RestoreArgs, ServeArgs, TOOL,
};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs the tool with these arguments and returns the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    snap_cli::main(TOOL, args, |c: &Cli| c.loudness, run)
}

pub fn run(cli: &Cli, report: &Reporter) -> Result<Exit> {
    let ctx = disk::Context::open(cli)?;
    match &cli.command {
        Cmd::Create(args) => create::run(&ctx, args, report),
        Cmd::List { disk, monitor } => listing::list(&ctx, disk.as_deref(), monitor, report),
        Cmd::Show {
            disk,
            name,
            monitor,
        } => listing::show(&ctx, disk, name, monitor, report),
        Cmd::Restore(args) => restore::run(&ctx, args, report),
        Cmd::Delete {
            disk,
            names,
            monitor,
            libvirt,
        } => manage::delete(&ctx, disk, names, (monitor, libvirt), report),
        Cmd::Export {
            disk,
            name,
            out,
            recipients,
            recipients_files,
            keys,
            monitor,
        } => {
            let to = export::ExportTo {
                out,
                recipients,
                recipients_files,
            };
            export::export(&ctx, disk, name, &to, keys, monitor, report)
        }
        Cmd::Verify {
            disk,
            name,
            keys,
            monitor,
        } => verify::verify(&ctx, disk, name.as_deref(), keys, monitor, report),
        Cmd::Serve(args) => serve::run(&ctx, args, report),
        Cmd::Commit { disk } => manage::commit(&ctx, disk, report),
        Cmd::Compact {
            disk,
            drop_snapshots,
        } => compact::compact(&ctx, disk, *drop_snapshots, report),
    }
}
