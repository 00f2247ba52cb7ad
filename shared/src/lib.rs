//! snap-shared: what every snap tool agrees on.
//!
//! Records and their JSON Lines pipe, the store layout and snapshot ids, the
//! per-file index, the catalog, the config file, the store lock, atomic
//! publication, and the errors with their exit codes. No clap and no printing
//! here: tools decide how to talk to people.

pub mod acl;
pub mod archive;
pub mod blockdiff;
pub mod blockmap;
pub mod blockpages;
pub mod blockpipe;
pub mod blockstore;
pub mod catalog;
pub mod config;
pub mod crypt;
pub mod disks;
pub mod error;
pub mod fsutil;
pub mod hash;
pub mod holders;
pub mod id;
pub mod index;
pub mod jsonl;
pub mod lock;
pub mod owners;
pub mod pathindex;
pub mod pax;
pub mod profile;
pub mod record;
pub mod retention;
pub mod schedule;
pub mod seekable;
pub mod sign;
pub mod size;
pub mod store;
pub mod tarw;
pub mod verified;
pub mod xattrs;

pub use error::{Error, Exit, Result};

/// This machine's host name, for records and lock messages.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The user this process runs as, for records and locks: `$USER`, else
/// `$LOGNAME`, else `uid N`.
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()))
}

/// Who made a record: `{"tool": "snap-pack 0.1.0", "host": …, "user": …}`,
/// so that a destination several machines share says which did what.
pub fn created_by(tool: &str, version: &str) -> serde_json::Value {
    serde_json::json!({
        "tool": format!("{tool} {version}"),
        "host": hostname(),
        "user": username(),
    })
}

/// The host a record names: `created_by.host`, else its `host` field.
pub fn record_host(record: &serde_json::Value) -> Option<&str> {
    record
        .get("created_by")
        .and_then(|c| c.get("host"))
        .or_else(|| record.get("host"))
        .and_then(serde_json::Value::as_str)
}
