//! The committer: puts finished chunks back in order, writes the index, gives
//! folders their metadata once everything inside them is made, and makes the
//! further names of in-source hard-link groups (which need the first name to
//! exist). It is the only writer of the index, so the index is always sorted.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::fs::{AtFlags, linkat};

use snap_cli::Tally;
use snap_shared::error::Result;
use snap_shared::hash::Sha256Digest;
use snap_shared::index::{Entry, EntryType, IndexWriter};

use crate::items::{Chunk, Counts, GroupJob, Item};
use crate::meta::apply_to_fd;
use crate::work::{Ctx, name_of};

/// The first name of an in-source hard-link group, once it is in the snapshot.
struct First {
    path: Vec<u8>,
    size: u64,
    sha256: Option<Sha256Digest>,
}

pub struct Committer<'a> {
    ctx: &'a Ctx<'a>,
    set: &'a str,
    root_new: Arc<OwnedFd>,
    index: IndexWriter<BufWriter<File>>,
    waiting: BTreeMap<u64, Chunk>,
    next: u64,
    firsts: HashMap<(u64, u64), First>,
    pub counts: Counts,
    /// The previous snapshot's files and bytes: this run's likely totals.
    estimate: Option<(u64, u64)>,
}

impl<'a> Committer<'a> {
    pub fn new(
        ctx: &'a Ctx<'a>,
        set: &'a str,
        root_new: Arc<OwnedFd>,
        index: IndexWriter<BufWriter<File>>,
        estimate: Option<(u64, u64)>,
    ) -> Self {
        Committer {
            ctx,
            set,
            estimate,
            root_new,
            index,
            waiting: BTreeMap::new(),
            next: 0,
            firsts: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// Takes a finished chunk and commits every chunk that is now next in line.
    pub fn accept(&mut self, chunk: Chunk) -> Result<()> {
        self.waiting.insert(chunk.seq, chunk);
        while let Some(chunk) = self.waiting.remove(&self.next) {
            self.next += 1;
            self.counts.add(&chunk.counts);
            for item in chunk.items {
                self.commit(item)?;
            }
            let (set, c, est) = (self.set, &self.counts, self.estimate);
            self.ctx.report.tally(|| {
                let t = Tally::files(
                    set,
                    (c.files, est.map(|e| e.0)),
                    (c.bytes, est.map(|e| e.1)),
                );
                t.estimated()
            });
        }
        Ok(())
    }

    /// True when every chunk handed out was committed.
    pub fn is_complete(&self, chunks: u64) -> bool {
        self.next == chunks && self.waiting.is_empty()
    }

    pub fn finish(self) -> std::io::Result<(Counts, BufWriter<File>)> {
        Ok((self.counts, self.index.finish()?))
    }

    fn commit(&mut self, item: Item) -> Result<()> {
        match item {
            Item::Done(entry) => self.push(entry, None),
            Item::Made {
                entry: Some(entry),
                group,
            } => self.push(entry, group),
            Item::Made { entry: None, .. } => Ok(()),
            Item::GroupLink(job) => {
                let group = Some(job.key);
                match self.link_to_first(*job)? {
                    (Some(entry), true) => self.push(entry, None),
                    (Some(entry), false) => self.push(entry, group),
                    (None, _) => Ok(()),
                }
            }
            Item::CloseDir { rel, stat, fd } => {
                apply_to_fd(&*fd, &stat, self.ctx.as_root).map_err(|e| self.ctx.store_err(&rel, e))
            }
            Item::File(job) => Err(snap_shared::Error::internal(
                job.abs.display().to_string(),
                "reached the committer unmade",
            )),
        }
    }

    fn push(&mut self, entry: Entry, group: Option<(u64, u64)>) -> Result<()> {
        match entry.kind {
            EntryType::File => {
                self.counts.files += 1;
                self.counts.bytes += entry.size;
            }
            EntryType::Dir => {}
            _ => self.counts.files += 1,
        }
        if let Some(key) = group {
            self.firsts.insert(
                key,
                First {
                    path: entry.path.clone(),
                    size: entry.size,
                    sha256: entry.sha256,
                },
            );
        }
        self.index.push(&entry)
    }

    /// Links a further name to its group's first name. When the first could not
    /// be collected, or has too many links, this name is copied instead and
    /// becomes the group's first. Returns the entry and whether it is a link.
    fn link_to_first(&mut self, g: GroupJob) -> Result<(Option<Entry>, bool)> {
        if let Some(first) = self.firsts.get(&g.key) {
            let name = name_of(&g.job.entry);
            match linkat(
                &*self.root_new,
                first.path.as_slice(),
                &*g.job.dst_parent,
                name,
                AtFlags::empty(),
            ) {
                Ok(()) => {
                    let mut entry = g.job.entry;
                    entry.kind = EntryType::Hardlink;
                    entry.link = Some(first.path.clone());
                    entry.size = first.size;
                    entry.sha256 = first.sha256;
                    return Ok((Some(entry), true));
                }
                Err(rustix::io::Errno::MLINK) => {}
                Err(e) => return Err(self.ctx.store_err(&g.job.entry.path, e.into())),
            }
        }
        let mut counts = Counts::default();
        let entry = self.ctx.copy_new(g.job, &mut counts)?;
        self.counts.add(&counts);
        Ok((entry, false))
    }
}
