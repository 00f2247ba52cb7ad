//! Point-in-time snapshots of a disk that a QEMU process holds, through QMP.
//!
//! Reading an image file while a VM writes to it gives a state the disk
//! never had (block 10 from before a write, block 900 from after). Here one
//! QMP `transaction` fixes the point in time: it starts the next dirty
//! bitmap, freezes the previous one, and starts a fleecing backup job
//! (`blockdev-backup sync=none`) into a temporary qcow2 overlay, which keeps
//! the old contents of every block the guest overwrites from then on. The
//! overlay is read through an NBD export, with two metadata contexts:
//! `base:allocation` (what is data at all) and the previous bitmap (what
//! changed since the parent snapshot). Only changed blocks are read; the
//! others are the parent's.
//!
//! The previous bitmap goes only once the new snapshot's record is
//! published ([`Bitmaps::keep_new`]); a snapshot that fails merges the new
//! bitmap back into the previous one ([`Bitmaps::keep_old`]), so no change is
//! ever forgotten. A run killed half way leaves QEMU with our fleecing nodes
//! and two bitmaps: the next run removes the nodes and merges the bitmaps
//! before it starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use snap_shared::blockmap::{Dense, MapReader};
use snap_shared::blockpipe::Source;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;

use crate::blocks::Take;
use crate::nbd;
use crate::qmp::{Agent, Qmp, QmpError};

/// Where the QEMU that holds a disk listens, from the flags or the config.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Its QMP monitor socket.
    pub qmp: PathBuf,
    /// The block node to snapshot [default: the format node over the image file].
    pub node: Option<String>,
    /// The unix socket of an NBD server the QEMU already runs (it runs at most one).
    pub nbd_server: Option<PathBuf>,
    /// The guest agent's socket, for `--freeze`.
    pub agent: Option<PathBuf>,
}

/// How consistent a snapshot is, as its record says.
pub const POINT_IN_TIME: &str = "point-in-time";
pub const APPLICATION: &str = "application";

/// Every name this tool gives inside QEMU starts so; a later run finds what a killed one left.
pub const OURS: &str = "snap-disk-";

/// The name of the dirty bitmap a snapshot starts, on the disk's node.
pub fn bitmap_name(disk: &str, snap: &str) -> String {
    format!("{OURS}{disk}/{snap}")
}

fn bitmap_prefix(disk: &str) -> String {
    format!("{OURS}{disk}/")
}

/// One dirty bitmap on a node, as `query-named-block-nodes` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub name: String,
    pub granularity: u64,
    pub recording: bool,
    pub persistent: bool,
    /// Marked in use in the image: the QEMU that had it died, so it may have missed writes.
    pub inconsistent: bool,
}

/// The block node a snapshot reads.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub format: String,
    pub virtual_size: u64,
    pub bitmaps: Vec<Bitmap>,
    /// A qcow2 of compat 1.1 or later, the only images that keep a dirty
    /// bitmap in them (a v2 one, compat 0.10, refuses a persistent bitmap).
    pub keeps_bitmaps: bool,
}

/// Drivers that sit above a format node and are never the disk itself.
const FILTERS: &[&str] = &[
    "copy-before-write",
    "throttle",
    "copy-on-read",
    "preallocate",
    "compress",
    "blkdebug",
    "blklogwrites",
    "blkverify",
    "snapshot-access",
];

/// Drivers that are the file under a format node.
const PROTOCOLS: &[&str] = &["file", "host_device", "host_cdrom"];

fn parse_node(v: &Value) -> Option<Node> {
    let bitmaps = v
        .get("dirty-bitmaps")
        .and_then(Value::as_array)
        .map(|bs| bs.iter().filter_map(parse_bitmap).collect())
        .unwrap_or_default();
    let format = v.get("drv")?.as_str()?.to_string();
    let compat = v["image"]["format-specific"]["data"]["compat"].as_str();
    Some(Node {
        name: v.get("node-name")?.as_str()?.to_string(),
        keeps_bitmaps: format == "qcow2" && compat != Some("0.10"),
        format,
        virtual_size: v.get("image")?.get("virtual-size")?.as_u64()?,
        bitmaps,
    })
}

fn parse_bitmap(v: &Value) -> Option<Bitmap> {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    Some(Bitmap {
        name: v.get("name")?.as_str()?.to_string(),
        granularity: v.get("granularity")?.as_u64()?,
        recording: flag("recording"),
        persistent: flag("persistent"),
        inconsistent: flag("inconsistent"),
    })
}

