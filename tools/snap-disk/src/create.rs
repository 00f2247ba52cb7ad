//! `snap-disk create`: one snapshot by the method the image calls for, its
//! record published last, and the `--before` guard around a risky command.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde_json::Value;

use snap_cli::{Reporter, Tally};
use snap_shared::crypt::{self, Encrypt};
use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil;
use snap_shared::id::{check_name, free_id};
use snap_shared::jsonl::RecordWriter;
use snap_shared::record::{DiskSnapshotRecord, Extra, Record, SCHEMA};
use snap_shared::size::human_bytes;

use crate::disk::{Context, Disk};
use crate::image::{self, ImageInfo};
use crate::{CreateArgs, Method, overlay, qcow2};
use crate::{blocks, daemon, live};
use snap_shared::blockmap::{MapHeader, MapWriter};
use snap_shared::blockstore::BlockStore;
use snap_shared::disks::DiskInfo;
use snap_shared::holders::holders;

/// The block size of a new disk's `blocks` snapshots (see docs/disk.md for the measurement).
pub const DEFAULT_BLOCK_SIZE: u64 = 1 << 20;

pub fn run(ctx: &Context, args: &CreateArgs, report: &Reporter) -> Result<Exit> {
    match &args.image {
        Some(image) => run_one(ctx, args, image, report),
        None => run_all(ctx, args, report),
    }
}

/// `--all`: every disk of the config, in its order. A disk that fails is
/// reported and the rest still run; the exit is the first failure's.
fn run_all(ctx: &Context, args: &CreateArgs, report: &Reporter) -> Result<Exit> {
    if ctx.disks.is_empty() {
        report.note("no disks in the config: nothing to snapshot");
        return Ok(Exit::Ok);
    }
    let mut exit = Exit::Ok;
    for entry in &ctx.disks {
        let image = snap_shared::config::expand_tilde(&entry.image);
        let this = match run_one(ctx, args, &image, report) {
            Ok(exit) => exit,
            Err(mut e) => {
                // Most errors name the image already; the rest get it here.
                if !e.context.contains(&entry.image) {
                    e.context = format!("disk {}: {}", entry.image, e.context);
                }
                report.failed(&e);
                e.exit
            }
        };
        if exit == Exit::Ok {
            exit = this;
        }
    }
    Ok(exit)
}

fn run_one(ctx: &Context, args: &CreateArgs, image: &Path, report: &Reporter) -> Result<Exit> {
    let info = image::probe(image)?;
    let ends = endpoints(ctx, args, image)?;
    let method = pick_method(args, &info, ends.is_some());
    if let Some(n) = &args.name {
        check_name(n).map_err(|e| Error::usage(format!("snapshot name {n:?}"), e))?;
        if n == "disk" {
            // `disk.json` holds the disk's settings, beside the records.
            return Err(Error::usage(
                "snapshot name \"disk\"",
                "is reserved; pick another",
            ));
        }
    }
    let lock = ctx.lock(true)?;
    let disk = ctx.for_create(image, args.disk.as_deref())?;
    // A repair may remove a half-made internal snapshot: read the image again.
    let info = match crate::changing::recover(&disk, report)? {
        true => image::probe(image)?,
        false => info,
    };
    disk.refuse_if_restoring()?;
    let name = match &args.name {
        Some(n) if disk.dir.record_path(n).exists() => {
            return Err(Error::new(
                Exit::CantCreate,
                format!("disk {}", disk.dir.name),
                format!("already has a snapshot named {n}"),
            )
            .with_hint("pick another name, or delete the old one first"));
        }
        Some(n) => n.clone(),
        None => free_id(Utc::now(), |id| disk.dir.record_path(id).exists()),
    };
    let reading = how_to_read(
        &disk,
        (&info.format, info.backing.is_some()),
        method,
        ends,
        args,
        report,
    )?;
    // A blocks snapshot travels to destinations: its record (which names
    // its map's sha256) is signed, as snap-pack signs an archive's. The key
    // is there before anything is read.
    let signer = match method {
        Method::Blocks => Some(ctx.signer(report)?),
        _ => None,
    };
    let (rec, bitmaps) = match method {
        Method::Blocks => create_blocks(&ctx.store, &disk, &info, &name, args, reading, report)?,
        Method::Qcow2Internal => (create_internal(&disk, &info, &name)?, None),
        Method::Overlay => (create_overlay(&disk, &info, &name)?, None),
    };
    let rec = DiskSnapshotRecord {
        description: args.description.clone(),
        tags: args.tags.clone(),
        ..rec
    };
    disk.dir.publish_record(&rec, signer.as_ref())?;
    if let Some(b) = bitmaps {
        // Only now may the parent's bitmap go: the new snapshot is the parent.
        if let Err(e) = b.keep_new() {
            report.warn(&format!("{e}; the next snapshot reads a little more"));
        }
    }
    crate::changing::end(&disk)?;
    ctx.catalog(|c| c.put_disk_snapshot(&rec));
    report.note(&summary(&rec));
    RecordWriter::new(std::io::stdout().lock()).write(&Record::DiskSnapshot(rec.clone()))?;
    drop(lock);
    match &args.before {
        Some(cmd) => guard(ctx, &disk, &rec, cmd, args.rollback_on_failure, report),
        None => Ok(Exit::Ok),
    }
}

