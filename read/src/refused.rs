//! Why an entry was not restored: refused (an escape, something in the
//! way), impossible here, or an I/O error of the target or of the source.

use std::io::{self};

use snap_shared::hash::Sha256Digest;

/// Why an entry was not restored; the caller names the path.
#[derive(Debug)]
pub enum Refused {
    /// Something else is there and `--overwrite` was not given.
    Exists,
    /// The content does not match the index; it was kept as `NAME.snap-damaged`.
    Mismatch {
        got: Sha256Digest,
    },
    /// A path component is a symlink or not a folder: writing there would leave the target.
    Escape(String),
    /// The archive holds something that cannot be made (the reason says what).
    Cannot(String),
    /// Reading the content failed: the archive is damaged or cut short.
    Source(io::Error),
    /// The entry is there, but an attribute of it could not be set (the
    /// line says which and why).
    Attribute(String),
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        Refused::Io(e)
    }
}

impl From<rustix::io::Errno> for Refused {
    fn from(e: rustix::io::Errno) -> Self {
        Refused::Io(e.into())
    }
}
