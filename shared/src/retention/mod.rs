//! Retention: restic's rules (`policy`) and the config's `retention`
//! section (`rules`). snap-prune applies them; snap-restore's timeline shows
//! what they would remove and why each of the rest is kept.

pub mod policy;
pub mod rules;
