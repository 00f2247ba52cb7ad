//! Locks that live at the destination, so that every machine sharing it
//! sees them: pushes take a shared lock, prunes an exclusive one.
//!
//! The protocol is restic's (docs/destinations.md, "Many machines, one
//! destination"): a tool writes its lock object under `.snap/locks/` with a
//! create-only write, then lists the locks; if a lock it conflicts with is
//! there, it removes its own and stops (exit 75, naming the holder). Two
//! tools that start at once both see each other and both stop, so at most
//! one can win and no wrong one does. A holder refreshes its lock every
//! `stale_after / 6` with a conditional write that fails if the lock was
//! removed, and publishes nothing once its last confirmed refresh is older
//! than `2/3 stale_after`: a lock someone broke is never brought back, and a
//! holder that was stopped or cut off stops before it can do harm.
//!
//! Ages are read off the destination's own clock (each object's modified
//! time, compared with the time of the lock just written), so the machines'
//! clocks need not agree; a machine whose clock is more than [`MAX_SKEW`]
//! off the destination's is refused. A lock is dead when it belongs to this
//! machine and its process is gone (or the machine rebooted since), stale
//! when its holder has not refreshed it for the `stale_after` it promised.
//! Pushes ignore shared locks and step over stale exclusive ones (a killed
//! prune never blocks backups for long); a prune removes dead and stale
//! exclusive locks, but waits for a stale *shared* lock of another machine
//! until [`BREAK_AFTER`], because that push may only be stopped and still
//! publish a record naming what the prune would remove.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use snap_shared::error::{Error, Exit, Result};
use snap_shared::hash::Sha256Digest;

use crate::dest::Dest;

use crate::conditional::{Version, ignores_conditions};

mod info;
mod judge;

use crate::guard::Guard;
use crate::host::{STALE_AFTER, Timing};
pub use info::{BREAK_AFTER, LOCKS, LockInfo, LockOptions, MAX_SKEW, Mode, human_age};
use judge::{Seen, Verdict, check_skew, lock_name, verdict};

/// Why a lock is lost when the destination no longer has it as written.
const REMOVED: &str = "it was removed or replaced at the destination (by a prune that judged it stale, or --break-lock)";

/// A lock held at a destination, refreshed in the background until dropped
/// (then removed).
#[derive(Debug)]
pub struct Held {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
    /// Removed already (or found lost): nothing left to do when dropped.
    released: bool,
    /// What taking it did that the user should hear (locks removed).
    pub notes: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    dest: Dest,
    key: String,
    timing: Timing,
    state: Mutex<State>,
    /// Held across each request about the lock (a refresh, a confirming
    /// read), from reading the version to recording the answer: the
    /// refresh thread and a publishing thread must never both send the
    /// version one of them is about to replace (the second would be
    /// refused as if another machine had taken the lock).
    io: Mutex<()>,
    stop: (Mutex<bool>, Condvar),
}

#[derive(Debug)]
struct State {
    info: LockInfo,
    version: Version,
    /// The clock mark when the last refresh that succeeded was sent.
    confirmed: f64,
    /// Why the lock is no longer ours, once it is not.
    lost: Option<String>,
}

impl Dest {
    /// Takes a lock of `mode` at this destination for `tool`.
    pub fn lock(&self, mode: Mode, tool: &str, opts: &LockOptions) -> Result<Held> {
        let timing = self.host.timing();
        let info = LockInfo::mine(mode, tool, timing, &self.host.me(), self.host.now());
        let key = format!("{LOCKS}/{}", lock_name(&info));
        let bytes = Bytes::from(info.to_json());
        let sha = Sha256Digest::of(&bytes).to_hex();
        let mark = self.host.mark();
        let version = match self.put_new(&key, bytes.clone(), &sha)? {
            Some(v) => Some(v),
            None => self.holding(&key, &bytes)?,
        };
        let Some(version) = version else {
            return Err(Error::internal(
                self.show(&key),
                "a new lock's name is taken",
            ));
        };
        let held = Held::start(self, key, info, version, mark, timing);
        // A bucket may ignore If-None-Match: a second create-only write of
        // the same lock must be refused. A folder's and an SFTP server's
        // create-only is this process's own (link(2), or look then rename),
        // so there the test would cost a round trip and prove nothing.
        if self.is_bucket() && self.put_new(&held.inner.key, bytes, &sha)?.is_some() {
            return Err(ignores_conditions(self, &held.inner.key));
        }
        held.admit(opts)
    }