/// Whether `filename`, as QEMU names a node's file, is `image`.
fn same_file(filename: &str, image: &Path, qemu_cwd: Option<&Path>) -> bool {
    let p = Path::new(filename);
    let p = match (p.is_relative(), qemu_cwd) {
        (true, Some(cwd)) => cwd.join(p),
        _ => p.to_path_buf(),
    };
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(&p), fs::metadata(image)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The node to snapshot: `wanted`, or the format node whose file is `image`.
pub fn find_node(
    nodes: &[Value],
    image: &Path,
    wanted: Option<&str>,
    qemu_cwd: Option<&Path>,
) -> std::result::Result<Node, String> {
    if let Some(w) = wanted {
        return nodes
            .iter()
            .find(|n| n.get("node-name").and_then(Value::as_str) == Some(w))
            .and_then(parse_node)
            .ok_or_else(|| format!("QEMU has no block node named {w}"));
    }
    let on_image: Vec<&Value> = nodes
        .iter()
        .filter(|n| {
            n.get("file")
                .and_then(Value::as_str)
                .is_some_and(|f| same_file(f, image, qemu_cwd))
        })
        .filter(|n| {
            let drv = n.get("drv").and_then(Value::as_str).unwrap_or("");
            !FILTERS.contains(&drv)
        })
        .collect();
    let is_protocol =
        |n: &&Value| PROTOCOLS.contains(&n.get("drv").and_then(Value::as_str).unwrap_or(""));
    let formats: Vec<&Value> = on_image
        .iter()
        .copied()
        .filter(|n| !is_protocol(n))
        .collect();
    let pick = match (formats.len(), on_image.len()) {
        (1, _) => formats[0],
        (0, 1) => on_image[0],
        (0, 0) => return Err("QEMU has no block node on this image".into()),
        _ => return Err("QEMU has several block nodes on this image; give --node".into()),
    };
    parse_node(pick).ok_or_else(|| "QEMU described the block node without its size".into())
}

/// The parent snapshot, as far as a live snapshot can build on it.
pub struct Parent {
    /// The bitmap that began at the parent's point in time.
    pub bitmap: String,
    pub map: PathBuf,
    pub virtual_size: u64,
}

/// What the run learned about the bitmaps before it starts: the one to read
/// changes from, or why every block is read.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Read only what this bitmap marks dirty.
    Bitmap(String),
    /// Read every allocated block, for this reason.
    Everything(String),
}

/// Settles the disk's bitmaps before a snapshot: a killed run's extra
/// bitmaps are merged into the parent's (or removed when it is unusable),
/// and the parent's bitmap is checked. Returns the QMP actions to run and
/// what the snapshot can read from.
pub fn plan_bitmaps(
    node: &Node,
    disk: &str,
    parent: Option<&Parent>,
    block_size: u64,
) -> (Vec<Value>, Since) {
    let prefix = bitmap_prefix(disk);
    let ours: Vec<&Bitmap> = node
        .bitmaps
        .iter()
        .filter(|b| b.name.starts_with(&prefix))
        .collect();
    let parent_bm = parent.and_then(|p| ours.iter().find(|b| b.name == p.bitmap));
    let others: Vec<&&Bitmap> = ours
        .iter()
        .filter(|b| Some(b.name.as_str()) != parent.map(|p| p.bitmap.as_str()))
        .collect();
    let why_not = match (parent, parent_bm) {
        (None, _) => Some("the disk's first snapshot read through QEMU".to_string()),
        (Some(p), None) => Some(format!(
            "the dirty bitmap {} of the last snapshot is gone (QEMU was restarted with a raw image, or it was removed)",
            p.bitmap
        )),
        (Some(_), Some(b)) if b.inconsistent => Some(format!(
            "the dirty bitmap {} is marked in use: QEMU stopped without saving it",
            b.name
        )),
        (Some(_), Some(b)) if b.granularity != block_size => Some(format!(
            "the dirty bitmap {} tracks {}-byte blocks, not {block_size}",
            b.name, b.granularity
        )),
        // Disabled with no newer bitmap of ours to merge in: writes went unseen.
        (Some(_), Some(b)) if !b.recording && others.is_empty() => Some(format!(
            "the dirty bitmap {} was not recording, and no other bitmap saw the writes",
            b.name
        )),
        (Some(p), Some(_)) if p.virtual_size != node.virtual_size => {
            Some("the disk changed size since the last snapshot".to_string())
        }
        (Some(p), Some(_)) if !p.map.is_file() => {
            Some("the last snapshot's block map is missing".to_string())
        }
        _ => others
            .iter()
            .find(|b| b.inconsistent)
            .map(|b| format!("the dirty bitmap {} is marked in use", b.name)),
    };
    let remove = |name: &str| json!({"type": "block-dirty-bitmap-remove", "data": {"node": node.name, "name": name}});
    let mut actions = Vec::new();
    match (why_not, parent_bm) {
        (None, Some(b)) => {
            if !others.is_empty() {
                let names: Vec<&str> = others.iter().map(|o| o.name.as_str()).collect();
                actions.push(json!({"type": "block-dirty-bitmap-merge",
                    "data": {"node": node.name, "target": b.name, "bitmaps": names}}));
            }
            if !b.recording {
                actions.push(json!({"type": "block-dirty-bitmap-enable",
                    "data": {"node": node.name, "name": b.name}}));
            }
            actions.extend(others.iter().map(|o| remove(&o.name)));
            (actions, Since::Bitmap(b.name.clone()))
        }
        (why, _) => {
            actions.extend(ours.iter().map(|o| remove(&o.name)));
            (actions, Since::Everything(why.unwrap_or_default()))
        }
    }
}

