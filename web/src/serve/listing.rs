//! The configured destinations' listings for the page, each made in the
//! background on its own: a page waits for them at most [`WAIT`], then
//! shows each destination's last listing, or "still being listed". A slow
//! bucket or an unplugged drive never holds the page, nor the other
//! destinations. A listing is shown for [`AGE`] before it is made again.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use snap_shared::error::Result;

use super::http::Shared;
use crate::timeline::dests::DestView;

/// How long a listing is shown before it is made again.
const AGE: Duration = Duration::from_secs(300);
/// How long a page waits for listings being made.
const WAIT: Duration = Duration::from_secs(3);

/// Each destination's last listing and whether one is being made, by name.
#[derive(Default)]
pub(super) struct Listings {
    slots: Mutex<BTreeMap<String, Slot>>,
    done: Condvar,
}

#[derive(Default)]
struct Slot {
    last: Option<(Instant, DestView)>,
    running: bool,
}

/// The destinations as the page shows them, and a number that changes
/// whenever what it shows of them does (for the page's cache key).
pub(super) fn listed(s: &Arc<Shared>) -> Result<(Vec<DestView>, u128)> {
    let specs = snap_dest::settings::from_config(s.config.as_ref())?;
    let mut slots = s.dests.slots.lock().unwrap_or_else(|e| e.into_inner());
    for spec in &specs {
        let slot = slots.entry(spec.name.clone()).or_default();
        let fresh = slot.last.as_ref().is_some_and(|(at, _)| at.elapsed() < AGE);
        if fresh || slot.running {
            continue;
        }
        slot.running = true;
        let (s2, spec) = (s.clone(), spec.clone());
        std::thread::spawn(move || {
            let view = match snap_dest::runtime() {
                Ok(rt) => crate::timeline::dests::one(&spec, s2.config.as_ref(), &rt),
                Err(e) => DestView {
                    name: spec.name.clone(),
                    url: spec.location.url(),
                    held: Err(e.to_string()),
                    cost: None,
                    pending: false,
                },
            };
            let mut slots = s2.dests.slots.lock().unwrap_or_else(|e| e.into_inner());
            let slot = slots.entry(spec.name.clone()).or_default();
            slot.last = Some((Instant::now(), view));
            slot.running = false;
            s2.dests.done.notify_all();
        });
    }
    let (slots, _) = s
        .dests
        .done
        .wait_timeout_while(slots, WAIT, |slots| {
            specs
                .iter()
                .any(|d| slots.get(&d.name).is_some_and(|s| s.running))
        })
        .unwrap_or_else(|e| e.into_inner());
    let mut stamp = 0u128;
    let views = specs
        .iter()
        .map(|spec| {
            let slot = slots.get(&spec.name);
            let running = slot.is_some_and(|s| s.running);
            match slot.and_then(|s| s.last.as_ref()) {
                Some((at, view)) => {
                    stamp = stamp
                        .wrapping_mul(31)
                        .wrapping_add(nanos(*at) << 1 | running as u128);
                    view.clone()
                }
                None => {
                    stamp = stamp.wrapping_mul(31).wrapping_add(1);
                    waiting(spec)
                }
            }
        })
        .collect();
    Ok((views, stamp))
}

/// An instant as nanoseconds since the first one asked for.
fn nanos(at: Instant) -> u128 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_nanos()
}

/// A destination not listed yet.
fn waiting(spec: &snap_dest::DestSpec) -> DestView {
    DestView {
        name: spec.name.clone(),
        url: spec.location.url(),
        held: Err(format!(
            "still being listed after {} s (slow, or not answering); reload the page in a while",
            WAIT.as_secs()
        )),
        cost: None,
        pending: true,
    }
}
