//! Where a blocks snapshot reads the disk from: the image file itself, a
//! VHDX chain, or, for a running VM, the fleecing export a QMP session opens;
//! and what each read maps onto the parent snapshot.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use snap_cli::{Reporter, Tally};
use snap_shared::blockmap::{MapHeader, MapWriter};
use snap_shared::blockstore::BlockStore;
use snap_shared::error::{Error, Result};
use snap_shared::holders::holders;

use crate::cli::{CreateArgs, Method, MonitorArgs};
use crate::disk::{Context, Disk};
use crate::image::{self, ImageInfo};
use crate::{blocks, daemon, live};
use snap_shared::config::{DiskEntry, expand_tilde};

/// The config's disk entry for `image` (the same file, by device and inode).
pub(crate) fn config_entry<'a>(ctx: &'a Context, image: &Path) -> Option<&'a DiskEntry> {
    use std::os::unix::fs::MetadataExt;
    let me = fs::metadata(image).ok()?;
    ctx.disks.iter().find(|d| {
        d.image.as_deref().is_some_and(|i| {
            fs::metadata(expand_tilde(i)).is_ok_and(|m| m.dev() == me.dev() && m.ino() == me.ino())
        })
    })
}

fn entry_path(s: &Option<String>) -> Option<PathBuf> {
    s.as_deref().map(expand_tilde)
}

/// Where the QEMU running the image has its monitor: the flags, else the
/// config's entry for the image. None when neither names a QMP socket.
pub(crate) fn monitor_endpoints(
    ctx: &Context,
    flags: &MonitorArgs,
    image: &Path,
) -> Result<Option<live::Endpoints>> {
    let entry = config_entry(ctx, image);
    let Some(qmp) = flags
        .qmp
        .clone()
        .or_else(|| entry.and_then(|e| entry_path(&e.qmp)))
    else {
        if flags.node.is_some() {
            return Err(needs_qmp("--node"));
        }
        return Ok(None);
    };
    Ok(Some(live::Endpoints {
        qmp,
        node: flags
            .node
            .clone()
            .or_else(|| entry.and_then(|e| e.node.clone())),
        ..Default::default()
    }))
}

fn needs_qmp(flag: &str) -> Error {
    Error::usage(
        flag,
        "needs --qmp SOCKET (or \"qmp\" in the config's disk entry)",
    )
}

/// Where the QEMU running the image listens, for a create: its monitor
/// ([`monitor_endpoints`]), NBD server and guest agent.
pub(crate) fn endpoints(
    ctx: &Context,
    args: &CreateArgs,
    image: &Path,
) -> Result<Option<live::Endpoints>> {
    let entry = config_entry(ctx, image);
    let agent = args
        .guest_agent
        .clone()
        .or_else(|| entry.and_then(|e| entry_path(&e.guest_agent)));
    let freeze = args.freeze || entry.is_some_and(|e| e.freeze);
    let Some(ends) = monitor_endpoints(ctx, &args.monitor, image)? else {
        // A shut-off libvirt domain's disk is read as it is: nothing to freeze.
        let domain = args.libvirt.domain.is_some();
        for (set, flag) in [
            (args.nbd_server.is_some(), "--nbd-server"),
            (args.freeze && !domain, "--freeze"),
            (args.vm_state && !domain, "--vm-state"),
        ] {
            if set {
                return Err(needs_qmp(flag));
            }
        }
        return Ok(None);
    };
    if freeze && agent.is_none() {
        return Err(Error::usage(
            "--freeze",
            "needs the guest agent's socket: --guest-agent SOCKET (or \"guest_agent\" in the config's disk entry)",
        ));
    }
    Ok(Some(live::Endpoints {
        nbd_server: args
            .nbd_server
            .clone()
            .or_else(|| entry.and_then(|e| entry_path(&e.nbd_server))),
        agent: agent.filter(|_| freeze),
        ..ends
    }))
}

/// How a blocks snapshot reads the image.
pub(crate) enum Reading {
    /// The image file itself; `in_use` when a process holds it (no consistency).
    File { in_use: bool },
    /// Through the QEMU that runs it, at one point in time.
    Live(live::Endpoints),
    /// A stopped image of another format than raw, through a QEMU of our own.
    Stopped,
    /// A differencing VHDX (QEMU cannot open one), with its parents.
    VhdxChain { in_use: bool },
    /// Through libvirt's backup job, at one point in time.
    Domain(crate::domains::Running),
    /// A stopped image whose data is stored as is, read straight from its
    /// file (formats with no dirty bitmap to keep: not qcow2).
    Direct(Vec<crate::layout::Extent>),
}