fn pick_method(args: &CreateArgs, info: &ImageInfo, live: bool) -> Method {
    match (args.overlay, args.method) {
        (true, _) => Method::Overlay,
        (_, Some(m)) => m,
        // A running VM's image: only blocks snapshots read it through QEMU.
        _ if live => Method::Blocks,
        _ if info.format == "qcow2" => Method::Qcow2Internal,
        _ => Method::Blocks,
    }
}

/// Where the QEMU running the image listens: the flags, else the config's
/// entry for the image. None when neither names a QMP socket.
fn endpoints(ctx: &Context, args: &CreateArgs, image: &Path) -> Result<Option<live::Endpoints>> {
    use std::os::unix::fs::MetadataExt;
    let entry = fs::metadata(image).ok().and_then(|me| {
        ctx.disks.iter().find(|d| {
            fs::metadata(snap_shared::config::expand_tilde(&d.image))
                .is_ok_and(|m| m.dev() == me.dev() && m.ino() == me.ino())
        })
    });
    let path = |s: &Option<String>| s.as_deref().map(snap_shared::config::expand_tilde);
    let qmp = args
        .qmp
        .clone()
        .or_else(|| entry.and_then(|e| path(&e.qmp)));
    let agent = args
        .guest_agent
        .clone()
        .or_else(|| entry.and_then(|e| path(&e.guest_agent)));
    let freeze = args.freeze || entry.is_some_and(|e| e.freeze);
    let Some(qmp) = qmp else {
        for (set, flag) in [
            (args.node.is_some(), "--node"),
            (args.nbd_server.is_some(), "--nbd-server"),
            (args.freeze, "--freeze"),
        ] {
            if set {
                return Err(Error::usage(
                    flag,
                    "needs --qmp SOCKET (or \"qmp\" in the config's disk entry)",
                ));
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
        qmp,
        node: args
            .node
            .clone()
            .or_else(|| entry.and_then(|e| e.node.clone())),
        nbd_server: args
            .nbd_server
            .clone()
            .or_else(|| entry.and_then(|e| path(&e.nbd_server))),
        agent: agent.filter(|_| freeze),
    }))
}

/// How a blocks snapshot reads the image.
enum Reading {
    /// The image file itself; `in_use` when a process holds it (no consistency).
    File { in_use: bool },
    /// Through the QEMU that runs it, at one point in time.
    Live(live::Endpoints),
    /// A stopped image of another format than raw, through a QEMU of our own.
    Stopped,
    /// A differencing VHDX (QEMU cannot open one), with its parents.
    VhdxChain { in_use: bool },
}

