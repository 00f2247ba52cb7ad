//! Which destinations a run pushes to.
//!
//! Destinations named with `--dest` are all pushed to. Configured ones are
//! taken by `priority`, lowest first: the run pushes to every destination of
//! the first priority that has at least one present, and falls back to the
//! next priority only when none of them is there (the planning document's
//! "priority-based fallback if the primary destination is unavailable").
//! A destination that is absent (drive not plugged in or not mounted, folder
//! missing) is one line and, if nothing else fails, exit 75.

use std::sync::Arc;

use snap_cli::Reporter;
use snap_dest::{Dest, DestSpec, Reach, Runtime};
use snap_shared::error::{Error, Exit, Result};

/// The destinations to push to, and those of the same priority that were absent.
pub struct Chosen {
    pub dests: Vec<Dest>,
    pub absent: Vec<Error>,
}

/// Opens the destinations; see the module doc for the rules.
pub fn choose(
    specs: Vec<DestSpec>,
    explicit: bool,
    rt: &Arc<Runtime>,
    reach: &Reach,
    report: &Reporter,
) -> Result<Chosen> {
    let mut tiers: Vec<Vec<DestSpec>> = Vec::new();
    if explicit {
        tiers.push(specs);
    } else {
        let mut specs = specs;
        specs.sort_by_key(|s| s.priority);
        for spec in specs {
            match tiers.last_mut() {
                Some(t) if t[0].priority == spec.priority => t.push(spec),
                _ => tiers.push(vec![spec]),
            }
        }
    }
    let mut missing: Vec<Error> = Vec::new();
    for tier in tiers {
        let mut dests = Vec::new();
        let mut absent = Vec::new();
        for spec in &tier {
            match Dest::open(spec, rt, reach, true) {
                Ok(d) => dests.push(d),
                Err(e) if e.exit == Exit::TempFail => absent.push(e),
                Err(e) => return Err(e),
            }
        }
        if !dests.is_empty() {
            if !missing.is_empty() {
                let names: Vec<&str> = dests.iter().map(|d| d.name.as_str()).collect();
                report.note(&format!(
                    "falling back to {} (higher priorities absent)",
                    names.join(", ")
                ));
            }
            for e in &missing {
                report.warn(&e.to_string());
            }
            return Ok(Chosen { dests, absent });
        }
        missing.extend(absent);
    }
    Err(none_present(missing))
}

/// Exit 75 naming why each destination is absent.
fn none_present(missing: Vec<Error>) -> Error {
    if missing.len() == 1 {
        return missing.into_iter().next().expect("one");
    }
    let why: Vec<String> = missing.iter().map(|e| e.to_string()).collect();
    Error::new(Exit::TempFail, "no destination is present", why.join("; "))
        .with_hint("plug in and mount a drive, then run again")
}
