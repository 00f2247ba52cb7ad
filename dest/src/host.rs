//! The machine a lock is taken on: its clocks, who this process is, and
//! whether a process of this machine still runs. Locks judge other
//! machines' locks through it; tests and the fault harness give their own
//! (several simulated machines in one process).

use std::time::Duration;

use chrono::{DateTime, Utc};

use snap_shared::hash::Sha256Digest;

/// How long a lock may go unrefreshed before it is stale, unless its holder
/// promised otherwise (restic's 30 minutes).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// The times a holder keeps to.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub stale_after: Duration,
}

impl Timing {
    /// [`STALE_AFTER`], or `SNAP_LOCK_STALE_SECS` (for tests that need a lock
    /// to go stale in seconds: it changes only what this process promises,
    /// never how it judges other machines' locks).
    pub fn from_env() -> Timing {
        let secs = std::env::var("SNAP_LOCK_STALE_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s >= 3);
        Timing {
            stale_after: secs.map_or(STALE_AFTER, Duration::from_secs),
        }
    }

    pub(crate) fn refresh_every(&self) -> Duration {
        self.stale_after / 6
    }

    /// How long after its last confirmed refresh a holder still acts.
    pub(crate) fn live_for(&self) -> Duration {
        self.stale_after * 2 / 3
    }
}

/// What a lock needs of the machine it runs on: its wall clock, a clock that
/// counts time spent stopped or suspended (CLOCK_BOOTTIME, for how long ago
/// the last refresh was confirmed), who this process is, and whether a
/// process of this machine still runs. Tests and the fault harness give
/// their own (several simulated machines in one process).
pub trait Host: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
    /// Seconds on a clock that never stops, from any origin.
    fn mark(&self) -> f64;
    /// This process.
    fn me(&self) -> Me {
        this_process()
    }
    /// Whether the process `pid`, started at `start`, runs on this machine.
    fn alive(&self, pid: u32, start: u64) -> bool {
        process_start(pid) == Some(start)
    }
    /// What this process promises about its refreshes.
    fn timing(&self) -> Timing {
        Timing::from_env()
    }
}

/// The machine snap runs on.
#[derive(Debug, Default)]
pub struct SystemHost;

impl Host for SystemHost {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn mark(&self) -> f64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    }
}

/// Who a process is, for its lock and for judging others'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub host: String,
    pub user: String,
    /// A hash of /etc/machine-id ("" when there is none: then no lock is
    /// ever taken for this machine's own).
    pub machine: String,
    pub boot: String,
    pub pid: u32,
    pub start: u64,
}

fn this_process() -> Me {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let machine = read("/etc/machine-id");
    Me {
        host: snap_shared::hostname(),
        user: snap_shared::username(),
        machine: if machine.is_empty() {
            String::new()
        } else {
            Sha256Digest::of(machine.as_bytes()).to_hex()[..16].to_string()
        },
        boot: read("/proc/sys/kernel/random/boot_id"),
        pid: std::process::id(),
        start: process_start(std::process::id()).unwrap_or(0),
    }
}

/// A process's start time (field 22 of /proc/PID/stat), if it runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's start time is read past a command name with spaces.
    #[test]
    fn start_time_of_this_process() {
        let me = process_start(std::process::id()).unwrap();
        assert!(me > 0);
        assert_eq!(process_start(u32::MAX), None);
    }
}
