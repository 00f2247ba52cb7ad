//! Signals during a live snapshot: a SIGINT or SIGTERM is noted, not
//! obeyed at once, so the session can take its nodes out of QEMU and put
//! the bitmaps back before the process ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use snap_shared::error::{Error, Exit, Result};

/// A fatal signal arrived: the run stops at the next block and cleans up.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// While alive, SIGTERM, SIGINT and SIGHUP set a flag instead of killing
/// the process: a live snapshot must thaw the guest and take its nodes out
/// of QEMU before it exits.
pub struct SignalGuard {
    pub(crate) ids: Vec<signal_hook::SigId>,
    pub stop: Stop,
}

impl SignalGuard {
    pub fn install() -> Result<SignalGuard> {
        let stop = Stop::default();
        let mut ids = Vec::new();
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ] {
            let id = signal_hook::flag::register(sig, stop.0.clone())
                .map_err(|e| Error::io_ctx("installing signal handlers", e))?;
            ids.push(id);
        }
        Ok(SignalGuard { ids, stop })
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The error for a signal that stopped the snapshot.
pub fn interrupted() -> Error {
    Error::new(
        Exit::Interrupted,
        "snapshot",
        "interrupted by a signal; QEMU was left as it was before",
    )
}
