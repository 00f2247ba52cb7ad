//! One live snapshot: the transaction that fixes the point in time (and
//! with a guest agent, the freeze around it), the NBD export of the
//! fleecing overlay, and the teardown that leaves QEMU as it was.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use snap_shared::error::{Error, Exit, Result};

use super::discovery::{APPLICATION, Endpoints, Node, OURS, POINT_IN_TIME, bitmap_name, find_node};
use super::monitor::{
    Bitmaps, Monitor, Names, names_with, qmp_err, remove_leftovers, remove_stale_overlays,
};
use super::planning::{Export, Parent, Since, plan_bitmaps};
use super::signals::{Stop, interrupted};
use crate::blocks::Take;
use crate::qmp::{Agent, QmpError};

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
    pub(crate) m: Option<Monitor>,
    pub(crate) names: Names,
    pub(crate) fleece_file: PathBuf,
    pub(crate) server_started: bool,
    pub(crate) socket: PathBuf,
    pub(crate) torn_down: bool,
    pub taken: Taken,
    pub(crate) bitmaps: Option<Bitmaps>,
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
    pub(crate) fn mon(&mut self) -> Result<&mut Monitor> {
        self.m
            .as_mut()
            .ok_or_else(|| Error::internal("live snapshot", "the QMP connection was handed on"))
    }

    pub(crate) fn fix_point(&mut self, s: &Start<'_>, since: &Since) -> Result<()> {
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

    pub(crate) fn export(&mut self, s: &Start<'_>, since: &Since) -> Result<()> {
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

    pub(crate) fn start_server(&mut self, qmp: &Path) -> Result<PathBuf> {
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
        let since = self.bitmaps.as_ref().and_then(|b| b.old.clone());
        let (socket, name) = (&self.socket, &self.names.export);
        super::planning::plan_export(socket, name, since.as_deref(), parent, block_size, stop)
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

    pub(crate) fn tear_down(&mut self) -> Result<()> {
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
pub(crate) fn frozen_transaction(
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
