//! What flows through a collect's pipeline.
//!
//! The main thread walks and decides (decide.rs), workers link or copy
//! files (work.rs), and one committer writes the index in order
//! (commit.rs). Work travels in numbered [`Chunk`]s of [`Item`]s in
//! index order; workers finish chunks in any order and the committer puts
//! them back in sequence.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::Stat;

use snap_shared::hash::Sha256Digest;
use snap_shared::index::Entry;

/// A regular file to link from the previous snapshot or copy from the source.
#[derive(Debug)]
pub struct FileJob {
    /// The index entry from the walk (size, mode, times, owner).
    pub entry: Entry,
    pub abs: PathBuf,
    pub stat: Stat,
    /// Source folder, new folder and previous folder that hold the name.
    pub src_parent: Arc<OwnedFd>,
    pub dst_parent: Arc<OwnedFd>,
    pub prev_parent: Option<Arc<OwnedFd>>,
    /// The previous snapshot's digest when its entry has the same metadata:
    /// the file is a candidate for a hard link.
    pub prev_sha: Option<Sha256Digest>,
    /// The previous entry's block digests (a big file): kept when the file
    /// is linked; what a clone of a changed one is compared with.
    pub prev_blocks: Option<snap_shared::index::Blocks>,
    /// `(dev, ino)` when this is the first name of an in-source hard-link group.
    pub group: Option<(u64, u64)>,
}

/// A further name of an in-source hard-link group. Made by the committer,
/// in order, so the first name is always there before it.
#[derive(Debug)]
pub struct GroupJob {
    pub job: FileJob,
    pub key: (u64, u64),
}

#[derive(Debug)]
pub enum Item {
    /// Made on the main thread (folders, symlinks, fifos, devices).
    Done(Entry),
    /// Waiting for a worker.
    File(Box<FileJob>),
    /// A worker's result: the entry, or `None` when the source was unreadable.
    Made {
        entry: Option<Entry>,
        group: Option<(u64, u64)>,
    },
    /// Waiting for the committer.
    GroupLink(Box<GroupJob>),
    /// Every entry of this folder is made: it gets its metadata.
    CloseDir {
        rel: Vec<u8>,
        stat: Stat,
        fd: Arc<OwnedFd>,
    },
}

/// Counters the workers and committer add up.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub new_files: u64,
    pub new_bytes: u64,
    pub linked: u64,
    pub errors: u64,
    /// Stored copies found damaged (`--checksum`) and copied afresh.
    pub damaged: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.files += o.files;
        self.dirs += o.dirs;
        self.bytes += o.bytes;
        self.new_files += o.new_files;
        self.new_bytes += o.new_bytes;
        self.linked += o.linked;
        self.errors += o.errors;
        self.damaged += o.damaged;
    }
}

/// A numbered run of items in index order.
#[derive(Debug)]
pub struct Chunk {
    pub seq: u64,
    pub items: Vec<Item>,
    pub counts: Counts,
}
