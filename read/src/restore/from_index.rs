//! Restoring a snapshot or a snap archive (with its chain) from its index:
//! from each archive of a chain the files whose content is the final one,
//! then folders, links and special files from the final index, and folders'
//! metadata last.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, OFlags};

use snap_shared::crypt::Decrypt;
use snap_shared::error::{Error, Result};
use snap_shared::index::{Entry, EntryType};

use super::restorer::{Restorer, WRITERS, cores};
use crate::damage::corrupt;
use crate::indexes::{Cursor, IndexLoc, Select, open_index};
use crate::loc::Loc;
use crate::members::{What, archive, members};
use crate::source::Item;
use crate::stream;
use crate::target::{Meta, Put, Refused};
use crate::writers::{CHUNKS, Data, Job, SMALL, Writers};

impl<'a> Restorer<'a> {
    /// Restores a snapshot or a snap archive (with its chain) from its index.
    pub fn restore_index(&mut self, item: &Item, chain: &[Item]) -> Result<()> {
        let index = item.index().expect("snapshots and archives have an index");
        if let Item::Archive { .. } = item {
            self.deltas = super::deltas::Deltas::plan(chain, &index, self.select, self.dec)?;
            for (at, link) in chain.iter().enumerate() {
                self.contents_of(link, &index, at)?;
            }
        }
        let tree = match item {
            Item::Snapshot { .. } => Some(open_tree(item.data().path().expect("trees are local"))?),
            _ => None,
        };
        // Files the content passes wrote, found there, or reported.
        let handled = self.tally.files + self.tally.errors;
        let mut expected = 0u64;
        let mut dirs = Vec::new();
        let mut reader = open_index(&index, self.dec)?;
        while let Some(e) = reader.next_entry()? {
            self.stop_if_fatal()?;
            let wanted = self.select.wants(&e.path);
            if e.kind == EntryType::Dir && (wanted || self.select.leads_to(&e.path)) {
                let result = self.target.dir(&e.path);
                self.count_settled();
                if let Err(r) = result {
                    self.refused(&e.path, r);
                    continue;
                }
                let meta = self.meta_of(&e);
                dirs.push((e.path.clone(), meta));
            }
            if !wanted {
                // The first name of a chosen hard link's group: its content.
                if let (Some(dest), EntryType::File, Some((fd, path))) =
                    (self.select.content_dest(&e.path), e.kind, &tree)
                {
                    let dest = dest.to_vec();
                    self.file_from_tree(fd, path, &e, &dest);
                }
                continue;
            }
            self.select.mark(&e.path, &mut self.matched);
            match (e.kind, &tree) {
                (EntryType::Dir, _) => {}
                (EntryType::Hardlink, _)
                    if e.link
                        .as_deref()
                        .is_some_and(|l| self.select.link_target(&e.path, l).is_none()) => {}
                (EntryType::File, Some((fd, path))) => self.file_from_tree(fd, path, &e, &e.path),
                (EntryType::File, None) => expected += 1,
                _ => {
                    let meta = self.meta_of(&e);
                    if let Some(r) = self.make_other(&e, &meta) {
                        self.count_settled();
                        self.count(&e.path, r, 0);
                    }
                }
            }
        }
        self.settle();
        self.stop_if_fatal()?;
        // One archive writes each file once, so equal counts mean none is
        // missing; a chain may write one twice, so it is always checked.
        if tree.is_none() && (chain.len() > 1 || expected > handled) {
            self.name_missing(&index)?;
        }
        self.dir_metadata(dirs);
        self.stop_if_fatal()?;
        self.check_selection()
    }

    /// A tar member the archive's index does not list: damage (65), named.
    pub(super) fn not_in_index(&mut self, data: &Loc, path: &[u8]) {
        self.tally.errors += 1;
        self.tally.bad_data += 1;
        self.report.error(&format!(
            "{}: is in the archive but not in its index ({})",
            String::from_utf8_lossy(path),
            data.show()
        ));
    }

    /// Names each chosen file of the index that is not in the target.
    pub(super) fn name_missing(&mut self, index: &IndexLoc) -> Result<()> {
        let mut reader = open_index(index, self.dec)?;
        while let Some(e) = reader.next_entry()? {
            if e.kind == EntryType::File
                && self.select.wants(&e.path)
                && !self.failed.contains(&e.path)
                && !self.target.has_file(&e.path)
            {
                self.tally.errors += 1;
                self.tally.bad_data += 1;
                self.report
                    .error(&format!("{}: missing from the archive", e.display_path()));
            }
        }
        Ok(())
    }

