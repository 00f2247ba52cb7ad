//! The fence: what a destination consults before it removes or publishes
//! anything. It shares the held lock's state (the parent module's `Inner`)
//! and calls back into it to refresh: the one intended loop between two
//! files of this crate, kept because the fence is that lock seen from the
//! operations it guards.

use std::sync::Arc;
use std::time::Duration;

use snap_shared::error::Result;

use super::{Inner, REMOVED, State, human_age};

/// What a destination consults before it removes or publishes anything: the
/// lock this process holds there.
#[derive(Debug, Clone)]
pub struct Fence(pub(super) Arc<Inner>);

impl Fence {
    /// Fails unless the lock is certainly still this process's: it was not
    /// removed, and its last refresh was confirmed recently enough that no
    /// other machine can have judged it stale. It refreshes at once when the
    /// last refresh is old (after a stop or a suspend).
    pub fn check(&self) -> Result<()> {
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
}

impl Fence {
    /// As [`Fence::check`], but asked of the destination itself, whatever
    /// the last refresh: a read of the lock that changes nothing (a bucket's
    /// HEAD with `If-Match`, a folder's `stat`), or where no read can tell
    /// (SFTP, rclone) one conditional refresh; either fails if another
    /// machine removed it (`snap-prune --break-lock` breaks live locks of
    /// other machines too). What publishes a record calls it before and
    /// after the write; a destination that cannot be reached to confirm is
    /// an error, not a yes. The lock must also be fresh by [`Fence::check`]'s
    /// measure, which a read does not renew.
    pub fn confirm(&self) -> Result<()> {
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
