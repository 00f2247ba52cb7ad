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
use snap_shared::index::{BIG_FILE, BLOCK, Entry, EntryType, blocks_member_of, run_member};

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
    /// The links whose runs go over it, in order, with the size the file
    /// has there; the last ends it.
    deltas: Vec<(usize, u64)>,
    /// Its entry in the final index, and where it goes.
    entry: Entry,
    dest: Vec<u8>,
    /// The link that writes each block last (see `Assembly::set_owners`),
    /// when the file never shrinks along the chain.
    owners: Option<Vec<u16>>,
}

/// The files of a restore that are put together, and those under way.
#[derive(Default)]
pub(crate) struct Deltas {
    plans: HashMap<Vec<u8>, Plan>,
    open: HashMap<Vec<u8>, Assembly>,
    /// Per link, the members of planned files it carries, in tar order:
    /// (tar span, member name, file, whole). A span ends where the next
    /// member the index knows of begins (`u64::MAX`: at the end of the tar).
    members: Vec<Vec<Member>>,
}

/// The (offset, length) spans a link's runs of one file write.
type LinkRuns = (usize, Vec<(u64, u64)>);

/// A member of a big file in one link: its whole version, or a run.
struct Member {
    span: std::ops::Range<u64>,
    name: Vec<u8>,
    file: Vec<u8>,
    whole: bool,
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
        // (link, whole, size) for each link that carries each of them, and
        // the blocks (offset, length) each link's runs write.
        let mut carried: HashMap<Vec<u8>, Vec<(usize, bool, u64)>> = HashMap::new();
        let mut written: HashMap<Vec<u8>, Vec<LinkRuns>> = HashMap::new();
        let mut members: Vec<Vec<Member>> = Vec::new();
        for (i, link) in chain.iter().enumerate() {
            let mut here: Vec<Member> = Vec::new();
            let Some(own) = link.index() else {
                members.push(here);
                continue;
            };
            let mut reader = open_index(&own, dec)?;
            // Members of this link whose end is the next start seen.
            let mut open = 0;
            while let Some(e) = reader.next_entry()? {
                let planned = finals.contains_key(&e.path);
                let runs = e.delta.iter().flatten();
                let starts = e.tar_offset.map(|t| (t, e.path.clone(), true)).into_iter();
                let starts = starts
                    .chain(runs.map(|r| (r.tar_offset, run_member(&e.path, r.offset), false)));
                for (t, name, whole) in starts {
                    for m in &mut here[open..] {
                        m.span.end = t;
                    }
                    open = here.len();
                    if planned {
                        let file = e.path.clone();
                        here.push(Member {
                            span: t..u64::MAX,
                            name,
                            file,
                            whole,
                        });
                    }
                }
                if !planned {
                    continue;
                }
                if e.tar_offset.is_some() {
                    carried.entry(e.path).or_default().push((i, true, e.size));
                } else if let Some(runs) = &e.delta {
                    let spans = runs.iter().map(|r| (r.offset, r.len)).collect();
                    written.entry(e.path.clone()).or_default().push((i, spans));
                    carried.entry(e.path).or_default().push((i, false, e.size));
                }
            }
            members.push(here);
        }
        let mut plans = HashMap::new();
        for (path, links) in carried {
            let Some(&(last, false, _)) = links.last() else {
                continue;
            };
            // A file the chain never held whole is named missing by the restore.
            let Some(&(start, _, start_size)) = links.iter().rev().find(|(_, whole, _)| *whole)
            else {
                continue;
            };
            let deltas: Vec<(usize, u64)> = links
                .iter()
                .filter(|(i, whole, _)| !whole && *i > start)
                .map(|&(i, _, size)| (i, size))
                .collect();
            debug_assert_eq!(deltas.last().map(|d| d.0), Some(last));
            let entry = finals.remove(&path).expect("planned from the final index");
            let dest = select.content_dest(&path).expect("chosen").to_vec();
            let runs = written.remove(&path).unwrap_or_default();
            let owners = owners_of(start, start_size, &deltas, &runs, entry.size);
            plans.insert(
                path,
                Plan {
                    start,
                    deltas,
                    entry,
                    dest,
                    owners,
                },
            );
        }
        Ok(Deltas {
            plans,
            open: HashMap::new(),
            members,
        })
    }

    /// Whether the member `path` of link `at` starts a file put together.
    pub(crate) fn starts(&self, path: &[u8], at: usize) -> bool {
        self.plans.get(path).is_some_and(|p| p.start == at)
    }

    /// The members of link `at` that files put together need (a whole
    /// version, or runs), as (tar span, member name), in tar order: what a
    /// restore by frames fetches (found by the plan's read of the index).
    pub(crate) fn spans(&self, at: usize, tar_len: u64) -> Vec<(std::ops::Range<u64>, Vec<u8>)> {
        let Some(members) = self.members.get(at) else {
            return Vec::new();
        };
        members
            .iter()
            .filter(|m| {
                self.plans.get(&m.file).is_some_and(|p| match m.whole {
                    true => p.start == at,
                    false => p.deltas.iter().any(|d| d.0 == at),
                })
            })
            .map(|m| (m.span.start..m.span.end.min(tar_len), m.name.clone()))
            .collect()
    }
}

