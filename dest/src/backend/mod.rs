//! The kinds of destination, one file each. Every backend owns its arms of
//! the operations a destination has (head, get, read_ranges, read_tail,
//! put, delete, delete_many, list, …); [`crate::Dest`] holds one and
//! delegates to it, one line per kind.

pub(crate) mod bucket;
pub(crate) mod folder;
pub mod memory;
pub(crate) mod rclone;
pub(crate) mod sftp;

use std::sync::Arc;

/// What a destination holds under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// The sha256 kept as object metadata, where the service keeps metadata.
    pub sha256: Option<String>,
}

impl Meta {
    /// A size alone (a file system keeps no sha256 beside a file).
    pub(crate) fn sized(size: u64) -> Meta {
        Meta { size, sha256: None }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Folder(folder::Folder),
    Bucket(bucket::Bucket),
    /// An SFTP server.
    Remote(sftp::Remote),
    /// An rclone remote, through `rclone rcd`.
    Rclone(Arc<rclone::Rclone>),
}