    /// Takes a lock (as [`Dest::lock`]) and returns this destination fenced
    /// by it, with the lock to keep for as long as the work goes on.
    pub fn hold(&self, mode: Mode, tool: &str, opts: &LockOptions) -> Result<(Dest, Held)> {
        let held = self.lock(mode, tool, opts)?;
        Ok((self.clone().fenced(held.fence()), held))
    }

    /// Every lock at this destination, for `snap-restore list`-style
    /// reports and tests: (key, what it says, or why it is unreadable).
    pub fn locks(&self) -> Result<Vec<(String, std::result::Result<LockInfo, String>)>> {
        let keys: Vec<String> = self.list(LOCKS)?.into_iter().map(|(k, _)| k).collect();
        let got = self.get_many(&keys);
        Ok(keys
            .into_iter()
            .zip(got)
            .filter_map(|(k, r)| match r {
                Ok(b) => Some((k, LockInfo::parse(&b))),
                Err(e) if e.exit == Exit::NoInput => None,
                Err(e) => Some((k, Err(e.cause))),
            })
            .collect())
    }
}

impl Held {
    fn start(
        dest: &Dest,
        key: String,
        info: LockInfo,
        version: Version,
        mark: f64,
        timing: Timing,
    ) -> Held {
        let mut dest = dest.clone();
        dest.fence = None;
        Held {
            inner: Arc::new(Inner {
                dest,
                key,
                timing,
                state: Mutex::new(State {
                    info,
                    version,
                    confirmed: mark,
                    lost: None,
                }),
                io: Mutex::new(()),
                stop: (Mutex::new(false), Condvar::new()),
            }),
            thread: None,
            released: false,
            notes: Vec::new(),
        }
    }

    /// The key of this lock at the destination.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// Reads the other locks and decides; on a conflict this lock is dropped
    /// (and so removed) and the error names the holder.
    fn admit(mut self, opts: &LockOptions) -> Result<Held> {
        let dest = &self.inner.dest;
        let listing = dest.list_dated(LOCKS)?;
        let Some(own_time) = listing
            .iter()
            .find(|(k, _, _)| *k == self.inner.key)
            .map(|(_, _, t)| *t)
        else {
            return Err(Error::new(
                Exit::Unavailable,
                dest.show(&self.inner.key),
                "a lock just written is not listed: the destination's listing is not consistent",
            ));
        };
        let mode = self.info().mode;
        check_skew(dest, self.info().created, dest.host.now(), own_time)?;
        let mut removals = Vec::new();
        for (key, _, modified) in listing.iter().filter(|(k, _, _)| *k != self.inner.key) {
            let bytes = match dest.get_bytes(key) {
                Ok(b) => b,
                Err(e) if e.exit == Exit::NoInput => continue,
                Err(e) => return Err(e),
            };
            let info = match LockInfo::parse(&bytes) {
                Ok(info) => info,
                Err(_) if opts.break_others => {
                    removals.push((
                        key.clone(),
                        format!("removed unreadable lock {}", dest.show(key)),
                    ));
                    continue;
                }
                Err(why) => {
                    return Err(Error::data(dest.show(key), format!("not a snap lock: {why}"))
                        .with_hint("nothing was changed; if you know it is not in use, remove it, or run snap-prune --break-lock"));
                }
            };
            let age = own_time.duration_since(*modified).unwrap_or_default();
            let seen = Seen { info, age };
            match verdict(mode, &seen, opts, dest.host.as_ref()) {
                Verdict::Ignore => {}
                Verdict::Remove(why) => removals.push((key.clone(), why)),
                Verdict::Conflict(cause, hint) => {
                    let mut e = Error::new(
                        Exit::TempFail,
                        format!("destination {}", dest.name),
                        format!("busy: {cause}"),
                    );
                    if let Some(h) = hint {
                        e = e.with_hint(h);
                    }
                    return Err(e);
                }
            }
        }
        for (key, why) in removals {
            dest.delete(&key)?;
            self.notes.push(why);
        }
        let inner = self.inner.clone();
        self.thread = Some(std::thread::spawn(move || inner.refresh_loop()));
        Ok(self)
    }

