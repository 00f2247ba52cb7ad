//! snap-dest: where snap sends archives and reads them back.
//!
//! A destination (docs/design.md, Destinations) is a folder, an external drive
//! found by UUID or label, or a bucket on S3 (and S3-compatible services),
//! GCS or Azure. This crate parses destination strings and the config's
//! `destinations`, finds drives, and gives snap-push and snap-restore one
//! interface over all of them: list, head, get (streamed), put, delete, and
//! resumable verified uploads of large files. It is its own crate, not part
//! of snap-shared, because its HTTP and async stack (object_store, tokio) is
//! needed by the tools that reach destinations and by no other.

pub mod conditional;
pub mod dest;
pub mod location;
pub mod locks;
pub mod memory;
pub mod mount;
mod part_buffers;
mod rclone;
mod said;
pub mod settings;
mod sftp;
pub mod stream;
pub mod throttle;
pub mod upload;

pub use conditional::Version;
pub use dest::{Dest, Meta, Reach, ReadRoot, default_state_dir, open_for_reading, runtime};
pub use location::{DriveKey, Location, Service};
pub use locks::{Fence, Held, LockOptions, Mode};
pub use settings::DestSpec;
pub use throttle::Throttle;
pub use tokio::runtime::Runtime;
pub use upload::{Sent, Source, Tuning};

/// `s` as one word for a POSIX shell (in single quotes when it needs them),
/// for the commands hints print.
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    match plain {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', "'\\''")),
    }
}
