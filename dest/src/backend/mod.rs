//! The kinds of destination, one file each. Every backend owns its arms of
//! the operations a destination has (head, get, read_ranges, read_tail,
//! put, delete, delete_many, list, …); `Dest` (dest.rs) holds one and
//! delegates to it, one line per kind.

pub(crate) mod bucket;
pub(crate) mod folder;
pub mod memory;
pub(crate) mod meta;
pub(crate) mod rclone;
pub(crate) mod sftp;

use std::sync::Arc;

pub use meta::Meta;

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Folder(folder::Folder),
    Bucket(bucket::Bucket),
    /// An SFTP server.
    Remote(sftp::Remote),
    /// An rclone remote, through `rclone rcd`.
    Rclone(Arc<rclone::Rclone>),
}
