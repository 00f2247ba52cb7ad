//! What a read error of an archive means to the user: damaged data (exit
//! 65, and for one file of a `--path` restore, that file only), a failing
//! disk (74), or a destination gone mid-read (69). The readers of archives
//! (streams, frames, restores, `cat`) all decide it here.

use std::io;

use snap_shared::error::{Error, Exit};

use crate::loc::Named;

/// An error reading an archive's content: damaged data (exit 65), unless the
/// disk failed (74) or the destination went away mid-read (69).
pub fn corrupt(what: &(impl Named + ?Sized), e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::ConnectionAborted {
        return Error::new(Exit::Unavailable, what.named(), e);
    }
    let data = matches!(
        e.kind(),
        io::ErrorKind::InvalidData
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::Other
            | io::ErrorKind::InvalidInput
    );
    let err = Error::io_ctx(what.named(), e);
    if data { err.with_exit(Exit::Data) } else { err }
}

/// Whether a read error means damaged data, not a failing disk or network.
pub fn is_damage(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    )
}