    /// Writes, from one archive of a chain, the files whose content there is the final one.
    pub(super) fn contents_of(
        &mut self,
        link: &Item,
        final_index: &IndexLoc,
        at: usize,
    ) -> Result<()> {
        let data = link.data();
        let partial = !self.select.is_all();
        // A restore already keeps two cores busy (decoding, and the writers
        // hashing and writing): on two, decoding frames apart only adds a
        // copy (measured 10% slower), so a whole restore takes frames (and
        // opens the seek table, a request or a decryption) with more cores.
        let seekable = match partial || cores() > WRITERS {
            true => crate::seeking::of_item(link, self.dec)?,
            false => None,
        };
        let layout = match seekable {
            Some(s) if partial => return self.members_by_frames(link, s, final_index, at),
            Some(s) => Some(s.layout),
            None => None,
        };
        let own_index = link.index().expect("archives have an index");
        let mut fin = Cursor::new(open_index(final_index, self.dec)?)?;
        let mut own = match own_index == *final_index {
            true => None,
            false => Some(Cursor::new(open_index(&own_index, self.dec)?)?),
        };
        let opened = stream::open_framed(&data, self.dec, layout)?;
        let mut archive = archive(opened.tar);
        let entries = members(&mut archive).map_err(|e| corrupt(&data, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| corrupt(&data, e))?;
            if entry.what != What::Entry(EntryType::File) {
                continue;
            }
            let path = std::mem::take(&mut entry.path);
            if self.deltas.starts(&path, at) {
                self.start_assembly(&path, &mut entry, &data)?;
                continue;
            }
            let in_fin = fin.seek(&path, |_| {})?;
            // A member the archive's own index does not list is damage, as
            // in verify: the index is not this archive's, or the tar is not.
            // Its content is the final one when the final index agrees.
            let final_here = match own.as_mut() {
                Some(own) => own
                    .seek(&path, |_| {})?
                    .map(|o| in_fin.as_ref().is_some_and(|f| f.sha256 == o.sha256)),
                None => in_fin.as_ref().map(|_| true),
            };
            let Some(final_here) = final_here else {
                // A run of changed blocks of a big file is not in the index by its name.
                match snap_shared::index::blocks_member_of(&path) {
                    Some(_) => self.apply_member(&path, &mut entry, &data, at)?,
                    None => self.not_in_index(&data, &path),
                }
                continue;
            };
            let Some(f) = in_fin.filter(|_| final_here) else {
                continue;
            };
            let Some(dest) = self
                .select
                .content_dest(&path)
                .filter(|_| f.kind == EntryType::File)
            else {
                continue;
            };
            let dest = dest.to_vec();
            self.put_file(&dest, &f, &mut entry, &data, true)?;
            self.stop_if_fatal()?;
        }
        self.drain_writers(true);
        self.sizes_of_link(at);
        self.finish_assemblies(at);
        self.stop_if_fatal()
    }

    /// Writes, from a seekable archive of a chain, the chosen files whose
    /// content there is the final one, reading only the frames that hold
    /// them. Two walks of the index (the frames to fetch, then the files)
    /// keep memory to a frame list, whatever `--path` chooses. A damaged
    /// frame fails the files in it, each named; the rest are restored.
    pub(super) fn members_by_frames(
        &mut self,
        link: &Item,
        archive: crate::seeking::Seekable,
        final_index: &IndexLoc,
        at: usize,
    ) -> Result<()> {
        let data = link.data();
        let (select, dec) = (self.select, self.dec);
        let layout = archive.layout.clone();
        // The whole versions and runs of files put together (few): fetched
        // with the rest, in tar order.
        let mut runs = self
            .deltas
            .spans(at, layout.tar_len())
            .into_iter()
            .peekable();
        let mut frames: Vec<usize> = runs
            .clone()
            .flat_map(|(span, _)| layout.covering(span).collect::<Vec<_>>())
            .collect();
        let members = Members {
            select,
            dec,
            link,
            final_index,
            tar_len: layout.tar_len(),
        };
        let mut chosen = 0u64;
        members.each(|span, _| {
            chosen += 1;
            frames.extend(layout.covering(span));
            Ok(())
        })?;
        frames.sort_unstable();
        frames.dedup();
        let mut stream = archive.frames(frames);
        // A link that holds no chosen file whole (a chain's later archives,
        // on a `--path` restore of a big file) is not walked again.
        let walk = chosen > 0;
        let put = |span: std::ops::Range<u64>, f: Entry| {
            while let Some((run, name)) = runs.next_if(|(r, _)| r.start < span.start) {
                self.run_by_frames(&mut stream, run, &name, &data, at)?;
            }
            stream.skip_to(span.start).map_err(|e| corrupt(&data, e))?;
            let dest = select.content_dest(&f.path).unwrap_or(&f.path).to_vec();
            let put = crate::seeking::with_member(&mut stream, &f.path, |member| {
                self.put_file(&dest, &f, member, &data, false)
            });
            match put {
                Ok(done) => done?,
                Err(e) => self.refused(&f.path, Refused::Source(e)),
            }
            self.stop_if_fatal()
        };
        if walk {
            members.each(put)?;
        }
        for (run, name) in runs {
            self.run_by_frames(&mut stream, run, &name, &data, at)?;
        }
        self.drain_writers(true);
        self.sizes_of_link(at);
        self.finish_assemblies(at);
        self.stop_if_fatal()
    }

