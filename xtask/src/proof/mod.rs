//! The long proofs, each with its own verb: `interleave` (the fault harness
//! of shared destinations, proof/harness/), `crash` (tools killed or their
//! power cut at every state-changing syscall, proof/crash/) and `fuzz` (the
//! libFuzzer targets of proof/fuzz/). `cargo xtask test` runs a fast subset
//! of each and replays every regression input they kept.

pub mod crash;
pub mod fuzz;
pub mod interleave;
mod mutants;
