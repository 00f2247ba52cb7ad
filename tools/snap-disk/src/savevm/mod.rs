//! Internal snapshots inside the qcow2 images a running QEMU holds, made,
//! loaded and deleted through its QMP monitor as `savevm`, `loadvm` and
//! `delvm` do.
//!
//! `snapshot-save`, `snapshot-load` and `snapshot-delete` (QEMU 6.0 and
//! later; Debian 12 has 7.2) are jobs: each is started under a job id of
//! ours, waited for by its `JOB_STATUS_CHANGE` events, its error read from
//! `query-jobs`, then dismissed. `snapshot-save` always saves the VM state,
//! so a disk-only snapshot is `blockdev-snapshot-internal-sync`, in one
//! transaction.
//!
//! QEMU's rules, which this keeps and says: a save or a delete that fails
//! leaves the VM running (a snapshot half made on some disks is deleted
//! again); a load stops the VM first and resumes it only when the load
//! succeeded, so a load that fails leaves the VM paused, its disks possibly
//! part way to the snapshot. A job a killed run left is waited for and
//! dismissed by the next run, which says what it found.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use snap_shared::error::{Error, Exit, Result};

use crate::image::InternalSnapshot;
use crate::live::{Endpoints, OURS};
use crate::live::{Monitor, find_node};
use crate::qmp::event_micros;

mod jobs;

use jobs::job_id;

/// A running VM's monitor, and the qcow2 node over the image.
pub struct Vm {
    m: Monitor,
    cwd: Option<PathBuf>,
    /// The format node over the image.
    pub node: String,
    /// Jobs a killed run left, now dismissed: what each was and how it ended.
    pub leftovers: Vec<String>,
}

/// What a save did.
pub struct Saved {
    pub snapshot: InternalSnapshot,
    /// How long the guest was paused (QEMU's STOP to RESUME), with the VM state.
    pub paused: Option<Duration>,
    /// From the command to the job's end.
    pub took: Duration,
    /// The VM's other disks that got the snapshot too (a VM state belongs to all).
    pub others: Vec<String>,
}

/// A load, checked: the snapshot's tag, the disk with its VM state, and
/// every disk that has it.
pub struct Load {
    tag: String,
    vmstate: String,
    devices: Vec<String>,
    /// snap-disk's dirty bitmaps on those disks, removed before the load.
    bitmaps: Vec<(String, String)>,
}

impl Vm {
    /// Connects to the monitor and finds the image's node; a job a killed
    /// run left is finished and dismissed first.
    pub fn connect(ends: &Endpoints, image: &Path) -> Result<Vm> {
        let mut m = Monitor::connect(&ends.qmp)?;
        // QEMU may have been given the image's path relative to its own folder.
        let cwd =
            m.q.peer_pid()
                .and_then(|pid| fs::read_link(format!("/proc/{pid}/cwd")).ok());
        let nodes = m.run("query-named-block-nodes", json!({"flat": true}))?;
        let nodes = nodes.as_array().cloned().unwrap_or_default();
        let node = find_node(&nodes, image, ends.node.as_deref(), cwd.as_deref())
            .map_err(|e| Error::new(Exit::NoInput, format!("QMP {}", ends.qmp.display()), e))?;
        if node.format != "qcow2" {
            return Err(Error::usage(
                image.display().to_string(),
                format!(
                    "QEMU runs it as {}; internal snapshots need a qcow2 image",
                    node.format
                ),
            )
            .with_hint("use --method blocks, which takes any format"));
        }
        let mut vm = Vm {
            m,
            cwd,
            node: node.name,
            leftovers: Vec::new(),
        };
        vm.leftovers = vm.finish_leftover_jobs()?;
        Ok(vm)
    }

    /// The monitor's socket, for messages.
    pub fn socket(&self) -> &Path {
        &self.m.socket
    }

