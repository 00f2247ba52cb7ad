//! What a lock says: its object's fields, its kind, how to take it, and
//! the times every machine judges locks by.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use snap_shared::size::human_duration as human_age;

/// Where locks live, relative to the destination's root. Set names never
/// start with '.', so no set can collide with it, and `ls` of a drive shows
/// only the user's sets.
pub const LOCKS: &str = ".snap/locks";

/// How long a prune waits for a stale shared lock of another machine before
/// it removes it: that push may only be stopped (a suspended laptop, a
/// SIGSTOP) and could still publish.
pub const BREAK_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The most a machine's clock may differ from the destination's.
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Which kind of lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Pushes: any number at once.
    Shared,
    /// Prunes: nothing else at the same time.
    Exclusive,
}

/// What a lock object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub schema: String,
    pub kind: String,
    pub mode: Mode,
    /// The tool and its version.
    pub tool: String,
    pub host: String,
    /// A hash of /etc/machine-id: which machine, even when two share a host name.
    pub machine: String,
    /// /proc/sys/kernel/random/boot_id: a different one means the holder's machine rebooted.
    pub boot: String,
    pub pid: u32,
    /// The holder's start time (clock ticks since boot), so a reused pid is not taken for it.
    pub start: u64,
    pub user: String,
    /// The holder's clock when it took the lock and when it last refreshed it.
    pub created: DateTime<Utc>,
    pub refreshed: DateTime<Utc>,
    /// The holder's promise: it refreshes well within this many seconds.
    pub stale_after: u64,
}

/// How to take a lock.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// Remove every other lock that is not provably alive on this machine,
    /// and unreadable ones (`--break-lock`: the user says their holders are gone).
    pub break_others: bool,
}
