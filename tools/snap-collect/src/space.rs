//! Free space on the store: refuse to start below the floor, warn when the run
//! will likely not fit, and stop before the floor is crossed mid-run (the floor
//! is a promise to whatever else lives on that filesystem).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use snap_shared::error::{Error, Exit, Result};
use snap_shared::fsutil::free_space;
use snap_shared::record::SnapshotRecord;
use snap_shared::size::{Floor, human_bytes};
use snap_shared::store::Store;

use snap_cli::Reporter;

/// Re-measure free space after this many bytes copied.
const RECHECK_EVERY: u64 = 64 << 20;

/// Shared by the workers: counts bytes written and re-measures now and then.
#[derive(Debug)]
pub struct SpaceGuard {
    root: PathBuf,
    floor: Floor,
    since_check: AtomicU64,
}

fn below_floor(root: &Path, free: u64, floor: u64) -> Error {
    Error::new(
        Exit::CantCreate,
        format!("store {}", root.display()),
        format!(
            "{} free, below the floor of {}",
            human_bytes(free),
            human_bytes(floor)
        ),
    )
    .with_hint(
        "free space or prune old snapshots (snap-prune), or set --min-free / collect.min_free",
    )
}

impl SpaceGuard {
    /// Checks the floor before a run. `last` is the set's previous snapshot,
    /// whose cost predicts this one's.
    pub fn check(
        store: &Store,
        floor: Floor,
        last: Option<&SnapshotRecord>,
        report: &Reporter,
    ) -> Result<SpaceGuard> {
        let (free, total) = free_space(&store.root).map_err(|e| Error::io(&store.root, e))?;
        let floor_bytes = floor.bytes(total);
        if free < floor_bytes {
            return Err(below_floor(&store.root, free, floor_bytes));
        }
        if let Some(rec) = last
            && free.saturating_sub(rec.new_bytes) < floor_bytes
        {
            report.warn(&format!(
                "store {}: {} free; set {} copied {} last time, so this run will likely not fit above the floor of {}",
                store.root.display(),
                human_bytes(free),
                rec.set,
                human_bytes(rec.new_bytes),
                human_bytes(floor_bytes)
            ));
        }
        Ok(SpaceGuard {
            root: store.root.clone(),
            floor,
            since_check: AtomicU64::new(0),
        })
    }

    /// Counts bytes written; stops the run (exit 73) if free space fell below the floor.
    pub fn spent(&self, bytes: u64) -> Result<()> {
        let total = self.since_check.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total < RECHECK_EVERY {
            return Ok(());
        }
        self.since_check.store(0, Ordering::Relaxed);
        let (free, total) = free_space(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let floor = self.floor.bytes(total);
        if free < floor {
            return Err(below_floor(&self.root, free, floor)
                .with_hint("the run stopped before filling the disk; no snapshot was made and earlier ones are intact"));
        }
        Ok(())
    }
}
