//! Opening `--from` for reading: a configured destination's name, a URL,
//! or else a folder path. Folders are read as folders (a store, a drive, a
//! destination folder); everything else through [`Dest`].

use std::path::PathBuf;

use snap_shared::error::Result;

use crate::backend::bucket::Reach;
use crate::dest::{Dest, runtime};
use crate::location::Location;

/// Where `--from` points for reading: a folder on this machine (a store, a
/// drive, a destination folder) or a bucket.
pub enum ReadRoot {
    Folder(PathBuf),
    Bucket(Dest),
}

/// Opens `--from` for reading: a configured destination's name, a URL
/// (s3://, gs://, az://, sftp://, uuid://, label://, rclone:), or else a
/// folder path.
/// Opens `--from` for reading: a configured destination's name, a URL
/// (s3://, gs://, az://, sftp://, uuid://, label://, rclone:), or else a
/// folder path.
pub fn open_for_reading(
    from: &str,
    config: Option<&snap_shared::config::LoadedConfig>,
) -> Result<ReadRoot> {
    let configured = crate::settings::from_config(config)?;
    let spec = match configured.iter().find(|s| s.name == from) {
        Some(s) => s.clone(),
        None if from.contains("://") || from.starts_with("rclone:") => {
            crate::settings::resolve_arg(from, &configured)?
        }
        None => return Ok(ReadRoot::Folder(PathBuf::from(from))),
    };
    if let Location::Folder(p) = &spec.location {
        return Ok(ReadRoot::Folder(p.clone()));
    }
    let rt = runtime()?;
    let dest = Dest::open(&spec, &rt, &Reach::default(), false)?;
    Ok(match dest.folder() {
        Some(f) => ReadRoot::Folder(f.to_path_buf()),
        None => ReadRoot::Bucket(dest),
    })
}