/// Decides how to read: through QEMU when its QMP socket is known (given on
/// the command line, or in the config while a process holds the image),
/// else the file, with a warning when something holds it.
pub(crate) fn how_to_read(
    disk: &Disk,
    (format, backing): (&str, bool),
    method: Method,
    (ends, domain): (Option<live::Endpoints>, Option<crate::domains::Running>),
    args: &CreateArgs,
    report: &Reporter,
) -> Result<Reading> {
    if let Some(d) = domain {
        if args.require_stopped {
            return Err(disk
                .refuse_if_in_use("snapshotting")
                .err()
                .unwrap_or_else(|| {
                    Error::new(
                        snap_shared::error::Exit::TempFail,
                        format!("snapshotting {}", disk.image.display()),
                        format!("libvirt domain {} runs it", d.dom.name),
                    )
                }));
        }
        if method == Method::Blocks {
            return Ok(Reading::Domain(d));
        }
    }
    // An internal snapshot only adds to the image, through qemu-img, which
    // takes the image's lock first: QEMU's lock is the check (microseconds;
    // the scan of every process is for what rewrites or reads the image).
    let held = match method {
        Method::Qcow2Internal => snap_shared::holders::lock_holder(&disk.image).is_some(),
        _ => !holders(&disk.image).is_empty(),
    };
    match ends {
        Some(e)
            if method == Method::Blocks
                && !(held && args.require_stopped)
                && (held || args.monitor.qmp.is_some()) =>
        {
            return Ok(Reading::Live(e));
        }
        _ => {}
    }
    let in_use = check_in_use(disk, method, held, args.require_stopped, report)?;
    if method == Method::Blocks && format == "vhdx" && backing {
        return Ok(Reading::VhdxChain { in_use });
    }
    if method == Method::Blocks && !in_use && format != "raw" {
        if !writable(&disk.image) {
            report.note(&format!(
                "{} is read-only: read through a raw copy, with no dirty bitmap kept in it",
                disk.image.display()
            ));
        } else if let Some(extents) = match format {
            // A qcow2 keeps a dirty bitmap for the next snapshot: through QEMU.
            "qcow2" => None,
            _ => crate::layout::direct_extents(&disk.image, format)?,
        } {
            return Ok(Reading::Direct(extents));
        } else if !daemon::Daemon::available() {
            report.note(
                "qemu-storage-daemon is not installed: the image is read through a raw copy \
(Debian 12: apt install qemu-system-common)",
            );
        } else {
            return Ok(Reading::Stopped);
        }
    }
    Ok(Reading::File { in_use })
}

pub(crate) fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Where a blocks snapshot's map and blocks go.
pub(crate) struct MapTo<'a> {
    pub(crate) store: &'a BlockStore,
    pub(crate) tmp: &'a Path,
    pub(crate) block_size: u64,
    pub(crate) name: &'a str,
    pub(crate) report: &'a Reporter,
}

/// What reading the image gave: the stats, the image's size, and for a
/// live snapshot what QEMU did and what to settle once it is published.
pub(crate) struct Read {
    pub(crate) stats: blocks::SnapStats,
    pub(crate) virtual_size: u64,
    pub(crate) through: Option<Through>,
    pub(crate) settle: Settle,
}

/// What a read through the QEMU running the disk did, for the record.
pub(crate) struct Through {
    pub(crate) consistency: &'static str,
    /// How long the guest's filesystems were frozen.
    pub(crate) frozen: Option<std::time::Duration>,
    /// Every block was read (no usable dirty bitmap).
    pub(crate) full_read: bool,
    /// The record's names for what it built on: `bitmap` (QMP), or
    /// `checkpoint`, `domain` and `target` (libvirt).
    pub(crate) names: Vec<(&'static str, String)>,
}

/// The change tracking a live snapshot started, settled once its record is
/// published: the parent's bitmap or the disk's older checkpoints go then.
pub(crate) enum Settle {
    Nothing,
    Bitmaps(live::Bitmaps),
    Checkpoints(crate::libvirt::Checkpoints),
}

impl Settle {
    pub(crate) fn published(self) -> Result<()> {
        match self {
            Settle::Nothing => Ok(()),
            Settle::Bitmaps(b) => b.keep_new(),
            Settle::Checkpoints(c) => c.keep_new(),
        }
    }
}

impl MapTo<'_> {
    /// Snapshots the blocks `plan` names from `source` into the temporary map, flushed.
    pub(crate) fn write(
        &self,
        source: &(impl snap_shared::blockpipe::Source + ?Sized),
        what: &str,
        virtual_size: u64,
        plan: impl Iterator<Item = (u64, blocks::Take)> + Send,
    ) -> Result<blocks::SnapStats> {
        let header = MapHeader {
            block_size: self.block_size,
            virtual_size,
        };
        let file = fs::File::create(self.tmp).map_err(|e| Error::io(self.tmp, e))?;
        let mut map = MapWriter::new(file, header).map_err(|e| Error::io(self.tmp, e))?;
        let progress = |done: u64| {
            self.report
                .tally(|| Tally::bytes(self.name, done.min(virtual_size), Some(virtual_size)))
        };
        let stats = blocks::snapshot(source, what, header, plan, self.store, &mut map, &progress)?;
        let file = map.finish().map_err(|e| Error::io(self.tmp, e))?;
        file.sync_all().map_err(|e| Error::io(self.tmp, e))?;
        Ok(stats)
    }
}

