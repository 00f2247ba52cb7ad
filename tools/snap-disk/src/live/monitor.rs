//! The QMP monitor as a session uses it, the names of the nodes and bitmaps
//! it adds, and the cleanup of what a killed run left in QEMU: fleecing
//! nodes, stale overlays, and bitmaps to merge back.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use snap_shared::error::{Error, Exit, Result};

use super::discovery::OURS;
use crate::qmp::{Qmp, QmpError};

/// A QMP failure as an error naming the socket and the command.
pub(crate) fn qmp_err(socket: &Path, cmd: &str, e: QmpError) -> Error {
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

    pub(crate) fn wait(&mut self, event: &str, key: &str, id: &str) -> Result<()> {
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
pub(crate) struct Names {
    pub(crate) fleece: String,
    pub(crate) job: String,
    pub(crate) export: String,
}

impl Names {
    pub(crate) fn of_this_run() -> Names {
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
pub(crate) fn remove_stale_overlays(dir: &Path) -> Result<()> {
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

pub(crate) fn names_with(list: &Value, key: &str) -> Vec<String> {
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
    pub(crate) m: Option<Monitor>,
    /// Our own QEMU for a stopped image, stopped once the bitmaps are settled.
    pub daemon: Option<crate::daemon::Daemon>,
    pub(crate) node: String,
    pub(crate) new: String,
    pub(crate) old: Option<String>,
    pub(crate) settled: bool,
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

    pub(crate) fn merge_back(&mut self) -> Result<()> {
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