/// Decides how to read: through QEMU when its QMP socket is known (given on
/// the command line, or in the config while a process holds the image),
/// else the file, with a warning when something holds it.
fn how_to_read(
    disk: &Disk,
    (format, backing): (&str, bool),
    method: Method,
    ends: Option<live::Endpoints>,
    args: &CreateArgs,
    report: &Reporter,
) -> Result<Reading> {
    let held = !holders(&disk.image).is_empty();
    match ends {
        Some(e) if method == Method::Blocks && (held || args.qmp.is_some()) => {
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

fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Whether the image is in use; an error when that rules the snapshot out.
fn check_in_use(
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

/// A record with the fields every method fills.
pub(crate) fn base_record(
    disk: &Disk,
    info: &ImageInfo,
    name: &str,
    method: Method,
) -> DiskSnapshotRecord {
    DiskSnapshotRecord {
        schema: SCHEMA.to_string(),
        disk: disk.dir.name.clone(),
        name: name.to_string(),
        image: disk.image.display().to_string(),
        format: info.format.clone(),
        method: method.as_str().to_string(),
        created: Utc::now(),
        virtual_size: info.virtual_size,
        stored_bytes: 0,
        new_bytes: 0,
        blocks: 0,
        parent: None,
        description: None,
        tags: Vec::new(),
        extra: Extra::from([("created_by".to_string(), created_by())]),
    }
}

/// Who made a snapshot: the tool and its version, the host, the user.
fn created_by() -> Value {
    snap_shared::created_by("snap-disk", env!("CARGO_PKG_VERSION"))
}

/// The disk's settings, written at its first snapshot.
fn ensure_info(disk: &Disk, block_size: u64, encrypted: bool) -> Result<DiskInfo> {
    if let Some(i) = &disk.info {
        return Ok(i.clone());
    }
    let info = DiskInfo {
        image: disk.image.clone(),
        block_size,
        encrypted,
    };
    disk.dir.write_info(&info)?;
    Ok(info)
}

/// The newest snapshot of the disk made by `method`.
fn parent_of(disk: &Disk, method: Method) -> Result<Option<String>> {
    Ok(disk
        .dir
        .snapshots()?
        .into_iter()
        .rev()
        .find(|r| r.method == method.as_str())
        .map(|r| r.name))
}

fn create_internal(disk: &Disk, info: &ImageInfo, name: &str) -> Result<DiskSnapshotRecord> {
    if info.format != "qcow2" {
        return Err(Error::usage(
            disk.image.display().to_string(),
            format!("is {}; internal snapshots need a qcow2 image", info.format),
        )
        .with_hint("use --method blocks (any format) or convert the image to qcow2"));
    }
    ensure_info(disk, DEFAULT_BLOCK_SIZE, false)?;
    if info.snapshots.iter().any(|s| s.name == name) {
        return Err(Error::new(
            Exit::CantCreate,
            disk.image.display().to_string(),
            format!("already has an internal snapshot named {name}"),
        ));
    }
    crate::changing::begin(disk, crate::changing::Change::Create(name))?;
    qcow2::create(&disk.image, name)?;
    let mut rec = base_record(disk, info, name, Method::Qcow2Internal);
    rec.parent = parent_of(disk, Method::Qcow2Internal)?;
    Ok(rec)
}

fn create_overlay(disk: &Disk, info: &ImageInfo, name: &str) -> Result<DiskSnapshotRecord> {
    ensure_info(disk, DEFAULT_BLOCK_SIZE, false)?;
    let frozen = overlay::create(&disk.image, info, name)?;
    let mut rec = base_record(disk, info, name, Method::Overlay);
    rec.parent = parent_of(disk, Method::Overlay)?;
    rec.stored_bytes = fs::metadata(&frozen).map(|m| m.len()).unwrap_or(0);
    rec.extra
        .insert("file".into(), Value::from(frozen.display().to_string()));
    if let Some(b) = &info.backing {
        rec.extra
            .insert("backing".into(), Value::from(b.display().to_string()));
    }
    Ok(rec)
}

/// The recipients given on the command line, if any.
fn encryption(args: &CreateArgs) -> Result<Option<Encrypt>> {
    let rs = crypt::recipients(&args.recipients, &args.recipients_files)?;
    Ok((!rs.is_empty()).then_some(Encrypt::Recipients(rs)))
}

/// Checks the flags against the disk's fixed settings.
fn blocks_settings(disk: &Disk, args: &CreateArgs, encrypted: bool) -> Result<DiskInfo> {
    let Some(info) = &disk.info else {
        return ensure_info(
            disk,
            args.block_size.unwrap_or(DEFAULT_BLOCK_SIZE),
            encrypted,
        );
    };
    let ctx = || format!("disk {}", disk.dir.name);
    if let Some(bs) = args.block_size.filter(|b| *b != info.block_size) {
        return Err(Error::usage(
            ctx(),
            format!("has {}-byte blocks, not {bs}", info.block_size),
        )
        .with_hint("a disk keeps its first block size; use --disk NAME for a new one"));
    }
    match (info.encrypted, encrypted) {
        (true, false) => Err(Error::usage(
            ctx(),
            "has encrypted blocks; give --recipient or --recipients-file",
        )),
        (false, true) => Err(
            Error::usage(ctx(), "stores its blocks unencrypted").with_hint(
                "start an encrypted disk with --disk NAME; encrypted and plain blocks never mix",
            ),
        ),
        _ => Ok(info.clone()),
    }
}

fn create_blocks(
    snap_store: &snap_shared::store::Store,
    disk: &Disk,
    info: &ImageInfo,
    name: &str,
    args: &CreateArgs,
    reading: Reading,
    report: &Reporter,
) -> Result<(DiskSnapshotRecord, Option<live::Bitmaps>)> {
    let enc = encryption(args)?;
    let settings = blocks_settings(disk, args, enc.is_some())?;
    finish_crashed_create(disk, report)?;
    let marker = disk.dir.unsynced_marker();
    fsutil::write_atomic(&marker, 0o600, true, |_| Ok(())).map_err(|e| Error::io(&marker, e))?;
    let blocks_dir = disk.dir.blocks_dir();
    let store = BlockStore::open(&blocks_dir, enc)
        .map_err(|e| Error::io(&blocks_dir, e))?
        .share_with(plain_siblings(snap_store, &disk.dir.name)?);
    let map_path = disk.dir.map_path(name);
    let tmp_map = fsutil::temp_name(&map_path, "tmp");
    // A map without its record is what a killed create left (the record is
    // published last, and was checked absent): nothing refers to it.
    match fs::remove_file(&map_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::io(&map_path, e));
        }
        _ => {}
    }
    let to = MapTo {
        store: &store,
        tmp: &tmp_map,
        block_size: settings.block_size,
        name,
        report,
    };
    let read = (|| {
        let read = match &reading {
            Reading::File { .. } => read_file(disk, info, &to)?,
            Reading::VhdxChain { .. } => read_vhdx_chain(disk, info, &to)?,
            Reading::Live(ends) => read_live(disk, ends, None, &to)?,
            Reading::Stopped => {
                let d = daemon::Daemon::start(&disk.image, &info.format)?;
                let ends = live::Endpoints {
                    qmp: d.qmp.clone(),
                    node: Some(daemon::NODE.to_string()),
                    ..Default::default()
                };
                read_live(disk, &ends, Some(d), &to)?
            }
        };
        // One flush for every block written, before anything refers to them.
        fsutil::syncfs(&blocks_dir).map_err(|e| Error::io(&blocks_dir, e))?;
        // Every block is on disk now: none can be torn, the marker goes.
        fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
        fsutil::publish_new(&tmp_map, &map_path).map_err(|e| Error::io(&map_path, e))?;
        Ok(read)
    })();
    let read = read.inspect_err(|_| {
        let _ = fs::remove_file(&tmp_map);
    })?;
    let stats = read.stats;
    let mut rec = base_record(disk, info, name, Method::Blocks);
    rec.virtual_size = read.virtual_size;
    rec.parent = parent_of(disk, Method::Blocks)?;
    rec.blocks = stats.blocks;
    rec.new_bytes = stats.new_bytes;
    rec.stored_bytes = stats.stored_bytes;
    let x = &mut rec.extra;
    x.insert("block_size".into(), Value::from(settings.block_size));
    x.insert("new_blocks".into(), Value::from(stats.new_blocks));
    x.insert("read_bytes".into(), Value::from(stats.read_bytes));
    x.insert("map".into(), Value::from(map_path.display().to_string()));
    let map_bytes = fs::read(&map_path).map_err(|e| Error::io(&map_path, e))?;
    x.insert(
        "map_sha256".into(),
        Value::from(snap_shared::hash::Sha256Digest::of(&map_bytes).to_hex()),
    );
    x.insert(
        "encryption".into(),
        settings.encrypted.then_some("age").into(),
    );
    let in_use = matches!(
        reading,
        Reading::File { in_use: true } | Reading::VhdxChain { in_use: true }
    );
    x.insert("crash_consistent".into(), Value::from(in_use));
    let consistency = match (&read.live, in_use) {
        (Some(t), _) => t.consistency,
        (None, true) => "none",
        (None, false) => "stopped",
    };
    x.insert("consistency".into(), Value::from(consistency));
    if let Some(t) = &read.live {
        x.insert("bitmap".into(), Value::from(t.bitmap.clone()));
        x.insert("full_read".into(), Value::from(t.full_read.is_some()));
        if let Some(f) = t.frozen {
            x.insert("frozen_ms".into(), Value::from(f.as_secs_f64() * 1000.0));
        }
    }
    Ok((rec, read.bitmaps))
}

/// Where a blocks snapshot's map and blocks go.
struct MapTo<'a> {
    store: &'a BlockStore,
    tmp: &'a Path,
    block_size: u64,
    name: &'a str,
    report: &'a Reporter,
}

/// What reading the image gave: the stats, the image's size, and for a
/// live snapshot what QEMU did and the bitmaps to settle.
struct Read {
    stats: blocks::SnapStats,
    virtual_size: u64,
    live: Option<live::Taken>,
    bitmaps: Option<live::Bitmaps>,
}

impl MapTo<'_> {
    /// Snapshots the blocks `plan` names from `source` into the temporary map, flushed.
    fn write(
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
fn read_file(disk: &Disk, info: &ImageInfo, to: &MapTo<'_>) -> Result<Read> {
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
        live: None,
        bitmaps: None,
    })
}

