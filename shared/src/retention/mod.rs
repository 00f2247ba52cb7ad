//! Retention: restic's rules (`policy`), the config's `retention` section
//! (`rules`) with its rules by tag (`tagged`), and the listing model they are applied to (`listing`).
//! snap-prune applies them; snap-restore's timeline shows what they would
//! remove and why each of the rest is kept.

pub mod listing;
pub mod policy;
pub mod rules;
pub mod tagged;