/// Which blocks to read, from the export's allocation and dirty extents:
/// a block is read when it holds data and (with a parent) is dirty; a clean
/// block is the parent's; the rest are zeros.
pub fn plan_blocks(
    block_size: u64,
    size: u64,
    data: &[nbd::Extent],
    dirty: Option<&[nbd::Extent]>,
    parent: &[Option<Sha256Digest>],
) -> Vec<(u64, Take)> {
    let blocks = size.div_ceil(block_size);
    let has_data = covered(block_size, blocks, data, |f| f & nbd::STATE_HOLE == 0);
    let changed = dirty.map(|d| covered(block_size, blocks, d, |f| f & nbd::STATE_DIRTY != 0));
    (0..blocks)
        .filter_map(|i| {
            let i_us = i as usize;
            match &changed {
                Some(c) if !c[i_us] => parent
                    .get(i_us)
                    .copied()
                    .flatten()
                    .map(|d| (i, Take::Same(d))),
                _ => has_data[i_us].then_some((i, Take::Read)),
            }
        })
        .collect()
}

/// For each block, whether some extent whose flags pass `hit` touches it.
fn covered(bs: u64, blocks: u64, extents: &[nbd::Extent], hit: impl Fn(u32) -> bool) -> Vec<bool> {
    let mut out = vec![false; blocks as usize];
    for e in extents.iter().filter(|e| hit(e.flags) && e.len > 0) {
        let first = e.offset / bs;
        let last = ((e.offset + e.len - 1) / bs).min(blocks.saturating_sub(1));
        for b in first..=last {
            out[b as usize] = true;
        }
    }
    out
}

/// The parent map as one digest (or zeros) per block.
pub fn parent_blocks(map: &Path) -> Result<Vec<Option<Sha256Digest>>> {
    let mut out = Vec::new();
    for entry in Dense::new(MapReader::open(map)?) {
        out.push(entry?.1);
    }
    Ok(out)
}

/// An NBD export read by the block pipeline (one request at a time); a
/// signal makes the next read fail, so the run stops and cleans up.
pub struct Export {
    client: Mutex<nbd::Client>,
    stop: Stop,
}

impl Source for Export {
    fn read_range(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        if self.stop.requested() {
            return Err(std::io::Error::other("interrupted by a signal"));
        }
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0; len];
        let end = (offset + len as u64).min(c.size());
        if end > offset {
            c.read(offset, &mut buf[..(end - offset) as usize])?;
        }
        Ok(buf)
    }
}

/// A fatal signal arrived: the run stops at the next block and cleans up.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// While alive, SIGTERM, SIGINT and SIGHUP set a flag instead of killing
/// the process: a live snapshot must thaw the guest and take its nodes out
/// of QEMU before it exits.
pub struct SignalGuard {
    ids: Vec<signal_hook::SigId>,
    pub stop: Stop,
}

