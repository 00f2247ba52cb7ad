//! snap-crash: crash sweeps of snap's tools (`cargo xtask crash`).
//!
//! Each tool's representative run is traced once to count its
//! state-changing syscalls ([`trace`]); then, for each point k (all of them,
//! or an even sample), the scenario's state is laid anew, the tool is killed
//! at its k-th point, the store or destination is checked, the tool is run
//! again, and its result is checked ([`sweep`], scenarios in [`tools`]).

pub mod catalog;
pub mod check;
pub mod disks;
pub mod fault;
pub mod handover;
pub mod power;
pub mod sweep;
pub mod tools;
pub mod trace;
