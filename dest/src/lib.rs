//! snap-dest: where snap sends archives and reads them back.
//!
//! A destination (docs/design.md, Destinations) is a folder, an external drive
//! found by UUID or label, a bucket on S3 (and S3-compatible services), GCS
//! or Azure, a folder over SFTP, or an rclone remote: one file each under
//! `backend/`. This crate parses destination strings and the config's
//! `destinations`, finds drives, and gives snap-push and snap-restore one
//! interface over all of them: list, head, get (streamed), put, delete, and
//! resumable verified uploads of large files. It is its own crate, not part
//! of snap-shared, because its HTTP and async stack (object_store, tokio) is
//! needed by the tools that reach destinations and by no other.

mod backend;
pub mod conditional;
pub mod dest;
pub mod guard;
pub mod host;
pub mod location;
pub mod locks;
pub mod mount;
mod names;
mod part_buffers;
pub mod profile_sync;
pub mod profiles;
mod quote;
pub mod reading;
mod said;
pub mod settings;
pub mod stream;
pub mod throttle;
pub mod upload;

pub use backend::bucket::Reach;
pub use backend::folder::{read_file_ranges, read_file_tail};
pub use backend::{Meta, memory};
pub use conditional::Version;
pub use dest::{Dest, default_state_dir, runtime};
pub use location::{DriveKey, Location, Service};
pub use locks::{Fence, Held, LockOptions, Mode};
pub use quote::sh_quote;
pub use reading::{ReadRoot, open_for_reading};
pub use settings::DestSpec;
pub use throttle::Throttle;
pub use tokio::runtime::Runtime;
pub use upload::{Sent, Source, Tuning};
