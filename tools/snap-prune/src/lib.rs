//! snap-prune: retention.
pub mod free;
pub mod policy;
pub mod rules;
pub mod target;
pub fn main(_args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    0
}
