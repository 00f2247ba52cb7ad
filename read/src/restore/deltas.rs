//! Big files that incremental archives carry as runs of changed blocks
//! (snap-pack's delta.rs), put together along the chain: the newest archive
//! that holds the file whole starts it, each later archive that carries
//! runs of it writes them over it in chain order (and its size cuts or grows
//! it), and the last one ends it, hashed whole against the final index
//! before it is staged. Each block thus comes from the newest archive that
//! carries it.

use std::collections::HashMap;
use std::io::Read;

use snap_shared::crypt::Decrypt;
use snap_shared::error::Result;
use snap_shared::index::{BIG_FILE, Entry, EntryType, blocks_member_of};

use super::restorer::Restorer;
use crate::damage::corrupt;
use crate::indexes::{IndexLoc, Select, open_index};
use crate::loc::Loc;
use crate::source::Item;
use crate::target::{Assembly, Refused};

/// How one file is put together.
struct Plan {
    /// The chain link that holds it whole.
    start: usize,
    /// The links whose runs go over it, in order; the last ends it.
    deltas: Vec<usize>,
    /// Its entry in the final index, and where it goes.
    entry: Entry,
    dest: Vec<u8>,
}

/// The files of a restore that are put together, and those under way.
#[derive(Default)]
pub(crate) struct Deltas {
    plans: HashMap<Vec<u8>, Plan>,
    open: HashMap<Vec<u8>, Assembly>,
}

impl Deltas {
    /// Plans the chosen big files whose final content the chain holds as
    /// runs: one read of the final index and of each link's own.
    pub(crate) fn plan(
        chain: &[Item],
        final_index: &IndexLoc,
        select: &Select,
        dec: &Decrypt,
    ) -> Result<Deltas> {
        let mut finals: HashMap<Vec<u8>, Entry> = HashMap::new();
        let mut reader = open_index(final_index, dec)?;
        while let Some(e) = reader.next_entry()? {
            if e.kind == EntryType::File
                && e.size >= BIG_FILE
                && select.content_dest(&e.path).is_some()
            {
                finals.insert(e.path.clone(), e);
            }
        }
        // (link, whole) for each link that carries each of them.
        let mut carried: HashMap<Vec<u8>, Vec<(usize, bool)>> = HashMap::new();
        for (i, link) in chain.iter().enumerate() {
            let Some(own) = link.index() else { continue };
            let mut reader = open_index(&own, dec)?;
            while let Some(e) = reader.next_entry()? {
                if !finals.contains_key(&e.path) {
                    continue;
                }
                if e.tar_offset.is_some() {
                    carried.entry(e.path).or_default().push((i, true));
                } else if e.delta.is_some() {
                    carried.entry(e.path).or_default().push((i, false));
                }
            }
        }
        let mut plans = HashMap::new();
        for (path, links) in carried {
            let Some(&(last, false)) = links.last() else {
                continue;
            };
            // A file the chain never held whole is named missing by the restore.
            let Some(&(start, _)) = links.iter().rev().find(|(_, whole)| *whole) else {
                continue;
            };
            let deltas: Vec<usize> = links
                .iter()
                .filter(|(i, whole)| !whole && *i > start)
                .map(|(i, _)| *i)
                .collect();
            debug_assert_eq!(deltas.last(), Some(&last));
            let entry = finals.remove(&path).expect("planned from the final index");
            let dest = select.content_dest(&path).expect("chosen").to_vec();
            plans.insert(
                path,
                Plan {
                    start,
                    deltas,
                    entry,
                    dest,
                },
            );
        }
        Ok(Deltas {
            plans,
            open: HashMap::new(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    /// Whether the member `path` of link `at` starts a file put together.
    pub(crate) fn starts(&self, path: &[u8], at: usize) -> bool {
        self.plans.get(path).is_some_and(|p| p.start == at)
    }
}

impl Restorer<'_> {
    /// Starts putting a big file together from its whole version in link `at`.
    pub(super) fn start_assembly(
        &mut self,
        path: &[u8],
        member: &mut dyn Read,
        data: &Loc,
    ) -> Result<()> {
        let plan = &self.deltas.plans[path];
        let (dest, mode) = (plan.dest.clone(), plan.entry.mode);
        let mut a = match self.target.assemble(&dest, mode) {
            Ok(a) => a,
            Err(r) => {
                self.refused(&dest, r);
                return Ok(());
            }
        };
        if let Err(e) = std::io::copy(member, a.file()) {
            self.target.abandon(a);
            return Err(corrupt(data, e));
        }
        self.deltas.open.insert(path.to_vec(), a);
        Ok(())
    }

    /// Writes a run (or the size) of a file under way; a member of a file
    /// not being put together (not chosen, or already failed) is read past.
    pub(super) fn apply_member(
        &mut self,
        member_path: &[u8],
        member: &mut dyn Read,
        data: &Loc,
        at: usize,
    ) -> Result<()> {
        let Some(of) = blocks_member_of(member_path) else {
            return Ok(());
        };
        let applies = self
            .deltas
            .plans
            .get(of)
            .is_some_and(|p| p.deltas.contains(&at));
        let Some(a) = self.deltas.open.get(of).filter(|_| applies) else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        member
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(data, e))?;
        let name = &member_path[of.len() + b".snap-blocks/".len()..];
        let written = match name {
            b"size" => match std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                Some(size) => a.set_len(size),
                None => Err(std::io::Error::other("a size member that is not a number")),
            },
            digits => {
                let offset: u64 = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                a.write_at(&bytes, offset)
            }
        };
        if let Err(e) = written {
            let a = self.deltas.open.remove(of).expect("open");
            self.target.abandon(a);
            let dest = self.deltas.plans[of].dest.clone();
            self.refused(&dest, Refused::Io(e));
        }
        Ok(())
    }

    /// Ends the files whose last runs link `at` carried: hashed whole, staged.
    pub(super) fn finish_assemblies(&mut self, at: usize) {
        let done: Vec<Vec<u8>> = self
            .deltas
            .plans
            .iter()
            .filter(|(_, p)| p.deltas.last() == Some(&at))
            .map(|(path, _)| path.clone())
            .collect();
        for path in done {
            let plan = self.deltas.plans.remove(&path).expect("listed");
            let Some(a) = self.deltas.open.remove(&path) else {
                continue;
            };
            let meta = self.meta_of(&plan.entry);
            let Some(sha) = plan.entry.sha256 else {
                continue;
            };
            let mut buf = std::mem::take(&mut self.buf);
            let staged = self
                .target
                .finish_assembly(a, &meta, plan.entry.size, &sha, &mut buf);
            self.buf = buf;
            self.count_staging(&plan.dest, staged, plan.entry.size);
        }
    }
}