/// Reads a differencing VHDX with its parents, every block (the reader
/// does not tell which blocks are absent in the whole chain).
fn read_vhdx_chain(disk: &Disk, info: &ImageInfo, to: &MapTo<'_>) -> Result<Read> {
    let chain = crate::vhdx::Chain::open(&disk.image)?;
    let blocks = info.virtual_size.div_ceil(to.block_size);
    let plan = (0..blocks).map(|i| (i, blocks::Take::Read));
    let what = disk.image.display().to_string();
    let stats = to.write(&chain, &what, info.virtual_size, plan)?;
    Ok(Read {
        stats,
        virtual_size: info.virtual_size,
        live: None,
        bitmaps: None,
    })
}

/// Reads the disk through the QEMU running it, at one point in time, only
/// the blocks changed since the parent when its dirty bitmap allows.
fn read_live(
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
        live: Some(taken),
        bitmaps,
    })
}

/// The newest blocks snapshot, when it was taken live: its bitmap began at its point in time.
fn live_parent(disk: &Disk) -> Result<Option<live::Parent>> {
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
fn plain_siblings(store: &snap_shared::store::Store, me: &str) -> Result<Vec<PathBuf>> {
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

/// The marker that blocks were written but not flushed is still there: a
/// create died, and blocks it wrote may be torn (after a power cut). Blocks
/// no published map refers to are removed before new snapshots may reuse them.
fn finish_crashed_create(disk: &Disk, report: &Reporter) -> Result<()> {
    let marker = disk.dir.unsynced_marker();
    if !marker.exists() {
        return Ok(());
    }
    let (n, bytes) = crate::manage::collect_garbage(&disk.dir)?;
    if n > 0 {
        report.note(&format!(
            "removed {n} blocks ({}) left by an interrupted snapshot",
            human_bytes(bytes)
        ));
    }
    fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))
}

