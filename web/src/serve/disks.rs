//! Disk snapshots on the page: restore into the image in place (a dry run
//! first: the blocks it would rewrite; then confirm, with the undo snapshot
//! the command line takes), restore to a new file, export (the suffix gives
//! the format), and serve over NBD for instant recovery until stopped here.
//! All go through snap-disk's library as its command line does, with its
//! refusals: an image a process holds (a VM, a qemu-storage-daemon) or a
//! libvirt domain runs is refused (the page shows snap-disk's message).
//! Like every change from the page, it needs `--allow-changes` and the
//! page's CSRF token; names only (`disks/DISK/NAME`), and a file to write
//! is absolute, plain, outside the store, and not there yet.

use std::collections::BTreeMap;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clap::Parser;
use maud::{Markup, html};

use snap_cli::Reporter;
use snap_shared::error::{Error, Result};

use super::held::{held, outside_store};
use super::http::{Shared, blocking, check_post, check_writable, failed, page, refuse, respond};

/// What the disk form asks.
#[derive(serde::Deserialize)]
pub(super) struct DiskForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    to: String,
}

/// The four things the page does with a disk snapshot.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    InPlace,
    NewFile,
    Export,
    Serve,
}

impl Mode {
    fn of(s: &str) -> Result<Mode> {
        Ok(match s {
            "" | "inplace" => Mode::InPlace,
            "newfile" => Mode::NewFile,
            "export" => Mode::Export,
            "serve" => Mode::Serve,
            _ => {
                return Err(Error::usage(
                    format!("mode {s:?}"),
                    "is inplace, newfile, export or serve",
                ));
            }
        })
    }
}

/// A form checked: the disk, the snapshot, what to do, the file to write.
struct Asked {
    disk: String,
    snap: String,
    mode: Mode,
    to: Option<PathBuf>,
}

/// Servers started from the page, by job: a handle to stop each.
#[derive(Default)]
pub(super) struct Serving {
    stoppers: Mutex<BTreeMap<usize, (PathBuf, UnixListener)>>,
}

fn asked(s: &Shared, f: &DiskForm) -> Result<Asked> {
    held(&s.store, &f.name, false)?;
    let Some((disk, snap)) = snap_read::disk::parse_name(&f.name) else {
        return Err(Error::usage(
            format!("name {:?}", f.name),
            "give disks/DISK/NAME",
        ));
    };
    let mode = Mode::of(&f.mode)?;
    let to = match mode {
        Mode::NewFile | Mode::Export => Some(new_file(&f.to, s)?),
        _ => None,
    };
    Ok(Asked {
        disk: disk.to_string(),
        snap: snap.to_string(),
        mode,
        to,
    })
}

/// A file to write: absolute, plain (no `.`, `..`), outside the store, new.
fn new_file(to: &str, s: &Shared) -> Result<PathBuf> {
    let p = outside_store("file", to, &s.store)?;
    if p.symlink_metadata().is_ok() {
        return Err(Error::usage(
            format!("file {}", p.display()),
            "is there already; the page never writes over a file",
        ));
    }
    Ok(p)
}

/// snap-disk's own arguments for a verb, as its command line takes them.
fn disk_cli(argv: &[&str]) -> Result<snap_disk::Cli> {
    snap_disk::Cli::try_parse_from(std::iter::once("snap-disk").chain(argv.iter().copied()))
        .map_err(|e| Error::usage("snap-disk", e.to_string().trim().to_string()))
}

fn context(s: &Shared) -> snap_disk::disk::Context {
    snap_disk::disk::Context::new(s.store.clone(), s.config.clone())
}

fn restore_args(a: &Asked, dry: bool) -> Result<snap_disk::RestoreArgs> {
    let to = a.to.as_ref().map(|p| p.display().to_string());
    let mut argv = vec!["restore", &a.disk, &a.snap];
    if let Some(t) = &to {
        argv.extend(["--to", t]);
    }
    if dry {
        argv.push("--dry-run");
    }
    match disk_cli(&argv)?.command {
        snap_disk::Cmd::Restore(args) => Ok(args),
        _ => unreachable!("parsed as restore"),
    }
}

