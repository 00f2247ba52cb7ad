//! Judging the other locks a listing found: how alive each holder is, what
//! a tool taking a lock does about it, and whether this machine's clock is
//! close enough to the destination's to judge at all.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use snap_shared::error::{Error, Result};
use snap_shared::hash::Sha256Digest;

use super::info::{BREAK_AFTER, LockInfo, LockOptions, MAX_SKEW, Mode, human_age};
use crate::dest::Dest;
use crate::host::{Host, Me, Timing};

/// Another lock, as the listing found it.
pub(super) struct Seen {
    pub(super) info: LockInfo,
    /// Since its last refresh, by the destination's clock.
    pub(super) age: Duration,
}

/// What to do about another lock.
pub(super) enum Verdict {
    Ignore,
    Remove(String),
    Conflict(String, Option<String>),
}

/// Decides about one other lock, for a tool taking `mode`.
pub(super) fn verdict(mode: Mode, o: &Seen, opts: &LockOptions, host: &dyn Host) -> Verdict {
    let who = o.info.describe();
    let since = human_age(o.age);
    let stale_after = Duration::from_secs(o.info.stale_after);
    match o.info.liveness(o.age, host) {
        Liveness::Dead(why) => Verdict::Remove(format!("removed the lock of {who}: {why}")),
        Liveness::Stopped if opts.break_others => Verdict::Conflict(
            format!("{who} is alive on this machine; its lock is not removed"),
            Some(format!("end it first (kill {})", o.info.pid)),
        ),
        _ if opts.break_others => Verdict::Remove(format!(
            "removed the lock of {who} (refreshed {since} ago), as --break-lock asks"
        )),
        Liveness::Stopped if (mode, o.info.mode) == (Mode::Shared, Mode::Shared) => Verdict::Ignore,
        Liveness::Stopped => Verdict::Conflict(
            format!("{who} is alive but has not refreshed its lock for {since} (stopped?)"),
            Some(format!(
                "let it go on (kill -CONT {0}) or end it (kill {0}), then run again",
                o.info.pid
            )),
        ),
        Liveness::Live => match (mode, o.info.mode) {
            (Mode::Shared, Mode::Shared) => Verdict::Ignore,
            _ => Verdict::Conflict(
                format!("{who} holds a lock there (refreshed {since} ago)"),
                Some("try again when it is done".into()),
            ),
        },
        Liveness::Stale => match (mode, o.info.mode) {
            (_, Mode::Exclusive) => Verdict::Remove(format!(
                "removed the stale lock of {who}: not refreshed for {since} (stale after {})",
                human_age(stale_after)
            )),
            (Mode::Shared, Mode::Shared) => Verdict::Ignore,
            (Mode::Exclusive, Mode::Shared) if o.age > BREAK_AFTER => Verdict::Remove(format!(
                "removed the lock of {who}: not refreshed for {since}"
            )),
            (Mode::Exclusive, Mode::Shared) => Verdict::Conflict(
                format!(
                    "{who} has not refreshed its lock for {since} (stale after {}); it may be stopped or cut off and could still publish",
                    human_age(stale_after)
                ),
                Some(format!(
                    "prunes wait for it until {} after its last refresh; if that push is gone for good, run snap-prune --break-lock",
                    human_age(BREAK_AFTER)
                )),
            ),
        },
    }
}

/// How alive another lock's holder is.
enum Liveness {
    Live,
    /// On this machine, alive, but not refreshing: stopped or hung.
    Stopped,
    Stale,
    Dead(String),
}

impl LockInfo {
    pub(super) fn mine(
        mode: Mode,
        tool: &str,
        timing: Timing,
        me: &Me,
        now: DateTime<Utc>,
    ) -> LockInfo {
        LockInfo {
            schema: snap_shared::record::SCHEMA.into(),
            kind: "lock".into(),
            mode,
            tool: format!("{tool} {}", env!("CARGO_PKG_VERSION")),
            host: me.host.clone(),
            machine: me.machine.clone(),
            boot: me.boot.clone(),
            pid: me.pid,
            start: me.start,
            user: me.user.clone(),
            created: now,
            refreshed: now,
            stale_after: timing.stale_after.as_secs(),
        }
    }

    pub(super) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a lock serializes")
    }

    /// A lock object's bytes; the error says why they are not a snap lock.
    pub fn parse(bytes: &[u8]) -> std::result::Result<LockInfo, String> {
        let info: LockInfo = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if info.kind != "lock" || !info.schema.starts_with("snap/") {
            return Err(format!("kind {:?}, schema {:?}", info.kind, info.schema));
        }
        Ok(info)
    }

    /// `snap-push 0.1.0 (pid 123 on laptop, user me)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {} on {}, user {})",
            self.tool, self.pid, self.host, self.user
        )
    }

    fn liveness(&self, age: Duration, host: &dyn Host) -> Liveness {
        let me = host.me();
        if !me.machine.is_empty() && self.machine == me.machine {
            if self.boot != me.boot {
                return Liveness::Dead("this machine has rebooted since".into());
            }
            if !host.alive(self.pid, self.start) {
                return Liveness::Dead(format!("process {} is gone", self.pid));
            }
            if age > Duration::from_secs(self.stale_after) {
                return Liveness::Stopped;
            }
            return Liveness::Live;
        }
        if age > Duration::from_secs(self.stale_after) {
            Liveness::Stale
        } else {
            Liveness::Live
        }
    }
}

/// A lock's file name: who holds it, and a random part.
pub(super) fn lock_name(info: &LockInfo) -> String {
    let host: String = info
        .host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let noise = format!(
        "{:?}{}{:?}",
        SystemTime::now(),
        info.pid,
        std::thread::current().id()
    );
    let rand = &Sha256Digest::of(noise.as_bytes()).to_hex()[..12];
    format!("{host}-{}-{rand}.json", info.pid)
}

/// Whether this process's clock is libfaketime's (`LD_PRELOAD` has it and
/// `FAKETIME` is set): then the file system's times are the kernel's and the
/// process's are faked on purpose (a simulated month of runs), so the two
/// clocks cannot be compared and the skew check is left out. Nothing else
/// changes: locks, their refreshes and their ages are all this clock's.
fn under_faketime() -> bool {
    let preload = std::env::var_os("LD_PRELOAD").unwrap_or_default();
    std::env::var_os("FAKETIME").is_some() && preload.to_string_lossy().contains("libfaketime")
}

/// Refuses a machine whose clock is too far from the destination's: the
/// lock's modified time (the destination's clock) must fall between this
/// machine's clock before the write and after the listing, give or take
/// [`MAX_SKEW`] (a slow request widens the window, never trips it).
pub(super) fn check_skew(
    dest: &Dest,
    before: DateTime<Utc>,
    after: DateTime<Utc>,
    theirs: SystemTime,
) -> Result<()> {
    if under_faketime() {
        return Ok(());
    }
    let theirs = DateTime::<Utc>::from(theirs);
    let bound = chrono::Duration::from_std(MAX_SKEW).expect("a few minutes");
    let (skew, way) = if theirs < before - bound {
        ((before - theirs).num_seconds(), "ahead of")
    } else if theirs > after + bound {
        ((theirs - after).num_seconds(), "behind")
    } else {
        return Ok(());
    };
    Err(Error::config(
        format!("destination {}", dest.name),
        format!(
            "this machine's clock is {} {way} the destination's (more than {} apart)",
            human_age(Duration::from_secs(skew.unsigned_abs())),
            human_age(MAX_SKEW)
        ),
    )
    .with_hint("set the clock right (timedatectl set-ntp true, or chrony), then run again; nothing was changed"))
}