impl SignalGuard {
    pub fn install() -> Result<SignalGuard> {
        let stop = Stop::default();
        let mut ids = Vec::new();
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            let id = signal_hook::flag::register(sig, stop.0.clone())
                .map_err(|e| Error::io_ctx("installing signal handlers", e))?;
            ids.push(id);
        }
        Ok(SignalGuard { ids, stop })
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The error for a signal that stopped the snapshot.
pub fn interrupted() -> Error {
    Error::new(
        Exit::Interrupted,
        "snapshot",
        "interrupted by a signal; QEMU was left as it was before",
    )
}

/// A QMP failure as an error naming the socket and the command.
fn qmp_err(socket: &Path, cmd: &str, e: QmpError) -> Error {
    let ctx = format!("QMP {}: {cmd}", socket.display());
    match e {
        QmpError::Io(io) => Error::new(Exit::Unavailable, ctx, snap_shared::error::io_cause(&io)),
        QmpError::Refused { desc, .. } => Error::new(Exit::Unavailable, ctx, desc),
    }
}

/// A QMP connection that names its socket in errors.
pub struct Monitor {
    pub q: Qmp,
    pub socket: PathBuf,
}

impl Monitor {
    pub fn connect(socket: &Path) -> Result<Monitor> {
        let q = Qmp::connect(socket).map_err(|e| {
            qmp_err(socket, "connect", e).with_hint(
                "is the VM running, and is this its QMP socket (-qmp unix:PATH,server,wait=off)?",
            )
        })?;
        Ok(Monitor {
            q,
            socket: socket.to_path_buf(),
        })
    }

    pub fn run(&mut self, cmd: &str, args: Value) -> Result<Value> {
        self.q
            .execute(cmd, args)
            .map_err(|e| qmp_err(&self.socket, cmd, e))
    }

    /// Runs `actions` as one transaction (nothing when empty).
    pub fn transaction(&mut self, actions: Vec<Value>) -> Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        self.run("transaction", json!({ "actions": actions }))
            .map(|_| ())
    }

    fn wait(&mut self, event: &str, key: &str, id: &str) -> Result<()> {
        self.q
            .wait_event(
                event,
                |d| d.get(key).and_then(Value::as_str) == Some(id),
                Duration::from_secs(60),
            )
            .map(|_| ())
            .map_err(|e| qmp_err(&self.socket, event, e))
    }
}

/// The names one run gives inside QEMU.
struct Names {
    fleece: String,
    job: String,
    export: String,
}

impl Names {
    fn of_this_run() -> Names {
        let pid = std::process::id();
        Names {
            fleece: format!("{OURS}fleece-{pid}"),
            job: format!("{OURS}job-{pid}"),
            export: format!("{OURS}export-{pid}"),
        }
    }
}

/// Removes exports, jobs and nodes a killed run left in QEMU.
pub fn remove_leftovers(m: &mut Monitor) -> Result<Vec<String>> {
    let mut gone = Vec::new();
    let exports = m.run("query-block-exports", json!({}))?;
    for id in names_with(&exports, "id") {
        m.run("block-export-del", json!({"id": id, "mode": "hard"}))?;
        m.wait("BLOCK_EXPORT_DELETED", "id", &id)?;
        gone.push(id);
    }
    let jobs = m.run("query-block-jobs", json!({}))?;
    for id in names_with(&jobs, "device") {
        m.run("block-job-cancel", json!({"device": id, "force": true}))?;
        m.wait("BLOCK_JOB_CANCELLED", "device", &id)?;
        gone.push(id);
    }
    let nodes = m.run("query-named-block-nodes", json!({"flat": true}))?;
    for name in names_with(&nodes, "node-name") {
        m.run("blockdev-del", json!({"node-name": name}))?;
        gone.push(name);
    }
    Ok(gone)
}

/// Deletes fleecing overlays a killed run left in the disk's folder (the
/// store lock makes every other one stale; QEMU let go of them above).
fn remove_stale_overlays(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".fleece-") && name.ends_with(".qcow2") {
            fs::remove_file(e.path()).map_err(|err| Error::io(&e.path(), err))?;
        }
    }
    Ok(())
}

fn names_with(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.get(key).and_then(Value::as_str))
        .filter(|n| n.starts_with(OURS) && !n.contains('/'))
        .map(str::to_string)
        .collect()
}

/// The bitmaps of one snapshot, settled once the snapshot is published or abandoned.
pub struct Bitmaps {
    /// The session's monitor once the session is done (QMP serves one client at a time).
    m: Option<Monitor>,
    /// Our own QEMU for a stopped image, stopped once the bitmaps are settled.
    pub daemon: Option<crate::daemon::Daemon>,
    node: String,
    new: String,
    old: Option<String>,
    settled: bool,
}