    fn info(&self) -> LockInfo {
        self.inner.state.lock().expect("lock state").info.clone()
    }

    /// Fails unless the lock is certainly still this process's (see [`Fence::check`]).
    pub fn ensure_live(&self) -> Result<()> {
        self.fence().check()
    }

    /// A handle that checks this lock, for a [`Dest`] to consult before
    /// every removal and publication ([`Dest::fenced`]).
    pub fn fence(&self) -> Fence {
        Fence(self.inner.clone())
    }
}

/// What a destination consults before it removes or publishes anything: the
/// lock this process holds there.
#[derive(Debug, Clone)]
pub struct Fence(Arc<Inner>);

impl Guard for Fence {
    /// Fails unless the lock is certainly still this process's: it was not
    /// removed, and its last refresh was confirmed recently enough that no
    /// other machine can have judged it stale. It refreshes at once when the
    /// last refresh is old (after a stop or a suspend).
    fn check(&self) -> Result<()> {
        let inner = &self.0;
        let fresh = |st: &State| {
            inner.dest.host.mark() - st.confirmed < inner.timing.live_for().as_secs_f64()
        };
        {
            let st = inner.state.lock().expect("lock state");
            if let Some(why) = &st.lost {
                return Err(inner.lost(why));
            }
            if fresh(&st) {
                return Ok(());
            }
        }
        let _ = inner.refresh();
        let st = inner.state.lock().expect("lock state");
        match &st.lost {
            Some(why) => Err(inner.lost(why)),
            None if fresh(&st) => Ok(()),
            None => Err(inner.lost(&format!(
                "it could not be refreshed for {}",
                human_age(Duration::from_secs_f64(
                    inner.dest.host.mark() - st.confirmed
                ))
            ))),
        }
    }

    /// As [`Fence::check`], but asked of the destination itself, whatever
    /// the last refresh: a read of the lock that changes nothing (a bucket's
    /// HEAD with `If-Match`, a folder's `stat`), or where no read can tell
    /// (SFTP, rclone) one conditional refresh; either fails if another
    /// machine removed it (`snap-prune --break-lock` breaks live locks of
    /// other machines too). What publishes a record calls it before and
    /// after the write; a destination that cannot be reached to confirm is
    /// an error, not a yes. The lock must also be fresh by [`Fence::check`]'s
    /// measure, which a read does not renew.
    fn confirm(&self) -> Result<()> {
        let inner = &self.0;
        let io = inner.io.lock().expect("lock io");
        let version = {
            let st = inner.state.lock().expect("lock state");
            if let Some(why) = &st.lost {
                return Err(inner.lost(why));
            }
            st.version.clone()
        };
        let asked = inner.dest.unchanged(&inner.key, &version);
        drop(io);
        match asked {
            Ok(Some(true)) => return self.check(),
            Ok(Some(false)) => {
                let why = REMOVED;
                inner.state.lock().expect("lock state").lost = Some(why.into());
                return Err(inner.lost(why));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(inner.lost(&format!(
                    "it could not be confirmed at the destination: {}",
                    e.cause
                )));
            }
        }
        let unreached = inner.refresh();
        let st = inner.state.lock().expect("lock state");
        match (&st.lost, unreached) {
            (Some(why), _) => Err(inner.lost(why)),
            (None, Some(e)) => Err(inner.lost(&format!(
                "it could not be confirmed at the destination: {}",
                e.cause
            ))),
            (None, None) => Ok(()),
        }
    }
}

