//! What a restore or a verify did (files, bytes, errors, damage), the exit
//! code it means, and the `restored`/`verified` record that says so.

use snap_shared::error::Exit;
use snap_shared::record::{Extra, OutcomeRecord, SCHEMA};

use crate::source::Item;

/// What a restore (or a verify) did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub files: u64,
    pub bytes: u64,
    /// Entries already there with the right content (a rerun).
    pub already: u64,
    /// Of those, the ones whose attributes (mode, owner, mtime) were set again.
    pub repaired: u64,
    /// Entries not restored: refused, unreadable, or already taken by other content.
    pub errors: u64,
    /// Of those, the ones that mean damaged or hostile data (exit 65).
    pub bad_data: u64,
}

impl Tally {
    pub fn exit(&self) -> Exit {
        if self.bad_data > 0 {
            Exit::Data
        } else if self.errors > 0 {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }
}

/// The `restored` or `verified` record of a run.
pub fn outcome(item: &Item, to: Option<String>, t: &Tally, extra: Extra) -> OutcomeRecord {
    OutcomeRecord {
        schema: SCHEMA.into(),
        what: item.name(),
        to,
        files: t.files,
        bytes: t.bytes,
        errors: t.errors,
        extra,
    }
}