impl Bitmaps {
    /// The snapshot is published: the previous bitmap is no longer needed.
    pub fn keep_new(mut self) -> Result<()> {
        self.settled = true;
        if let (Some(old), Some(m)) = (self.old.take(), self.m.as_mut()) {
            m.run(
                "block-dirty-bitmap-remove",
                json!({"node": self.node, "name": old}),
            )?;
        }
        self.m = None;
        match self.daemon.take() {
            Some(d) => d.stop(),
            None => Ok(()),
        }
    }

    /// The snapshot failed: what the new bitmap saw goes back into the old
    /// one, which records again; the next snapshot reads every change since
    /// the parent.
    pub fn keep_old(mut self) -> Result<()> {
        self.settled = true;
        self.merge_back()
    }

    fn merge_back(&mut self) -> Result<()> {
        let (node, new) = (self.node.clone(), self.new.clone());
        let remove =
            json!({"type": "block-dirty-bitmap-remove", "data": {"node": node, "name": new}});
        let actions = match self.old.take() {
            Some(old) => vec![
                json!({"type": "block-dirty-bitmap-merge",
                    "data": {"node": node, "target": old, "bitmaps": [new]}}),
                json!({"type": "block-dirty-bitmap-enable", "data": {"node": node, "name": old}}),
                remove,
            ],
            None => vec![remove],
        };
        match self.m.as_mut() {
            Some(m) => m.transaction(actions),
            None => Ok(()),
        }
    }
}

impl Drop for Bitmaps {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.merge_back();
        }
    }
}

/// What a live snapshot learned, for the record.
#[derive(Clone)]
pub struct Taken {
    pub node: Node,
    pub consistency: &'static str,
    /// How long the guest's filesystems were frozen.
    pub frozen: Option<Duration>,
    /// Why every block was read, when it was.
    pub full_read: Option<String>,
    pub bitmap: String,
}

/// One live snapshot in QEMU: the fleecing node, its job and export.
pub struct Session {
    m: Option<Monitor>,
    names: Names,
    fleece_file: PathBuf,
    server_started: bool,
    socket: PathBuf,
    torn_down: bool,
    pub taken: Taken,
    bitmaps: Option<Bitmaps>,
}

/// Everything `start` needs.
pub struct Start<'a> {
    pub ends: &'a Endpoints,
    pub image: &'a Path,
    pub disk: &'a str,
    pub snap: &'a str,
    pub parent: Option<&'a Parent>,
    pub block_size: u64,
    /// Where the temporary fleecing overlay goes (the store's disk folder).
    pub work_dir: &'a Path,
    pub stop: &'a Stop,
}

/// Fixes the point in time and exports it: after this the guest writes on,
/// and the snapshot reads what the disk held at the transaction.
pub fn start(s: Start<'_>) -> Result<Session> {
    let mut m = Monitor::connect(&s.ends.qmp)?;
    remove_leftovers(&mut m)?;
    remove_stale_overlays(s.work_dir)?;
    let nodes = m.run("query-named-block-nodes", json!({"flat": true}))?;
    let nodes = nodes.as_array().cloned().unwrap_or_default();
    // QEMU may have been given the image's path relative to its own folder.
    let cwd =
        m.q.peer_pid()
            .and_then(|pid| fs::read_link(format!("/proc/{pid}/cwd")).ok());
    let node = find_node(&nodes, s.image, s.ends.node.as_deref(), cwd.as_deref())
        .map_err(|e| Error::new(Exit::NoInput, format!("QMP {}", s.ends.qmp.display()), e))?;
    let (settle, since) = plan_bitmaps(&node, s.disk, s.parent, s.block_size);
    m.transaction(settle)?;
    let names = Names::of_this_run();
    let fleece_file = s
        .work_dir
        .join(format!(".fleece-{}.qcow2", std::process::id()));
    crate::image::qemu_img(&[
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        fleece_file.as_os_str(),
        node.virtual_size.to_string().as_ref(),
    ])?;
    let mut session = Session {
        m: Some(m),
        names,
        fleece_file,
        server_started: false,
        socket: PathBuf::new(),
        torn_down: false,
        taken: Taken {
            node,
            consistency: POINT_IN_TIME,
            frozen: None,
            full_read: match &since {
                Since::Everything(why) => Some(why.clone()),
                Since::Bitmap(_) => None,
            },
            bitmap: bitmap_name(s.disk, s.snap),
        },
        bitmaps: None,
    };
    session.fix_point(&s, &since)?;
    session.export(&s, &since)?;
    Ok(session)
}