impl Held {
    /// Stops refreshing and removes the lock, saying when the removal failed
    /// and what that costs: other machines wait for the lock (a prune for a
    /// push's lock until [`BREAK_AFTER`], anyone for a prune's until it is
    /// stale), until this machine's next run removes it as dead. A lock
    /// already lost is not ours to remove. (Dropping a `Held` does the same
    /// silently, for runs that end on an error.)
    pub fn release(mut self) -> std::result::Result<(), String> {
        let wait = match self.info().mode {
            // A stale push lock may be a push cut off that could still publish.
            Mode::Shared => format!(
                "prunes on other machines wait for it until {} after its last refresh",
                human_age(BREAK_AFTER)
            ),
            Mode::Exclusive => format!(
                "other machines wait for it until it is stale, {} after its last refresh",
                human_age(STALE_AFTER)
            ),
        };
        self.stop_and_remove().map_err(|e| {
            format!(
                "{}: lock not removed: {}; {wait} (this machine's next run removes it, snap-prune --break-lock sooner)",
                e.context, e.cause,
            )
        })
    }

    /// Stops the refresh thread, then removes the lock unless it was lost;
    /// the second call does nothing.
    fn stop_and_remove(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        {
            let (stop, cv) = &self.inner.stop;
            *stop.lock().expect("lock stop flag") = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let lost = self
            .inner
            .state
            .lock()
            .map(|s| s.lost.is_some())
            .unwrap_or(true);
        match lost {
            true => Ok(()),
            false => self.inner.dest.delete(&self.inner.key),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.stop_and_remove();
    }
}

impl Inner {
    fn refresh_loop(&self) {
        let (stop, cv) = &self.stop;
        loop {
            let stopped = stop.lock().expect("lock stop flag");
            let (stopped, _) = cv
                .wait_timeout_while(stopped, self.timing.refresh_every(), |s| !*s)
                .expect("lock stop flag");
            if *stopped {
                return;
            }
            drop(stopped);
            let _ = self.refresh();
        }
    }

    /// One conditional refresh; a failure to reach the destination is left
    /// for [`Held::ensure_live`] to judge by the age of the last success,
    /// and returned for [`Fence::confirm`].
    fn refresh(&self) -> Option<Error> {
        let _io = self.io.lock().expect("lock io");
        let (mut info, version) = {
            let st = self.state.lock().expect("lock state");
            if st.lost.is_some() {
                return None;
            }
            (st.info.clone(), st.version.clone())
        };
        info.refreshed = self.dest.host.now();
        let bytes = Bytes::from(info.to_json());
        let sha = Sha256Digest::of(&bytes).to_hex();
        let mark = self.dest.host.mark();
        let result = self.dest.put_update(&self.key, bytes, &sha, &version);
        let mut st = self.state.lock().expect("lock state");
        match result {
            Ok(Some(v)) => {
                st.version = v;
                st.info = info;
                st.confirmed = mark;
            }
            Ok(None) => {
                st.lost = Some(REMOVED.into());
            }
            Err(e) => return Some(e),
        }
        None
    }

    fn lost(&self, why: &str) -> Error {
        Error::new(
            Exit::TempFail,
            format!("destination {}", self.dest.name),
            format!(
                "this run's lock {} is no longer held: {why}; nothing more is published",
                self.key
            ),
        )
        .with_hint(
            "was this process stopped, suspended or cut off? Run it again: what was sent is reused",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ages read as people say them.
    #[test]
    fn ages() {
        assert_eq!(human_age(Duration::from_secs(45)), "45s");
        assert_eq!(human_age(Duration::from_secs(725)), "12m 5s");
        assert_eq!(human_age(Duration::from_secs(12_000)), "3h 20m");
        assert_eq!(human_age(Duration::from_secs(187_200)), "2d 4h");
    }
}