    /// The internal snapshots of the image, as the running QEMU sees them.
    pub fn snapshots(&mut self) -> Result<Vec<InternalSnapshot>> {
        let node = self.node.clone();
        let mut all = self.snapshots_on(&[node])?;
        Ok(all.pop().map(|(_, s)| s).unwrap_or_default())
    }

    /// The internal snapshots of each of these nodes, in their order, from
    /// one `query-named-block-nodes`.
    fn snapshots_on(&mut self, nodes: &[String]) -> Result<Vec<(String, Vec<InternalSnapshot>)>> {
        let all = self
            .m
            .run("query-named-block-nodes", json!({"flat": true}))?;
        let mut out = Vec::new();
        for node in nodes {
            let found = all
                .as_array()
                .into_iter()
                .flatten()
                .find(|n| n["node-name"] == node.as_str())
                .ok_or_else(|| self.refused("query-named-block-nodes", "the node is gone"))?;
            let list = match found["image"]["snapshots"].clone() {
                Value::Null => Vec::new(),
                v => serde_json::from_value(v).map_err(|e| {
                    self.refused(
                        "query-named-block-nodes",
                        &format!("unreadable snapshots: {e}"),
                    )
                })?,
            };
            out.push((node.clone(), list));
        }
        Ok(out)
    }

    /// The snapshot `tag` on each of these nodes that has one: (node, snapshot).
    fn tagged(&mut self, tag: &str, nodes: &[String]) -> Result<Vec<(String, InternalSnapshot)>> {
        Ok(self
            .snapshots_on(nodes)?
            .into_iter()
            .filter_map(|(node, list)| {
                let s = list.into_iter().find(|s| s.name == tag)?;
                Some((node, s))
            })
            .collect())
    }