/// Reads the image file (a raw copy first for other formats).
pub(crate) fn read_file(disk: &Disk, info: &ImageInfo, to: &MapTo<'_>) -> Result<Read> {
    let source = RawSource::of(disk, info)?;
    let file = fs::File::open(source.path()).map_err(|e| Error::io(source.path(), e))?;
    let header = MapHeader {
        block_size: to.block_size,
        virtual_size: info.virtual_size,
    };
    let plan = blocks::plan_file(&file, header);
    let what = source.path().display().to_string();
    let stats = to.write(&file, &what, info.virtual_size, plan)?;
    Ok(Read {
        stats,
        virtual_size: info.virtual_size,
        through: None,
        settle: Settle::Nothing,
    })
}

/// Reads a stopped image straight from its file, through its extents.
pub(crate) fn read_direct(
    disk: &Disk,
    info: &ImageInfo,
    extents: Vec<crate::layout::Extent>,
    to: &MapTo<'_>,
) -> Result<Read> {
    let file = fs::File::open(&disk.image).map_err(|e| Error::io(&disk.image, e))?;
    let source = crate::layout::Direct { file, extents };
    let plan = source
        .data_blocks(to.block_size)
        .into_iter()
        .map(|i| (i, blocks::Take::Read));
    let what = disk.image.display().to_string();
    let stats = to.write(&source, &what, info.virtual_size, plan)?;
    Ok(Read {
        stats,
        virtual_size: info.virtual_size,
        through: None,
        settle: Settle::Nothing,
    })
}

/// Reads a differencing VHDX with its parents, every block (the reader
/// does not tell which blocks are absent in the whole chain).
pub(crate) fn read_vhdx_chain(disk: &Disk, info: &ImageInfo, to: &MapTo<'_>) -> Result<Read> {
    let chain = crate::vhdx::Chain::open(&disk.image)?;
    let blocks = info.virtual_size.div_ceil(to.block_size);
    let plan = (0..blocks).map(|i| (i, blocks::Take::Read));
    let what = disk.image.display().to_string();
    let stats = to.write(&chain, &what, info.virtual_size, plan)?;
    Ok(Read {
        stats,
        virtual_size: info.virtual_size,
        through: None,
        settle: Settle::Nothing,
    })
}

