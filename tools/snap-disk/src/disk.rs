//! Which disk a command means, and the checks every command shares.
//!
//! A DISK operand is an image file (its disk is named after the file, or by
//! `--disk`) or the name of a disk the store knows (its image comes from
//! `disk.json`). A disk name belongs to one image: a second image with the
//! same file name needs its own `--disk`, so two VMs' snapshots never mix.

use std::path::{Path, PathBuf};

use snap_shared::catalog::Catalog;
use snap_shared::config::LoadedConfig;
use snap_shared::error::{Error, Exit, Result};
use snap_shared::id::check_name;
use snap_shared::lock::StoreLock;
use snap_shared::store::{self, Store};

use crate::cli::{Cli, TOOL};
use snap_shared::disks::{DiskDir, DiskInfo};

/// What every command works in.
pub struct Context {
    pub store: Store,
    /// The config's disk entries (their QEMU sockets).
    pub disks: Vec<snap_shared::config::DiskEntry>,
    /// The config, for its destinations.
    pub config: Option<LoadedConfig>,
}

impl Context {
    /// This machine's signing key (made on first use, and said so).
    pub fn signer(&self, report: &snap_cli::Reporter) -> Result<snap_shared::sign::Signer> {
        let signing = self.config.as_ref().and_then(|c| c.config.signing.as_ref());
        let (signer, made) = snap_shared::sign::machine_signer(signing)?;
        if let Some(made) = made {
            report.note(&made.describe("disk snapshots"));
        }
        Ok(signer)
    }

    pub fn open(cli: &Cli) -> Result<Context> {
        let loaded = LoadedConfig::load_optional(cli.config.as_deref())?;
        let store = Store::new(store::locate(
            cli.store.as_deref(),
            LoadedConfig::store(loaded.as_ref()),
        ));
        Ok(Context::new(store, loaded))
    }

    /// The context of another tool that works on the store's disks (snap-prune).
    pub fn new(store: Store, config: Option<LoadedConfig>) -> Context {
        let disks = config
            .as_ref()
            .map(|l| l.config.disks.clone())
            .unwrap_or_default();
        Context {
            store,
            disks,
            config,
        }
    }

    /// Runs `change` on the store's catalog. The catalog is an index of the
    /// records, never the only copy: if it cannot be changed it is marked
    /// for a rebuild from the records on its next open.
    pub fn catalog(&self, change: impl FnOnce(&Catalog) -> Result<()>) {
        let done = Catalog::open_to_change(&self.store).and_then(|(c, _)| change(&c));
        if done.is_err() {
            Catalog::invalidate(&self.store);
        }
    }

    /// Takes the store's writer lock (creating the store when `create`).
    pub fn lock(&self, create: bool) -> Result<StoreLock> {
        if create {
            snap_shared::fsutil::create_private_dir(&self.store.root)
                .map_err(|e| Error::io(&self.store.root, e).with_exit(Exit::CantCreate))?;
        } else if !self.store.root.is_dir() {
            return Err(self.no_store());
        }
        StoreLock::acquire(&self.store.lock_path(), TOOL)
    }

    fn no_store(&self) -> Error {
        Error::new(
            Exit::NoInput,
            format!("store {}", self.store.root.display()),
            "not found",
        )
        .with_hint("`snap-disk create IMAGE` makes the first disk snapshot")
    }

    /// The disk an operand names, for commands that also take an image file
    /// with no snapshots in the store yet (its internal snapshots were made
    /// by qemu-img, savevm or virsh): it is then named as create would name it.
    pub fn disk(&self, operand: &str) -> Result<Disk> {
        let as_path = Path::new(operand);
        if as_path.is_file() && self.disk_of_image(&absolute(as_path))?.is_none() {
            return self.for_create(as_path, None);
        }
        self.existing(operand)
    }