    /// The VM's writable disks (the root node of each), which `savevm` snapshots all of.
    fn writable_disks(&mut self) -> Result<Vec<String>> {
        let block = self.m.run("query-block", json!({}))?;
        Ok(block
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.get("inserted"))
            .filter(|i| i["ro"] == false)
            .filter_map(|i| i["node-name"].as_str().map(str::to_string))
            .collect())
    }

    /// Whether QEMU has marked the image's node corrupt.
    pub fn corrupt(&mut self) -> Result<bool> {
        let nodes = self
            .m
            .run("query-named-block-nodes", json!({"flat": true}))?;
        Ok(nodes
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node-name"] == self.node.as_str())
            .is_some_and(|n| n["image"]["format-specific"]["data"]["corrupt"] == true))
    }

    /// Whether the guest runs (`query-status`).
    pub fn status(&mut self) -> Result<String> {
        let s = self.m.run("query-status", json!({}))?;
        Ok(s["status"].as_str().unwrap_or("unknown").to_string())
    }

    /// Makes the internal snapshot `tag`: with the VM state (memory, CPU,
    /// devices) into `state_image`'s node, or the image's own, on every
    /// writable disk, as savevm does; without it, on this disk alone.
    pub fn save(&mut self, tag: &str, state: Option<Option<&Path>>) -> Result<Saved> {
        let Some(state_image) = state else {
            return self.save_disk_only(tag);
        };
        let vmstate = match state_image {
            Some(img) => self.node_of(img)?,
            None => self.node.clone(),
        };
        let devices = self.devices_for_save()?;
        let id = job_id("save");
        self.m.q.take_events("STOP");
        self.m.q.take_events("RESUME");
        let args = json!({"job-id": id, "tag": tag, "vmstate": vmstate, "devices": devices});
        let ended = self.job("snapshot-save", &id, args)?;
        let stop = self.m.q.take_events("STOP");
        let resume = self.m.q.take_events("RESUME");
        if let Some(why) = ended.error {
            let left = self.remove_partial(tag, &devices)?;
            return Err(self
                .refused("snapshot-save", &why)
                .with_hint(format!("the VM runs on{left}")));
        }
        let paused = match (stop.first().and_then(event_micros), resume.last()) {
            (Some(a), Some(r)) => {
                event_micros(r).map(|b| Duration::from_micros(b.saturating_sub(a)))
            }
            _ => None,
        };
        Ok(Saved {
            snapshot: self.find(tag)?,
            paused,
            took: ended.took,
            others: devices.into_iter().filter(|d| *d != self.node).collect(),
        })
    }

    /// A disk-only snapshot of this disk: one transaction, no pause of the guest.
    fn save_disk_only(&mut self, tag: &str) -> Result<Saved> {
        let started = Instant::now();
        let action = json!({"type": "blockdev-snapshot-internal-sync",
            "data": {"device": self.node, "name": tag}});
        self.m.transaction(vec![action]).map_err(|e| {
            e.with_hint("the VM runs on; the transaction left nothing in the image")
        })?;
        Ok(Saved {
            snapshot: self.find(tag)?,
            paused: None,
            took: started.elapsed(),
            others: Vec::new(),
        })
    }

    /// The disks a save with the VM state goes to: every writable one, which
    /// must include this image's (through any filter above it).
    fn devices_for_save(&mut self) -> Result<Vec<String>> {
        let mut devices = self.writable_disks()?;
        if !devices.contains(&self.node) && devices.len() != 1 {
            devices.push(self.node.clone());
        }
        Ok(devices)
    }

    /// The node over another image the VM holds (`--vm-state-disk`).
    fn node_of(&mut self, image: &Path) -> Result<String> {
        let nodes = self
            .m
            .run("query-named-block-nodes", json!({"flat": true}))?;
        let nodes = nodes.as_array().cloned().unwrap_or_default();
        find_node(&nodes, image, None, self.cwd.as_deref())
            .map(|n| n.name)
            .map_err(|e| Error::usage(format!("--vm-state-disk {}", image.display()), e))
    }

    /// The snapshot `key` (tag or ID) as QEMU now sees it.
    pub fn find(&mut self, key: &str) -> Result<InternalSnapshot> {
        self.snapshots()?
            .into_iter()
            .find(|s| s.is(key))
            .ok_or_else(|| {
                self.refused(
                    "query-named-block-nodes",
                    &format!("the image has no snapshot {key}"),
                )
            })
    }

    /// Deletes `tag` from the disks a failed save left it on; says what it did.
    fn remove_partial(&mut self, tag: &str, devices: &[String]) -> Result<String> {
        let left: Vec<String> = self
            .tagged(tag, devices)?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        if left.is_empty() {
            return Ok(", and no disk has the snapshot".into());
        }
        self.delete_on(tag, &left)?;
        Ok(format!(
            "; the snapshot it had begun on {} was deleted again",
            left.join(", ")
        ))
    }

    /// What loading `snap` into the running VM takes: the disks that have
    /// it and the one with its VM state. A disk-only snapshot cannot be
    /// loaded into a running VM (QEMU's rule): refused before anything is done.
    pub fn plan_load(&mut self, snap: &InternalSnapshot) -> Result<Load> {
        let disks = self.writable_disks()?;
        let holders = self.tagged(&snap.name, &disks)?;
        let vmstate = holders
            .iter()
            .find(|(_, s)| s.has_vm_state())
            .map(|(d, _)| d.clone());
        let devices: Vec<String> = holders.into_iter().map(|(d, _)| d).collect();
        let Some(vmstate) = vmstate else {
            return Err(Error::new(
                Exit::TempFail,
                format!("snapshot {}", snap.name),
                "is disk-only (no VM state): QEMU loads it only into a stopped VM",
            )
            .with_hint("shut the VM down, then restore again (through qemu-img)"));
        };
        // QEMU refuses to load over a dirty bitmap, after it stopped the VM.
        let mut ours = Vec::new();
        let mut foreign = Vec::new();
        for (node, name) in self.bitmaps_on(&devices)? {
            match name.starts_with(OURS) {
                true => ours.push((node, name)),
                false => foreign.push(format!("{name} on {node}")),
            }
        }
        if !foreign.is_empty() {
            return Err(Error::new(
                Exit::TempFail,
                format!("snapshot {}", snap.name),
                format!(
                    "QEMU cannot load it while the disks have dirty bitmaps: {}",
                    foreign.join(", ")
                ),
            )
            .with_hint(
                "they belong to another backup tool (libvirt checkpoints?); nothing was changed",
            ));
        }
        Ok(Load {
            tag: snap.name.clone(),
            vmstate,
            devices,
            bitmaps: ours,
        })
    }

    /// The named dirty bitmaps on these nodes: (node, bitmap).
    fn bitmaps_on(&mut self, nodes: &[String]) -> Result<Vec<(String, String)>> {
        let all = self
            .m
            .run("query-named-block-nodes", json!({"flat": true}))?;
        let mut out = Vec::new();
        for n in all.as_array().into_iter().flatten() {
            let Some(name) = n["node-name"]
                .as_str()
                .filter(|x| nodes.iter().any(|w| w == x))
            else {
                continue;
            };
            for b in n["dirty-bitmaps"].as_array().into_iter().flatten() {
                if let Some(b) = b["name"].as_str() {
                    out.push((name.to_string(), b.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Brings the VM back to a snapshot (loadvm): its disks, and from its VM
    /// state the memory and CPUs. Returns how long the job took.
    pub fn load(&mut self, plan: Load) -> Result<Duration> {
        // snap-disk's own bitmaps go: after the load they would not say
        // what changed, and the next blocks snapshot reads the whole disk.
        let removals: Vec<Value> = plan
            .bitmaps
            .iter()
            .map(|(node, name)| {
                json!({"type": "block-dirty-bitmap-remove", "data": {"node": node, "name": name}})
            })
            .collect();
        self.m.transaction(removals)?;
        let id = job_id("load");
        let args = json!({"job-id": id, "tag": plan.tag, "vmstate": plan.vmstate,
            "devices": plan.devices});
        let ended = self.job("snapshot-load", &id, args)?;
        if let Some(why) = ended.error {
            let status = self.status()?;
            return Err(self.refused("snapshot-load", &why).with_hint(format!(
                "QEMU left the VM stopped ({status}), as it does after any failed loadvm: it \
                 stops the VM first and resumes it only on success, and the disks may be part \
                 way to {}; load another snapshot, or shut the VM down and restore one offline",
                plan.tag
            )));
        }
        Ok(ended.took)
    }

    /// Deletes `snap` online (delvm): from every disk that has it when it
    /// holds a VM state (a VM-wide snapshot), else from this disk alone.
    pub fn delete(&mut self, snap: &InternalSnapshot) -> Result<()> {
        let disks = self.writable_disks()?;
        let holders = self.tagged(&snap.name, &disks)?;
        let mut devices = vec![self.node.clone()];
        if snap.has_vm_state() || holders.iter().any(|(_, s)| s.has_vm_state()) {
            devices.extend(
                holders
                    .into_iter()
                    .map(|(d, _)| d)
                    .filter(|d| *d != self.node),
            );
        }
        self.delete_on(&snap.name, &devices)
    }

    fn delete_on(&mut self, tag: &str, devices: &[String]) -> Result<()> {
        let id = job_id("delete");
        let args = json!({"job-id": id, "tag": tag, "devices": devices});
        let ended = self.job("snapshot-delete", &id, args)?;
        match ended.error {
            None => Ok(()),
            Some(why) => Err(self
                .refused("snapshot-delete", &why)
                .with_hint("the VM runs on")),
        }
    }

    pub(super) fn refused(&self, cmd: &str, why: &str) -> Error {
        Error::new(
            Exit::Unavailable,
            format!("QMP {}: {cmd}", self.m.socket.display()),
            why.to_string(),
        )
    }
}
