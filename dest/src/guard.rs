//! What a destination consults before it removes or publishes anything:
//! the lock this process holds there (the locks module's `Fence`). It is a
//! trait so that an opened destination can carry the lock taken through it
//! without destinations and locks depending on each other.

use snap_shared::error::Result;

/// A held lock's promise that it is still this process's.
pub trait Guard: Send + Sync + std::fmt::Debug {
    /// Fails unless the lock is certainly still this process's: not removed,
    /// and refreshed recently enough that no other machine can have judged
    /// it stale (it refreshes first when its last refresh is old).
    fn check(&self) -> Result<()>;
    /// As [`Guard::check`], but asked of the destination itself, whatever
    /// the last refresh; a destination that cannot be reached is an error.
    fn confirm(&self) -> Result<()>;
}
