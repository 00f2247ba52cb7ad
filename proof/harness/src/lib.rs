//! snap-harness: proves that machines sharing a destination lose nothing.
//!
//! Three simulated pushers (incremental archive chains, `blocks` disk
//! snapshots sharing blocks) and a pruner run the real snap-push and
//! snap-prune, in this process, against one in-memory destination
//! (`memory://`, see snap-dest's `memory` module). Every destination
//! operation goes through the scheduler (`sched`), which orders all
//! machines' operations by a seed and moves simulated time, with pauses
//! long enough for locks to go stale. A run can crash one process after or
//! before any operation; the invariants (`check`) are read after every
//! change, and after the next runs of every machine. Every third prune
//! breaks the pushers' live locks (`--break-lock`) mid-upload; no process
//! may leave a record it put after its lock was removed (`fences`).

pub mod check;
pub mod fences;
pub mod scenario;
pub mod sched;
pub mod sim_store;
pub mod world;
