//! snap-read: reading and restoring what snap keeps. Snapshots, archives
//! (with their chains, through age, by seekable frames) and any tar, from the
//! store or any destination: listing, diffs, verify, cat, and restores that
//! never write outside their target. snap-restore is its command line;
//! snap-web's page uses it too.

pub mod annotate;
pub mod attrs;
pub mod cat;
mod cat_runs;
pub mod chain;
pub mod damage;
pub mod datename;
pub mod disk;
pub mod holes;
pub mod homemap;
pub mod import;
pub mod indexes;
pub mod loc;
pub mod members;
pub mod outcome;
pub mod owners;
pub mod preview;
pub mod refused;
pub mod restore;
pub mod seeking;
pub mod sidecars;
pub mod source;
pub mod stream;
pub mod tarfmt;
pub mod target;
pub mod trust;
pub use snap_shared::verified;
pub mod verify;
pub mod verify_run;
pub mod view;
pub mod writers;

/// The name on every message (snap-restore's: this is its library).
pub const TOOL: &str = "snap-restore";
