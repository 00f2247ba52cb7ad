//! A domain's internal snapshots with its memory, made, reverted and deleted
//! through libvirt (`virsh snapshot-create-as`, `snapshot-revert`,
//! `snapshot-delete`), so libvirt's own list stays true.
//!
//! QEMU refuses to load a snapshot while the disks carry dirty bitmaps, and
//! libvirt's checkpoints are such bitmaps: a revert first deletes the disk's
//! checkpoints of ours (the next live snapshot then reads the whole disk,
//! and says so), and refuses, changing nothing, when another tool's remain.

use std::time::{Duration, Instant};

use snap_shared::error::{Error, Exit, Result};

use super::Domain;
use crate::live::OURS;

impl Domain {
    /// The internal snapshots libvirt knows, by name.
    pub fn snapshot_names(&self) -> Result<Vec<String>> {
        self.names("snapshot-list")
    }

    /// An internal snapshot of every disk with the VM's memory and devices
    /// (savevm); returns how long libvirt took.
    pub fn snapshot_create(&self, name: &str, description: Option<&str>) -> Result<Duration> {
        let mut args = vec![name, "--atomic"];
        if let Some(d) = description {
            args.extend(["--description", d]);
        }
        let t0 = Instant::now();
        self.run("snapshot-create-as", &args)?;
        Ok(t0.elapsed())
    }

    /// Brings the domain back to `name` (memory too, when the snapshot holds
    /// it), after deleting the checkpoints that would make QEMU refuse.
    pub fn snapshot_revert(&self, name: &str) -> Result<Duration> {
        let checkpoints = self.names("checkpoint-list")?;
        let foreign: Vec<&String> = checkpoints
            .iter()
            .filter(|c| !c.starts_with(OURS))
            .collect();
        if !foreign.is_empty() {
            let names: Vec<&str> = foreign.iter().map(|s| s.as_str()).collect();
            return Err(Error::new(
                Exit::TempFail,
                format!("domain {}: snapshot {name}", self.name),
                format!(
                    "QEMU cannot load it while the disks have checkpoints (dirty bitmaps): {}",
                    names.join(", ")
                ),
            )
            .with_hint("they belong to another backup tool; nothing was changed"));
        }
        for c in &checkpoints {
            self.run("checkpoint-delete", &[c])?;
        }
        let t0 = Instant::now();
        self.run("snapshot-revert", &[name])?;
        Ok(t0.elapsed())
    }

    pub fn snapshot_delete(&self, name: &str) -> Result<()> {
        self.run("snapshot-delete", &[name]).map(drop)
    }
}