/// Reads the disk through the QEMU running it, at one point in time, only
/// the blocks changed since the parent when its dirty bitmap allows.
pub(crate) fn read_live(
    disk: &Disk,
    ends: &live::Endpoints,
    daemon: Option<daemon::Daemon>,
    to: &MapTo<'_>,
) -> Result<Read> {
    let stopped = daemon.is_some();
    let signals = live::SignalGuard::install()?;
    let parent = live_parent(disk)?;
    let mut session = live::start(live::Start {
        ends,
        image: &disk.image,
        disk: &disk.dir.name,
        snap: to.name,
        parent: parent.as_ref(),
        block_size: to.block_size,
        work_dir: &disk.dir.root,
        stop: &signals.stop,
    })?;
    if let Some(why) = &session.taken.full_read {
        to.report.note(&format!("reading the whole disk: {why}"));
    }
    let node = &session.taken.node;
    if node.format == "qcow2" && !node.keeps_bitmaps && stopped {
        to.report.note(&format!(
            "{} is a qcow2 v2 image (compat 0.10), which keeps no dirty bitmap: the next \
             snapshot reads all of it again (`qemu-img amend -o compat=1.1` upgrades it)",
            disk.image.display()
        ));
    }
    let (export, plan) = session.plan(to.block_size, parent.as_ref(), &signals.stop)?;
    let size = session.taken.node.virtual_size;
    let what = format!("{} (through QEMU)", disk.image.display());
    let stats = to.write(&export, &what, size, plan.into_iter());
    drop(export);
    let stats = match stats {
        Err(_) if signals.stop.requested() => Err(live::interrupted()),
        other => other,
    }?;
    let mut taken = session.taken.clone();
    if stopped {
        taken.consistency = "stopped";
    }
    let bitmaps = session.finish()?.map(|mut b| {
        b.daemon = daemon;
        b
    });
    if signals.stop.requested() {
        return Err(live::interrupted());
    }
    Ok(Read {
        stats,
        virtual_size: size,
        through: Some(Through {
            consistency: taken.consistency,
            frozen: taken.frozen,
            full_read: taken.full_read.is_some(),
            names: vec![("bitmap", taken.bitmap)],
        }),
        settle: bitmaps.map_or(Settle::Nothing, Settle::Bitmaps),
    })
}

/// The newest blocks snapshot, when it was taken live: its bitmap began at its point in time.
pub(crate) fn live_parent(disk: &Disk) -> Result<Option<live::Parent>> {
    let newest = disk
        .dir
        .snapshots()?
        .into_iter()
        .rev()
        .find(|r| r.method == Method::Blocks.as_str());
    Ok(newest.and_then(|r| {
        Some(live::Parent {
            bitmap: r.extra.get("bitmap")?.as_str()?.to_string(),
            map: disk.dir.map_path(&r.name),
            virtual_size: r.virtual_size,
        })
    }))
}

/// The block folders of the store's other unencrypted disks whose blocks are all flushed.
pub(crate) fn plain_siblings(store: &snap_shared::store::Store, me: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for name in snap_shared::disks::disk_names(store)? {
        let dir = snap_shared::disks::DiskDir::new(store, &name);
        // A disk with an interrupted create may hold torn blocks: never link from it.
        let settled = !dir.unsynced_marker().exists();
        if name != me && settled && dir.info()?.is_some_and(|i| !i.encrypted) {
            out.push(dir.blocks_dir());
        }
    }
    Ok(out)
}

/// The image as raw bytes: the image itself, or a raw copy qemu-img makes of
/// another format (sparse, removed when dropped).
pub(crate) struct RawSource {
    pub(crate) path: PathBuf,
    pub(crate) temp: bool,
}

impl RawSource {
    fn of(disk: &Disk, info: &ImageInfo) -> Result<RawSource> {
        if info.format == "raw" {
            return Ok(RawSource {
                path: disk.image.clone(),
                temp: false,
            });
        }
        let path = disk
            .dir
            .root
            .join(format!(".convert-{}.raw", std::process::id()));
        let src = RawSource { path, temp: true };
        image::qemu_img(&[
            "convert".as_ref(),
            "-U".as_ref(),
            "-f".as_ref(),
            info.format.as_ref(),
            "-O".as_ref(),
            "raw".as_ref(),
            disk.image.as_os_str(),
            src.path.as_os_str(),
        ])?;
        Ok(src)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RawSource {
    fn drop(&mut self) {
        if self.temp {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Our stderr, for a child's stdout.
pub(crate) fn stderr_stdio() -> Result<std::process::Stdio> {
    use std::os::fd::AsFd;
    let fd = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io_ctx("stderr", e))?;
    Ok(std::process::Stdio::from(fd))
}

/// Whether the image is in use; an error when that rules the snapshot out.
pub(crate) fn check_in_use(
    disk: &Disk,
    method: Method,
    held: bool,
    require_stopped: bool,
    report: &Reporter,
) -> Result<bool> {
    if !held {
        return Ok(false);
    }
    if require_stopped || method != Method::Blocks {
        let err = disk.refuse_if_in_use("snapshotting").unwrap_err();
        return Err(match method {
            Method::Blocks => err,
            _ => err.with_hint(format!(
                "{} rewrites the image file; stop the VM, or use --method blocks for a crash-consistent copy",
                method.as_str()
            )),
        });
    }
    report.warn(&format!(
        "{} is in use and no QMP socket is known: it is read while the VM writes, so the \
snapshot may hold a state the disk never had; give --qmp SOCKET for a point-in-time one, or stop the VM",
        disk.image.display()
    ));
    Ok(true)
}