/// The image as raw bytes: the image itself, or a raw copy qemu-img makes of
/// another format (sparse, removed when dropped).
struct RawSource {
    path: PathBuf,
    temp: bool,
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

/// One line for people: what the snapshot is and what it cost.
fn summary(rec: &DiskSnapshotRecord) -> String {
    match rec.method.as_str() {
        "blocks" => format!(
            "{}/{}: {} image, {} blocks, {} stored, {} new",
            rec.disk,
            rec.name,
            human_bytes(rec.virtual_size),
            rec.blocks,
            human_bytes(rec.stored_bytes),
            human_bytes(rec.new_bytes)
        ),
        m => format!("{}/{}: {m} snapshot of {}", rec.disk, rec.name, rec.image),
    }
}

/// `--before CMD`: the snapshot is made; run CMD, and on failure say how to
/// roll back, or roll back when asked and the image is not in use.
fn guard(
    ctx: &Context,
    disk: &Disk,
    rec: &DiskSnapshotRecord,
    cmd: &str,
    rollback: bool,
    report: &Reporter,
) -> Result<Exit> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        // Its output goes to stderr: stdout carries only records.
        .stdout(stderr_stdio()?)
        .status()
        .map_err(|e| Error::io_ctx("sh -c", e))?;
    if status.success() {
        report.note(&format!(
            "{cmd:?} succeeded; snapshot {} stays as a rollback point",
            rec.name
        ));
        return Ok(Exit::Ok);
    }
    let how = format!("snap-disk restore {} {}", disk.dir.name, rec.name);
    report.error(&format!("{cmd:?} failed ({status})"));
    if !rollback {
        report.note(&format!("to roll back, stop the VM and run: {how}"));
        return Ok(Exit::Partial);
    }
    if let Err(e) = disk.refuse_if_in_use("rolling back") {
        report.failed(&e);
        report.note(&format!("not rolled back; stop the VM and run: {how}"));
        return Ok(Exit::Partial);
    }
    let _lock = ctx.lock(false)?;
    crate::restore::restore_record(disk, rec, None, &Default::default(), report)?;
    report.note(&format!("rolled back to {}", rec.name));
    Ok(Exit::Partial)
}

/// Our stderr, for a child's stdout.
fn stderr_stdio() -> Result<std::process::Stdio> {
    use std::os::fd::AsFd;
    let fd = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::io_ctx("stderr", e))?;
    Ok(std::process::Stdio::from(fd))
}