/// Which link writes each block of a file last: the start, unless a later
/// link's runs (`runs`: link, then (offset, length) spans) write it. None
/// when the file shrinks somewhere along the chain (or the chain is too
/// long to number in 16 bits): then every link writes all it carries.
fn owners_of(
    start: usize,
    start_size: u64,
    deltas: &[(usize, u64)],
    runs: &[LinkRuns],
    size: u64,
) -> Option<Vec<u16>> {
    let sizes = std::iter::once(start_size).chain(deltas.iter().map(|d| d.1));
    let grows = sizes.clone().zip(sizes.skip(1)).all(|(a, b)| a <= b);
    let last = runs.iter().map(|r| r.0).max().unwrap_or(start);
    if !grows || u16::try_from(last.max(start)).is_err() {
        return None;
    }
    let mut owners = vec![start as u16; size.div_ceil(BLOCK) as usize];
    for (link, spans) in runs.iter().filter(|r| r.0 > start) {
        for &(offset, len) in spans {
            let (from, to) = (
                (offset / BLOCK) as usize,
                (offset + len).div_ceil(BLOCK) as usize,
            );
            for o in owners.iter_mut().take(to).skip(from) {
                *o = *link as u16;
            }
        }
    }
    Some(owners)
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
        if let Some(owners) = &plan.owners {
            a.set_owners(owners.clone());
        }
        a.at_link(plan.start);
        if let Err(e) = a.copy_from(member) {
            self.target.abandon(a);
            return Err(corrupt(data, e));
        }
        self.deltas.open.insert(path.to_vec(), a);
        Ok(())
    }

    /// Writes a run of a file under way; a member of a file not being put
    /// together (not chosen, or already failed) and the size member (the
    /// index has the size) are read past.
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
        let name = &member_path[of.len() + b".snap-blocks/".len()..];
        let applies = self
            .deltas
            .plans
            .get(of)
            .is_some_and(|p| p.deltas.iter().any(|d| d.0 == at));
        let Some(a) = self
            .deltas
            .open
            .get_mut(of)
            .filter(|_| applies && name != b"size")
        else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        member
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(data, e))?;
        let offset = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok());
        a.at_link(at);
        let written = match offset {
            Some(offset) => a.write_at(&bytes, offset),
            None => Err(std::io::Error::other(
                "a run member whose name is not an offset",
            )),
        };
        if let Err(e) = written {
            self.fail_assembly(of, e);
        }
        Ok(())
    }

    /// Gives each file under way the size it has in link `at`, once the
    /// link's runs are written.
    pub(super) fn sizes_of_link(&mut self, at: usize) {
        let sized: Vec<(Vec<u8>, u64)> = self
            .deltas
            .plans
            .iter()
            .filter_map(|(path, p)| {
                p.deltas
                    .iter()
                    .find(|d| d.0 == at)
                    .map(|d| (path.clone(), d.1))
            })
            .collect();
        for (path, size) in sized {
            let failed = match self.deltas.open.get_mut(&path) {
                Some(a) => a.set_len(size).err(),
                None => None,
            };
            if let Some(e) = failed {
                self.fail_assembly(&path, e);
            }
        }
    }

    fn fail_assembly(&mut self, path: &[u8], e: std::io::Error) {
        let a = self.deltas.open.remove(path).expect("open");
        self.target.abandon(a);
        let dest = self.deltas.plans[path].dest.clone();
        self.refused(&dest, Refused::Io(e));
    }

    /// Ends the files whose last runs link `at` carried: hashed whole, staged.
    pub(super) fn finish_assemblies(&mut self, at: usize) {
        let done: Vec<Vec<u8>> = self
            .deltas
            .plans
            .iter()
            .filter(|(_, p)| p.deltas.last().map(|d| d.0) == Some(at))
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
            let fin = (plan.entry.size, &sha, plan.entry.blocks.as_ref());
            let staged = self.target.finish_assembly(a, &meta, fin, &mut buf);
            self.buf = buf;
            self.count_staging(&plan.dest, staged, plan.entry.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each block is owned by the last link whose runs write it, else by
    /// the start; a file that shrinks along the chain has no owners.
    #[test]
    fn the_last_run_owns_a_block() {
        let b = BLOCK;
        let runs = vec![(3, vec![(0, b), (4 * b, 2 * b)]), (5, vec![(0, b)])];
        let deltas = [(3, 6 * b), (5, 6 * b + 10)];
        let owners = owners_of(2, 6 * b, &deltas, &runs, 6 * b + 10).unwrap();
        assert_eq!(owners, [5, 2, 2, 2, 3, 3, 2]);
        let shrinks = [(3, 5 * b), (5, 6 * b)];
        assert_eq!(owners_of(2, 6 * b, &shrinks, &runs, 6 * b), None);
    }
}