    /// Reads, by frames, a member a file put together needs: its whole
    /// version (which starts it) or a run. A damaged frame fails that file.
    fn run_by_frames(
        &mut self,
        stream: &mut crate::seeking::FrameStream,
        span: std::ops::Range<u64>,
        name: &[u8],
        data: &crate::loc::Loc,
        at: usize,
    ) -> Result<()> {
        stream.skip_to(span.start).map_err(|e| corrupt(data, e))?;
        let read = crate::seeking::with_member(stream, name, |member| {
            match self.deltas.starts(name, at) {
                true => self.start_assembly(name, member, data),
                false => self.apply_member(name, member, data, at),
            }
        });
        match read {
            Ok(done) => done,
            Err(e) => {
                let of = snap_shared::index::blocks_member_of(name).unwrap_or(name);
                self.refused(of, Refused::Source(e));
                Ok(())
            }
        }
    }

    /// Writes one file of an archive through the writer threads: small ones
    /// whole, large ones as chunks while this thread reads on. A read error
    /// ends the run when `reads_end_run` (a stream cannot go on past it);
    /// otherwise it fails this file only, named.
    pub(super) fn put_file(
        &mut self,
        path: &[u8],
        f: &Entry,
        entry: &mut dyn Read,
        data: &Loc,
        reads_end_run: bool,
    ) -> Result<()> {
        if self.writers.is_none() {
            let w = Writers::start(&self.target, WRITERS)
                .map_err(|e| Error::io(&self.target.path, e))?;
            self.writers = Some(w);
        }
        let meta = self.meta_of(f);
        let writers = self.writers.as_ref().expect("started above");
        let job = |data| Job {
            path: path.to_vec(),
            meta: meta.clone(),
            sha: f.sha256,
            size: f.size,
            data,
        };
        let read = if f.size <= SMALL {
            let mut bytes = Vec::with_capacity(f.size as usize);
            let read = entry.take(f.size).read_to_end(&mut bytes);
            if read.is_ok() {
                writers.send(job(Data::Bytes(bytes)));
            }
            read.map(|_| ())
        } else {
            let (tx, rx) = crossbeam_channel::bounded(CHUNKS);
            writers.send(job(Data::Chunks(rx)));
            let read = send_chunks(entry, f.size, &tx);
            if let Err(e) = &read {
                // The writer names the file, and keeps none of it.
                let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
            }
            read
        };
        match read {
            Ok(()) => self.written.add(f.size),
            Err(e) if reads_end_run => return Err(corrupt(data, e)),
            Err(e) if f.size <= SMALL => self.refused(path, Refused::Source(e)),
            Err(_) => {}
        }
        self.drain_writers(false);
        self.progress();
        Ok(())
    }

    /// Writes file `e` of a tree snapshot at `dest` (its own path, or the
    /// chosen hard link that takes its content).
    pub(super) fn file_from_tree(
        &mut self,
        tree: &OwnedFd,
        tree_path: &Path,
        e: &Entry,
        dest: &[u8],
    ) {
        let rel = OsStr::from_bytes(&e.path);
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let src = match snap_shared::fsutil::open_beneath(tree, &e.path, flags) {
            Ok(fd) => fd,
            Err(err) => {
                self.tally.errors += 1;
                self.report.error(&format!(
                    "{}: {}",
                    tree_path.join(rel).display(),
                    snap_shared::error::io_cause(&err)
                ));
                return;
            }
        };
        let mut src = File::from(src);
        let meta = self.meta_of(e);
        let result = self.target.file(
            dest,
            &meta,
            e.size,
            e.sha256.as_ref(),
            &mut src,
            &mut self.buf,
        );
        self.count_staging(dest, result, e.size);
        self.progress();
    }

