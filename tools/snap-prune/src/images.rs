//! Snapshots that live inside the store's disk images rather than in the
//! store: qcow2 internal snapshots and overlay chains (snap-disk's
//! `qcow2-internal` and `overlay` methods). Each disk is a group, timed by
//! its records (or, for an internal snapshot snap-disk did not make, by the
//! image's snapshot table).
//!
//! They are removed the way `snap-disk delete` removes them, through
//! snap-disk's own library: an internal snapshot with `qemu-img snapshot -d`
//! on a stopped image and QMP's `snapshot-delete` job on a running VM's (its
//! monitor from the config's disk entry); an overlay by rebasing the files
//! above it onto the one below (safe mode: they take in what they need), so
//! a chain is folded, never cut. A snapshot snap-disk did not make (qemu-img,
//! savevm, virsh) is left out of the rules and kept, unless
//! `--include-foreign`; a record whose snapshot is gone from the image is
//! broken, and goes.

use std::collections::HashSet;

use snap_cli::Reporter;
use snap_disk::MonitorArgs;
use snap_disk::disk::{Context, Disk};
use snap_disk::internal;
use snap_disk::savevm::Vm;
use snap_shared::catalog::Catalog;
use snap_shared::config::LoadedConfig;
use snap_shared::disks::disk_names;
use snap_shared::error::Result;
use snap_shared::record::DiskSnapshotRecord;
use snap_shared::retention::listing::{Entry, Group, Info};
use snap_shared::store::{PIN, Store};

/// The store's disks whose images hold snapshots.
pub struct Images {
    ctx: Context,
    include_foreign: bool,
    report: Reporter,
}

/// The methods whose snapshots live in or beside the image.
const IN_IMAGE: &[&str] = &["qcow2-internal", "overlay"];

impl Images {
    pub fn new(
        store: &Store,
        config: Option<LoadedConfig>,
        include_foreign: bool,
        report: Reporter,
    ) -> Images {
        Images {
            ctx: Context::new(store.clone(), config),
            include_foreign,
            report,
        }
    }

    /// The disk `name` with its image there, and the VM that runs it when
    /// the config names its monitor and a process holds the image.
    fn open(&self, name: &str) -> Result<Option<(Disk, Option<Vm>)>> {
        let disk = self.ctx.existing(name)?;
        if !disk.image.exists() {
            return Ok(None);
        }
        let vm = internal::running_vm(
            &self.ctx,
            &disk.image,
            &MonitorArgs::default(),
            &self.report,
        )?;
        Ok(Some((disk, vm)))
    }

    /// Every disk's snapshots in its image, oldest first.
    pub fn scan(&self) -> Result<Vec<Group>> {
        let mut out = Vec::new();
        for name in disk_names(&self.ctx.store)? {
            let Some((disk, mut vm)) = self.open(&name)? else {
                continue;
            };
            let recs = self.records(&disk, vm.as_mut())?;
            let pins = pins(&disk);
            let (foreign, ours): (Vec<_>, Vec<_>) = recs.into_iter().partition(is_foreign);
            if !foreign.is_empty() && !self.include_foreign {
                self.report.note(&format!(
                    "disk {name}: {} snapshot(s) in the image that snap-disk did not make are kept \
                     (--include-foreign applies the rules to them too): {}",
                    foreign.len(),
                    foreign
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let judged = match self.include_foreign {
                true => ours.into_iter().chain(foreign).collect::<Vec<_>>(),
                false => ours,
            };
            let mut entries: Vec<Entry> = judged
                .into_iter()
                .map(|r| {
                    let pinned = pins.contains(&format!("{}{PIN}", r.name));
                    entry(r, pinned)
                })
                .collect();
            entries.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
            if !entries.is_empty() {
                out.push(Group { set: name, entries });
            }
        }
        Ok(out)
    }

    /// The disk's snapshots of the in-image methods, records merged with the image.
    fn records(&self, disk: &Disk, vm: Option<&mut Vm>) -> Result<Vec<DiskSnapshotRecord>> {
        let inside = internal::snapshots(disk, vm)?;
        Ok(
            snap_disk::listing::merged_with_sizes(disk, inside.as_deref())?
                .into_iter()
                .filter(|r| IN_IMAGE.contains(&r.method.as_str()))
                .collect(),
        )
    }

    /// Removes these snapshots of disk `set`; what each freed, as far as known.
    pub fn remove(
        &self,
        set: &str,
        entries: &[&Entry],
        catalog: Option<&Catalog>,
    ) -> Result<Vec<u64>> {
        let Some((disk, mut vm)) = self.open(set)? else {
            return Ok(vec![0; entries.len()]);
        };
        let recs = self.records(&disk, vm.as_mut())?;
        let mut freed = Vec::new();
        for e in entries {
            if let Some(rec) = recs.iter().find(|r| r.name == e.id) {
                snap_disk::manage::delete_one(&disk, rec, vm.as_mut())?;
                crate::target::forget(catalog, Some(&self.ctx.store), "disk-snapshot", set, &e.id);
                let pin = disk.dir.root.join(format!("{}{PIN}", e.id));
                let _ = std::fs::remove_file(pin);
            }
            freed.push(e.bytes.unwrap_or(0));
        }
        Ok(freed)
    }

    /// Settles what an interrupted snap-disk or prune left in any image.
    pub fn finish_interrupted(&self) -> Result<u64> {
        for name in disk_names(&self.ctx.store)? {
            if let Some((disk, mut vm)) = self.open(&name)? {
                snap_disk::changing::recover(&disk, vm.as_mut(), &self.report)?;
            }
        }
        Ok(0)
    }
}

fn is_foreign(r: &DiskSnapshotRecord) -> bool {
    r.extra.get("state").and_then(|v| v.as_str()) == Some("image-only")
}

/// The pin files in the disk's folder.
fn pins(disk: &Disk) -> HashSet<String> {
    std::fs::read_dir(&disk.dir.root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(PIN))
        .collect()
}

fn entry(r: DiskSnapshotRecord, pinned: bool) -> Entry {
    let missing = r.extra.get("state").and_then(|v| v.as_str()) == Some("missing");
    let bytes = match r.method.as_str() {
        "overlay" => Some(r.stored_bytes),
        _ => r.extra.get("owned_bytes").and_then(|v| v.as_u64()),
    };
    Entry {
        id: r.name,
        time: r.created,
        bytes,
        objects: Vec::new(),
        broken: missing.then(|| "its snapshot is gone from the image".to_string()),
        unreadable: None,
        info: Some(Info {
            base: None,
            tags: r.tags,
            chain: None,
        }),
        pinned,
    }
}