    /// The disk an operand names, for commands on existing snapshots.
    pub fn existing(&self, operand: &str) -> Result<Disk> {
        let as_path = Path::new(operand);
        if as_path.is_file() {
            let image = absolute(as_path);
            return self.disk_of_image(&image)?.ok_or_else(|| {
                Error::new(
                    Exit::NoInput,
                    operand.to_string(),
                    "has no snapshots in the store",
                )
                .with_hint(format!("the store is {}", self.store.root.display()))
            });
        }
        if check_name(operand).is_err() || operand.contains('/') {
            return Err(Error::new(
                Exit::NoInput,
                operand.to_string(),
                "no such image file",
            ));
        }
        let dir = DiskDir::new(&self.store, operand);
        match dir.info()? {
            Some(info) => Ok(Disk {
                image: info.image.clone(),
                dir,
                info: Some(info),
            }),
            None => Err(Error::new(
                Exit::NoInput,
                operand.to_string(),
                "neither an image file nor a disk in the store",
            )
            .with_hint("`snap-disk list` shows the disks in the store")),
        }
    }

    /// The disk of an image among the store's disks, by its recorded image path.
    fn disk_of_image(&self, image: &Path) -> Result<Option<Disk>> {
        for name in snap_shared::disks::disk_names(&self.store)? {
            let dir = DiskDir::new(&self.store, &name);
            if let Some(info) = dir.info()?
                && same_file(&info.image, image)
            {
                return Ok(Some(Disk {
                    image: info.image.clone(),
                    dir,
                    info: Some(info),
                }));
            }
        }
        Ok(None)
    }

    /// The disk a new snapshot of `image` goes to.
    pub fn for_create(&self, image: &Path, name: Option<&str>) -> Result<Disk> {
        let image = absolute(image);
        if name.is_none()
            && let Some(d) = self.disk_of_image(&image)?
        {
            return Ok(d);
        }
        let name = match name {
            Some(n) => n.to_string(),
            None => default_disk_name(&image)?,
        };
        check_name(&name).map_err(|e| Error::usage(format!("disk name {name:?}"), e))?;
        let dir = DiskDir::new(&self.store, &name);
        let info = dir.info()?;
        if let Some(i) = &info
            && !same_file(&i.image, &image)
        {
            return Err(Error::usage(
                format!("disk {name}"),
                format!("already holds snapshots of {}", i.image.display()),
            )
            .with_hint("give this image its own name with --disk NAME"));
        }
        Ok(Disk { image, dir, info })
    }
}

/// A disk: its folder in the store, its image, and its settings once it has any.
pub struct Disk {
    pub dir: DiskDir,
    pub image: PathBuf,
    pub info: Option<DiskInfo>,
}

impl Disk {
    /// The disk's settings, written at its first snapshot, or at the first
    /// change snap-disk makes to an image it did not know (a restore or
    /// delete of a snapshot qemu-img or savevm made): from then on the
    /// store knows the disk by name.
    pub fn ensure_info(&self, block_size: u64, encrypted: bool) -> Result<DiskInfo> {
        if let Some(i) = &self.info {
            return Ok(i.clone());
        }
        let info = DiskInfo {
            image: self.image.clone(),
            block_size,
            encrypted,
        };
        self.dir.write_info(&info)?;
        Ok(info)
    }

    /// Fails with exit 75, naming them, when processes have the image open.
    pub fn refuse_if_in_use(&self, doing: &str) -> Result<()> {
        snap_shared::holders::refuse_if_held(&self.image, doing)
    }

    /// Fails when an in-place restore into the image was interrupted: the image
    /// is then half old, half restored, and only finishing the restore fixes it.
    pub fn refuse_if_restoring(&self) -> Result<()> {
        let marker = self.dir.restoring_marker();
        let Ok(text) = std::fs::read_to_string(&marker) else {
            return Ok(());
        };
        Err(Error::new(
            Exit::Data,
            self.image.display().to_string(),
            format!(
                "a restore of snapshot {} into it was interrupted",
                text.trim()
            ),
        )
        .with_hint(format!(
            "finish it with `snap-disk restore {} {}`",
            self.dir.name,
            text.trim()
        )))
    }
}

/// The image's file name without its extension.
fn default_disk_name(image: &Path) -> Result<String> {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    check_name(&stem).map(|()| stem.clone()).map_err(|e| {
        Error::usage(
            image.display().to_string(),
            format!("its file name makes no disk name: {e}"),
        )
        .with_hint("name the disk with --disk NAME")
    })
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or(p.to_path_buf()))
}

/// True when two paths name the same file (or the same path, if either is gone).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}