/// The form: what to do with the snapshot.
pub(super) async fn form(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(name) = q.get("name") else {
        return refuse(StatusCode::BAD_REQUEST, "give name=disks/DISK/NAME\n");
    };
    if let Some(r) = check_writable(&s) {
        return r;
    }
    if let Err(e) = held(&s.store, name, false) {
        return failed(e);
    }
    let body = html! {
        h2 { "Disk snapshot " (name) }
        form method="post" action="/disk/preview" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="name" value=(name);
            p { label { input type="radio" name="mode" value="inplace" checked; " restore into the image, in place (an undo snapshot is taken first)" } }
            p { label { input type="radio" name="mode" value="newfile"; " restore to a new file (raw)" } }
            p { label { input type="radio" name="mode" value="export"; " export to a file (.qcow2, .vmdk, .vdi, .vhdx, .raw, .img; .age to encrypt needs the command line)" } }
            p { label { input type="radio" name="mode" value="serve"; " serve it read-only over NBD, to boot from at once" } }
            p { label { "The file, for a new file or an export (absolute; must not exist) " br;
                input #to type="text" name="to" size="60" placeholder="/var/tmp/restored.raw"; } }
            button #preview type="submit" { "Dry run: show what it would do" }
        }
        p.small { "The same from a shell: " code { "snap-disk restore DISK NAME [--to FILE] [--dry-run]" } ", "
            code { "snap-disk export DISK NAME FILE" } ", " code { "snap-disk serve DISK NAME" } }
    };
    axum::response::Html(page(&format!("disk {name}"), body).into_string()).into_response()
}

/// What the confirm page says the action would do.
fn would(s: &Shared, a: &Asked) -> Result<String> {
    let quiet = Reporter::new(snap_disk::TOOL, true, false);
    let ctx = context(s);
    Ok(match a.mode {
        Mode::InPlace | Mode::NewFile => {
            snap_disk::preview::preview(&ctx, &restore_args(a, true)?, &quiet)?.says
        }
        Mode::Export => format!(
            "would export {}/{} to the new file {} (the format its suffix names)",
            a.disk,
            a.snap,
            a.to.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        Mode::Serve => format!(
            "would serve {}/{} read-only over NBD on a unix socket until stopped from this page",
            a.disk, a.snap
        ),
    })
}

/// The dry run, with a confirm button.
pub(super) async fn preview(State(s): State<Arc<Shared>>, Form(f): Form<DiskForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    let shared = s.clone();
    let page = blocking(move || {
        let a = asked(&shared, &f)?;
        let says = would(&shared, &a)?;
        Ok(confirm_markup(&f, &says, &shared.csrf).into_string())
    })
    .await;
    respond(page)
}

fn confirm_markup(f: &DiskForm, says: &str, csrf: &str) -> Markup {
    page(
        &format!("{} (dry run)", f.name),
        html! {
            h2 { "Dry run: " (f.name) }
            p #summary { (says) }
            form method="post" action="/disk/start" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="name" value=(f.name);
                input type="hidden" name="mode" value=(f.mode);
                input type="hidden" name="to" value=(f.to);
                button #confirm type="submit" { "Do it now" }
                " " a href="/" { "cancel" }
            }
        },
    )
}

/// Starts the action on a thread of its own; the job page follows it.
pub(super) async fn start(State(s): State<Arc<Shared>>, Form(f): Form<DiskForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    let a = match asked(&s, &f) {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let to = a.to.clone().unwrap_or_default();
    let (id, job) = s.add_job(&f.name, to, (0, 0));
    let s2 = s.clone();
    std::thread::spawn(move || {
        let report = Reporter::capturing(snap_disk::TOOL, job.lines.clone());
        let outcome = match a.mode {
            Mode::Serve => serve(&s2, &a, id, &report),
            _ => {
                let _one = s2.restoring.lock().unwrap_or_else(|e| e.into_inner());
                act(&s2, &a, &report)
            }
        };
        let said = match outcome {
            Ok(s) => s,
            Err(e) => format!("failed: {e} (exit {})", e.exit as i32),
        };
        *job.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(said);
    });
    Redirect::to(&format!("/restore/job?id={id}")).into_response()
}

/// A restore or an export; what it did, in words.
fn act(s: &Shared, a: &Asked, report: &Reporter) -> Result<String> {
    let ctx = context(s);
    match a.mode {
        Mode::Export => {
            let out = a.to.clone().unwrap_or_default();
            let out_s = out.display().to_string();
            let cli = disk_cli(&["export", &a.disk, &a.snap, &out_s])?;
            let snap_disk::Cmd::Export { keys, monitor, .. } = &cli.command else {
                unreachable!("parsed as export")
            };
            let to = snap_disk::export::ExportTo {
                out: &out,
                recipients: &[],
                recipients_files: &[],
            };
            snap_disk::export::export(&ctx, &a.disk, &a.snap, &to, keys, monitor, report)?;
            Ok(format!("exported to {out_s}"))
        }
        _ => {
            let rec = snap_disk::restore::restore(&ctx, &restore_args(a, false)?, report)?;
            let undo = rec
                .extra
                .get("undo")
                .and_then(|v| v.as_str())
                .map(|u| format!("; the image as it was is snapshot {u}"))
                .unwrap_or_default();
            Ok(format!(
                "restored {} into {}: {} written{undo}",
                rec.what,
                rec.to.unwrap_or_default(),
                snap_shared::size::human_bytes(rec.bytes)
            ))
        }
    }
}

/// Serves until stopped from the page.
fn serve(s: &Shared, a: &Asked, id: usize, report: &Reporter) -> Result<String> {
    let ctx = context(s);
    let cli = disk_cli(&["serve", &a.disk, &a.snap])?;
    let snap_disk::Cmd::Serve(args) = &cli.command else {
        unreachable!("parsed as serve")
    };
    let ready = snap_disk::serve::prepare(&ctx, args)?;
    for line in ready.says() {
        report.note(&line);
    }
    let socket = ready.socket.clone();
    s.serving
        .stoppers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, (socket.clone(), ready.stopper()?));
    let keys = args.keys.clone();
    let ended = ready.serve(Arc::new(move || keys.decrypt()));
    let _ = std::fs::remove_file(&socket);
    // Stopped from the page: its stopper is gone, and the accept loop's
    // error is the shutdown's. Otherwise the server failed on its own.
    let stopped = s
        .serving
        .stoppers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
        .is_none();
    match ended {
        Err(e) if !stopped => Err(e),
        _ => Ok(format!("stopped serving on {}", socket.display())),
    }
}

/// The stop form of a server the page started, on its job page.
pub(super) fn stop_form(s: &Shared, id: usize) -> Markup {
    let serving = s
        .serving
        .stoppers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(&id);
    html! {
        @if serving {
            form method="post" action="/disk/stop" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="id" value=(id);
                button #stop type="submit" { "Stop serving" }
            }
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct StopForm {
    #[serde(default)]
    csrf: String,
    id: usize,
}

/// Stops a server the page started: its socket shut down and removed.
pub(super) async fn stop(State(s): State<Arc<Shared>>, Form(f): Form<StopForm>) -> Response {
    if let Some(r) = check_post(&s, &f.csrf) {
        return r;
    }
    let Some((socket, l)) = s
        .serving
        .stoppers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&f.id)
    else {
        return refuse(StatusCode::NOT_FOUND, "no such server\n");
    };
    let _ = rustix::net::shutdown(&l, rustix::net::Shutdown::Both);
    let _ = std::fs::remove_file(&socket);
    Redirect::to(&format!("/restore/job?id={}", f.id)).into_response()
}
