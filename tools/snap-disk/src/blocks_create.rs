//! A blocks snapshot: the disk's fixed settings checked against the flags,
//! the image read (as a file, a VHDX chain, or through QEMU or libvirt) into
//! the block store and a new map, flushed before anything refers to it, and
//! the record that names them.

use std::fs;

use serde_json::Value;

use snap_cli::Reporter;
use snap_shared::blockstore::BlockStore;
use snap_shared::crypt::{self, Encrypt};
use snap_shared::disks::DiskInfo;
use snap_shared::error::{Error, Result};
use snap_shared::fsutil;
use snap_shared::record::DiskSnapshotRecord;
use snap_shared::size::human_bytes;

use crate::cli::{CreateArgs, Method};
use crate::create::{DEFAULT_BLOCK_SIZE, parent_of};
use crate::disk::Disk;
use crate::image::ImageInfo;
use crate::record::base_record;
use crate::source::{
    MapTo, Reading, Settle, plain_siblings, read_direct, read_file, read_live, read_vhdx_chain,
};
use crate::{daemon, live};

/// The recipients given on the command line, if any.
fn encryption(args: &CreateArgs) -> Result<Option<Encrypt>> {
    let mut rs = crypt::recipients(&args.recipients, &args.recipients_files)?;
    for f in &args.identities_as_recipients {
        rs.extend(crypt::recipients_of_identity_file(f)?);
    }
    Ok((!rs.is_empty()).then_some(Encrypt::Recipients(rs)))
}

/// Checks the flags against the disk's fixed settings.
fn blocks_settings(disk: &Disk, args: &CreateArgs, encrypted: bool) -> Result<DiskInfo> {
    let Some(info) = &disk.info else {
        return disk.ensure_info(args.block_size.unwrap_or(DEFAULT_BLOCK_SIZE), encrypted);
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

pub(crate) fn create_blocks(
    snap_store: &snap_shared::store::Store,
    disk: &Disk,
    info: &ImageInfo,
    name: &str,
    args: &CreateArgs,
    reading: Reading,
    report: &Reporter,
) -> Result<(DiskSnapshotRecord, Settle)> {
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
            Reading::Direct(extents) => read_direct(disk, info, extents.clone(), &to)?,
            Reading::Live(ends) => read_live(disk, ends, None, &to)?,
            Reading::Domain(d) => {
                crate::domains::read(disk, d, args.freeze || d.freeze, info, &to)?
            }
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
    let consistency = match (&read.through, in_use) {
        (Some(t), _) => t.consistency,
        (None, true) => "none",
        (None, false) => "stopped",
    };
    x.insert("consistency".into(), Value::from(consistency));
    if let Some(t) = &read.through {
        for (k, v) in &t.names {
            x.insert((*k).into(), Value::from(v.clone()));
        }
        x.insert("full_read".into(), Value::from(t.full_read));
        if let Some(f) = t.frozen {
            x.insert("frozen_ms".into(), Value::from(f.as_secs_f64() * 1000.0));
        }
    }
    Ok((rec, read.settle))
}

/// The marker that blocks were written but not flushed is still there: a
/// create died, and blocks it wrote may be torn (after a power cut). Blocks
/// no published map refers to are removed before new snapshots may reuse them.
fn finish_crashed_create(disk: &Disk, report: &Reporter) -> Result<()> {
    let marker = disk.dir.unsynced_marker();
    if !marker.exists() {
        return Ok(());
    }
    let (n, bytes) = crate::garbage::collect_garbage(&disk.dir)?;
    if n > 0 {
        report.note(&format!(
            "removed {n} blocks ({}) left by an interrupted snapshot",
            human_bytes(bytes)
        ));
    }
    fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))
}