impl Session {
    fn mon(&mut self) -> Result<&mut Monitor> {
        self.m
            .as_mut()
            .ok_or_else(|| Error::internal("live snapshot", "the QMP connection was handed on"))
    }

    fn fix_point(&mut self, s: &Start<'_>, since: &Since) -> Result<()> {
        let node = self.taken.node.name.clone();
        let fleece = json!({
            "driver": "qcow2",
            "node-name": self.names.fleece,
            "file": {"driver": "file", "filename": self.fleece_file},
            "backing": node,
            "discard": "unmap",
        });
        self.mon()?.run("blockdev-add", fleece)?;
        let old = match since {
            Since::Bitmap(b) => Some(b.clone()),
            Since::Everything(_) => None,
        };
        let new = self.taken.bitmap.clone();
        let mut actions = vec![json!({"type": "block-dirty-bitmap-add", "data": {
            "node": node, "name": new, "granularity": s.block_size,
            "persistent": self.taken.node.keeps_bitmaps}})];
        if let Some(o) = &old {
            actions.push(json!({"type": "block-dirty-bitmap-disable",
                "data": {"node": node, "name": o}}));
        }
        actions.push(json!({"type": "blockdev-backup", "data": {
            "job-id": self.names.job, "device": node, "target": self.names.fleece,
            "sync": "none", "auto-dismiss": true}}));
        match &s.ends.agent {
            Some(agent) => {
                let frozen = frozen_transaction(self.mon()?, agent, actions, s.stop)?;
                self.taken.frozen = Some(frozen);
                self.taken.consistency = APPLICATION;
            }
            _ => self.mon()?.transaction(actions)?,
        }
        // From here on, the bitmaps are ours to settle on every path.
        self.bitmaps = Some(Bitmaps {
            m: None,
            daemon: None,
            node,
            new,
            old,
            settled: false,
        });
        Ok(())
    }

    fn export(&mut self, s: &Start<'_>, since: &Since) -> Result<()> {
        self.socket = match &s.ends.nbd_server {
            Some(p) => p.clone(),
            None => self.start_server(&s.ends.qmp)?,
        };
        let mut args = json!({
            "type": "nbd", "id": self.names.export, "node-name": self.names.fleece,
            "name": self.names.export, "writable": false,
        });
        if let Since::Bitmap(b) = since {
            args["bitmaps"] = json!([b]);
        }
        self.mon()?.run("block-export-add", args)?;
        Ok(())
    }

    fn start_server(&mut self, qmp: &Path) -> Result<PathBuf> {
        let dir = qmp.parent().unwrap_or(Path::new("/tmp"));
        let socket = dir.join(format!("{OURS}{}.nbd", std::process::id()));
        let r = self.mon()?.run(
            "nbd-server-start",
            json!({"addr": {"type": "unix", "data": {"path": socket}}}),
        );
        match r {
            Ok(_) => {
                self.server_started = true;
                Ok(socket)
            }
            Err(e) if e.cause.contains("already running") => Err(Error::new(
                Exit::Usage,
                format!("QMP {}", qmp.display()),
                "this QEMU already runs an NBD server, and QEMU runs at most one",
            )
            .with_hint("give its unix socket with --nbd-server PATH (or \"nbd_server\" in the config's disk entry)")),
            Err(e) => Err(e),
        }
    }

    /// Reads the export's extents and plans which blocks to read.
    pub fn plan(
        &mut self,
        block_size: u64,
        parent: Option<&Parent>,
        stop: &Stop,
    ) -> Result<(Export, Vec<(u64, Take)>)> {
        let since_bitmap = self.bitmaps.as_ref().and_then(|b| b.old.clone());
        let mut meta = vec![nbd::ALLOCATION.to_string()];
        if let Some(b) = &since_bitmap {
            meta.push(nbd::bitmap_context(b));
        }
        let nbd_err =
            |e: std::io::Error| Error::io_ctx(format!("NBD export {}", self.socket.display()), e);
        let mut client =
            nbd::Client::connect(&self.socket, &self.names.export, &meta).map_err(nbd_err)?;
        let data = client.all_extents(nbd::ALLOCATION).map_err(nbd_err)?;
        let (dirty, parent_map) = match (&since_bitmap, parent) {
            (Some(b), Some(p)) => (
                Some(
                    client
                        .all_extents(&nbd::bitmap_context(b))
                        .map_err(nbd_err)?,
                ),
                parent_blocks(&p.map)?,
            ),
            _ => (None, Vec::new()),
        };
        let plan = plan_blocks(
            block_size,
            client.size(),
            &data,
            dirty.as_deref(),
            &parent_map,
        );
        let export = Export {
            client: Mutex::new(client),
            stop: stop.clone(),
        };
        Ok((export, plan))
    }

