//! snap-prune: retention.
pub mod policy;
pub fn main(_args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    0
}
