//! The disk-snapshot record every method starts from: who made it, when,
//! from which image.

use chrono::Utc;
use serde_json::Value;

use snap_shared::record::{DiskSnapshotRecord, Extra, SCHEMA};

use crate::cli::Method;
use crate::disk::Disk;
use crate::image::ImageInfo;

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
pub(crate) fn created_by() -> Value {
    snap_shared::created_by("snap-disk", env!("CARGO_PKG_VERSION"))
}
