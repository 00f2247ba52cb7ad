//! Point-in-time snapshots of a disk that a QEMU process holds, through QMP.
//!
//! Reading an image file while a VM writes to it gives a state the disk
//! never had (block 10 from before a write, block 900 from after). Here one
//! QMP `transaction` fixes the point in time: it starts the next dirty
//! bitmap, freezes the previous one, and starts a fleecing backup job
//! (`blockdev-backup sync=none`) into a temporary qcow2 overlay, which keeps
//! the old contents of every block the guest overwrites from then on. The
//! overlay is read through an NBD export, with two metadata contexts:
//! `base:allocation` (what is data at all) and the previous bitmap (what
//! changed since the parent snapshot). Only changed blocks are read; the
//! others are the parent's.
//!
//! The previous bitmap goes only once the new snapshot's record is
//! published ([`Bitmaps::keep_new`]); a snapshot that fails merges the new
//! bitmap back into the previous one ([`Bitmaps::keep_old`]), so no change is
//! ever forgotten. A run killed half way leaves QEMU with our fleecing nodes
//! and two bitmaps: the next run removes the nodes and merges the bitmaps
//! before it starts.
//!
//! `discovery` finds the node and bitmaps, `planning` decides what to read,
//! `session` runs one snapshot, `monitor` cleans up after a killed one,
//! `signals` keeps a signal from cutting the cleanup short.

mod discovery;
pub(crate) mod monitor;
mod planning;
mod session;
mod signals;

pub use discovery::{APPLICATION, Endpoints, OURS, POINT_IN_TIME, find_node};
pub use monitor::Bitmaps;
pub(crate) use monitor::{Monitor, qmp_err};
pub use planning::Parent;
pub(crate) use planning::{Export, Since, plan_export};
pub use session::{Start, Taken, start};
pub use signals::{SignalGuard, Stop, interrupted};