    /// Takes everything out of QEMU and removes the fleecing file. Returns
    /// the bitmaps, to settle once the snapshot is published or failed.
    pub fn finish(mut self) -> Result<Option<Bitmaps>> {
        self.tear_down()?;
        Ok(self.bitmaps.take().map(|mut b| {
            b.m = self.m.take();
            b
        }))
    }

    fn tear_down(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let exports = self.mon()?.run("query-block-exports", json!({}))?;
        if names_with(&exports, "id").contains(&self.names.export) {
            let id = self.names.export.clone();
            self.mon()?
                .run("block-export-del", json!({"id": id, "mode": "hard"}))?;
            self.mon()?.wait("BLOCK_EXPORT_DELETED", "id", &id)?;
        }
        if self.server_started {
            self.mon()?.run("nbd-server-stop", json!({}))?;
            let _ = fs::remove_file(&self.socket);
        }
        let jobs = self.mon()?.run("query-block-jobs", json!({}))?;
        if names_with(&jobs, "device").contains(&self.names.job) {
            let id = self.names.job.clone();
            self.mon()?
                .run("block-job-cancel", json!({"device": id, "force": true}))?;
            self.mon()?.wait("BLOCK_JOB_CANCELLED", "device", &id)?;
        }
        let nodes = self
            .mon()?
            .run("query-named-block-nodes", json!({"flat": true}))?;
        if names_with(&nodes, "node-name").contains(&self.names.fleece) {
            let args = json!({"node-name": self.names.fleece});
            self.mon()?.run("blockdev-del", args)?;
        }
        match fs::remove_file(&self.fleece_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(&self.fleece_file, e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // An error path: take our nodes out of QEMU, and merge the bitmaps back.
        let _ = self.tear_down();
        if let Some(mut b) = self.bitmaps.take() {
            b.m = self.m.take();
        }
    }
}

/// Freezes the guest's filesystems, runs the transaction, thaws: the thaw
/// runs exactly once whatever happens between (a QMP error, a timeout, a
/// signal, which only sets a flag). Returns how long the guest was frozen.
fn frozen_transaction(
    m: &mut Monitor,
    agent: &Path,
    actions: Vec<Value>,
    stop: &Stop,
) -> Result<Duration> {
    let agent_err = |cmd: &str, e: QmpError| {
        let err = qmp_err(agent, cmd, e);
        Error::new(
            err.exit,
            format!("guest agent {}: {cmd}", agent.display()),
            err.cause,
        )
    };
    let mut a =
        Agent::connect(agent, Duration::from_secs(60)).map_err(|e| agent_err("guest-sync", e))?;
    if stop.requested() {
        return Err(interrupted());
    }
    let t0 = Instant::now();
    let frozen = a.execute("guest-fsfreeze-freeze");
    // A freeze that failed or timed out may still have frozen some filesystems.
    let done = frozen
        .map_err(|e| agent_err("guest-fsfreeze-freeze", e))
        .and_then(|_| m.transaction(actions));
    let thawed = a.execute("guest-fsfreeze-thaw").or_else(|_| {
        // The first connection may be what failed: thaw over a new one.
        Agent::connect(agent, Duration::from_secs(10))
            .and_then(|mut b| b.execute("guest-fsfreeze-thaw"))
    });
    let held = t0.elapsed();
    done?;
    thawed.map_err(|e| {
        agent_err("guest-fsfreeze-thaw", e)
            .with_hint("the guest may still be frozen: run guest-fsfreeze-thaw by hand")
    })?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(bitmaps: Vec<Bitmap>) -> Node {
        Node {
            name: "fmt".into(),
            format: "qcow2".into(),
            virtual_size: 8 << 20,
            bitmaps,
            keeps_bitmaps: true,
        }
    }

    fn bm(name: &str) -> Bitmap {
        Bitmap {
            name: name.into(),
            granularity: 1 << 20,
            recording: true,
            persistent: true,
            inconsistent: false,
        }
    }

    fn parent(dir: &Path) -> Parent {
        let map = dir.join("p.map.zst");
        fs::write(&map, b"").unwrap();
        Parent {
            bitmap: bitmap_name("d", "p"),
            map,
            virtual_size: 8 << 20,
        }
    }

    /// A usable parent bitmap means a changed-blocks read, and a killed
    /// run's extra bitmap is merged into it before it is removed.
    #[test]
    fn leftover_bitmap_merges_into_the_parents() {
        let t = tempfile::tempdir().unwrap();
        let mut old = bm(&bitmap_name("d", "p"));
        old.recording = false;
        let n = node(vec![
            old,
            bm(&bitmap_name("d", "killed")),
            bm("someone-elses"),
        ]);
        let (actions, since) = plan_bitmaps(&n, "d", Some(&parent(t.path())), 1 << 20);
        assert_eq!(since, Since::Bitmap(bitmap_name("d", "p")));
        let kinds: Vec<&str> = actions
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "block-dirty-bitmap-merge",
                "block-dirty-bitmap-enable",
                "block-dirty-bitmap-remove"
            ]
        );
        assert_eq!(actions[2]["data"]["name"], bitmap_name("d", "killed"));
    }

