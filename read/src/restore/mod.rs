//! Getting files back: from a tree snapshot, from an archive or a chain of
//! incremental archives, or from any tar.
//!
//! Snapshots and snap archives restore from their index: it says what each
//! entry is, its metadata to the nanosecond, and each file's sha256, which
//! every restored file is checked against as it is written. A chain is replayed
//! from its full archive: from each archive the files whose content is the
//! final one are taken; then folders, symlinks, hard links and special files
//! are made from the final index, and folders get their metadata last
//! (children change a folder's mtime). Foreign tars restore from their headers.
//!
//! `command` is the run of one request; `restorer` the writer and its tallies;
//! `from_index` and `from_tar` the two ways of reading; `deltas` puts big
//! files together from the runs of changed blocks incrementals carry;
//! `undo` keeps what a restore is about to replace or delete.

mod command;
mod deltas;
mod from_index;
mod from_tar;
mod restorer;
pub mod undo;

pub use command::{Before, Request, refuse_inside_store, run, run_item};
pub use restorer::Watch;
