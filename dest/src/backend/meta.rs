//! What a destination says it holds under a key.

/// What a destination holds under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    /// The sha256 kept as object metadata, where the service keeps metadata.
    pub sha256: Option<String>,
}

impl Meta {
    /// A size alone (a file system keeps no sha256 beside a file).
    pub(crate) fn sized(size: u64) -> Meta {
        Meta { size, sha256: None }
    }
}