    /// A disabled parent bitmap with nothing to merge in missed writes: everything is read.
    #[test]
    fn disabled_bitmap_alone_means_a_full_read() {
        let t = tempfile::tempdir().unwrap();
        let mut b = bm(&bitmap_name("d", "p"));
        b.recording = false;
        let (_, since) = plan_bitmaps(&node(vec![b]), "d", Some(&parent(t.path())), 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("not recording")));
    }

    /// An in-use (inconsistent) bitmap is never trusted: everything is read.
    #[test]
    fn inconsistent_bitmap_means_a_full_read() {
        let t = tempfile::tempdir().unwrap();
        let mut b = bm(&bitmap_name("d", "p"));
        b.inconsistent = true;
        let (actions, since) = plan_bitmaps(&node(vec![b]), "d", Some(&parent(t.path())), 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("in use")));
        assert_eq!(actions.len(), 1, "the bad bitmap is removed");
    }

    /// No parent bitmap (first snapshot, or QEMU restarted on a raw image): a full read.
    #[test]
    fn missing_bitmap_means_a_full_read() {
        let t = tempfile::tempdir().unwrap();
        let (_, since) = plan_bitmaps(&node(vec![]), "d", Some(&parent(t.path())), 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("gone")));
        let (_, since) = plan_bitmaps(&node(vec![]), "d", None, 1 << 20);
        assert!(matches!(since, Since::Everything(w) if w.contains("first snapshot")));
    }

    /// Dirty blocks are read, clean ones taken from the parent, holes skipped.
    #[test]
    fn plan_reads_only_dirty_data() {
        let mb = 1u64 << 20;
        let d = |n: u8| Some(Sha256Digest::of(&[n]));
        let parent = vec![d(0), d(1), None, d(3)];
        let data = [
            nbd::Extent {
                offset: 0,
                len: 2 * mb,
                flags: 0,
            },
            nbd::Extent {
                offset: 2 * mb,
                len: mb,
                flags: nbd::STATE_HOLE | nbd::STATE_ZERO,
            },
            nbd::Extent {
                offset: 3 * mb,
                len: mb,
                flags: 0,
            },
        ];
        // Dirty from the middle of block 1 to the middle of block 2 (a hole).
        let dirty = [
            nbd::Extent {
                offset: 0,
                len: mb + mb / 2,
                flags: 0,
            },
            nbd::Extent {
                offset: mb + mb / 2,
                len: mb,
                flags: nbd::STATE_DIRTY,
            },
            nbd::Extent {
                offset: 2 * mb + mb / 2,
                len: mb + mb / 2,
                flags: 0,
            },
        ];
        let plan = plan_blocks(mb, 4 * mb, &data, Some(&dirty), &parent);
        assert_eq!(
            plan,
            [
                (0, Take::Same(d(0).unwrap())),
                (1, Take::Read),
                (3, Take::Same(d(3).unwrap()))
            ]
        );
        let full = plan_blocks(mb, 4 * mb, &data, None, &[]);
        assert_eq!(full, [(0, Take::Read), (1, Take::Read), (3, Take::Read)]);
    }
}