    /// Makes a symlink, hard link, fifo or device from its entry (`None` for
    /// files and folders, which are made elsewhere).
    pub(super) fn make_other(&mut self, e: &Entry, meta: &Meta) -> Option<Put> {
        let result = match e.kind {
            EntryType::Symlink => {
                self.target
                    .symlink(&e.path, e.target.as_deref().unwrap_or_default(), meta)
            }
            EntryType::Hardlink => {
                let first = e.link.as_deref().unwrap_or_default();
                let to = self.select.link_target(&e.path, first).unwrap_or(first);
                self.target.hardlink(&e.path, to)
            }
            EntryType::Fifo => self.target.special(&e.path, FileType::Fifo, 0, meta),
            EntryType::Char => self.target.special(
                &e.path,
                FileType::CharacterDevice,
                e.rdev.unwrap_or(0),
                meta,
            ),
            EntryType::Block => {
                self.target
                    .special(&e.path, FileType::BlockDevice, e.rdev.unwrap_or(0), meta)
            }
            EntryType::File | EntryType::Dir => return None,
        };
        Some(result)
    }

    /// Folders get their metadata deepest first, after their content (every
    /// file in them named).
    pub(super) fn dir_metadata(&mut self, mut dirs: Vec<(Vec<u8>, Meta)>) {
        self.settle();
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, meta) in dirs {
            if let Err(r) = self.target.dir_meta(&path, &meta) {
                self.refused(&path, r);
            }
        }
        // Attributes of folders that could not be set.
        self.count_settled();
        for (path, r) in self.target.settle_implicit() {
            self.refused(&path, r);
        }
    }
}

/// The chosen files whose content one archive of a chain (`link`) holds.
pub(crate) struct Members<'a> {
    pub(crate) select: &'a Select,
    pub(crate) dec: &'a Decrypt,
    pub(crate) link: &'a Item,
    pub(crate) final_index: &'a IndexLoc,
    /// Where the archive's tar ends.
    pub(crate) tar_len: u64,
}

impl Members<'_> {
    /// Calls `each` with the tar span and the final entry of every chosen
    /// file whose content the archive holds (its index gives it a
    /// `tar_offset`, with the final sha256), in tar order. A member ends
    /// where the next one the archive carries begins (the index is in tar
    /// order), the last at the end of the tar.
    pub(crate) fn each(
        &self,
        mut each: impl FnMut(std::ops::Range<u64>, Entry) -> Result<()>,
    ) -> Result<()> {
        let (select, dec, final_index) = (self.select, self.dec, self.final_index);
        let own_index = self.link.index().expect("archives have an index");
        let mut fin = match own_index == *final_index {
            true => None,
            false => Some(Cursor::new(open_index(final_index, dec)?)?),
        };
        let mut reader = open_index(&own_index, dec)?;
        let mut pending: Option<(u64, Entry)> = None;
        while let Some(e) = reader.next_entry()? {
            let Some(at) = e.tar_offset else { continue };
            if let Some((start, f)) = pending.take() {
                each(start..at, f)?;
            }
            if e.kind != EntryType::File || select.content_dest(&e.path).is_none() {
                continue;
            }
            let f = match fin.as_mut() {
                None => Some(e),
                Some(fin) => fin
                    .seek(&e.path, |_| {})?
                    .filter(|f| f.kind == EntryType::File && f.sha256 == e.sha256),
            };
            pending = f.map(|f| (at, f));
        }
        match pending {
            Some((start, f)) => each(start..self.tar_len, f),
            None => Ok(()),
        }
    }
}

/// Sends `size` bytes of `entry` as chunks to a writer (which may stop
/// taking them: it refused the file).
pub(crate) fn send_chunks(
    entry: &mut dyn Read,
    size: u64,
    tx: &crossbeam_channel::Sender<std::io::Result<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut left = size;
    while left > 0 {
        let mut chunk = Vec::with_capacity(SMALL as usize);
        let n = entry.take(left.min(SMALL)).read_to_end(&mut chunk)?;
        if n == 0 {
            break;
        }
        left -= n as u64;
        if tx.send(Ok(chunk)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Opens a snapshot's tree for reading files by relative path.
pub(crate) fn open_tree(tree: &Path) -> Result<(OwnedFd, PathBuf)> {
    let fd = snap_shared::fsutil::open_root(tree).map_err(|e| Error::io(tree, e))?;
    Ok((fd, tree.to_path_buf()))
}
