//! snap-web: the timeline page. `timeline` gathers the store's snapshots,
//! archives, disks and destinations into one model and renders it as one
//! self-contained HTML file; `serve` serves it live on a local port, with
//! diffs, file history and search, and (with `--allow-changes`) restores,
//! deletes, pins and tags. What it reads and changes is snap-read's and
//! snap-prune's work; this crate is the page. snap-restore's `timeline` and
//! `serve` verbs call it.

pub mod serve;
pub mod timeline;
